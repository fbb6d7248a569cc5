/**
 * TLS 1.3 across the simulated QKD network, end to end on 127.0.0.1: keys relayed over three nodes reach a
 * real handshake (library and command line); when an eavesdropper compromises the only route, the client fails
 * closed with the key manager's reason. Also: mutual TLS to the network's KMEs, and GET /network(.svg).
 * Waits are bounded polls (the network's clock is real time here), never timed assertions.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { Etsi014Client } from '../lib/qkd/etsi014-client.js';
import { Etsi014ClientSource, Etsi014ServerSource, releaseAfter, type Etsi014SourceEvent } from '../lib/qkd/etsi014-source.js';
import { serverPskResolver, takePsks } from '../lib/psk/source.js';
import { parseTopology, startQkdNetworkServer, type QkdNetworkServer } from '../lib/tools/network/node.js';
import { connect, createServer, defaultNodeCrypto } from '../lib/transport/node.js';
import { runQkdTls, spawnQkdTls, type TestLike } from './helpers/peers.js';
import { spawnCli } from './proxy-helpers.js';

type Teardown = Pick<typeof t, 'teardown'>;

const THREE_NODES = {
  nodes: [{ name: 'A', saes: ['client-sae'] }, { name: 'B' }, { name: 'C', saes: ['server-sae'] }],
  links: [
    { a: 'A', b: 'B', km: 20 },
    { a: 'B', b: 'C', km: 30 },
  ],
};

/** Polls `done` every 50 ms, at most `tries` times. */
async function until(what: string, done: () => boolean | Promise<boolean>, tries = 200): Promise<void> {
  for (let i = 0; i < tries; i++) {
    if (await done()) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`gave up waiting until ${what}`);
}

async function tlsPair(t: Teardown, net: QkdNetworkServer, tls: { ca?: string; client?: { cert: string; key: string }; server?: { cert: string; key: string } } = {}) {
  const crypto = defaultNodeCrypto();
  const events: Etsi014SourceEvent[] = [];
  const wipeLater = releaseAfter(10_000);
  const serverKeys = new Etsi014ServerSource({
    client: new Etsi014Client({ baseUrl: net.kmeUrl('C'), saeId: 'server-sae', timeoutMs: 3000, ca: tls.ca, ...tls.server }),
    ownsClient: true,
    peerSaeIds: ['client-sae'],
    onEvent: (e) => events.push(e),
  });
  const clientKeys = new Etsi014ClientSource({
    client: new Etsi014Client({ baseUrl: net.kmeUrl('A'), saeId: 'client-sae', retries: 1, ca: tls.ca, ...tls.client }),
    ownsClient: true,
    peerSaeId: 'server-sae',
    saeId: 'client-sae',
    poolSize: 0,
    onEvent: (e) => events.push(e),
  });
  const server = createServer({ crypto, handshakeTimeout: 10_000, psks: serverPskResolver(crypto, serverKeys, { onLease: wipeLater }) }, (s) => s.pipe(s));
  server.on('tlsClientError', () => {});
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  t.teardown(async () => {
    await new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.destroyAll();
    });
    clientKeys.close();
    serverKeys.close();
    wipeLater.releaseAll();
  });
  const handshake = (message: string) =>
    new Promise<{ ok: boolean; error?: Error; echoed: string; offered: number }>((resolve) => {
      const r = { ok: false, echoed: '', offered: 0 } as { ok: boolean; error?: Error; echoed: string; offered: number };
      let release: (() => void) | undefined;
      const socket = connect(
        {
          crypto,
          host: '127.0.0.1',
          port: server.address().port,
          handshakeTimeout: 10_000,
          psks: async () => {
            const offer = await takePsks(crypto, clientKeys);
            release = offer.release;
            r.offered = offer.psks.length;
            return offer.psks;
          },
        },
        () => {
          r.ok = true;
          socket.end(message);
        },
      );
      socket.on('data', (d: Buffer) => (r.echoed += d.toString()));
      socket.on('error', (e) => (r.error = e));
      socket.on('close', () => {
        release?.();
        resolve(r);
      });
    });
  return { handshake, events };
}

