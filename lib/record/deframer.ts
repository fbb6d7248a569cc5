/**
 * Incremental record deframer (RFC 8446 §5.1): bytes in any split, whole TLSPlaintext/TLSCiphertext records out.
 *
 * Checks only what the record header says: a known content type (else unexpected_message) and a length within
 * 2^14 + 256 (else record_overflow). Decryption and the tighter plaintext limits belong to the record protection.
 */
import { ContentType } from '../codec/enums.js';
import { TlsError } from '../errors.js';

/** RFC 8446 §5.1: TLSPlaintext.length MUST NOT exceed 2^14 bytes. */
export const MAX_PLAINTEXT = 1 << 14;
/** RFC 8446 §5.2: TLSCiphertext.length MUST NOT exceed 2^14 + 256 bytes. */
export const MAX_CIPHERTEXT = (1 << 14) + 256;
export const RECORD_HEADER_LENGTH = 5;

export interface RawRecord {
  readonly type: number;
  readonly version: number;
  /** The 5-byte header: the additional data of a protected record (§5.2). */
  readonly header: Uint8Array;
  /** The record body (a view; valid until the caller stops using it). */
  readonly fragment: Uint8Array;
}

export class Deframer {
  private buf: Uint8Array = new Uint8Array(0);
  private start = 0;
  private end = 0;
  /** Whether `buf` is ours to write into (a chunk we adopted without copying is not). */
  private owned = false;

  /** Bytes received but not yet returned as a record. */
  get buffered(): number {
    return this.end - this.start;
  }

  /** Appends received bytes. The deframer never writes into `data`; it may keep a view of it. */
  push(data: Uint8Array): void {
    if (data.length === 0) return;
    if (this.start === this.end) {
      // Nothing pending: adopt the chunk without copying.
      this.buf = data;
      this.start = 0;
      this.end = data.length;
      this.owned = false;
      return;
    }
    const pending = this.end - this.start;
    if (this.owned && this.end + data.length <= this.buf.length) {
      this.buf.set(data, this.end);
      this.end += data.length;
      return;
    }
    // A fresh buffer (never compact in place: earlier records may still be views into the old one).
    const cap = Math.max(pending + data.length, Math.min(2 * (pending + data.length), RECORD_HEADER_LENGTH + MAX_CIPHERTEXT));
    const next = new Uint8Array(cap);
    next.set(this.buf.subarray(this.start, this.end), 0);
    next.set(data, pending);
    this.buf = next;
    this.start = 0;
    this.end = pending + data.length;
    this.owned = true;
  }

  /** The next complete record, or null when more bytes are needed. Throws TlsError on a bad header. */
  next(): RawRecord | null {
    const avail = this.end - this.start;
    if (avail < 1) return null;
    const b = this.buf;
    const s = this.start;
    const type = b[s];
    // §5: "If a TLS implementation receives an unexpected record type, it MUST terminate the connection
    // with an unexpected_message alert." Checked on the first byte, so garbage fails fast.
    if (
      type !== ContentType.handshake &&
      type !== ContentType.application_data &&
      type !== ContentType.alert &&
      type !== ContentType.change_cipher_spec
    ) {
      throw new TlsError('RecordUnknownContentType', `record content type 0x${type.toString(16).padStart(2, '0')}`);
    }
    if (avail < RECORD_HEADER_LENGTH) return null;
    const version = (b[s + 1] << 8) | b[s + 2];
    const length = (b[s + 3] << 8) | b[s + 4];
    if (length > MAX_CIPHERTEXT) {
      throw new TlsError('RecordOverflow', `record length ${length} exceeds 2^14 + 256`);
    }
    if (avail < RECORD_HEADER_LENGTH + length) return null;
    const header = b.subarray(s, s + RECORD_HEADER_LENGTH);
    const fragment = b.subarray(s + RECORD_HEADER_LENGTH, s + RECORD_HEADER_LENGTH + length);
    this.start += RECORD_HEADER_LENGTH + length;
    if (this.start === this.end) {
      this.buf = new Uint8Array(0);
      this.start = this.end = 0;
      this.owned = false;
    }
    return { type, version, header, fragment };
  }
}

/** Encodes a record header: type, legacy_record_version, length (§5.1). */
export function recordHeader(type: number, length: number, version = 0x0303): Uint8Array {
  return new Uint8Array([type, version >>> 8, version & 0xff, length >>> 8, length & 0xff]);
}

/** An unprotected record (TLSPlaintext). `fragment` must not exceed 2^14 bytes. */
export function encodePlaintextRecord(type: number, fragment: Uint8Array, version = 0x0303): Uint8Array {
  const out = new Uint8Array(RECORD_HEADER_LENGTH + fragment.length);
  out[0] = type;
  out[1] = version >>> 8;
  out[2] = version & 0xff;
  out[3] = fragment.length >>> 8;
  out[4] = fragment.length & 0xff;
  out.set(fragment, RECORD_HEADER_LENGTH);
  return out;
}
