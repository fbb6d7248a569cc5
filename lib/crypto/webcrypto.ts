/**
 * Key shares through the runtime's WebCrypto (`globalThis.crypto.subtle`): X25519 and P-256 (ECDH) run natively in
 * browsers, Deno, Bun, Cloudflare Workers and Node, instead of in JavaScript (@noble/curves), at the cost of a
 * pause in the handshake (WebCrypto is asynchronous; see lib/handshake/key-agreement.ts).
 *
 * ```ts
 * const crypto = withWebCryptoKeyShares(nobleProvider);
 * const tls = tlsClientOverStreams(tcp, { crypto, psks: [psk] }); // the streams transport does this by default
 * ```
 *
 * The private keys are still made from the provider's own `random` bytes, exactly as the synchronous groups make
 * them (lib/crypto/groups.ts), so the handshake is byte for byte the same as without WebCrypto: the same
 * randomness gives the same ClientHello, ServerHello and secrets. Where the runtime's WebCrypto lacks an algorithm,
 * the synchronous group does the work instead (the same bytes again); {@link WebCryptoKeyShareProvider} tells
 * which path each group took.
 *
 * Runtime-neutral: only `crypto.subtle`, and @noble/curves for what WebCrypto cannot do (see {@link P256}).
 */
import { p256 } from '@noble/curves/nist.js';
import { concat, copyBytes, fromHex, wipe } from '../codec/bytes.js';
import { checkNistShareFraming, checkShareLength, isAllZero, nistScalarFromSeed, offCurve, P256_SPEC, X25519_SPEC, zeroSecret } from './groups.js';
import type { AsyncClientKeyShare, AsyncKeyExchangeGroup, CryptoProvider, GroupName, KeyExchangeGroup } from './provider.js';

/** The groups that can run in WebCrypto. */
export type WebCryptoGroupName = 'x25519' | 'secp256r1';

export interface WebCryptoKeySharesOptions {
  /** Which groups run in WebCrypto (the others stay with the base provider). Default: both, x25519 and secp256r1. */
  readonly groups?: readonly WebCryptoGroupName[];
}

/**
 * Which path a group's key shares take: 'webcrypto'; 'fallback' once the runtime's WebCrypto refused the
 * algorithm (the base provider's synchronous group does the work from then on, with no pause); 'untried' before
 * the first key share; 'base' for a group this wrapper leaves to the base provider.
 */
export type KeySharePath = 'webcrypto' | 'fallback' | 'untried' | 'base';

/** A provider whose key shares run in WebCrypto where it can ({@link withWebCryptoKeyShares}). */
export interface WebCryptoKeyShareProvider extends CryptoProvider {
  /**
   * Key shares made so far by all connections using this provider (a client's `start`, a server's `respond`) in
   * WebCrypto, and by the synchronous group
   * after WebCrypto refused the algorithm (each group falls back once; later handshakes then take the synchronous
   * path directly and are not counted).
   */
  readonly keyShares: { readonly webcrypto: number; readonly fallback: number };
  /**
   * The path `group` takes, for every connection using this provider (see {@link KeySharePath}): it is decided
   * once per provider and group, by whether the runtime's WebCrypto has the algorithm.
   */
  keySharePath(group: GroupName): KeySharePath;
}

/**
 * `base`, with its X25519 and P-256 key shares made by WebCrypto (`crypto.subtle`) where the runtime has them:
 * the handshake pauses while they run (Connection.pendingKeyAgreement), which the streams and Node transports
 * handle by themselves. Everything else — hashes, HKDF, record ciphers, other groups, and the random bytes the
 * private keys are made from — stays with `base`. Wrapping a wrapper returns it; wrapping the same provider with
 * the default groups returns the same wrapper each time.
 */
export function withWebCryptoKeyShares(base: CryptoProvider, options: WebCryptoKeySharesOptions = {}): WebCryptoKeyShareProvider {
  if (isWebCryptoKeyShareProvider(base)) return base;
  // One wrapper per base provider with the default groups, so that what it learns (a missing algorithm) and counts
  // is shared by every connection that uses it.
  if (options.groups === undefined) {
    let w = DEFAULT_WRAPPERS.get(base);
    if (!w) DEFAULT_WRAPPERS.set(base, (w = wrap(base, ['x25519', 'secp256r1'])));
    return w;
  }
  return wrap(base, options.groups);
}

const DEFAULT_WRAPPERS = new WeakMap<CryptoProvider, WebCryptoKeyShareProvider>();

