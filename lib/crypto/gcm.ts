/**
 * AES-GCM (NIST SP 800-38D) for the noble provider, built from @noble/ciphers' AES block function
 * (`unsafe.expandKeyLE`, `unsafe.encryptBlock`, `unsafe.ctr32`) and a GHASH of our own, so that what only
 * depends on the key is computed once per key instead of once per record: the AES key schedule and the
 * GHASH multiplication table (`gcm()` from @noble/ciphers rebuilds both on every call, which dominates
 * small records; bench/RESULTS.md has the measurements). It is checked against the GCM test vectors and against node:crypto and
 * @noble/ciphers' `gcm` on random inputs (test/record-fastpath.test.ts, test/crypto-providers.test.ts).
 *
 * GHASH multiplies by H with a table of 4-bit windows: for each of the 32 nibbles of a block, the product of
 * that nibble (in its position) with H, precomputed; a block costs 32 lookups and XORs, and the table is
 * 8 KiB per key. Like @noble/ciphers' own GHASH and AES, these table lookups depend on secret data, so
 * they are not constant-time with respect to cache timing; the native provider does not have that caveat.
 *
 * Runtime-neutral; synchronous; only 96-bit nonces (all TLS 1.3 uses).
 */
import { unsafe } from '@noble/ciphers/aes.js';
import { equalConstantTime } from '../codec/bytes.js';

const TAG_LENGTH = 16;

/** One AES-GCM key with its key schedule and GHASH table, for any number of seal/open calls. */
export class AesGcmKey {
  private xk: Uint32Array | null;
  private table: Uint32Array | null;

  /** `key` is 16 or 32 bytes (AES-128 or AES-256); it is not retained. */
  constructor(key: Uint8Array) {
    if (key.length !== 16 && key.length !== 32) throw new TypeError(`AES-GCM: key must be 16 or 32 bytes, got ${key.length}`);
    const xk = unsafe.expandKeyLE(key); // copies the key first when it is not 4-byte aligned
    // H = CIPH_K(0^128) (SP 800-38D §6.4).
    const h = alignedBlock();
    unsafe.encryptBlock(xk, h);
    this.table = ghashTable(h);
    h.fill(0);
    this.xk = xk;
  }

  /**
   * Encrypts the concatenation of `parts` with `nonce` (12 bytes) and `aad`, writing ciphertext || tag into
   * `out` from `offset`; returns the number of bytes written. `out` must not overlap the parts.
   */
  sealInto(nonce: Uint8Array, aad: Uint8Array, parts: readonly Uint8Array[], out: Uint8Array, offset: number): number {
    const { xk, table } = this.live();
    let total = 0;
    for (const p of parts) total += p.length;
    const buf = scratch(total);
    let at = 0;
    for (const p of parts) {
      buf.set(p, at);
      at += p.length;
    }
    const data = buf.subarray(0, total);
    try {
      // C = GCTR_K(inc32(J0), P), in place in the aligned scratch (§7.1 steps 2-3).
      const counter = j0(nonce);
      const mask = alignedBlock();
      mask.set(counter);
      unsafe.encryptBlock(xk, mask); // CIPH_K(J0), the tag mask
      counter[15] = 2;
      if (total > 0) unsafe.ctr32(xk, false, counter, data, data);
      out.set(data, offset);
      // T = MSB_t(GCTR_K(J0, S)), S = GHASH_H(A || 0^v || C || 0^u || [len(A)]64 || [len(C)]64) (§7.1 steps 5-6).
      const tag = ghash(table, aad, out.subarray(offset, offset + total));
      for (let i = 0; i < TAG_LENGTH; i++) out[offset + total + i] = tag[i] ^ mask[i];
      mask.fill(0);
      counter.fill(0);
      tag.fill(0);
    } finally {
      data.fill(0);
    }
    return total + TAG_LENGTH;
  }

  /** Encrypts `plaintext`; returns ciphertext || tag. */
  seal(nonce: Uint8Array, aad: Uint8Array, plaintext: Uint8Array): Uint8Array {
    const out = new Uint8Array(plaintext.length + TAG_LENGTH);
    this.sealInto(nonce, aad, [plaintext], out, 0);
    return out;
  }

