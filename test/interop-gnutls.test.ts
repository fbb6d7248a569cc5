/**
 * Interoperability with GnuTLS's command-line tools on 127.0.0.1, both directions: the qkd-tls client
 * (library and CLI) against `gnutls-serv --echo --pskpasswd FILE`, and `gnutls-cli --pskusername/--pskkey`
 * against the qkd-tls server (library and CLI). GnuTLS names the TLS 1.3 key-exchange modes in its priority
 * string: +PSK is psk_ke (the PSK alone), +ECDHE-PSK is psk_dhe_ke. Each case checks the echoed bytes and what
 * both sides report; also a HelloRetryRequest, KeyUpdate in both directions (gnutls-cli's ^rekey^ inline
 * command), and the alerts for a wrong key.
 *
 * On a bad binder GnuTLS 3.7 sends illegal_parameter (qkd-tls sends decrypt_error, as RFC 8446 §4.2.11.2
 * asks), and for an identity it has no key for too; the tests pin both, and the client's hint for them.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { fromHex, utf8 } from '../lib/codec/bytes.js';
import type { KexMode } from '../lib/config/options.js';
import { TlsError } from '../lib/errors.js';
import type { SupportedSuiteName } from '../lib/suites.js';
import { connect, type QkdTlsSocket } from '../lib/transport/node.js';
import {
  gnutlsServer,
  jsonEvent,
  missingPrograms,
  once,
  type Peer,
  PSK_HEX,
  PSK_IDENTITY,
  readBytes,
  spawnPeer,
  spawnQkdTls,
  type Tap,
  type TestLike,
  WRONG_PSK_HEX,
  withTimeout,
} from './helpers/peers.js';
import { libraryClient, libraryEchoServer, PEER_PSK } from './helpers/library.js';

const skip = missingPrograms(t, 'gnutls-serv', 'gnutls-cli');
const SUBTEST = { timeout: 30_000, skip };
const WAIT = 10_000;

const psk = PEER_PSK;

/** GnuTLS priority strings: TLS 1.3 only, with psk_ke (+PSK) and/or psk_dhe_ke (+ECDHE-PSK). */
const PRIORITY = {
  psk_ke: 'NORMAL:-VERS-ALL:+VERS-TLS1.3:+PSK',
  psk_dhe_ke: 'NORMAL:-VERS-ALL:+VERS-TLS1.3:+ECDHE-PSK',
  both: 'NORMAL:-VERS-ALL:+VERS-TLS1.3:+ECDHE-PSK:+PSK',
} as const;

// --- helpers ------------------------------------------------------------------------------------------------

/** Starts `gnutls-serv --echo` with a PSK password file (`identity:hexkey`) on a free port. */
async function gnutlsServ(tt: TestLike, priority: string, keyHex = PSK_HEX): Promise<{ peer: Peer; port: number }> {
  const dir = await mkdtemp(join(tmpdir(), 'qkd-tls-gnutls-'));
  tt.teardown(() => rm(dir, { recursive: true, force: true }));
  const passwd = join(dir, 'psk.passwd');
  await writeFile(passwd, `${PSK_IDENTITY}:${keyHex}\n`, { mode: 0o600 });
  return gnutlsServer(tt, ['--echo', '--pskpasswd', passwd, '--priority', priority, '--disable-client-cert'], WAIT);
}

/** Starts gnutls-cli against a port; its stdin is sent line by line, what it receives goes to stdout. */
function gnutlsCli(tt: TestLike, port: number, priority: string, extra: string[] = [], keyHex = PSK_HEX): Peer {
  return spawnPeer(tt, 'gnutls-cli', ['--pskusername', PSK_IDENTITY, '--pskkey', keyHex, '--priority', priority, '--port', String(port), ...extra, '127.0.0.1']);
}

/** Writes a line and checks that the same bytes come back. */
async function checkEcho(tt: Tap, socket: QkdTlsSocket, line: string): Promise<void> {
  socket.write(line + '\n');
  const back = await readBytes(socket, line.length + 1, WAIT);
  tt.equal(back.toString('latin1'), line + '\n', `"${line}" came back`);
}

/** Sends a line through gnutls-cli and waits for the qkd-tls echo server to return it. */
async function checkCliEcho(tt: Tap, cli: Peer, line: string): Promise<void> {
  cli.write(line + '\n');
  await cli.waitFor(line + '\n', WAIT, 'stdout');
  tt.pass(`gnutls-cli got "${line}" echoed back`);
}

async function closeClient(socket: QkdTlsSocket): Promise<void> {
  socket.end();
  await withTimeout(new Promise((resolve) => socket.once('close', resolve)), WAIT, 'the client to close');
}

// --- qkd-tls client -> gnutls-serv -----------------------------------------------------------------------------