t.test('library: TLS across three nodes, then failing closed when the route is compromised', async (t) => {
  const net = await startQkdNetworkServer({ topology: parseTopology(THREE_NODES), insecureHttp: true });
  t.teardown(() => net.close());
  await until('both links hold key', () => net.network.snapshot().links.every((l) => l.poolBits >= 2048));
  const { handshake, events } = await tlsPair(t, net);

  const first = await handshake('over three nodes');
  t.equal(first.error, undefined, 'no error');
  t.ok(first.ok, 'the handshake completed');
  t.equal(first.echoed, 'over three nodes');
  t.same(events.filter((e) => e.type === 'resolved').length, 1, 'the server fetched the key from node C');
  let snap = net.network.snapshot();
  t.same(snap.routes, [{ masterSaeId: 'client-sae', slaveSaeId: 'server-sae', path: ['A', 'B', 'C'] }]);
  t.equal(snap.ledger.deliveredBits, 512, 'one 256-bit key over two hops, delivered to both ends');
  t.same(snap.links.map((l) => l.consumedBits), [256, 256]);

  net.network.addEavesdropper({ link: 'B-C', fraction: 1 });
  await until('B-C is compromised', () => net.network.snapshot().links[1].state === 'compromised');
  const consumedBefore = net.network.snapshot().ledger.consumedBits;
  const second = await handshake('must not be sent');
  t.notOk(second.ok, 'no handshake');
  t.equal(second.offered, 0, 'no key was offered (none reused, none stale)');
  t.match(second.error?.message, /HTTP 503.*no route from node A to node C with 256 bits of key on every link: link B-C is compromised: QBER \d+\.\d% is above the 11\.0% threshold/);
  t.equal(events.filter((e) => e.type === 'resolved').length, 1, 'the server was never asked for a key');
  snap = net.network.snapshot();
  t.equal(snap.ledger.consumedBits, consumedBefore, 'no link key was spent');
  t.ok(snap.links[1].qber > 0.2, `QBER ${snap.links[1].qber}`);
});

t.test('mutual TLS to the network KMEs (the simulator certificates)', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'qkd-net-certs-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const net = await startQkdNetworkServer({ topology: parseTopology(THREE_NODES), certsDir: dir });
  t.teardown(() => net.close());
  t.match(net.url, /^https:\/\/127\.0\.0\.1:\d+$/);
  const c = net.credentials!;
  await until('both links hold key', () => net.network.snapshot().links.every((l) => l.poolBits >= 2048));
  const { handshake } = await tlsPair(t, net, { ca: c.ca, client: c.saes['client-sae'], server: c.saes['server-sae'] });
  const r = await handshake('mutual TLS to the KMEs');
  t.equal(r.error, undefined);
  t.equal(r.echoed, 'mutual TLS to the KMEs');
  // Without a client certificate, no key.
  const anonymous = new Etsi014Client({ baseUrl: net.kmeUrl('A'), ca: c.ca, timeoutMs: 2000, retries: 0 });
  await t.rejects(anonymous.encKeys('server-sae'), /TLS|certificate|socket|reset|ECONNRESET|hang up/i);
  anonymous.close();
  // Another SAE's certificate at the wrong node.
  const wrong = new Etsi014Client({ baseUrl: net.kmeUrl('A'), ca: c.ca, ...c.saes['server-sae'], timeoutMs: 2000, retries: 0 });
  await t.rejects(wrong.encKeys('client-sae'), /401.*not served by A/);
  wrong.close();
});