  /** Decrypts ciphertext || tag; returns the plaintext, or null when the tag does not verify (nothing is decrypted then). */
  open(nonce: Uint8Array, aad: Uint8Array, ciphertextAndTag: Uint8Array): Uint8Array | null {
    const { xk, table } = this.live();
    const ctLength = ciphertextAndTag.length - TAG_LENGTH;
    if (ctLength < 0) return null;
    const ciphertext = ciphertextAndTag.subarray(0, ctLength);
    const counter = j0(nonce);
    const expected = alignedBlock();
    expected.set(counter);
    unsafe.encryptBlock(xk, expected);
    const s = ghash(table, aad, ciphertext);
    for (let i = 0; i < TAG_LENGTH; i++) expected[i] ^= s[i];
    s.fill(0);
    // §7.2 step 8: the tag is checked before any plaintext is produced, in constant time.
    const ok = equalConstantTime(expected, ciphertextAndTag.subarray(ctLength));
    expected.fill(0);
    if (!ok) {
      counter.fill(0);
      return null;
    }
    // A fresh array starts on an aligned offset, as ctr32 needs: decrypt in place there.
    const plaintext = new Uint8Array(ctLength);
    plaintext.set(ciphertext);
    counter[15] = 2;
    if (ctLength > 0) unsafe.ctr32(xk, false, counter, plaintext, plaintext);
    counter.fill(0);
    return plaintext;
  }

  /** Wipes the key schedule and the GHASH table. */
  destroy(): void {
    this.xk?.fill(0);
    this.table?.fill(0);
    this.xk = null;
    this.table = null;
  }

  private live(): { xk: Uint32Array; table: Uint32Array } {
    if (!this.xk || !this.table) throw new TypeError('AES-GCM: this key was destroyed');
    return { xk: this.xk, table: this.table };
  }
}

/** J0 = IV || 0^31 || 1 for a 96-bit IV (§7.1 step 2), in an aligned block. */
function j0(nonce: Uint8Array): Uint8Array {
  if (nonce.length !== 12) throw new TypeError(`AES-GCM: nonce must be 12 bytes, got ${nonce.length}`);
  const b = alignedBlock();
  b.set(nonce);
  b[15] = 1;
  return b;
}

/** A fresh 16-byte block on its own buffer (offset 0, so 4-byte aligned as the AES helpers need). */
function alignedBlock(): Uint8Array {
  return new Uint8Array(16);
}

/** The shared scratch buffer of {@link AesGcmKey.sealInto} (aligned, grown on demand, zeroed after use). */
let scratchBuffer = new Uint8Array(0);
function scratch(length: number): Uint8Array {
  if (scratchBuffer.length < length) scratchBuffer = new Uint8Array(Math.max(length, (1 << 14) + 256));
  return scratchBuffer;
}

// ---------------------------------------------------------------------------------------------------------
// GHASH (SP 800-38D §6.4). A 128-bit block is four big-endian 32-bit words; bit 0 is the most significant
// bit of the first byte. Multiplying by x shifts right by one bit, reducing by R = 11100001 || 0^120.

/** 32 windows x 16 nibble values x 4 words: entry (w, n) is the product of nibble n at bits 4w..4w+3 with H. */
function ghashTable(h: Uint8Array): Uint32Array {
  // V_i = H * x^i for i = 0..127 (the "V" sequence of Algorithm 1).
  const v = new Uint32Array(128 * 4);
  let v0 = be32(h, 0);
  let v1 = be32(h, 4);
  let v2 = be32(h, 8);
  let v3 = be32(h, 12);
  for (let i = 0; i < 128; i++) {
    v[4 * i] = v0;
    v[4 * i + 1] = v1;
    v[4 * i + 2] = v2;
    v[4 * i + 3] = v3;
    const lsb = v3 & 1;
    v3 = (v3 >>> 1) | (v2 << 31);
    v2 = (v2 >>> 1) | (v1 << 31);
    v1 = (v1 >>> 1) | (v0 << 31);
    v0 = (v0 >>> 1) ^ (lsb ? 0xe1000000 : 0);
  }
  const t = new Uint32Array(32 * 16 * 4);
  for (let w = 0; w < 32; w++) {
    for (let n = 0; n < 16; n++) {
      let a = 0;
      let b = 0;
      let c = 0;
      let d = 0;
      for (let j = 0; j < 4; j++) {
        if ((n >>> (3 - j)) & 1) {
          const k = 4 * (4 * w + j);
          a ^= v[k];
          b ^= v[k + 1];
          c ^= v[k + 2];
          d ^= v[k + 3];
        }
      }
      const e = 4 * (16 * w + n);
      t[e] = a;
      t[e + 1] = b;
      t[e + 2] = c;
      t[e + 3] = d;
    }
  }
  v.fill(0);
  return t;
}

