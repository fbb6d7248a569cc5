/**
 * The RFC 7919 finite-field groups (ffdhe2048 ... ffdhe8192, RFC 8446 §4.2.8.1) for the node provider
 * (lib/crypto/node.ts), on whichever of node:crypto's two Diffie-Hellman APIs serves them best in this runtime.
 *
 * Both produce the same bytes as the noble provider for the same randomness: the private exponent comes from
 * the shared rule (lib/crypto/ffdhe.ts), 1 < Y < p-1 is checked there before OpenSSL sees a peer's Y, and Y
 * and Z are left-padded to the size of p. What differs is what OpenSSL does around the exponentiation, which
 * depends on the Node and OpenSSL versions, in ways no version number predicts well. Measured on this project's
 * machine (2026-12-07; one respond = our Y and Z, ffdhe2048 / ffdhe3072; "make" = the first use per group and
 * process):
 *
 * | Node (OpenSSL)  | `DiffieHellman` make | `DiffieHellman` respond | `KeyObject` respond |
 * |-----------------|----------------------|-------------------------|---------------------|
 * | 20.20 (3.0.19)  | 0.1 ms               | 0.7 / 2.1 ms            | 3.5 / 8.8 ms        |
 * | 22.12 (3.0.15)  | 0.1 ms               | 2.6 / 9.2 ms            | 5.5 / 8.7 ms        |
 * | 22.22 (3.5.4)   | 0.1 ms               | 4.0 / 9.3 ms            | 0.9 / 2.2 ms        |
 * | 24.18 (3.5.7)   | 0.1 ms               | 3.1 / 10.5 ms           | 1.1 / 3.0 ms        |
 * | 24.22 (3.5.9)   | 0.24 s / 1.6 s       | 1.0 / 1.5 ms            | 1.4 / 1.7 ms        |
 *
 * (The slow responds are a full check of the peer's Y, one more exponentiation as long as p; the slow makes are
 * Miller-Rabin on p and (p-1)/2, 28 s for ffdhe8192, from Node 24.21 / OpenSSL 3.5.8 on.) So: with OpenSSL 3.0,
 * `DiffieHellman`; otherwise `KeyObject`, where the runtime can import a DH key at all. Bun's BoringSSL cannot,
 * so Bun gets `DiffieHellman`, and pays its check (≈0.5 s for ffdhe2048, 1.5 s for ffdhe3072, 27 s for
 * ffdhe8192 in Bun 1.4.5) once per group and process. Either choice gives the same bytes; only the cost moves.
 */
import { createDiffieHellman, createPrivateKey, createPublicKey, diffieHellman, type KeyObject } from 'node:crypto';
import { copyBytes, plainView, wipe } from '../codec/bytes.js';
import { TlsError } from '../errors.js';
import { FFDHE_SPECS, bigIntToBytes, checkFfdheSecret, checkFfdheShare, ffdheExponentBytes, leftPad, type FfdheSpec } from './ffdhe.js';
import { OpaqueKeyClientShare, PrivateValueClientShare } from './groups.js';
import type { ClientKeyShare, KeyExchangeGroup } from './provider.js';

/** Which node:crypto API computes an ffdhe exchange: the `DiffieHellman` class, or DH `KeyObject`s with `diffieHellman()`. */
export type FfdheBackend = 'DiffieHellman' | 'KeyObject';

/**
 * The group `spec` on `backend` (by default {@link ffdheBackend}, chosen at the first exchange). Tests pass a
 * backend to check both against each other and against the noble provider.
 */
export function nodeFfdheGroup(spec: FfdheSpec, backend?: FfdheBackend): KeyExchangeGroup {
  let impl: KeyExchangeGroup | undefined;
  const get = (): KeyExchangeGroup =>
    (impl ??= (backend ?? ffdheBackend()) === 'KeyObject' ? keyObjectGroup(spec) : diffieHellmanGroup(spec));
  return {
    name: spec.name,
    randomLength: spec.randomLength,
    start: (randomness) => get().start(randomness),
    respond: (clientShare, randomness) => get().respond(clientShare, randomness),
  };
}

let chosen: FfdheBackend | undefined;

/** The backend for this process (see the table above), decided once. */
export function ffdheBackend(): FfdheBackend {
  chosen ??= /^3\.0\./.test(process.versions.openssl ?? '') || !importsDhKeys() ? 'DiffieHellman' : 'KeyObject';
  return chosen;
}

/** What an ffdhe exchange needs from a backend, given the private exponent X. */
interface Backend<K> {
  /** The private key from X (the caller wipes X itself). */
  key(x: Uint8Array): K;
  /** Our Y = g^X mod p, the size of p. */
  publicShare(key: K): Uint8Array;
  /** Z from a peer's Y, the size of p. */
  secret(key: K, peer: Uint8Array): Uint8Array;
  /** The client's open share, which keeps the key until completed or destroyed. */
  clientShare(share: Uint8Array, key: K): ClientKeyShare;
  /** Wipes or drops a key no one keeps. */
  release(key: K): void;
}

