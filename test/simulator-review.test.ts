/**
 * Review of the KME simulator and the QKD network simulator as hostile peers and as physics: what a topology file
 * may ask of the simulator's memory and time, and the figures the physics must give.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { bb84Rates, DEFAULT_LINK_PHYSICS, handleNetworkKmeRequest, linkPhysics, MAX_CAPACITY_BITS, parseTopology, QkdNetwork, TOPOLOGY_LIMITS } from '../lib/tools/network/node.js';
import { MAX_KEY_BITS_PER_ANSWER, MAX_KEYS_PER_ANSWER, startKmeSimulator, type KmeSimulatorOptions } from '../lib/tools/kme/index.js';
import { runQkdTls } from './helpers/peers.js';
import { seededBytes } from './helpers/seeded-bytes.js';

const chain = (n: number) => ({
  nodes: Array.from({ length: n }, (_, i) => ({ name: `n${i}` })),
  links: Array.from({ length: n - 1 }, (_, i) => ({ a: `n${i}`, b: `n${i + 1}`, km: 1 })),
});

t.test('a topology is bounded: nodes, links, eavesdroppers and the memory of the link pools', async (t) => {
  // At the limits it is taken (1000 nodes, 999 links of the default 10^6-bit pool: 999e6 bits, under 2^31).
  const big = chain(TOPOLOGY_LIMITS.nodes);
  t.equal(parseTopology(big).links.length, 999);
  t.throws(() => parseTopology(chain(TOPOLOGY_LIMITS.nodes + 1)), { message: /^nodes lists 1001 entries, more than the 1000 this simulator takes$/ });
  const ring = chain(TOPOLOGY_LIMITS.nodes);
  ring.links.push({ a: 'n999', b: 'n0', km: 1 }, { a: 'n0', b: 'n2', km: 1 });
  t.throws(() => parseTopology(ring), { message: /^links lists 1001 entries, more than the 1000/ });
  // SAEs: 10000 in all (with mutual TLS each gets a certificate, about 7 ms, before the KMEs listen).
  const saes = (from: number, n: number) => Array.from({ length: n }, (_, j) => `sae-${from + j}`);
  const crowded = { nodes: [{ name: 'A', saes: saes(0, 6000) }, { name: 'B', saes: saes(6000, 4000) }] };
  t.equal(parseTopology(crowded).nodes[1].saes.length, 4000, '10000 SAEs are taken');
  crowded.nodes.push({ name: 'C', saes: saes(10_000, 1) });
  t.throws(() => parseTopology(crowded), { message: 'nodes[2].saes: nodes[0..2] list 10001 SAEs, more than the 10000 this simulator takes' });
  const watched = { ...chain(2), eavesdroppers: Array.from({ length: 1001 }, () => ({ link: 'n0-n1', fraction: 0.001 })) };
  t.throws(() => parseTopology(watched), { message: /^eavesdroppers lists 1001 entries/ });

  // One pool of 10^12 bytes: the network failed to start with "Invalid typed array length".
  const huge = { ...chain(2), links: [{ a: 'n0', b: 'n1', km: 1, capacityBits: 8e12 }] };
  t.throws(() => parseTopology(huge), { message: `links[0].capacityBits must be a positive multiple of 8 up to ${MAX_CAPACITY_BITS} (got 8000000000000)` });
  t.throws(() => parseTopology({ ...chain(2), defaults: { capacityBits: 8e12 } }), { message: /^defaults\.capacityBits must be/ });
  // Pools that are each allowed but too many together (3 × 2^30 bits = 384 MiB).
  const many = { ...chain(4), defaults: { capacityBits: 2 ** 30 } };
  t.throws(() => parseTopology(many), { message: `links[2]: the key pools of links[0..2] hold ${3 * 2 ** 30} bits (capacityBits), more than the ${2 ** 31} bits (256 MiB) of all links together` });
  t.equal(parseTopology({ ...chain(3), defaults: { capacityBits: 2 ** 30 } }).links.length, 2, 'two pools of 2^30 bits: exactly the bound');
  // The network of the largest file still starts and relays (its pools take 999 × 125 kB).
  big.nodes[0] = { name: 'n0', saes: ['a'] } as (typeof big.nodes)[0];
  big.nodes[999] = { name: 'n999', saes: ['b'] } as (typeof big.nodes)[0];
  let now = 0;
  const net = new QkdNetwork({ topology: parseTopology(big), now: () => now, randomBytes: seededBytes(3), samplesPerBlock: 1000 });
  t.teardown(() => net.destroy());
  now = 400;
  const r = net.relay('a', 'b', 1, 256);
  t.ok(r.ok, 'a key relayed over 999 hops');
  if (r.ok) t.equal(r.path.length, 1000);
});

t.test('command line: a topology asking for more memory than the bound is a usage error naming the file and the field', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'qkd-topology-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'pool.json');
  writeFileSync(file, JSON.stringify({ ...chain(2), links: [{ a: 'n0', b: 'n1', km: 1, capacityBits: 8e12 }] }));
  const r = await runQkdTls(['kme', '--topology', file, '--insecure-http', '--listen', '127.0.0.1:0'], { ms: 30_000 });
  t.equal(r.code, 2, 'exit code 2 (it was 1: "Invalid typed array length")');
  t.equal(r.stderr, `qkd-tls kme: topology file ${file}: links[0].capacityBits must be a positive multiple of 8 up to ${MAX_CAPACITY_BITS} (got 8000000000000)\n`);
  t.equal(r.stdout, '', 'nothing started');
});

t.test('eavesdroppers at the bounds: each counts on its own link, named either way, and a block stays cheap', async (t) => {
  // 999 links and 1000 eavesdroppers. Each block looked every eavesdropper up among all links for every link
  // (findLink: 10^9 name comparisons, about 50 s a block, so the server stopped answering); now each is named
  // by its link's own name once, when the network starts.
  const top = {
    ...chain(TOPOLOGY_LIMITS.nodes),
    eavesdroppers: [
      { link: 'n1-n0', fraction: 0.5 },
      ...Array.from({ length: 999 }, (_, i) => ({ link: i % 2 ? `n${i}-n${i + 1}` : `n${i + 1}-n${i}`, fraction: 0.001, from_s: 0.2 })),
    ],
  };
  let now = 0;
  const net = new QkdNetwork({ topology: parseTopology(top), now: () => now, randomBytes: seededBytes(5), samplesPerBlock: 10 });
  t.teardown(() => net.destroy());
  now = 200; // the first block, [0, 0.2) s: only the first eavesdropper is there
  let links = net.snapshot().links;
  t.equal(links[0].eavesdropping, 0.5, 'n0-n1, named "n1-n0"');
  t.equal(links.filter((l) => l.eavesdropping === 0).length, 998, 'no other link is attacked yet');
  now = 400; // the second block: all of them
  links = net.snapshot().links;
  t.ok(Math.abs(links[0].eavesdropping - 0.501) < 1e-12, 'n0-n1: both of its eavesdroppers');
  t.equal(links[1].eavesdropping, 0.001, 'n1-n2, named "n1-n2"');
  t.equal(links[2].eavesdropping, 0.001, 'n2-n3, named "n3-n2"');
  t.equal(links.filter((l) => l.eavesdropping === 0.001).length, 998);
  net.removeEavesdroppers('n1-n0');
  now = 800;
  t.equal(net.snapshot().links[0].eavesdropping, 0, 'removed by the name written the other way');
  t.equal(net.snapshot().links[1].eavesdropping, 0.001, 'the others stay');
});

t.test('addEavesdropper: at most TOPOLOGY_LIMITS.eavesdroppers at once, those that ended forgotten; times checked', async (t) => {
  // It had no bound (the topology file's is 1000): each call grew the list every block of every link walks.
  let now = 0;
  const net = new QkdNetwork({ topology: parseTopology(chain(2)), now: () => now, randomBytes: seededBytes(7), samplesPerBlock: 10 });
  t.teardown(() => net.destroy());
  for (let i = 0; i < TOPOLOGY_LIMITS.eavesdroppers; i++) net.addEavesdropper({ link: 'n0-n1', fraction: 0.0001, untilS: 1 });
  t.throws(() => net.addEavesdropper({ link: 'n0-n1', fraction: 0.5 }), { name: 'RangeError', message: /at most 1000 eavesdroppers at once/ }, 'one more is refused');
  now = 400; // 0.4 s: they still act on the block [0.2, 0.4) and on those to come up to 1 s
  t.throws(() => net.addEavesdropper({ link: 'n0-n1', fraction: 0.5 }), RangeError, 'still there at 0.4 s');
  t.ok(Math.abs(net.snapshot().links[0].eavesdropping - 0.1) < 1e-9, 'and they still count');
  now = 1400; // 1.4 s: they ended at 1 s and every block to come starts after it
  net.addEavesdropper({ link: 'n0-n1', fraction: 0.5 });
  now = 1800;
  t.equal(net.snapshot().links[0].eavesdropping, 0.5, 'the ended ones were forgotten, the new one counts');
  t.throws(() => net.addEavesdropper({ link: 'n0-n1', fraction: 0.1, fromS: Number.NaN }), { message: 'fromS must be a non-negative finite number of seconds' });
  t.throws(() => net.addEavesdropper({ link: 'n0-n1', fraction: 0.1, untilS: -1 }), { message: 'untilS must be a non-negative finite number of seconds' });
});

t.test('addEavesdropper forgets only eavesdroppers no block still to run can see, whatever the clock does meanwhile', async (t) => {
  // The pruning compared until_s with the clock read again after advance(): when the clock moved on between the two
  // reads (a real clock crossing a block boundary), an eavesdropper still due to act on the block now running was
  // forgotten first, and that block ran without it.
  const reads: number[] = [];
  let now = 0;
  const clock = () => (reads.length > 0 ? (now = reads.shift()!) : now);
  const net = new QkdNetwork({ topology: parseTopology(chain(2)), now: clock, randomBytes: seededBytes(9), samplesPerBlock: 10 });
  t.teardown(() => net.destroy());
  net.addEavesdropper({ link: 'n0-n1', fraction: 1, untilS: 0.85 }); // acts on the blocks [0, 0.2) .. [0.8, 1.0)
  // advance() reads 0.99 s (blocks up to [0.6, 0.8) run; [0.8, 1.0) still to run), then the clock reads 1.1 s.
  reads.push(990, 1100);
  net.addEavesdropper({ link: 'n0-n1', fraction: 0 });
  t.equal(net.snapshot().links[0].eavesdropping, 1, 'the block [0.8, 1.0) ran under the first eavesdropper');
});

t.test('dec_keys for a key addressed to another SAE is 401, and the key stays for its slave (ETSI GS QKD 014 clause 5.4)', async (t) => {
  // Clause 5.4 (Get key with key IDs): the KME rejects the request with 401 when the calling SAE is not the slave SAE
  // named in the Get key call that returned those key IDs. It was 400 "key not found", as for a key that never was.
  const topology = parseTopology({
    nodes: [{ name: 'A', saes: ['alice'] }, { name: 'B', saes: ['bob', 'carol'] }],
    links: [{ a: 'A', b: 'B', km: 10 }],
  });
  let now = 0;
  const net = new QkdNetwork({ topology, now: () => now, randomBytes: seededBytes(11) });
  t.teardown(() => net.destroy());
  now = 1000;
  const ask = (node: string, caller: string, path: string, body = '') =>
    handleNetworkKmeRequest(net, node, { method: 'POST', path, query: new URLSearchParams(), body, callerSaeId: caller, contentType: 'application/json' });
  const enc = ask('A', 'alice', '/api/v1/keys/bob/enc_keys', '{"number":2}');
  if (!('keys' in enc)) throw new Error(JSON.stringify(enc));
  const [k0, k1] = enc.keys.map((k) => k.keyId);
  const ids = (...list: string[]) => JSON.stringify({ key_IDs: list.map((key_ID) => ({ key_ID })) });

  const carol = ask('B', 'carol', '/api/v1/keys/alice/dec_keys', ids(k0));
  t.equal(carol.status, 401, "carol, at bob's node, asks for bob's key");
  t.match(carol, { json: { message: "key_ID not addressed to SAE 'carol' by SAE 'alice'", details: [{ key_ID: k0 }] } });
  // Asked together with an ID that does not exist, it is still 401 (the caller may not fetch the key it named).
  t.equal(ask('B', 'carol', '/api/v1/keys/alice/dec_keys', ids(k0, '00000000-0000-4000-8000-000000000000')).status, 401);
  // The master itself, at its own node, asking for the key it was given: not addressed to it either.
  t.equal(ask('A', 'alice', '/api/v1/keys/bob/dec_keys', ids(k1)).status, 401, 'alice asks dec_keys for her own key');
  // A key that never was stays 400.
  t.equal(ask('B', 'bob', '/api/v1/keys/alice/dec_keys', ids('00000000-0000-4000-8000-000000000000')).status, 400);
  // Nothing was consumed: bob gets both keys, once.
  const bob = ask('B', 'bob', '/api/v1/keys/alice/dec_keys', ids(k0, k1));
  t.equal(bob.status, 200);
  t.equal('keys' in bob ? bob.keys.length : 0, 2);
  const again = ask('B', 'bob', '/api/v1/keys/alice/dec_keys', ids(k0));
  t.equal(again.status, 400, 'delivered once: a second fetch is 400 "key not found"');
});

t.test('an SAE ID with a character XML cannot hold is refused where it is written, not drawn into /network.svg', async (t) => {
  // XML 1.0 §2.2 (Char) excludes the C0 controls but tab, CR and LF, and U+FFFE/U+FFFF, and a lone surrogate cannot
  // be encoded at all: such an SAE ID, escaped or not, made the picture a document no browser shows. Tab and the C1
  // controls are refused too: an SAE ID is a name, sent in a header and written in logs.
  const topo = (sae: string) => ({ nodes: [{ name: 'A', saes: ['fine'] }, { name: 'B', saes: ['also-fine', sae] }] });
  for (const [sae, code, index] of [
    ['bell\u0007', '0007', 4],
    ['\u0000', '0000', 0],
    ['tab\there', '0009', 3],
    ['c1\u0085', '0085', 2],
    ['half\ud800', 'D800', 4],
    ['\udc00x', 'DC00', 0],
    ['nonchar\uffff', 'FFFF', 7],
  ] as const) {
    t.throws(() => parseTopology(topo(sae)), { message: `nodes[1].saes[1] has the character U+${code} at index ${index}: an SAE ID has no control characters` }, JSON.stringify(sae));
  }
  // What XML holds stays allowed: markup characters (escaped in the picture), non-ASCII, astral characters.
  t.same(parseTopology(topo('odd<sae>&"\u00e9\u{1f511}')).nodes[1].saes, ['also-fine', 'odd<sae>&"\u00e9\u{1f511}']);
});

t.test('a name given twice in a topology is told with both places', async (t) => {
  t.throws(() => parseTopology({ nodes: [{ name: 'A' }, { name: 'B' }, { name: 'C' }, { name: 'B' }] }), {
    message: "nodes[3].name: node 'B' is listed twice (nodes[1] and nodes[3])",
  });
  t.throws(() => parseTopology({ nodes: [{ name: 'A', saes: ['x'] }, { name: 'B' }, { name: 'C', saes: ['y', 'x'] }] }), {
    message: "nodes[2].saes[1]: SAE 'x' is at two nodes (nodes[0] 'A' and nodes[2] 'C')",
  });
  t.throws(() => parseTopology({ nodes: [{ name: 'A', saes: ['x', 'x'] }] }), { message: "nodes[0].saes[1]: SAE 'x' is listed twice at node 'A'" });
  t.throws(() => parseTopology({ nodes: [{ name: 'A', saes: [' '] }] }), { message: "nodes[0].saes[0]: node 'A' has a blank SAE ID" });
  const three = [{ name: 'A' }, { name: 'B' }, { name: 'C' }];
  t.throws(() => parseTopology({ nodes: three, links: [{ a: 'A', b: 'B', km: 1 }, { a: 'B', b: 'C', km: 1 }, { a: 'B', b: 'A', km: 2 }] }), {
    message: "links[2]: two links join 'B' and 'A' (links[0] and links[2])",
  });
  t.throws(() => parseTopology({ nodes: [{ name: 'x-y' }, { name: 'z' }, { name: 'x' }, { name: 'y-z' }], links: [{ a: 'x-y', b: 'z', km: 1 }, { a: 'x', b: 'y-z', km: 1 }] }), {
    message: `links[1]: links 'x-y'-'z' and 'x'-'y-z' are both named "x-y-z"; rename a node`,
  });
});

t.test('physics: figures derived by hand from Ma, Qi, Zhao, Lo (2005) eqs. (1)-(9) with the GYS parameters', async (t) => {
  const { misalignment: ed, darkCountProbability: y0, detectorEfficiency: etaBob, meanPhotonNumber: mu } = DEFAULT_LINK_PHYSICS;
  // Short fibre: ημ = 0.045 × 0.48 = 0.0216 ≫ Y0 = 1.7e-6, so E_μ = (Y0/2 + e_d(1 − e^−ημ)) / (Y0 + 1 − e^−ημ)
  // = (8.5e-7 + 0.033 × 0.021368) / 0.0213697 = 0.033037: the misalignment e_d.
  const near = bb84Rates(linkPhysics(0));
  t.ok(Math.abs(near.qber - 0.033037) < 5e-6, `0 km: QBER ${near.qber} ≈ e_d = ${ed}`);
  t.ok(Math.abs(near.darkShare - 1.7e-6 / 0.0213697) < 1e-7, '0 km: dark counts are 8e-5 of the clicks');
  // Long fibre: when ημ = Y0 half the clicks are dark counts (a coin toss) and E_μ → (1/2 + e_d)/2 = 0.2665.
  // η = 10^(−0.02 L) × 0.045 and ημ = Y0 give L = 50 × log10(0.045 × 0.48 / 1.7e-6) = 205.2 km at 0.2 dB/km.
  const even = 50 * Math.log10((etaBob * mu) / y0);
  t.ok(Math.abs(even - 205.2) < 0.05, `ημ = Y0 at ${even.toFixed(2)} km`);
  const far = bb84Rates(linkPhysics(even));
  t.ok(Math.abs(far.darkShare - 0.5) < 1e-4, `${even.toFixed(1)} km: half the clicks are dark (${far.darkShare})`);
  t.ok(Math.abs(far.qber - (0.5 + ed) / 2) < 1e-4, `${even.toFixed(1)} km: QBER ${far.qber} ≈ (1/2 + e_d)/2`);
  t.equal(far.secretKeyRateBps, 0, 'no key there');
  // The QBER rises with distance only through the dark counts: flat to 0.1 % up to 50 km, then up.
  t.ok(bb84Rates(linkPhysics(50)).qber - near.qber < 1e-3, '50 km: still ≈ e_d');
  t.ok(bb84Rates(linkPhysics(140)).qber > near.qber + 0.02, '140 km: dark counts add 2 % and more');
  // Intercept-resend on every pulse: a wrong basis half the time, then a coin toss: 1/4 + E/2 = 0.25 + 0.0165 = 0.2665.
  t.ok(Math.abs(bb84Rates(linkPhysics(0), 1).qber - (0.25 + near.qber / 2)) < 1e-12, '0 km, every pulse attacked: 26.7 %');
  // Ma et al.: the optimal μ for GYS is about 0.48 at any distance. Scan μ from 0.30 to 0.70 in steps of 0.005.
  for (const km of [20, 80]) {
    let best = 0;
    let bestMu = 0;
    for (let m = 0.3; m <= 0.7; m += 0.005) {
      const r = bb84Rates(linkPhysics(km, { meanPhotonNumber: m, attenuationDbPerKm: 0.21 })).secretKeyRatePerPulse;
      if (r > best) [best, bestMu] = [r, m];
    }
    t.ok(Math.abs(bestMu - 0.48) <= 0.015, `${km} km: the rate peaks at μ = ${bestMu.toFixed(3)}`);
  }
});

t.test('the KME limits bound the key material of one answer, so that no request can end the simulator', async (t) => {
  // With --max-key-size 2147483648 (and keys enough in store), `enc_keys?number=2&size=2147483648` made a JSON answer
  // longer than a V8 string can be: "Invalid string length" was thrown out of the request handler and the simulator
  // process exited. The limits that make such an answer possible are refused at start.
  const refused = async (options: KmeSimulatorOptions, message: string) => {
    let started: Awaited<ReturnType<typeof startKmeSimulator>> | undefined;
    try {
      started = await startKmeSimulator({ insecureHttp: true, ...options });
    } catch (e) {
      t.equal((e as Error).name, 'RangeError');
      t.equal((e as Error).message, message);
      return;
    }
    await started.close();
    t.fail(`started with ${JSON.stringify(options)}`);
  };
  await refused({ maxKeySize: 2 ** 31 }, `kme simulator: maxKeysPerRequest × maxKeySize must be at most ${2 ** 27} bits, 16 MiB of keys in one answer (got 128 × ${2 ** 31})`);
  await refused({ maxKeysPerRequest: 65_537, maxKeySize: 64, minKeySize: 64, keySize: 64 }, 'kme simulator: maxKeysPerRequest must be at most 65536 (got 65537)');
  t.equal(MAX_KEYS_PER_ANSWER, 65_536);
  t.equal(MAX_KEY_BITS_PER_ANSWER, 2 ** 27);
  // At the bound it starts, and serves the largest answer it allows: 128 keys of 2^20 bits (16 MiB).
  const kme = await startKmeSimulator({ insecureHttp: true, maxKeySize: 2 ** 20, initialKeyCount: 2 ** 19, maxKeyCount: 2 ** 19, rateBitsPerSecond: 0 });
  t.teardown(() => kme.close());
  const res = await fetch(`${kme.master.url}/api/v1/keys/server-sae/enc_keys?number=128&size=${2 ** 20}`, { headers: { 'x-sae-id': 'client-sae' } });
  t.equal(res.status, 200);
  const body = (await res.json()) as { keys: { key: string }[] };
  t.equal(body.keys.length, 128);
  t.equal(Buffer.from(body.keys[127].key, 'base64').length, 2 ** 17);
  // The command line says it with its option names, as a usage error.
  const cli = await runQkdTls(['kme', '--insecure-http', '--listen', '127.0.0.1:0', '--max-key-size', String(2 ** 31)], { ms: 30_000 });
  t.equal(cli.code, 2, 'exit code 2');
  t.match(cli.stderr, `--max-keys-per-request × --max-key-size must be at most ${2 ** 27} bits, 16 MiB of keys in one answer (got 128 × ${2 ** 31})`);
  t.equal(cli.stdout, '', 'nothing started');
});
