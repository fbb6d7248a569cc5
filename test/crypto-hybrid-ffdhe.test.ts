/**
 * The post-quantum hybrid groups (draft-ietf-tls-ecdhe-mlkem) and the RFC 7919 ffdhe groups, on both
 * providers: same shares and secrets from the same randomness (noble vs node), the layouts and lengths, and
 * every hostile share refused with its named reason (wrong lengths, ML-KEM modulus check, low-order X25519,
 * off-curve P-256, Y = 0, 1, p-1, p).
 */
import t from 'tap';
import { toHex } from '../lib/codec/bytes.js';
import { FFDHE_SPECS, bigIntToBytes, bytesToBigInt, modPowLadder } from '../lib/crypto/ffdhe.js';
import { GROUP_SPECS, X25519MLKEM768_SPEC, type HybridSpec } from '../lib/crypto/groups.js';
import { createNobleProvider } from '../lib/crypto/noble.js';
import { createNodeProvider } from '../lib/crypto/node.js';
import type { CryptoProvider, GroupName } from '../lib/crypto/provider.js';
import { TlsError, type Reason } from '../lib/errors.js';
import { seededRandom } from './helpers/pair.js';

const providers = (seed: number): CryptoProvider[] => [createNobleProvider({ random: seededRandom(seed) }), createNodeProvider({ random: seededRandom(seed) })];
const HYBRIDS = ['X25519MLKEM768', 'SecP256r1MLKEM768', 'SecP384r1MLKEM1024'] as const;
const FFDHE = ['ffdhe2048', 'ffdhe3072', 'ffdhe4096', 'ffdhe6144', 'ffdhe8192'] as const;

function throwsReason(tt: Tap, fn: () => unknown, reason: Reason, msg: string): void {
  try {
    fn();
    tt.fail(`${msg}: expected TlsError(${reason}), nothing was thrown`);
  } catch (e) {
    tt.ok(e instanceof TlsError, `${msg}: a TlsError (${(e as Error)?.message})`);
    tt.equal((e as TlsError).reason, reason, `${msg}: reason ${reason}`);
  }
}
type Tap = Pick<typeof t, 'ok' | 'equal' | 'fail'>;

t.test('noble and node give the same shares and secrets for every new group, and agree across providers', async (tt) => {
  for (const name of [...HYBRIDS, ...FFDHE] as GroupName[]) {
    const [noble, node] = providers(14);
    const spec = GROUP_SPECS[name];
    const gn = noble.group(name)!;
    const gd = node.group(name)!;
    const cn = gn.start(noble.random(gn.randomLength));
    const cd = gd.start(node.random(gd.randomLength));
    tt.equal(toHex(cn.share), toHex(cd.share), `${name}: same client share from the same randomness`);
    tt.equal(cn.share.length, spec.clientShareLength, `${name}: client share is ${spec.clientShareLength} bytes`);
    const sn = gn.respond(cd.share, noble.random(gn.randomLength));
    const sd = gd.respond(cn.share, node.random(gd.randomLength));
    tt.equal(toHex(sn.share), toHex(sd.share), `${name}: same server share`);
    tt.equal(sn.share.length, spec.serverShareLength, `${name}: server share is ${spec.serverShareLength} bytes`);
    tt.equal(toHex(sn.sharedSecret), toHex(sd.sharedSecret), `${name}: same server secret`);
    tt.equal(sn.sharedSecret.length, spec.secretLength, `${name}: secret is ${spec.secretLength} bytes`);
    tt.equal(toHex(cn.complete(sd.share)), toHex(sd.sharedSecret), `${name}: noble client, node server agree`);
    tt.equal(toHex(cd.complete(sn.share)), toHex(sn.sharedSecret), `${name}: node client, noble server agree`);
    cn.destroy();
    cd.destroy();
    tt.throws(() => cn.complete(sd.share), TypeError, `${name}: a destroyed share refuses to complete`);
  }
});

t.test('hybrid layouts follow the draft: ML-KEM first for X25519MLKEM768, ECDH first for the NIST hybrids', async (tt) => {
  for (const p of providers(7)) {
    for (const name of HYBRIDS) {
      const spec = GROUP_SPECS[name] as HybridSpec;
      const g = p.group(name)!;
      const classical = p.group(spec.classical.name)!;
      const randomness = p.random(g.randomLength);
      const c = g.start(randomness);
      // The ECDH part of the share is exactly the classical group's share from the same randomness.
      const alone = classical.start(randomness.subarray(64));
      const ecdhPart = spec.kemFirst ? c.share.subarray(spec.ekLength) : c.share.subarray(0, spec.classical.shareLength);
      tt.equal(toHex(ecdhPart), toHex(alone.share), `${p.name} ${name}: the ECDH share sits ${spec.kemFirst ? 'after' : 'before'} the ML-KEM key`);
      const r = g.respond(c.share, p.random(g.randomLength));
      const serverEcdh = spec.kemFirst ? r.share.subarray(spec.ctLength) : r.share.subarray(0, spec.classical.shareLength);
      const ecdhSecret = alone.complete(serverEcdh);
      const secretEcdh = spec.kemFirst ? r.sharedSecret.subarray(32) : r.sharedSecret.subarray(0, spec.classical.secretLength);
      tt.equal(toHex(secretEcdh), toHex(ecdhSecret), `${p.name} ${name}: the ECDH secret sits ${spec.kemFirst ? 'after' : 'before'} the ML-KEM secret`);
    }
  }
  tt.equal(X25519MLKEM768_SPEC.clientShareLength, 1216);
  tt.equal(X25519MLKEM768_SPEC.serverShareLength, 1120);
  tt.equal(X25519MLKEM768_SPEC.secretLength, 64);
});

