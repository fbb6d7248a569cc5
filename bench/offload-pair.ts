/**
 * Two connections back to back in memory, each behind its own {@link WebCryptoRecords} pipeline: what one
 * sends (offloaded or not) is fed to the other's `receive`. No sockets and no `node:` imports, so the same
 * code runs in Node, Deno, Bun, workerd and a browser page — the record-offload tests and
 * `qkd-tls bench --runtimes` use it.
 */
import type { ClientOptions, ServerOptions } from '../lib/config/options.js';
import { Connection } from '../lib/connection/connection.js';
import type { ConnectionEvent } from '../lib/config/events.js';
import { concat } from '../lib/codec/bytes.js';
import { WebCryptoRecords } from '../lib/transport/webcrypto-records.js';

export interface OffloadPairOptions {
  /** Offload AES-GCM records to WebCrypto (default true). */
  readonly offload?: boolean;
  readonly recordsInFlight?: number;
  /** Keep every chunk each side sends (for byte comparisons); default false. */
  readonly keepWire?: boolean;
  /** Keep the application data each side receives (else only count it); default true. */
  readonly keepData?: boolean;
}

/** One end: a connection, its pipeline, and what it sent and received. */
export class OffloadEnd {
  readonly records: WebCryptoRecords;
  readonly wire: Uint8Array[] = [];
  readonly received: Uint8Array[] = [];
  readonly events: ConnectionEvent[] = [];
  receivedBytes = 0;
  peer!: OffloadEnd;

  constructor(
    readonly conn: Connection,
    private readonly options: OffloadPairOptions,
  ) {
    this.records = new WebCryptoRecords(conn, {
      send: async (bytes) => {
        if (options.keepWire) this.wire.push(bytes);
        await null; // the peer runs in a later microtask, as it would behind a socket
        this.peer.records.receive(bytes, true); // a fresh buffer of the sender, never written again
        this.peer.collect();
      },
      deliver: (data) => this.onData(data),
      afterCore: () => this.collect(),
      offload: options.offload,
      recordsInFlight: options.recordsInFlight,
    });
  }

  /** Takes the connection's events (and its application data). */
  collect(): void {
    for (const ev of this.conn.takeEvents()) {
      this.events.push(ev);
      if (ev.type === 'data') this.onData(ev.data);
    }
  }

  /** The application data received so far, joined. */
  data(): Uint8Array {
    return concat(...this.received);
  }

  private onData(data: Uint8Array): void {
    this.receivedBytes += data.length;
    if (this.options.keepData !== false) this.received.push(data);
  }
}

export interface OffloadPair {
  readonly client: OffloadEnd;
  readonly server: OffloadEnd;
  /** Resolves when both pipelines are idle (everything sent was received and processed). */
  settle(): Promise<void>;
  /** close_notify from the client, settled, then from the server, settled: both sides closed. */
  closeBoth(): Promise<void>;
}

/** Creates a pair, runs the handshake and resolves once it settled. */
export async function offloadPair(client: ClientOptions, server: ServerOptions, options: OffloadPairOptions = {}): Promise<OffloadPair> {
  const c = new OffloadEnd(Connection.client(client), options);
  const s = new OffloadEnd(Connection.server(server), options);
  c.peer = s;
  s.peer = c;
  const settle = async (): Promise<void> => {
    for (let round = 0; round < 10_000; round++) {
      await c.records.drained().catch(() => {});
      await s.records.drained().catch(() => {});
      await c.records.readDrained();
      await s.records.readDrained();
      await new Promise((r) => setTimeout(r, 0));
      if (c.records.idle && s.records.idle) return;
    }
    throw new Error('the offload pair did not settle');
  };
  c.records.flushCore(); // the ClientHello
  await settle();
  const closeBoth = async (): Promise<void> => {
    for (const end of [c, s]) {
      end.conn.close();
      end.records.flushCore();
      await settle();
    }
  };
  return { client: c, server: s, settle, closeBoth };
}
