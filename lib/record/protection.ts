/**
 * Record protection for one direction (RFC 8446 §5.2–§5.4), like Go's halfConn: the AEAD key, the static IV and
 * the 64-bit sequence number of the records sent (or received) under one traffic secret.
 *
 * - per-record nonce = write_iv XOR (sequence number, left-padded to the IV length) (§5.3);
 * - additional data = the record header (opaque_type 23, legacy_record_version 0x0303, length) (§5.2);
 * - TLSInnerPlaintext = content || ContentType || zeros (padding) (§5.2, §5.4).
 */
import { ContentType } from '../codec/enums.js';
import { copyBytes, wipe } from '../codec/bytes.js';
import type { Aead, CryptoProvider } from '../crypto/provider.js';
import { TlsError } from '../errors.js';
import type { SuiteInfo } from '../suites.js';
import { MAX_CIPHERTEXT, MAX_PLAINTEXT, RECORD_HEADER_LENGTH, type RawRecord } from './deframer.js';

export interface OpenedRecord {
  /** The real content type, from the inner plaintext. */
  readonly type: number;
  readonly content: Uint8Array;
}

export class RecordProtection {
  private readonly aead: Aead;
  private readonly iv: Uint8Array;
  private readonly nonce: Uint8Array;
  /** The 64-bit sequence number as two 32-bit halves (§5.3: it must never wrap). */
  private seqHi = 0;
  private seqLo = 0;
  private exhausted = false;
  /** Maximum TLSInnerPlaintext length we accept (§5.4: 2^14 + 1; lowered by record_size_limit, RFC 8449 §4). */
  maxInnerPlaintext = MAX_PLAINTEXT + 1;

  constructor(
    crypto: CryptoProvider,
    readonly suite: SuiteInfo,
    key: Uint8Array,
    iv: Uint8Array,
  ) {
    if (iv.length !== suite.ivLength) throw new RangeError(`record IV must be ${suite.ivLength} bytes`);
    this.aead = crypto.aead(suite.aead, key);
    this.iv = copyBytes(iv);
    this.nonce = new Uint8Array(iv.length);
  }

  /** Records protected so far under this key (for tests and key-usage limits). */
  get sequence(): number {
    return this.seqHi * 0x1_0000_0000 + this.seqLo;
  }

  /** Tests only: jump the sequence number (to check exhaustion). */
  dangerousSetSequence(hi: number, lo: number): void {
    this.seqHi = hi >>> 0;
    this.seqLo = lo >>> 0;
    this.exhausted = false;
  }

  /**
   * Moves the sequence number forward to `sequence` (after a record offload used the numbers in between;
   * lib/connection/offload.ts). Never backwards: a sequence number, hence a nonce, is used once (§5.3).
   */
  advanceTo(sequence: number): void {
    if (!Number.isSafeInteger(sequence) || sequence < this.sequence) throw new RangeError(`advanceTo(${sequence}): the sequence number is already ${this.sequence}`);
    this.seqHi = Math.floor(sequence / 0x1_0000_0000);
    this.seqLo = sequence >>> 0;
  }

  /** The nonce of the current sequence number (§5.3); the number advances only once a record is done. */
  private currentNonce(): Uint8Array {
    if (this.exhausted) {
      throw new TlsError('RecordSequenceExhausted', 'the 64-bit record sequence number is exhausted; a KeyUpdate was needed');
    }
    const n = this.nonce;
    const L = n.length;
    n.set(this.iv);
    n[L - 8] ^= this.seqHi >>> 24;
    n[L - 7] ^= (this.seqHi >>> 16) & 0xff;
    n[L - 6] ^= (this.seqHi >>> 8) & 0xff;
    n[L - 5] ^= this.seqHi & 0xff;
    n[L - 4] ^= this.seqLo >>> 24;
    n[L - 3] ^= (this.seqLo >>> 16) & 0xff;
    n[L - 2] ^= (this.seqLo >>> 8) & 0xff;
    n[L - 1] ^= this.seqLo & 0xff;
    return n;
  }

  private advance(): void {
    if (this.seqLo === 0xffffffff) {
      this.seqLo = 0;
      if (this.seqHi === 0xffffffff) this.exhausted = true;
      else this.seqHi++;
    } else this.seqLo++;
  }

  /** Bytes a record adds to its content (without padding): header, inner content type and tag. */
  get overhead(): number {
    return RECORD_HEADER_LENGTH + 1 + this.aead.tagLength;
  }

