/**
 * Rules shared by every key-exchange backend: how many random bytes each group consumes, how long each
 * key_exchange value is, how a peer's key_exchange bytes are checked (RFC 8446 §4.2.8.2), and how randomness
 * becomes a private key.
 *
 * Keeping these in one runtime-neutral place makes the `noble` and `node` providers produce identical
 * shares and secrets from identical randomness, and reject identical hostile inputs with identical reasons.
 */
import { wipe } from '../codec/bytes.js';
import { TlsError } from '../errors.js';
import { FFDHE_SPECS } from './ffdhe.js';
import type { ClientKeyShare, GroupName, KexSpec } from './provider.js';

export type { KexSpec };

/** The parameters of an elliptic-curve Diffie-Hellman group: both shares have the same length. */
export interface DhGroupSpec extends KexSpec {
  /** Exact length of a valid key_exchange value (RFC 8446 §4.2.8.2). */
  readonly shareLength: number;
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
export const X25519_SPEC: DhGroupSpec = dh({ name: 'x25519', randomLength: 32, shareLength: 32, secretLength: 32 });

/**
 * secp256r1 / secp384r1. The share is the uncompressed point 0x04 || X || Y (RFC 8446 §4.2.8.2), the
 * shared secret is the x-coordinate only (RFC 8446 §7.4.2).
 *
 * randomLength is 1.5x the scalar length (48 bytes for P-256, 72 for P-384): see {@link nistScalarFromSeed}.
 * This is exactly the seed length that noble's `utils.randomSecretKey(seed)` requires.
 */
export const P256_SPEC: NistCurveSpec = dh({
  name: 'secp256r1',
  fieldLength: 32,
  randomLength: 48,
  shareLength: 65,
  secretLength: 32,
  order: 0xffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551n,
});

export const P384_SPEC: NistCurveSpec = dh({
  name: 'secp384r1',
  fieldLength: 48,
  randomLength: 72,
  shareLength: 97,
  secretLength: 48,
  order: 0xffffffffffffffffffffffffffffffffffffffffffffffffc7634d81f4372ddf581a0db248b0a77aecec196accc52973n,
});

/**
 * The hybrid post-quantum groups of draft-ietf-tls-ecdhe-mlkem (IANA codepoints 0x11EB, 0x11EC, 0x11ED): an
 * ML-KEM (FIPS 203) exchange and an ECDH exchange side by side, their key_exchange values and secrets
 * concatenated. The client sends the ML-KEM encapsulation key, the server the ML-KEM ciphertext.
 *
 * The draft's order differs by group: X25519MLKEM768 puts ML-KEM first in the shares and in the secret
 * (ek 1184 || X25519 32 = 1216; ct 1088 || X25519 32 = 1120; ML-KEM secret || X25519 secret), while
 * SecP256r1MLKEM768 and SecP384r1MLKEM1024 put the ECDH part first (P-256 65 || ek 1184 = 1249;
 * 65 || ct 1088 = 1153; ECDH secret || ML-KEM secret).
 */
export interface HybridSpec extends KexSpec {
  readonly name: 'X25519MLKEM768' | 'SecP256r1MLKEM768' | 'SecP384r1MLKEM1024';
  readonly kem: 'ML-KEM-768' | 'ML-KEM-1024';
  readonly classical: DhGroupSpec;
  /** True when the ML-KEM part comes first in both shares and in the shared secret. */
  readonly kemFirst: boolean;
  /** FIPS 203 sizes: encapsulation key, ciphertext, keygen seed (d || z), encapsulation randomness m. */
  readonly ekLength: number;
  readonly ctLength: number;
  readonly kemSeedLength: 64;
}

export const X25519MLKEM768_SPEC: HybridSpec = hybrid('X25519MLKEM768', 'ML-KEM-768', X25519_SPEC, true);
export const SECP256R1MLKEM768_SPEC: HybridSpec = hybrid('SecP256r1MLKEM768', 'ML-KEM-768', P256_SPEC, false);
export const SECP384R1MLKEM1024_SPEC: HybridSpec = hybrid('SecP384r1MLKEM1024', 'ML-KEM-1024', P384_SPEC, false);

/** Every group this stack implements, by IANA name. */
export const GROUP_SPECS: Readonly<Record<GroupName, KexSpec>> = {
  x25519: X25519_SPEC,
  secp256r1: P256_SPEC,
  secp384r1: P384_SPEC,
  X25519MLKEM768: X25519MLKEM768_SPEC,
  SecP256r1MLKEM768: SECP256R1MLKEM768_SPEC,
  SecP384r1MLKEM1024: SECP384R1MLKEM1024_SPEC,
  ...FFDHE_SPECS,
};

/**
 * The group an IANA name denotes, ignoring case ("x25519mlkem768" is X25519MLKEM768, "FFDHE2048" is
 * ffdhe2048), or undefined for a name this stack does not implement. For command lines and config files.
 */
export function groupByName(name: string): GroupName | undefined {
  return GROUP_BY_LOWER_NAME.get(name.trim().toLowerCase());
}

/** The spec of a group, or undefined for a name this stack does not know. */
export function groupSpec(name: GroupName): KexSpec | undefined {
  return Object.prototype.hasOwnProperty.call(GROUP_SPECS, name) ? GROUP_SPECS[name] : undefined;
}

const GROUP_BY_LOWER_NAME: ReadonlyMap<string, GroupName> = new Map(
  (Object.keys(GROUP_SPECS) as GroupName[]).map((g) => [g.toLowerCase(), g]),
);

function dh<T extends Omit<DhGroupSpec, 'clientShareLength' | 'serverShareLength'>>(spec: T): T & DhGroupSpec {
  return { ...spec, clientShareLength: spec.shareLength, serverShareLength: spec.shareLength };
}

/** FIPS 203 Table 3: ek = 384k + 32, ct = 32(du*k + dv); k = 3, du = 10, dv = 4 (768) or k = 4, du = 11, dv = 5 (1024). */
function hybrid(name: HybridSpec['name'], kem: HybridSpec['kem'], classical: DhGroupSpec, kemFirst: boolean): HybridSpec {
  const ekLength = kem === 'ML-KEM-768' ? 1184 : 1568;
  const ctLength = kem === 'ML-KEM-768' ? 1088 : 1568;
  return {
    name,
    kem,
    classical,
    kemFirst,
    ekLength,
    ctLength,
    kemSeedLength: 64,
    // ML-KEM keygen seed (64 bytes; the server's encapsulation uses the first 32) then the ECDH group's randomness.
    randomLength: 64 + classical.randomLength,
    clientShareLength: ekLength + classical.shareLength,
    serverShareLength: ctLength + classical.shareLength,
    secretLength: 32 + classical.secretLength,
  };
}

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
export function checkRandomness(spec: KexSpec, randomness: Uint8Array): void {
  if (!(randomness instanceof Uint8Array) || randomness.length !== spec.randomLength) {
    throw new TypeError(
      `${spec.name}: expected ${spec.randomLength} bytes of randomness, got ${randomness instanceof Uint8Array ? randomness.length : typeof randomness}`,
    );
  }
}

/**
 * RFC 8446 §4.2.8: every group's key_exchange has one exact length per side (§4.2.8.1 for ffdhe: the size of
 * p; §4.2.8.2 for ECDH: 32 for X25519, 1 + 2 * field size for NIST curves; draft-ietf-tls-ecdhe-mlkem for the
 * hybrids, the client checking the ciphertext length). Anything else is an illegal_parameter
 * ('InvalidPeerKeyShare'). Checked once, at the provider boundary, for every backend.
 */
export function checkShareLength(spec: KexSpec, from: 'client' | 'server', share: Uint8Array): void {
  const expected = from === 'client' ? spec.clientShareLength : spec.serverShareLength;
  if (!(share instanceof Uint8Array) || share.length !== expected) {
    throw new TlsError('InvalidPeerKeyShare', `${spec.name} ${from} key_exchange must be ${expected} bytes, got ${lengthOf(share)}`);
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

/**
 * A client's key share whose private key lives where JavaScript cannot zero it (a node:crypto KeyObject, an
 * OpenSSL ECDH context): `secret(priv, peer)` completes the exchange, and destroy() drops the only reference
 * so that it is freed. The randomness it came from is the caller's to wipe.
 */
export class OpaqueKeyClientShare<K> implements ClientKeyShare {
  protected priv: K | null;
  constructor(
    readonly group: GroupName,
    readonly share: Uint8Array,
    priv: K,
    private readonly secret: (priv: K, peer: Uint8Array) => Uint8Array,
  ) {
    this.priv = priv;
  }
  complete(serverShare: Uint8Array): Uint8Array {
    if (this.priv === null) throw destroyedShare(this.group);
    return this.secret(this.priv, serverShare);
  }
  destroy(): void {
    this.priv = null;
  }
}

/**
 * A client's key share whose private value is in our own array (a scalar, an ffdhe exponent): as
 * {@link OpaqueKeyClientShare}, and destroy() wipes the private value first.
 */
export class PrivateValueClientShare extends OpaqueKeyClientShare<Uint8Array> {
  override destroy(): void {
    if (this.priv) wipe(this.priv);
    super.destroy();
  }
}

function lengthOf(x: unknown): string {
  return x instanceof Uint8Array ? String(x.length) : typeof x;
}
