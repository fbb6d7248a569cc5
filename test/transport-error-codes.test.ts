/**
 * Failures that are not TLS's to name (the transport closed, the application cancelled, a key source failed) carry
 * a machine-readable `code` (TransportError, lib/errors.ts TRANSPORT_ERROR_CODES), as Node's own errors do, with
 * their messages unchanged. They were plain Errors that a user (and the tests) could only match by their text.
 */
import { once } from 'node:events';
import * as net from 'node:net';
import { PassThrough } from 'node:stream';
import t from 'tap';
import { connect, createServer, type QkdTlsSocket } from '../lib/transport/node.js';
import { tlsClientOverStreams, tlsServerOverStreams } from '../lib/transport/streams.js';
import { TRANSPORT_ERROR_CODES, TransportError, TlsError } from '../lib/errors.js';
import { nobleProvider } from '../lib/crypto/noble.js';
import { serverPskResolver, StaticKeySource, takePsks } from '../lib/psk/source.js';
import { fileKeySource } from '../lib/qkd/file-source.js';
import { parseKeyFile } from '../lib/psk/key-file.js';
import { Etsi014ClientSource } from '../lib/qkd/etsi014-source.js';
import { makePsk } from './helpers/pair.js';
import { startProxy } from '../lib/proxy/proxy.js';
import { serviceConfig } from './proxy-helpers.js';
import { memoryPipe } from './helpers/memory-streams.js';

const psk = makePsk('error-codes');

/** A loopback TCP server that runs `onSocket` for each accepted socket; resolves with it and its port. */
async function rawServer(onSocket: (s: net.Socket) => void): Promise<{ server: net.Server; port: number }> {
  const server = net.createServer({ allowHalfOpen: true }, onSocket).listen(0, '127.0.0.1');
  await once(server, 'listening');
  return { server, port: (server.address() as net.AddressInfo).port };
}

function firstError(socket: QkdTlsSocket): Promise<Error> {
  return once(socket, 'error').then(([e]) => e as Error);
}

t.test('every code has its line in the table, and the error keeps Node\'s shape (name Error, code, cause)', async (t) => {
  const cause = new Error('inner');
  const e = new TransportError('ERR_QKD_TLS_PSK_FETCH_FAILED', 'could not obtain PSKs: inner', { cause });
  t.equal(e.name, 'Error');
  t.equal(e.code, 'ERR_QKD_TLS_PSK_FETCH_FAILED');
  t.equal(e.cause, cause);
  t.ok(e instanceof Error && !(e instanceof TlsError));
  for (const [code, text] of Object.entries(TRANSPORT_ERROR_CODES)) t.ok(code.startsWith('ERR_') && text.length > 0, code);
});

t.test('node: a peer that ends the TCP connection before the handshake: ERR_QKD_TLS_CLOSED_BEFORE_HANDSHAKE on both sides', async (t) => {
  // Client side: a server that closes at once.
  const raw = await rawServer((s) => s.end());
  const client = connect({ port: raw.port, psks: [psk] });
  const ce = await firstError(client);
  t.equal((ce as TransportError).code, 'ERR_QKD_TLS_CLOSED_BEFORE_HANDSHAKE', ce.message);
  t.equal(ce.message, 'connection closed by the peer before the TLS handshake completed', 'the message is unchanged');
  raw.server.close();

  // Server side: a client that connects and ends without a byte.
  const server = createServer({ psks: [psk] }).listen(0, '127.0.0.1');
  await once(server, 'listening');
  const failed = once(server, 'tlsClientError');
  const tcp = net.connect(server.address().port, '127.0.0.1', () => tcp.end());
  const [se] = (await failed) as [TransportError];
  t.equal(se.code, 'ERR_QKD_TLS_CLOSED_BEFORE_HANDSHAKE', se.message);
  tcp.destroy();
  await new Promise((r) => server.close(() => r(undefined)));
});

t.test('node: a transport that closes without an error before the handshake: ERR_QKD_TLS_CLOSED_BEFORE_HANDSHAKE', async (t) => {
  const server = createServer({ psks: [psk] });
  const duplex = new PassThrough();
  const tls = server.accept(duplex);
  const failed = firstError(tls);
  duplex.destroy();
  const e = (await failed) as TransportError;
  t.equal(e.code, 'ERR_QKD_TLS_CLOSED_BEFORE_HANDSHAKE');
  t.equal(e.message, 'connection closed before the TLS handshake completed', 'the message is unchanged');
});

