/**
 * The post-quantum hybrid groups of draft-ietf-tls-ecdhe-mlkem (X25519MLKEM768, SecP256r1MLKEM768,
 * SecP384r1MLKEM1024): ML-KEM (FIPS 203) from `@noble/post-quantum` next to a provider's own ECDH group.
 *
 * Runtime-neutral, and the same for both providers: Node 20 has no ML-KEM, so the `node` provider pairs
 * noble's ML-KEM with its OpenSSL X25519/P-256/P-384, the `noble` provider with noble's. This is the draft's
 * plain concatenation combiner, not X-Wing (`ml_kem768_x25519` in @noble/post-quantum hashes the parts
 * together, a different construction that TLS does not use).
 *
 * Layout (draft-ietf-tls-ecdhe-mlkem, "Construction"; see {@link HybridSpec}):
 *   client key_exchange = ek || ECDH share        (X25519MLKEM768: ML-KEM first)
 *                       = ECDH share || ek        (SecP256r1MLKEM768, SecP384r1MLKEM1024: ECDH first)
 *   server key_exchange = ct and ECDH share, in the same order
 *   shared secret       = ML-KEM secret and ECDH secret, in the same order
 *
 * Checks (the draft's "Discussion" of validation): the server runs FIPS 203 §7.2's modulus check on the
 * encapsulation key and refuses it with illegal_parameter ('MlKemEncapsulationKeyNotReduced'); the lengths
 * of both shares (so the client's ciphertext-length check) are checked at the provider boundary
 * (lib/crypto/checked.ts); the ECDH half applies its own checks (an all-zero X25519 secret is refused,
 * 'KeyExchangeZeroSecret'; NIST points must be on the curve). ML-KEM decapsulation itself never fails: a bad
 * ciphertext yields an unrelated secret (implicit rejection) and the handshake fails at Finished.
 *
 * Randomness: the group's `randomLength` bytes are the 64-byte ML-KEM key-generation seed (d || z) followed by
 * the ECDH group's randomness; the server's encapsulation takes its 32-byte message m from the first 32 bytes.
 * Every secret intermediate (ML-KEM secret key, both partial secrets) is wiped after use.
 */
import { ml_kem1024, ml_kem768 } from '@noble/post-quantum/ml-kem.js';
import { wipe } from '../codec/bytes.js';
import { TlsError } from '../errors.js';
import { FFDHE_SPECS, type FfdheName, type FfdheSpec } from './ffdhe.js';
import { destroyedShare, SECP256R1MLKEM768_SPEC, SECP384R1MLKEM1024_SPEC, X25519MLKEM768_SPEC, type HybridSpec } from './groups.js';
import type { ClientKeyShare, GroupName, KeyExchangeGroup } from './provider.js';

/**
 * A provider's groups, every one by name: its own ECDH groups and RFC 7919 groups, and the hybrids made of its
 * ECDH groups (which ECDH group each hybrid pairs with is decided here, once, for every provider).
 */
export function providerGroups(
  ecdh: { readonly x25519: KeyExchangeGroup; readonly secp256r1: KeyExchangeGroup; readonly secp384r1: KeyExchangeGroup },
  ffdhe: (spec: FfdheSpec) => KeyExchangeGroup,
): Readonly<Record<GroupName, KeyExchangeGroup>> {
  const ff = (name: FfdheName): KeyExchangeGroup => ffdhe(FFDHE_SPECS[name]);
  return {
    ...ecdh,
    X25519MLKEM768: hybridGroup(X25519MLKEM768_SPEC, ecdh.x25519),
    SecP256r1MLKEM768: hybridGroup(SECP256R1MLKEM768_SPEC, ecdh.secp256r1),
    SecP384r1MLKEM1024: hybridGroup(SECP384R1MLKEM1024_SPEC, ecdh.secp384r1),
    ffdhe2048: ff('ffdhe2048'),
    ffdhe3072: ff('ffdhe3072'),
    ffdhe4096: ff('ffdhe4096'),
    ffdhe6144: ff('ffdhe6144'),
    ffdhe8192: ff('ffdhe8192'),
  };
}

