/**
 * `qkd-tls server` stopped by SIGTERM or SIGINT with clients connected: each echoed connection is ended with
 * close_notify (RFC 8446 §6.1: each party sends close_notify before closing its write side), so that a client sees a
 * clean end rather than a truncation. Before, the connections were cut without close_notify: a connected
 * `qkd-tls client` reported "truncated" and exited 1. A client that does not answer is cut after a grace period,
 * and the server still exits.
 */
import { once } from 'node:events';
import t from 'tap';
import { nodeProvider } from '../lib/crypto/node.js';
import { connect, type QkdTlsSocket } from '../lib/transport/node.js';
import { makePsk } from './helpers/pair.js';
import { PSK_IDENTITY, spawnQkdTls, type Tap } from './helpers/peers.js';

const WAIT = 15_000;
const PSK_HEX = '7a6b5c4d3e2f10a9b8c7d6e5f4a3b2c1d0e9f8a7b6c5d4e3f2a1b0c9d8e7f6a5';

async function echoServer(tt: Tap, extra: string[] = []) {
  const server = spawnQkdTls(tt, ['server', '--listen', '127.0.0.1:0', '--psk', PSK_HEX, '--identity', PSK_IDENTITY, ...extra]);
  const line = await server.waitFor(/listening: address=\S+/, WAIT, 'stderr');
  return { server, port: Number(/listening: address=\S+:(\d+)/.exec(line)![1]) };
}

/** A library client, connected, with its side left open: it reads the server's close_notify and never sends its own. */
async function silentClient(tt: Tap, port: number): Promise<QkdTlsSocket> {
  const psk = { ...makePsk(PSK_IDENTITY), secret: Buffer.from(PSK_HEX, 'hex') };
  const c = connect({ port, crypto: nodeProvider, psks: [psk] });
  c.on('error', () => {});
  tt.teardown(() => void c.destroy());
  await once(c, 'secureConnect');
  return c;
}

for (const signal of ['SIGTERM', 'SIGINT'] as const) {
  t.test(`${signal}: a connected qkd-tls client gets close_notify, exits 0 without "truncated"; the server exits 0`, async (tt) => {
    const { server, port } = await echoServer(tt);
    const client = spawnQkdTls(tt, ['client', '--connect', `127.0.0.1:${port}`, '--psk', PSK_HEX, '--identity', PSK_IDENTITY]);
    client.write('before the stop\n');
    await client.waitFor('before the stop\n', WAIT, 'stdout'); // echoed: the connection is up; stdin stays open
    server.child.kill(signal);
    const clientExit = await client.waitExit(WAIT);
    tt.equal(clientExit.code, 0, `the client exits 0\n${client.transcript()}`);
    tt.notMatch(client.stderr, /truncated/, 'and does not report a truncation');
    const serverExit = await server.waitExit(WAIT);
    tt.equal(serverExit.code, 0, `the server exits 0\n${server.transcript()}`);
    tt.notMatch(server.stderr, /truncated|failed/, 'the server reports no failure either');
  });
}

t.test('a client that does not answer the close_notify is cut after the grace period, and the server exits', async (tt) => {
  const { server, port } = await echoServer(tt);
  const c = await silentClient(tt, port);
  c.write('hello');
  await once(c, 'data');
  const ended = once(c, 'end');
  server.child.kill('SIGTERM');
  await ended;
  tt.equal(c.connection?.peerClosed, true, "the server's close_notify arrived");
  const exit = await server.waitExit(WAIT);
  tt.equal(exit.code, 0, `the server exits 0 without the client's answer\n${server.transcript()}`);
});

t.test('a second signal cuts what is left: the server still exits 0 (it is not killed by the signal)', async (tt) => {
  const { server, port } = await echoServer(tt);
  const c = await silentClient(tt, port);
  server.child.kill('SIGTERM');
  await once(c, 'end');
  server.child.kill('SIGTERM');
  const exit = await server.waitExit(WAIT);
  tt.same(exit, { code: 0, signal: null }, `exit 0\n${server.transcript()}`);
});
