/**
 * A {@link CryptoProvider} on `node:crypto` (OpenSSL): the fast choice when qkd-tls runs in Node.
 *
 * It accepts and rejects exactly what the noble provider does and, for the same randomness, produces the
 * same key shares and shared secrets (both follow lib/crypto/groups.ts), so the two can be swapped or
 * mixed freely (a noble client talks to a node server and vice versa). One exception, which no honest peer
 * meets: some OpenSSL builds also refuse an ffdhe Y outside the prime-order subgroup (lib/crypto/node-ffdhe.ts).
 *
 * Speed notes: every value returned is a plain `Uint8Array` viewing the bytes OpenSSL produced (no
 * `Buffer` leaks out, no extra copy); AEADs call OpenSSL with the raw key (a cached `KeyObject`
 * measured no faster, and cannot be wiped); HKDF-Expand of at most one hash block (every
 * HKDF-Expand-Label in TLS 1.3) is a single HMAC call; P-256/P-384 use `createECDH`, which takes raw
 * scalars and points without DER wrapping; X25519 keys are imported as JWK, which OpenSSL 3.0
 * decodes much faster than DER (see {@link x25519PrivateKey}; as PKCS#8 DER on Node 24, which refuses that
 * JWK); RFC 7919 ffdhe groups use whichever of node:crypto's two DH APIs costs less in this runtime
 * (lib/crypto/node-ffdhe.ts; Node 20 has no named ffdhe groups); the ML-KEM hybrids pair
 * `@noble/post-quantum`'s ML-KEM (Node 20 has none) with the OpenSSL ECDH groups here (lib/crypto/hybrid.ts).
 *
 * Arguments are checked once, at the provider boundary (lib/crypto/checked.ts); the code here trusts them.
 */
import {
  createCipheriv,
  createDecipheriv,
  createECDH,
  createHash,
  createHmac,
  createPrivateKey,
  createPublicKey,
  diffieHellman,
  hash as oneShotHash,
  randomFillSync,
  type Hash,
  type KeyObject,
} from 'node:crypto';
import { startupSnapshot } from 'node:v8';
import { copyBytes, plainView, wipe } from '../codec/bytes.js';
import { withArgumentChecks } from './checked.js';
import {
  P256_SPEC,
  P384_SPEC,
  X25519_SPEC,
  checkNistShareFraming,
  destroyedShare,
  OpaqueKeyClientShare,
  isAllZero,
  nistScalarFromSeed,
  offCurve,
  zeroSecret,
  type NistCurveSpec,
} from './groups.js';
import { providerGroups } from './hybrid.js';
import { nodeFfdheGroup } from './node-ffdhe.js';
import { AEAD_SPECS, HASH_SPECS, type AeadSpec } from './params.js';
import type {
  Aead,
  AeadName,
  ClientKeyShare,
  CryptoProvider,
  GroupName,
  HashAlgorithm,
  HashName,
  HashState,
  KeyExchangeGroup,
  RandomSource,
} from './provider.js';

export interface NodeProviderOptions {
  /** Where random bytes come from; defaults to OpenSSL's CSPRNG. Inject a fixed source for replayable tests. */
  random?: RandomSource;
}

/** Builds a node:crypto provider, optionally with an injected random source. */
export function createNodeProvider(opts: NodeProviderOptions = {}): CryptoProvider {
  const random: RandomSource = opts.random ?? pooledOpenSslRandom();
  return withArgumentChecks({
    name: 'node',
    hash: (name) => HASHES[name],
    hmac: (hash, key, data) => plainView(createHmac(OPENSSL_HASH[hash], key).update(data).digest()),
    // RFC 5869 §2.2: PRK = HMAC-Hash(salt, IKM). An empty salt equals HashLen zeros, as HMAC pads keys with zeros.
    hkdfExtract: (hash, salt, ikm) => plainView(createHmac(OPENSSL_HASH[hash], salt).update(ikm).digest()),
    hkdfExpand,
    aead: (name, key) => new NodeAead(AEAD_SPECS[name], key),
    group: (name) => GROUPS[name],
    random,
  });
}

