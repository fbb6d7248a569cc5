/**
 * The README's snippets for a page, a Worker, Bun and Deno are the files in test/fixtures/readme/, verbatim (checked
 * here), and each one runs here as a user would run it, against `qkd-tls server`:
 *  - test/fixtures/readme/deno.mjs in Deno and test/fixtures/readme/bun.mjs in Bun, over TCP, with a static key;
 *  - test/fixtures/readme/worker.mjs bundled with esbuild and served by workerd, with a static key from its env;
 *  - test/fixtures/readme/page.mjs bundled with esbuild into a page in headless Chromium: it takes a QKD key from
 *    `qkd-tls kme --insecure-http` (over fetch, CORS) and runs TLS over WebSocket to
 *    `qkd-tls server --websocket --kme ...`, which fetches the same key by ID.
 * Each prints the negotiated parameters, the echo, and whether the server's close_notify came.
 */
import { readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer as createHttpServer } from 'node:http';
import { createServer as createNetServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { launchChromium, missingChromium } from './helpers/chromium.js';
import { jsonEvent, PSK_HEX, PSK_IDENTITY, spawnPeer, spawnQkdTls, type Tap, testPeer, withTimeout } from './helpers/peers.js';
import { ROOT, serveWorkerd, WAIT } from './helpers/runtimes.js';

const SNIPPETS = ['page.mjs', 'worker.mjs', 'bun.mjs', 'deno.mjs'];
const README = readFileSync(join(ROOT, 'README.md'), 'utf8');
const SUBTEST = { timeout: 120_000 };
const HANDSHAKE_LINE = /^TLSv1\.3 TLS_AES_128_GCM_SHA256 psk_dhe_ke x25519$/m;

t.test('the README shows each example file verbatim', async (t) => {
  for (const name of SNIPPETS) {
    const text = readFileSync(join(ROOT, 'test', 'fixtures', 'readme', name), 'utf8');
    t.ok(README.includes('```js\n' + text + '```\n'), `README.md has test/fixtures/readme/${name} as a js block, byte for byte`);
  }
});

/** `qkd-tls server` echoing, with the test key (TCP, or WebSocket with extra arguments). */
async function qkdTlsServer(tt: Tap, extra: string[] = ['--psk', PSK_HEX, '--identity', PSK_IDENTITY]): Promise<{ address: string; server: ReturnType<typeof spawnQkdTls> }> {
  const server = spawnQkdTls(tt, ['server', '--listen', '127.0.0.1:0', '--json', ...extra]);
  const listening = jsonEvent(await server.waitFor(/"event":"listening"/, WAIT, 'stderr'), 'listening');
  return { address: String(listening?.address), server };
}

const deno = testPeer(t, 'deno');
t.test('test/fixtures/readme/deno.mjs runs in Deno', { ...SUBTEST, skip: deno.skip }, async (t) => {
  const { address } = await qkdTlsServer(t);
  const [host, port] = address.split(':');
  const denoDir = await mkdtemp(join(tmpdir(), 'qkd-tls-deno-'));
  t.teardown(() => rm(denoDir, { recursive: true, force: true }));
  const run = spawnPeer(t, deno.path!, ['run', '--no-lock', '--node-modules-dir=manual', '--no-prompt', '--allow-net=127.0.0.1', 'test/fixtures/readme/deno.mjs', host, port, PSK_IDENTITY, PSK_HEX], {
    cwd: ROOT,
    env: { DENO_DIR: denoDir, DENO_NO_UPDATE_CHECK: '1', NO_COLOR: '1' },
  });
  t.equal((await run.waitExit(WAIT)).code, 0, 'it exits 0', { output: run.transcript() });
  t.match(run.stdout, HANDSHAKE_LINE, 'it printed the handshake');
  t.match(run.stdout, /^hello from Deno$/m, 'and the echo');
  t.match(run.stdout, /^closed with close_notify$/m, "and saw the server's close_notify");
});

const bun = testPeer(t, 'bun');
t.test('test/fixtures/readme/bun.mjs runs in Bun', { ...SUBTEST, skip: bun.skip }, async (t) => {
  const { address } = await qkdTlsServer(t);
  const [host, port] = address.split(':');
  const run = spawnPeer(t, bun.path!, ['test/fixtures/readme/bun.mjs', host, port, PSK_IDENTITY, PSK_HEX], { cwd: ROOT, env: { DO_NOT_TRACK: '1', NO_COLOR: '1' } });
  t.equal((await run.waitExit(WAIT)).code, 0, 'it exits 0', { output: run.transcript() });
  t.match(run.stdout, HANDSHAKE_LINE, 'it printed the handshake');
  t.match(run.stdout, /^hello from Bun$/m, 'and the echo');
  t.match(run.stdout, /^closed with close_notify$/m, "and saw the server's close_notify");
});

const workerd = testPeer(t, 'workerd');
const esbuild = testPeer(t, 'esbuild');

/** Bundles an example with esbuild into `dir`. */
async function bundle(tt: Tap, name: string, dir: string, extra: string[]): Promise<string> {
  const out = join(dir, name.replace(/\.mjs$/, '.js'));
  const build = spawnPeer(tt, esbuild.path!, [join('test', 'fixtures', 'readme', name), '--bundle', '--format=esm', '--platform=browser', `--outfile=${out}`, '--log-level=warning', ...extra], { cwd: ROOT });
  const exit = await build.waitExit(WAIT);
  if (exit.code !== 0) throw new Error(`esbuild failed:\n${build.transcript()}`);
  return out;
}

t.test('test/fixtures/readme/worker.mjs runs in workerd', { ...SUBTEST, skip: workerd.skip || esbuild.skip }, async (t) => {
  const { address } = await qkdTlsServer(t);
  const [host, port] = address.split(':');
  const dir = await mkdtemp(join(tmpdir(), 'qkd-tls-worker-example-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  await bundle(t, 'worker.mjs', dir, ['--conditions=workerd,worker', '--external:cloudflare:sockets']);
  const binding = (name: string, value: string): string => `(name = "${name}", text = "${value}")`;
  await writeFile(
    join(dir, 'config.capnp'),
    `using Workerd = import "/workerd/workerd.capnp";
const config :Workerd.Config = (
  services = [ (name = "main", worker = .worker), (name = "internet", network = (allow = ["public", "local"])) ],
  sockets = [ (name = "http", address = "127.0.0.1:0", http = (), service = "main") ], # serveWorkerd sets the port
);
const worker :Workerd.Worker = (
  modules = [ (name = "worker.js", esModule = embed "worker.js") ],
  compatibilityDate = "2025-01-01",
  bindings = [ ${[binding('TLS_HOST', host), binding('TLS_PORT', port), binding('PSK_IDENTITY', PSK_IDENTITY), binding('PSK_HEX', PSK_HEX)].join(', ')} ],
);
`,
  );
  const { peer: server, url } = await serveWorkerd(t, workerd.path!, join(dir, 'config.capnp'), dir);
  const res = await withTimeout(fetch(url, { signal: AbortSignal.timeout(WAIT) }), WAIT, 'the Worker');
  const body = (await res.json()) as Record<string, unknown>;
  t.equal(res.status, 200, 'the Worker answers 200', { body, workerd: server.transcript() });
  t.same(body, { version: 'TLSv1.3', suite: 'TLS_AES_128_GCM_SHA256', kex: 'psk_dhe_ke', group: 'x25519', echo: 'hello from a Worker\n', closeNotify: true }, 'handshake, echo and close_notify');
});

t.test('test/fixtures/readme/page.mjs runs in a page: a QKD key from the KME, TLS over WebSocket', { ...SUBTEST, skip: esbuild.skip || missingChromium(t) }, async (t) => {
  const { kme, masterUrl, slaveUrl } = await pageKme(t);
  const { address, server } = await qkdTlsServer(t, ['--websocket', '--kme', slaveUrl, '--sae-id', 'server-sae', '--peer-sae-id', 'page-sae']);
  const { page, errors } = await openPage(t, { kme: masterUrl, sae: 'page-sae', peer: 'server-sae', server: `ws://${address}/` });
  await page.waitForSelector('p:nth-of-type(3)');
  const lines = await page.evaluate(() => [...(globalThis as unknown as { document: { querySelectorAll(s: string): Iterable<{ textContent: string }> } }).document.querySelectorAll('p')].map((p) => p.textContent), null);
  t.same(errors, [], 'no page error');
  t.match(lines[0], /^TLSv1\.3 TLS_AES_128_GCM_SHA256 psk_dhe_ke x25519 on QKD key [0-9a-f-]{36}$/, 'the page shows the handshake and the key ID');
  t.equal(lines[1], 'hello from a page\n', 'the echo');
  t.equal(lines[2], 'closed with close_notify', "and the server's close_notify");
  const hs = jsonEvent(await server.waitFor(/"event":"handshake"/, WAIT, 'stderr'), 'handshake');
  t.match(hs, { kex: 'psk_dhe_ke', keyId: lines[0]?.slice(-36) }, 'the server took the same key by its ID');
  t.equal(encKeysCalls(kme.stdout), 1, 'one enc_keys call');
});

// The page took its key from the KME before opening the WebSocket, so a server that was down cost a QKD key (the
// KME hands each out once) for nothing (found in a library walkthrough).
t.test('test/fixtures/readme/page.mjs with the server down: the WebSocket fails first, and no QKD key is taken', { ...SUBTEST, skip: esbuild.skip || missingChromium(t) }, async (t) => {
  const { kme, masterUrl } = await pageKme(t);
  const probe = createNetServer();
  await new Promise<void>((r) => probe.listen(0, '127.0.0.1', r));
  const free = (probe.address() as AddressInfo).port; // free a moment ago: nothing listens there
  await new Promise<void>((r) => probe.close(() => r()));
  const { errors, failed } = await openPage(t, { kme: masterUrl, sae: 'page-sae', peer: 'server-sae', server: `ws://127.0.0.1:${free}/` });
  await withTimeout(failed, WAIT, 'a page error');
  // (Chromium's WebSocketStream: 'WebSocketStream ws://...: WebSocket closed before handshake complete ...'.)
  t.match(errors[0], /^WebSocket(Stream)? ws:\/\/127\.0\.0\.1:\d+\/: /, 'the page fails on the WebSocket');
  t.equal(encKeysCalls(kme.stdout), 0, 'no enc_keys call: no key taken');
});

// The page opens its WebSocket before it takes a key; when enc_keys then fails, it closes the WebSocket (122dc77).
// Left open, the server waited for a ClientHello until its handshake timeout (30 s), and said it timed out.
t.test('test/fixtures/readme/page.mjs with the KME down: the page closes the WebSocket it opened', { ...SUBTEST, skip: esbuild.skip || missingChromium(t) }, async (t) => {
  const { address, server } = await qkdTlsServer(t, ['--websocket', '--psk', PSK_HEX, '--identity', PSK_IDENTITY]);
  const probe = createNetServer();
  await new Promise<void>((r) => probe.listen(0, '127.0.0.1', r));
  const free = (probe.address() as AddressInfo).port; // free a moment ago: nothing listens there
  await new Promise<void>((r) => probe.close(() => r()));
  const { errors, failed } = await openPage(t, { kme: `http://127.0.0.1:${free}`, sae: 'page-sae', peer: 'server-sae', server: `ws://${address}/` });
  await withTimeout(failed, WAIT, 'a page error');
  t.match(errors[0], /enc_keys/, 'the page fails on enc_keys');
  const failure = jsonEvent(await server.waitFor(/"event":"error"/, WAIT, 'stderr'), 'error');
  t.match(failure?.message, /^connection closed (by the peer )?before the TLS handshake completed$/, 'the server saw the WebSocket closed by the page, not its handshake timeout', { failure });
});

/** `qkd-tls kme` for the page (page-sae, server-sae) and its two URLs. */
async function pageKme(t: Tap): Promise<{ kme: ReturnType<typeof spawnQkdTls>; masterUrl: string; slaveUrl: string }> {
  const kme = spawnQkdTls(t, ['kme', '--listen', '127.0.0.1:0', '--insecure-http', '--master-sae', 'page-sae', '--slave-sae', 'server-sae', '--json']);
  const kmeOut = await kme.waitFor(/"event":"listening"[^\n]*\n[^\n]*"event":"listening"|"slave"/, WAIT);
  const urls = [...kmeOut.matchAll(/"url":"(http:\/\/127\.0\.0\.1:\d+)"/g)].map((m) => m[1]);
  t.equal(urls.length, 2, 'the KME simulator runs both KMEs', { kmeOut });
  return { kme, masterUrl: urls[0], slaveUrl: urls[1] };
}

/** How many enc_keys requests the KME simulator logged (--json: one request event per line). */
function encKeysCalls(stdout: string): number {
  return stdout.split('\n').filter((l) => /"event":"request"/.test(l) && /enc_keys/.test(l) && !/"method":"OPTIONS"/.test(l)).length;
}

/** page.mjs bundled and served, opened in headless Chromium with `query`; `failed` resolves on its first page error. */
async function openPage(t: Tap, query: Record<string, string>) {
  const dir = await mkdtemp(join(tmpdir(), 'qkd-tls-page-example-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const script = readFileSync(await bundle(t, 'page.mjs', dir, []));
  const web = createHttpServer((req, res) => {
    if (req.url?.startsWith('/page.js')) res.writeHead(200, { 'content-type': 'text/javascript' }).end(script);
    else res.writeHead(200, { 'content-type': 'text/html' }).end('<!doctype html><meta charset="utf-8"><title>qkd-tls page</title><script type="module" src="/page.js"></script><body></body>');
  });
  await new Promise<void>((r) => web.listen(0, '127.0.0.1', r));
  t.teardown(() => new Promise<void>((r) => web.close(() => r())));
  const pageUrl = `http://127.0.0.1:${(web.address() as AddressInfo).port}/?${new URLSearchParams(query)}`;

  const context = await launchChromium(t);
  const page = await context.newPage();
  page.setDefaultTimeout(WAIT);
  const errors: string[] = [];
  let onError!: () => void;
  const failed = new Promise<void>((r) => (onError = r));
  page.on('pageerror', (e) => {
    errors.push(e.message ?? '');
    onError();
  });
  await page.goto(pageUrl);
  return { page, errors, failed };
}
