/**
 * Interoperability with OpenSSL's command-line tools, on 127.0.0.1, in both directions: the qkd-tls client
 * (library and CLI) against `openssl s_server -psk ... -nocert`, and `openssl s_client -psk` against the
 * qkd-tls server (library and CLI). Each case checks the bytes that come back (s_server -rev returns each
 * line reversed; our server echoes), and what both sides report: suite, key-exchange mode, group,
 * HelloRetryRequest, 0-RTT (with an external PSK given to OpenSSL as an SSL_SESSION file), KeyUpdate, and the
 * alert each side names when the key or the identity is wrong.
 *
 * A note on the wrong-key alert: RFC 8446 §4.2.11.2 says a server whose binder check fails sends
 * decrypt_error, and qkd-tls does. OpenSSL 1.1.1 to 3.3 send illegal_parameter instead (3.4 and later send
 * decrypt_error); the test expects the one `openssl version` calls for (illegal_parameter from Debian's 3.0; Node 24's
 * OpenSSL 3.5 is checked in interop-node24-psk-alerts) and checks the reason OpenSSL logs. An identity s_server has
 * no key for ends in missing_extension: having accepted no PSK, OpenSSL wants signature_algorithms for a
 * certificate handshake (RFC 8446 §4.2.3).
 */
import { spawnSync } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { createConnection, createServer, type AddressInfo } from 'node:net';
import { join } from 'node:path';
import t from 'tap';
import { fromHex, utf8 } from '../lib/codec/bytes.js';
import type { HandshakeInfo } from '../lib/config/events.js';
import type { Psk } from '../lib/psk/types.js';
import type { RecordTrace } from '../lib/record/trace-hook.js';
import type { SupportedSuiteName } from '../lib/suites.js';
import { connect, type QkdTlsSocket } from '../lib/transport/node.js';
import { createNobleProvider } from '../lib/crypto/noble.js';
import { withWebCryptoKeyShares } from '../lib/crypto/webcrypto.js';
import { opensslPskSessionPem } from './helpers/openssl-session.js';
import {
  opensslBinderAlert,
  opensslServer,
  jsonEvent,
  missingPrograms,
  once,
  type Peer,
  PSK_HEX,
  PSK_IDENTITY,
  readBytes,
  reversedLine,
  spawnPeer,
  spawnQkdTls,
  type Tap,
  type TestLike,
  WRONG_PSK_HEX,
  withTimeout,
} from './helpers/peers.js';
import { libraryClient, libraryEchoServer, PEER_PSK } from './helpers/library.js';

const skip = missingPrograms(t, 'openssl');
const SUBTEST = { timeout: 30_000, skip };
const WAIT = 10_000;

const psk = PEER_PSK;
const PSK384_HEX = 'a1'.repeat(8) + '5c'.repeat(8) + '0f'.repeat(8) + 'e7'.repeat(8) + '39'.repeat(8) + 'd2'.repeat(8);
const psk384: Psk = { identity: utf8(PSK_IDENTITY), secret: fromHex(PSK384_HEX), hash: 'SHA-384' };

type Group = 'x25519' | 'secp256r1';

// --- helpers ------------------------------------------------------------------------------------------------

