/**
 * The node provider's two ways to compute an ffdhe exchange (lib/crypto/node-ffdhe.ts): node:crypto's
 * `DiffieHellman` class and DH `KeyObject`s. Whichever this runtime uses, the bytes must be the noble provider's,
 * so both are checked here against noble, every group, including the values whose encodings lose leading zero
 * bytes (a Y or a Z under 2^(8(len-1)), which OpenSSL's DER and `computeSecret` shorten).
 */
import * as nodeCrypto from 'node:crypto';
import { createRequire, syncBuiltinESMExports } from 'node:module';
import t from 'tap';
import { toHex } from '../lib/codec/bytes.js';
import { FFDHE_SPECS, bigIntToBytes, type FfdheName } from '../lib/crypto/ffdhe.js';
import { createNobleProvider } from '../lib/crypto/noble.js';
import { ffdheBackend, nodeFfdheGroup, type FfdheBackend } from '../lib/crypto/node-ffdhe.js';
import { TlsError } from '../lib/errors.js';
import { seededRandom } from './helpers/pair.js';

const BACKENDS: FfdheBackend[] = ['DiffieHellman', 'KeyObject'];
const noble = createNobleProvider();

t.test('both backends give noble\'s shares and secrets in every ffdhe group, as client and as server', async (t) => {
  const random = seededRandom(7);
  for (const name of Object.keys(FFDHE_SPECS) as FfdheName[]) {
    const spec = FFDHE_SPECS[name];
    const reference = noble.group(name)!;
    for (const backend of BACKENDS) {
      const group = nodeFfdheGroup(spec, backend);
      const r1 = random(spec.randomLength);
      const r2 = random(spec.randomLength);
      const client = group.start(r1.slice());
      const nobleClient = reference.start(r1.slice());
      t.equal(toHex(client.share), toHex(nobleClient.share), `${name} ${backend}: client share`);
      const server = group.respond(nobleClient.share, r2.slice());
      const nobleServer = reference.respond(client.share, r2.slice());
      t.equal(toHex(server.share), toHex(nobleServer.share), `${name} ${backend}: server share`);
      t.equal(toHex(server.sharedSecret), toHex(nobleServer.sharedSecret), `${name} ${backend}: server secret`);
      t.equal(toHex(client.complete(nobleServer.share)), toHex(nobleServer.sharedSecret), `${name} ${backend}: client secret`);
      t.notOk(Buffer.isBuffer(server.share) || Buffer.isBuffer(server.sharedSecret), `${name} ${backend}: plain Uint8Arrays, no Buffer`);
      client.destroy();
      t.throws(() => client.complete(nobleServer.share), TypeError, `${name} ${backend}: a destroyed share completes nothing`);
    }
  }
});

// About one exponent in 256 gives a Y, and one exchange in 256 a Z, whose first byte is zero: OpenSSL drops such bytes
// (a DER INTEGER is minimal, computeSecret returns the number), and RFC 8446 §4.2.8.1 / §7.4.1 put them back.
t.test('a Y and a Z with a leading zero byte keep the size of p on both backends', async (t) => {
  const spec = FFDHE_SPECS.ffdhe2048;
  const reference = noble.group('ffdhe2048')!;
  const random = seededRandom(11);
  let smallY: Uint8Array | undefined;
  let smallZ: { peer: Uint8Array; r: Uint8Array } | undefined;
  const peer = reference.start(random(spec.randomLength)).share;
  for (let i = 0; i < 4000 && !(smallY && smallZ); i++) {
    const r = random(spec.randomLength);
    const answer = reference.respond(peer, r);
    if (!smallY && answer.share[0] === 0) smallY = r;
    if (!smallZ && answer.sharedSecret[0] === 0) smallZ = { peer, r };
  }
  t.ok(smallY && smallZ, 'found randomness giving each (odds of missing either in 4000 tries: about 2e-7)');
  for (const backend of BACKENDS) {
    const group = nodeFfdheGroup(spec, backend);
    const y = group.start(smallY!.slice()).share;
    t.equal(y.length, 256, `${backend}: Y of 256 bytes`);
    t.equal(y[0], 0, `${backend}: starting with its zero byte`);
    t.equal(toHex(y), toHex(reference.start(smallY!.slice()).share), `${backend}: noble's Y`);
    const z = group.respond(smallZ!.peer, smallZ!.r.slice()).sharedSecret;
    t.equal(z[0], 0, `${backend}: Z keeps its zero byte`);
    t.equal(toHex(z), toHex(reference.respond(smallZ!.peer, smallZ!.r.slice()).sharedSecret), `${backend}: noble's Z`);
  }
});

// RFC 8446 §4.2.8.1 asks only 1 < Y < p-1. p-2 is such a Y outside the prime-order subgroup; some OpenSSL builds check
// that too (lib/crypto/node-ffdhe.ts). Whatever the backend does, it is noble's answer or the peer's fault, never a
// local failure (internal_error).
t.test('a Y outside the prime-order subgroup: noble\'s secret, or InvalidPeerKeyShare (illegal_parameter)', async (t) => {
  const spec = FFDHE_SPECS.ffdhe2048;
  const y = bigIntToBytes(spec.prime - 2n, spec.primeLength);
  const r = new Uint8Array(spec.randomLength).fill(0x5a);
  const expected = toHex(noble.group('ffdhe2048')!.respond(y, r.slice()).sharedSecret);
  for (const backend of BACKENDS) {
    for (const side of ['server', 'client'] as const) {
      const group = nodeFfdheGroup(spec, backend);
      try {
        const z = side === 'server' ? group.respond(y, r.slice()).sharedSecret : group.start(r.slice()).complete(y);
        t.equal(toHex(z), expected, `${backend} ${side}: accepted, with noble's secret`);
      } catch (e) {
        t.ok(e instanceof TlsError && e.reason === 'InvalidPeerKeyShare' && e.alert === 'illegal_parameter', `${backend} ${side}: refused as InvalidPeerKeyShare (${(e as Error).message})`);
      }
    }
  }
});

t.test('KeyObject: the PKCS#8 copy of the exponent handed to OpenSSL is wiped once imported', async (t) => {
  const cjs = createRequire(import.meta.url)('node:crypto') as typeof nodeCrypto;
  const original = cjs.createPrivateKey;
  const handed: Uint8Array[] = [];
  cjs.createPrivateKey = ((key: Parameters<typeof original>[0]) => {
    if (typeof key === 'object' && 'type' in key && key.type === 'pkcs8' && key.key instanceof Uint8Array) handed.push(key.key);
    return original(key);
  }) as typeof original;
  syncBuiltinESMExports();
  t.teardown(() => {
    cjs.createPrivateKey = original;
    syncBuiltinESMExports();
  });
  const spec = FFDHE_SPECS.ffdhe2048;
  const group = nodeFfdheGroup(spec, 'KeyObject');
  const r = new Uint8Array(spec.randomLength).fill(0x33);
  const client = group.start(r.slice());
  group.respond(client.share, r.slice());
  t.equal(handed.length, 2, 'two private keys imported (client and server)');
  t.ok(handed.every((der) => der.length > spec.randomLength && der.every((b) => b === 0)), 'each DER buffer is all zeros afterwards');
});

t.test('the backend this runtime gets: DiffieHellman on OpenSSL 3.0 (Node 20), else KeyObject in Node', async (t) => {
  const openssl = process.versions.openssl;
  t.equal(ffdheBackend(), /^3\.0\./.test(openssl) ? 'DiffieHellman' : 'KeyObject', `OpenSSL ${openssl}`);
  t.equal(ffdheBackend(), ffdheBackend(), 'decided once');
});
