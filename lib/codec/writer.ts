/**
 * A growable writer for TLS presentation-language structures (RFC 8446 §3). Length prefixes are
 * back-patched: `w.vec16(() => { ... })` writes the body, then its length.
 */
export class Writer {
  private buf: Uint8Array;
  private pos = 0;

  constructor(initialCapacity = 256) {
    this.buf = new Uint8Array(initialCapacity);
  }

  get length(): number {
    return this.pos;
  }

  private ensure(n: number): void {
    if (this.pos + n <= this.buf.length) return;
    let cap = Math.max(16, this.buf.length * 2); // a writer made with capacity 0 must still grow
    while (cap < this.pos + n) cap *= 2;
    const next = new Uint8Array(cap);
    next.set(this.buf.subarray(0, this.pos));
    this.buf = next;
  }

  u8(v: number): this {
    this.ensure(1);
    this.buf[this.pos++] = v & 0xff;
    return this;
  }
  u16(v: number): this {
    this.ensure(2);
    this.buf[this.pos++] = (v >>> 8) & 0xff;
    this.buf[this.pos++] = v & 0xff;
    return this;
  }
  u24(v: number): this {
    this.ensure(3);
    this.buf[this.pos++] = (v >>> 16) & 0xff;
    this.buf[this.pos++] = (v >>> 8) & 0xff;
    this.buf[this.pos++] = v & 0xff;
    return this;
  }
  u32(v: number): this {
    this.ensure(4);
    this.buf[this.pos++] = (v >>> 24) & 0xff;
    this.buf[this.pos++] = (v >>> 16) & 0xff;
    this.buf[this.pos++] = (v >>> 8) & 0xff;
    this.buf[this.pos++] = v & 0xff;
    return this;
  }
  bytes(b: Uint8Array): this {
    this.ensure(b.length);
    this.buf.set(b, this.pos);
    this.pos += b.length;
    return this;
  }

  /** An 8-bit length-prefixed vector: raw bytes, or a body written by a callback. */
  vec8(body: Uint8Array | ((w: this) => void)): this {
    return this.vec(1, 0xff, body);
  }
  /** A 16-bit length-prefixed vector. */
  vec16(body: Uint8Array | ((w: this) => void)): this {
    return this.vec(2, 0xffff, body);
  }
  /** A 24-bit length-prefixed vector. */
  vec24(body: Uint8Array | ((w: this) => void)): this {
    return this.vec(3, 0xffffff, body);
  }

  private vec(width: 1 | 2 | 3, max: number, body: Uint8Array | ((w: this) => void)): this {
    this.ensure(width);
    const at = this.pos;
    this.pos += width;
    if (body instanceof Uint8Array) this.bytes(body);
    else body(this);
    const n = this.pos - at - width;
    if (n > max) throw new RangeError(`vector of ${n} bytes exceeds its ${width * 8}-bit length prefix`);
    for (let i = width - 1; i >= 0; i--) this.buf[at + (width - 1 - i)] = (n >>> (8 * i)) & 0xff;
    return this;
  }

  /** The bytes written so far (a fresh copy trimmed to length). */
  finish(): Uint8Array {
    return this.buf.slice(0, this.pos);
  }
}
