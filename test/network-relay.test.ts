/**
 * Key relay through trusted nodes, the routing controller, ETSI GS QKD 014 at every node, the topology file
 * and the picture: all on the runtime-neutral core with an injected clock and seeded randomness.
 */
import fc from 'fast-check';
import t from 'tap';
import { equalConstantTime } from '../lib/codec/bytes.js';
import type { KmeResponse } from '../lib/tools/kme/handler.js';
import { handleNetworkKmeRequest, networkSvg, parseTopology, QkdNetwork, type NetworkEvent, type Topology } from '../lib/tools/network/index.js';
import { seededBytes } from './helpers/seeded-bytes.js';

type Tap = Pick<typeof t, 'equal' | 'same'>;

/** A-B-C-D (15 km each) with a 60 km detour B-D; the client SAE at A, the server SAE at D, another at C. */
const DIAMOND = {
  nodes: [{ name: 'A', saes: ['client-sae'] }, { name: 'B' }, { name: 'C', saes: ['c-sae'] }, { name: 'D', saes: ['server-sae'] }],
  links: [
    { a: 'A', b: 'B', km: 15 },
    { a: 'B', b: 'C', km: 15 },
    { a: 'C', b: 'D', km: 15 },
    { a: 'B', b: 'D', km: 60 },
  ],
};

function network(topology: unknown, opts: { ttlMs?: number } = {}) {
  const clock = { ms: 0 };
  const events: NetworkEvent[] = [];
  const net = new QkdNetwork({
    topology: parseTopology(topology),
    now: () => clock.ms,
    randomBytes: seededBytes(99),
    pendingKeyTtlMs: opts.ttlMs,
    onEvent: (e) => events.push(e),
  });
  return { net, clock, events };
}

function request(net: QkdNetwork, node: string, caller: string | undefined, path: string, query = '', method = 'GET', body = ''): KmeResponse {
  return handleNetworkKmeRequest(net, node, { method, path, query: new URLSearchParams(query), body, callerSaeId: caller, contentType: 'application/json' });
}

t.test('a randomBytes that returns Node Buffers still gives both ends the same, unwiped key', async (t) => {
  // Buffer#slice() is a view: the relay's working copy must not be the master's key, which it wipes per hop.
  const seeded = seededBytes(7);
  const clock = { ms: 0 };
  const net = new QkdNetwork({ topology: parseTopology(DIAMOND), now: () => clock.ms, randomBytes: (n) => Buffer.from(seeded(n)) });
  clock.ms = 2000;
  const r = net.relay('client-sae', 'server-sae', 2, 256);
  if (!r.ok) throw new Error(r.message);
  const got = net.redeem('client-sae', 'server-sae', r.keys.map((k) => k.keyId));
  if (!got.ok) throw new Error('redeem failed');
  for (let i = 0; i < 2; i++) {
    t.notOk(r.keys[i].key.every((b) => b === 0), `the master's key ${i} is not wiped`);
    t.ok(equalConstantTime(got.keys[i].key, r.keys[i].key), `key ${i} is the same at both ends`);
  }
});

