/**
 * Test helpers: an in-memory client/server pump for two sans-IO {@link Connection}s, plus the tools the
 * hostile and fuzz tests need to play a peer by hand — record splitting, hello re-writing, key-log capture
 * and record protection from logged secrets, and a seeded random source for replayable flights.
 */
import { concat, fromHex, utf8 } from '../../lib/codec/bytes.js';
import { ContentType } from '../../lib/codec/enums.js';
import { Reader } from '../../lib/codec/reader.js';
import { Writer } from '../../lib/codec/writer.js';
import type { ClientOptions, ServerOptions } from '../../lib/config/options.js';
import { Connection } from '../../lib/connection/connection.js';
import type { ConnectionEvent, HandshakeInfo } from '../../lib/config/events.js';
import type { CryptoProvider, HashName, RandomSource } from '../../lib/crypto/provider.js';
import type { TlsError } from '../../lib/errors.js';
import { trafficKeys } from '../../lib/keyschedule/schedule.js';
import type { Extension } from '../../lib/messages/extensions.js';
import { encodeHandshake } from '../../lib/messages/post-hello.js';
import type { Psk } from '../../lib/psk/types.js';
import { RecordProtection } from '../../lib/record/protection.js';
import { SUITES, type SupportedSuiteName } from '../../lib/suites.js';

// ---------------------------------------------------------------------------------------------------------
// The pump

export type Side = 'client' | 'server';

export interface PumpOptions {
  /** Give up (throw) after this many rounds without settling. Default 64. */
  readonly maxRounds?: number;
  /** Rewrites what the client sends (e.g. to mutate it) before the server receives it. */
  readonly toServer?: (bytes: Uint8Array) => Uint8Array;
  /** Rewrites what the server sends before the client receives it. */
  readonly toClient?: (bytes: Uint8Array) => Uint8Array;
}

/** A client and a server connected back to back in memory, with every event and every byte recorded. */
export class Pair {
  readonly client: Connection;
  readonly server: Connection;
  readonly clientEvents: ConnectionEvent[] = [];
  readonly serverEvents: ConnectionEvent[] = [];
  /** Every chunk each side sent, in order (before any rewriting). */
  readonly clientSent: Uint8Array[] = [];
  readonly serverSent: Uint8Array[] = [];

  constructor(clientOptions: ClientOptions, serverOptions: ServerOptions) {
    this.client = Connection.client(clientOptions);
    this.server = Connection.server(serverOptions);
  }

  /**
   * Moves bytes both ways until neither side has anything to send. Returns the number of rounds.
   * Throws if a `receive` throws (it never should) or if the exchange does not settle.
   */
  pump(options: PumpOptions = {}): number {
    const max = options.maxRounds ?? 64;
    for (let round = 0; round < max; round++) {
      let moved = false;
      const c = this.client.takeOutput();
      if (c) {
        moved = true;
        this.clientSent.push(c);
        this.server.receive(options.toServer ? options.toServer(c) : c);
      }
      this.collect();
      const s = this.server.takeOutput();
      if (s) {
        moved = true;
        this.serverSent.push(s);
        this.client.receive(options.toClient ? options.toClient(s) : s);
      }
      this.collect();
      if (!moved) return round;
    }
    throw new Error(`the exchange did not settle in ${max} rounds`);
  }

  /** Moves the pending events of both connections into {@link clientEvents} / {@link serverEvents}. */
  collect(): void {
    this.clientEvents.push(...this.client.takeEvents());
    this.serverEvents.push(...this.server.takeEvents());
  }

  events(side: Side): ConnectionEvent[] {
    this.collect();
    return side === 'client' ? this.clientEvents : this.serverEvents;
  }

  /** The application data `side` received (early or not), concatenated. */
  received(side: Side, which: 'all' | 'early' | 'normal' = 'all'): Uint8Array {
    const parts: Uint8Array[] = [];
    for (const e of this.events(side)) {
      if (e.type === 'data' && (which === 'all' || e.early === (which === 'early'))) parts.push(e.data);
    }
    return concat(...parts);
  }

  /** The error event of `side`, if any. */
  error(side: Side): TlsError | undefined {
    const e = this.events(side).find((x) => x.type === 'error');
    return e?.type === 'error' ? e.error : undefined;
  }

  info(side: Side): HandshakeInfo | undefined {
    const e = this.events(side).find((x) => x.type === 'handshake');
    return e?.type === 'handshake' ? e.info : undefined;
  }

