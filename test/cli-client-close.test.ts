/**
 * How `qkd-tls client` ends (run as a child process, as users and scripts run it):
 * - the server sends its data and close_notify: the client writes the data out, sends its own close_notify and
 *   exits 0 — also while its stdin is still open (a script piping into it must not hang), and also when the
 *   server closes the TCP connection right after its close_notify;
 * - `--half-close`: after the server's close_notify the client keeps sending stdin until stdin ends;
 * - the connection cut without close_notify: exit code 1 and "truncated" on stderr, the data received so far
 *   still written out.
 */
import { createConnection, createServer as createNetServer, type AddressInfo, type Socket } from 'node:net';
import t from 'tap';
import { clientFailureHint } from '../bin/cli/report.js';
import { utf8 } from '../lib/codec/bytes.js';
import { TlsError } from '../lib/errors.js';
import { nodeProvider } from '../lib/crypto/node.js';
import { connect, createServer, type QkdTlsSocket } from '../lib/transport/node.js';
import { resetSocket } from '../lib/transport/tcp-end.js';
import { makePsk } from './helpers/pair.js';
import { jsonEvent, type Peer, PSK_IDENTITY, spawnQkdTls, type Tap, withTimeout } from './helpers/peers.js';

const WAIT = 15_000;
const PSK_HEX = '6b3a1f0e9d8c7b6a5948372615f4e3d2c1b0a9f8e7d6c5b4a3928170f6e5d4c3';
const psk = { ...makePsk(PSK_IDENTITY), secret: Buffer.from(PSK_HEX, 'hex') };

/** A library server running `onSecure` for its one connection; resolves the port. */
async function server(tt: Tap, onSecure: (socket: QkdTlsSocket) => void): Promise<number> {
  const s = createServer({ crypto: nodeProvider, psks: [psk] }, onSecure);
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  tt.teardown(() => {
    s.destroyAll();
    s.close();
  });
  return s.address().port;
}

/** Collects what the server's socket receives until the client's close_notify (or the socket closes). */
function collect(socket: QkdTlsSocket): Promise<{ data: string; closeNotify: boolean }> {
  return new Promise((resolve) => {
    let data = '';
    socket.on('data', (b: Buffer) => (data += b.toString('utf8')));
    socket.on('error', () => {});
    socket.once('end', () => resolve({ data, closeNotify: socket.connection?.peerClosed === true }));
    socket.once('close', () => resolve({ data, closeNotify: socket.connection?.peerClosed === true }));
  });
}

/** `qkd-tls server` (an echo server) with the static key, and where it listens. */
async function echoServer(tt: Tap): Promise<{ server: Peer; host: string; port: number }> {
  const server = spawnQkdTls(tt, ['server', '--listen', '127.0.0.1:0', '--psk', PSK_HEX, '--identity', PSK_IDENTITY]);
  const address = /listening: address=(\S+)/.exec(await server.waitFor(/listening: address=\S+/, WAIT, 'stderr'))![1];
  const [host, port] = address.split(':');
  return { server, host, port: Number(port) };
}

function client(tt: Tap, port: number, extra: string[] = []) {
  return spawnQkdTls(tt, ['client', '--connect', `127.0.0.1:${port}`, '--psk', PSK_HEX, '--identity', PSK_IDENTITY, ...extra]);
}

t.test("the server's close_notify ends the client, although its stdin is still open", async (tt) => {
  let serverSide!: Promise<{ data: string; closeNotify: boolean }>;
  const port = await server(tt, (socket) => {
    serverSide = collect(socket);
    socket.end('hello from the server\n'); // data, then close_notify; the server still reads
  });
  const c = client(tt, port); // stdin stays open
  const exit = await c.waitExit(WAIT);
  tt.equal(exit.code, 0, `exit code 0\n${c.transcript()}`);
  tt.equal(c.stdout, 'hello from the server\n', 'the data was written out');
  const got = await withTimeout(serverSide, WAIT, 'the server side');
  tt.ok(got.closeNotify, 'the client sent its own close_notify');
});