const CLIENT_CASES: { name: string; priority: string; kexModes: KexMode[]; suites?: SupportedSuiteName[]; kex: KexMode }[] = [
  { name: '+ECDHE-PSK, psk_dhe_ke', priority: PRIORITY.psk_dhe_ke, kexModes: ['psk_dhe_ke'], kex: 'psk_dhe_ke' },
  { name: '+PSK, psk_ke', priority: PRIORITY.psk_ke, kexModes: ['psk_ke'], kex: 'psk_ke' },
  { name: '+PSK only, the client offers both modes', priority: PRIORITY.psk_ke, kexModes: ['psk_dhe_ke', 'psk_ke'], kex: 'psk_ke' },
  { name: '+ECDHE-PSK:+PSK, the client offers both modes', priority: PRIORITY.both, kexModes: ['psk_dhe_ke', 'psk_ke'], kex: 'psk_dhe_ke' },
  { name: 'ChaCha20-Poly1305', priority: PRIORITY.psk_dhe_ke, kexModes: ['psk_dhe_ke'], suites: ['TLS_CHACHA20_POLY1305_SHA256'], kex: 'psk_dhe_ke' },
];

for (const c of CLIENT_CASES) {
  t.test(`qkd-tls client -> gnutls-serv: ${c.name}`, SUBTEST, async (t) => {
    const { peer, port } = await gnutlsServ(t, c.priority);
    const socket = await libraryClient(t, port, { kexModes: c.kexModes, suites: c.suites });
    const info = socket.handshake!;
    t.equal(info.kex, c.kex);
    t.equal(info.group, c.kex === 'psk_dhe_ke' ? 'x25519' : null);
    t.equal(info.suite, c.suites?.[0] ?? 'TLS_AES_128_GCM_SHA256');
    await checkEcho(t, socket, `hello gnutls (${c.name})`);
    await closeClient(socket);
    await peer.waitFor(`Connected as '${PSK_IDENTITY}'`, WAIT);
    t.pass('gnutls-serv reports PSK authentication as our identity');
    if (c.kex === 'psk_dhe_ke') t.match(peer.output, 'Ephemeral EC Diffie-Hellman parameters', 'gnutls-serv used ECDHE');
    else t.notMatch(peer.output, 'Ephemeral EC Diffie-Hellman parameters', 'gnutls-serv used no ECDHE');
  });
}

t.test('qkd-tls client CLI -> gnutls-serv', SUBTEST, async (t) => {
  const { port } = await gnutlsServ(t, PRIORITY.both);
  const cli = spawnQkdTls(t, ['client', '--connect', `127.0.0.1:${port}`, '--psk', PSK_HEX, '--identity', PSK_IDENTITY, '--json', '--kex-modes', 'psk_ke']);
  cli.write('from the qkd-tls command line\n');
  await cli.waitFor('from the qkd-tls command line\n', WAIT, 'stdout');
  cli.end();
  t.equal((await cli.waitExit(WAIT)).code, 0, 'the client exits 0');
  t.match(jsonEvent(cli.stderr, 'handshake'), { version: 'TLSv1.3', kex: 'psk_ke', group: null, identity: PSK_IDENTITY });
});

t.test('HelloRetryRequest: qkd-tls client shares x25519, gnutls-serv allows only secp256r1', SUBTEST, async (t) => {
  const { port } = await gnutlsServ(t, `${PRIORITY.psk_dhe_ke}:-GROUP-ALL:+GROUP-SECP256R1`);
  const socket = await libraryClient(t, port, { groups: ['x25519', 'secp256r1'] });
  t.equal(socket.handshake!.helloRetry, true);
  t.equal(socket.handshake!.group, 'secp256r1');
  await checkEcho(t, socket, 'after the retry');
  await closeClient(socket);
});

// RFC 6066 §3: a HostName is ASCII, an internationalized name in its A-label form. GnuTLS 3.7 answers a raw
// UTF-8 server_name with illegal_parameter, so the client refuses such a name before anything is sent.
const IDN = 'bücher.example';
const IDN_A_LABEL = 'xn--bcher-kva.example';

t.test('SNI: a non-ASCII serverName is refused before sending (RFC 6066 §3); its A-label form goes to gnutls-serv', SUBTEST, async (t) => {
  const { port } = await gnutlsServ(t, PRIORITY.psk_dhe_ke);
  const refused = connect({ host: '127.0.0.1', port, psks: [psk], serverName: IDN });
  t.teardown(() => refused.destroy());
  const err = await withTimeout(new Promise<Error>((resolve) => refused.once('error', resolve)), WAIT, 'the client to refuse the name');
  t.type(err, TypeError, `not sent (GnuTLS would answer illegal_parameter): ${err.message}`);
  t.match(err.message, /serverName: contains "ü" \(U\+00FC\), which is not ASCII; .*A-label form/);
  const socket = await libraryClient(t, port, { serverName: IDN_A_LABEL });
  await checkEcho(t, socket, 'named by A-labels');
  await closeClient(socket);
});