function wrap(base: CryptoProvider, groupNames: readonly WebCryptoGroupName[]): WebCryptoKeyShareProvider {
  const wanted = new Set<GroupName>(groupNames);
  const counts = { webcrypto: 0, fallback: 0 };
  const groups = new Map<GroupName, WebCryptoGroup>();
  const subtle = (): SubtleCrypto | undefined => globalThis.crypto?.subtle;
  const webGroup = (name: GroupName): WebCryptoGroup | undefined => {
    if (!wanted.has(name) || !subtle()) return undefined;
    let g = groups.get(name);
    const sync = base.group(name);
    if (!g && sync && (name === 'x25519' || name === 'secp256r1')) groups.set(name, (g = new WebCryptoGroup(name === 'x25519' ? X25519 : P256, sync, counts)));
    return g;
  };
  const provider: WebCryptoKeyShareProvider & { [WRAPPED]: true } = {
    name: base.name,
    hash: (name) => base.hash(name),
    hmac: (hash, key, data) => base.hmac(hash, key, data),
    hkdfExtract: (hash, salt, ikm) => base.hkdfExtract(hash, salt, ikm),
    hkdfExpand: (hash, prk, info, length) => base.hkdfExpand(hash, prk, info, length),
    aead: (name, key) => base.aead(name, key),
    group: (name) => base.group(name),
    random: (length) => base.random(length),
    asyncGroup: (name) => {
      const g = webGroup(name);
      return g && g.path !== 'fallback' ? g : undefined;
    },
    keyShares: counts,
    keySharePath: (name) => webGroup(name)?.path ?? 'base',
    [WRAPPED]: true,
  };
  return provider;
}

/** True for a provider made by {@link withWebCryptoKeyShares}. */
export function isWebCryptoKeyShareProvider(p: CryptoProvider): p is WebCryptoKeyShareProvider {
  return (p as { [WRAPPED]?: boolean })[WRAPPED] === true;
}

const WRAPPED = Symbol('qkd-tls.webCryptoKeyShares');

type SubtleCrypto = typeof globalThis.crypto.subtle;
type Key = Awaited<ReturnType<SubtleCrypto['importKey']>>;

/** How one curve maps onto WebCrypto. */
interface Curve {
  readonly name: WebCryptoGroupName;
  readonly randomLength: number;
  readonly algorithm: { name: 'X25519' } | { name: 'ECDH'; namedCurve: 'P-256' };
  /** Synchronous checks of a peer's key_exchange (RFC 8446 §4.2.8.2), as the synchronous groups make them. */
  check(from: 'client' | 'server', share: Uint8Array): void;
  /** Our private key (PKCS#8, RFC 5958) from the randomness, as the synchronous group makes it. */
  privateKey(randomness: Uint8Array): { pkcs8: Uint8Array; publicKey?: Uint8Array };
  /** Our key_exchange value, if {@link privateKey} did not give it. */
  publicKey(subtle: SubtleCrypto, priv: Key): Promise<Uint8Array>;
  /**
   * What a failure of the shared-secret step is: the TlsError that blames the peer's key (the same one the
   * synchronous group throws) when WebCrypto's refusal means that, else `e` itself — our own failure, which the
   * connection reports as KeyAgreementFailed (internal_error) rather than accusing the peer.
   */
  peerFailure(e: unknown): unknown;
}

/**
 * X25519 (RFC 7748, RFC 8446 §7.4.2): the 32 random bytes are the private key (PKCS#8 of RFC 8410; clamped
 * inside the scalar multiplication, RFC 7748 §5); the public key is the scalar multiplication of the base point
 * u = 9, which WebCrypto computes as deriveBits against it (no extractable key needed).
 */
const X25519: Curve = {
  name: 'x25519',
  randomLength: X25519_SPEC.randomLength,
  algorithm: { name: 'X25519' },
  check: (from, share) => checkShareLength(X25519_SPEC, from, share),
  privateKey: (randomness) => ({ pkcs8: concat(fromHex('302e020100300506032b656e04220420'), randomness) }),
  publicKey: async (subtle, priv) => {
    const basePoint = await x25519BasePoint(subtle);
    return new Uint8Array(await subtle.deriveBits({ name: 'X25519', public: basePoint }, priv, 256));
  },
  // RFC 8446 §7.4.2, RFC 7748 §6.1: WebCrypto refuses an all-zero result (a low-order peer point) with an
  // OperationError (Secure Curves in WebCrypto, X25519 "derive bits" step 6; seen in Node, Deno and Bun); any
  // other 32 bytes are a valid share, so another error is ours.
  peerFailure: (e) => (domExceptionName(e) === 'OperationError' ? zeroSecret(e) : e),
};