t.test('a key relayed over three hops reaches the far SAE once, and costs each hop exactly its size', async (t) => {
  const { net, clock } = network(DIAMOND);
  clock.ms = 2000;
  const before = net.snapshot().links.map((l) => l.poolBits);
  const r = net.relay('client-sae', 'server-sae', 3, 256);
  if (!r.ok) throw new Error(r.message);
  t.same(r.path, ['A', 'B', 'C', 'D'], 'the shortest route');
  const after = net.snapshot().links.map((l) => l.poolBits);
  t.same(
    before.map((b, i) => b - after[i]),
    [768, 768, 768, 0],
    'A-B, B-C, C-D each spent 3 × 256 bits; the detour nothing',
  );
  const got = net.redeem('client-sae', 'server-sae', r.keys.map((k) => k.keyId.toUpperCase()));
  if (!got.ok) throw new Error('redeem failed');
  for (let i = 0; i < 3; i++) t.ok(equalConstantTime(got.keys[i].key, r.keys[i].key), `key ${i} is the same at both ends`);
  t.notOk(equalConstantTime(r.keys[0].key, r.keys[1].key), 'fresh keys differ');
  const again = net.redeem('client-sae', 'server-sae', [r.keys[0].keyId]);
  t.same(again, { ok: false, unknownKeyIds: [r.keys[0].keyId], notAddressedKeyIds: [] }, 'each key is delivered once');
  const other = net.relay('client-sae', 'server-sae', 1, 256);
  if (!other.ok) throw new Error(other.message);
  t.same(net.redeem('c-sae', 'server-sae', [other.keys[0].keyId]), { ok: false, unknownKeyIds: [], notAddressedKeyIds: [other.keys[0].keyId] }, 'only for the pair it was relayed for (ETSI GS QKD 014 clause 5.4: 401)');
  net.destroy();
});

t.test('key conservation: link bits consumed = delivered + waiting + discarded', async (t) => {
  const { net, clock } = network(DIAMOND, { ttlMs: 5000 });
  clock.ms = 3000;
  const pairs: [string, string][] = [
    ['client-sae', 'server-sae'],
    ['server-sae', 'client-sae'],
    ['client-sae', 'c-sae'],
    ['c-sae', 'server-sae'],
  ];
  const issued: { pair: [string, string]; ids: string[] }[] = [];
  const sizes = [64, 128, 256, 512, 1024];
  for (let i = 0; i < 40; i++) {
    const pair = pairs[i % pairs.length];
    const r = net.relay(pair[0], pair[1], 1 + (i % 3), sizes[i % sizes.length]);
    if (!r.ok) throw new Error(r.message);
    issued.push({ pair, ids: r.keys.map((k) => k.keyId) });
  }
  // Half are fetched, half never.
  for (const [i, x] of issued.entries()) if (i % 2 === 0) t.ok(net.redeem(x.pair[0], x.pair[1], x.ids).ok);
  let s = net.snapshot();
  const consumed = s.links.reduce((n, l) => n + l.consumedBits, 0);
  t.equal(s.ledger.consumedBits, consumed, 'the ledger counts what the links gave');
  t.ok(s.ledger.pendingBits > 0 && s.ledger.deliveredBits > 0);
  t.equal(consumed, s.ledger.deliveredBits + s.ledger.pendingBits + s.ledger.discardedBits, 'consumed = delivered + waiting + discarded');
  // Every link: produced = in the pool + consumed.
  for (const l of s.links) t.equal(l.producedBits, l.poolBits + l.consumedBits, `link ${l.name}: produced = pool + consumed`);
  clock.ms = 9000; // the unfetched keys expire
  s = net.snapshot();
  t.equal(s.ledger.pendingBits, 0);
  t.equal(s.ledger.keysDiscarded, issued.filter((_, i) => i % 2 === 1).reduce((n, x) => n + x.ids.length, 0), 'every unfetched key');
  t.equal(s.links.reduce((n, l) => n + l.consumedBits, 0), s.ledger.deliveredBits + s.ledger.discardedBits, 'consumed = delivered + discarded');
  for (const l of s.links) t.equal(l.producedBits, l.poolBits + l.consumedBits, `link ${l.name}: produced = pool + consumed`);
  net.destroy();
});