t.test('the same when the server closes the TCP connection right after its close_notify', async (tt) => {
  const port = await server(tt, (socket) => {
    socket.end('bye\n');
    socket.on('error', () => {});
    socket.once('finish', () => socket.socket.destroy());
  });
  const c = client(tt, port);
  const exit = await c.waitExit(WAIT);
  tt.equal(exit.code, 0, `exit code 0\n${c.transcript()}`);
  tt.equal(c.stdout, 'bye\n');
  tt.notMatch(c.stderr, /truncated/);
});

t.test('--half-close keeps sending stdin after the server closed its direction', async (tt) => {
  let serverSide!: Promise<{ data: string; closeNotify: boolean }>;
  const port = await server(tt, (socket) => {
    serverSide = collect(socket);
    socket.end('server done\n');
  });
  const c = client(tt, port, ['--half-close']);
  await c.waitFor('server done\n', WAIT, 'stdout');
  c.write('first line\n');
  c.write('second line\n');
  c.end();
  const exit = await c.waitExit(WAIT);
  tt.equal(exit.code, 0, `exit code 0\n${c.transcript()}`);
  const got = await withTimeout(serverSide, WAIT, 'the server side');
  tt.equal(got.data, 'first line\nsecond line\n', 'the server got what was sent after its close_notify');
  tt.ok(got.closeNotify, 'then the client closed with close_notify');
});

t.test('a connection cut without close_notify exits 1 and says "truncated"', async (tt) => {
  const port = await server(tt, (socket) => {
    socket.on('error', () => {});
    socket.write(utf8('partial data\n'), () => socket.socket.end()); // TCP FIN, no close_notify
  });
  const c = client(tt, port);
  const exit = await c.waitExit(WAIT);
  tt.equal(exit.code, 1, 'exit code 1');
  tt.match(c.stderr, /truncated/);
  tt.equal(c.stdout, 'partial data\n', 'what arrived was still written out');
});

t.test('--help documents --half-close', async (tt) => {
  const c = spawnQkdTls(tt, ['client', '--help']);
  await c.waitExit(WAIT);
  tt.match(c.stdout, /--half-close/);
});