t.test('command line: qkd-tls kme --topology with qkd-tls server and client; /network; failing closed', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'qkd-net-topo-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const clean = join(dir, 'clean.json');
  const attacked = join(dir, 'attacked.json');
  writeFileSync(clean, JSON.stringify(THREE_NODES));
  writeFileSync(attacked, JSON.stringify({ ...THREE_NODES, eavesdroppers: [{ link: 'B-C', fraction: 1.0, from_s: 0 }] }));

  const kme = await spawnKme(t, ['--topology', clean, '--listen', '127.0.0.1:0', '--insecure-http', '--json']);
  t.match(kme.listening, { event: 'listening', insecureHttp: true, nodes: [{ name: 'A', saes: ['client-sae'], kme: `${kme.url}/A` }, { name: 'B' }, { name: 'C' }] });
  type Net = { links: { a: string; b: string; qber: number; keyRateBps: number; poolBits: number; state: string }[] };
  let net: Net = { links: [] };
  await until('the links hold key', async () => {
    net = (await (await fetch(`${kme.url}/network`)).json()) as Net;
    return net.links.every((l) => l.poolBits >= 1024);
  });
  t.match(net.links, [
    { a: 'A', b: 'B', state: 'up', qber: Number, keyRateBps: Number, poolBits: Number },
    { a: 'B', b: 'C', state: 'up', qber: Number, keyRateBps: Number, poolBits: Number },
  ]);
  t.ok(net.links.every((l) => l.keyRateBps > 10_000 && l.qber < 0.11), 'tens of km: tens of kbit/s, QBER a few %');
  const svg = await fetch(`${kme.url}/network.svg`);
  t.match(svg.headers.get('content-type'), /^image\/svg\+xml/);
  t.match(await svg.text(), /data-link="B-C"/);

  const server = await spawnCli(t, 'server', ['--listen', '127.0.0.1:0', '--kme', `${kme.url}/C`, '--sae-id', 'server-sae', '--peer-sae-id', 'client-sae', '--json']);
  const listening = await server.waitFor((o) => o.event === 'listening');
  const port = Number(String(listening.address).split(':').pop());
  const ok = await runClient(['--connect', `127.0.0.1:${port}`, '--kme', `${kme.url}/A`, '--sae-id', 'client-sae', '--peer-sae-id', 'server-sae', '--json'], 'hello over the QKD network\n');
  t.equal(ok.code, 0, `client exit 0 (stderr: ${ok.stderr})`);
  t.equal(ok.stdout, 'hello over the QKD network\n', 'echoed through TLS');
  t.match(ok.stderr, /"event":"handshake","version":"TLSv1\.3"/);
  net = (await (await fetch(`${kme.url}/network`)).json()) as Net & { routes: unknown };
  t.match(net, { routes: [{ masterSaeId: 'client-sae', slaveSaeId: 'server-sae', path: ['A', 'B', 'C'] }] });

  // The same network with an eavesdropper on B-C from the start: the client fails closed.
  const kme2 = await spawnKme(t, ['--topology', attacked, '--listen', '127.0.0.1:0', '--insecure-http', '--json', '--time-scale', '2']);
  await until('B-C is compromised', async () => {
    const n = (await (await fetch(`${kme2.url}/network`)).json()) as Net;
    return n.links[1].state === 'compromised';
  });
  const server2 = await spawnCli(t, 'server', ['--listen', '127.0.0.1:0', '--kme', `${kme2.url}/C`, '--sae-id', 'server-sae', '--peer-sae-id', 'client-sae', '--json']);
  const port2 = Number(String((await server2.waitFor((o) => o.event === 'listening')).address).split(':').pop());
  // The client retries the 503 three times (≈0.7 s of backoff) and then reports it; the KME deadline stays at its
  // default (5 s): a deadline hit while a retry is in flight would report a timeout instead of the 503's reason.
  const refused = await runClient(['--connect', `127.0.0.1:${port2}`, '--kme', `${kme2.url}/A`, '--sae-id', 'client-sae', '--peer-sae-id', 'server-sae'], 'must not be sent\n');
  t.not(refused.code, 0, 'the client exits non-zero');
  t.equal(refused.stdout, '', 'nothing was exchanged');
  t.match(refused.stderr, /503.*no route from node A to node C .*link B-C is compromised: QBER/);
});

t.test('HTTP: unknown paths, wrong methods, oversized bodies, hostile node names', async (t) => {
  const net = await startQkdNetworkServer({ topology: parseTopology(THREE_NODES), insecureHttp: true, maxBodyBytes: 1024 });
  t.teardown(() => net.close());
  const call = async (path: string, init: RequestInit = {}) => {
    const r = await fetch(net.url + path, init);
    return { status: r.status, body: (await r.json()) as { message?: string } };
  };
  t.match(await call('/'), { status: 404, body: { message: /unknown path/ } });
  t.match(await call('/Z/api/v1/keys/server-sae/status', { headers: { 'x-sae-id': 'client-sae' } }), { status: 404 }, 'no node Z');
  t.match(await call('/%ZZ/api/v1/keys/server-sae/status'), { status: 404 }, 'bad percent-encoding');
  t.match(await call('/A/api/v1/keys/server-sae/status'), { status: 401 }, 'no X-SAE-ID');
  t.match(await call('/network', { method: 'POST', body: '{}' }), { status: 405 });
  t.match(await call('/A/api/v1/keys/server-sae/enc_keys', { method: 'POST', headers: { 'x-sae-id': 'client-sae' }, body: 'x'.repeat(2000) }), { status: 413 });
  t.match(await call('/A/api/v1/keys/server-sae/enc_keys', { method: 'POST', headers: { 'x-sae-id': 'client-sae', 'content-type': 'application/json' }, body: '{"number": "many"}' }), { status: 400 });
  // ETSI GS QKD 014's OpenAPI takes request bodies as application/json only: a form-encoded one is 415.
  t.match(await call('/A/api/v1/keys/server-sae/enc_keys', { method: 'POST', headers: { 'x-sae-id': 'client-sae', 'content-type': 'application/x-www-form-urlencoded' }, body: '{"number": 1}' }), { status: 415 });
  t.match(await call('/A/api/v1/keys/server-sae/enc_keys', { method: 'DELETE', headers: { 'x-sae-id': 'client-sae' } }), { status: 405 });
  const snap = (await (await fetch(`${net.url}/network`)).json()) as { ledger: { consumedBits: number } };
  t.equal(snap.ledger.consumedBits, 0, 'no bad request spent key');
});