t.test('hostile hybrid shares are refused with named reasons, on both providers', async (tt) => {
  for (const p of providers(21)) {
    for (const name of HYBRIDS) {
      const spec = GROUP_SPECS[name] as HybridSpec;
      const g = p.group(name)!;
      const c = g.start(p.random(g.randomLength));
      const good = g.respond(c.share, p.random(g.randomLength));
      for (const delta of [-1, 1, -spec.classical.shareLength, -c.share.length]) {
        const bad = new Uint8Array(c.share.length + delta);
        bad.set(c.share.subarray(0, bad.length));
        throwsReason(tt, () => g.respond(bad, p.random(g.randomLength)), 'InvalidPeerKeyShare', `${p.name} ${name}: client share of ${bad.length} bytes`);
      }
      for (const delta of [-1, 1, -32]) {
        const bad = new Uint8Array(good.share.length + delta);
        bad.set(good.share.subarray(0, bad.length));
        throwsReason(tt, () => c.complete(bad), 'InvalidPeerKeyShare', `${p.name} ${name}: ciphertext share of ${bad.length} bytes (client checks the length)`);
      }
      // FIPS 203 §7.2 modulus check: the first 12-bit coefficient set to 4095 (>= q = 3329).
      const unreduced = Uint8Array.from(c.share);
      const ekAt = spec.kemFirst ? 0 : spec.classical.shareLength;
      unreduced[ekAt] = 0xff;
      unreduced[ekAt + 1] |= 0x0f;
      throwsReason(tt, () => g.respond(unreduced, p.random(g.randomLength)), 'MlKemEncapsulationKeyNotReduced', `${p.name} ${name}: coefficient 4095`);
      // The last coefficient of the packed part, 3329 exactly (q itself is not reduced).
      const lastQ = Uint8Array.from(c.share);
      const end = ekAt + spec.ekLength - 32;
      lastQ[end - 2] = (lastQ[end - 2] & 0x0f) | ((3329 & 0x0f) << 4);
      lastQ[end - 1] = 3329 >> 4;
      throwsReason(tt, () => g.respond(lastQ, p.random(g.randomLength)), 'MlKemEncapsulationKeyNotReduced', `${p.name} ${name}: last coefficient = q`);
      // A corrupted ciphertext is not an error (implicit rejection): the secrets just differ.
      const flipped = Uint8Array.from(good.share);
      flipped[spec.kemFirst ? 0 : spec.classical.shareLength] ^= 1;
      tt.not(toHex(c.complete(flipped)), toHex(good.sharedSecret), `${p.name} ${name}: a corrupted ciphertext gives another secret`);
    }
    // X25519 half: a low-order point (u = 0 and u = 1) gives the all-zero secret, refused both ways.
    const g = p.group('X25519MLKEM768')!;
    const c = g.start(p.random(g.randomLength));
    const good = g.respond(c.share, p.random(g.randomLength));
    for (const u of [0, 1]) {
      const lowClient = Uint8Array.from(c.share);
      lowClient.fill(0, 1184);
      lowClient[1184] = u;
      throwsReason(tt, () => g.respond(lowClient, p.random(g.randomLength)), 'KeyExchangeZeroSecret', `${p.name} X25519MLKEM768: client X25519 u=${u}`);
      const lowServer = Uint8Array.from(good.share);
      lowServer.fill(0, 1088);
      lowServer[1088] = u;
      throwsReason(tt, () => c.complete(lowServer), 'KeyExchangeZeroSecret', `${p.name} X25519MLKEM768: server X25519 u=${u}`);
    }
    // P-256 half: not a curve point, or not uncompressed.
    const h = p.group('SecP256r1MLKEM768')!;
    const hc = h.start(p.random(h.randomLength));
    const offCurve = Uint8Array.from(hc.share);
    offCurve[64] ^= 1;
    throwsReason(tt, () => h.respond(offCurve, p.random(h.randomLength)), 'InvalidPeerKeyShare', `${p.name} SecP256r1MLKEM768: off-curve point`);
    const compressed = Uint8Array.from(hc.share);
    compressed[0] = 0x02;
    throwsReason(tt, () => h.respond(compressed, p.random(h.randomLength)), 'InvalidPeerKeyShare', `${p.name} SecP256r1MLKEM768: not 0x04`);
  }
});

