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

/** A record as the deframer returns it: `header` and `fragment` are views of `bytes`, the whole record. */
export interface DeframedRecord extends RawRecord {
  readonly bytes: Uint8Array;
}

export class Deframer {
  /**
   * Received chunks not yet consumed, as views of the caller's bytes (never copied on push); the record
   * stream continues at `chunks[head][pos]`. A record that lies within one chunk comes out as a view of
   * it; only a record that straddles chunks is copied, once, into a buffer of exactly its size.
   */
  private chunks: Uint8Array[] = [];
  private head = 0;
  private pos = 0;
  private total = 0;
  /** The deframer's own buffer, which {@link detach} fills (appending while it has room). */
  private own: Uint8Array | null = null;
  /** Bytes pushed so far, all told (positions in the stream count from the first of them). */
  private received = 0;
  /** {@link check} has checked every record header before this position of the stream (a record boundary). */
  private checkedTo = 0;

  /** Bytes received but not yet returned as a record. */
  get buffered(): number {
    return this.total;
  }

  /** Appends received bytes. The deframer never writes into `data`; it keeps a view of it until {@link detach}. */
  push(data: Uint8Array): void {
    if (data.length === 0) return;
    this.chunks.push(data);
    this.total += data.length;
    this.received += data.length;
  }

  /**
   * A copy of the next record's header as far as it is buffered (up to 5 bytes; fewer when no more have come):
   * what a trace shows of a record whose header {@link next} refused.
   */
  peekHeader(): Uint8Array {
    const n = Math.min(this.total, RECORD_HEADER_LENGTH);
    const out = new Uint8Array(n);
    for (let i = 0; i < n; i++) out[i] = this.byteAt(i);
    return out;
  }

  /**
   * True when a whole record is buffered, so that {@link next} returns one. Reads its header only (call
   * {@link check} first: a bad header is not reported here).
   */
  get hasRecord(): boolean {
    if (this.total < RECORD_HEADER_LENGTH) return false;
    return this.total >= RECORD_HEADER_LENGTH + ((this.byteAt(3) << 8) | this.byteAt(4));
  }

  /**
   * Checks the header of every record buffered, without taking any out: throws the TlsError that {@link next}
   * will throw when it reaches a bad one (an unknown content type, a length over 2^14 + 256; §5.1), so that a
   * caller who takes records out later, a few at a time, learns of it when the bytes arrive, as it would taking
   * them all out at once. Headers already checked are not read again, so checking after every push costs one
   * read of each header. The records stay where they are (views of the chunks pushed, or of {@link detach}'s
   * buffer): nothing is allocated.
   */
  check(): void {
    const consumed = this.received - this.total;
    let at = Math.max(this.checkedTo, consumed) - consumed;
    // `at` is byte `off` of chunk `k`: walked forward with it (a header split across chunks is read with byteAt).
    let k = this.head;
    let off = this.pos + at;
    while (k < this.chunks.length && off >= this.chunks[k].length) off -= this.chunks[k++].length;
    while (at < this.total) {
      const c = this.chunks[k];
      const inChunk = off + RECORD_HEADER_LENGTH <= c.length;
      const type = c[off];
      if (!isRecordType(type)) throw unknownRecordType(type);
      if (this.total - at < RECORD_HEADER_LENGTH) break;
      const length = inChunk ? (c[off + 3] << 8) | c[off + 4] : (this.byteAt(at + 3) << 8) | this.byteAt(at + 4);
      if (length > MAX_CIPHERTEXT) throw recordOverflow(length);
      const size = RECORD_HEADER_LENGTH + length;
      if (this.total - at < size) break;
      at += size;
      off += size;
      while (k < this.chunks.length && off >= this.chunks[k].length) off -= this.chunks[k++].length;
    }
    this.checkedTo = consumed + at;
  }

  /** The next complete record, or null when more bytes are needed. Throws TlsError on a bad header. */
  next(): DeframedRecord | null {
    if (this.total < 1) return null;
    const first = this.chunks[this.head];
    const type = first[this.pos];
    // §5: "If a TLS implementation receives an unexpected record type, it MUST terminate the connection
    // with an unexpected_message alert." Checked on the first byte, so garbage fails fast.
    if (
      type !== ContentType.handshake &&
      type !== ContentType.application_data &&
      type !== ContentType.alert &&
      type !== ContentType.change_cipher_spec
    ) {
      throw unknownRecordType(type);
    }
    if (this.total < RECORD_HEADER_LENGTH) return null;
    const inFirst = first.length - this.pos;
    let version: number;
    let length: number;
    if (inFirst >= RECORD_HEADER_LENGTH) {
      const s = this.pos;
      version = (first[s + 1] << 8) | first[s + 2];
      length = (first[s + 3] << 8) | first[s + 4];
    } else {
      version = (this.byteAt(1) << 8) | this.byteAt(2);
      length = (this.byteAt(3) << 8) | this.byteAt(4);
    }
    if (length > MAX_CIPHERTEXT) {
      throw recordOverflow(length);
    }
    const size = RECORD_HEADER_LENGTH + length;
    if (this.total < size) return null;
    let record: Uint8Array;
    if (inFirst >= size) {
      record = first.subarray(this.pos, this.pos + size);
      this.pos += size;
      if (this.pos === first.length) this.dropHead();
    } else {
      record = new Uint8Array(size);
      for (let at = 0; at < size; ) {
        const c = this.chunks[this.head];
        const take = Math.min(size - at, c.length - this.pos);
        record.set(c.subarray(this.pos, this.pos + take), at);
        at += take;
        this.pos += take;
        if (this.pos === c.length) this.dropHead();
      }
    }
    this.total -= size;
    return { type, version, header: record.subarray(0, RECORD_HEADER_LENGTH), fragment: record.subarray(RECORD_HEADER_LENGTH), bytes: record };
  }