t.test('the controller routes around a compromised, cut or exhausted link', async (t) => {
  const topology = { ...DIAMOND, eavesdroppers: [{ link: 'D-C', fraction: 1, from_s: 10 }] };
  const { net, clock, events } = network(topology);
  clock.ms = 5000;
  const first = net.relay('client-sae', 'server-sae', 1, 256);
  t.same(first.ok && first.path, ['A', 'B', 'C', 'D']);
  clock.ms = 11_000;
  const second = net.relay('client-sae', 'server-sae', 1, 256);
  t.same(second.ok && second.path, ['A', 'B', 'D'], 'C-D is compromised: the detour');
  t.ok(events.some((e) => e.type === 'link-state' && e.link === 'C-D' && e.to === 'compromised'));
  const route = events.filter((e) => e.type === 'route').at(-1);
  t.same(route?.type === 'route' && [route.path, route.previous], [['A', 'B', 'D'], ['A', 'B', 'C', 'D']], 'a route event names the change');
  t.same(net.snapshot().routes, [{ masterSaeId: 'client-sae', slaveSaeId: 'server-sae', path: ['A', 'B', 'D'] }]);

  net.setLinkCut('B-D', true);
  const third = net.relay('client-sae', 'server-sae', 1, 256);
  t.equal(third.ok, false, 'no route left');
  if (!third.ok && third.reason === 'no_route') {
    t.match(third.message, /no route from node A to node D/);
    t.match(third.message, /link C-D is compromised: QBER \d+\.\d% is above the 11\.0% threshold/);
    t.match(third.message, /link B-D is down: the link is cut/);
    t.same(third.blockers.map((b) => b.link).sort(), ['B-D', 'C-D']);
  }
  net.setLinkCut('B-D', false);
  const fourth = net.relay('client-sae', 'server-sae', 1, 256);
  t.same(fourth.ok && fourth.path, ['A', 'B', 'D'], 'restored');
  net.destroy();

  // Exhaustion: the short route's small pool runs dry, the long route takes over, then nothing is left.
  const small = network({
    nodes: [{ name: 'A', saes: ['x'] }, { name: 'B' }, { name: 'C', saes: ['y'] }],
    links: [
      { a: 'A', b: 'B', km: 10, capacityBits: 1024 },
      { a: 'B', b: 'C', km: 10 },
      { a: 'A', b: 'C', km: 40, capacityBits: 2048 },
    ],
  });
  small.clock.ms = 1000; // both small pools are full
  const paths: string[] = [];
  for (let i = 0; i < 8; i++) {
    const r = small.net.relay('x', 'y', 1, 512);
    paths.push(r.ok ? r.path.join('') : r.reason);
  }
  t.same(paths, ['ABC', 'ABC', 'AC', 'AC', 'AC', 'AC', 'no_route', 'no_route'], 'shortest first, then the long way, then refused');
  const refusal = small.net.relay('x', 'y', 1, 512);
  t.match(!refusal.ok && refusal.message, /link A-B is exhausted: 0 bits of key, 512 needed; link A-C is exhausted/);
  small.net.destroy();
});