/** The X25519 base point u = 9 (RFC 7748 §4.1) as a WebCrypto public key, imported once per WebCrypto. */
function x25519BasePoint(subtle: SubtleCrypto): Promise<Key> {
  let key = BASE_POINTS.get(subtle);
  if (!key) {
    const u9 = new Uint8Array(32);
    u9[0] = 9;
    key = subtle.importKey('raw', u9, { name: 'X25519' }, true, []);
    key.catch(() => BASE_POINTS.delete(subtle)); // a runtime without X25519: the caller falls back
    BASE_POINTS.set(subtle, key);
  }
  return key;
}

const BASE_POINTS = new WeakMap<SubtleCrypto, Promise<Key>>();

/**
 * P-256 (RFC 8446 §4.2.8.2, §7.4.2): the scalar comes from the 48 random bytes as in the synchronous group
 * ({@link nistScalarFromSeed}); the share is the uncompressed point, the secret the x-coordinate (what ECDH
 * deriveBits returns). WebCrypto cannot give the public key of a non-extractable private key, and exporting an
 * extractable one would put the private key in a JWK string that cannot be wiped: so the public key — a
 * fixed-base multiplication — is computed by @noble/curves, and the costlier variable-base multiplication of the
 * key exchange runs in WebCrypto, with a non-extractable private key. A peer's point is checked (on the curve,
 * not the identity) before the pause, as noble's group does.
 */
const P256: Curve = {
  name: 'secp256r1',
  randomLength: P256_SPEC.randomLength,
  algorithm: { name: 'ECDH', namedCurve: 'P-256' },
  check: (_from, share) => {
    checkNistShareFraming(P256_SPEC, share);
    if (!p256.utils.isValidPublicKey(share, false)) throw offCurve(P256_SPEC);
  },
  privateKey: (randomness) => {
    const scalar = nistScalarFromSeed(P256_SPEC, randomness);
    const publicKey = p256.getPublicKey(scalar, false);
    // RFC 5915 ECPrivateKey (version 1, the scalar, [1] the public key) in a PKCS#8 PrivateKeyInfo with
    // id-ecPublicKey and prime256v1.
    const pkcs8 = concat(fromHex('308187020100301306072a8648ce3d020106082a8648ce3d030107046d306b0201010420'), scalar, fromHex('a144034200'), publicKey);
    wipe(scalar);
    return { pkcs8, publicKey };
  },
  publicKey: () => Promise.reject(new Error('unreachable: the P-256 public key comes with the private key')),
  // The point passed checkPeerShare already; WebCrypto refusing to import it (a DataError) means the same.
  peerFailure: (e) => (domExceptionName(e) === 'DataError' ? offCurve(P256_SPEC, e) : e),
};

/** The `name` of a WebCrypto failure (a DOMException), if it has one. */
function domExceptionName(e: unknown): string | undefined {
  return typeof e === 'object' && e !== null && typeof (e as { name?: unknown }).name === 'string' ? (e as { name: string }).name : undefined;
}

/** One group in WebCrypto, falling back to `sync` (the same bytes) where the runtime lacks the algorithm. */
class WebCryptoGroup implements AsyncKeyExchangeGroup {
  readonly name: GroupName;
  readonly randomLength: number;
  path: KeySharePath = 'untried';

  constructor(
    private readonly curve: Curve,
    private readonly sync: KeyExchangeGroup,
    private readonly counts: { webcrypto: number; fallback: number },
  ) {
    this.name = curve.name;
    this.randomLength = curve.randomLength;
  }

  checkPeerShare(from: 'client' | 'server', share: Uint8Array): void {
    this.curve.check(from, share);
  }

  start(randomness: Uint8Array): Promise<AsyncClientKeyShare> {
    const kept = this.keepForFallback(randomness);
    return this.ownKey(randomness).then(
      (own) => {
        if (kept) wipe(kept);
        this.counts.webcrypto++;
        return new WebCryptoClientShare(this.name, own.publicKey, (peer) => this.shared(own.priv, peer));
      },
      (e: unknown) => {
        try {
          return syncShare(this.fallBack(e, kept, (r) => this.sync.start(r)));
        } finally {
          if (kept) wipe(kept);
        }
      },
    );
  }

  respond(clientShare: Uint8Array, randomness: Uint8Array): Promise<{ share: Uint8Array; sharedSecret: Uint8Array }> {
    const kept = this.keepForFallback(randomness);
    const peer = copyBytes(clientShare);
    return this.ownKey(randomness).then(
      async (own) => {
        if (kept) wipe(kept);
        this.counts.webcrypto++;
        return { share: own.publicKey, sharedSecret: await this.shared(own.priv, peer) };
      },
      (e: unknown) => {
        try {
          return this.fallBack(e, kept, (r) => this.sync.respond(peer, r));
        } finally {
          if (kept) wipe(kept);
        }
      },
    );
  }