  /**
   * Called instead of {@link detach} when the caller handed its chunks over (they are never written again, as
   * the buffers of Node's net.Socket, fresh for every read): pending bytes stay views of them, so a record
   * split across two reads costs one copy (when it is taken out) instead of two. Once more than
   * {@link MAX_RETAINED_CHUNKS} chunks are pending, they are joined by {@link detach} all the same, so a peer
   * that trickles its bytes cannot make us hold (and walk) one small chunk per read. The price: a record's first
   * bytes at the end of a large read keep that whole read (64 KiB at most from a net.Socket) until the record
   * is complete or the chunks are joined, where a copy would keep only those bytes.
   */
  retainViews(): void {
    if (this.chunks.length - this.head > MAX_RETAINED_CHUNKS) this.detach();
  }

  /** The number of received chunks that pending bytes are spread over (for tests and diagnostics). */
  get pendingChunks(): number {
    return this.total === 0 ? 0 : this.chunks.length - this.head;
  }

  /**
   * Makes the pending bytes our own: copies whatever is still a view of the caller's chunks into a buffer of
   * the deframer's, so the caller may reuse its read buffer once `receive` returns. Bytes are appended to that
   * buffer while it has room (records already returned stay valid: it is never overwritten), so a record
   * arriving in many small reads is copied in amortised linear time.
   */
  detach(): void {
    if (this.total === 0) {
      this.chunks = [];
      this.head = 0;
      this.pos = 0;
      return;
    }
    const own = this.own;
    const first = this.chunks[this.head];
    const headIsOwn = own !== null && first.buffer === own.buffer && first.byteOffset === own.byteOffset;
    if (headIsOwn && this.chunks.length === this.head + 1) return;
    const used = headIsOwn ? first.length : 0;
    const foreign = headIsOwn ? this.total - (first.length - this.pos) : this.total;
    if (headIsOwn && used + foreign <= own.length) {
      let at = used;
      for (let k = this.head + 1; k < this.chunks.length; k++) {
        own.set(this.chunks[k], at);
        at += this.chunks[k].length;
      }
      this.chunks = [own.subarray(0, at)];
      this.head = 0;
      return;
    }
    const next = new Uint8Array(Math.max(2 * this.total, 1024));
    let at = 0;
    for (let k = this.head; k < this.chunks.length; k++) {
      const c = k === this.head ? this.chunks[k].subarray(this.pos) : this.chunks[k];
      next.set(c, at);
      at += c.length;
    }
    this.own = next;
    this.chunks = [next.subarray(0, at)];
    this.head = 0;
    this.pos = 0;
  }

  /** The byte `i` positions into the pending stream (for a header split across chunks). */
  private byteAt(i: number): number {
    let k = this.head;
    let at = this.pos + i;
    while (at >= this.chunks[k].length) {
      at -= this.chunks[k].length;
      k++;
    }
    return this.chunks[k][at];
  }

  private dropHead(): void {
    this.chunks[this.head] = EMPTY;
    this.head++;
    this.pos = 0;
    if (this.head === this.chunks.length) {
      this.chunks = [];
      this.head = 0;
    } else if (this.head >= 64 && this.head * 2 >= this.chunks.length) {
      this.chunks = this.chunks.slice(this.head);
      this.head = 0;
    }
  }
}

const EMPTY = new Uint8Array(0);

/** §5: the four record types TLS 1.3 has (next() spells the same test out, on its hot path). */
function isRecordType(type: number): boolean {
  return type === ContentType.handshake || type === ContentType.application_data || type === ContentType.alert || type === ContentType.change_cipher_spec;
}

/** §5: an unknown record type is unexpected_message. */
function unknownRecordType(type: number): TlsError {
  // A byte that reads as text is most likely a peer that does not speak TLS at all (an HTTP client or server):
  // say so, for the person reading the log (found in a README walkthrough).
  const text = type >= 0x20 && type <= 0x7e ? ` (${JSON.stringify(String.fromCharCode(type))}): the peer does not seem to speak TLS (it sent text)` : '';
  return new TlsError('RecordUnknownContentType', `record content type 0x${type.toString(16).padStart(2, '0')}${text}`);
}

/** §5.2: a TLSCiphertext longer than 2^14 + 256 bytes is record_overflow. */
function recordOverflow(length: number): TlsError {
  return new TlsError('RecordOverflow', `record length ${length} exceeds 2^14 + 256`);
}

/** Pending chunks kept as views by {@link Deframer.retainViews} before they are joined into one buffer. */
export const MAX_RETAINED_CHUNKS = 8;

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