  /**
   * Protects `content` of `type` into one complete TLSCiphertext record (header included).
   * `content.length + 1 + padding` must not exceed 2^14 + 1.
   */
  seal(type: number, content: Uint8Array, padding = 0): Uint8Array {
    const out = new Uint8Array(content.length + padding + this.overhead);
    this.sealInto(type, [content], out, 0, padding);
    return out;
  }

  /**
   * Protects the concatenation of `parts` (the content, given in pieces so that a record can span the
   * caller's buffers without joining them first) as one record of `type`, written into `out` from
   * `offset`; returns the record's length. The header is written in place and serves as the additional
   * data, so the record is built with a single copy of the content (with a provider that has
   * {@link Aead.sealInto}).
   */
  sealInto(type: number, parts: readonly Uint8Array[], out: Uint8Array, offset: number, padding = 0): number {
    let contentLength = 0;
    for (const p of parts) contentLength += p.length;
    const innerLength = contentLength + 1 + padding;
    if (innerLength > MAX_PLAINTEXT + 1) throw new RangeError(`record content of ${contentLength} bytes (+${padding} padding) is too long`);
    const length = innerLength + this.aead.tagLength;
    if (offset < 0 || offset + RECORD_HEADER_LENGTH + length > out.length) throw new RangeError(`no room for a ${RECORD_HEADER_LENGTH + length}-byte record at offset ${offset}`);
    // §5.2: opaque_type application_data, legacy_record_version 0x0303, the length of the encrypted_record.
    const header = out.subarray(offset, offset + RECORD_HEADER_LENGTH);
    header[0] = ContentType.application_data;
    header[1] = 0x03;
    header[2] = 0x03;
    header[3] = length >>> 8;
    header[4] = length & 0xff;
    // §5.2: TLSInnerPlaintext = content || ContentType type || uint8 zeros[length_of_padding].
    let trailer: Uint8Array;
    if (padding === 0) trailer = typeByte(type);
    else {
      trailer = new Uint8Array(1 + padding);
      trailer[0] = type;
    }
    const nonce = this.currentNonce();
    if (this.aead.sealInto) {
      this.aead.sealInto(nonce, header, parts.length === 1 ? [parts[0], trailer] : [...parts, trailer], out, offset + RECORD_HEADER_LENGTH);
    } else {
      const inner = new Uint8Array(innerLength);
      let at = 0;
      for (const p of parts) {
        inner.set(p, at);
        at += p.length;
      }
      inner[contentLength] = type;
      out.set(this.aead.seal(nonce, header, inner), offset + RECORD_HEADER_LENGTH);
    }
    this.advance();
    return RECORD_HEADER_LENGTH + length;
  }

  /** Removes protection from an application_data record; returns the real type and content. */
  open(record: RawRecord): OpenedRecord {
    // §5.2: the deframer refuses a TLSCiphertext over 2^14 + 256 bytes. A lowered limit (RFC 8449) is checked on
    // the plaintext below, after authentication, so that a skipped 0-RTT record (§4.2.10) fails as bad_record_mac.
    if (record.fragment.length < this.aead.tagLength + 1) {
      // Too short to hold even the content type and the tag: it cannot authenticate.
      throw new TlsError('RecordBadMac', 'protected record shorter than its authentication tag');
    }
    // A record that fails authentication does not advance the sequence number, so a server skipping
    // rejected 0-RTT records (§4.2.10) stays in step.
    const inner = this.aead.open(this.currentNonce(), record.header, record.fragment);
    if (inner === null) throw new TlsError('RecordBadMac', 'record authentication failed');
    this.advance();
    if (inner.length > this.maxInnerPlaintext) {
      throw new TlsError('RecordOverflow', `inner plaintext of ${inner.length} bytes exceeds the limit`);
    }
    // §5.4: scan back over the zero padding to the content type; all zeros is unexpected_message.
    let i = inner.length - 1;
    while (i >= 0 && inner[i] === 0) i--;
    if (i < 0) throw new TlsError('RecordAllZeroPlaintext', 'protected record has no non-zero content type');
    return { type: inner[i], content: inner.subarray(0, i) };
  }

  /** Wipes the key material. */
  destroy(): void {
    this.aead.destroy();
    wipe(this.iv, this.nonce);
  }
}

/** One-byte inner content types, made once (never written to: providers do not modify their inputs). */
const TYPE_BYTES: readonly Uint8Array[] = Array.from({ length: 256 }, (_, i) => Uint8Array.of(i));
function typeByte(type: number): Uint8Array {
  return TYPE_BYTES[type & 0xff];
}

export { MAX_CIPHERTEXT };
