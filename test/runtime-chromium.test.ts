/**
 * qkd-tls in a web page, in headless Chromium: the page (test/fixtures/runtimes/browser.mjs, bundled here
 * with esbuild for the browser) runs the whole TLS 1.3 PSK handshake over the WebSocket transport
 * (qkd-tls/websocket), with plain WebSocket and with WebSocketStream when Chromium has it:
 *  - to qkd-tls accepting TLS over WebSocket in Node (the library's server, `qkd-tls server --websocket`, and
 *    `qkd-tls proxy --role server --websocket` in front of a TCP backend);
 *  - through `qkd-tls bridge` (WebSocket -> TCP) to `openssl s_server -psk -nocert -rev`;
 * psk_ke and psk_dhe_ke, 1 MiB echoed and compared byte for byte in the page, close_notify seen both ways.
 * And the bridge's allow-list: a target not on it is refused before any byte is relayed.
 */
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { createServer } from 'node:http';
import * as net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import type { KexMode } from '../lib/config/options.js';
import { listenWebSocket } from '../lib/transport/ws-server.js';
import { launchChromium, missingChromium, type Page } from './helpers/chromium.js';
import { freePort, jsonEvent, missingPrograms, PSK_HEX, PSK_IDENTITY, spawnPeer, spawnQkdTls, type Tap, testPeer, withTimeout } from './helpers/peers.js';
import { checkClientResult, echoServer, KEX_MODES, type NodeSide, opensslRevServer, PAYLOAD_BYTES, ROOT, type RuntimeResult, SUBTEST, WAIT } from './helpers/runtimes.js';

