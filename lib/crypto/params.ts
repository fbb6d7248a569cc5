/**
 * Sizes of the hashes and AEADs that TLS 1.3 cipher suites use (RFC 8446 §B.4), and the input checks
 * every provider applies at its public edge, so that the backends fail the same way on the same misuse.
 * Runtime-neutral.
 */
import type { AeadName, HashName } from './provider.js';

export interface HashSpec {
  readonly name: HashName;
  readonly outputLength: number;
}

export interface AeadSpec {
  readonly name: AeadName;
  readonly keyLength: number;
  readonly nonceLength: number;
  readonly tagLength: number;
}

export const HASH_SPECS: Readonly<Record<HashName, HashSpec>> = {
  'SHA-256': { name: 'SHA-256', outputLength: 32 },
  'SHA-384': { name: 'SHA-384', outputLength: 48 },
};

/** RFC 5116 §5.1 / RFC 8439 §2.8: 12-byte nonces and 16-byte tags for all three TLS 1.3 AEADs. */
export const AEAD_SPECS: Readonly<Record<AeadName, AeadSpec>> = {
  'AES-128-GCM': { name: 'AES-128-GCM', keyLength: 16, nonceLength: 12, tagLength: 16 },
  'AES-256-GCM': { name: 'AES-256-GCM', keyLength: 32, nonceLength: 12, tagLength: 16 },
  'CHACHA20-POLY1305': { name: 'CHACHA20-POLY1305', keyLength: 32, nonceLength: 12, tagLength: 16 },
};

/** The spec of a hash, or a TypeError naming the unknown algorithm. */
export function hashSpec(name: HashName): HashSpec {
  const spec = Object.prototype.hasOwnProperty.call(HASH_SPECS, name) ? HASH_SPECS[name] : undefined;
  if (!spec) throw new TypeError(`unsupported hash: ${String(name)}`);
  return spec;
}

/** The spec of an AEAD, after checking that `key` has its key length. */
export function aeadSpec(name: AeadName, key: Uint8Array): AeadSpec {
  const spec = Object.prototype.hasOwnProperty.call(AEAD_SPECS, name) ? AEAD_SPECS[name] : undefined;
  if (!spec) throw new TypeError(`unsupported AEAD: ${String(name)}`);
  checkBytes(key, `${name} key`);
  if (key.length !== spec.keyLength) throw new TypeError(`${name}: key must be ${spec.keyLength} bytes, got ${key.length}`);
  return spec;
}

/** Checks the nonce length and the argument types of a seal/open call. */
export function checkAeadCall(spec: AeadSpec, nonce: Uint8Array, aad: Uint8Array, data: Uint8Array): void {
  checkBytes(nonce, `${spec.name} nonce`);
  checkBytes(aad, `${spec.name} aad`);
  checkBytes(data, `${spec.name} input`);
  if (nonce.length !== spec.nonceLength) throw new TypeError(`${spec.name}: nonce must be ${spec.nonceLength} bytes, got ${nonce.length}`);
}

/** RFC 5869 §2.3: L <= 255 * HashLen, and the PRK is at least HashLen bytes. */
export function checkExpand(spec: HashSpec, prk: Uint8Array, info: Uint8Array, length: number): void {
  checkBytes(prk, 'HKDF-Expand PRK');
  checkBytes(info, 'HKDF-Expand info');
  if (!Number.isSafeInteger(length) || length < 0 || length > 255 * spec.outputLength) {
    throw new RangeError(`HKDF-Expand: length must be an integer in 0..${255 * spec.outputLength}, got ${length}`);
  }
  if (prk.length < spec.outputLength) throw new TypeError(`HKDF-Expand: PRK must be at least ${spec.outputLength} bytes, got ${prk.length}`);
}

export function checkBytes(b: unknown, what: string): asserts b is Uint8Array {
  if (!(b instanceof Uint8Array)) throw new TypeError(`${what}: expected a Uint8Array, got ${typeof b}`);
}

/** The argument checks of {@link Aead.sealInto}; returns the total plaintext length. */
export function checkSealInto(spec: AeadSpec, nonce: Uint8Array, aad: Uint8Array, parts: readonly Uint8Array[], out: Uint8Array, offset: number): number {
  checkAeadCall(spec, nonce, aad, out);
  let total = 0;
  for (const p of parts) {
    checkBytes(p, `${spec.name} input`);
    total += p.length;
  }
  if (!Number.isSafeInteger(offset) || offset < 0 || offset + total + spec.tagLength > out.length) {
    throw new RangeError(`${spec.name}: sealInto needs ${total + spec.tagLength} bytes of room at offset ${offset} of a ${out.length}-byte buffer`);
  }
  return total;
}
