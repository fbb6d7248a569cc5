/**
 * Handshake timeouts. The sans-IO connection has no clock: a transport that keeps a deadline calls
 * `handshakeTimedOut()`, which fails the handshake with the named reason HandshakeTimeout and queues its alert.
 * The Node and streams transports keep one (30 s by default, `handshakeTimeout` in ms), and the command line
 * takes `--handshake-timeout SECONDS` on client, server and proxy.
 *
 * The peers here accept the TCP connection and never answer (or connect and never speak). The waits are
 * bounded guards, never timed assertions.
 */
import * as net from 'node:net';
import t from 'tap';
import { ContentType } from '../lib/codec/enums.js';
import { Connection } from '../lib/connection/connection.js';
import { nodeProvider } from '../lib/crypto/node.js';
import { TlsError } from '../lib/errors.js';
import { connect, createServer } from '../lib/transport/node.js';
import { tlsClientOverStreams } from '../lib/transport/streams.js';
import { handshake, makePsk, splitRecords } from './helpers/pair.js';
import { jsonEvent, PSK_HEX, PSK_IDENTITY, spawnQkdTls, type TestLike, withTimeout } from './helpers/peers.js';
import { timersArmedBy } from './helpers/timers.js';
import { handshakeTimeoutMs } from '../bin/cli/tls-options.js';

const crypto = nodeProvider;
const psk = makePsk('client1');
const GUARD = 15_000;
/** The internal_error alert a timed-out handshake sends before anything is protected. */
const PLAIN_ALERT = [ContentType.alert, 0x03, 0x03, 0x00, 0x02, 0x02, 80];

/** A TCP server that accepts and never answers; it records what each connection sent. */
async function silentServer(tt: TestLike): Promise<{ port: number; received: Promise<Buffer> }> {
  let gotAll!: (b: Buffer) => void;
  const received = new Promise<Buffer>((r) => (gotAll = r));
  const sockets = new Set<net.Socket>();
  const server = net.createServer({ allowHalfOpen: true }, (s) => {
    sockets.add(s);
    const chunks: Buffer[] = [];
    s.on('data', (b) => chunks.push(b));
    s.on('error', () => {});
    s.on('close', () => gotAll(Buffer.concat(chunks)));
    s.on('end', () => gotAll(Buffer.concat(chunks)));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  tt.teardown(() => {
    for (const s of sockets) s.destroy();
    server.close();
  });
  return { port: (server.address() as net.AddressInfo).port, received };
}

/** A TCP client that connects and never speaks; resolves with what it received until the server closed. */
function silentClient(port: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    const s = net.connect({ port, host: '127.0.0.1' });
    s.on('data', (b) => chunks.push(b));
    s.on('error', reject);
    s.on('close', () => resolve(Buffer.concat(chunks)));
  });
}

t.test('the sans-IO core: handshakeTimedOut() fails with HandshakeTimeout and queues the alert', async (tt) => {
  const client = Connection.client({ crypto, psks: [psk] });
  client.takeOutput(); // the ClientHello
  client.handshakeTimedOut();
  const errors = client.takeEvents().flatMap((e) => (e.type === 'error' ? [e.error] : []));
  tt.equal(errors.length, 1);
  tt.equal(errors[0].reason, 'HandshakeTimeout');
  tt.equal(client.phase, 'failed');
  tt.same([...(client.takeOutput() ?? [])], PLAIN_ALERT, 'one plaintext internal_error alert');

  const server = Connection.server({ crypto, psks: [psk] });
  server.handshakeTimedOut('deadline');
  tt.equal(server.error?.reason, 'HandshakeTimeout', 'the server side too');
  tt.match(server.error?.message, /deadline/);

  const p = handshake({ crypto, psks: [psk] }, { crypto, psks: [psk] });
  p.client.handshakeTimedOut();
  p.server.handshakeTimedOut();
  tt.equal(p.client.phase, 'connected', 'after the handshake it does nothing (client)');
  tt.equal(p.server.phase, 'connected', 'after the handshake it does nothing (server)');
  tt.equal(p.client.takeOutput(), null, 'and sends nothing');
});

