/**
 * A bounds-checked reader for TLS presentation-language structures (RFC 8446 §3).
 *
 * Length-prefixed vectors are read through nested scopes ({@link Reader.vec8}, {@link Reader.scope16}, …)
 * that must be consumed exactly: a leftover or a missing byte raises a `decode_error` {@link TlsError}.
 * Nothing here throws anything else.
 */
import { TlsError } from '../errors.js';

export class Reader {
  private pos: number;
  private readonly end: number;

  constructor(
    readonly buf: Uint8Array,
    start = 0,
    end = buf.length,
  ) {
    this.pos = start;
    this.end = end;
  }

  /** Current absolute offset into {@link buf}. */
  get offset(): number {
    return this.pos;
  }
  get remaining(): number {
    return this.end - this.pos;
  }
  get atEnd(): boolean {
    return this.pos === this.end;
  }

  private need(n: number, what: string): void {
    if (n > this.end - this.pos) {
      throw new TlsError('DecodeTruncated', `${what}: need ${n} bytes, ${this.end - this.pos} left`);
    }
  }

  u8(what = 'uint8'): number {
    this.need(1, what);
    return this.buf[this.pos++];
  }
  u16(what = 'uint16'): number {
    this.need(2, what);
    const v = (this.buf[this.pos] << 8) | this.buf[this.pos + 1];
    this.pos += 2;
    return v;
  }
  u24(what = 'uint24'): number {
    this.need(3, what);
    const v = (this.buf[this.pos] << 16) | (this.buf[this.pos + 1] << 8) | this.buf[this.pos + 2];
    this.pos += 3;
    return v;
  }
  u32(what = 'uint32'): number {
    this.need(4, what);
    const v =
      ((this.buf[this.pos] << 24) | (this.buf[this.pos + 1] << 16) | (this.buf[this.pos + 2] << 8) | this.buf[this.pos + 3]) >>> 0;
    this.pos += 4;
    return v;
  }
  /** `n` raw bytes, as a view (no copy). */
  bytes(n: number, what = 'bytes'): Uint8Array {
    this.need(n, what);
    const v = this.buf.subarray(this.pos, this.pos + n);
    this.pos += n;
    return v;
  }
  /** The rest of this scope. */
  rest(): Uint8Array {
    return this.bytes(this.remaining);
  }

  /** opaque<min..2^8-1> */
  vec8(what = 'opaque<..2^8-1>', min = 0): Uint8Array {
    const n = this.u8(what);
    if (n < min) throw new TlsError(min === 1 && n === 0 ? 'DecodeEmptyVector' : 'DecodeBadLength', `${what}: length ${n} < ${min}`);
    return this.bytes(n, what);
  }
  /** opaque<min..2^16-1> */
  vec16(what = 'opaque<..2^16-1>', min = 0): Uint8Array {
    const n = this.u16(what);
    if (n < min) throw new TlsError(min === 1 && n === 0 ? 'DecodeEmptyVector' : 'DecodeBadLength', `${what}: length ${n} < ${min}`);
    return this.bytes(n, what);
  }
  /** opaque<min..2^24-1> */
  vec24(what = 'opaque<..2^24-1>', min = 0): Uint8Array {
    const n = this.u24(what);
    if (n < min) throw new TlsError(min === 1 && n === 0 ? 'DecodeEmptyVector' : 'DecodeBadLength', `${what}: length ${n} < ${min}`);
    return this.bytes(n, what);
  }

  /** Reads an 8-bit length, then runs `body` on a sub-reader that must be consumed exactly. */
  scope8<T>(what: string, body: (r: Reader) => T, min = 0): T {
    return this.scope(this.u8(what), what, body, min);
  }
  /** Reads a 16-bit length, then runs `body` on a sub-reader that must be consumed exactly. */
  scope16<T>(what: string, body: (r: Reader) => T, min = 0): T {
    return this.scope(this.u16(what), what, body, min);
  }
  /** Reads a 24-bit length, then runs `body` on a sub-reader that must be consumed exactly. */
  scope24<T>(what: string, body: (r: Reader) => T, min = 0): T {
    return this.scope(this.u24(what), what, body, min);
  }

  private scope<T>(n: number, what: string, body: (r: Reader) => T, min: number): T {
    if (n < min) throw new TlsError(min === 1 && n === 0 ? 'DecodeEmptyVector' : 'DecodeBadLength', `${what}: length ${n} < ${min}`);
    this.need(n, what);
    const sub = new Reader(this.buf, this.pos, this.pos + n);
    const v = body(sub);
    sub.expectEnd(what);
    this.pos += n;
    return v;
  }

  /** Runs `body` over every element of the rest of this scope. */
  each(body: (r: Reader) => void): void {
    while (!this.atEnd) body(this);
  }

  /** Raises decode_error unless this scope is fully consumed. */
  expectEnd(what = 'structure'): void {
    if (this.pos !== this.end) {
      throw new TlsError('DecodeTrailingBytes', `${what}: ${this.end - this.pos} unexpected trailing bytes`);
    }
  }
}