/** start and respond (RFC 8446 §4.2.8.1), the same on both backends: X from the randomness, wiped once used. */
function exchange<K>(spec: FfdheSpec, backend: Backend<K>): KeyExchangeGroup {
  return {
    name: spec.name,
    randomLength: spec.randomLength,
    start(randomness) {
      const x = ffdheExponentBytes(spec, randomness);
      try {
        const key = backend.key(x);
        try {
          return backend.clientShare(backend.publicShare(key), key);
        } catch (e) {
          backend.release(key);
          throw e;
        }
      } finally {
        wipe(x);
      }
    },
    respond(clientShare, randomness) {
      checkFfdheShare(spec, clientShare); // before the exponentiation: garbage costs little
      const x = ffdheExponentBytes(spec, randomness);
      try {
        const key = backend.key(x);
        try {
          return { share: backend.publicShare(key), sharedSecret: backend.secret(key, clientShare) };
        } finally {
          backend.release(key);
        }
      } finally {
        wipe(x);
      }
    },
  };
}

// ---------------------------------------------------------------------------------------------------
// KeyObject: the exponent enters as PKCS#8, the peer's Y as SubjectPublicKeyInfo (RFC 5280 §4.1; PKCS #3
// DHParameter under OID dhKeyAgreement, the encoding OpenSSL reads for DH keys).

function keyObjectGroup(spec: FfdheSpec): KeyExchangeGroup {
  const der = dhDer(spec);
  const privateKey = (x: Uint8Array): KeyObject => {
    const pkcs8 = der.privateKey(x);
    try {
      return createPrivateKey({ key: pkcs8, format: 'der', type: 'pkcs8' });
    } finally {
      wipe(pkcs8);
    }
  };
  // OpenSSL computed Y = g^X mod p when the private key was imported; it is the INTEGER inside the SPKI's BIT STRING.
  const publicShare = (priv: KeyObject): Uint8Array =>
    leftPad(plainView(der.publicValue(createPublicKey(priv).export({ format: 'der', type: 'spki' }))), spec.primeLength);
  const secret = (priv: KeyObject, peer: Uint8Array): Uint8Array => {
    checkFfdheShare(spec, peer);
    return paddedSecret(spec, refusedPeer(spec, () => diffieHellman({ privateKey: priv, publicKey: createPublicKey({ key: der.publicKey(peer), format: 'der', type: 'spki' }) })));
  };
  return exchange(spec, {
    key: privateKey,
    publicShare,
    secret,
    clientShare: (share, priv) => new OpaqueKeyClientShare(spec.name, share, priv, secret),
    release: () => {}, // a KeyObject cannot be wiped; dropped, it is freed
  });
}

/** Whether this runtime imports a DH private key (Node does; Bun's BoringSSL answers UNSUPPORTED_ALGORITHM). */
function importsDhKeys(): boolean {
  try {
    // A fixed exponent that is no one's key.
    const spec = FFDHE_SPECS.ffdhe2048;
    createPrivateKey({ key: dhDer(spec).privateKey(ffdheExponentBytes(spec, new Uint8Array(spec.randomLength).fill(0x41))), format: 'der', type: 'pkcs8' });
    return true;
  } catch {
    return false;
  }
}

/**
 * The DER around a key of `spec`'s group. The exponent always has its top bit set (ffdheExponentBytes), so
 * its INTEGER is a 0x00 byte and then the exponent, and the private key's encoding has one length per group.
 */
function dhDer(spec: FfdheSpec) {
  const algorithm = tlv(0x30, OID_DH_KEY_AGREEMENT, tlv(0x30, integer(bigIntToBytes(spec.prime, spec.primeLength)), integer(Uint8Array.of(Number(spec.generator)))));
  const version = integer(Uint8Array.of(0));
  return {
    /** PKCS#8 PrivateKeyInfo (RFC 5208 §5) with the exponent `x`; the caller wipes the result. */
    privateKey(x: Uint8Array): Buffer {
      const xInt = tlv(0x02, Uint8Array.of(0), x);
      const octets = tlv(0x04, xInt);
      wipe(xInt);
      const info = tlv(0x30, version, algorithm, octets);
      wipe(octets);
      return Buffer.from(info.buffer, info.byteOffset, info.byteLength); // a view: wiping it wipes `info`
    },
    /** SubjectPublicKeyInfo with the public value `y` (already checked to be 1 < y < p-1). */
    publicKey(y: Uint8Array): Buffer {
      return Buffer.from(tlv(0x30, algorithm, tlv(0x03, Uint8Array.of(0), integer(y))));
    },
    /** The public value's big-endian bytes, sign byte dropped, in an SPKI OpenSSL wrote (as {@link publicKey} builds it). */
    publicValue(spki: Buffer): Buffer {
      const outer = header(spki, 0, 0x30);
      const bits = header(spki, header(spki, outer.start, 0x30).end, 0x03);
      const y = header(spki, bits.start + 1, 0x02);
      return spki.subarray(spki[y.start] === 0 ? y.start + 1 : y.start, y.end);
    },
  };
}