/**
 * OpenSSL's CSPRNG, drawn into a 1 KiB pool so that the handful of small draws of a handshake (randoms,
 * key-share scalars, cookies) cost a copy rather than a native call each.
 * Each draw is copied out and its bytes in the pool are zeroed at once, so the pool never holds a value that
 * has been handed out; it does hold up to 1 KiB of values still to come, in process memory like OpenSSL's
 * own generator state. Large draws bypass the pool, and so does everything while a startup snapshot is being
 * built (`node --build-snapshot`), so that no pooled bytes are replayed by every process started from it.
 * (A process cloned from a VM snapshot replays the pool like it replays OpenSSL's state.)
 */
function pooledOpenSslRandom(): RandomSource {
  const pool = new Uint8Array(RANDOM_POOL_SIZE);
  let at = pool.length;
  return (n: number) => {
    if (!Number.isInteger(n) || n < 0) throw new RangeError(`random: length must be a non-negative integer, got ${n}`);
    if (n > RANDOM_POOL_MAX_DRAW || startupSnapshot.isBuildingSnapshot()) return randomFillSync(new Uint8Array(n));
    if (at + n > pool.length) {
      randomFillSync(pool);
      at = 0;
    }
    const out = pool.slice(at, at + n);
    pool.fill(0, at, at + n);
    at += n;
    return out;
  };
}

const RANDOM_POOL_SIZE = 1024;
const RANDOM_POOL_MAX_DRAW = 256;

/** The node:crypto provider with OpenSSL's random source. */
export const nodeProvider: CryptoProvider = createNodeProvider();

// ---------------------------------------------------------------------------------------------------
// Hashes, HMAC, HKDF

const OPENSSL_HASH: Readonly<Record<HashName, string>> = { 'SHA-256': 'sha256', 'SHA-384': 'sha384' };

class NodeHashState implements HashState {
  constructor(private readonly h: Hash) {}
  update(data: Uint8Array): void {
    this.h.update(data);
  }
  /** Digests a copy, so the running state keeps accepting updates (transcript hash, RFC 8446 §4.4.1). */
  peek(): Uint8Array {
    return plainView(this.h.copy().digest());
  }
  clone(): HashState {
    return new NodeHashState(this.h.copy());
  }
}

function nodeHash(name: HashName): HashAlgorithm {
  const alg = OPENSSL_HASH[name];
  return {
    name,
    outputLength: HASH_SPECS[name].outputLength,
    digest: (data) => plainView(oneShotHash(alg, data, 'buffer')),
    create: () => new NodeHashState(createHash(alg)),
  };
}

const HASHES: Readonly<Record<HashName, HashAlgorithm>> = {
  'SHA-256': nodeHash('SHA-256'),
  'SHA-384': nodeHash('SHA-384'),
};

const COUNTER = [0, 1, 2].map((i) => Uint8Array.of(i)); // cached one-byte counters for the common cases

/**
 * RFC 5869 §2.3 HKDF-Expand: T(i) = HMAC(PRK, T(i-1) | info | i), OKM = first L bytes of T(1) | T(2) | ...
 * Node's hkdfSync always runs Extract first, so Expand is done here with HMAC; one call when L <= HashLen.
 */
function hkdfExpand(hash: HashName, prk: Uint8Array, info: Uint8Array, length: number): Uint8Array {
  const spec = HASH_SPECS[hash];
  const alg = OPENSSL_HASH[spec.name];
  const hashLen = spec.outputLength;
  if (length === 0) return new Uint8Array(0);
  if (length <= hashLen) {
    const t = plainView(createHmac(alg, prk).update(info).update(COUNTER[1]).digest());
    t.fill(0, length); // the unused tail is key material too: zero it rather than copy the head
    return length === hashLen ? t : t.subarray(0, length);
  }
  const blocks = Math.ceil(length / hashLen);
  const okm = new Uint8Array(blocks * hashLen);
  let prev: Uint8Array | null = null;
  for (let i = 1; i <= blocks; i++) {
    const mac = createHmac(alg, prk);
    if (prev) mac.update(prev);
    const t = mac.update(info).update(COUNTER[i] ?? Uint8Array.of(i)).digest();
    okm.set(t, (i - 1) * hashLen);
    wipe(prev);
    prev = t;
  }
  wipe(prev);
  if (okm.length === length) return okm;
  const out = okm.slice(0, length);
  wipe(okm);
  return out;
}