t.test('Node transport: a client facing a server that never answers fails with HandshakeTimeout', async (tt) => {
  const silent = await silentServer(tt);
  const socket = connect({ host: '127.0.0.1', port: silent.port, psks: [psk], crypto, handshakeTimeout: 300 });
  const err = await withTimeout(new Promise<Error>((r) => socket.once('error', r)), GUARD, 'the client error');
  tt.ok(err instanceof TlsError, 'a TlsError');
  tt.equal((err as TlsError).reason, 'HandshakeTimeout');
  tt.match(err.message, /timed out after 300 ms/);
  const sent = splitRecords(await withTimeout(silent.received, GUARD, 'the client to close'));
  tt.same(
    sent.map((r) => r.type),
    [ContentType.handshake, ContentType.alert],
    'the server saw the ClientHello, then the alert',
  );
  tt.same([...sent[1].bytes], PLAIN_ALERT, 'internal_error');
});

t.test('Node transport: a server facing a client that never speaks fails with HandshakeTimeout', async (tt) => {
  const server = createServer({ psks: [psk], crypto, handshakeTimeout: 300 });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  tt.teardown(() => {
    server.destroyAll();
    server.close();
  });
  const failed = new Promise<Error>((r) => server.once('tlsClientError', r));
  const got = await withTimeout(silentClient(server.address().port), GUARD, 'the server to close');
  const err = await withTimeout(failed, GUARD, 'tlsClientError');
  tt.equal((err as TlsError).reason, 'HandshakeTimeout');
  tt.same([...got], PLAIN_ALERT, 'the client got the internal_error alert');
});

t.test('Node transport: handshakeTimeout 0 sets no limit', async (tt) => {
  // No deadline at all, not the default one (30 s, which a test waiting a little would never see fire).
  const silent = await silentServer(tt);
  const open = (handshakeTimeout?: number) => {
    let socket!: ReturnType<typeof connect>;
    const armed = timersArmedBy(() => (socket = connect({ host: '127.0.0.1', port: silent.port, psks: [psk], crypto, handshakeTimeout })));
    tt.teardown(() => socket.destroy());
    return { socket, armed };
  };
  tt.same(open().armed, [30_000], 'by default, a 30 s deadline is armed (what this test watches for)');
  const { socket, armed } = open(0);
  tt.same(armed, [], 'with 0, no deadline is armed');
  tt.notOk(socket.destroyed, 'still waiting');
  tt.equal(socket.connection?.phase, 'handshaking');
});

t.test('streams transport: handshakeTimeout 0 sets no limit', async (tt) => {
  const transport = () => ({ readable: new ReadableStream<Uint8Array>({}), writable: new WritableStream<Uint8Array>({}) });
  const open = (handshakeTimeout?: number) => {
    let tls!: ReturnType<typeof tlsClientOverStreams>;
    const armed = timersArmedBy(() => (tls = tlsClientOverStreams(transport(), { crypto, psks: [psk], handshakeTimeout })));
    tt.teardown(() => tls.readable.cancel()); // gives the transport up (and clears a deadline)
    return { tls, armed };
  };
  tt.same(open().armed, [30_000], 'by default, a 30 s deadline is armed (what this test watches for)');
  const { tls, armed } = open(0);
  tt.same(armed, [], 'with 0, no deadline is armed');
  tt.equal(tls.connection.phase, 'handshaking');
});

t.test('streams transport: a client facing a peer that never answers fails with HandshakeTimeout', async (tt) => {
  const written: Uint8Array[] = [];
  const transport = {
    readable: new ReadableStream<Uint8Array>({}),
    writable: new WritableStream<Uint8Array>({ write: (c) => void written.push(c) }),
  };
  const tls = tlsClientOverStreams(transport, { crypto, psks: [psk], handshakeTimeout: 300 });
  const err = await withTimeout(
    tls.handshake.then(
      () => null,
      (e: unknown) => e,
    ),
    GUARD,
    'the handshake to fail',
  );
  tt.ok(err instanceof TlsError);
  tt.equal((err as TlsError).reason, 'HandshakeTimeout');
  const records = splitRecords(Buffer.concat(written));
  tt.same(
    records.map((r) => r.type),
    [ContentType.handshake, ContentType.alert],
    'ClientHello, then the alert',
  );
});