// A failure the client cannot see the cause of says what to check (found in a README walkthrough): with a wrong key
// the server's log said "PSK binder does not verify (wrong key?)" and the client only "tls alert: decrypt_error (51)
// received"; a server not running gave Node's bare "connect ECONNREFUSED 127.0.0.1:PORT".
t.test('qkd-tls client: a wrong key, an unknown identity and no server each end in one line saying what to check', async (t) => {
  const port = await server(t, (socket) => socket.pipe(socket));
  const run = async (args: string[]): Promise<string> => {
    const client = spawnQkdTls(t, ['client', '--connect', `127.0.0.1:${port}`, ...args]);
    client.write('hello\n');
    client.end();
    t.equal((await client.waitExit(WAIT)).code, 1, `${args.join(' ')}: exit code 1`);
    return utf8Text(client.stderr);
  };
  const other = PSK_HEX.replace(/^6b/, '00');
  t.equal(await run(['--psk', other, '--identity', PSK_IDENTITY]), 'tls alert: decrypt_error (51) received: the server could not verify the key we offered: the two sides hold different keys for this identity, or bind it to different hashes (RFC 8446 §4.2.11.2): check --psk, and --psk-hash on both sides\n');
  // With --json the library's hint and the command's are the "hint" field, apart from the message, as for other errors.
  t.match(JSON.parse(await run(['--psk', other, '--identity', PSK_IDENTITY, '--json'])), {
    event: 'error',
    message: 'tls alert: decrypt_error (51) received',
    hint: 'the server could not verify the key we offered: the two sides hold different keys for this identity, or bind it to different hashes (RFC 8446 §4.2.11.2); check --psk, and --psk-hash on both sides',
    reason: 'PeerSentAlert',
    direction: 'received',
  });
  t.equal(
    await run(['--psk', PSK_HEX, '--identity', 'nobody']),
    'tls alert: unknown_psk_identity (115) received: the server has no key for any PSK identity we offered: check the identities on both sides, and that both or neither import the key with RFC 9258; its log says which it was offered (RFC 8446 §4.2.11): a wrong --identity? --importer or --context on one side only?\n',
  );
  // A port nothing listens on: one that was free a moment ago.
  const probe = createNetServer();
  await new Promise<void>((r) => probe.listen(0, '127.0.0.1', r));
  const free = (probe.address() as AddressInfo).port;
  await new Promise<void>((r) => probe.close(() => r()));
  const gone = spawnQkdTls(t, ['client', '--connect', `127.0.0.1:${free}`, '--psk', PSK_HEX, '--identity', PSK_IDENTITY]);
  gone.end();
  t.equal((await gone.waitExit(WAIT)).code, 1, 'no server: exit code 1');
  t.equal(gone.stderr, `connect ECONNREFUSED 127.0.0.1:${free}: nothing listens there (is the server running?)\n`);
  // A server that resets the connection once the handshake is done (a server killed mid-transfer): it said only
  // "read ECONNRESET".
  const resetting = await server(t, (socket) => resetSocket(socket.socket as Socket));
  const reset = spawnQkdTls(t, ['client', '--connect', `127.0.0.1:${resetting}`, '--psk', PSK_HEX, '--identity', PSK_IDENTITY]);
  reset.write('hello\n');
  t.equal((await reset.waitExit(WAIT)).code, 1, 'a reset: exit code 1');
  t.match(reset.stderr, /ECONNRESET: the server reset the connection \(did it stop\?\); what arrived may be incomplete\n$/);
  // A peer that accepts the connection and never answers (not a TLS server).
  const silent = createNetServer(() => {});
  await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
  t.teardown(() => silent.close());
  const mute = spawnQkdTls(t, ['client', '--connect', `127.0.0.1:${(silent.address() as AddressInfo).port}`, '--psk', PSK_HEX, '--identity', PSK_IDENTITY, '--handshake-timeout', '1']);
  mute.end();
  t.equal((await mute.waitExit(WAIT)).code, 1, 'a silent peer: exit code 1');
  t.equal(mute.stderr, 'tls alert: internal_error (80) sent: the TLS handshake timed out after 1000 ms: the server did not answer in time (is it a TLS server? its log, or its key manager, may say why)\n');
});

t.test('qkd-tls client with QKD keys: a timeout while the KME has not answered blames the KME, not the server', async (t) => {
  // The handshake timer runs from the connect, the key fetch included: with a KME that never answers the client sent
  // nothing, yet its hint said "the server did not answer in time (is it a TLS server? ...)".
  const silent = createNetServer(() => {});
  await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
  t.teardown(() => silent.close());
  const port = (silent.address() as AddressInfo).port;
  const client = spawnQkdTls(t, [
    'client', '--connect', `127.0.0.1:${port}`, '--kme', `http://127.0.0.1:${port}`, '--sae-id', 'client-sae', '--peer-sae-id', 'server-sae',
    '--handshake-timeout', '1', '--kme-timeout', '60000',
  ]);
  client.end();
  t.equal((await client.waitExit(WAIT)).code, 1, 'exit code 1');
  t.equal(
    client.stderr,
    'tls alert: internal_error (80) not sent: the TLS handshake timed out after 1000 ms: no QKD key from the KME in time, so nothing was sent to the server (is the KME answering? --kme-timeout)\n',
  );
});

t.test('qkd-tls client with QKD keys: an unknown identity points at the server and its key manager, not at --identity', async (t) => {
  // With --kme there is no --identity: the hint for static keys sent the reader looking for an option they never gave.
  const kme = spawnQkdTls(t, ['kme', '--listen', '127.0.0.1:0', '--insecure-http', '--json']);
  const up = jsonEvent(await kme.waitFor(/"event":"listening"/, WAIT, 'stdout'), 'listening') as { master: { url: string }; slave: { url: string } };
  const [master, slave] = [up.master.url, up.slave.url];
  // The server takes keys from another SAE than the client's.
  const server = spawnQkdTls(t, ['server', '--listen', '127.0.0.1:0', '--json', '--kme', slave, '--sae-id', 'server-sae', '--peer-sae-id', 'someone-else']);
  const listening = jsonEvent(await server.waitFor(/"event":"listening"/, WAIT, 'stderr'), 'listening') as { address: string };
  const client = spawnQkdTls(t, ['client', '--connect', listening.address, '--kme', master, '--sae-id', 'client-sae', '--peer-sae-id', 'server-sae']);
  client.end();
  t.equal((await client.waitExit(WAIT)).code, 1, 'exit code 1');
  t.equal(
    utf8Text(client.stderr),
    'tls alert: unknown_psk_identity (115) received: the server has no key for any PSK identity we offered: check the identities on both sides, and that both or neither import the key with RFC 9258; its log says which it was offered (RFC 8446 §4.2.11): another --peer-sae-id on its side? a KME that does not share this key?\n',
  );
});