  /**
   * Checks the randomness, and copies it if the synchronous fallback may still need it: only before WebCrypto
   * has worked for this group (see {@link fallBack}), and until our whole key pair is made (a runtime may import
   * an algorithm's key and still refuse to derive with it: X25519's public key is a deriveBits). Otherwise nothing is kept: {@link ownKey} reads the
   * randomness before it returns, and the caller wipes it, so a WebCrypto promise that never settles holds no
   * copy of it.
   */
  private keepForFallback(randomness: Uint8Array): Uint8Array | null {
    if (!(randomness instanceof Uint8Array) || randomness.length !== this.randomLength) {
      throw new TypeError(`${this.name}: expected ${this.randomLength} bytes of randomness`);
    }
    return this.path === 'webcrypto' ? null : copyBytes(randomness);
  }

  /**
   * Our key pair in WebCrypto; rejects when the runtime lacks the algorithm (see {@link fallBack}). Reads
   * `randomness` before it returns (the PKCS#8 document, and P-256's public key, are made synchronously).
   */
  private async ownKey(randomness: Uint8Array): Promise<{ priv: Key; publicKey: Uint8Array }> {
    const subtle = globalThis.crypto.subtle;
    const { pkcs8, publicKey } = this.curve.privateKey(randomness);
    let importing: Promise<Key>;
    try {
      importing = subtle.importKey('pkcs8', pkcs8, this.curve.algorithm, false, ['deriveBits']);
    } finally {
      // WebCrypto §14.3.9 (importKey) step 2: "a copy of the bytes held by the keyData parameter", taken
      // before the promise is returned: the private key leaves our memory now, whether or not the work ever
      // settles. (The runtime tests check, in every runtime, that the handshakes still complete on this path.)
      wipe(pkcs8);
    }
    const priv = await importing;
    const pub = publicKey ?? (await this.curve.publicKey(subtle, priv));
    this.path = 'webcrypto';
    return { priv, publicKey: pub };
  }

  /**
   * WebCrypto refused our own key (the runtime lacks the algorithm: NotSupportedError, or a TypeError or
   * DataError in some runtimes): the synchronous group makes the same key share from the same randomness, and
   * does so directly from now on. Any refusal before WebCrypto has worked once for this group is taken for a
   * missing algorithm, whatever its name (runtimes differ); once it has worked, a failure is reported as it is.
   */
  private fallBack<T>(e: unknown, kept: Uint8Array | null, sync: (randomness: Uint8Array) => T): T {
    // The algorithm worked before (when this call began, if nothing was kept): this is not a missing algorithm.
    if (this.path === 'webcrypto' || !kept) throw e;
    this.path = 'fallback';
    this.counts.fallback++;
    return sync(kept);
  }

  /** The shared secret with the peer's key_exchange (checked before the pause by {@link checkPeerShare}). */
  private async shared(priv: Key, peer: Uint8Array): Promise<Uint8Array> {
    const subtle = globalThis.crypto.subtle;
    let secret: Uint8Array;
    try {
      const peerKey = await subtle.importKey('raw', peer, this.curve.algorithm, true, []);
      secret = new Uint8Array(await subtle.deriveBits({ name: this.curve.algorithm.name, public: peerKey }, priv, 256));
    } catch (e) {
      throw this.curve.peerFailure(e);
    }
    // RFC 8446 §7.4.2: an all-zero X25519 secret aborts the handshake (a runtime that returns it rather than failing).
    if (this.curve.name === 'x25519' && isAllZero(secret)) throw zeroSecret();
    return secret;
  }
}

/** Our half of an X25519 or P-256 exchange; `complete` holds the private CryptoKey until destroy(). */
class WebCryptoClientShare implements AsyncClientKeyShare {
  private complete_: ((peer: Uint8Array) => Promise<Uint8Array>) | null;
  constructor(
    readonly group: GroupName,
    readonly share: Uint8Array,
    complete: (peer: Uint8Array) => Promise<Uint8Array>,
  ) {
    this.complete_ = complete;
  }
  complete(serverShare: Uint8Array): Promise<Uint8Array> {
    if (!this.complete_) return Promise.reject(new TypeError(`${this.group}: this key share was destroyed`));
    return this.complete_(copyBytes(serverShare));
  }
  /** Drops the private CryptoKey (non-extractable: its bytes live only inside WebCrypto). */
  destroy(): void {
    this.complete_ = null;
  }
}

/** A synchronous ClientKeyShare seen through the asynchronous interface (the fallback path). */
function syncShare(share: ReturnType<KeyExchangeGroup['start']>): AsyncClientKeyShare {
  return {
    group: share.group,
    share: share.share,
    complete: (serverShare) => {
      try {
        return Promise.resolve(share.complete(serverShare));
      } catch (e) {
        return Promise.reject(e);
      }
    },
    destroy: () => share.destroy(),
  };
}
