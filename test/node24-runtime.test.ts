/**
 * qkd-tls itself running on Node 24 (the test-only `node` peer of test/peers, OpenSSL 3.5), which package.json's
 * engines (">=20.19") allow and a new user may well have. The rest of the suite runs on Node 20.
 *
 * Found by a README walkthrough: on Node 24, `npm start` failed at its first handshake ("handshake 1 failed: Invalid
 * JWK OKP key"), and so did every x25519 or X25519MLKEM768 handshake of the node provider, the default in Node:
 * Node 24 checks the `x` of a private X25519 JWK against its `d`, and the provider passed a placeholder `x`.
 */
import * as nodeCrypto from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createRequire, syncBuiltinESMExports } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { pathToFileURL } from 'node:url';
import { createNobleProvider } from '../lib/crypto/noble.js';
import { createNodeProvider } from '../lib/crypto/node.js';
import { QKD_TLS_BIN, spawnPeer, testPeer } from './helpers/peers.js';
import { ROOT } from './helpers/runtimes.js';

const node24 = testPeer(t, 'node');
const SUBTEST = { timeout: 120_000, skip: node24.skip };
const WAIT = 60_000;

const PROVIDER_GROUPS = ['x25519', 'X25519MLKEM768', 'secp256r1', 'ffdhe2048', 'ffdhe3072', 'ffdhe8192'];

/**
 * Run under Node 24: for each group, the node provider's client and server shares and secrets against the noble
 * provider's for the same randomness (the two must agree byte for byte, lib/crypto/node.ts), as one JSON line.
 */
const PROVIDER_SCRIPT = `
const { createRequire, syncBuiltinESMExports } = await import('node:module');
const cjs = createRequire(process.cwd() + '/')('node:crypto');
const original = cjs.createDiffieHellman;
let dhMade = 0;
cjs.createDiffieHellman = (...args) => (dhMade++, original(...args));
syncBuiltinESMExports();
const { createNodeProvider } = await import(${JSON.stringify(pathToFileURL(join(ROOT, 'dist', 'lib', 'crypto', 'node.js')).href)});
const { nobleProvider } = await import(${JSON.stringify(pathToFileURL(join(ROOT, 'dist', 'lib', 'crypto', 'noble.js')).href)});
const node = createNodeProvider();
const hex = (b) => Buffer.from(b).toString('hex');
const result = {};
for (const name of GROUPS) {
  try {
    const [ng, bg] = [node.group(name), nobleProvider.group(name)];
    const r1 = new Uint8Array(ng.randomLength).map((_, i) => (i * 7 + 1) & 0xff);
    const r2 = new Uint8Array(ng.randomLength).map((_, i) => (i * 13 + 5) & 0xff);
    const nodeClient = ng.start(r1.slice());
    const nobleClient = bg.start(r1.slice());
    const nodeServer = ng.respond(nobleClient.share, r2.slice());
    const nobleServer = bg.respond(nodeClient.share, r2.slice());
    result[name] = {
      sameClientShare: hex(nodeClient.share) === hex(nobleClient.share),
      sameServerShare: hex(nodeServer.share) === hex(nobleServer.share),
      sameSecret: hex(nodeServer.sharedSecret) === hex(nobleServer.sharedSecret),
      clientAgrees: hex(nodeClient.complete(nobleServer.share)) === hex(nobleServer.sharedSecret),
    };
  } catch (e) {
    result[name] = { error: e.message };
  }
}
result.createDiffieHellman = dhMade;
console.log(JSON.stringify(result));
`.replace('GROUPS', JSON.stringify(PROVIDER_GROUPS));

// The ffdhe groups: Node 24.21 and later (OpenSSL 3.5.8 and later) test the prime each time a DiffieHellman is made (0.24 s
// for ffdhe2048, 1.6 s for ffdhe3072, 28 s for ffdhe8192 on this machine, all on the event loop, once per group and
// process since 9bbf208). The provider now uses DH KeyObjects there (lib/crypto/node-ffdhe.ts), and makes none.
t.test('on Node 24, the node provider agrees with noble for x25519, X25519MLKEM768, secp256r1 and ffdhe, and makes no DiffieHellman', SUBTEST, async (t) => {
  const run = spawnPeer(t, node24.path!, ['--input-type=module', '-e', PROVIDER_SCRIPT], { cwd: ROOT });
  t.equal((await run.waitExit(WAIT)).code, 0, 'the script exits 0', { output: run.transcript() });
  const result = JSON.parse(run.stdout.trim().split('\n').pop() ?? '{}') as Record<string, unknown>;
  const agree = { sameClientShare: true, sameServerShare: true, sameSecret: true, clientAgrees: true };
  for (const name of PROVIDER_GROUPS) t.same(result[name], agree, `${name}: the same shares and secrets as noble`);
  t.equal(result.createDiffieHellman, 0, 'no createDiffieHellman call (its prime test would block the event loop)');
});

