/**
 * The cryptography qkd-tls needs, behind one interface, so that the same protocol code runs on
 * `@noble/*` (pure JavaScript, every runtime) or on a native backend (`node:crypto`).
 *
 * A provider is stateless apart from caches; randomness is part of the provider so that tests can inject
 * a deterministic source.
 */

export type HashName = 'SHA-256' | 'SHA-384';
export type AeadName = 'AES-128-GCM' | 'AES-256-GCM' | 'CHACHA20-POLY1305';
/**
 * Key-exchange groups by their IANA names (TLS Supported Groups registry): elliptic curves (RFC 8446 §4.2.7),
 * the post-quantum hybrids (draft-ietf-tls-ecdhe-mlkem) and the finite-field groups (RFC 7919).
 */
export type GroupName =
  | 'x25519'
  | 'secp256r1'
  | 'secp384r1'
  | 'X25519MLKEM768'
  | 'SecP256r1MLKEM768'
  | 'SecP384r1MLKEM1024'
  | 'ffdhe2048'
  | 'ffdhe3072'
  | 'ffdhe4096'
  | 'ffdhe6144'
  | 'ffdhe8192';

/**
 * The sizes of a key-exchange group (RFC 8446 §4.2.8): what a provider's boundary checks before any
 * backend sees an argument (lib/crypto/checked.ts); the specs are in lib/crypto/groups.ts.
 */
export interface KexSpec {
  readonly name: GroupName;
  /** How many random bytes `start` and `respond` consume (see {@link nistScalarFromSeed}). */
  readonly randomLength: number;
  /** Exact length of the client's key_exchange value. */
  readonly clientShareLength: number;
  /** Exact length of the server's key_exchange value (differs from the client's for the ML-KEM hybrids). */
  readonly serverShareLength: number;
  /** Length of the shared secret that enters the key schedule (RFC 8446 §7.4). */
  readonly secretLength: number;
}

/** A source of cryptographically secure random bytes. */
export type RandomSource = (length: number) => Uint8Array;

/** An incremental hash whose running state can be copied (needed for transcript hashes). */
export interface HashState {
  update(data: Uint8Array): void;
  /** The digest of everything so far, without disturbing this state. */
  peek(): Uint8Array;
  /** An independent copy of this state. */
  clone(): HashState;
}

export interface HashAlgorithm {
  readonly name: HashName;
  /** Output length in bytes (32 for SHA-256, 48 for SHA-384). */
  readonly outputLength: number;
  digest(data: Uint8Array): Uint8Array;
  create(): HashState;
}

/**
 * An AEAD bound to one key (RFC 5116). Implementations may cache the expanded key.
 * `seal` returns ciphertext || tag; `open` returns the plaintext or `null` when authentication fails
 * (never throws for a bad tag).
 */
export interface Aead {
  readonly name: AeadName;
  readonly keyLength: number;
  readonly nonceLength: number;
  readonly tagLength: number;
  seal(nonce: Uint8Array, aad: Uint8Array, plaintext: Uint8Array): Uint8Array;
  /**
   * Optional fast path of {@link seal} for the record layer: seals the concatenation of `parts` (so that the
   * caller need not join content and trailer first) and writes ciphertext || tag into `out` from `offset`,
   * which must have room for the total plaintext length + {@link tagLength} bytes and must not overlap any
   * part. Returns the number of bytes written. The output is byte for byte what `seal` returns.
   */
  sealInto?(nonce: Uint8Array, aad: Uint8Array, parts: readonly Uint8Array[], out: Uint8Array, offset: number): number;
  open(nonce: Uint8Array, aad: Uint8Array, ciphertextAndTag: Uint8Array): Uint8Array | null;
  /** Wipes the key material this object holds. */
  destroy(): void;
}

/** The client's half of a key exchange: its key_share, and how to finish with the server's. */
export interface ClientKeyShare {
  readonly group: GroupName;
  /** The key_exchange bytes to send in the ClientHello key_share entry. */
  readonly share: Uint8Array;
  /**
   * Finishes the exchange with the server's key_exchange bytes.
   * Throws TlsError on an invalid peer share: 'InvalidPeerKeyShare' (wrong length, not a curve point),
   * 'KeyExchangeZeroSecret' (a low-order X25519 point), 'FfdhePublicValueOutOfRange' (not 1 < Y < p-1).
   */
  complete(serverShare: Uint8Array): Uint8Array;
  /** Wipes the private key. */
  destroy(): void;
}

/**
 * A key-exchange group (RFC 8446 §4.2.8), modelled as a KEM so that hybrid post-quantum groups fit:
 * for Diffie-Hellman groups, `respond` is simply "generate a key pair and compute the shared secret".
 */
