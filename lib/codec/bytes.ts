/** Small byte helpers shared by every layer. Runtime-neutral. */

export function concat(...parts: Uint8Array[]): Uint8Array {
  let n = 0;
  for (const p of parts) n += p.length;
  const out = new Uint8Array(n);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

export function toHex(b: Uint8Array): string {
  let s = '';
  for (let i = 0; i < b.length; i++) s += b[i].toString(16).padStart(2, '0');
  return s;
}

export function fromHex(hex: string): Uint8Array {
  const h = hex.replace(/\s+/g, '');
  if (h.length % 2 !== 0 || /[^0-9a-fA-F]/.test(h)) throw new TypeError('fromHex: expected an even number of hex digits');
  const out = new Uint8Array(h.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(h.substr(i * 2, 2), 16);
  return out;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();
export function utf8(s: string): Uint8Array {
  return encoder.encode(s);
}
export function fromUtf8(b: Uint8Array): string {
  return decoder.decode(b);
}

/** Byte equality in time that depends only on the lengths (for MACs, binders, Finished). */
export function equalConstantTime(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  let d = 0;
  for (let i = 0; i < a.length; i++) d |= a[i] ^ b[i];
  return d === 0;
}

/**
 * A fresh copy of `b`. (Never `b.slice()`: on a Node Buffer, `slice` returns a view of the same memory, so
 * wiping the "copy" would wipe the caller's key.)
 */
export function copyBytes(b: Uint8Array): Uint8Array {
  const out = new Uint8Array(b.length);
  out.set(b);
  return out;
}

/**
 * A plain Uint8Array over the same bytes as `b` (no copy), so that a subclass such as Node's Buffer, whose
 * `slice` and `toString` differ, never reaches a caller.
 */
export function plainView(b: Uint8Array): Uint8Array {
  return new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
}

/** A Uint8Array (a Node Buffer too), also one made in another realm (an iframe, a vm context). */
export function isBytes(v: unknown): v is Uint8Array {
  return v instanceof Uint8Array || Object.prototype.toString.call(v) === '[object Uint8Array]';
}

/**
 * The bytes of a BufferSource, without a copy: a Uint8Array as it is; another view (a DataView, an Int16Array)
 * or an ArrayBuffer (a SharedArrayBuffer too) as a Uint8Array over the same memory. Null for anything else (a
 * string, a number, an array of numbers), which has no bytes of its own.
 */
export function bufferSourceBytes(v: unknown): Uint8Array | null {
  if (isBytes(v)) return v;
  const tag = Object.prototype.toString.call(v);
  const buffer = tag === '[object ArrayBuffer]' || tag === '[object SharedArrayBuffer]';
  if (!buffer && !ArrayBuffer.isView(v)) return null;
  try {
    return buffer ? new Uint8Array(v as ArrayBuffer) : new Uint8Array((v as ArrayBufferView).buffer, (v as ArrayBufferView).byteOffset, (v as ArrayBufferView).byteLength);
  } catch {
    // A detached (transferred) buffer, which a view cannot be made of: no bytes, as WebIDL's "get a copy of the
    // bytes held by the buffer source" answers (a detached Uint8Array's length is 0 likewise).
    return new Uint8Array(0);
  }
}

/** What `v` is, for an error message: its type or class, never its content (it may be secret). */
export function kindOf(v: unknown): string {
  if (typeof v === 'string') return `a string of ${v.length} characters`;
  if (v === null || v === undefined) return String(v);
  const name: string = typeof v === 'object' ? (Object.getPrototypeOf(v)?.constructor?.name ?? 'object') : typeof v;
  return `${/^[aeiou]/i.test(name) ? 'an' : 'a'} ${name}`;
}

/** Overwrites key material with zeros. */
export function wipe(...bufs: (Uint8Array | undefined | null)[]): void {
  for (const b of bufs) if (b) b.fill(0);
}