t.test('CLI: --handshake-timeout SECONDS on the client', async (tt) => {
  const silent = await silentServer(tt);
  const client = spawnQkdTls(tt, [
    'client',
    '--connect',
    `127.0.0.1:${silent.port}`,
    '--psk',
    PSK_HEX,
    '--identity',
    PSK_IDENTITY,
    '--handshake-timeout',
    '0.3',
    '--json',
  ]);
  const exit = await client.waitExit(GUARD);
  tt.equal(exit.code, 1, 'exits 1');
  const e = jsonEvent(client.stderr, 'error');
  tt.equal(e?.reason, 'HandshakeTimeout', client.transcript());
  tt.equal(e?.alert, 'internal_error');
  tt.match(String(e?.message), /timed out after 300 ms/);
});

t.test('CLI: --handshake-timeout SECONDS on the server', async (tt) => {
  const server = spawnQkdTls(tt, [
    'server',
    '--listen',
    '127.0.0.1:0',
    '--psk',
    PSK_HEX,
    '--identity',
    PSK_IDENTITY,
    '--handshake-timeout',
    '0.3',
    '--json',
  ]);
  const text = await server.waitFor(/"event":"listening".*\n/, GUARD, 'stderr');
  const port = Number(/127\.0\.0\.1:(\d+)/.exec(text)![1]);
  const got = await withTimeout(silentClient(port), GUARD, 'the server to close');
  tt.same([...got], PLAIN_ALERT, 'the silent client got the internal_error alert');
  await server.waitFor(/"reason":"HandshakeTimeout"/, GUARD, 'stderr');
  tt.pass('the server reports HandshakeTimeout');
});

t.test('CLI: --handshake-timeout SECONDS on the proxy', async (tt) => {
  const silent = await silentServer(tt);
  const proxy = spawnQkdTls(tt, [
    'proxy',
    '--role',
    'client',
    '--accept',
    '127.0.0.1:0',
    '--connect',
    `127.0.0.1:${silent.port}`,
    '--psk',
    PSK_HEX,
    '--identity',
    PSK_IDENTITY,
    '--handshake-timeout',
    '0.3',
    '--json',
  ]);
  const text = await proxy.waitFor(/"event":"listening".*\n/, GUARD, 'stderr');
  const port = Number(/127\.0\.0\.1:(\d+)/.exec(text)![1]);
  const app = net.connect({ port, host: '127.0.0.1' });
  app.on('error', () => {});
  tt.teardown(() => app.destroy());
  const line = await proxy.waitFor(/handshake-failed.*\n/, GUARD, 'stderr');
  tt.match(line, /timed out after 300 ms/, 'the proxy names the timeout');
  const sent = splitRecords(await withTimeout(silent.received, GUARD, 'the proxy to close'));
  tt.equal(sent.at(-1)?.type, ContentType.alert, 'and sent the alert');
});

t.test('CLI: --handshake-timeout: a bare number is seconds, as it always was; 500ms, 30s, 5m and 1h are taken too', async (tt) => {
  // Every other time option took a unit or milliseconds, this one seconds only ("10s" was refused): it takes the
  // units of every time option now (bin/cli/duration.ts), and a bare number keeps its meaning.
  for (const [v, ms] of [['30', 30_000], ['0.5', 500], ['.5', 500], ['5.', 5000], ['0', 0], ['500ms', 500], ['10s', 10_000], ['2m', 120_000], ['1h', 3_600_000]] as const) {
    tt.equal(handshakeTimeoutMs({ 'handshake-timeout': v }), ms, `"${v}" is ${ms} ms`);
  }
  // (".5" and "5." were taken before, as Number() reads them: they still are. "." alone is no number.)
  for (const v of ['10x', '2h', '3601', '0.0001', '-1', '', '.', '.s']) {
    tt.throws(() => handshakeTimeoutMs({ 'handshake-timeout': v }), { message: `--handshake-timeout: expected a number of seconds, or a number with a unit (500ms, 30s, 5m, 1h), from 0 (no limit) to 1h; got "${v}"` }, `"${v}"`);
  }
  const bad = spawnQkdTls(tt, ['client', '--connect', '127.0.0.1:1', '--psk', PSK_HEX, '--identity', 'x', '--handshake-timeout', '10x']);
  tt.equal((await bad.waitExit(GUARD)).code, 2);
  tt.equal(bad.stderr, 'qkd-tls client: --handshake-timeout: expected a number of seconds, or a number with a unit (500ms, 30s, 5m, 1h), from 0 (no limit) to 1h; got "10x"\n');
});
