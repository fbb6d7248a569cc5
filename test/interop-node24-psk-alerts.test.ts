/**
 * The alerts for a wrong key or an unknown PSK identity against Node 24's TLS (OpenSSL 3.5, the test-only `node`
 * peer of test/peers), both directions, and what each side reports. OpenSSL 3.4 and later answer a PSK binder they
 * cannot verify with decrypt_error, as RFC 8446 §4.2.11.2 (via §6.2) says (openssl/openssl#25176); up to 3.3,
 * Node 20's OpenSSL 3.0 included (interop-node), with illegal_parameter. Here the "3.4 and later" branch of
 * receivedAlertHint (lib/errors.ts) runs against a real 3.4+ server, library and command line.
 *
 * An identity the Node server has no key for (its pskCallback returns null) is not refused as unknown_psk_identity:
 * OpenSSL, having accepted no PSK, goes on to certificate authentication and aborts with missing_extension, for the
 * ClientHello has no signature_algorithms (RFC 8446 §4.2.3).
 *
 * Node binds an external PSK to SHA-256 (OpenSSL's TLS 1.2-style callback): only the SHA-256 suites are offered.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { fromHex, utf8 } from '../lib/codec/bytes.js';
import { TlsError } from '../lib/errors.js';
import { connect } from '../lib/transport/node.js';
import { libraryEchoServer, PEER_PSK } from './helpers/library.js';
import { opensslBinderAlert, PSK_HEX, PSK_IDENTITY, spawnPeer, spawnQkdTls, type Peer, type TestLike, testPeer, WRONG_PSK_HEX, withTimeout } from './helpers/peers.js';

const node24 = testPeer(t, 'node');
const SUBTEST = { timeout: 30_000, skip: node24.skip };
const WAIT = 10_000;

/**
 * The Node 24 side, keyed by PSK_HEX and PSK_IDENTITY from its environment. `server`: prints `LISTENING port
 * openssl-version`, then a JSON line `TLS_CLIENT_ERROR {code, message}` for each failed handshake. `client PORT`:
 * prints `CONNECTED` or `ERROR {code, message}` and exits.
 */
const PEER_SCRIPT = `
const tls = require('node:tls');
const [mode, port] = process.argv.slice(2);
const key = Buffer.from(process.env.PSK_HEX, 'hex');
const identity = process.env.PSK_IDENTITY;
const common = { minVersion: 'TLSv1.3', ciphers: 'TLS_AES_128_GCM_SHA256:TLS_CHACHA20_POLY1305_SHA256' };
const report = (what, e) => console.log(what + ' ' + JSON.stringify({ code: e.code, message: e.message }));
if (mode === 'server') {
  const server = tls.createServer({ ...common, pskCallback: (_s, id) => (id === identity ? key : null) }, (s) => s.pipe(s));
  server.on('tlsClientError', (e) => report('TLS_CLIENT_ERROR', e));
  server.listen(0, '127.0.0.1', () => console.log('LISTENING ' + server.address().port + ' ' + process.versions.openssl));
} else {
  const s = tls.connect({ ...common, host: '127.0.0.1', port: Number(port), pskCallback: () => ({ psk: key, identity }), checkServerIdentity: () => undefined }, () => {
    console.log('CONNECTED');
    s.end();
  });
  s.on('error', (e) => { report('ERROR', e); process.exitCode = 1; });
}
`;

async function peerScript(tt: TestLike): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'qkd-tls-node24-alerts-'));
  tt.teardown(() => rm(dir, { recursive: true, force: true }));
  const file = join(dir, 'peer.cjs');
  await writeFile(file, PEER_SCRIPT);
  return file;
}

/** A Node 24 server holding PSK_HEX for PSK_IDENTITY, and the OpenSSL version inside it. */
async function node24Server(tt: TestLike): Promise<{ peer: Peer; port: number; openssl: string }> {
  const peer = spawnPeer(tt, node24.path!, [await peerScript(tt), 'server'], { env: { PSK_HEX, PSK_IDENTITY } });
  const m = /LISTENING (\d+) (\S+)/.exec(await peer.waitFor(/LISTENING \d+ \S+/, WAIT, 'stdout'))!;
  return { peer, port: Number(m[1]), openssl: m[2] };
}