t.test('node: a client psks function that rejects: ERR_QKD_TLS_PSK_FETCH_FAILED, its error the cause', async (t) => {
  const raw = await rawServer(() => {});
  const cause = new Error('no key manager');
  const client = connect({ port: raw.port, psks: () => Promise.reject(cause) });
  const e = (await firstError(client)) as TransportError;
  t.equal(e.code, 'ERR_QKD_TLS_PSK_FETCH_FAILED');
  t.equal(e.message, 'could not obtain PSKs: no key manager');
  t.equal(e.cause, cause);
  raw.server.close();
});

t.test('node: exporter and KeyUpdate before the connection started: ERR_TLS_INVALID_STATE; a write left pending by destroy(): ERR_STREAM_DESTROYED', async (t) => {
  const raw = await rawServer(() => {});
  let fetched!: () => void;
  const client = connect({ port: raw.port, psks: () => new Promise((r) => (fetched = () => r([psk]))) });
  t.throws(() => client.exportKeyingMaterial(32, 'EXPORTER-test'), { code: 'ERR_TLS_INVALID_STATE', message: 'exportKeyingMaterial: not connected' });
  t.throws(() => client.keyUpdate(), { code: 'ERR_TLS_INVALID_STATE', message: 'keyUpdate: not connected' });
  // The write waits for the handshake (the keys are still being fetched); destroy() fails it.
  const written = new Promise<Error | null | undefined>((r) => client.write('early', (e) => r(e)));
  client.destroy();
  const e = (await written) as TransportError;
  t.equal(e?.code, 'ERR_STREAM_DESTROYED', String(e?.message));
  fetched();
  raw.server.close();
});

t.test('exporter and KeyUpdate while handshaking and once the connection is over: ERR_TLS_INVALID_STATE (the connection\'s own refusal)', async (t) => {
  const raw = await rawServer(() => {}); // never answers: the client stays in its handshake
  const client = connect({ port: raw.port, psks: [psk] });
  await once(client.socket, 'connect');
  t.throws(() => client.exportKeyingMaterial(32, 'EXPORTER-test'), { code: 'ERR_TLS_INVALID_STATE', message: 'exportKeyingMaterial: the handshake is not complete' });
  t.throws(() => client.keyUpdate(), { code: 'ERR_TLS_INVALID_STATE', message: 'keyUpdate: the connection is not open' });
  client.destroy();
  raw.server.close();
  // A sans-IO connection that completed its handshake, then was destroyed (its secrets wiped).
  const [c, s] = memoryPipe();
  const server = tlsServerOverStreams(s, { crypto: nobleProvider, psks: [psk] });
  const tls = tlsClientOverStreams(c, { crypto: nobleProvider, psks: [psk] });
  await Promise.all([tls.handshake, server.handshake]);
  t.equal(tls.connection.exportKeyingMaterial('EXPORTER-test', new Uint8Array(0), 16).length, 16, 'connected: the exporter answers');
  tls.connection.destroy();
  t.throws(() => tls.connection.exportKeyingMaterial('EXPORTER-test', new Uint8Array(0), 16), { code: 'ERR_TLS_INVALID_STATE', message: 'exportKeyingMaterial: the connection is over and its secrets are wiped' });
  t.throws(() => tls.connection.keyUpdate(), { code: 'ERR_TLS_INVALID_STATE' });
  await server.writable.abort();
});

t.test('streams: transport closed, readable cancelled, writable aborted, read rejected with nothing: each with its code', async (t) => {
  // The transport ends before the handshake.
  {
    const [c, s] = memoryPipe();
    const client = tlsClientOverStreams(c, { crypto: nobleProvider, psks: [psk] });
    void s.readable.cancel();
    await s.writable.close();
    await t.rejects(client.handshake, { code: 'ERR_QKD_TLS_CLOSED_BEFORE_HANDSHAKE', message: 'the transport closed before the TLS handshake completed' });
  }
  // The application cancels its plaintext readable during the handshake.
  {
    const [, s] = memoryPipe();
    const server = tlsServerOverStreams(s, { crypto: nobleProvider, psks: [psk] });
    await server.readable.cancel();
    await t.rejects(server.handshake, { code: 'ERR_QKD_TLS_CANCELLED', message: 'the plaintext readable was cancelled before the TLS handshake completed' });
  }
  // The application aborts its plaintext writable without a reason.
  {
    const [, s] = memoryPipe();
    const server = tlsServerOverStreams(s, { crypto: nobleProvider, psks: [psk] });
    await server.writable.abort();
    await t.rejects(server.handshake, { code: 'ERR_QKD_TLS_CANCELLED', message: 'aborted' });
  }
  // A read that rejects with undefined.
  {
    let failRead!: () => void;
    const readable = new ReadableStream<Uint8Array>({ start: (c) => void (failRead = () => c.error(undefined)) });
    const writable = new WritableStream<Uint8Array>({ write: () => void setTimeout(() => failRead(), 0) });
    const tls = tlsClientOverStreams({ readable, writable }, { crypto: nobleProvider, psks: [psk] });
    await t.rejects(tls.handshake, { code: 'ERR_QKD_TLS_TRANSPORT_FAILED', message: 'the transport failed: reading it rejected with undefined' });
  }
});