t.test('ffdhe: 1 < Y < p-1 and exact lengths, on both providers (RFC 8446 §4.2.8.1)', async (tt) => {
  for (const p of providers(3)) {
    for (const name of ['ffdhe2048', 'ffdhe3072'] as const) {
      const spec = FFDHE_SPECS[name];
      const g = p.group(name)!;
      const c = g.start(p.random(g.randomLength));
      const len = spec.primeLength;
      const cases: [string, bigint][] = [
        ['Y = 0', 0n],
        ['Y = 1', 1n],
        ['Y = p-1', spec.prime - 1n],
        ['Y = p', spec.prime],
        ['Y = 2^bits - 1', (1n << BigInt(len * 8)) - 1n],
      ];
      for (const [what, y] of cases) {
        const share = bigIntToBytes(y, len);
        throwsReason(tt, () => g.respond(share, p.random(g.randomLength)), 'FfdhePublicValueOutOfRange', `${p.name} ${name}: client ${what}`);
        throwsReason(tt, () => c.complete(share), 'FfdhePublicValueOutOfRange', `${p.name} ${name}: server ${what}`);
      }
      // Y = 2 and Y = p-2 are in range: accepted, and both sides pad to the size of p.
      for (const y of [2n, spec.prime - 2n]) {
        const r = g.respond(bigIntToBytes(y, len), p.random(g.randomLength));
        tt.equal(r.share.length, len, `${p.name} ${name}: server share padded to ${len} bytes`);
        tt.equal(r.sharedSecret.length, len, `${p.name} ${name}: secret padded to ${len} bytes`);
      }
      // A share missing its leading zero byte (not padded) is the wrong length.
      throwsReason(tt, () => g.respond(bigIntToBytes(2n, len - 1), p.random(g.randomLength)), 'InvalidPeerKeyShare', `${p.name} ${name}: unpadded share`);
      throwsReason(tt, () => c.complete(new Uint8Array(len + 1).fill(1)), 'InvalidPeerKeyShare', `${p.name} ${name}: share one byte long`);
    }
  }
});

t.test('ffdhe: the primes have RFC 7919 structure, the exponent sizes follow its Appendix A', async (tt) => {
  const minBits = { ffdhe2048: 225, ffdhe3072: 275, ffdhe4096: 325, ffdhe6144: 375, ffdhe8192: 400 };
  const ones64 = (1n << 64n) - 1n;
  for (const name of FFDHE) {
    const spec = FFDHE_SPECS[name];
    const bits = Number(name.slice(5));
    tt.equal(spec.prime.toString(2).length, bits, `${name}: p has ${bits} bits`);
    tt.equal(spec.prime >> BigInt(bits - 64), ones64, `${name}: top 64 bits set`);
    tt.equal(spec.prime & ones64, ones64, `${name}: bottom 64 bits set`);
    tt.ok(spec.exponentBits >= minBits[name], `${name}: exponent of ${spec.exponentBits} bits >= ${minBits[name]}`);
  }
});

t.test('the Montgomery ladder computes base^exp mod p (checked against square-and-multiply)', async (tt) => {
  const p = FFDHE_SPECS.ffdhe2048.prime;
  const naive = (b: bigint, e: bigint): bigint => {
    let r = 1n;
    b %= p;
    while (e > 0n) {
      if (e & 1n) r = (r * b) % p;
      b = (b * b) % p;
      e >>= 1n;
    }
    return r;
  };
  const rnd = seededRandom(99);
  for (let i = 0; i < 8; i++) {
    const base = bytesToBigInt(rnd(256)) % p;
    const e = bytesToBigInt(rnd(29));
    tt.equal(modPowLadder(base, e, p, 232), naive(base, e), `random case ${i}`);
  }
  tt.equal(modPowLadder(5n, 0n, p, 16), 1n, 'exponent 0');
  tt.equal(modPowLadder(2n, 10n, p, 4), 1024n, '2^10 over exactly 4 bits');
});

t.test('the provider boundary checks arguments once, the same way for every new group and both providers', async (tt) => {
  for (const p of providers(5)) {
    for (const name of [...HYBRIDS, 'ffdhe2048'] as GroupName[]) {
      const g = p.group(name)!;
      tt.throws(() => g.start(new Uint8Array(g.randomLength - 1)), TypeError, `${p.name} ${name}: short randomness is a caller bug`);
      tt.throws(() => g.respond(new Uint8Array(GROUP_SPECS[name].clientShareLength), new Uint8Array(g.randomLength + 1)), TypeError, `${p.name} ${name}: long randomness`);
      throwsReason(tt, () => g.respond('not bytes' as unknown as Uint8Array, new Uint8Array(g.randomLength)), 'InvalidPeerKeyShare', `${p.name} ${name}: a share that is not bytes`);
      tt.equal(p.group(name), g, `${p.name} ${name}: the checked group is built once`);
    }
  }
});
