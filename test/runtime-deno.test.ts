/**
 * qkd-tls outside Node: a TLS 1.3 PSK client running in Deno (test/fixtures/deno-client.mjs), built only from
 * the runtime-neutral entry points (dist/lib/index.js and dist/lib/transport/streams.js) over `Deno.connect`,
 * completes a handshake with a qkd-tls server running in Node and with `openssl s_server -psk ... -nocert`,
 * and gets its bytes echoed back.
 *
 * Deno comes from the test-only peer package (test/peers/node_modules/.bin/deno; `.ci/run` installs it with
 * `npm ci --prefix test/peers`). Without it the test fails under CI and is skipped locally.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { fromHex, utf8 } from '../lib/codec/bytes.js';
import type { HandshakeInfo } from '../lib/config/events.js';
import type { Psk } from '../lib/psk/types.js';
import { createServer, type QkdTlsSocket } from '../lib/transport/node.js';
import {
  freePort,
  jsonEvent,
  missingPrograms,
  PSK_HEX,
  PSK_IDENTITY,
  reversedLine,
  spawnPeer,
  type Tap,
  WRONG_PSK_HEX,
  testPeer,
  withTimeout,
} from './helpers/peers.js';

/** The project root (this file runs as dist/test/runtime-deno.test.js). */
const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const CLIENT = join(ROOT, 'test', 'fixtures', 'deno-client.mjs');
const WAIT = 20_000;
const SUBTEST = { timeout: 60_000 };

const psk: Psk = { identity: utf8(PSK_IDENTITY), secret: fromHex(PSK_HEX), hash: 'SHA-256' };

const denoPeer = testPeer(t, 'deno');
const deno = denoPeer.path;
const skipDeno: string | false = denoPeer.skip;

interface DenoRun {
  readonly code: number | null;
  readonly handshake: Record<string, unknown> | undefined;
  readonly echo: string | undefined;
  readonly output: string;
}

/**
 * Runs the Deno client against 127.0.0.1:port with the given key, sends `message`, waits for `expected` bytes
 * back. The child is killed in teardown if it is still running; its own deadline is shorter than ours.
 */
async function runDenoClient(tt: Tap, port: number, keyHex: string, message: string, expected: number): Promise<DenoRun> {
  // A private module cache: nothing from another run (or another Deno) is reused, nothing is left behind.
  const denoDir = await mkdtemp(join(tmpdir(), 'qkd-tls-deno-'));
  tt.teardown(() => rm(denoDir, { recursive: true, force: true }));
  const args = [
    'run',
    '--no-config', // no deno.json: the project's package.json and node_modules resolve @noble/*
    '--no-lock',
    '--node-modules-dir=manual', // use node_modules as npm laid it out; never install
    '--no-prompt',
    '--allow-net=127.0.0.1', // the only permission: static local imports need no --allow-read
    CLIENT,
    '127.0.0.1',
    String(port),
    keyHex,
    PSK_IDENTITY,
    message,
    String(expected),
  ];
  const peer = spawnPeer(tt, deno!, args, { cwd: ROOT, env: { DENO_DIR: denoDir, DENO_NO_UPDATE_CHECK: '1', NO_COLOR: '1' } });
  const exit = await peer.waitExit(WAIT);
  const out = peer.stdout;
  const echo = jsonEvent(out, 'echo');
  return { code: exit.code, handshake: jsonEvent(out, 'handshake'), echo: echo ? String(echo.text) : undefined, output: peer.transcript() };
}

/** What every successful handshake must report. */
function checkHandshake(tt: Tap, hs: Record<string, unknown> | undefined, output: string): void {
  tt.ok(hs, 'the Deno client printed its handshake', { output });
  tt.match(hs?.runtime, /^deno \d+\.\d+\.\d+/, 'it ran in Deno');
  tt.equal(hs?.version, 'TLSv1.3', 'version TLSv1.3');
  tt.equal(hs?.suite, 'TLS_AES_128_GCM_SHA256', 'suite TLS_AES_128_GCM_SHA256');
  tt.equal(hs?.kex, 'psk_dhe_ke', 'key exchange psk_dhe_ke');
  tt.equal(hs?.group, 'x25519', 'group x25519');
  tt.equal(hs?.identity, PSK_IDENTITY, `identity ${PSK_IDENTITY}`);
}