const esbuild = testPeer(t, 'esbuild');
const skip = esbuild.skip || missingChromium(t);
const skipOpenssl = skip || missingPrograms(t, 'openssl');
const runtime = /^chromium \(.*Chrome\/\d+/;

let page: Page;
let hasWebSocketStream = false;

t.before(async () => {
  if (skip) return;
  const dir = await mkdtemp(join(tmpdir(), 'qkd-tls-page-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const out = join(dir, 'page.js');
  const build = spawnPeer(t, esbuild.path!, [join(ROOT, 'test', 'fixtures', 'runtimes', 'browser.mjs'), '--bundle', '--format=iife', '--platform=browser', `--outfile=${out}`, '--log-level=warning']);
  const built = await build.waitExit(WAIT);
  if (built.code !== 0) throw new Error(`esbuild failed:\n${build.transcript()}`);
  const context = await launchChromium(t);
  page = await context.newPage();
  page.setDefaultTimeout(WAIT);
  page.on('pageerror', (e) => t.comment(`page error: ${e.message}`));
  // Served from http://127.0.0.1 (a secure context, as a deployed page over https would be), so that the page has
  // WebCrypto (crypto.subtle): the streams transport then uses WebCrypto key shares and the record offload.
  const http = createServer((_req, res) => {
    res.setHeader('content-type', 'text/html; charset=utf-8');
    res.end('<!doctype html><meta charset="utf-8"><title>qkd-tls runtime test</title>');
  });
  await new Promise<void>((resolve) => http.listen(0, '127.0.0.1', resolve));
  t.teardown(() => void http.close());
  await page.goto(`http://127.0.0.1:${(http.address() as net.AddressInfo).port}/`);
  t.equal(await page.evaluate(() => typeof globalThis.crypto?.subtle?.deriveBits, null), 'function', 'the page has WebCrypto');
  await page.addScriptTag({ content: await readFile(out, 'utf8') });
  hasWebSocketStream = await page.evaluate(() => (globalThis as { qkdTlsHasWebSocketStream?: boolean }).qkdTlsHasWebSocketStream === true, null);
  t.comment(`Chromium ${hasWebSocketStream ? 'has' : 'lacks'} WebSocketStream`);
});

type PageResult = RuntimeResult & { event: string; api: string; message?: string };

/** Runs the client in the page against `url`. */
async function runInPage(url: string, options: Record<string, unknown>): Promise<PageResult> {
  return withTimeout(
    page.evaluate(
      ([u, o]) => (globalThis as unknown as { qkdTlsRun(u: string, o: unknown): Promise<PageResult> }).qkdTlsRun(u, o),
      [url, { pskHex: PSK_HEX, identity: PSK_IDENTITY, ...options }] as const,
    ),
    WAIT,
    'the page to finish',
  );
}

/** qkd-tls accepting TLS over WebSocket in this process (the library's server), echoing. */
async function webSocketEchoServer(tt: Tap): Promise<{ url: string; connections: NodeSide[]; closed: Promise<void>[] }> {
  const connections: NodeSide[] = [];
  const closed: Promise<void>[] = [];
  const server = echoServer(connections);
  const ws = await listenWebSocket({ host: '127.0.0.1', port: 0 }, ({ stream }) => {
    closed.push(new Promise((r) => stream.once('close', () => r())));
    server.accept(stream);
  });
  tt.teardown(async () => {
    server.destroyAll();
    await ws.close();
  });
  return { url: `ws://127.0.0.1:${ws.address().port}/`, connections, closed };
}

/** `qkd-tls bridge` allowing only `port` on 127.0.0.1. */
async function bridgeTo(tt: Tap, port: number): Promise<string> {
  const bridge = spawnQkdTls(tt, ['bridge', '--listen', '127.0.0.1:0', '--allow', `127.0.0.1:${port}`, '--json']);
  const listening = jsonEvent(await bridge.waitFor(/"event":"listening"/, WAIT, 'stderr'), 'listening');
  return `ws://${String(listening?.address)}`;
}

const apis = (): ('WebSocket' | 'WebSocketStream')[] => (hasWebSocketStream ? ['WebSocket', 'WebSocketStream'] : ['WebSocket']);

for (const kex of KEX_MODES) {
  t.test(`page -> qkd-tls over WebSocket in Node, ${kex}: 1 MiB echo, close_notify both ways`, { ...SUBTEST, skip }, async (t) => {
    for (const api of apis()) {
      const { url, connections, closed } = await webSocketEchoServer(t);
      const r = await runInPage(url, { kexMode: kex, webSocketStream: api === 'WebSocketStream' });
      t.equal(r.event, 'result', `${api}: the page finished`, { r });
      t.equal(r.api, api, `${api}: carried by ${api}`);
      checkClientResult(t, r, kex as KexMode, runtime, JSON.stringify(r));
      await withTimeout(Promise.all(closed), WAIT, 'the WebSocket to close');
      t.match(connections[0], { handshake: { kex, identity: PSK_IDENTITY }, echoed: PAYLOAD_BYTES, closeNotifyReceived: true }, `${api}: the server echoed 1 MiB and saw the page's close_notify`);
      t.equal(connections[0]?.error, undefined, `${api}: the server reported no error`);
    }
  });

  t.test(`page -> qkd-tls bridge -> openssl s_server -psk -nocert, ${kex}: 1 MiB echo, close_notify both ways`, { ...SUBTEST, skip: skipOpenssl }, async (t) => {
    for (const api of apis()) {
      const { port, server } = await opensslRevServer(t, kex as KexMode);
      const url = await bridgeTo(t, port);
      const r = await runInPage(`${url}/127.0.0.1:${port}`, { kexMode: kex, reverse: true, webSocketStream: api === 'WebSocketStream' });
      t.equal(r.event, 'result', `${api}: the page finished`, { r, server: server.transcript() });
      checkClientResult(t, r, kex as KexMode, runtime, JSON.stringify(r));
      t.equal((await server.waitExit(WAIT)).code, 0, 's_server exits 0 after its one connection');
      t.match(server.output, 'Ciphersuite: TLS_AES_128_GCM_SHA256', 's_server negotiated the same suite');
      t.match(server.output, 'CONNECTION CLOSED', "s_server saw the page's close_notify");
    }
  });
}

t.test('page -> `qkd-tls server --websocket` (the command line): handshake reported, 1 MiB echo', { ...SUBTEST, skip }, async (t) => {
  const server = spawnQkdTls(t, ['server', '--websocket', '--listen', '127.0.0.1:0', '--psk', PSK_HEX, '--identity', PSK_IDENTITY, '--json']);
  const listening = jsonEvent(await server.waitFor(/"event":"listening"/, WAIT, 'stderr'), 'listening');
  t.equal(listening?.transport, 'websocket', 'it listens for WebSocket');
  const r = await runInPage(`ws://${String(listening?.address)}/`, { kexMode: 'psk_dhe_ke' });
  checkClientResult(t, r, 'psk_dhe_ke', runtime, JSON.stringify(r));
  const hs = jsonEvent(await server.waitFor(/"event":"handshake"/, WAIT, 'stderr'), 'handshake');
  t.match(hs, { suite: 'TLS_AES_128_GCM_SHA256', kex: 'psk_dhe_ke', identity: PSK_IDENTITY, peer: /^127\.0\.0\.1:\d+$/ }, 'the server reported the handshake and the page as peer');
});

t.test('page -> `qkd-tls proxy --role server --websocket` -> a TCP backend: 1 MiB echo, the proxy logs a clean close', { ...SUBTEST, skip }, async (t) => {
  const backend = net.createServer({ allowHalfOpen: true }, (s) => s.pipe(s));
  await new Promise<void>((r) => backend.listen(0, '127.0.0.1', r));
  t.teardown(() => backend.close());
  const backendPort = (backend.address() as net.AddressInfo).port;
  const proxy = spawnQkdTls(t, ['proxy', '--role', 'server', '--websocket', '--accept', '127.0.0.1:0', '--connect', `127.0.0.1:${backendPort}`, '--psk', PSK_HEX, '--identity', PSK_IDENTITY, '--json']);
  const listening = jsonEvent(await proxy.waitFor(/"event":"listening"/, WAIT, 'stderr'), 'listening');
  const r = await runInPage(`ws://${String(listening?.accept)}/`, { kexMode: 'psk_ke' });
  checkClientResult(t, r, 'psk_ke', runtime, JSON.stringify(r));
  const record = jsonEvent(await proxy.waitFor(/"event":"connection"/, WAIT, 'stderr'), 'connection');
  t.match(record, { role: 'server', end: 'closed', bytesUp: PAYLOAD_BYTES, bytesDown: PAYLOAD_BYTES, peer: /^127\.0\.0\.1:\d+$/ }, 'the proxy relayed 1 MiB each way and logged a clean close');
});

t.test('the bridge relays only to its allow-list: any other target is refused before a byte moves', { ...SUBTEST, skip }, async (t) => {
  const allowed = await freePort();
  const other = await freePort();
  const url = await bridgeTo(t, allowed);
  for (const path of [`/127.0.0.1:${other}`, '/localhost:22', `/127.0.0.1:${allowed}/x`]) {
    const r = await runInPage(`${url}${path}`, { kexMode: 'psk_dhe_ke' }).catch((e: Error) => ({ event: 'error', message: e.message }) as PageResult);
    t.equal(r.event, 'error', `${path}: the page cannot connect`);
    t.match(r.message, /WebSocket|closed|failed/, `${path}: the WebSocket failed to open`, { r });
  }
});