/** A hybrid group from its spec and the provider's ECDH group for `spec.classical`. */
function hybridGroup(spec: HybridSpec, classical: KeyExchangeGroup): KeyExchangeGroup {
  const kem = spec.kem === 'ML-KEM-768' ? ml_kem768 : ml_kem1024;
  const ecdhLength = spec.classical.shareLength;
  /** Splits a key_exchange value into its ML-KEM and ECDH parts, in the group's order. */
  const split = (share: Uint8Array, kemLength: number): { kemPart: Uint8Array; ecdhPart: Uint8Array } =>
    spec.kemFirst
      ? { kemPart: share.subarray(0, kemLength), ecdhPart: share.subarray(kemLength) }
      : { kemPart: share.subarray(ecdhLength), ecdhPart: share.subarray(0, ecdhLength) };
  const join = (kemPart: Uint8Array, ecdhPart: Uint8Array): Uint8Array => {
    const out = new Uint8Array(kemPart.length + ecdhPart.length);
    out.set(spec.kemFirst ? kemPart : ecdhPart, 0);
    out.set(spec.kemFirst ? ecdhPart : kemPart, spec.kemFirst ? kemPart.length : ecdhPart.length);
    return out;
  };
  const joinSecrets = (kemSecret: Uint8Array, ecdhSecret: Uint8Array): Uint8Array => {
    try {
      return join(kemSecret, ecdhSecret);
    } finally {
      wipe(kemSecret, ecdhSecret);
    }
  };

  return {
    name: spec.name,
    randomLength: spec.randomLength,
    start(randomness) {
      const seed = randomness.subarray(0, spec.kemSeedLength);
      const { publicKey, secretKey } = kem.keygen(seed);
      let ecdh: ClientKeyShare;
      try {
        ecdh = classical.start(randomness.subarray(spec.kemSeedLength));
      } catch (e) {
        wipe(secretKey);
        throw e;
      }
      return new HybridClientShare(spec, join(publicKey, ecdh.share), secretKey, ecdh, (ct, sk, serverEcdh) => {
        // ECDH first: its checks (zero secret, point validity) run before the decapsulation work.
        const ecdhSecret = ecdh.complete(serverEcdh);
        return joinSecrets(kem.decapsulate(ct, sk), ecdhSecret);
      }, split);
    },
    respond(clientShare, randomness) {
      const { kemPart: ek, ecdhPart } = split(clientShare, spec.ekLength);
      checkEncapsulationKey(spec, ek);
      const ecdh = classical.respond(ecdhPart, randomness.subarray(spec.kemSeedLength));
      let encapsulated: { cipherText: Uint8Array; sharedSecret: Uint8Array };
      try {
        encapsulated = kem.encapsulate(ek, randomness.subarray(0, 32));
      } catch (e) {
        wipe(ecdh.sharedSecret);
        throw new TlsError('MlKemEncapsulationKeyNotReduced', `${spec.name}: ML-KEM refused the encapsulation key`, { cause: e });
      }
      return { share: join(encapsulated.cipherText, ecdh.share), sharedSecret: joinSecrets(encapsulated.sharedSecret, ecdh.sharedSecret) };
    },
  };
}

/**
 * FIPS 203 §7.2 "Encapsulation key check" (modulus check): the 384k bytes before the 32-byte seed ρ are k*256
 * 12-bit coefficients, each of which must be below q = 3329, i.e. ByteEncode12(ByteDecode12(ek)) == ek. The
 * draft requires the server to perform it and abort with illegal_parameter on failure. (noble's encapsulate
 * repeats the check; doing it here names the failure.)
 */
function checkEncapsulationKey(spec: HybridSpec, ek: Uint8Array): void {
  const packed = ek.length - 32;
  let bad = 0;
  for (let i = 0; i < packed; i += 3) {
    const a = ek[i] | ((ek[i + 1] & 0x0f) << 8);
    const b = (ek[i + 1] >> 4) | (ek[i + 2] << 4);
    // (x - 3329) >> 31 is -1 (all ones) when x < 3329: collects the failure without branching per coefficient.
    bad |= ~((a - 3329) >> 31) | ~((b - 3329) >> 31);
  }
  if (bad !== 0) {
    throw new TlsError('MlKemEncapsulationKeyNotReduced', `${spec.name}: the ML-KEM encapsulation key fails the modulus check (FIPS 203 §7.2)`);
  }
}

class HybridClientShare implements ClientKeyShare {
  readonly group: HybridSpec['name'];
  private secretKey: Uint8Array | null;
  constructor(
    private readonly spec: HybridSpec,
    readonly share: Uint8Array,
    secretKey: Uint8Array,
    private readonly ecdh: ClientKeyShare,
    private readonly finish: (ct: Uint8Array, sk: Uint8Array, serverEcdh: Uint8Array) => Uint8Array,
    private readonly split: (share: Uint8Array, kemLength: number) => { kemPart: Uint8Array; ecdhPart: Uint8Array },
  ) {
    this.group = spec.name;
    this.secretKey = secretKey;
  }
  complete(serverShare: Uint8Array): Uint8Array {
    if (!this.secretKey) throw destroyedShare(this.group);
    const { kemPart, ecdhPart } = this.split(serverShare, this.spec.ctLength);
    return this.finish(kemPart, this.secretKey, ecdhPart);
  }
  destroy(): void {
    wipe(this.secretKey);
    this.secretKey = null;
    this.ecdh.destroy();
  }
}
