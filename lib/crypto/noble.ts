/**
 * The default {@link CryptoProvider}: pure JavaScript on the audited `@noble/*` libraries, so it runs
 * unchanged in Node, browsers, Deno, Bun and Workers.
 *
 * - Hashes, HMAC, HKDF (RFC 5869): `@noble/hashes`.
 * - AEADs (RFC 5116, RFC 8439): ChaCha20-Poly1305 from `@noble/ciphers` (a noble AEAD instance encrypts
 *   only once, so one is built per seal/open); AES-GCM from noble's AES block function with a GHASH that
 *   keeps its key schedule and table per key (lib/crypto/gcm.ts), instead of rebuilding them per record.
 * - Key exchange (RFC 8446 §4.2.8, §7.4): `@noble/curves` x25519, p256, p384; the ML-KEM hybrids with
 *   `@noble/post-quantum` (lib/crypto/hybrid.ts); RFC 7919 ffdhe groups with BigInt arithmetic (ffdhe.ts).
 * - Randomness: `crypto.getRandomValues` (through `@noble/hashes` `randomBytes`), or an injected source.
 *
 * Arguments are checked once, at the provider boundary (lib/crypto/checked.ts); the code here trusts them.
 */
import { chacha20poly1305 } from '@noble/ciphers/chacha.js';
import { x25519 } from '@noble/curves/ed25519.js';
import { p256, p384 } from '@noble/curves/nist.js';
import { expand, extract } from '@noble/hashes/hkdf.js';
import { hmac } from '@noble/hashes/hmac.js';
import { sha256, sha384 } from '@noble/hashes/sha2.js';
import { randomBytes } from '@noble/hashes/utils.js';
import { copyBytes, wipe } from '../codec/bytes.js';
import { AesGcmKey } from './gcm.js';
import { withArgumentChecks } from './checked.js';
import { bigIntToBytes, checkFfdheSecret, checkFfdheShare, ffdheExponent, modPowLadder, type FfdheSpec } from './ffdhe.js';
import {
  P256_SPEC,
  P384_SPEC,
  X25519_SPEC,
  checkNistShareFraming,
  destroyedShare,
  PrivateValueClientShare,
  isAllZero,
  nistScalarFromSeed,
  offCurve,
  zeroSecret,
  type NistCurveSpec,
} from './groups.js';
import { providerGroups } from './hybrid.js';
import { AEAD_SPECS, type AeadSpec } from './params.js';
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

export interface NobleProviderOptions {
  /** Where random bytes come from; defaults to `crypto.getRandomValues`. Inject a fixed source for replayable tests. */
  random?: RandomSource;
}

/** Builds a noble provider, optionally with an injected random source. */
export function createNobleProvider(opts: NobleProviderOptions = {}): CryptoProvider {
  const random: RandomSource = opts.random ?? ((n: number) => randomBytes(n));
  return withArgumentChecks({
    name: 'noble',
    hash: (name) => HASHES[name],
    hmac: (hash, key, data) => hmac(NOBLE_HASH[hash], key, data),
    // RFC 5869 §2.2: an absent salt is HashLen zeros; HMAC pads an empty key with zeros, so both agree.
    hkdfExtract: (hash, salt, ikm) => extract(NOBLE_HASH[hash], ikm, salt),
    hkdfExpand: (hash, prk, info, length) => expand(NOBLE_HASH[hash], prk, info, length),
    aead: (name, key) => new NobleAead(AEAD_SPECS[name], key),
    group: (name) => GROUPS[name],
    random,
  });
}

/** The noble provider with the platform's secure random source. */
export const nobleProvider: CryptoProvider = createNobleProvider();

// ---------------------------------------------------------------------------------------------------
// Hashes

type NobleHash = typeof sha256 | typeof sha384;
type NobleHashState = ReturnType<typeof sha256.create> | ReturnType<typeof sha384.create>;

const NOBLE_HASH: Readonly<Record<HashName, NobleHash>> = { 'SHA-256': sha256, 'SHA-384': sha384 };

class NobleHashStateImpl implements HashState {
  constructor(private readonly h: NobleHashState) {}
  update(data: Uint8Array): void {
    this.h.update(data);
  }
  /** Digests a clone, so the running state keeps accepting updates (transcript hash, RFC 8446 §4.4.1). */
  peek(): Uint8Array {
    return this.h.clone().digest();
  }
  clone(): HashState {
    return new NobleHashStateImpl(this.h.clone());
  }
}

function nobleHash(name: HashName): HashAlgorithm {
  const h = NOBLE_HASH[name];
  return {
    name,
    outputLength: h.outputLen,
    digest: (data) => h(data),
    create: () => new NobleHashStateImpl(h.create()),
  };
}