t.test('command line: usage errors', async (t) => {
  const bad = await runCli(['kme', '--topology', '/nonexistent/topology.json', '--insecure-http', '--listen', '127.0.0.1:0']);
  t.equal(bad.code, 2, 'a file that cannot be read: a usage error, as the proxy\'s --config');
  t.equal(bad.stderr, "qkd-tls kme: topology file /nonexistent/topology.json: cannot read it: ENOENT: no such file or directory, open '/nonexistent/topology.json'\n");
  const scale = await runCli(['kme', '--topology', 'x.json', '--time-scale', 'fast']);
  t.equal(scale.code, 2);
  t.match(scale.stderr, /--time-scale wants a positive number/);
  const help = await runCli(['kme', '--topology', 'x', '--help']);
  t.equal(help.code, 0);
  t.match(help.stdout, /GET \/network/);
});

// A topology file that cannot be used exited 1 with Node's words ("is not JSON: Unexpected end of JSON input", no
// position), and a value out of range was found only when the network started, without the file or the field
// ("link parameter detectorEfficiency must be a number in (0, 1] (got 5)"). Found in a README walkthrough. Now one
// line naming the file and what is wrong (JSON.parse's words, with a line and column where they give a position, or
// the field path), exit 2.
t.test('command line: a bad topology file is a usage error naming the file and where the problem is', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'qkd-topology-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const two = '{"nodes":[{"name":"A"},{"name":"B"}],"links":[{"a":"A","b":"B","km":10';
  for (const [name, text, problem] of [
    // JSON.parse's own words (V8's in Node 20), on one line; where they give a position, its line and column too.
    ['truncated.json', '{"nodes": [\n', 'not JSON: Unexpected end of JSON input'],
    ['bare-word.json', '{"nodes":[{"name":"A"},\n  {"name": B}]}', /^not JSON: Unexpected token 'B', .*\{"name": B\}\]\}" is not valid JSON$/],
    ['trailing-comma.json', '{"nodes":[{"name":"A"}],\n}', /^not JSON: .* at position 25 \(line 2, column 1\)$/],
    ['empty.json', '', 'the file is empty'],
    ['array.json', '[]', 'the topology must be a JSON object'],
    ['nodes.json', '{"nodes": 3}', 'nodes must be an array'],
    ['km.json', `${two.slice(0, -2)}"far"}]}`, 'links[0].km must be a number'],
    ['efficiency.json', `${two},"detectorEfficiency":5}]}`, 'links[0].detectorEfficiency must be a number in (0, 1] (got 5)'],
    ['capacity.json', `${two}}],"defaults":{"capacityBits":-1}}`, 'defaults.capacityBits must be a positive multiple of 8 up to 2147483648 (got -1)'],
  ] as const) {
    const file = join(dir, name);
    writeFileSync(file, text);
    const r = await runCli(['kme', '--topology', file, '--insecure-http', '--listen', '127.0.0.1:0']);
    t.equal(r.code, 2, `${name}: exit code 2`);
    const line = r.stderr.replace(`qkd-tls kme: topology file ${file}: `, '');
    t.equal(r.stderr.split('\n').length, 2, `${name}: one line`);
    if (typeof problem === 'string') t.equal(line, `${problem}\n`, `${name}: the file and what is wrong`);
    else t.match(line.trimEnd(), problem, `${name}: the file and what is wrong`);
    t.equal(r.stdout, '', `${name}: nothing started`);
  }
  // Something endless is read up to the bound of every file option, not until memory runs out.
  const endless = await runCli(['kme', '--topology', '/dev/zero', '--insecure-http', '--listen', '127.0.0.1:0']);
  t.equal(endless.code, 2);
  t.equal(endless.stderr, 'qkd-tls kme: topology file /dev/zero: larger than 67108864 bytes (64 MiB), the most that is read\n');
});

/** `qkd-tls kme --topology ...` (killed in teardown); its first stdout line is the JSON "listening" record. */
async function spawnKme(t: TestLike, args: string[]): Promise<{ url: string; listening: Record<string, unknown> }> {
  const kme = spawnQkdTls(t, ['kme', ...args]);
  const out = await kme.waitFor(/\n/, 15_000, 'stdout');
  const listening = JSON.parse(out.slice(0, out.indexOf('\n'))) as Record<string, unknown>;
  return { url: String(listening.url), listening };
}

const runClient = (args: string[], input: string) => runQkdTls(['client', ...args], { ms: 30_000, input });
const runCli = (args: string[]) => runQkdTls(args, { ms: 30_000 });
