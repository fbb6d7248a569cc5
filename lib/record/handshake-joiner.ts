/**
 * Reassembles handshake messages from record fragments (RFC 8446 §5.1): a message may span several records
 * and one record may hold several messages. Each message comes out with its original encoding
 * (type, uint24 length, body) for the transcript.
 */
import { TlsError } from '../errors.js';
import { concat } from '../codec/bytes.js';

export interface HandshakeMessageBytes {
  readonly type: number;
  /** The body (without the 4-byte header). */
  readonly body: Uint8Array;
  /** The whole encoded message: type || length || body (what the transcript hashes). */
  readonly raw: Uint8Array;
}

/** Handshake messages larger than this are refused (no external-PSK message comes near it). */
export const MAX_HANDSHAKE_MESSAGE = 1 << 16;

export class HandshakeJoiner {
  private pending: Uint8Array = new Uint8Array(0);

  /** True when no partial message is buffered (§5.1: messages must not span a key change). */
  get isEmpty(): boolean {
    return this.pending.length === 0;
  }

  /** Adds the content of one handshake record. Zero-length handshake fragments are not allowed (§5.1). */
  push(fragment: Uint8Array): void {
    if (fragment.length === 0) throw new TlsError('RecordEmptyFragment', 'zero-length handshake record');
    this.pending = this.pending.length === 0 ? fragment : concat(this.pending, fragment);
  }

  /** The next complete message, or null. */
  next(): HandshakeMessageBytes | null {
    const p = this.pending;
    if (p.length < 4) return null;
    const length = (p[1] << 16) | (p[2] << 8) | p[3];
    if (length > MAX_HANDSHAKE_MESSAGE) {
      throw new TlsError('DecodeBadLength', `handshake message of ${length} bytes exceeds ${MAX_HANDSHAKE_MESSAGE}`);
    }
    if (p.length < 4 + length) return null;
    const raw = p.subarray(0, 4 + length);
    this.pending = p.subarray(4 + length);
    return { type: raw[0], body: raw.subarray(4), raw };
  }
}

/** Splits `data` into pieces of at most `max` bytes (for records). An empty input yields no pieces. */
export function* fragments(data: Uint8Array, max: number): Generator<Uint8Array> {
  for (let at = 0; at < data.length; at += max) yield data.subarray(at, Math.min(at + max, data.length));
}