const OID_DH_KEY_AGREEMENT = Uint8Array.of(0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x03, 0x01); // 1.2.840.113549.1.3.1

/** A DER INTEGER holding the unsigned big-endian `v`: leading zeros dropped, one 0x00 put back if the top bit is set. */
function integer(v: Uint8Array): Uint8Array {
  let i = 0;
  while (i < v.length - 1 && v[i] === 0) i++;
  const digits = v.subarray(i);
  return digits[0] & 0x80 ? tlv(0x02, Uint8Array.of(0), digits) : tlv(0x02, digits);
}

/** tag, DER length, contents. */
function tlv(tag: number, ...parts: Uint8Array[]): Uint8Array {
  const length = parts.reduce((n, p) => n + p.length, 0);
  const lengthBytes: number[] = [];
  for (let n = length; n > 0; n >>>= 8) lengthBytes.unshift(n & 0xff);
  const head = length < 0x80 ? [tag, length] : [tag, 0x80 | lengthBytes.length, ...lengthBytes];
  const out = new Uint8Array(head.length + length);
  out.set(head);
  let at = head.length;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** The element with `tag` at `at` in DER written by OpenSSL: where its contents start and end. */
function header(der: Uint8Array, at: number, tag: number): { start: number; end: number } {
  if (der[at] !== tag) throw new Error(`ffdhe: OpenSSL's DER has tag ${der[at]} at ${at}, expected ${tag}`);
  let length = der[at + 1];
  let start = at + 2;
  if (length & 0x80) {
    const n = length & 0x7f;
    length = 0;
    for (let i = 0; i < n; i++) length = length * 256 + der[start + i];
    start += n;
  }
  if (start + length > der.length) throw new Error('ffdhe: OpenSSL\'s DER is truncated');
  return { start, end: start + length };
}

// ---------------------------------------------------------------------------------------------------
// DiffieHellman: one object per group and process, the exponent set just before each synchronous use and
// replaced right after, so OpenSSL keeps none between calls (making one is what costs on Node 24.21+ and Bun).

function diffieHellmanGroup(spec: FfdheSpec): KeyExchangeGroup {
  const shared = createDiffieHellman(Buffer.from(bigIntToBytes(spec.prime, spec.primeLength)), Buffer.from([Number(spec.generator)]));
  /** Runs `f` with `x` as the DH's private exponent, and takes it out again whatever happens. */
  const withExponent = <T>(x: Uint8Array, f: (dh: typeof shared) => T): T => {
    try {
      shared.setPrivateKey(x);
      return f(shared);
    } finally {
      shared.setPrivateKey(NO_EXPONENT);
    }
  };
  // With a private key set, generateKeys() computes Y = g^X mod p from it (it draws nothing).
  const publicShare = (x: Uint8Array): Uint8Array => leftPad(plainView(withExponent(x, (dh) => dh.generateKeys())), spec.primeLength);
  const secret = (x: Uint8Array, peer: Uint8Array): Uint8Array => {
    checkFfdheShare(spec, peer);
    return paddedSecret(spec, refusedPeer(spec, () => withExponent(x, (dh) => dh.computeSecret(peer))));
  };
  return exchange(spec, {
    key: copyBytes, // the exponent itself, in an array of our own that the client share keeps
    publicShare,
    secret,
    clientShare: (share, x) => new PrivateValueClientShare(spec.name, share, x, secret),
    release: (x: Uint8Array) => wipe(x),
  });
}

/** What the shared DH objects hold between exchanges instead of an exponent: not a secret. */
const NO_EXPONENT = Buffer.from([1]);

/**
 * The exchange with a peer's Y that passed 1 < Y < p-1 (RFC 8446 §4.2.8.1). Some OpenSSL builds also check Y
 * against q = (p-1)/2 (Y^q = 1: Y in the prime-order subgroup, where every honest peer's Y is, g = 2 being a
 * square mod an RFC 7919 prime) and refuse the others, e.g. p-2: Node 20.20 and 24.21+ accept it on their chosen API,
 * Node 22.12 and 24.0 refuse it on both. RFC 8446 leaves that stricter check to the implementation; a refusal is
 * the peer's fault, so it is 'InvalidPeerKeyShare' (illegal_parameter, §6.2), not a local failure.
 */
function refusedPeer(spec: FfdheSpec, derive: () => Buffer): Buffer {
  try {
    return derive();
  } catch (e) {
    throw new TlsError('InvalidPeerKeyShare', `${spec.name} key_exchange Y was refused by OpenSSL's check of the peer's public value`, { cause: e });
  }
}

/** Z from OpenSSL, left-padded to the size of p (RFC 8446 §7.4.1) and checked; OpenSSL's copy is wiped if padding copied it. */
function paddedSecret(spec: FfdheSpec, z: Buffer): Uint8Array {
  const padded = leftPad(plainView(z), spec.primeLength);
  if (padded.buffer !== z.buffer) wipe(z);
  checkFfdheSecret(spec, padded);
  return padded;
}