/** What the Node 24 server reported for the failed handshake. */
async function node24ServerError(peer: Peer): Promise<{ code: string; message: string }> {
  const out = await peer.waitFor(/TLS_CLIENT_ERROR \{.*\}/, WAIT, 'stdout');
  return JSON.parse(/TLS_CLIENT_ERROR (\{.*\})/.exec(out)![1]) as { code: string; message: string };
}

/** Our library client with `psk` against `port`; the error it fails with. */
async function libraryFailure(tt: TestLike, port: number, psk: typeof PEER_PSK): Promise<TlsError> {
  const socket = connect({ host: '127.0.0.1', port, psks: [psk] });
  tt.teardown(() => socket.destroy());
  return (await withTimeout(
    new Promise<Error>((resolve, reject) => {
      socket.once('error', resolve);
      socket.once('secureConnect', () => reject(new Error('the handshake succeeded')));
    }),
    WAIT,
    'the handshake to fail',
  )) as TlsError;
}

/** A Node 24 client with `keyHex` for `identity` against `port`; what it reported. */
async function node24ClientError(tt: TestLike, port: number, keyHex: string, identity: string): Promise<{ code: string; message: string }> {
  const peer = spawnPeer(tt, node24.path!, [await peerScript(tt), 'client', String(port)], { env: { PSK_HEX: keyHex, PSK_IDENTITY: identity } });
  const out = await peer.waitFor(/^(ERROR \{.*\}|CONNECTED)$/m, WAIT, 'stdout');
  const m = /^ERROR (\{.*\})$/m.exec(out);
  if (!m) throw new Error(`the Node 24 client connected:\n${peer.transcript()}`);
  return JSON.parse(m[1]) as { code: string; message: string };
}

/** A peer's output as UTF-8 (Peer collects it as latin1; the hints hold a "§"). */
function utf8Text(latin1: string): string {
  return Buffer.from(latin1, 'latin1').toString('utf8');
}

const WRONG_KEY_HINT =
  'the server could not verify the key we offered: the two sides hold different keys for this identity, or bind it to different hashes (RFC 8446 §4.2.11.2)';

// --- qkd-tls client -> Node 24 server --------------------------------------------------------------------------

t.test('wrong key: qkd-tls client -> Node 24 server: decrypt_error (OpenSSL 3.4 and later), and the hint says so', SUBTEST, async (t) => {
  const { peer, port, openssl } = await node24Server(t);
  t.equal(opensslBinderAlert(openssl), 'decrypt_error', `the peer's OpenSSL (${openssl}) is 3.4 or later`);
  const err = await libraryFailure(t, port, { ...PEER_PSK, secret: fromHex(WRONG_PSK_HEX) });
  t.type(err, TlsError);
  t.match(err, { remote: true, reason: 'PeerSentAlert', alert: 'decrypt_error', alertCode: 51 }, 'Node 24 sent decrypt_error (RFC 8446 §4.2.11.2)');
  t.equal(err.hint, WRONG_KEY_HINT, 'the hint names the likely cause');
  t.equal(err.message, `tls alert: decrypt_error (51) received: ${WRONG_KEY_HINT}`);
  const nodeError = await node24ServerError(peer);
  t.equal(nodeError.code, 'ERR_SSL_BINDER_DOES_NOT_VERIFY', 'Node 24: binder does not verify');
});

t.test('unknown identity: qkd-tls client -> Node 24 server: missing_extension, and the hint says what it means', SUBTEST, async (t) => {
  const { peer, port } = await node24Server(t);
  const err = await libraryFailure(t, port, { ...PEER_PSK, identity: utf8('nobody') });
  t.type(err, TlsError);
  t.match(err, { remote: true, reason: 'PeerSentAlert', alert: 'missing_extension', alertCode: 109 }, 'Node 24 sent missing_extension (RFC 8446 §4.2.3)');
  t.match(err.hint, /^the server accepted none of the PSKs we offered and wanted a certificate handshake instead .*most likely it has no key for this identity/);
  t.equal(err.message, `tls alert: missing_extension (109) received: ${err.hint}`);
  t.equal((await node24ServerError(peer)).code, 'ERR_SSL_MISSING_SIGALGS_EXTENSION', 'Node 24: missing sigalgs extension');
});

