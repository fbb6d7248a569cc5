/**
 * What the proxy tells its operator: exactly one line per connection when it ends (who, which service,
 * which key ID, how many bytes each way, how long, how it ended), plus a few lifecycle lines (listening,
 * draining, stopped). Human-readable `key=value` text by default, one JSON object per line with --json.
 *
 * A value may come from a peer (an error's text, an identity): text lines escape control characters and quote a value
 * that could forge a field, JSON lines escape DEL, C1 and bidi controls as well (lib/codec/text.ts).
 *
 * Key material never reaches a log line: a connection record carries the PSK identity and the key ID
 * (e.g. the QKD key's UUID), which name a key but reveal nothing about it.
 */
import { fieldText, jsonText } from '../codec/text.js';

/**
 * How a connection ended (the `end` field). "peer" is the side the proxy accepted the connection from,
 * "target" the side it connected to (`--connect`).
 */
export type ConnectionEnd =
  /** Both directions finished cleanly (FIN on plain TCP, close_notify on TLS). */
  | 'closed'
  /**
   * The peer closed (FIN) or reset the connection before sending a byte, so no key was taken or looked up and no
   * connection opened (a health check's connect and close): a server-role service over TCP (not with `websocket`),
   * or a client-role service with `connectOnData` (without it, a client service takes a key and connects at once).
   * A reset says so in `error`; after a FIN the proxy ends its side cleanly too.
   */
  | 'no-data'
  /** Refused at once: the service was at its connection limit, or the proxy was shutting down. */
  | 'rejected'
  /** The key source could not deliver a key (Key Manager unreachable, key ID unknown, ...). */
  | 'key-unavailable'
  /** The proxy could not connect to the target (remote proxy or backend down, or connect timeout). */
  | 'connect-failed'
  /** The TLS handshake failed (an alert, a timeout, or the peer went away during it). */
  | 'handshake-failed'
  /** No byte moved in either direction for the idle timeout. */
  | 'idle-timeout'
  /** The accepted side reset the connection, failed, or ended TLS without close_notify. */
  | 'peer-aborted'
  /** The target side reset the connection, failed, or ended TLS without close_notify. */
  | 'target-aborted'
  /** Cut by the proxy's shutdown (the drain deadline passed, or an immediate stop). */
  | 'shutdown';

/** The one record logged per connection. */
export interface ConnectionRecord {
  readonly event: 'connection';
  /** When the connection ended, ISO 8601. */
  readonly time: string;
  /** The service's name (the config file's `[section]`, or --name). */
  readonly service: string;
  readonly role: 'client' | 'server';
  /** A number unique within this process, to match lines about the same connection. */
  readonly id: number;
  /** The accepted side's address, HOST:PORT. */
  readonly peer: string;
  /** The `--connect` address, HOST:PORT. */
  readonly target: string;
  /** The PSK identity used by the TLS side, when the handshake got that far. */
  readonly identity?: string;
  /** The key ID (a QKD key's ID, or a static PSK's label), when the key has one. Never the key itself. */
  readonly keyId?: string;
  readonly suite?: string;
  readonly kex?: string;
  /** The (EC)DHE or hybrid group, null for psk_ke (as the handshake line of server and client gives it). */
  readonly group?: string | null;
  /** Bytes from the accepted peer to the target (for a client proxy: what the application sent). */
  readonly bytesUp: number;
  /** Bytes from the target to the accepted peer. */
  readonly bytesDown: number;
  readonly durationMs: number;
  readonly end: ConnectionEnd;
  /** Why, when it did not end 'closed'. */
  readonly error?: string;
  /** The TLS alert behind a failure, and whether this proxy sent it or received it. */
  readonly alert?: string;
  readonly alertDirection?: 'sent' | 'received';
}

/** Where the proxy's lines go. Tests pass their own to collect records. */
export interface ProxyLogger {
  connection(record: ConnectionRecord): void;
  /** A lifecycle line: `listening`, `draining`, `stopped`, `error`, ... */
  event(name: string, fields: Record<string, unknown>): void;
}

/**
 * A logger writing lines to `write` (default: stderr). Text lines look like
 * `2025-01-01T00:00:00.000Z connection service=web id=7 peer=127.0.0.1:50312 ... end=closed`.
 */
export function createLogger(options: { json: boolean; write?: (line: string) => void }): ProxyLogger {
  const write = options.write ?? ((line: string) => void process.stderr.write(line));
  const emit = (fields: Record<string, unknown>): void => {
    if (options.json) write(jsonText(fields) + '\n');
    else write(textLine(fields) + '\n');
  };
  return {
    connection: (record) => emit({ ...record }),
    event: (name, fields) => emit({ event: name, time: new Date().toISOString(), ...fields }),
  };
}

/** A logger that drops everything (the default of the library API). */
export const silentLogger: ProxyLogger = { connection() {}, event() {} };

/**
 * `TIME EVENT key=value ...`, quoting values that contain spaces, quotes, `=` or control characters. A value is kept
 * whole, as in a --json line: the fields are the proxy's own (a pool's expired key IDs run to thousands of characters),
 * and a peer's text among them is bounded where it enters (e.g. the TLS errors' clip).
 */
function textLine(fields: Record<string, unknown>): string {
  const { event, time, ...rest } = fields;
  const parts = [fieldText(String(time), Infinity), fieldText(String(event), Infinity)];
  const add = (k: string, v: unknown): void => {
    if (v === undefined) return;
    if (v !== null && typeof v === 'object' && !Array.isArray(v)) {
      for (const [sub, w] of Object.entries(v)) add(`${k}.${sub}`, w);
      return;
    }
    parts.push(`${k}=${fieldText(typeof v === 'string' ? v : String(JSON.stringify(v)), Infinity)}`);
  };
  for (const [k, v] of Object.entries(rest)) add(k, v);
  return parts.join(' ');
}