t.test('qkd-tls client: a decrypt_error from the server with QKD keys does not send the reader to a key they never typed', async (t) => {
  // It said "a wrong key, or another --psk-hash?" with --kme too, where the key is the KME's: the likely cause is a
  // server whose KME gave it another key under that key ID.
  // The library's hint (TlsError.hint, in the message) says what went wrong; the command adds only its options' names.
  const received = new TlsError('PeerSentAlert', undefined, { remote: true, alertCode: 51, hint: 'the server could not verify the key we offered' });
  t.equal(received.alert, 'decrypt_error');
  t.equal(clientFailureHint(received, true), 'did its KME give it another key for that key ID? --psk-hash on one side only?', 'with --kme: the KME, or the hash');
  t.equal(clientFailureHint(received, false), 'check --psk, and --psk-hash on both sides', 'with --psk: the key, or the hash');
  t.equal(clientFailureHint(new TlsError('PeerSentAlert', undefined, { remote: true, alertCode: 51 }), false), undefined, 'no library hint (the core could not tell): no guess');
});

t.test('qkd-tls client: a missing_extension from an OpenSSL or Node server (an identity it has no key for) names the options to check', async (t) => {
  // OpenSSL (Node's node:tls too) that accepts none of the PSKs asks for signature_algorithms (RFC 8446 §4.2.3): the
  // line said only "tls alert: missing_extension (109) received", with nothing to check.
  const received = new TlsError('PeerSentAlert', undefined, { remote: true, alertCode: 109, hint: 'the server accepted none of the PSKs we offered' });
  t.equal(received.alert, 'missing_extension');
  t.equal(clientFailureHint(received, false), 'a wrong --identity? --importer or --context on one side only? --psk-hash on one side only?', 'with --psk: the identity, the importer, or the hash');
  t.equal(clientFailureHint(received, true), 'another --peer-sae-id on its side? a KME that does not share this key? --psk-hash on one side only?', 'with --kme: the key ID, or the hash');
  t.equal(clientFailureHint(new TlsError('PeerSentAlert', undefined, { remote: true, alertCode: 109 }), false), undefined, 'no library hint (after the ServerHello): no guess');
});

t.test('qkd-tls server: a client that resets the connection is reported with its address and what it means', async (t) => {
  // It said only "read ECONNRESET", with no peer (found in a README walkthrough: a client killed mid-transfer).
  const { server, host, port } = await echoServer(t);
  // A busy machine may deliver the reset as an end of stream (reported as truncated): then try again, a few times.
  let line: string | undefined;
  for (let attempt = 0; attempt < 5 && line === undefined; attempt++) {
    const client = connect({ host, port, crypto: nodeProvider, psks: [psk] });
    client.on('error', () => {});
    await withTimeout(new Promise<void>((r) => client.once('secureConnect', () => r())), WAIT, 'the handshake');
    const raw = client.socket as Socket;
    const local = `${raw.localAddress}:${raw.localPort}`;
    await server.waitFor(`peer=${local}\n`, WAIT, 'stderr'); // its handshake line: the connection is up on both sides
    resetSocket(raw);
    const ended = new RegExp(`^.*\\(peer=${local}\\)\\n`, 'm');
    await server.waitFor((text) => ended.test(text.slice(text.indexOf(`peer=${local}\n`) + 1)), WAIT, 'stderr');
    const last = ended.exec(server.stderr.slice(server.stderr.indexOf(`peer=${local}\n`) + 1))![0];
    if (last.includes('ECONNRESET')) line = last.replace(`(peer=${local})`, '(peer=PEER)');
  }
  t.match(line, /^(read|write) ECONNRESET: the client reset the connection; what arrived may be incomplete \(peer=PEER\)\n$/, 'the reset, its meaning and the peer');
});