t.test('SNI: the qkd-tls client CLI refuses a non-ASCII --server-name (usage error), takes the A-label form', SUBTEST, async (t) => {
  const { port } = await gnutlsServ(t, PRIORITY.psk_dhe_ke);
  const args = ['client', '--connect', `127.0.0.1:${port}`, '--psk', PSK_HEX, '--identity', PSK_IDENTITY, '--json'];
  const bad = spawnQkdTls(t, [...args, '--server-name', IDN]);
  bad.end();
  t.equal((await bad.waitExit(WAIT)).code, 2, 'a usage error, not a handshake GnuTLS fails with illegal_parameter');
  t.match(bad.stderr, /--server-name: contains \S+ \(U\+00FC\), which is not ASCII; .*A-label form/);
  const cli = spawnQkdTls(t, [...args, '--server-name', IDN_A_LABEL]);
  cli.write('sni as a-labels\n');
  await cli.waitFor('sni as a-labels\n', WAIT, 'stdout');
  cli.end();
  t.equal((await cli.waitExit(WAIT)).code, 0, 'the client exits 0');
});

t.test('KeyUpdate: qkd-tls library client against gnutls-serv', SUBTEST, async (t) => {
  const { port } = await gnutlsServ(t, PRIORITY.psk_dhe_ke);
  const socket = await libraryClient(t, port);
  await checkEcho(t, socket, 'before the update');
  const directions: string[] = [];
  socket.on('keyUpdate', (d: string) => directions.push(d));
  socket.keyUpdate(true);
  await checkEcho(t, socket, 'after the update');
  t.same(directions.sort(), ['read', 'write'], 'gnutls-serv answered update_requested with its own KeyUpdate');
  await closeClient(socket);
});

// --- gnutls-cli -> qkd-tls server ------------------------------------------------------------------------------

for (const kex of ['psk_dhe_ke', 'psk_ke'] as const) {
  t.test(`gnutls-cli -> qkd-tls server: ${kex}`, SUBTEST, async (t) => {
    const { port, sockets } = await libraryEchoServer(t);
    const cli = gnutlsCli(t, port, PRIORITY[kex]);
    await checkCliEcho(t, cli, `hello qkd-tls from gnutls (${kex})`);
    const info = sockets[0].handshake!;
    t.equal(info.kex, kex);
    t.equal(info.group, kex === 'psk_dhe_ke' ? 'x25519' : null);
    t.equal(info.identity, PSK_IDENTITY);
    t.match(cli.output, `Connected as '${PSK_IDENTITY}'`);
    cli.end();
    t.equal((await cli.waitExit(WAIT)).code, 0, 'gnutls-cli exits 0');
  });
}

t.test('gnutls-cli -> qkd-tls server CLI', SUBTEST, async (t) => {
  const server = spawnQkdTls(t, ['server', '--listen', '127.0.0.1:0', '--psk', PSK_HEX, '--identity', PSK_IDENTITY, '--json', '--once']);
  await server.waitFor((s) => jsonEvent(s, 'listening') !== undefined, WAIT, 'stderr');
  const port = Number(String(jsonEvent(server.stderr, 'listening')!.address).split(':').pop());
  const cli = gnutlsCli(t, port, PRIORITY.both);
  await checkCliEcho(t, cli, 'to the qkd-tls command line');
  cli.end();
  t.equal((await cli.waitExit(WAIT)).code, 0, 'gnutls-cli exits 0');
  t.equal((await server.waitExit(WAIT)).code, 0, 'the --once server exits 0');
  t.match(jsonEvent(server.stderr, 'handshake'), { kex: 'psk_dhe_ke', group: 'x25519', identity: PSK_IDENTITY });
});

t.test('HelloRetryRequest: qkd-tls server wants secp384r1, gnutls-cli shares x25519 and secp256r1', SUBTEST, async (t) => {
  // GnuTLS sends a share for its first group and for its first group of the other kind (x25519 and
  // secp256r1 here), so the server asks for the third.
  const { port, sockets } = await libraryEchoServer(t, { groups: ['secp384r1'] });
  const cli = gnutlsCli(t, port, `${PRIORITY.psk_dhe_ke}:-GROUP-ALL:+GROUP-X25519:+GROUP-SECP256R1:+GROUP-SECP384R1`);
  await checkCliEcho(t, cli, 'retried');
  t.equal(sockets[0].handshake!.helloRetry, true);
  t.equal(sockets[0].handshake!.group, 'secp384r1');
  cli.end();
  t.equal((await cli.waitExit(WAIT)).code, 0);
});

