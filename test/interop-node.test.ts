/**
 * Interoperability with Node's own TLS (OpenSSL inside node:tls) over 127.0.0.1, both directions: the
 * qkd-tls client against `tls.createServer({ pskCallback })` and `tls.connect({ pskCallback })` against the
 * qkd-tls server. Beyond the echoed bytes, the two stacks must agree on every secret: Node's `keylog` lines
 * equal ours, and RFC 8446 §7.5 exported keying material is identical on both ends.
 *
 * A wrong key and an unknown identity, both ways: OpenSSL 3.0 (Node 20) answers a binder it cannot verify with
 * illegal_parameter (3.4 and later with decrypt_error: interop-node24-psk-alerts), and an identity it has no key for
 * with missing_extension (it wants a certificate handshake then, RFC 8446 §4.2.3).
 *
 * Node's TLS 1.3 external PSK goes through OpenSSL's TLS 1.2-style PSK callbacks, which bind the key to
 * SHA-256; the Node client needs `checkServerIdentity` to return undefined because there is no certificate.
 */
import * as tls from 'node:tls';
import t from 'tap';
import { fromHex, utf8 } from '../lib/codec/bytes.js';
import { TlsError } from '../lib/errors.js';
import type { SupportedSuiteName } from '../lib/suites.js';
import { connect, type ConnectOptions, type QkdTlsSocket, type ServerTransportOptions } from '../lib/transport/node.js';
import { jsonEvent, once, opensslBinderAlert, PSK_HEX, PSK_IDENTITY, readBytes, spawnQkdTls, type Tap, type TestLike, WRONG_PSK_HEX, withTimeout } from './helpers/peers.js';
import { libraryClient, libraryEchoServer, PEER_PSK } from './helpers/library.js';

const SUBTEST = { timeout: 30_000 };
const WAIT = 10_000;

const psk = PEER_PSK;
const pskBuffer = Buffer.from(PSK_HEX, 'hex');
const EXPORT_LABEL = 'EXPERIMENTAL qkd-tls interop';
const EXPORT_CONTEXT = Buffer.from('context');

t.comment(`node ${process.version}, OpenSSL ${process.versions.openssl}`);

// --- helpers ------------------------------------------------------------------------------------------------

/** A Node TLS 1.3 echo server that accepts `PSK_IDENTITY` with the given key; records identities and key-log lines. */
async function nodeServer(
  tt: TestLike,
  options: tls.TlsOptions = {},
  key: Buffer = pskBuffer,
): Promise<{ server: tls.Server; port: number; identities: string[]; keylog: string[]; sockets: tls.TLSSocket[] }> {
  const identities: string[] = [];
  const keylog: string[] = [];
  const sockets: tls.TLSSocket[] = [];
  const server = tls.createServer(
    {
      minVersion: 'TLSv1.3',
      pskCallback: (_socket, identity) => {
        identities.push(identity);
        return identity === PSK_IDENTITY ? key : null;
      },
      ...options,
    },
    (socket) => {
      sockets.push(socket);
      socket.pipe(socket);
    },
  );
  server.on('keylog', (line: Buffer) => keylog.push(line.toString('latin1').trim()));
  tt.teardown(() => {
    for (const s of sockets) s.destroy();
    server.close();
  });
  await withTimeout(new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve)), WAIT, 'node:tls to listen');
  return { server, port: (server.address() as { port: number }).port, identities, keylog, sockets };
}

/** A Node TLS 1.3 PSK client. */
function nodeClient(tt: TestLike, port: number, options: tls.ConnectionOptions = {}, key: Buffer = pskBuffer): tls.TLSSocket {
  const socket = tls.connect({
    host: '127.0.0.1',
    port,
    minVersion: 'TLSv1.3',
    pskCallback: () => ({ psk: key, identity: PSK_IDENTITY }),
    checkServerIdentity: () => undefined,
    ...options,
  });
  tt.teardown(() => socket.destroy());
  return socket;
}