t.test('ETSI GS QKD 014 at every node: enc_keys at A, dec_keys at D, 503 with the reason when no route', async (t) => {
  const topology = { ...DIAMOND, eavesdroppers: [{ link: 'C-D', fraction: 1, from_s: 10 }] };
  const { net, clock } = network(topology);
  clock.ms = 2000;
  const status = request(net, 'A', 'client-sae', '/api/v1/keys/server-sae/status');
  t.equal(status.status, 200);
  if ('json' in status && status.status === 200) {
    t.match(status.json, { source_KME_ID: 'A', target_KME_ID: 'D', master_SAE_ID: 'client-sae', slave_SAE_ID: 'server-sae', key_size: 256 });
    t.ok(status.json.stored_key_count > 10, 'keys available over the route');
  }
  const enc = request(net, 'A', 'client-sae', '/api/v1/keys/server-sae/enc_keys', 'number=2&size=512');
  t.equal(enc.status, 200);
  const keys = 'keys' in enc ? enc.keys : [];
  t.equal(keys.length, 2);
  t.equal(keys[0].key.length, 64);
  const dec = request(net, 'D', 'server-sae', '/api/v1/keys/client-sae/dec_keys', '', 'POST', JSON.stringify({ key_IDs: keys.map((k) => ({ key_ID: k.keyId })) }));
  t.equal(dec.status, 200);
  t.ok('keys' in dec && dec.keys.every((k, i) => equalConstantTime(k.key, keys[i].key)), 'the same keys at node D');
  // Wrong node, unknown SAE, blank SAE.
  t.match(request(net, 'B', 'client-sae', '/api/v1/keys/server-sae/enc_keys'), { status: 401, json: { message: /not served by B/ } });
  t.match(request(net, 'A', 'client-sae', '/api/v1/keys/nobody/enc_keys'), { status: 401, json: { message: /no SAE 'nobody' in this QKD network/ } });
  t.match(request(net, 'A', 'client-sae', '/api/v1/keys/%00unknown%20SAE/enc_keys'), { status: 401 });
  t.match(request(net, 'A', 'client-sae', '/api/v1/keys/client-sae/enc_keys'), { status: 400 });
  t.match(request(net, 'A', undefined, '/api/v1/keys/server-sae/enc_keys'), { status: 401 });
  t.match(request(net, 'A', 'client-sae', '/api/v1/keys/server-sae/nothing'), { status: 404 });
  t.match(request(net, 'D', 'server-sae', '/api/v1/keys/client-sae/enc_keys'), { status: 200 }, 'the server SAE may also be a master');

  clock.ms = 11_000;
  t.match(request(net, 'A', 'client-sae', '/api/v1/keys/server-sae/enc_keys'), { status: 200 }, 'the detour still serves');
  net.setLinkCut('B-D', true);
  const refused = request(net, 'A', 'client-sae', '/api/v1/keys/server-sae/enc_keys');
  t.equal(refused.status, 503);
  t.match(refused, { op: 'enc_keys', json: { message: /^no route from node A to node D with 256 bits of key on every link: .*link C-D is compromised/ } });
  t.match('json' in refused && 'details' in refused.json && refused.json.details, [{ reason: 'no_route', needed_bits: 256 }]);
  const st = request(net, 'A', 'client-sae', '/api/v1/keys/server-sae/status');
  t.match(st, { status: 200, json: { stored_key_count: 0, status_extension: { key_rate_bps: 0 } } }, 'status says no key');
  net.destroy();
});

t.test('any request to any node gets an ETSI 014 answer and never spends key unless it is a valid enc_keys', async (t) => {
  const { net, clock } = network(DIAMOND);
  clock.ms = 1000;
  const saes = ['client-sae', 'server-sae', 'c-sae', 'nobody', '', '%00unknown%20SAE'];
  const segment = fc.oneof(fc.constantFrom(...saes), fc.string({ maxLength: 12 }));
  const path = fc.oneof(
    fc.tuple(segment, fc.constantFrom('status', 'enc_keys', 'dec_keys', 'x')).map(([s, op]) => `/api/v1/keys/${s}/${op}`),
    fc.string({ maxLength: 40 }),
  );
  const body = fc.oneof(fc.constant(''), fc.json({ maxDepth: 2 }), fc.string({ maxLength: 30 }), fc.constant('{"number":2,"size":128}'), fc.constant('{"key_IDs":[{"key_ID":"00000000-0000-4000-8000-000000000000"}]}'));
  const query = fc.constantFrom('', 'number=2', 'size=100', 'number=0', 'key_ID=zz', 'number=999999999999');
  fc.assert(
    fc.property(fc.constantFrom('A', 'B', 'C', 'D'), fc.option(fc.constantFrom(...saes)), path, fc.constantFrom('GET', 'POST', 'PUT'), query, body, (node, caller, p, method, q, b) => {
      const before = net.snapshot().ledger.consumedBits;
      const r = request(net, node, caller ?? undefined, p, q, method, b);
      if (![200, 400, 401, 404, 405, 503].includes(r.status)) return false;
      const spent = net.snapshot().ledger.consumedBits - before;
      const validEnc = r.status === 200 && r.op === 'enc_keys';
      return validEnc ? spent > 0 : spent === 0;
    }),
    { numRuns: 400, seed: 20261206 },
  );
  t.pass('400 random requests answered');
  net.destroy();
});