  /** Every record `side` sent, in order. */
  records(side: Side): RecordBytes[] {
    return splitRecords(concat(...(side === 'client' ? this.clientSent : this.serverSent)));
  }
}

/** Creates a pair and pumps until it settles (the handshake completes or fails); returns the pair. */
export function handshake(clientOptions: ClientOptions, serverOptions: ServerOptions, options?: PumpOptions): Pair {
  const p = new Pair(clientOptions, serverOptions);
  p.pump(options);
  return p;
}

// ---------------------------------------------------------------------------------------------------------
// PSKs and randomness

let pskCounter = 0;

/** The fatal errors among a connection's events. */
export function errorsOf(events: readonly ConnectionEvent[]): TlsError[] {
  return events.flatMap((e) => (e.type === 'error' ? [e.error] : []));
}

/**
 * A client and a server with one PSK (named `identity`), connected in memory and their events collected, with
 * both sides' key logs: for tests that then play one side by hand with the logged traffic secrets.
 */
export function connectedWithKeyLogs(crypto: CryptoProvider, identity = 'review'): { p: Pair; ck: KeyLog; sk: KeyLog } {
  const psk = makePsk(identity);
  const [ck, sk] = [new KeyLog(), new KeyLog()];
  const p = handshake({ crypto, psks: [psk], keyLog: ck.sink }, { crypto, psks: [psk], keyLog: sk.sink });
  p.collect();
  return { p, ck, sk };
}

/** A fresh PSK: identity text, a random-looking secret derived from a counter (never reused by accident). */
export function makePsk(identity: string, hash: HashName = 'SHA-256', secret?: Uint8Array): Psk {
  pskCounter++;
  const n = hash === 'SHA-256' ? 32 : 48;
  const s = secret ?? seededRandom(0x5eed0000 + pskCounter)(n);
  return { identity: utf8(identity), secret: s, hash };
}

/**
 * A deterministic random source (xorshift128+, NOT cryptographic): the same seed gives the same bytes, so a
 * connection built on it sends the same flight every time.
 */
export function seededRandom(seed: number): RandomSource {
  let s0 = (seed ^ 0x9e3779b9) >>> 0 || 1;
  let s1 = (Math.imul(seed, 0x85ebca6b) ^ 0xc2b2ae35) >>> 0 || 2;
  const next = (): number => {
    let x = s0;
    const y = s1;
    s0 = y;
    x ^= x << 23;
    x ^= x >>> 17;
    x ^= y ^ (y >>> 26);
    s1 = x >>> 0;
    return (s0 + s1) >>> 0;
  };
  return (n: number) => {
    const out = new Uint8Array(n);
    for (let i = 0; i < n; i++) out[i] = next() & 0xff;
    return out;
  };
}

/** `crypto` with its random source replaced by a seeded one. */
export function withRandom(crypto: CryptoProvider, random: RandomSource): CryptoProvider {
  return { ...crypto, random };
}

// ---------------------------------------------------------------------------------------------------------
// Records

export interface RecordBytes {
  readonly type: number;
  /** The whole record, header included. */
  readonly bytes: Uint8Array;
  readonly fragment: Uint8Array;
}

/** Splits a byte stream into whole records; throws if it does not end on a record boundary. */
export function splitRecords(stream: Uint8Array): RecordBytes[] {
  const out: RecordBytes[] = [];
  let at = 0;
  while (at < stream.length) {
    if (stream.length - at < 5) throw new Error('splitRecords: partial record header');
    const len = (stream[at + 3] << 8) | stream[at + 4];
    if (stream.length - at < 5 + len) throw new Error('splitRecords: partial record');
    const bytes = stream.subarray(at, at + 5 + len);
    out.push({ type: stream[at], bytes, fragment: bytes.subarray(5) });
    at += 5 + len;
  }
  return out;
}

/** A plaintext record. */
export function plainRecord(type: number, fragment: Uint8Array, version = 0x0303): Uint8Array {
  return concat(new Uint8Array([type, version >>> 8, version & 0xff, fragment.length >>> 8, fragment.length & 0xff]), fragment);
}

/** A handshake message (type, uint24 length, body). */
export function handshakeMessage(type: number, body: Uint8Array): Uint8Array {
  return encodeHandshake(type, body);
}