/** The library's echo server, with its key log collected. */
async function keyLoggedServer(tt: TestLike, options: Partial<ServerTransportOptions> = {}) {
  const keylog: string[] = [];
  const server = await libraryEchoServer(tt, { keyLog: (line) => keylog.push(line), ...options });
  return { ...server, keylog };
}

/** A library client past its handshake, with its key log collected. */
async function keyLoggedClient(tt: TestLike, port: number, options: Partial<ConnectOptions> = {}) {
  const keylog: string[] = [];
  const socket = await libraryClient(tt, port, { keyLog: (line) => keylog.push(line), ...options });
  return { socket, keylog };
}

async function checkEcho(tt: Tap, socket: QkdTlsSocket | tls.TLSSocket, line: string): Promise<void> {
  socket.write(line + '\n');
  const back = await readBytes(socket, line.length + 1, WAIT);
  tt.equal(back.toString('latin1'), line + '\n', `"${line}" came back`);
}

async function closeSocket(socket: QkdTlsSocket | tls.TLSSocket): Promise<void> {
  socket.end();
  await withTimeout(new Promise((resolve) => socket.once('close', resolve)), WAIT, 'the socket to close');
}

const TLS13_SECRETS = ['CLIENT_HANDSHAKE_TRAFFIC_SECRET', 'CLIENT_TRAFFIC_SECRET_0', 'EXPORTER_SECRET', 'SERVER_HANDSHAKE_TRAFFIC_SECRET', 'SERVER_TRAFFIC_SECRET_0'];

/** Checks that both stacks logged the same TLS 1.3 secrets (NSS key-log lines, any order). */
function sameSecrets(tt: Tap, ours: string[], theirs: string[]): void {
  const labels = theirs.map((l) => l.split(' ')[0]).sort();
  tt.same(labels, TLS13_SECRETS, 'node:tls logged the five TLS 1.3 secrets');
  for (const line of theirs) tt.ok(ours.includes(line), `same ${line.split(' ')[0]}`);
}

// --- qkd-tls client -> node:tls server ------------------------------------------------------------------------

for (const suite of ['TLS_AES_128_GCM_SHA256', 'TLS_CHACHA20_POLY1305_SHA256'] as SupportedSuiteName[]) {
  t.test(`qkd-tls client -> node:tls server: ${suite}`, SUBTEST, async (t) => {
    const node = await nodeServer(t);
    const { socket, keylog } = await keyLoggedClient(t, node.port, { suites: [suite] });
    t.same(node.identities, [PSK_IDENTITY], 'node:tls looked up our identity');
    t.equal(socket.handshake!.suite, suite);
    t.equal(socket.handshake!.kex, 'psk_dhe_ke');
    await checkEcho(t, socket, `hello node:tls over ${suite}`);
    const peer = node.sockets[0];
    t.equal(peer.getCipher().standardName, suite, 'node:tls negotiated the same suite');
    t.equal(peer.getProtocol(), 'TLSv1.3');
    t.same(
      socket.exportKeyingMaterial(32, EXPORT_LABEL, EXPORT_CONTEXT),
      peer.exportKeyingMaterial(32, EXPORT_LABEL, EXPORT_CONTEXT),
      'exported keying material is identical',
    );
    sameSecrets(t, keylog, node.keylog);
    await closeSocket(socket);
  });
}

t.test('qkd-tls client CLI -> node:tls server', SUBTEST, async (t) => {
  const node = await nodeServer(t);
  const cli = spawnQkdTls(t, ['client', '--connect', `127.0.0.1:${node.port}`, '--psk', PSK_HEX, '--identity', PSK_IDENTITY, '--json']);
  cli.write('from the command line to node\n');
  await cli.waitFor('from the command line to node\n', WAIT, 'stdout');
  cli.end();
  t.equal((await cli.waitExit(WAIT)).code, 0);
  t.match(jsonEvent(cli.stderr, 'handshake'), { kex: 'psk_dhe_ke', group: 'x25519', identity: PSK_IDENTITY });
});