export interface KeyExchangeGroup {
  readonly name: GroupName;
  /**
   * How many random bytes {@link start} and {@link respond} consume. A group never keeps the `randomness`
   * array it is given (it copies what it needs), so the caller can and should wipe it afterwards.
   */
  readonly randomLength: number;
  /** Client: start an exchange using `randomness` (exactly {@link randomLength} bytes) as private key material. */
  start(randomness: Uint8Array): ClientKeyShare;
  /**
   * Server: answer the client's key_exchange bytes; returns the server's key_exchange bytes and the shared secret.
   * Throws TlsError on an invalid client share: the reasons of {@link ClientKeyShare.complete}, and
   * 'MlKemEncapsulationKeyNotReduced' for an ML-KEM encapsulation key failing FIPS 203's modulus check.
   * (For the ML-KEM hybrids this is the KEM's encapsulation; the shares of the two sides differ in length.)
   */
  respond(clientShare: Uint8Array, randomness: Uint8Array): { share: Uint8Array; sharedSecret: Uint8Array };
}

/**
 * The asynchronous side of a key-exchange group (for example WebCrypto's X25519 and ECDH, lib/crypto/webcrypto.ts):
 * the same exchange as {@link KeyExchangeGroup}, from the same randomness and with the same bytes out, but the
 * work returns a promise. The state machines never await it: they pause the handshake and hand the promise to
 * the transport (Connection.pendingKeyAgreement).
 *
 * Every method copies what it needs from its arguments before it returns, so the caller may wipe `randomness`
 * as soon as the call returns. A peer share is checked by {@link checkPeerShare} before the pause; what can only
 * be seen after the work (an all-zero X25519 secret) rejects the promise with the same TlsError reason that the
 * synchronous group throws.
 */
export interface AsyncKeyExchangeGroup {
  readonly name: GroupName;
  /** Exactly as {@link KeyExchangeGroup.randomLength}: the asynchronous and synchronous groups draw the same bytes. */
  readonly randomLength: number;
  /**
   * Synchronous checks of a peer's key_exchange that need no private key (RFC 8446 §4.2.8.2: length, point
   * format, point on the curve): throws the TlsError that {@link KeyExchangeGroup.respond} or
   * {@link ClientKeyShare.complete} would throw for it.
   */
  checkPeerShare(from: 'client' | 'server', share: Uint8Array): void;
  /** Client: {@link KeyExchangeGroup.start}, asynchronously. */
  start(randomness: Uint8Array): Promise<AsyncClientKeyShare>;
  /** Server: {@link KeyExchangeGroup.respond}, asynchronously (call {@link checkPeerShare} first). */
  respond(clientShare: Uint8Array, randomness: Uint8Array): Promise<{ share: Uint8Array; sharedSecret: Uint8Array }>;
}

/** The client's half of an asynchronous key exchange ({@link ClientKeyShare}, with a promise from `complete`). */
export interface AsyncClientKeyShare {
  readonly group: GroupName;
  readonly share: Uint8Array;
  /** Call {@link AsyncKeyExchangeGroup.checkPeerShare} first; rejects with 'KeyExchangeZeroSecret' for a low-order X25519 point. */
  complete(serverShare: Uint8Array): Promise<Uint8Array>;
  /** Forgets the private key (a promise still running finishes with its own copy). */
  destroy(): void;
}

export interface CryptoProvider {
  /** A short name for logs and benchmarks ("noble", "node"). */
  readonly name: string;
  hash(name: HashName): HashAlgorithm;
  hmac(hash: HashName, key: Uint8Array, data: Uint8Array): Uint8Array;
  /** RFC 5869 §2.2 HKDF-Extract. */
  hkdfExtract(hash: HashName, salt: Uint8Array, ikm: Uint8Array): Uint8Array;
  /** RFC 5869 §2.3 HKDF-Expand. */
  hkdfExpand(hash: HashName, prk: Uint8Array, info: Uint8Array, length: number): Uint8Array;
  aead(name: AeadName, key: Uint8Array): Aead;
  /** The group implementation, or undefined when this provider does not support it. */
  group(name: GroupName): KeyExchangeGroup | undefined;
  /**
   * Optional: an asynchronous implementation of a group that {@link group} also implements, or undefined to use
   * the synchronous one. When present, the handshake pauses where it would call the group (see
   * {@link AsyncKeyExchangeGroup}); the handshake's bytes are the same either way.
   */
  asyncGroup?(name: GroupName): AsyncKeyExchangeGroup | undefined;
  /** Cryptographically secure random bytes. */
  random: RandomSource;
}