t.test('KeyUpdate: gnutls-cli ^rekey1^ and ^rekey^ against the qkd-tls server', SUBTEST, async (t) => {
  const { port, sockets } = await libraryEchoServer(t);
  const cli = gnutlsCli(t, port, PRIORITY.psk_dhe_ke, ['--inline-commands']);
  await checkCliEcho(t, cli, 'before any update');
  const directions: string[] = [];
  sockets[0].on('keyUpdate', (d: string) => directions.push(d));
  const rekeys = (n: number) => (s: string) => (s.match(/Rekey was completed/g)?.length ?? 0) >= n;
  cli.write('^rekey1^\n');
  await cli.waitFor(rekeys(1), WAIT);
  await checkCliEcho(t, cli, 'after rekey1');
  t.same(directions, ['read'], '^rekey1^: gnutls updated its own keys only');
  cli.write('^rekey^\n');
  await cli.waitFor(rekeys(2), WAIT);
  await checkCliEcho(t, cli, 'after rekey');
  t.same(directions, ['read', 'read', 'write'], '^rekey^: gnutls asked us to update ours too');
  cli.end();
  t.equal((await cli.waitExit(WAIT)).code, 0);
});

// --- the wrong key --------------------------------------------------------------------------------------------

t.test('wrong key: qkd-tls client against gnutls-serv', SUBTEST, async (t) => {
  const { peer, port } = await gnutlsServ(t, PRIORITY.both);
  const socket = connect({ host: '127.0.0.1', port, psks: [{ ...psk, secret: fromHex(WRONG_PSK_HEX) }] });
  t.teardown(() => socket.destroy());
  const err = await withTimeout(new Promise<Error>((resolve) => socket.once('error', resolve)), WAIT, 'the handshake to fail');
  t.type(err, TlsError);
  const tlsErr = err as TlsError;
  t.equal(tlsErr.remote, true, 'the alert came from gnutls-serv');
  // GnuTLS 3.7 answers a binder it cannot verify with illegal_parameter, not decrypt_error (RFC 8446 §4.2.11.2).
  t.match(tlsErr, { reason: 'PeerSentAlert', alert: 'illegal_parameter', alertCode: 47 }, 'gnutls-serv rejected the binder with illegal_parameter');
  t.match(tlsErr.hint, /^the server refused our ClientHello, most likely because it holds another key for this identity \(or none\), or binds it to another hash: .*GnuTLS/, 'the hint says the likely cause first');
  t.comment(`qkd-tls client: ${tlsErr.message}`);
  await peer.waitFor('Error in handshake: An illegal parameter has been received', WAIT);
  t.pass('gnutls-serv reports a failed handshake');
});

t.test('unknown identity: qkd-tls client against gnutls-serv (illegal_parameter too)', SUBTEST, async (t) => {
  const { peer, port } = await gnutlsServ(t, PRIORITY.both);
  const socket = connect({ host: '127.0.0.1', port, psks: [{ ...psk, identity: utf8('nobody') }] });
  t.teardown(() => socket.destroy());
  const err = (await withTimeout(new Promise<Error>((resolve) => socket.once('error', resolve)), WAIT, 'the handshake to fail')) as TlsError;
  t.type(err, TlsError);
  // GnuTLS 3.7 answers an identity it has no key for with illegal_parameter as well: the hint says "(or none)".
  t.match(err, { remote: true, reason: 'PeerSentAlert', alert: 'illegal_parameter', alertCode: 47 });
  t.match(err.hint, /^the server refused our ClientHello, most likely because it holds another key for this identity \(or none\).*GnuTLS for an unknown identity too/);
  await peer.waitFor('Error in handshake', WAIT);
  t.pass('gnutls-serv reports a failed handshake');
});

t.test('wrong key: gnutls-cli against the qkd-tls server (decrypt_error)', SUBTEST, async (t) => {
  const { server } = await libraryEchoServer(t);
  const failure = withTimeout(new Promise<Error>((resolve) => server.once('tlsClientError', resolve)), WAIT, 'tlsClientError');
  const cli = gnutlsCli(t, server.address().port, PRIORITY.both, [], WRONG_PSK_HEX);
  const err = (await failure) as TlsError;
  t.equal(err.reason, 'IncorrectBinder');
  t.equal(err.alert, 'decrypt_error');
  t.equal(err.remote, false, 'the server sent the alert');
  await cli.waitFor('Received alert [51]: Decrypt error', WAIT);
  t.pass('gnutls-cli received decrypt_error (51)');
  t.not((await cli.waitExit(WAIT)).code, 0, 'gnutls-cli fails');
});