// ---------------------------------------------------------------------------------------------------
// AEADs

const OPENSSL_AEAD: Readonly<Record<AeadName, OpenSslAead>> = {
  'AES-128-GCM': 'aes-128-gcm',
  'AES-256-GCM': 'aes-256-gcm',
  'CHACHA20-POLY1305': 'chacha20-poly1305',
};

type OpenSslAead = 'aes-128-gcm' | 'aes-256-gcm' | 'chacha20-poly1305';

// Two branches only because @types/node types GCM and ChaCha20-Poly1305 through separate overloads.
function aeadCipher(alg: OpenSslAead, key: Uint8Array, nonce: Uint8Array) {
  return alg === 'chacha20-poly1305'
    ? createCipheriv(alg, key, nonce, { authTagLength: 16 })
    : createCipheriv(alg, key, nonce, { authTagLength: 16 });
}

function aeadDecipher(alg: OpenSslAead, key: Uint8Array, nonce: Uint8Array) {
  return alg === 'chacha20-poly1305'
    ? createDecipheriv(alg, key, nonce, { authTagLength: 16 })
    : createDecipheriv(alg, key, nonce, { authTagLength: 16 });
}

class NodeAead implements Aead {
  readonly name: AeadName;
  readonly keyLength: number;
  readonly nonceLength: number;
  readonly tagLength: number;
  private readonly alg: OpenSslAead;
  /** Our own copy of the key, wiped by destroy(). (A KeyObject measured no faster and cannot be wiped.) */
  private key: Uint8Array | null;

  constructor(spec: AeadSpec, key: Uint8Array) {
    this.name = spec.name;
    this.keyLength = spec.keyLength;
    this.nonceLength = spec.nonceLength;
    this.tagLength = spec.tagLength;
    this.alg = OPENSSL_AEAD[spec.name];
    this.key = copyBytes(key);
  }

  seal(nonce: Uint8Array, aad: Uint8Array, plaintext: Uint8Array): Uint8Array {
    const out = new Uint8Array(plaintext.length + this.tagLength);
    this.sealInto(nonce, aad, [plaintext], out, 0);
    return out;
  }

  /**
   * Each part goes to OpenSSL as it is (no joining copy); each piece of ciphertext OpenSSL returns is copied
   * once, into its place in `out`.
   */
  sealInto(nonce: Uint8Array, aad: Uint8Array, parts: readonly Uint8Array[], out: Uint8Array, offset: number): number {
    let total = 0;
    for (const p of parts) total += p.length;
    const c = aeadCipher(this.alg, this.liveKey(), nonce);
    if (aad.length > 0) c.setAAD(aad, { plaintextLength: total });
    let at = offset;
    for (const p of parts) {
      if (p.length === 0) continue;
      const ct = c.update(p);
      out.set(ct, at);
      at += ct.length;
    }
    const rest = c.final(); // empty for these stream modes; copied all the same should OpenSSL ever buffer
    if (rest.length > 0) {
      out.set(rest, at);
      at += rest.length;
    }
    out.set(c.getAuthTag(), at);
    return at + this.tagLength - offset;
  }

  open(nonce: Uint8Array, aad: Uint8Array, ciphertextAndTag: Uint8Array): Uint8Array | null {
    const key = this.liveKey();
    const ctLength = ciphertextAndTag.length - this.tagLength; // >= 0: checked at the boundary
    const d = aeadDecipher(this.alg, key, nonce);
    d.setAuthTag(ciphertextAndTag.subarray(ctLength));
    if (aad.length > 0) d.setAAD(aad, { plaintextLength: ctLength });
    const pt = d.update(ciphertextAndTag.subarray(0, ctLength));
    try {
      d.final(); // throws when the tag does not verify (RFC 5116 §2.2: FAIL)
    } catch {
      pt.fill(0); // never let unauthenticated plaintext linger
      return null;
    }
    return plainView(pt);
  }