/** A temporary directory removed at teardown. */
async function tempDir(tt: TestLike): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'qkd-tls-openssl-'));
  tt.teardown(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

/** Writes an SSL_SESSION file that gives OpenSSL the external PSK (see helpers/openssl-session.ts). */
async function pskSessionFile(tt: TestLike, secret: Uint8Array, suite: SupportedSuiteName, maxEarlyData = 0): Promise<string> {
  const file = join(await tempDir(tt), 'psk-session.pem');
  await writeFile(file, opensslPskSessionPem({ secret, suite, maxEarlyData }));
  return file;
}

/**
 * Starts `openssl s_server -nocert -naccept 1` on a free port with the given key and mode arguments. Its stdin
 * stays open (s_server shuts down at the end of stdin).
 */
async function sServer(tt: TestLike, args: string[], key: string[] = ['-psk', PSK_HEX]): Promise<{ peer: Peer; port: number }> {
  return opensslServer(tt, [...key, '-psk_identity', PSK_IDENTITY, '-nocert', '-naccept', '1', ...args], WAIT);
}

/** Starts `openssl s_client` against a port; its stdin is the data to send (lines starting Q/R/k/K are commands). */
function sClient(tt: TestLike, port: number, args: string[], key: string[] = ['-psk', PSK_HEX]): Peer {
  return spawnPeer(tt, 'openssl', ['s_client', '-connect', `127.0.0.1:${port}`, ...key, '-psk_identity', PSK_IDENTITY, ...args]);
}

/** Sends a line and checks that s_server -rev answers with the line reversed. */
async function checkReversed(tt: Tap, socket: QkdTlsSocket, line: string): Promise<void> {
  socket.write(line + '\n');
  const back = await readBytes(socket, line.length + 1, WAIT);
  tt.equal(back.toString('latin1'), reversedLine(line) + '\n', `s_server -rev answered "${line}" reversed`);
}

/** Ends a library client and waits for the s_server it talked to to exit cleanly. */
async function closeAgainst(tt: Tap, socket: QkdTlsSocket, server: Peer): Promise<void> {
  socket.end();
  await withTimeout(new Promise((resolve) => socket.once('close', resolve)), WAIT, 'the client to close');
  const exit = await server.waitExit(WAIT);
  tt.equal(exit.code, 0, 's_server exits 0 after the one connection');
}

/** Sends a line through s_client and waits for our echo server to return it. */
async function checkEcho(tt: Tap, client: Peer, line: string): Promise<void> {
  client.write(line + '\n');
  await client.waitFor(line + '\n', WAIT, 'stdout');
  tt.pass(`s_client got "${line}" echoed back`);
}

async function serverHandshake(sockets: QkdTlsSocket[]): Promise<HandshakeInfo> {
  const s = sockets[0];
  if (!s) throw new Error('no connection reached secureConnection');
  return s.handshake!;
}

// --- qkd-tls client -> openssl s_server -------------------------------------------------------------------

const MATRIX: { suite: SupportedSuiteName; kex: 'psk_dhe_ke' | 'psk_ke' }[] = [
  { suite: 'TLS_AES_128_GCM_SHA256', kex: 'psk_dhe_ke' },
  { suite: 'TLS_CHACHA20_POLY1305_SHA256', kex: 'psk_dhe_ke' },
  { suite: 'TLS_AES_128_GCM_SHA256', kex: 'psk_ke' },
  { suite: 'TLS_CHACHA20_POLY1305_SHA256', kex: 'psk_ke' },
];

for (const { suite, kex } of MATRIX) {
  t.test(`qkd-tls client -> openssl s_server: ${suite}, ${kex}`, SUBTEST, async (t) => {
    const { peer, port } = await sServer(t, ['-rev', '-ciphersuites', suite, ...(kex === 'psk_ke' ? ['-allow_no_dhe_kex'] : [])]);
    const socket = await libraryClient(t, port, { suites: [suite], kexModes: [kex] });
    const info = socket.handshake!;
    t.equal(info.suite, suite);
    t.equal(info.kex, kex);
    t.equal(info.group, kex === 'psk_dhe_ke' ? 'x25519' : null);
    t.equal(info.identity, PSK_IDENTITY);
    await checkReversed(t, socket, `hello openssl over ${suite} with ${kex}`);
    await closeAgainst(t, socket, peer);
    t.match(peer.output, `Ciphersuite: ${suite}`, 's_server reports the same suite');
  });
}

t.test('qkd-tls client -> openssl s_server: a SHA-384 PSK (TLS_AES_256_GCM_SHA384) from a session file', SUBTEST, async (t) => {
  const file = await pskSessionFile(t, psk384.secret, 'TLS_AES_256_GCM_SHA384');
  const { peer, port } = await sServer(t, ['-rev'], ['-psk_session', file]);
  // Default suites: the client must lead with the one suite its SHA-384 PSK can use, since OpenSSL picks the
  // suite before it looks at the PSK.
  const socket = await libraryClient(t, port, { psks: [psk384] });
  t.equal(socket.handshake!.suite, 'TLS_AES_256_GCM_SHA384');
  await checkReversed(t, socket, 'forty-eight bytes of key');
  await closeAgainst(t, socket, peer);
});

t.test('qkd-tls client CLI -> openssl s_server', SUBTEST, async (t) => {
  const { peer, port } = await sServer(t, ['-rev']);
  const cli = spawnQkdTls(t, ['client', '--connect', `127.0.0.1:${port}`, '--psk', PSK_HEX, '--identity', PSK_IDENTITY, '--json']);
  cli.write('from the command line\n');
  await cli.waitFor(reversedLine('from the command line') + '\n', WAIT, 'stdout');
  cli.end();
  const exit = await cli.waitExit(WAIT);
  t.equal(exit.code, 0, 'the client exits 0 after a clean close');
  t.match(jsonEvent(cli.stderr, 'handshake'), { version: 'TLSv1.3', suite: 'TLS_AES_128_GCM_SHA256', kex: 'psk_dhe_ke', group: 'x25519', identity: PSK_IDENTITY, earlyData: 'none' });
  t.equal((await peer.waitExit(WAIT)).code, 0);
});

// --- openssl s_client -> qkd-tls server --------------------------------------------------------------------

for (const { suite, kex } of MATRIX) {
  t.test(`openssl s_client -> qkd-tls server: ${suite}, ${kex}`, SUBTEST, async (t) => {
    // OpenSSL offers psk_ke only alongside psk_dhe_ke (-allow_no_dhe_kex); the server's preference decides.
    const { port, sockets } = await libraryEchoServer(t, { kexModes: [kex] });
    const client = sClient(t, port, ['-ciphersuites', suite, ...(kex === 'psk_ke' ? ['-allow_no_dhe_kex'] : [])]);
    await checkEcho(t, client, `hello qkd-tls from openssl, ${suite}`);
    const info = await serverHandshake(sockets);
    t.equal(info.suite, suite);
    t.equal(info.kex, kex);
    t.equal(info.group, kex === 'psk_dhe_ke' ? 'x25519' : null);
    t.equal(info.identity, PSK_IDENTITY);
    t.match(client.stdout, `Cipher is ${suite}`, 's_client reports the same suite');
    client.end();
    t.equal((await client.waitExit(WAIT)).code, 0, 's_client exits 0');
  });
}

t.test('openssl s_client -> qkd-tls server: a SHA-384 PSK from a session file', SUBTEST, async (t) => {
  const file = await pskSessionFile(t, psk384.secret, 'TLS_AES_256_GCM_SHA384');
  const { port, sockets } = await libraryEchoServer(t, { psks: [psk384] });
  const client = sClient(t, port, [], ['-psk_session', file]);
  await checkEcho(t, client, 'sha-384 both ways');
  t.equal((await serverHandshake(sockets)).suite, 'TLS_AES_256_GCM_SHA384');
  client.end();
  t.equal((await client.waitExit(WAIT)).code, 0);
});

t.test('openssl s_client -> qkd-tls server CLI', SUBTEST, async (t) => {
  const server = spawnQkdTls(t, ['server', '--listen', '127.0.0.1:0', '--psk', PSK_HEX, '--identity', PSK_IDENTITY, '--json', '--once']);
  await server.waitFor((s) => jsonEvent(s, 'listening') !== undefined, WAIT, 'stderr');
  const address = String(jsonEvent(server.stderr, 'listening')!.address);
  const port = Number(address.split(':').pop());
  const client = sClient(t, port, []);
  await checkEcho(t, client, 'to the qkd-tls command line');
  client.end();
  t.equal((await client.waitExit(WAIT)).code, 0, 's_client exits 0');
  t.equal((await server.waitExit(WAIT)).code, 0, 'the --once server exits 0 after the connection');
  t.match(jsonEvent(server.stderr, 'handshake'), { suite: 'TLS_AES_128_GCM_SHA256', kex: 'psk_dhe_ke', group: 'x25519', identity: PSK_IDENTITY });
});

// --- record padding (RFC 8446 §5.4) ------------------------------------------------------------------------

/** The TLSInnerPlaintext length of a protected record from its header (the length field less the AES-GCM tag). */
const innerLength = (r: RecordTrace): number => ((r.header[3] << 8) | r.header[4]) - 16;

t.test('record padding: qkd-tls client (recordPadding 512) <-> openssl s_server -record_padding 256: both pad, both read', SUBTEST, async (t) => {
  const { peer, port } = await sServer(t, ['-rev', '-record_padding', '256']);
  const traced: RecordTrace[] = [];
  const socket = await libraryClient(t, port, { recordPadding: 512, trace: (r) => void traced.push(r) });
  await checkReversed(t, socket, 'a padded line');
  await checkReversed(t, socket, 'x'.repeat(3000));
  await closeAgainst(t, socket, peer);
  const sent = traced.filter((r) => r.direction === 'sent' && r.protected);
  const received = traced.filter((r) => r.direction === 'received' && r.protected);
  t.ok(sent.length >= 4, `${sent.length} protected records sent (Finished, two lines, close_notify)`);
  t.same(sent.map(innerLength).filter((n) => n % 512 !== 0), [], 'each a multiple of 512 bytes on the wire, and s_server read them');
  t.ok(received.length >= 4, `${received.length} protected records from s_server`);
  t.same(received.map(innerLength).filter((n) => n % 256 !== 0), [], "each of s_server's a multiple of 256 bytes");
  t.ok(received.every((r) => r.paddingLength > 0 && r.content.length + 1 + r.paddingLength === innerLength(r)), 'and their padding stripped: content, type and zeros add up');
});

t.test('record padding: openssl s_client -record_padding 1024 -> qkd-tls server (recordPadding 16385: full-size records)', SUBTEST, async (t) => {
  const traced: RecordTrace[] = [];
  const { port } = await libraryEchoServer(t, { recordPadding: 16_385, trace: (r) => void traced.push(r) });
  const client = sClient(t, port, ['-record_padding', '1024']);
  await checkEcho(t, client, 'padded by openssl, padded back');
  client.end();
  t.equal((await client.waitExit(WAIT)).code, 0, 's_client exits 0');
  const received = traced.filter((r) => r.direction === 'received' && r.protected);
  t.ok(received.length >= 2 && received.every((r) => innerLength(r) % 1024 === 0 && r.paddingLength > 0), `s_client's ${received.length} records padded to multiples of 1024, read by the server`);
  const sent = traced.filter((r) => r.direction === 'sent' && r.protected);
  t.same([...new Set(sent.map(innerLength))], [16_385], `the server's ${sent.length} records all full size (2^14 + 1), read by s_client`);
});

// --- WebCrypto key shares (lib/crypto/webcrypto.ts) ---------------------------------------------------------

const OPENSSL_GROUP: Record<Group, string> = { x25519: 'X25519', secp256r1: 'P-256' };

for (const group of ['x25519', 'secp256r1'] as Group[]) {
  t.test(`qkd-tls client with WebCrypto key shares -> openssl s_server -groups ${OPENSSL_GROUP[group]}`, SUBTEST, async (t) => {
    const crypto = withWebCryptoKeyShares(createNobleProvider());
    const { peer, port } = await sServer(t, ['-rev', '-groups', OPENSSL_GROUP[group]]);
    const socket = await libraryClient(t, port, { crypto, groups: [group] });
    t.match(socket.handshake, { kex: 'psk_dhe_ke', group, helloRetry: false });
    t.equal(crypto.keySharePath(group), 'webcrypto', `the ${group} key share ran in WebCrypto`);
    t.same(crypto.keyShares, { webcrypto: 1, fallback: 0 });
    await checkReversed(t, socket, `webcrypto ${group} to openssl`);
    await closeAgainst(t, socket, peer);
  });

  t.test(`openssl s_client -groups ${OPENSSL_GROUP[group]} -> qkd-tls server with WebCrypto key shares`, SUBTEST, async (t) => {
    const crypto = withWebCryptoKeyShares(createNobleProvider());
    const { port, sockets } = await libraryEchoServer(t, { crypto, groups: [group] });
    const client = sClient(t, port, ['-groups', OPENSSL_GROUP[group]]);
    await checkEcho(t, client, `openssl to webcrypto ${group}`);
    t.match(await serverHandshake(sockets), { kex: 'psk_dhe_ke', group });
    t.equal(crypto.keySharePath(group), 'webcrypto', `the server's ${group} key share ran in WebCrypto`);
    t.same(crypto.keyShares, { webcrypto: 1, fallback: 0 });
    client.end();
    t.equal((await client.waitExit(WAIT)).code, 0, 's_client exits 0');
  });
}

t.test('qkd-tls client with WebCrypto key shares -> openssl s_server: HelloRetryRequest for P-256', SUBTEST, async (t) => {
  const crypto = withWebCryptoKeyShares(createNobleProvider());
  const { peer, port } = await sServer(t, ['-rev', '-groups', 'P-256']);
  const socket = await libraryClient(t, port, { crypto, groups: ['x25519', 'secp256r1'], keyShareGroups: ['x25519'] });
  t.match(socket.handshake, { group: 'secp256r1', helloRetry: true });
  t.same(crypto.keyShares, { webcrypto: 2, fallback: 0 }, 'both key shares (x25519, then P-256) ran in WebCrypto');
  await checkReversed(t, socket, 'webcrypto after a retry');
  await closeAgainst(t, socket, peer);
});

// --- HelloRetryRequest -----------------------------------------------------------------------------------------

t.test('HelloRetryRequest: qkd-tls server wants secp256r1, s_client sends an x25519 share first', SUBTEST, async (t) => {
  const { port, sockets } = await libraryEchoServer(t, { groups: ['secp256r1'] });
  const client = sClient(t, port, ['-groups', 'X25519:P-256', '-msg']);
  await checkEcho(t, client, 'after a retry');
  const info = await serverHandshake(sockets);
  t.equal(info.helloRetry, true, 'the server reports the HelloRetryRequest');
  t.equal(info.group, 'secp256r1');
  t.equal(client.stdout.match(/>>> TLS 1\.3, Handshake \[length [0-9a-f]+\], ClientHello/g)?.length, 2, 's_client sent two ClientHellos');
  t.match(client.stdout, 'Server Temp Key: ECDH, prime256v1');
  client.end();
  t.equal((await client.waitExit(WAIT)).code, 0);
});

t.test('HelloRetryRequest: qkd-tls client shares x25519 first, s_server accepts only P-256', SUBTEST, async (t) => {
  const { peer, port } = await sServer(t, ['-rev', '-groups', 'P-256']);
  const groups: Group[] = ['x25519', 'secp256r1'];
  const socket = await libraryClient(t, port, { groups });
  t.equal(socket.handshake!.helloRetry, true, 'the client reports the HelloRetryRequest');
  t.equal(socket.handshake!.group, 'secp256r1');
  await checkReversed(t, socket, 'retried with P-256');
  await closeAgainst(t, socket, peer);
});

// --- 0-RTT with an external PSK ---------------------------------------------------------------------------------

t.test('0-RTT: qkd-tls client sends early data, s_server -early_data accepts it', SUBTEST, async (t) => {
  const file = await pskSessionFile(t, psk.secret, 'TLS_AES_128_GCM_SHA256', 16384);
  const { peer, port } = await sServer(t, ['-early_data'], ['-psk_session', file]);
  const early = 'zero round trip, from qkd-tls\n';
  const socket = connect({ host: '127.0.0.1', port, psks: [psk], earlyData: utf8(early) });
  t.teardown(() => socket.destroy());
  const status = once<string>(socket, 'earlyData', WAIT);
  await once(socket, 'secureConnect', WAIT);
  t.equal(await status, 'accepted');
  t.equal(socket.handshake!.earlyData, 'accepted');
  const out = await peer.waitFor('End of early data', WAIT, 'stdout');
  t.ok(out.indexOf(early) >= 0 && out.indexOf(early) < out.indexOf('End of early data'), 's_server printed our early data as early data');
  socket.write('after the handshake\n');
  await peer.waitFor('after the handshake\n', WAIT, 'stdout');
  peer.write('answer from openssl\n');
  t.equal((await readBytes(socket, 20, WAIT)).toString('latin1'), 'answer from openssl\n', 'data flows back from s_server');
  await closeAgainst(t, socket, peer);
});

t.test('0-RTT: s_client -early_data with a PSK session file, qkd-tls server accepts it', SUBTEST, async (t) => {
  const dir = await tempDir(t);
  const file = join(dir, 'psk-session.pem');
  await writeFile(file, opensslPskSessionPem({ secret: psk.secret, suite: 'TLS_AES_128_GCM_SHA256', maxEarlyData: 16384 }));
  const earlyFile = join(dir, 'early.txt');
  await writeFile(earlyFile, 'zero round trip, from openssl\n');
  const { port, sockets } = await libraryEchoServer(t, { maxEarlyDataSize: 16384 });
  const client = sClient(t, port, ['-early_data', earlyFile], ['-psk_session', file]);
  await client.waitFor('zero round trip, from openssl\n', WAIT, 'stdout');
  t.pass('the early data came back through the echo');
  t.match(client.stdout, 'Early data was accepted');
  t.equal((await serverHandshake(sockets)).earlyData, 'accepted');
  await checkEcho(t, client, 'and then 1-RTT data');
  client.end();
  t.equal((await client.waitExit(WAIT)).code, 0);
});

t.test('0-RTT rejected: s_server without -early_data; qkd-tls resends the data after the handshake', SUBTEST, async (t) => {
  const { peer, port } = await sServer(t, ['-rev']);
  const early = 'sent early, delivered late';
  const socket = connect({ host: '127.0.0.1', port, psks: [psk], earlyData: utf8(early + '\n'), resendRejectedEarlyData: true });
  t.teardown(() => socket.destroy());
  const status = once<string>(socket, 'earlyData', WAIT);
  await once(socket, 'secureConnect', WAIT);
  t.equal(await status, 'rejected');
  t.equal(socket.handshake!.earlyData, 'rejected');
  const back = await readBytes(socket, early.length + 1, WAIT);
  t.equal(back.toString('latin1'), reversedLine(early) + '\n', 'the rejected early data arrived as ordinary data');
  await closeAgainst(t, socket, peer);
});

t.test('0-RTT rejected: s_client sends early data, qkd-tls server (max early data 0) rejects it', SUBTEST, async (t) => {
  const dir = await tempDir(t);
  const file = join(dir, 'psk-session.pem');
  await writeFile(file, opensslPskSessionPem({ secret: psk.secret, suite: 'TLS_AES_128_GCM_SHA256', maxEarlyData: 16384 }));
  const earlyFile = join(dir, 'early.txt');
  await writeFile(earlyFile, 'this will be skipped\n');
  const { port, sockets } = await libraryEchoServer(t);
  const client = sClient(t, port, ['-early_data', earlyFile], ['-psk_session', file]);
  await checkEcho(t, client, 'only 1-RTT data');
  t.match(client.stdout, 'Early data was rejected');
  t.notMatch(client.stdout, 'this will be skipped', 'the rejected early data was not delivered');
  t.equal((await serverHandshake(sockets)).earlyData, 'rejected');
  client.end();
  t.equal((await client.waitExit(WAIT)).code, 0);
});

// --- KeyUpdate --------------------------------------------------------------------------------------------------

t.test('KeyUpdate: qkd-tls client CLI --key-update against s_server', SUBTEST, async (t) => {
  const { peer, port } = await sServer(t, ['-rev', '-msg']);
  const cli = spawnQkdTls(t, ['client', '--connect', `127.0.0.1:${port}`, '--psk', PSK_HEX, '--identity', PSK_IDENTITY, '--json', '--key-update']);
  cli.write('after a key update\n');
  await cli.waitFor(reversedLine('after a key update') + '\n', WAIT, 'stdout');
  cli.end();
  t.equal((await cli.waitExit(WAIT)).code, 0);
  t.match(jsonEvent(cli.stderr, 'key-update'), { direction: 'write', requestPeer: true });
  await peer.waitExit(WAIT);
  t.match(peer.stdout, /<<< TLS 1\.3, Handshake \[length 0005\], KeyUpdate/, 's_server received our KeyUpdate');
  t.match(peer.stdout, />>> TLS 1\.3, Handshake \[length 0005\], KeyUpdate/, 's_server answered with its own (update_requested)');
});

t.test('KeyUpdate: qkd-tls library client, both directions, data before and after', SUBTEST, async (t) => {
  const { peer, port } = await sServer(t, ['-rev']);
  const socket = await libraryClient(t, port);
  await checkReversed(t, socket, 'before the update');
  const directions: string[] = [];
  socket.on('keyUpdate', (d: string) => directions.push(d));
  socket.keyUpdate(true);
  await checkReversed(t, socket, 'after the update');
  t.same(directions.sort(), ['read', 'write'], 'our keys and the server keys both moved on');
  await closeAgainst(t, socket, peer);
});

t.test('KeyUpdate: s_client "k" and "K" commands against the qkd-tls server', SUBTEST, async (t) => {
  const { port, sockets } = await libraryEchoServer(t);
  const client = sClient(t, port, []);
  await checkEcho(t, client, 'before any update');
  const directions: string[] = [];
  sockets[0].on('keyUpdate', (d: string) => directions.push(d));
  // s_client reads a command line on its own: wait for it to act before typing the next line.
  const keyUpdates = (n: number) => (s: string) => (s.match(/KEYUPDATE/g)?.length ?? 0) >= n;
  client.write('k\n');
  await client.waitFor(keyUpdates(1), WAIT, 'stderr');
  await checkEcho(t, client, 'after k');
  t.same(directions, ['read'], '"k": the client updated its keys, not asking us to');
  client.write('K\n');
  await client.waitFor(keyUpdates(2), WAIT, 'stderr');
  await checkEcho(t, client, 'after K');
  t.same(directions, ['read', 'read', 'write'], '"K": the client asked us to update ours too');
  client.end();
  t.equal((await client.waitExit(WAIT)).code, 0);
});

// --- close without close_notify ------------------------------------------------------------------------------

/** `qkd-tls server --once --json` with the static PSK, listening on a free port. */
async function onceServer(t: Tap): Promise<{ server: ReturnType<typeof spawnQkdTls>; port: number }> {
  const server = spawnQkdTls(t, ['server', '--listen', '127.0.0.1:0', '--psk', PSK_HEX, '--identity', PSK_IDENTITY, '--json', '--once']);
  await server.waitFor((s) => jsonEvent(s, 'listening') !== undefined, WAIT, 'stderr');
  return { server, port: Number(String(jsonEvent(server.stderr, 'listening')!.address).split(':').pop()) };
}

t.test('truncation: s_client killed mid-connection; the qkd-tls server CLI --once reports it and exits 1', SUBTEST, async (t) => {
  const { server, port } = await onceServer(t);
  const client = sClient(t, port, []);
  await checkEcho(t, client, 'and then the client is gone');
  // SIGKILL: the TCP connection ends (FIN) with no close_notify, as when a client crashes.
  await client.kill('SIGKILL');
  t.equal((await server.waitExit(WAIT)).code, 1, 'the --once server exits 1: the connection did not end cleanly');
  t.match(jsonEvent(server.stderr, 'error'), { message: 'the client cut the TLS connection without close_notify (truncated)' });
});

t.test('a clean close: s_client "Q" (close_notify); the qkd-tls server CLI --once exits 0', SUBTEST, async (t) => {
  const { server, port } = await onceServer(t);
  const client = sClient(t, port, []);
  await checkEcho(t, client, 'then Q');
  client.write('Q\n');
  t.equal((await client.waitExit(WAIT)).code, 0, 's_client exits 0');
  t.equal((await server.waitExit(WAIT)).code, 0, 'the --once server exits 0');
  t.equal(jsonEvent(server.stderr, 'error'), undefined, 'no failure reported');
});

// --- the wrong key -----------------------------------------------------------------------------------------------

t.test('wrong key: qkd-tls client CLI against s_server', SUBTEST, async (t) => {
  const { peer, port } = await sServer(t, ['-rev']);
  const cli = spawnQkdTls(t, ['client', '--connect', `127.0.0.1:${port}`, '--psk', WRONG_PSK_HEX, '--identity', PSK_IDENTITY]);
  cli.write('never delivered\n');
  const exit = await cli.waitExit(WAIT);
  t.equal(exit.code, 1, 'the client exits 1');
  // OpenSSL up to 3.3 (Debian's 3.0 here) sends illegal_parameter for a bad binder, 3.4 and later decrypt_error.
  const version = spawnSync('openssl', ['version'], { encoding: 'utf8' }).stdout;
  const expected = opensslBinderAlert(version);
  // The line says the likely cause first (the library's hint), then the command's option names.
  t.match(
    cli.stderr,
    expected === 'illegal_parameter'
      ? /^tls alert: illegal_parameter \(47\) received: the server refused our ClientHello, most likely because it holds another key for this identity \(or none\), or binds it to another hash: .*: check --psk and --identity, and --psk-hash on both sides\n$/
      : /^tls alert: decrypt_error \(51\) received: the server could not verify the key we offered: .*: check --psk, and --psk-hash on both sides\n$/,
    `${version.trim()} sent ${expected}; the client names it and what to check`,
  );
  t.comment(`qkd-tls client: ${cli.stderr.trim()}`);
  await peer.waitExit(WAIT);
  t.match(peer.output, 'binder does not verify', 's_server reports the bad binder');
  t.equal(cli.stdout, '', 'no data was exchanged');
});

t.test('unknown identity: qkd-tls client CLI against s_server (missing_extension: OpenSSL wants a certificate handshake)', SUBTEST, async (t) => {
  const { peer, port } = await sServer(t, ['-rev']);
  const cli = spawnQkdTls(t, ['client', '--connect', `127.0.0.1:${port}`, '--psk', PSK_HEX, '--identity', 'nobody']);
  cli.end();
  t.equal((await cli.waitExit(WAIT)).code, 1, 'the client exits 1');
  // Having accepted no PSK, OpenSSL goes on to certificate authentication, which needs signature_algorithms (RFC 8446
  // §4.2.3); a PSK-only ClientHello has none. The line said only "tls alert: missing_extension (109) received".
  t.match(
    cli.stderr,
    /^tls alert: missing_extension \(109\) received: the server accepted none of the PSKs we offered .*most likely it has no key for this identity, or binds it to another hash; its log says which: a wrong --identity\? --importer or --context on one side only\? --psk-hash on one side only\?\n$/,
  );
  await peer.waitExit(WAIT);
  t.match(peer.output, 'missing sigalgs extension', 's_server reports the missing signature_algorithms');
});

t.test('wrong key: s_client against the qkd-tls server CLI (decrypt_error)', SUBTEST, async (t) => {
  const server = spawnQkdTls(t, ['server', '--listen', '127.0.0.1:0', '--psk', PSK_HEX, '--identity', PSK_IDENTITY, '--once']);
  const listening = await server.waitFor(/listening: address=127\.0\.0\.1:\d+/, WAIT, 'stderr');
  const port = Number(/address=127\.0\.0\.1:(\d+)/.exec(listening)![1]);
  const client = sClient(t, port, [], ['-psk', WRONG_PSK_HEX]);
  const exit = await client.waitExit(WAIT);
  t.not(exit.code, 0, 's_client fails');
  t.match(client.output, /alert decrypt error.*SSL alert number 51/, 's_client received decrypt_error (51)');
  t.equal((await server.waitExit(WAIT)).code, 1, 'the --once server exits 1');
  t.match(server.stderr, 'tls alert: decrypt_error (51) sent: PSK binder does not verify', 'the server names the alert it sent');
});

// --- a client's alert while its 0-RTT is in flight ----------------------------------------------------------------

/**
 * A TCP relay to `port` that passes the client's bytes on untouched and changes the cipher suite of the server's
 * first record, the ServerHello, to TLS_AES_128_CCM_8_SHA256, which the client never offers (RFC 8446 §4.1.3:
 * illegal_parameter). Returns the relay's port.
 */
async function serverHelloTamperer(tt: TestLike, port: number): Promise<number> {
  const relay = createServer((client) => {
    const server = createConnection({ host: '127.0.0.1', port });
    let pending: Buffer | undefined = Buffer.alloc(0);
    client.on('data', (d) => server.write(d));
    server.on('data', (d: Buffer) => {
      if (!pending) return void client.write(d);
      pending = Buffer.concat([pending, d]);
      if (pending.length < 5 || pending.length < 5 + pending.readUInt16BE(3)) return;
      // record header 5, handshake header 4, legacy_version 2, random 32, legacy_session_id_echo <0..32>, cipher_suite
      const suiteAt = 5 + 4 + 2 + 32 + 1 + pending[5 + 4 + 2 + 32];
      pending[suiteAt] = 0x13;
      pending[suiteAt + 1] = 0x05;
      client.write(pending);
      pending = undefined;
    });
    for (const [a, b] of [[client, server], [server, client]] as const) {
      a.on('end', () => b.end());
      a.on('error', () => b.destroy());
      a.on('close', () => b.destroy());
    }
  });
  tt.teardown(() => relay.close());
  await new Promise<void>((resolve) => relay.listen(0, '127.0.0.1', resolve));
  return (relay.address() as AddressInfo).port;
}

// RFC 8446 §4.2.10 does not say under which keys a client's alert goes while its 0-RTT is in flight and it refuses the
// ServerHello. Under the early keys, a server that rejected 0-RTT skips it as undecryptable early data and waits; so the
// client sends it in plaintext (HandshakeState.beforeAlert, a3d17ab). OpenSSL reads it there in both cases: while it
// reads the accepted early data, and after rejecting it.
for (const accepting of [true, false]) {
  t.test(`0-RTT in flight, a refused ServerHello: s_server ${accepting ? '-early_data (accepting)' : '(rejecting 0-RTT)'} reads our plaintext illegal_parameter`, SUBTEST, async (t) => {
    const file = await pskSessionFile(t, psk.secret, 'TLS_AES_128_GCM_SHA256', 16384);
    const { peer, port } = await sServer(t, accepting ? ['-early_data'] : [], ['-psk_session', file]);
    const socket = connect({ host: '127.0.0.1', port: await serverHelloTamperer(t, port), psks: [psk], earlyData: utf8('in flight\n') });
    t.teardown(() => socket.destroy());
    const error = await once<Error>(socket, 'error', WAIT);
    t.match(error, { reason: 'ServerSelectedUnofferedSuite', alert: 'illegal_parameter' }, 'our client refuses the ServerHello');
    await peer.waitFor(/alert illegal parameter.*SSL alert number 47/, WAIT, 'stderr');
    t.pass('s_server received illegal_parameter (47)');
    if (accepting) t.match(peer.stdout, /in flight\n/, 's_server had read the early data before it');
  });
}
