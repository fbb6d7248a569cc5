/**
 * qkd-tls inside a Cloudflare Worker, run by workerd (from test/peers): the Worker
 * (test/fixtures/runtimes/worker.mjs, bundled here with esbuild) opens TCP with `connect()` from
 * `cloudflare:sockets` and runs the runtime-neutral client against qkd-tls in Node and against
 * `openssl s_server -psk -nocert -rev`: psk_ke and psk_dhe_ke, 1 MiB echoed and compared byte for byte,
 * close_notify seen both ways. A Worker cannot listen for TCP, so there is no server case.
 *
 * workerd's config (written here) lets the Worker reach loopback: its internet service allows "local".
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { freePort, missingPrograms, PSK_HEX, PSK_IDENTITY, spawnPeer, type Tap, testPeer, withTimeout, WRONG_PSK_HEX } from './helpers/peers.js';
import { checkClientResult, KEX_MODES, nodeEchoServer, opensslRevServer, PAYLOAD_BYTES, ROOT, type RuntimeResult, serveWorkerd, SUBTEST, WAIT } from './helpers/runtimes.js';

const workerd = testPeer(t, 'workerd');
const esbuild = testPeer(t, 'esbuild');
const skip = workerd.skip || esbuild.skip;
const skipOpenssl = skip || missingPrograms(t, 'openssl');

/** A compatibility date workerd 1.2026xxxx supports (any date up to its release works). */
const COMPATIBILITY_DATE = '2025-01-01';

let workerUrl = '';

t.before(async () => {
  if (skip) return;
  const dir = await mkdtemp(join(tmpdir(), 'qkd-tls-workerd-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const build = spawnPeer(t, esbuild.path!, [
    join(ROOT, 'test', 'fixtures', 'runtimes', 'worker.mjs'),
    '--bundle',
    '--format=esm',
    '--platform=browser',
    '--conditions=workerd,worker',
    '--external:cloudflare:sockets',
    `--outfile=${join(dir, 'worker.js')}`,
    '--log-level=warning',
  ]);
  const built = await build.waitExit(WAIT);
  if (built.code !== 0) throw new Error(`esbuild failed:\n${build.transcript()}`);
  await writeFile(
    join(dir, 'config.capnp'),
    `using Workerd = import "/workerd/workerd.capnp";
const config :Workerd.Config = (
  services = [
    (name = "main", worker = .worker),
    (name = "internet", network = (allow = ["public", "local"])),
  ],
  sockets = [ (name = "http", address = "127.0.0.1:0", http = (), service = "main") ], # serveWorkerd sets the port
);
const worker :Workerd.Worker = (
  modules = [ (name = "worker.js", esModule = embed "worker.js") ],
  compatibilityDate = "${COMPATIBILITY_DATE}",
);
`,
  );
  workerUrl = (await serveWorkerd(t, workerd.path!, join(dir, 'config.capnp'), dir)).url;
});

/** Asks the Worker to run the client; resolves with its JSON answer and HTTP status. */
async function runInWorker(options: Record<string, unknown>): Promise<{ status: number; body: RuntimeResult & { event: string; message?: string } }> {
  const res = await withTimeout(
    fetch(workerUrl, { method: 'POST', body: JSON.stringify({ pskHex: PSK_HEX, identity: PSK_IDENTITY, ...options }), signal: AbortSignal.timeout(WAIT) }),
    WAIT,
    'the Worker to answer',
  );
  return { status: res.status, body: (await res.json()) as RuntimeResult & { event: string; message?: string } };
}

const runtime = /^workerd \(Cloudflare-Workers\)/;

for (const kex of KEX_MODES) {
  t.test(`Worker (workerd) client -> qkd-tls server in Node, ${kex}: 1 MiB echo, close_notify both ways`, { ...SUBTEST, skip }, async (t: Tap) => {
    const { port, connections, closed } = await nodeEchoServer(t);
    const { status, body } = await runInWorker({ host: '127.0.0.1', port, kexMode: kex });
    t.equal(status, 200, 'the Worker answers 200', { body });
    checkClientResult(t, body, kex, runtime, JSON.stringify(body));
    await withTimeout(Promise.all(closed), WAIT, 'the connection to close');
    t.match(connections[0], { handshake: { kex, identity: PSK_IDENTITY }, echoed: PAYLOAD_BYTES, closeNotifyReceived: true }, "the server echoed 1 MiB and saw the Worker's close_notify");
    t.equal(connections[0]?.error, undefined, 'the server reported no error');
  });

  t.test(`Worker (workerd) client -> openssl s_server -psk -nocert, ${kex}: 1 MiB echo, close_notify both ways`, { ...SUBTEST, skip: skipOpenssl }, async (t: Tap) => {
    const { port, server } = await opensslRevServer(t, kex);
    const { status, body } = await runInWorker({ host: '127.0.0.1', port, kexMode: kex, reverse: true });
    t.equal(status, 200, 'the Worker answers 200', { body, server: server.transcript() });
    checkClientResult(t, body, kex, runtime, JSON.stringify(body));
    t.equal((await server.waitExit(WAIT)).code, 0, 's_server exits 0 after its one connection');
    t.match(server.output, 'Ciphersuite: TLS_AES_128_GCM_SHA256', 's_server negotiated the same suite');
    t.match(server.output, 'CONNECTION CLOSED', "s_server saw the Worker's close_notify");
  });
}

t.test('Worker (workerd) client with a wrong key: the binder fails, the alert is named', { ...SUBTEST, skip }, async (t: Tap) => {
  const { port, connections } = await nodeEchoServer(t);
  const { status, body } = await runInWorker({ host: '127.0.0.1', port, kexMode: 'psk_dhe_ke', pskHex: WRONG_PSK_HEX });
  t.equal(status, 500, 'the Worker answers 500');
  t.match(body.message, /decrypt_error \(51\) received/, 'with the alert it received');
  t.notOk(connections.some((c) => c.handshake), 'no connection reached the application');
});

t.test('Worker (workerd) client to a port where nothing listens: the handshake fails with the reason, not "Stream was cancelled."', { ...SUBTEST, skip }, async (t: Tap) => {
  // Without `await socket.opened` (the README's Worker): workerd rejects the write with why, then the read with
  // "Stream was cancelled.", which was what the handshake reported.
  const port = await freePort();
  const { status, body } = await runInWorker({ host: '127.0.0.1', port, kexMode: 'psk_dhe_ke', awaitOpened: false });
  t.equal(status, 500, 'the Worker answers 500');
  t.match(body.message, /cannot connect/, "with workerd's reason", { body });
  t.notMatch(body.message, /Stream was cancelled/, 'not the read that failed after it');
});