  destroy(): void {
    wipe(this.key);
    this.key = null;
  }

  private liveKey(): Uint8Array {
    if (!this.key) throw new TypeError(`${this.name}: this AEAD was destroyed`);
    return this.key;
  }
}

// ---------------------------------------------------------------------------------------------------
// Key exchange (RFC 8446 §4.2.8 and §7.4)

/**
 * X25519 keys enter OpenSSL as JWK (RFC 8037): on Node 20 / OpenSSL 3.0 a JWK import is a direct key
 * construction, while a PKCS#8 or SPKI DER import goes through OpenSSL's generic decoder, several times
 * slower. Node insists on an
 * `x` member in a private JWK but derives the public key from `d`, so a placeholder is passed.
 *
 * Our public key is then read back as the `x` of a public JWK export (cheaper than computing X25519(k, 9)
 * again, a second scalar multiplication). Only keys imported here are ever exported:
 * on Node 20.20, exporting a key made by `generateKeyPair*` as JWK can deadlock the process (gdb:
 * ExportJWKEdKey holds the key's mutex while allocating the string; a GC triggered by that allocation
 * runs the finished KeyGenJob's destructor, which takes the same mutex). An imported key has no KeyGenJob.
 *
 * Secret hygiene: the scalar passes through a base64url string on its way in (JavaScript cannot wipe a
 * string) and lives inside OpenSSL until its KeyObjects are garbage-collected; the randomness array itself
 * is the caller's to wipe, as with every group.
 */
const X25519_JWK_PLACEHOLDER_X = Buffer.alloc(32).toString('base64url');

/**
 * Whether this runtime takes the placeholder `x` (Node 20, Bun and Deno do). Node 24 checks `x` against
 * `d` and refuses the key ("Invalid JWK OKP key"), which failed every x25519 and X25519MLKEM768 handshake of
 * this provider there (test/node24-runtime.test.ts); it then gets the key as PKCS#8 instead. Probed once, with
 * a fixed scalar that is no one's key.
 */
let placeholderJwkTaken: boolean | undefined;

function x25519PrivateKey(raw: Uint8Array): KeyObject {
  placeholderJwkTaken ??= takesPlaceholderJwk();
  if (!placeholderJwkTaken) return x25519PrivateKeyPkcs8(raw);
  const d = Buffer.from(raw.buffer, raw.byteOffset, raw.byteLength).toString('base64url');
  return createPrivateKey({ key: { kty: 'OKP', crv: 'X25519', d, x: X25519_JWK_PLACEHOLDER_X }, format: 'jwk' });
}

function takesPlaceholderJwk(): boolean {
  try {
    createPrivateKey({ key: { kty: 'OKP', crv: 'X25519', d: Buffer.alloc(32, 0x41).toString('base64url'), x: X25519_JWK_PLACEHOLDER_X }, format: 'jwk' });
    return true;
  } catch {
    return false;
  }
}

/** RFC 8410 §7 OneAsymmetricKey for X25519 (OID 1.3.101.110), before the 32-byte private key. */
const X25519_PKCS8_PREFIX = Uint8Array.of(0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x6e, 0x04, 0x22, 0x04, 0x20);

/** The same key through OpenSSL's DER decoder; the DER copy of the scalar is wiped once imported. */
function x25519PrivateKeyPkcs8(raw: Uint8Array): KeyObject {
  const der = Buffer.alloc(X25519_PKCS8_PREFIX.length + raw.length); // Buffer.alloc: never Node's shared pool
  der.set(X25519_PKCS8_PREFIX);
  der.set(raw, X25519_PKCS8_PREFIX.length);
  try {
    return createPrivateKey({ key: der, format: 'der', type: 'pkcs8' });
  } finally {
    wipe(der);
  }
}

function x25519PublicKey(raw: Uint8Array): KeyObject {
  const x = Buffer.from(raw.buffer, raw.byteOffset, raw.byteLength).toString('base64url');
  return createPublicKey({ key: { kty: 'OKP', crv: 'X25519', x }, format: 'jwk' });
}