/** The plaintext alert records among `records`, decoded. */
export function plaintextAlerts(records: readonly RecordBytes[]): { level: number; code: number }[] {
  return records.filter((r) => r.type === ContentType.alert).map((r) => ({ level: r.fragment[0], code: r.fragment[1] }));
}

// ---------------------------------------------------------------------------------------------------------
// Key log: the secrets a side logged, and record protection built from them (to play a peer by hand)

export class KeyLog {
  readonly lines: string[] = [];
  readonly sink = (line: string): void => void this.lines.push(line);

  /** The secret logged under `label` (the last one if several), or throws. */
  secret(label: string): Uint8Array {
    for (let i = this.lines.length - 1; i >= 0; i--) {
      const [l, , s] = this.lines[i].split(' ');
      if (l === label) return fromHex(s);
    }
    throw new Error(`no ${label} in the key log`);
  }

  labels(): string[] {
    return this.lines.map((l) => l.split(' ')[0]);
  }
}

/** Record protection keyed from a traffic secret (sequence number 0), for sealing or opening by hand. */
export function protection(crypto: CryptoProvider, suite: SupportedSuiteName, secret: Uint8Array): RecordProtection {
  const s = SUITES[suite];
  const { key, iv } = trafficKeys(crypto, s.hash, secret, s.keyLength, s.ivLength);
  return new RecordProtection(crypto, s, key, iv);
}

/** Opens a protected record with `p` (the next sequence number). */
export function openRecord(p: RecordProtection, r: RecordBytes): { type: number; content: Uint8Array } {
  return p.open({ type: r.type, version: 0x0303, header: r.bytes.subarray(0, 5), fragment: r.fragment });
}

// ---------------------------------------------------------------------------------------------------------
// Hello rewriting: ClientHello and ServerHello end with their extension block, so a hello is
// `prefix || extensions` and can be rebuilt with any extension list (to break the rules on purpose).

export interface HelloParts {
  readonly type: number;
  /** The body up to (not including) the extensions length. */
  readonly prefix: Uint8Array;
  readonly extensions: Extension[];
}

/** Splits a ClientHello or ServerHello message (with its 4-byte header) into prefix and extensions. */
export function splitHello(raw: Uint8Array): HelloParts {
  const type = raw[0];
  const r = new Reader(raw, 4);
  r.u16();
  r.bytes(32);
  r.vec8();
  if (type === 1) {
    r.vec16();
    r.vec8();
  } else {
    r.u16();
    r.u8();
  }
  const prefix = raw.subarray(4, r.offset);
  const extensions: Extension[] = [];
  r.scope16('extensions', (b) =>
    b.each((e) => {
      const t = e.u16();
      extensions.push({ type: t, data: e.vec16() });
    }),
  );
  return { type, prefix: prefix.slice(), extensions };
}

/** Rebuilds a hello from parts (no binder recomputation: the result is meant to fail a check). */
export function joinHello(parts: HelloParts): Uint8Array {
  const w = new Writer(512);
  w.u8(parts.type).vec24((b) => {
    b.bytes(parts.prefix);
    b.vec16((l) => {
      for (const e of parts.extensions) l.u16(e.type).vec16(e.data);
    });
  });
  return w.finish();
}

/** The first handshake message in a flight of records (the ClientHello or ServerHello), as bytes. */
export function firstHandshakeMessage(records: readonly RecordBytes[]): Uint8Array {
  const hs = records.find((r) => r.type === ContentType.handshake);
  if (!hs) throw new Error('no handshake record');
  const f = hs.fragment;
  const len = (f[1] << 16) | (f[2] << 8) | f[3];
  return f.subarray(0, 4 + len);
}

/** Handshake messages in a concatenation of handshake record contents. */
export function splitMessages(content: Uint8Array): Uint8Array[] {
  const out: Uint8Array[] = [];
  let at = 0;
  while (at + 4 <= content.length) {
    const len = (content[at + 1] << 16) | (content[at + 2] << 8) | content[at + 3];
    out.push(content.subarray(at, at + 4 + len));
    at += 4 + len;
  }
  return out;
}

/** Whether the connection's session secrets are wiped (the exporter refuses once they are). */
export function wiped(conn: { exportKeyingMaterial(label: string, context: Uint8Array, length: number): Uint8Array }): boolean {
  try {
    conn.exportKeyingMaterial('probe', new Uint8Array(0), 8);
    return false;
  } catch (e) {
    return /wiped/.test((e as Error).message);
  }
}
