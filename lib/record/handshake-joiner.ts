/**
 * Reassembles handshake messages from record fragments (RFC 8446 §5.1): a message may span several records
 * and one record may hold several messages. Each message comes out with its original encoding
 * (type, uint24 length, body) for the transcript.
 */
import { TlsError } from '../errors.js';

export interface HandshakeMessageBytes {
  readonly type: number;
  /** The body (without the 4-byte header). */
  readonly body: Uint8Array;
  /** The whole encoded message: type || length || body (what the transcript hashes). */
  readonly raw: Uint8Array;
}

/**
 * Handshake messages larger than this are refused. The largest that an external-PSK handshake sends is a
 * ClientHello whose extensions fill their 16-bit length (RFC 8446 §4.1.2: extensions<8..2^16-1>, e.g. a PSK
 * identity near 65535 bytes): 2^16 - 1 bytes of them after the fixed fields (version, random,
 * legacy_session_id, compression: 71 bytes) and the cipher suites, so 2^16 alone left no room for those. 1 KiB
 * more takes such a ClientHello with up to about 470 cipher suites.
 */
export const MAX_HANDSHAKE_MESSAGE = (1 << 16) + 1024;

/**
 * The handshake messages that immediately precede a key change (RFC 8446 §5.1), by type: ClientHello and
 * ServerHello (also as HelloRetryRequest, and the second ClientHello that answers it), EndOfEarlyData, Finished
 * and KeyUpdate. Each must end at a record boundary.
 */
export const PRECEDES_KEY_CHANGE: ReadonlyMap<number, string> = new Map([
  [0x01, 'ClientHello'],
  [0x02, 'ServerHello'],
  [0x05, 'EndOfEarlyData'],
  [0x14, 'Finished'],
  [0x18, 'KeyUpdate'],
]);

export class HandshakeJoiner {
  /**
   * Our own copy of the received handshake bytes: [start, end) is pending. Messages come out as views of it,
   * and it is only ever appended to (a full buffer is replaced, never compacted), so a message a state keeps
   * (a ClientHello awaiting a PSK lookup) stays intact, and the caller's record buffers are never retained.
   */
  private buf = new Uint8Array(0);
  private start = 0;
  private end = 0;

  /** True when no partial message is buffered (§5.1: messages must not span a key change). */
  get isEmpty(): boolean {
    return this.start === this.end;
  }

  /** Adds the content of one handshake record. Zero-length handshake fragments are not allowed (§5.4). */
  push(fragment: Uint8Array): void {
    if (fragment.length === 0) throw new TlsError('RecordEmptyFragment', 'zero-length handshake record');
    if (this.end + fragment.length > this.buf.length) {
      const pending = this.end - this.start;
      const next = new Uint8Array(Math.max(2 * (pending + fragment.length), 512));
      next.set(this.buf.subarray(this.start, this.end));
      this.buf = next;
      this.start = 0;
      this.end = pending;
    }
    this.buf.set(fragment, this.end);
    this.end += fragment.length;
  }

  /**
   * RFC 8446 §5.1: a message that immediately precedes a key change must end at a record boundary. Call it
   * right after {@link next} returned `message`, before the message is acted on: since messages are taken out
   * as soon as each record is added, any byte still buffered then came in the same record as `message`.
   */
  checkKeyChangeBoundary(message: HandshakeMessageBytes): void {
    if (!this.isEmpty && PRECEDES_KEY_CHANGE.has(message.type)) {
      const name = PRECEDES_KEY_CHANGE.get(message.type);
      throw new TlsError(
        'RecordHandshakeSpansKeyChange',
        `${this.end - this.start} more byte(s) after ${name} in the same record: ${name} must end its record (RFC 8446 §5.1)`,
      );
    }
  }

  /** The next complete message, or null. */
  next(): HandshakeMessageBytes | null {
    const avail = this.end - this.start;
    if (avail < 4) return null;
    const p = this.buf;
    const s = this.start;
    const length = (p[s + 1] << 16) | (p[s + 2] << 8) | p[s + 3];
    if (length > MAX_HANDSHAKE_MESSAGE) {
      throw new TlsError('DecodeBadLength', `handshake message of ${length} bytes exceeds ${MAX_HANDSHAKE_MESSAGE}`);
    }
    if (avail < 4 + length) return null;
    const raw = p.subarray(s, s + 4 + length);
    this.start += 4 + length;
    return { type: raw[0], body: raw.subarray(4), raw };
  }
}

/** Splits `data` into pieces of at most `max` bytes (for records). An empty input yields no pieces. */
export function* fragments(data: Uint8Array, max: number): Generator<Uint8Array> {
  for (let at = 0; at < data.length; at += max) yield data.subarray(at, Math.min(at + max, data.length));
}
