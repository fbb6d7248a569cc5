/**
 * A client Connection driven by hand whose close_notify the test seals itself, with any padding (RFC 8446 §5.4),
 * under the client's application traffic key (from its key log) and the next sequence number: a close_notify
 * padded apart from the records before it, which the recordPadding option (one block size for every record) does
 * not make.
 */
import { AlertDescription, ContentType } from '../../lib/codec/enums.js';
import { Connection } from '../../lib/connection/connection.js';
import type { ClientOptions } from '../../lib/config/options.js';
import { nobleProvider } from '../../lib/crypto/noble.js';
import { Deframer } from '../../lib/record/deframer.js';
import type { ByteStreamPair } from '../../lib/transport/streams.js';
import { KeyLog, protection } from './pair.js';

export class PaddingClient {
  readonly connection: Connection;
  private readonly keys = new KeyLog();
  /** Protected records the connection has written since the handshake (the next one's sequence number). */
  private sent = 0;

  constructor(options: Omit<ClientOptions, 'crypto' | 'keyLog'>) {
    this.connection = Connection.client({ ...options, crypto: nobleProvider, keyLog: this.keys.sink });
  }

  /** `data` as the connection's records (after the handshake), counted for the close_notify's sequence number. */
  write(data: Uint8Array): Uint8Array[] {
    this.connection.write(data);
    const chunks = this.connection.takeOutputChunks();
    const deframer = new Deframer();
    for (const c of chunks) for (deframer.push(c); deframer.next(); ) this.sent++;
    return chunks;
  }

  /** A close_notify alert record with `padding` zero bytes after its content type (24 + padding bytes). */
  closeNotify(padding: number): Uint8Array {
    const info = this.connection.handshake;
    if (!info) throw new Error('closeNotify: the handshake has not completed');
    const p = protection(nobleProvider, info.suite, this.keys.secret('CLIENT_TRAFFIC_SECRET_0'));
    p.dangerousSetSequence(0, this.sent);
    return p.seal(ContentType.alert, Uint8Array.of(1, AlertDescription.close_notify), padding);
  }

  /**
   * Over `end` (the client's side of a byte-stream pair): the handshake, then `payload`, then a close_notify with
   * `padding` zeros and the end of the client's stream right behind it. Returns that close_notify, what the client
   * has received so far (the list grows), and `reading`: the client reading on until the server's stream ends.
   */
  async sendAndClose(end: ByteStreamPair, payload: Uint8Array, padding: number): Promise<{ closeNotify: Uint8Array; received: Uint8Array[]; reading: Promise<void> }> {
    const conn = this.connection;
    const toServer = end.writable.getWriter();
    const fromServer = end.readable.getReader();
    const received: Uint8Array[] = [];
    const exchange = async (): Promise<void> => {
      for (const chunk of conn.takeOutputChunks()) await toServer.write(chunk);
      for (const e of conn.takeEvents()) if (e.type === 'data') received.push(e.data);
    };
    await exchange(); // ClientHello
    while (conn.phase === 'handshaking') {
      const { value, done } = await fromServer.read();
      if (done) throw new Error('the server ended its stream during the handshake');
      conn.receive(value);
      await exchange();
    }
    for (const r of this.write(payload)) await toServer.write(r);
    const closeNotify = this.closeNotify(padding);
    await toServer.write(closeNotify);
    await toServer.close();
    const reading = (async () => {
      for (;;) {
        const { value, done } = await fromServer.read();
        if (done) return;
        conn.receive(value);
        await exchange().catch(() => {}); // (the server may be gone: what the client sends back does not matter)
      }
    })();
    return { closeNotify, received, reading };
  }
}