t.test('HelloRetryRequest: qkd-tls client shares x25519, node:tls accepts only P-256', SUBTEST, async (t) => {
  const node = await nodeServer(t, { ecdhCurve: 'P-256' });
  const { socket } = await keyLoggedClient(t, node.port, { groups: ['x25519', 'secp256r1'] });
  t.equal(socket.handshake!.helloRetry, true);
  t.equal(socket.handshake!.group, 'secp256r1');
  await checkEcho(t, socket, 'after the retry');
  await closeSocket(socket);
});

t.test('wrong key: qkd-tls client against node:tls', SUBTEST, async (t) => {
  const node = await nodeServer(t);
  const serverError = withTimeout(new Promise<Error>((resolve) => node.server.once('tlsClientError', resolve)), WAIT, 'tlsClientError');
  const socket = connect({ host: '127.0.0.1', port: node.port, psks: [{ ...psk, secret: fromHex(WRONG_PSK_HEX) }] });
  t.teardown(() => socket.destroy());
  const err = (await withTimeout(new Promise<Error>((resolve) => socket.once('error', resolve)), WAIT, 'the handshake to fail')) as TlsError;
  t.type(err, TlsError);
  t.equal(err.remote, true);
  // OpenSSL 3.0 (inside Node 20) answers a bad binder with illegal_parameter, as OpenSSL does up to 3.3; 3.4 and later
  // with decrypt_error (Node 24: interop-node24-psk-alerts).
  const expected = opensslBinderAlert(process.versions.openssl);
  t.equal(err.alert, expected, `node:tls (OpenSSL ${process.versions.openssl}) sent ${expected}`);
  t.equal(err.reason, 'PeerSentAlert');
  t.match(
    err.hint,
    expected === 'illegal_parameter' ? /^the server refused our ClientHello, most likely because it holds another key for this identity \(or none\), or binds it to another hash: OpenSSL before 3\.4 \(Node 20\)/ : /^the server could not verify the key we offered: the two sides hold different keys/,
    'the hint says the likely cause first',
  );
  t.equal(err.message, `tls alert: ${expected} (${err.alertCode}) received: ${err.hint}`, 'the message ends with the hint');
  const nodeError = (await serverError) as NodeJS.ErrnoException;
  t.match(nodeError.message, /binder does not verify/i, 'node:tls reports the bad binder');
  t.equal(nodeError.code, 'ERR_SSL_BINDER_DOES_NOT_VERIFY');
});

t.test('unknown identity: qkd-tls client against node:tls (missing_extension: OpenSSL wants a certificate handshake)', SUBTEST, async (t) => {
  const node = await nodeServer(t);
  const serverError = withTimeout(new Promise<Error>((resolve) => node.server.once('tlsClientError', resolve)), WAIT, 'tlsClientError');
  const socket = connect({ host: '127.0.0.1', port: node.port, psks: [{ ...psk, identity: utf8('nobody') }] });
  t.teardown(() => socket.destroy());
  const err = (await withTimeout(new Promise<Error>((resolve) => socket.once('error', resolve)), WAIT, 'the handshake to fail')) as TlsError;
  t.type(err, TlsError);
  t.same(node.identities, ['nobody'], 'node:tls looked up the identity, and its pskCallback had no key');
  // With no PSK accepted, OpenSSL goes on to certificate authentication, which needs signature_algorithms (RFC 8446
  // §4.2.3); a PSK-only ClientHello has none.
  t.match(err, { remote: true, reason: 'PeerSentAlert', alert: 'missing_extension', alertCode: 109 });
  t.match(err.hint, /^the server accepted none of the PSKs we offered .*most likely it has no key for this identity/, 'the hint says the likely cause');
  t.equal(err.message, `tls alert: missing_extension (109) received: ${err.hint}`);
  t.equal(((await serverError) as NodeJS.ErrnoException).code, 'ERR_SSL_MISSING_SIGALGS_EXTENSION', 'node:tls: missing sigalgs extension');
});

