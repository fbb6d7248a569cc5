/**
 * The provider boundary: every argument check a {@link CryptoProvider} makes, made once, here, in front of
 * whichever backend does the work (in the manner of noble's `abytes`: type, then exact length, with the
 * argument's name in the message). Backends (lib/crypto/noble.ts, node.ts) receive only checked arguments
 * and so fail the same way on the same misuse; they check nothing a backend-independent rule can decide.
 *
 * Two kinds of failure come out of here:
 * - a caller bug (wrong type, wrong key/nonce/randomness length, unknown algorithm): TypeError/RangeError;
 * - a peer's key_exchange of the wrong length (RFC 8446 §4.2.8): TlsError 'InvalidPeerKeyShare'
 *   (illegal_parameter). What the value means (point on the curve, 1 < Y < p-1, ML-KEM modulus check, zero
 *   secret) is the group's to check, in the runtime-neutral rules shared by both backends (groups.ts,
 *   ffdhe.ts, hybrid.ts).
 */
import { checkRandomness, checkShareLength, groupSpec, type KexSpec } from './groups.js';
import { aeadSpec, type AeadSpec, checkAeadCall, checkBytes, checkExpand, checkSealInto, hashSpec } from './params.js';
import type { Aead, ClientKeyShare, CryptoProvider, GroupName, HashAlgorithm, HashName, HashState, KeyExchangeGroup } from './provider.js';

/**
 * Wraps a backend whose methods trust their arguments into a provider that checks them. The backend's
 * `group(name)` is consulted once per name; a name this stack does not know is undefined without asking it.
 */
export function withArgumentChecks(backend: CryptoProvider): CryptoProvider {
  const hashes = new Map<HashName, HashAlgorithm>();
  const groups = new Map<GroupName, KeyExchangeGroup | undefined>();
  return {
    name: backend.name,
    hash: (name) => {
      const spec = hashSpec(name);
      let h = hashes.get(spec.name);
      if (!h) hashes.set(spec.name, (h = checkedHash(backend.hash(spec.name))));
      return h;
    },
    hmac: (hash, key, data) => {
      const spec = hashSpec(hash);
      checkBytes(key, 'HMAC key');
      checkBytes(data, 'HMAC data');
      return backend.hmac(spec.name, key, data);
    },
    hkdfExtract: (hash, salt, ikm) => {
      const spec = hashSpec(hash);
      checkBytes(salt, 'HKDF-Extract salt');
      checkBytes(ikm, 'HKDF-Extract IKM');
      return backend.hkdfExtract(spec.name, salt, ikm);
    },
    hkdfExpand: (hash, prk, info, length) => {
      const spec = hashSpec(hash);
      checkExpand(spec, prk, info, length);
      return backend.hkdfExpand(spec.name, prk, info, length);
    },
    aead: (name, key) => {
      const spec = aeadSpec(name, key);
      return new CheckedAead(spec, backend.aead(spec.name, key));
    },
    group: (name) => {
      if (groups.has(name)) return groups.get(name);
      const spec = groupSpec(name);
      const inner = spec ? backend.group(spec.name) : undefined;
      const g = spec && inner ? checkedGroup(spec, inner) : undefined;
      if (spec) groups.set(spec.name, g);
      return g;
    },
    random: (length) => {
      if (!Number.isSafeInteger(length) || length < 0) throw new RangeError(`random: length must be a non-negative integer, got ${length}`);
      return backend.random(length);
    },
  };
}

function checkedHash(h: HashAlgorithm): HashAlgorithm {
  return {
    name: h.name,
    outputLength: h.outputLength,
    digest: (data) => {
      checkBytes(data, 'hash input');
      return h.digest(data);
    },
    create: () => new CheckedHashState(h.create()),
  };
}

class CheckedHashState implements HashState {
  constructor(private readonly inner: HashState) {}
  update(data: Uint8Array): void {
    checkBytes(data, 'hash input');
    this.inner.update(data);
  }
  peek(): Uint8Array {
    return this.inner.peek();
  }
  clone(): HashState {
    return new CheckedHashState(this.inner.clone());
  }
}

class CheckedAead implements Aead {
  readonly name;
  readonly keyLength;
  readonly nonceLength;
  readonly tagLength;
  constructor(
    private readonly spec: AeadSpec,
    private readonly inner: Aead,
  ) {
    this.name = spec.name;
    this.keyLength = spec.keyLength;
    this.nonceLength = spec.nonceLength;
    this.tagLength = spec.tagLength;
    if (inner.sealInto) {
      const sealInto = inner.sealInto.bind(inner);
      this.sealInto = (nonce, aad, parts, out, offset) => {
        checkSealInto(this.spec, nonce, aad, parts, out, offset);
        return sealInto(nonce, aad, parts, out, offset);
      };
    }
  }
  sealInto?: Aead['sealInto'];
  seal(nonce: Uint8Array, aad: Uint8Array, plaintext: Uint8Array): Uint8Array {
    checkAeadCall(this.spec, nonce, aad, plaintext);
    return this.inner.seal(nonce, aad, plaintext);
  }
  open(nonce: Uint8Array, aad: Uint8Array, ciphertextAndTag: Uint8Array): Uint8Array | null {
    checkAeadCall(this.spec, nonce, aad, ciphertextAndTag);
    // RFC 5116 §2.2: shorter than a tag cannot authenticate; FAIL without asking the backend.
    if (ciphertextAndTag.length < this.spec.tagLength) return null;
    return this.inner.open(nonce, aad, ciphertextAndTag);
  }
  destroy(): void {
    this.inner.destroy();
  }
}

/** Randomness of exactly `randomLength` bytes, and peer shares of exactly the group's length per side. */
function checkedGroup(spec: KexSpec, inner: KeyExchangeGroup): KeyExchangeGroup {
  return {
    name: spec.name,
    randomLength: spec.randomLength,
    start(randomness) {
      checkRandomness(spec, randomness);
      return new CheckedClientShare(spec, inner.start(randomness));
    },
    respond(clientShare, randomness) {
      checkRandomness(spec, randomness);
      checkShareLength(spec, 'client', clientShare); // before any key generation: garbage costs nothing
      return inner.respond(clientShare, randomness);
    },
  };
}

class CheckedClientShare implements ClientKeyShare {
  readonly group: GroupName;
  readonly share: Uint8Array;
  constructor(
    private readonly spec: KexSpec,
    private readonly inner: ClientKeyShare,
  ) {
    this.group = inner.group;
    this.share = inner.share;
  }
  complete(serverShare: Uint8Array): Uint8Array {
    checkShareLength(this.spec, 'server', serverShare);
    return this.inner.complete(serverShare);
  }
  destroy(): void {
    this.inner.destroy();
  }
}