/** Our raw public key, as OpenSSL computed it when the private key was imported (RFC 7748 §6.1: X25519(k, 9)). */
function x25519PublicBytes(priv: KeyObject): Uint8Array {
  const { x } = createPublicKey(priv).export({ format: 'jwk' });
  const raw = typeof x === 'string' ? Buffer.from(x, 'base64url') : undefined;
  if (!raw || raw.length !== X25519_SPEC.shareLength) throw new Error('X25519: OpenSSL returned no 32-byte public key');
  return copyBytes(raw);
}

/**
 * X25519 with a peer share that must be 32 bytes. OpenSSL refuses to output the all-zero secret of a
 * low-order point (RFC 7748 §6.1) and reports an error; both that error and an all-zero result are
 * 'KeyExchangeZeroSecret' (RFC 8446 §7.4.2), exactly as with the noble provider.
 */
function x25519Shared(priv: KeyObject, peer: Uint8Array): Uint8Array {
  let secret: Uint8Array;
  try {
    secret = plainView(diffieHellman({ privateKey: priv, publicKey: x25519PublicKey(peer) }));
  } catch (e) {
    // Any 32 bytes import as an X25519 public key, so the failure is the derivation's zero check.
    throw zeroSecret(e);
  }
  if (isAllZero(secret)) throw zeroSecret();
  return secret;
}

const x25519Group: KeyExchangeGroup = {
  name: 'x25519',
  randomLength: X25519_SPEC.randomLength,
  start(randomness) {
    const priv = x25519PrivateKey(randomness);
    return new OpaqueKeyClientShare('x25519', x25519PublicBytes(priv), priv, x25519Shared);
  },
  respond(clientShare, randomness) {
    const priv = x25519PrivateKey(randomness);
    const sharedSecret = x25519Shared(priv, clientShare);
    return { share: x25519PublicBytes(priv), sharedSecret };
  },
};

/**
 * secp256r1 / secp384r1 through OpenSSL's ECDH: the share is the uncompressed point (RFC 8446
 * §4.2.8.2) and `computeSecret` returns the x-coordinate, left-padded to the field size (§7.4.2).
 * OpenSSL decodes the peer point and checks it is on the curve; any refusal becomes
 * 'InvalidPeerKeyShare'. The framing (length, 0x04) is checked first, because OpenSSL would also
 * accept compressed and hybrid encodings, which TLS 1.3 forbids.
 */
function nistGroup(spec: NistCurveSpec, curveName: 'prime256v1' | 'secp384r1'): KeyExchangeGroup {
  type Ecdh = ReturnType<typeof createECDH>;
  const keyPair = (randomness: Uint8Array): Ecdh => {
    const scalar = nistScalarFromSeed(spec, randomness);
    const ecdh = createECDH(curveName);
    try {
      ecdh.setPrivateKey(scalar);
    } finally {
      wipe(scalar);
    }
    return ecdh;
  };
  const shared = (ecdh: Ecdh, peer: Uint8Array): Uint8Array => {
    checkNistShareFraming(spec, peer);
    let secret: Buffer;
    try {
      secret = ecdh.computeSecret(peer);
    } catch (e) {
      throw offCurve(spec, e);
    }
    if (secret.length !== spec.secretLength) throw offCurve(spec); // defensive: OpenSSL pads to the field size
    return plainView(secret);
  };
  return {
    name: spec.name,
    randomLength: spec.randomLength,
    start(randomness) {
      const ecdh = keyPair(randomness);
      return new OpaqueKeyClientShare(spec.name, plainView(ecdh.getPublicKey()), ecdh, shared);
    },
    respond(clientShare, randomness) {
      checkNistShareFraming(spec, clientShare); // before the key generation: garbage costs nothing
      const ecdh = keyPair(randomness);
      const sharedSecret = shared(ecdh, clientShare);
      return { share: plainView(ecdh.getPublicKey()), sharedSecret };
    },
  };
}

const secp256r1Group = nistGroup(P256_SPEC, 'prime256v1');
const secp384r1Group = nistGroup(P384_SPEC, 'secp384r1');

const GROUPS = providerGroups({ x25519: x25519Group, secp256r1: secp256r1Group, secp384r1: secp384r1Group }, (spec) => nodeFfdheGroup(spec));