t.test('a SHA-384 key: qkd-tls client against node:tls (decode_error: OpenSSL binds an external PSK to SHA-256)', SUBTEST, async (t) => {
  // The same 48-byte key on both sides, bound to SHA-384 by the client: node:tls takes it as a SHA-256 PSK, so our
  // 48-byte binder has the wrong length for it (RFC 8446 §4.2.11) and OpenSSL cannot parse the extension.
  const key48 = Buffer.alloc(48, 0x5a);
  const node = await nodeServer(t, {}, key48);
  const serverError = withTimeout(new Promise<Error>((resolve) => node.server.once('tlsClientError', resolve)), WAIT, 'tlsClientError');
  const socket = connect({ host: '127.0.0.1', port: node.port, psks: [{ ...psk, secret: new Uint8Array(key48), hash: 'SHA-384' }] });
  t.teardown(() => socket.destroy());
  const err = (await withTimeout(new Promise<Error>((resolve) => socket.once('error', resolve)), WAIT, 'the handshake to fail')) as TlsError;
  t.type(err, TlsError);
  t.match(err, { remote: true, reason: 'PeerSentAlert', alert: 'decode_error', alertCode: 50 });
  t.match(err.hint, /^the server could not parse our ClientHello, most likely our PSK binder: the two sides bind this identity's key to different hashes/, 'the hint says the likely cause');
  t.equal(err.message, `tls alert: decode_error (50) received: ${err.hint}`, 'the message ends with the hint');
  t.equal(((await serverError) as NodeJS.ErrnoException).code, 'ERR_SSL_BAD_EXTENSION', 'node:tls: bad extension (tls_parse_ctos_psk)');

  // The command line adds the option to check.
  const cli = spawnQkdTls(t, ['client', '--connect', `127.0.0.1:${node.port}`, '--psk', key48.toString('hex'), '--psk-hash', 'SHA-384', '--identity', PSK_IDENTITY]);
  cli.end();
  t.equal((await cli.waitExit(WAIT)).code, 1, 'qkd-tls client exits 1');
  t.match(cli.stderr, /decode_error \(50\) received: the server could not parse our ClientHello.*: --psk-hash on one side only\? \(OpenSSL and Node take SHA-256 only\)/, 'qkd-tls client names --psk-hash');
});

// --- node:tls client -> qkd-tls server ------------------------------------------------------------------------

t.test('node:tls client -> qkd-tls server', SUBTEST, async (t) => {
  const { port, sockets, keylog } = await keyLoggedServer(t);
  const nodeKeylog: string[] = [];
  const client = nodeClient(t, port);
  client.on('keylog', (line: Buffer) => nodeKeylog.push(line.toString('latin1').trim()));
  await once(client, 'secureConnect', WAIT);
  await checkEcho(t, client, 'hello qkd-tls from node:tls');
  const info = sockets[0].handshake!;
  t.equal(info.identity, PSK_IDENTITY);
  t.equal(info.kex, 'psk_dhe_ke');
  t.equal(client.getCipher().standardName, info.suite, 'both ends agree on the suite');
  t.same(
    client.exportKeyingMaterial(48, EXPORT_LABEL, EXPORT_CONTEXT),
    sockets[0].exportKeyingMaterial(48, EXPORT_LABEL, EXPORT_CONTEXT),
    'exported keying material is identical',
  );
  sameSecrets(t, keylog, nodeKeylog);
  await closeSocket(client);
});

t.test('node:tls client -> qkd-tls server, ChaCha20-Poly1305 chosen by the client', SUBTEST, async (t) => {
  const { port, sockets } = await keyLoggedServer(t);
  const client = nodeClient(t, port, { ciphers: 'TLS_CHACHA20_POLY1305_SHA256' });
  await once(client, 'secureConnect', WAIT);
  await checkEcho(t, client, 'chacha from node');
  t.equal(sockets[0].handshake!.suite, 'TLS_CHACHA20_POLY1305_SHA256');
  await closeSocket(client);
});

t.test('node:tls client -> qkd-tls server CLI', SUBTEST, async (t) => {
  const server = spawnQkdTls(t, ['server', '--listen', '127.0.0.1:0', '--psk', PSK_HEX, '--identity', PSK_IDENTITY, '--json', '--once']);
  await server.waitFor((s) => jsonEvent(s, 'listening') !== undefined, WAIT, 'stderr');
  const port = Number(String(jsonEvent(server.stderr, 'listening')!.address).split(':').pop());
  const client = nodeClient(t, port);
  await once(client, 'secureConnect', WAIT);
  await checkEcho(t, client, 'node to the command line');
  await closeSocket(client);
  t.equal((await server.waitExit(WAIT)).code, 0, 'the --once server exits 0');
  t.match(jsonEvent(server.stderr, 'handshake'), { kex: 'psk_dhe_ke', identity: PSK_IDENTITY });
});

t.test('HelloRetryRequest: qkd-tls server wants secp256r1, node:tls shares x25519 first', SUBTEST, async (t) => {
  const { port, sockets } = await keyLoggedServer(t, { groups: ['secp256r1'] });
  const client = nodeClient(t, port, { ecdhCurve: 'X25519:P-256' });
  await once(client, 'secureConnect', WAIT);
  await checkEcho(t, client, 'retried');
  t.equal(sockets[0].handshake!.helloRetry, true);
  t.equal(sockets[0].handshake!.group, 'secp256r1');
  await closeSocket(client);
});

t.test('wrong key: node:tls client against the qkd-tls server (decrypt_error)', SUBTEST, async (t) => {
  const { server, port } = await keyLoggedServer(t);
  const serverError = withTimeout(new Promise<Error>((resolve) => server.once('tlsClientError', resolve)), WAIT, 'tlsClientError');
  const client = nodeClient(t, port, {}, Buffer.from(WRONG_PSK_HEX, 'hex'));
  const clientError = await withTimeout(new Promise<Error>((resolve) => client.once('error', resolve)), WAIT, 'the node:tls client to fail');
  t.match(clientError.message, /alert decrypt error/, 'node:tls received decrypt_error');
  t.match((clientError as NodeJS.ErrnoException).code, 'ERR_SSL_TLSV1_ALERT_DECRYPT_ERROR');
  const err = (await serverError) as TlsError;
  t.equal(err.reason, 'IncorrectBinder');
  t.equal(err.alert, 'decrypt_error');
  t.equal(err.remote, false);
});

t.test('unknown identity: node:tls client against the qkd-tls server (unknown_psk_identity)', SUBTEST, async (t) => {
  const { server, port } = await keyLoggedServer(t);
  const serverError = withTimeout(new Promise<Error>((resolve) => server.once('tlsClientError', resolve)), WAIT, 'tlsClientError');
  const client = nodeClient(t, port, { pskCallback: () => ({ psk: pskBuffer, identity: 'nobody' }) });
  const clientError = (await withTimeout(new Promise<Error>((resolve) => client.once('error', resolve)), WAIT, 'the node:tls client to fail')) as NodeJS.ErrnoException;
  t.equal(clientError.code, 'ERR_SSL_TLSV1_ALERT_UNKNOWN_PSK_IDENTITY', 'node:tls received unknown_psk_identity (115)');
  t.match(await serverError, { reason: 'UnknownPskIdentity', alert: 'unknown_psk_identity', remote: false }, 'RFC 8446 §4.2.11');
});