t.test('key sources: a closed ETSI 014 pool, a static source with no key left, an unreadable key file: each with its code', async (t) => {
  const client = { encKeys: () => new Promise<never>(() => {}), close: () => {} } as unknown as ConstructorParameters<typeof Etsi014ClientSource>[0]['client'];
  const pool = new Etsi014ClientSource({ client, peerSaeId: 'server-sae', poolSize: 1 });
  const waiting = pool.take();
  pool.close();
  await t.rejects(waiting, { code: 'ERR_QKD_KEY_SOURCE_CLOSED' }, 'a take waiting when the pool closed');
  await t.rejects(pool.take(), { code: 'ERR_QKD_KEY_SOURCE_CLOSED' }, 'a take after close');
  await t.rejects(pool.prefetch(), { code: 'ERR_QKD_KEY_SOURCE_CLOSED' }, 'a prefetch after close');

  const once1 = new StaticKeySource([{ identity: psk.identity, secret: psk.secret }], { oneTime: true });
  await takePsks(nobleProvider, once1);
  await t.rejects(takePsks(nobleProvider, once1), { code: 'ERR_QKD_KEY_UNAVAILABLE', message: /no usable key left/ });

  let thrown: unknown;
  try {
    fileKeySource('/nonexistent/qkd-tls-keys.txt');
  } catch (e) {
    thrown = e;
  }
  t.match(thrown, { code: 'ERR_QKD_KEY_UNAVAILABLE', message: /cannot read the key file/, cause: { code: 'ENOENT' } });
});

t.test('proxy: a service that cannot listen: ERR_QKD_PROXY_LISTEN_FAILED, Node\'s error (EADDRINUSE) its cause; websocket on a client: a TypeError', async (t) => {
  const blocker = net.createServer().listen(0, '127.0.0.1');
  await once(blocker, 'listening');
  t.teardown(() => void blocker.close());
  const port = (blocker.address() as net.AddressInfo).port;
  await t.rejects(startProxy({ services: [serviceConfig({ accept: { host: '127.0.0.1', port } })] }), {
    code: 'ERR_QKD_PROXY_LISTEN_FAILED',
    message: `service "svc": cannot listen on 127.0.0.1:${port}: listen EADDRINUSE: address already in use 127.0.0.1:${port}`,
    cause: { code: 'EADDRINUSE' },
  });
  await t.rejects(startProxy({ services: [serviceConfig({ websocket: {} })] }), { name: 'TypeError', message: 'service "svc": websocket is for the server role only' });
});

t.test('key files and static keys: a malformed key file is ERR_QKD_KEY_FILE_INVALID; a clock that throws, ERR_QKD_KEY_UNAVAILABLE', async (t) => {
  for (const [text, message] of [
    ['a 00\nb zz\n', 'k.txt, line 2: the key is not hex'],
    ['a 00\na 01\n', "k.txt, line 2: identity 'a' appears twice"],
    ['lonely\n', 'k.txt, line 1: expected "IDENTITY HEXKEY [SHA-256|SHA-384] [PRIORITY]"'],
    ['# nothing\n', 'k.txt: no key in it'],
  ] as const) {
    t.throws(() => parseKeyFile(text, 'k.txt'), { code: 'ERR_QKD_KEY_FILE_INVALID', message }, message);
  }
  const clockless = new StaticKeySource([{ identity: psk.identity, secret: psk.secret, expiresAt: 1 }], {
    now: () => {
      throw new Error('no clock');
    },
  });
  await t.rejects(clockless.take(), { code: 'ERR_QKD_KEY_UNAVAILABLE', message: /the now clock threw: no clock/ });
  const resolver = serverPskResolver(nobleProvider, new StaticKeySource([{ identity: psk.identity, secret: psk.secret }]), {
    onLease: () => {
      throw new Error('lease table full');
    },
  });
  await t.rejects(resolver({ identities: [psk.identity] }), { code: 'ERR_QKD_KEY_UNAVAILABLE', message: /the onLease callback threw: lease table full/ });
});