t.test('qkd-tls server: a client that resets the connection before the handshake completes is named by its address, and the reset said', async (t) => {
  // The server reads the address when the connection comes (bin/commands/server.ts): by the time the reset is
  // reported the socket is closed and has none, so the line said "(peer=undefined:undefined)". A reset after the
  // handshake line (the test above) does not show it: printing that line already read the address.
  const { server, host, port } = await echoServer(t);
  // A busy machine may deliver the reset as an end of stream (another line): then try again, a few times.
  let line: string | undefined;
  for (let attempt = 0; attempt < 5 && line === undefined; attempt++) {
    const before = server.stderr.length;
    const raw = createConnection({ host, port });
    raw.on('error', () => {});
    await withTimeout(new Promise<void>((r) => raw.once('connect', () => r())), WAIT, 'the TCP connection');
    const local = `${raw.localAddress}:${raw.localPort}`;
    // The server's first flight shows that it took the connection (a reset before that could find the socket already
    // without an address); the reset goes before the client's Finished, so there is no handshake line.
    raw.once('data', () => resetSocket(raw));
    connect({ socket: raw, crypto: nodeProvider, psks: [psk] }).on('error', () => {});
    const text = await server.waitFor((s) => s.slice(before).includes('\n'), WAIT, 'stderr');
    const got = text.slice(before, text.indexOf('\n', before) + 1);
    if (got.includes('ECONNRESET')) line = got.replace(local, 'PEER');
  }
  t.equal(line, 'read ECONNRESET: the client reset the connection before the handshake completed (peer=PEER)\n', 'the reset, what it means and the peer');
});

t.test('qkd-tls client: a handshake_failure before the ServerHello names the options that choose suites, modes and groups', async (t) => {
  // It said only the library's hint (no suite, mode or group in common, an unknown identity, the server's key):
  // the command's own options were not named, as they are for the other alerts.
  const received = new TlsError('PeerSentAlert', undefined, { remote: true, alertCode: 40, hint: 'the server found no acceptable cipher suite' });
  t.equal(received.alert, 'handshake_failure');
  t.equal(clientFailureHint(received, false), '--suites, --kex-modes or --groups it does not allow? a wrong --identity?', 'with --psk');
  t.equal(clientFailureHint(received, true), 'could its KME not give it this key (its log says)? or --suites, --kex-modes or --groups it does not allow?', 'with --kme');
  // End to end: a server that allows psk_ke only, a client that offers psk_dhe_ke only (RFC 8446 §4.2.9).
  const server = spawnQkdTls(t, ['server', '--listen', '127.0.0.1:0', '--psk', PSK_HEX, '--identity', PSK_IDENTITY, '--kex-modes', 'psk_ke', '--json']);
  const listening = await server.waitFor(/"event":"listening".*\n/, WAIT, 'stderr');
  const port = /"address":"127\.0\.0\.1:(\d+)"/.exec(listening)![1];
  const cli = spawnQkdTls(t, ['client', '--connect', `127.0.0.1:${port}`, '--psk', PSK_HEX, '--identity', PSK_IDENTITY, '--kex-modes', 'psk_dhe_ke']);
  cli.end();
  t.equal((await cli.waitExit(WAIT)).code, 1);
  t.match(cli.stderr, /handshake_failure \(40\) received: the server found no acceptable cipher suite, key exchange mode or group.*: --suites, --kex-modes or --groups it does not allow\? a wrong --identity\?/, 'the line names the options');
});

/** A peer's output as UTF-8 (the peer helper reads bytes as latin1; the library's hints cite 'RFC 8446 §...'). */
function utf8Text(latin1: string): string {
  return Buffer.from(latin1, 'latin1').toString('utf8');
}