t.test('topology files are checked', async (t) => {
  const ok = parseTopology({ nodes: [{ name: 'A', saes: ['a'] }, { name: 'B' }], links: [{ a: 'A', b: 'B', km: 5, misalignment: 0.01 }], defaults: { pulseRateHz: 1e9 } });
  t.same(ok.links[0], { a: 'A', b: 'B', km: 5, misalignment: 0.01 });
  const bad: [unknown, RegExp][] = [
    [[], /must be a JSON object/],
    [{ nodes: [] }, /nodes must not be empty/],
    [{ nodes: [{ name: 'a/b' }] }, /name 'a\/b'/],
    [{ nodes: [{ name: 'network' }] }, /not 'network'/],
    [{ nodes: [{ name: 'A' }, { name: 'A' }] }, /listed twice/],
    [{ nodes: [{ name: 'A', saes: ['s'] }, { name: 'B', saes: ['s'] }] }, /SAE 's' is at two nodes/],
    [{ nodes: [{ name: 'A' }], links: [{ a: 'A', b: 'Z', km: 1 }] }, /unknown node 'Z'/],
    [{ nodes: [{ name: 'A' }, { name: 'B' }], links: [{ a: 'A', b: 'B', km: 1 }, { a: 'B', b: 'A', km: 2 }] }, /two links join/],
    [{ nodes: [{ name: 'x-y' }, { name: 'z' }, { name: 'x' }, { name: 'y-z' }], links: [{ a: 'x-y', b: 'z', km: 1 }, { a: 'x', b: 'y-z', km: 1 }] }, /both named "x-y-z"/],
    [{ nodes: [{ name: 'A' }, { name: 'B' }], links: [{ a: 'A', b: 'B', km: 'far' }] }, /km must be a number/],
    [{ nodes: [{ name: 'A' }, { name: 'B' }], links: [{ a: 'A', b: 'B', km: 1, colour: 'red' }] }, /unknown field 'colour'/],
    [{ nodes: [{ name: 'A' }, { name: 'B' }], links: [{ a: 'A', b: 'B', km: 1 }], eavesdroppers: [{ link: 'A-C', fraction: 1 }] }, /not a link/],
    [{ nodes: [{ name: 'A' }, { name: 'B' }], links: [{ a: 'A', b: 'B', km: 1 }], eavesdroppers: [{ link: 'A-B', fraction: 2 }] }, /fraction must be in \[0, 1\]/],
  ];
  for (const [json, re] of bad) t.throws(() => parseTopology(json), re, JSON.stringify(json).slice(0, 80));
  t.throws(() => network({ nodes: [{ name: 'A' }, { name: 'B' }], links: [{ a: 'A', b: 'B', km: 1, detectorEfficiency: 2 }] }), /detectorEfficiency/);
});

t.test('the picture names every node and link and is well-formed XML', async (t) => {
  const topology: Topology = parseTopology({ ...DIAMOND, nodes: [...DIAMOND.nodes, { name: 'E', saes: ['odd<sae>&"'] }], links: [...DIAMOND.links, { a: 'D', b: 'E', km: 5 }] });
  const clock = { ms: 0 };
  const net = new QkdNetwork({ topology, now: () => clock.ms, randomBytes: seededBytes(3) });
  clock.ms = 1000;
  net.setLinkCut('B-D', true);
  net.addEavesdropper({ link: 'C-D', fraction: 1 });
  clock.ms = 2000;
  const r = net.relay('client-sae', 'server-sae', 1, 256);
  t.ok(!r.ok, 'no route: C-D compromised, B-D cut');
  const svg = networkSvg(net.snapshot());
  t.ok(svg.startsWith('<svg xmlns="http://www.w3.org/2000/svg"'));
  checkWellFormed(t, svg);
  for (const n of topology.nodes) t.ok(svg.includes(`data-node="${xmlEscape(n.name)}"`), `node ${n.name}`);
  for (const l of net.snapshot().links) t.ok(svg.includes(`data-link="${xmlEscape(l.name)}"`), `link ${l.name}`);
  t.match(svg, /data-link="C-D" data-state="compromised"/);
  t.match(svg, /data-link="B-D" data-state="down"/);
  t.match(svg, /QBER \d+\.\d%/);
  t.match(svg, /pool [\d.]+ kbit of 1\.00 Mbit/);
  t.match(svg, /key [\d.]+ kbit\/s/);
  t.match(svg, /SAE odd&lt;sae&gt;&amp;&quot;/);
  net.destroy();
});