const HASHES: Readonly<Record<HashName, HashAlgorithm>> = {
  'SHA-256': nobleHash('SHA-256'),
  'SHA-384': nobleHash('SHA-384'),
};

// ---------------------------------------------------------------------------------------------------
// AEADs


/** The shared, word-aligned scratch buffer of {@link NobleAead.sealInto} (grown on demand, starts at 16 KiB + 1 + tag). */
let scratchBuffer = new Uint8Array(0);
function scratch(length: number): Uint8Array {
  if (scratchBuffer.length < length) scratchBuffer = new Uint8Array(Math.max(length, (1 << 14) + 1 + 16 + 256));
  return scratchBuffer;
}

class NobleAead implements Aead {
  readonly name: AeadName;
  readonly keyLength: number;
  readonly nonceLength: number;
  readonly tagLength: number;
  private key: Uint8Array | null;
  /** AES-GCM: the key schedule and GHASH table, built on first use and kept for every later record. */
  private gcmKey: AesGcmKey | null = null;

  constructor(private readonly spec: AeadSpec, key: Uint8Array) {
    this.name = spec.name;
    this.keyLength = spec.keyLength;
    this.nonceLength = spec.nonceLength;
    this.tagLength = spec.tagLength;
    this.key = copyBytes(key); // our own copy, wiped by destroy()
  }

  seal(nonce: Uint8Array, aad: Uint8Array, plaintext: Uint8Array): Uint8Array {
    if (this.name === 'CHACHA20-POLY1305') return chacha20poly1305(this.liveKey(), nonce, aad).encrypt(plaintext);
    return this.aesGcm().seal(nonce, aad, plaintext);
  }

  /**
   * ChaCha20-Poly1305: joins the parts in a scratch buffer that starts on a 4-byte boundary (noble's
   * word-at-a-time path needs that; unaligned data goes byte by byte), seals there in place and copies the
   * result into `out`. The scratch is shared (sealing is synchronous, so calls cannot interleave) and zeroed
   * after each use, so no connection holds a buffer of its own and no plaintext lingers. AES-GCM does the
   * same inside {@link AesGcmKey.sealInto}.
   */
  sealInto(nonce: Uint8Array, aad: Uint8Array, parts: readonly Uint8Array[], out: Uint8Array, offset: number): number {
    if (this.name !== 'CHACHA20-POLY1305') return this.aesGcm().sealInto(nonce, aad, parts, out, offset);
    const key = this.liveKey();
    let total = 0;
    for (const p of parts) total += p.length;
    const sealedLength = total + this.tagLength;
    const buf = scratch(sealedLength);
    let at = 0;
    for (const p of parts) {
      buf.set(p, at);
      at += p.length;
    }
    try {
      chacha20poly1305(key, nonce, aad).encrypt(buf.subarray(0, total), buf.subarray(0, sealedLength));
      out.set(buf.subarray(0, sealedLength), offset);
    } finally {
      buf.fill(0, 0, sealedLength);
    }
    return sealedLength;
  }

  open(nonce: Uint8Array, aad: Uint8Array, ciphertextAndTag: Uint8Array): Uint8Array | null {
    const key = this.liveKey();
    if (this.name !== 'CHACHA20-POLY1305') return this.aesGcm().open(nonce, aad, ciphertextAndTag);
    try {
      return chacha20poly1305(key, nonce, aad).decrypt(ciphertextAndTag);
    } catch {
      // Inputs were validated at the boundary, so the only failure left is authentication (RFC 5116 §2.2: FAIL).
      return null;
    }
  }

  destroy(): void {
    wipe(this.key);
    this.key = null;
    this.gcmKey?.destroy();
    this.gcmKey = null;
  }

  private liveKey(): Uint8Array {
    if (!this.key) throw new TypeError(`${this.name}: this AEAD was destroyed`);
    return this.key;
  }

  private aesGcm(): AesGcmKey {
    return (this.gcmKey ??= new AesGcmKey(this.liveKey()));
  }
}

// ---------------------------------------------------------------------------------------------------
// Key exchange (RFC 8446 §4.2.8 and §7.4)

/**
 * X25519 (RFC 7748). The 32 random bytes are the private key. noble refuses low-order peer points
 * before the ladder instead of producing the all-zero secret; both are reported as
 * 'KeyExchangeZeroSecret' (RFC 8446 §7.4.2: "MUST check whether the computed Diffie-Hellman shared
 * secret is the all-zero value and abort if so").
 */
function x25519Shared(priv: Uint8Array, peer: Uint8Array): Uint8Array {
  let secret: Uint8Array;
  try {
    secret = x25519.getSharedSecret(priv, peer);
  } catch (e) {
    // The share is 32 bytes and our scalar is 32 bytes, so noble's only refusal is a low-order point.
    throw zeroSecret(e);
  }
  if (isAllZero(secret)) throw zeroSecret();
  return secret;
}