/** A qkd-tls echo server in Node on 127.0.0.1:0; its connections and the server are closed in teardown. */
async function nodeEchoServer(tt: Tap): Promise<{ port: number; sockets: QkdTlsSocket[]; errors: Error[] }> {
  const sockets: QkdTlsSocket[] = [];
  const errors: Error[] = [];
  const server = createServer({ psks: [psk] }, (socket) => {
    sockets.push(socket);
    socket.on('error', (e: Error) => errors.push(e));
    socket.pipe(socket);
  });
  server.on('tlsClientError', (e: Error) => errors.push(e));
  tt.teardown(() => {
    server.destroyAll();
    server.close();
  });
  await withTimeout(new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve)), WAIT, 'the server to listen');
  return { port: server.address().port, sockets, errors };
}

t.test('Deno client -> qkd-tls server in Node: handshake and echo', { ...SUBTEST, skip: skipDeno }, async (t) => {
  const { port, sockets, errors } = await nodeEchoServer(t);
  const message = 'hello from Deno, over WHATWG streams';
  const run = await runDenoClient(t, port, PSK_HEX, message, utf8(message).length);
  t.equal(run.code, 0, 'the Deno client exits 0', { output: run.output });
  checkHandshake(t, run.handshake, run.output);
  t.equal(run.echo, message, 'the Node server echoed the bytes back to Deno');
  const serverInfo: HandshakeInfo | undefined = sockets[0]?.handshake ?? undefined;
  t.match(serverInfo, { suite: 'TLS_AES_128_GCM_SHA256', kex: 'psk_dhe_ke', group: 'x25519', identity: PSK_IDENTITY }, 'the server saw the same handshake');
  t.same(errors, [], 'the server reported no error');
});

t.test('Deno client with a wrong key -> qkd-tls server: the binder fails, the client exits non-zero', { ...SUBTEST, skip: skipDeno }, async (t) => {
  const { port, sockets } = await nodeEchoServer(t);
  const run = await runDenoClient(t, port, WRONG_PSK_HEX, 'never sent', 10);
  t.not(run.code, 0, 'the Deno client fails');
  t.equal(run.handshake, undefined, 'no handshake was reported');
  t.match(run.output, /decrypt_error \(51\) received/, 'the client names the alert it received');
  t.equal(sockets.length, 0, 'no connection reached the application');
});

const skipOpenssl = skipDeno || missingPrograms(t, 'openssl');

t.test('Deno client -> openssl s_server -psk -nocert -tls1_3: handshake and echo', { ...SUBTEST, skip: skipOpenssl }, async (t) => {
  const port = await freePort();
  const server = spawnPeer(t, 'openssl', [
    's_server',
    '-accept',
    `127.0.0.1:${port}`,
    '-psk',
    PSK_HEX,
    '-psk_identity',
    PSK_IDENTITY,
    '-nocert',
    '-tls1_3',
    '-naccept',
    '1',
    '-rev',
  ]);
  await server.waitFor('ACCEPT', WAIT, 'stdout');
  const line = 'hello from Deno to OpenSSL';
  const message = line + '\n';
  const run = await runDenoClient(t, port, PSK_HEX, message, utf8(message).length);
  t.equal(run.code, 0, 'the Deno client exits 0', { output: run.output + '\n' + server.transcript() });
  checkHandshake(t, run.handshake, run.output);
  t.equal(run.echo, reversedLine(line) + '\n', 's_server -rev answered the line reversed');
  t.match(server.output, 'Ciphersuite: TLS_AES_128_GCM_SHA256', 's_server reports the same suite');
  const exit = await server.waitExit(WAIT);
  t.equal(exit.code, 0, 's_server exits 0 after the one connection');
});