/** A small XML well-formedness check: balanced tags, quoted attributes, no stray '<' or '&'. */
function checkWellFormed(t: Tap, xml: string): void {
  const stack: string[] = [];
  const token = /<(\/?)([A-Za-z][\w:-]*)((?:\s+[\w:-]+="[^"<]*")*)\s*(\/?)>|([^<]+)|(<)/g;
  let m: RegExpExecArray | null;
  let bad = '';
  while ((m = token.exec(xml)) !== null) {
    if (m[6]) {
      bad = `stray '<' at ${m.index}: ${xml.slice(m.index, m.index + 40)}`;
      break;
    }
    if (m[5] !== undefined) {
      if (/&(?!(amp|lt|gt|quot|apos);)/.test(m[5])) bad = `unescaped '&' in text: ${m[5].slice(0, 40)}`;
      continue;
    }
    if (/&(?!(amp|lt|gt|quot|apos);)/.test(m[3])) bad = `unescaped '&' in attributes: ${m[3].slice(0, 40)}`;
    if (m[1]) {
      if (stack.pop() !== m[2]) bad = `</${m[2]}> closes nothing open`;
    } else if (!m[4]) stack.push(m[2]);
    if (bad) break;
  }
  t.equal(bad, '', 'every tag is well-formed');
  t.same(stack, [], 'every element is closed');
}

function xmlEscape(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

t.test('a relay spends key on the links of its route, found by their ends, even when two link names coincide', async (t) => {
  // Built by hand (parseTopology refuses it): 'x-y'+'z' and 'x'+'y-z' are both named "x-y-z".
  const topology: Topology = {
    nodes: [{ name: 'x-y', saes: [] }, { name: 'z', saes: [] }, { name: 'x', saes: ['sx'] }, { name: 'y-z', saes: ['syz'] }],
    links: [
      { a: 'x-y', b: 'z', km: 5 },
      { a: 'x', b: 'y-z', km: 5 },
    ],
    eavesdroppers: [],
    defaults: {},
  };
  const clock = { ms: 0 };
  const net = new QkdNetwork({ topology, now: () => clock.ms, randomBytes: seededBytes(7) });
  clock.ms = 2000;
  const before = net.snapshot().links.map((l) => l.poolBits);
  const r = net.relay('sx', 'syz', 1, 256);
  if (!r.ok) throw new Error(r.message);
  t.same(r.path, ['x', 'y-z'], 'the one-hop route');
  const after = net.snapshot().links.map((l) => l.poolBits);
  t.same(before.map((b, i) => b - after[i]), [0, 256], "the x to y-z link paid 256 bits, the other link nothing");
  net.destroy();
});

t.test('cutting and restoring a compromised link does not clear the compromise', async (t) => {
  const { net, clock } = network({ ...DIAMOND, eavesdroppers: [{ link: 'C-D', fraction: 1, from_s: 10 }] });
  clock.ms = 11_000;
  const state = () => net.snapshot().links.find((l) => l.name === 'C-D')!.state;
  t.equal(state(), 'compromised', 'the eavesdropper on C-D is noticed');
  net.setLinkCut('C-D', true);
  t.equal(state(), 'down', 'cut');
  net.setLinkCut('C-D', false);
  t.equal(state(), 'compromised', 'restored: still compromised (it needs clean blocks in a row to serve again)');
  const r = net.relay('client-sae', 'server-sae', 1, 256);
  t.same(r.ok && r.path, ['A', 'B', 'D'], 'so the relay still takes the detour');
  net.destroy();
});