const x25519Group: KeyExchangeGroup = {
  name: 'x25519',
  randomLength: X25519_SPEC.randomLength,
  start(randomness) {
    const priv = copyBytes(randomness);
    return new PrivateValueClientShare('x25519', x25519.getPublicKey(priv), priv, x25519Shared);
  },
  respond(clientShare, randomness) {
    const priv = copyBytes(randomness);
    try {
      const sharedSecret = x25519Shared(priv, clientShare);
      return { share: x25519.getPublicKey(priv), sharedSecret };
    } finally {
      wipe(priv);
    }
  },
};

/**
 * secp256r1 / secp384r1 with uncompressed shares (RFC 8446 §4.2.8.2) and the x-coordinate as the
 * shared secret (§7.4.2). noble's `getSharedSecret` returns the compressed point 0x02/0x03 || X,
 * so the first byte is dropped. Private keys come from {@link nistScalarFromSeed}.
 */
function nistGroup(spec: NistCurveSpec, curve: typeof p256 | typeof p384): KeyExchangeGroup {
  const shared = (priv: Uint8Array, peer: Uint8Array): Uint8Array => {
    checkNistShareFraming(spec, peer);
    // Point.fromBytes checks that the point is on the curve and not the identity (SEC 1 §3.2.2).
    if (!curve.utils.isValidPublicKey(peer, false)) throw offCurve(spec);
    let point: Uint8Array;
    try {
      point = curve.getSharedSecret(priv, peer, true);
    } catch (e) {
      throw offCurve(spec, e);
    }
    const x = point.slice(1);
    wipe(point);
    return x;
  };
  return {
    name: spec.name,
    randomLength: spec.randomLength,
    start(randomness) {
      const priv = nistScalarFromSeed(spec, randomness);
      return new PrivateValueClientShare(spec.name, curve.getPublicKey(priv, false), priv, shared);
    },
    respond(clientShare, randomness) {
      const priv = nistScalarFromSeed(spec, randomness);
      try {
        const sharedSecret = shared(priv, clientShare);
        return { share: curve.getPublicKey(priv, false), sharedSecret };
      } finally {
        wipe(priv);
      }
    },
  };
}


/**
 * RFC 7919 / RFC 8446 §4.2.8.1 with BigInt arithmetic: Y = 2^X mod p and Z = Y_peer^X mod p by the
 * Montgomery ladder of lib/crypto/ffdhe.ts, both left-padded to the size of p. The private exponent is kept as
 * a BigInt, which JavaScript cannot wipe; destroy() drops it.
 */
function ffdheGroup(spec: FfdheSpec): KeyExchangeGroup {
  const pow = (base: bigint, x: bigint) => modPowLadder(base, x, spec.prime, spec.exponentBits);
  const shared = (x: bigint, peer: Uint8Array): Uint8Array => {
    const z = bigIntToBytes(pow(checkFfdheShare(spec, peer), x), spec.primeLength);
    checkFfdheSecret(spec, z);
    return z;
  };
  return {
    name: spec.name,
    randomLength: spec.randomLength,
    start(randomness) {
      const x = ffdheExponent(spec, randomness);
      return new FfdheClientShare(spec, bigIntToBytes(pow(spec.generator, x), spec.primeLength), x, shared);
    },
    respond(clientShare, randomness) {
      const y = checkFfdheShare(spec, clientShare); // before the exponentiation: garbage costs little
      const x = ffdheExponent(spec, randomness);
      const sharedSecret = bigIntToBytes(pow(y, x), spec.primeLength);
      checkFfdheSecret(spec, sharedSecret);
      return { share: bigIntToBytes(pow(spec.generator, x), spec.primeLength), sharedSecret };
    },
  };
}

class FfdheClientShare implements ClientKeyShare {
  private x: bigint | null;
  constructor(
    private readonly spec: FfdheSpec,
    readonly share: Uint8Array,
    x: bigint,
    private readonly shared: (x: bigint, peer: Uint8Array) => Uint8Array,
  ) {
    this.x = x;
  }
  get group(): GroupName {
    return this.spec.name;
  }
  complete(serverShare: Uint8Array): Uint8Array {
    if (this.x === null) throw destroyedShare(this.spec.name);
    return this.shared(this.x, serverShare);
  }
  destroy(): void {
    this.x = null;
  }
}

const secp256r1Group = nistGroup(P256_SPEC, p256);
const secp384r1Group = nistGroup(P384_SPEC, p384);

const GROUPS = providerGroups({ x25519: x25519Group, secp256r1: secp256r1Group, secp384r1: secp384r1Group }, ffdheGroup);