t.test('wrong --psk: qkd-tls client command -> Node 24 server: one line saying what to check', SUBTEST, async (t) => {
  const { peer, port } = await node24Server(t);
  const cli = spawnQkdTls(t, ['client', '--connect', `127.0.0.1:${port}`, '--psk', WRONG_PSK_HEX, '--identity', PSK_IDENTITY]);
  cli.end();
  t.equal((await cli.waitExit(WAIT)).code, 1, 'the client exits 1');
  t.equal(utf8Text(cli.stderr), `tls alert: decrypt_error (51) received: ${WRONG_KEY_HINT}: check --psk, and --psk-hash on both sides\n`);
  t.equal(cli.stdout, '', 'nothing was received');
  t.equal((await node24ServerError(peer)).code, 'ERR_SSL_BINDER_DOES_NOT_VERIFY');
});

t.test('wrong --identity: qkd-tls client command -> Node 24 server: one line saying what to check', SUBTEST, async (t) => {
  const { peer, port } = await node24Server(t);
  const cli = spawnQkdTls(t, ['client', '--connect', `127.0.0.1:${port}`, '--psk', PSK_HEX, '--identity', 'nobody']);
  cli.end();
  t.equal((await cli.waitExit(WAIT)).code, 1, 'the client exits 1');
  t.match(utf8Text(cli.stderr), /^tls alert: missing_extension \(109\) received: the server accepted none of the PSKs we offered .*its log says which: a wrong --identity\? --importer or --context on one side only\? --psk-hash on one side only\?\n$/);
  t.equal((await node24ServerError(peer)).code, 'ERR_SSL_MISSING_SIGALGS_EXTENSION');
});

// --- Node 24 client -> qkd-tls server --------------------------------------------------------------------------

t.test('wrong key: Node 24 client -> qkd-tls server: decrypt_error both sides', SUBTEST, async (t) => {
  const { server, port } = await libraryEchoServer(t);
  const serverError = withTimeout(new Promise<Error>((resolve) => server.once('tlsClientError', resolve)), WAIT, 'tlsClientError');
  const nodeError = await node24ClientError(t, port, WRONG_PSK_HEX, PSK_IDENTITY);
  t.equal(nodeError.code, 'ERR_SSL_TLSV1_ALERT_DECRYPT_ERROR', 'Node 24 received decrypt_error');
  t.match(nodeError.message, /alert decrypt error.*SSL alert number 51/);
  const err = (await serverError) as TlsError;
  t.match(err, { reason: 'IncorrectBinder', alert: 'decrypt_error', remote: false }, 'we sent decrypt_error (RFC 8446 §4.2.11.2, §6.2)');
  t.equal(err.message, 'tls alert: decrypt_error (51) sent: PSK binder does not verify (wrong key?) (RFC 8446 §4.2.11.2)');
});

t.test('unknown identity: Node 24 client -> qkd-tls server: unknown_psk_identity', SUBTEST, async (t) => {
  const { server, port } = await libraryEchoServer(t);
  const serverError = withTimeout(new Promise<Error>((resolve) => server.once('tlsClientError', resolve)), WAIT, 'tlsClientError');
  const nodeError = await node24ClientError(t, port, PSK_HEX, 'nobody');
  t.equal(nodeError.code, 'ERR_SSL_TLSV1_ALERT_UNKNOWN_PSK_IDENTITY', 'Node 24 received unknown_psk_identity (115)');
  t.match(await serverError, { reason: 'UnknownPskIdentity', alert: 'unknown_psk_identity', remote: false }, 'RFC 8446 §4.2.11');
});