t.test('on Node 24, `qkd-tls demo` (what `npm start` runs) completes its handshakes', SUBTEST, async (t) => {
  const demo = spawnPeer(t, node24.path!, [QKD_TLS_BIN, 'demo'], { cwd: ROOT });
  t.equal((await demo.waitExit(WAIT)).code, 0, 'it exits 0', { output: demo.transcript() });
  t.match(demo.stdout, /^Done: 4 handshake\(s\), each on its own QKD key/m, 'four handshakes, the last over X25519MLKEM768');
  t.match(demo.stdout, /mode psk_dhe_ke with x25519 ECDHE/, 'x25519 on the node provider');
});

// README: a topology file that is not JSON is "JSON.parse's words, with a line and column where they give a position".
// Node 24's V8 adds a line and column of its own ("(line 2 column 1)"), and the command added its own after it.
t.test('on Node 24, a topology file that is not JSON names its line and column once', SUBTEST, async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'qkd-tls-node24-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const file = join(dir, 'net.json');
  await writeFile(file, '{"nodes":[{"name":"A"}],\n}');
  const kme = spawnPeer(t, node24.path!, [QKD_TLS_BIN, 'kme', '--topology', file, '--insecure-http', '--listen', '127.0.0.1:0'], { cwd: ROOT });
  t.equal((await kme.waitExit(WAIT)).code, 2, 'a usage error', { output: kme.transcript() });
  t.equal(kme.stderr, `qkd-tls kme: topology file ${file}: not JSON: Expected double-quoted property name in JSON at position 25 (line 2, column 1)\n`, 'one line, the place once');
});

// Node 24.21+ checks the prime (Miller-Rabin on p and (p-1)/2) each time createDiffieHellman(p, g) is called: 0.24 s for
// ffdhe2048, 1.6 s for ffdhe3072, 28 s for ffdhe8192, on this machine, where Node 20 takes 0.2 ms; so does Bun. The
// provider made one per key share, so every ffdhe handshake cost that much of a server's event loop (ffdhe2048 and
// ffdhe3072 are among a server's default groups, for any client to ask for). Where it still uses DiffieHellman (Node
// 20 here, Bun), it makes one per group and process.
t.test('the node provider makes OpenSSL\'s DH for an ffdhe group once, not once per key share', async (t) => {
  const require = createRequire(import.meta.url);
  const cjs = require('node:crypto') as typeof nodeCrypto;
  const original = cjs.createDiffieHellman;
  let made = 0;
  cjs.createDiffieHellman = ((...args: Parameters<typeof original>) => {
    made++;
    return original(...args);
  }) as typeof original;
  syncBuiltinESMExports();
  t.teardown(() => {
    cjs.createDiffieHellman = original;
    syncBuiltinESMExports();
  });
  const node = createNodeProvider();
  const noble = createNobleProvider();
  for (const name of ['ffdhe2048', 'ffdhe3072'] as const) {
    const [ng, bg] = [node.group(name)!, noble.group(name)!];
    const before = made;
    for (let i = 0; i < 3; i++) {
      const r1 = new Uint8Array(ng.randomLength).fill(i + 1);
      const r2 = new Uint8Array(ng.randomLength).fill(i + 101);
      const client = ng.start(r1.slice());
      const other = ng.start(r2.slice()); // two shares of one group open at once
      const server = ng.respond(client.share, r2.slice());
      const expected = bg.respond(client.share, r2.slice());
      t.same(server, expected, `${name} #${i + 1}: the server's share and secret are noble's`);
      t.same(client.complete(server.share), expected.sharedSecret, `${name} #${i + 1}: the client's secret too`);
      t.same(other.share, bg.start(r2.slice()).share, `${name} #${i + 1}: a second open share is its own`);
      t.same(other.complete(bg.start(r1.slice()).share), client.complete(server.share), `${name} #${i + 1}: and completes with its own exponent`);
      client.destroy();
      other.destroy();
    }
    t.ok(made - before <= 1, `${name}: createDiffieHellman called ${made - before} time(s) for 9 key shares`);
  }
});
