/**
 * Rules shared by every key-exchange backend: how many random bytes each group consumes, how a peer's
 * key_exchange bytes are checked (RFC 8446 §4.2.8.2), and how randomness becomes a private key.
 *
 * Keeping these in one runtime-neutral place makes the `noble` and `node` providers produce identical
 * shares and secrets from identical randomness, and reject identical hostile inputs with identical reasons.
 */
import { TlsError } from '../errors.js';
import type { GroupName } from './provider.js';

/** The parameters of a Diffie-Hellman group that a provider needs to know. */
export interface DhGroupSpec {
  readonly name: GroupName;
  /** The private key or seed length that `start`/`respond` consume (see {@link nistScalarFromSeed}). */
  readonly randomLength: number;
  /** Exact length of a valid key_exchange value (RFC 8446 §4.2.8.2). */
  readonly shareLength: number;
  /** Length of the shared secret that enters the key schedule (RFC 8446 §7.4). */
  readonly secretLength: number;
}

/** NIST curve parameters: field element size and group order n. */
export interface NistCurveSpec extends DhGroupSpec {
  readonly name: 'secp256r1' | 'secp384r1';
  /** Byte length of a field element (and of the private scalar). */
  readonly fieldLength: number;
  /** The order n of the base point. */
  readonly order: bigint;
}

/**
 * X25519 (RFC 7748): the 32 random bytes ARE the private key (clamping happens inside the scalar
 * multiplication, RFC 7748 §5), the share is the 32-byte u-coordinate, and so is the shared secret.
 */
export const X25519_SPEC: DhGroupSpec = { name: 'x25519', randomLength: 32, shareLength: 32, secretLength: 32 };

/**
 * secp256r1 / secp384r1. The share is the uncompressed point 0x04 || X || Y (RFC 8446 §4.2.8.2), the
 * shared secret is the x-coordinate only (RFC 8446 §7.4.2).
 *
 * randomLength is 1.5x the scalar length (48 bytes for P-256, 72 for P-384): see {@link nistScalarFromSeed}.
 * This is exactly the seed length that noble's `utils.randomSecretKey(seed)` requires.
 */
export const P256_SPEC: NistCurveSpec = {
  name: 'secp256r1',
  fieldLength: 32,
  randomLength: 48,
  shareLength: 65,
  secretLength: 32,
  order: 0xffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551n,
};

export const P384_SPEC: NistCurveSpec = {
  name: 'secp384r1',
  fieldLength: 48,
  randomLength: 72,
  shareLength: 97,
  secretLength: 48,
  order: 0xffffffffffffffffffffffffffffffffffffffffffffffffc7634d81f4372ddf581a0db248b0a77aecec196accc52973n,
};

/**
 * Maps `randomLength` uniform bytes to a private scalar in [1, n-1] without noticeable bias
 * (FIPS 186-5 §A.2.1 "extra random bits" method, as in noble's `mapHashToField`):
 * scalar = (seed mod (n - 1)) + 1, with the seed 1.5x as long as n so the bias is below 2^-128.
 * Never rejects, so a deterministic random source always gives a deterministic key.
 * Returns the big-endian scalar of `fieldLength` bytes.
 */
export function nistScalarFromSeed(spec: NistCurveSpec, seed: Uint8Array): Uint8Array {
  checkRandomness(spec, seed);
  let num = 0n;
  for (let i = 0; i < seed.length; i++) num = (num << 8n) | BigInt(seed[i]);
  let k = (num % (spec.order - 1n)) + 1n;
  const out = new Uint8Array(spec.fieldLength);
  for (let i = out.length - 1; i >= 0; i--) {
    out[i] = Number(k & 0xffn);
    k >>= 8n;
  }
  return out;
}

/** Throws a TypeError unless `randomness` has exactly the group's `randomLength` (a caller bug, not peer input). */
export function checkRandomness(spec: DhGroupSpec, randomness: Uint8Array): void {
  if (!(randomness instanceof Uint8Array) || randomness.length !== spec.randomLength) {
    throw new TypeError(
      `${spec.name}: expected ${spec.randomLength} bytes of randomness, got ${randomness instanceof Uint8Array ? randomness.length : typeof randomness}`,
    );
  }
}

/**
 * RFC 8446 §4.2.8.2: an X25519 key_exchange is exactly 32 bytes. Anything else is an
 * illegal_parameter ('InvalidPeerKeyShare').
 */
export function checkX25519Share(share: Uint8Array): void {
  if (!(share instanceof Uint8Array) || share.length !== X25519_SPEC.shareLength) {
    throw new TlsError('InvalidPeerKeyShare', `x25519 key_exchange must be 32 bytes, got ${lengthOf(share)}`);
  }
}

/**
 * RFC 8446 §4.2.8.2: a NIST key_exchange is the uncompressed point (legacy_form 4, "the only valid
 * format"), of exactly 1 + 2 * fieldLength bytes. Point validity (on the curve, not the identity) is
 * checked by the backend; this checks the framing.
 */
export function checkNistShareFraming(spec: NistCurveSpec, share: Uint8Array): void {
  if (!(share instanceof Uint8Array) || share.length !== spec.shareLength) {
    throw new TlsError('InvalidPeerKeyShare', `${spec.name} key_exchange must be ${spec.shareLength} bytes, got ${lengthOf(share)}`);
  }
  if (share[0] !== 0x04) {
    throw new TlsError('InvalidPeerKeyShare', `${spec.name} key_exchange must be an uncompressed point (0x04), got 0x${share[0].toString(16).padStart(2, '0')}`);
  }
}

/** The error for a NIST share that is framed correctly but is not a point on the curve. */
export function offCurve(spec: NistCurveSpec, cause?: unknown): TlsError {
  return new TlsError('InvalidPeerKeyShare', `${spec.name} key_exchange is not a valid curve point`, { cause });
}

/**
 * RFC 8446 §7.4.2 / RFC 7748 §6.1: an all-zero X25519 output means the peer sent a low-order point;
 * the handshake MUST abort. Backends that refuse low-order points before the ladder (noble, OpenSSL)
 * report that with this same error.
 */
export function zeroSecret(cause?: unknown): TlsError {
  return new TlsError('KeyExchangeZeroSecret', 'x25519 shared secret is all zeros (low-order peer point)', { cause });
}

/** True when every byte is zero, in time that depends only on the length. */
export function isAllZero(b: Uint8Array): boolean {
  let acc = 0;
  for (let i = 0; i < b.length; i++) acc |= b[i];
  return acc === 0;
}

/** The error for using a ClientKeyShare after destroy(). */
export function destroyedShare(group: GroupName): TypeError {
  return new TypeError(`${group}: this key share was destroyed`);
}

function lengthOf(x: unknown): string {
  return x instanceof Uint8Array ? String(x.length) : typeof x;
}