/** GHASH_H(A || 0^v || C || 0^u || [len(A)]64 || [len(C)]64) as 16 bytes. */
function ghash(t: Uint32Array, aad: Uint8Array, ciphertext: Uint8Array): Uint8Array {
  const y = new Uint32Array(4);
  absorb(t, y, aad);
  absorb(t, y, ciphertext);
  const aBits = aad.length * 8;
  const cBits = ciphertext.length * 8;
  mulBlock(t, y, Math.floor(aBits / 0x1_0000_0000), aBits >>> 0, Math.floor(cBits / 0x1_0000_0000), cBits >>> 0);
  const out = new Uint8Array(16);
  for (let i = 0; i < 4; i++) {
    const w = y[i];
    out[4 * i] = w >>> 24;
    out[4 * i + 1] = (w >>> 16) & 0xff;
    out[4 * i + 2] = (w >>> 8) & 0xff;
    out[4 * i + 3] = w & 0xff;
  }
  y.fill(0);
  return out;
}

/** Absorbs `data`, zero-padded to a whole number of blocks. */
function absorb(t: Uint32Array, y: Uint32Array, data: Uint8Array): void {
  const full = data.length & ~15;
  for (let i = 0; i < full; i += 16) mulBlock(t, y, be32(data, i), be32(data, i + 4), be32(data, i + 8), be32(data, i + 12));
  if (full < data.length) {
    const last = new Uint8Array(16);
    last.set(data.subarray(full));
    mulBlock(t, y, be32(last, 0), be32(last, 4), be32(last, 8), be32(last, 12));
    last.fill(0);
  }
}

/** Y = (Y xor X) * H. */
function mulBlock(t: Uint32Array, y: Uint32Array, x0: number, x1: number, x2: number, x3: number): void {
  const w0 = y[0] ^ x0;
  const w1 = y[1] ^ x1;
  const w2 = y[2] ^ x2;
  const w3 = y[3] ^ x3;
  let z0 = 0;
  let z1 = 0;
  let z2 = 0;
  let z3 = 0;
  let e: number;
  // Window w covers word w >> 3, nibble (w & 7) from the top; entry index = ((w << 4) | nibble) << 2.
  for (let w = 0, base = 0; w < 32; w += 8, base += 512) {
    const word = w === 0 ? w0 : w === 8 ? w1 : w === 16 ? w2 : w3;
    e = base + ((word >>> 26) & 0x3c);
    z0 ^= t[e]; z1 ^= t[e + 1]; z2 ^= t[e + 2]; z3 ^= t[e + 3]; // prettier-ignore
    e = base + 64 + ((word >>> 22) & 0x3c);
    z0 ^= t[e]; z1 ^= t[e + 1]; z2 ^= t[e + 2]; z3 ^= t[e + 3]; // prettier-ignore
    e = base + 128 + ((word >>> 18) & 0x3c);
    z0 ^= t[e]; z1 ^= t[e + 1]; z2 ^= t[e + 2]; z3 ^= t[e + 3]; // prettier-ignore
    e = base + 192 + ((word >>> 14) & 0x3c);
    z0 ^= t[e]; z1 ^= t[e + 1]; z2 ^= t[e + 2]; z3 ^= t[e + 3]; // prettier-ignore
    e = base + 256 + ((word >>> 10) & 0x3c);
    z0 ^= t[e]; z1 ^= t[e + 1]; z2 ^= t[e + 2]; z3 ^= t[e + 3]; // prettier-ignore
    e = base + 320 + ((word >>> 6) & 0x3c);
    z0 ^= t[e]; z1 ^= t[e + 1]; z2 ^= t[e + 2]; z3 ^= t[e + 3]; // prettier-ignore
    e = base + 384 + ((word >>> 2) & 0x3c);
    z0 ^= t[e]; z1 ^= t[e + 1]; z2 ^= t[e + 2]; z3 ^= t[e + 3]; // prettier-ignore
    e = base + 448 + ((word << 2) & 0x3c);
    z0 ^= t[e]; z1 ^= t[e + 1]; z2 ^= t[e + 2]; z3 ^= t[e + 3]; // prettier-ignore
  }
  y[0] = z0;
  y[1] = z1;
  y[2] = z2;
  y[3] = z3;
}

function be32(b: Uint8Array, i: number): number {
  return ((b[i] << 24) | (b[i + 1] << 16) | (b[i + 2] << 8) | b[i + 3]) >>> 0;
}
