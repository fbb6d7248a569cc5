/**
 * Interoperability with tlslite-ng (github.com/tlsfuzzer/tlslite-ng), a third, independent TLS 1.3
 * implementation in pure Python, on 127.0.0.1 in both directions: a tlslite-ng client against `qkd-tls server`
 * (its echo), and `qkd-tls client` against a tlslite-ng echo server. tlslite-ng is vendored, pinned and
 * unmodified outside this repository (`../shared/vendor/tlslite-ng`, or TLSFUZZER_VENDOR); the driver
 * test/peers/tlslite-peer.py runs it under Debian's /usr/bin/python3 with python3-ecdsa, takes the PSK, hash,
 * modes, suites and groups as arguments and prints one JSON line with what tlslite-ng negotiated.
 *
 * Covered, each direction: psk_ke and psk_dhe_ke; TLS_AES_128_GCM_SHA256, TLS_AES_256_GCM_SHA384 (with a
 * SHA-384 PSK), TLS_CHACHA20_POLY1305_SHA256; x25519, secp256r1, ffdhe2048; a HelloRetryRequest (tlslite-ng's
 * carries a cookie); 100 KB echoed (several full records each way) with a KeyUpdate (update_requested) from
 * either side, answered by the other; record_size_limit (RFC 8449) at 64 on our side and 128 on tlslite-ng's,
 * checked on every protected record in both directions (our --trace-json); records padded by tlslite-ng (RFC
 * 8446 §5.4); an unknown key offered before the right one (selected_identity 1); close_notify both ways; a
 * wrong key. One way only: two key shares, one chosen without a retry, and no middlebox compatibility (our
 * client); 0-RTT data from our client, which tlslite-ng rejects (skipping those records) and we send again.
 * Each case asserts what both sides report (suite, kex, group, identity, bytes), not only that a handshake ran.
 *
 * What tlslite-ng (at the pinned commit) does differently or lacks:
 * - A server that cannot verify a binder sends illegal_parameter (handshakehelpers.py verify_binder raises
 *   TLSIllegalParameterException "Binder does not verify"); RFC 8446 §6.2 names decrypt_error for a PSK binder
 *   that does not validate, which is what qkd-tls sends. The test asserts each side's actual alert. An identity it
 *   has no key for gets handshake_failure ("Could not find acceptable PSK identity nor certificate").
 * - On a close_notify it answers with its own and closes at once (no half-close, RFC 8446 §6.1 allows that).
 * - It has no API to report a received KeyUpdate, and its close() also returns quietly on a connection closed
 *   without close_notify: the driver's TLSConnection subclass records both (_handle_keyupdate_request, _getMsg);
 *   the vendored code stays unmodified.
 * - No API says which PSK it used: the driver reads the identity from the hellos it sends and receives (the
 *   ServerHello's selected index into the ClientHello's identities), so a driver reporting the --identity it was
 *   given would not pass the two-key cases.
 * - HandshakeSettings.padding_cb has no effect through TLSConnection (tlsconnection.py sets it on its
 *   BufferedSocket, not on the RecordLayer that pads): the driver sets it on the record layer, as tlsfuzzer does.
 * - Without the optional ML-KEM package it has no post-quantum hybrid groups (not covered here).
 * - No RFC 9258 importer (our --importer is not covered here) and no 0-RTT as a client; as a server it only
 *   rejects early data.
 * - Pure-Python AES-GCM and ChaCha20 (no M2Crypto/pycryptodome installed): slow but correct; the transfers are
 *   sized to stay far below every bound.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import {
  findVendor,
  jsonEvent,
  jsonEvents,
  missingPython,
  type Peer,
  PSK_HEX,
  PSK_IDENTITY,
  PYTHON,
  spawnPeer,
  spawnQkdTls,
  type Tap,
  TEST_PEERS_DIR,
  WRONG_PSK_HEX,
} from './helpers/peers.js';

const VENDOR = findVendor(join('tlslite-ng', 'tlslite', 'tlsconnection.py'));
const skip = missingPython(t, 'tlslite-ng', VENDOR ? [join(VENDOR, 'tlslite-ng')] : undefined, ['ecdsa', 'tlslite.api']);
const DRIVER = join(TEST_PEERS_DIR, 'tlslite-peer.py');
/** Bound on every wait (pure-Python crypto: a 100 KB echo takes a few seconds at most). */
const WAIT = 30_000;
const SUBTEST = { timeout: 90_000, skip };

/** A 48-byte key for the SHA-384 cases. */
const PSK384_HEX = '9c8b7a695847362514f3e2d1c0bfae9d8c7b6a594837261504f3e2d1c0b9a8f7e6d5c4b3a29180f7e6d5c4b3a291';
const BIG = 100_000;
/** A key neither server knows, offered before the right one. */
const OTHER_PSK_HEX = '00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff';

type Suite = 'TLS_AES_128_GCM_SHA256' | 'TLS_AES_256_GCM_SHA384' | 'TLS_CHACHA20_POLY1305_SHA256';
type Kex = 'psk_ke' | 'psk_dhe_ke';

interface Case {
  readonly name: string;
  /** The modes tlslite-ng offers (client) or accepts (server), in preference order. */
  readonly tlsliteModes: Kex[];
  /** The modes qkd-tls offers (client) or accepts (server). */
  readonly qkdModes: Kex[];
  readonly suite: Suite;
  readonly hash: 'SHA-256' | 'SHA-384';
  /** The groups tlslite-ng allows (client: it shares the first) and qkd-tls allows (client: shares the first). */
  readonly tlsliteGroups: string[];
  readonly qkdGroups: string[];
  /** What both must report. */
  readonly kex: Kex;
  readonly group: string | null;
  readonly helloRetry?: boolean;
  readonly bytes?: number;
}

/** The combinations run in each direction. */
const CASES: Case[] = [
  { name: 'psk_dhe_ke, AES-128-GCM, x25519', tlsliteModes: ['psk_dhe_ke'], qkdModes: ['psk_dhe_ke', 'psk_ke'], suite: 'TLS_AES_128_GCM_SHA256', hash: 'SHA-256', tlsliteGroups: ['x25519'], qkdGroups: ['x25519'], kex: 'psk_dhe_ke', group: 'x25519' },
  { name: 'psk_ke, AES-128-GCM', tlsliteModes: ['psk_ke'], qkdModes: ['psk_ke'], suite: 'TLS_AES_128_GCM_SHA256', hash: 'SHA-256', tlsliteGroups: ['x25519'], qkdGroups: ['x25519'], kex: 'psk_ke', group: null },
  { name: 'psk_ke, AES-256-GCM-SHA384 with a SHA-384 PSK', tlsliteModes: ['psk_ke'], qkdModes: ['psk_ke'], suite: 'TLS_AES_256_GCM_SHA384', hash: 'SHA-384', tlsliteGroups: ['x25519'], qkdGroups: ['x25519'], kex: 'psk_ke', group: null },
  { name: 'psk_dhe_ke, AES-256-GCM-SHA384 with a SHA-384 PSK, secp256r1', tlsliteModes: ['psk_dhe_ke'], qkdModes: ['psk_dhe_ke'], suite: 'TLS_AES_256_GCM_SHA384', hash: 'SHA-384', tlsliteGroups: ['secp256r1'], qkdGroups: ['secp256r1'], kex: 'psk_dhe_ke', group: 'secp256r1' },
  { name: 'psk_dhe_ke, ChaCha20-Poly1305, secp256r1', tlsliteModes: ['psk_dhe_ke'], qkdModes: ['psk_dhe_ke'], suite: 'TLS_CHACHA20_POLY1305_SHA256', hash: 'SHA-256', tlsliteGroups: ['secp256r1'], qkdGroups: ['secp256r1'], kex: 'psk_dhe_ke', group: 'secp256r1' },
  { name: 'psk_dhe_ke, ChaCha20-Poly1305, ffdhe2048', tlsliteModes: ['psk_dhe_ke'], qkdModes: ['psk_dhe_ke'], suite: 'TLS_CHACHA20_POLY1305_SHA256', hash: 'SHA-256', tlsliteGroups: ['ffdhe2048'], qkdGroups: ['ffdhe2048'], kex: 'psk_dhe_ke', group: 'ffdhe2048' },
  { name: 'psk_dhe_ke, AES-256-GCM-SHA384, ffdhe2048', tlsliteModes: ['psk_dhe_ke'], qkdModes: ['psk_dhe_ke'], suite: 'TLS_AES_256_GCM_SHA384', hash: 'SHA-384', tlsliteGroups: ['ffdhe2048'], qkdGroups: ['ffdhe2048'], kex: 'psk_dhe_ke', group: 'ffdhe2048' },
  { name: 'both modes offered and accepted: psk_dhe_ke wins', tlsliteModes: ['psk_dhe_ke', 'psk_ke'], qkdModes: ['psk_dhe_ke', 'psk_ke'], suite: 'TLS_AES_128_GCM_SHA256', hash: 'SHA-256', tlsliteGroups: ['x25519'], qkdGroups: ['x25519'], kex: 'psk_dhe_ke', group: 'x25519' },
  { name: `100 KB echoed, psk_dhe_ke, AES-128-GCM, x25519`, tlsliteModes: ['psk_dhe_ke'], qkdModes: ['psk_dhe_ke'], suite: 'TLS_AES_128_GCM_SHA256', hash: 'SHA-256', tlsliteGroups: ['x25519'], qkdGroups: ['x25519'], kex: 'psk_dhe_ke', group: 'x25519', bytes: BIG },
];

// --- tlslite-ng client -> qkd-tls server -----------------------------------------------------------------------

for (const c of CASES) {
  t.test(`tlslite-ng client -> qkd-tls server: ${c.name}`, SUBTEST, async (t) => {
    const server = await qkdServer(t, ['--kex-modes', c.qkdModes.join(','), '--groups', c.qkdGroups.join(','), '--once'], c.hash);
    const bytes = c.bytes ?? 1000;
    const done = await tlsliteDone(t, tlslite(t, 'client', server.port, c, ['--send', String(bytes)]));
    checkTlslite(t, done, c, bytes);
    t.same(done.keyUpdatesReceived, [], 'no KeyUpdate');
    t.equal((await server.peer.waitExit(WAIT)).code, 0, 'the --once server exits 0');
    checkQkd(t, server.peer.stderr, c);
  });
}

t.test('tlslite-ng client -> qkd-tls server: HelloRetryRequest (tlslite-ng shares x25519, the server wants secp256r1)', SUBTEST, async (t) => {
  const c: Case = { ...CASES[0], tlsliteGroups: ['x25519', 'secp256r1'], qkdGroups: ['secp256r1'], group: 'secp256r1', helloRetry: true };
  const server = await qkdServer(t, ['--groups', 'secp256r1', '--once']);
  const done = await tlsliteDone(t, tlslite(t, 'client', server.port, c, ['--send', '1000', '--key-shares', 'x25519']));
  checkTlslite(t, done, c, 1000);
  t.equal((await server.peer.waitExit(WAIT)).code, 0, 'the --once server exits 0');
  checkQkd(t, server.peer.stderr, c);
});

t.test('tlslite-ng client -> qkd-tls server: 100 KB with a KeyUpdate (update_requested) from tlslite-ng halfway', SUBTEST, async (t) => {
  const c = CASES[CASES.length - 1];
  const server = await qkdServer(t, ['--trace-json', '--once']);
  const done = await tlsliteDone(t, tlslite(t, 'client', server.port, c, ['--send', String(BIG), '--key-update']));
  checkTlslite(t, done, c, BIG);
  t.equal(done.keyUpdatesSent, 1, 'tlslite-ng sent one KeyUpdate');
  t.same(done.keyUpdatesReceived, ['update_not_requested'], 'qkd-tls answered it with its own KeyUpdate (RFC 8446 §4.6.3)');
  t.same(keyUpdates(server.peer.stderr, 'received'), ['update_requested'], 'qkd-tls saw update_requested');
  t.same(keyUpdates(server.peer.stderr, 'sent'), ['update_not_requested'], 'and sent update_not_requested');
  t.equal((await server.peer.waitExit(WAIT)).code, 0, 'the --once server exits 0');
  checkQkd(t, server.peer.stderr, c);
});

t.test('tlslite-ng client -> qkd-tls server: record_size_limit 64 (ours) and 128 (tlslite-ng\'s), RFC 8449', SUBTEST, async (t) => {
  const c = CASES[0];
  const server = await qkdServer(t, ['--record-size-limit', '64', '--trace-json', '--once']);
  const done = await tlsliteDone(t, tlslite(t, 'client', server.port, c, ['--send', '5000', '--chunk', '1000', '--record-size-limit', '128']));
  checkTlslite(t, done, c, 5000);
  t.equal(done.sendRecordLimit, 63, 'tlslite-ng puts at most 63 bytes of content in a record to us (64 minus the content type)');
  t.equal(done.recvRecordLimit, 127, 'tlslite-ng takes up to 127 bytes of content from us');
  t.equal((await server.peer.waitExit(WAIT)).code, 0, 'the --once server exits 0');
  checkQkd(t, server.peer.stderr, c);
  checkRecordSizes(t, server.peer.stderr, { received: 64, sent: 128 });
});

t.test('tlslite-ng client -> qkd-tls server: 100 bytes of padding in every record tlslite-ng sends (RFC 8446 §5.4)', SUBTEST, async (t) => {
  const c = CASES[0];
  const server = await qkdServer(t, ['--trace-json', '--once']);
  const done = await tlsliteDone(t, tlslite(t, 'client', server.port, c, ['--send', '3000', '--chunk', '1000', '--padding', '100']));
  checkTlslite(t, done, c, 3000);
  t.equal((await server.peer.waitExit(WAIT)).code, 0, 'the --once server exits 0');
  checkQkd(t, server.peer.stderr, c);
  const padding = paddingLengths(server.peer.stderr);
  t.ok(padding.received.length >= 4, `${padding.received.length} protected records from tlslite-ng (Finished, data, close_notify)`);
  t.same([...new Set(padding.received)], [100], 'each carried 100 zeros, which qkd-tls stripped');
});

t.test('tlslite-ng client offers an unknown key first -> qkd-tls server selects the second (selected_identity 1)', SUBTEST, async (t) => {
  const c = CASES[0];
  const server = await qkdServer(t, ['--trace-json', '--once']);
  const done = await tlsliteDone(t, tlslite(t, 'client', server.port, c, ['--send', '1000', '--other-psk', `other:${OTHER_PSK_HEX}`]));
  checkTlslite(t, done, c, 1000);
  t.equal((await server.peer.waitExit(WAIT)).code, 0, 'the --once server exits 0');
  checkQkd(t, server.peer.stderr, c);
  t.same(selectedIdentities(server.peer.stderr, 'sent'), ['1'], 'the ServerHello selects identity 1 (RFC 8446 §4.2.11)');
});

t.test('tlslite-ng client with the wrong key -> qkd-tls server: decrypt_error both sides; the next client succeeds', SUBTEST, async (t) => {
  const server = await qkdServer(t, []);
  const bad = await tlsliteOutcome(t, tlslite(t, 'client', server.port, CASES[0], [], WRONG_PSK_HEX));
  t.match(bad, { event: 'error', kind: 'TLSRemoteAlert', direction: 'received', alert: 'decrypt_error' }, 'tlslite-ng received decrypt_error');
  await server.peer.waitFor((s) => jsonEvent(s, 'error') !== undefined, WAIT, 'stderr');
  t.match(jsonEvent(server.peer.stderr, 'error'), { alert: 'decrypt_error', alertCode: 51, direction: 'sent', reason: 'IncorrectBinder' }, 'qkd-tls sent decrypt_error (RFC 8446 §6.2: a binder that does not validate)');
  t.match(String(jsonEvent(server.peer.stderr, 'error')!.message), /binder/i, 'and says why');
  // The same server still serves a client with the right key.
  const done = await tlsliteDone(t, tlslite(t, 'client', server.port, CASES[0], ['--send', '1000']));
  checkTlslite(t, done, CASES[0], 1000);
  await server.peer.waitFor((s) => jsonEvent(s, 'handshake') !== undefined, WAIT, 'stderr');
  checkQkd(t, server.peer.stderr, CASES[0]);
});

// --- qkd-tls client -> tlslite-ng server -----------------------------------------------------------------------

for (const c of CASES) {
  t.test(`qkd-tls client -> tlslite-ng server: ${c.name}`, SUBTEST, async (t) => {
    const server = await tlsliteServer(t, c);
    const input = pattern(c.bytes ?? 1000);
    const client = qkdClient(t, server.port, ['--kex-modes', c.qkdModes.join(','), '--groups', c.qkdGroups.join(','), '--suites', c.suite], c.hash);
    client.child.stdin.end(input);
    const exit = await client.waitExit(WAIT);
    t.equal(exit.code, 0, 'the client exits 0 (close_notify both ways)', { transcript: exit.code === 0 ? undefined : client.transcript() });
    t.ok(client.stdout === input.toString('latin1'), `all ${input.length} bytes came back unchanged`);
    checkQkd(t, client.stderr, c);
    const done = await tlsliteDone(t, server.peer);
    checkTlslite(t, done, c, input.length);
  });
}

t.test('qkd-tls client -> tlslite-ng server: HelloRetryRequest (qkd-tls shares x25519, tlslite-ng wants secp256r1, with a cookie)', SUBTEST, async (t) => {
  const c: Case = { ...CASES[0], tlsliteGroups: ['secp256r1'], qkdGroups: ['x25519', 'secp256r1'], group: 'secp256r1', helloRetry: true };
  const server = await tlsliteServer(t, c);
  const client = qkdClient(t, server.port, ['--groups', 'x25519,secp256r1']);
  const input = pattern(1000);
  client.child.stdin.end(input);
  t.equal((await client.waitExit(WAIT)).code, 0, 'the client exits 0');
  t.ok(client.stdout === input.toString('latin1'), 'the bytes came back');
  checkQkd(t, client.stderr, c);
  checkTlslite(t, await tlsliteDone(t, server.peer), c, input.length);
});

t.test('qkd-tls client --key-update -> tlslite-ng server: 100 KB after a KeyUpdate (update_requested) from qkd-tls', SUBTEST, async (t) => {
  const c = CASES[CASES.length - 1];
  const server = await tlsliteServer(t, c);
  const client = qkdClient(t, server.port, ['--key-update', '--trace-json']);
  const input = pattern(BIG);
  client.child.stdin.end(input);
  t.equal((await client.waitExit(WAIT)).code, 0, 'the client exits 0');
  t.ok(client.stdout === input.toString('latin1'), `all ${BIG} bytes came back`);
  t.ok(jsonEvents(client.stderr).some((e) => e.event === 'key-update' && e.requestPeer === true), 'qkd-tls reports its KeyUpdate');
  const done = await tlsliteDone(t, server.peer);
  checkTlslite(t, done, c, BIG);
  t.same(done.keyUpdatesReceived, ['update_requested'], 'tlslite-ng received update_requested');
  t.same(keyUpdates(client.stderr, 'sent'), ['update_requested'], 'qkd-tls sent one KeyUpdate');
  t.same(keyUpdates(client.stderr, 'received'), ['update_not_requested'], 'tlslite-ng answered with its own (RFC 8446 §4.6.3)');
});

t.test('qkd-tls client -> tlslite-ng server --key-update: qkd-tls answers tlslite-ng\'s update_requested', SUBTEST, async (t) => {
  const c = CASES[0];
  const server = await tlsliteServer(t, c, ['--key-update']);
  const client = qkdClient(t, server.port, ['--trace-json']);
  // The server sends its KeyUpdate right after its first echo; the client is still writable then, so it must
  // answer before any more application data (RFC 8446 §4.6.3).
  client.write('first line\n');
  await client.waitFor('first line\n', WAIT, 'stdout');
  client.write('second line\n');
  await client.waitFor('first line\nsecond line\n', WAIT, 'stdout');
  client.end();
  t.equal((await client.waitExit(WAIT)).code, 0, 'the client exits 0');
  const done = await tlsliteDone(t, server.peer);
  t.equal(done.keyUpdatesSent, 1, 'tlslite-ng sent one KeyUpdate');
  t.same(done.keyUpdatesReceived, ['update_not_requested'], 'qkd-tls answered with update_not_requested');
  t.same(keyUpdates(client.stderr, 'received'), ['update_requested'], 'qkd-tls saw update_requested');
  t.same(keyUpdates(client.stderr, 'sent'), ['update_not_requested'], 'and sent update_not_requested');
  t.equal(done.echoed, 'first line\nsecond line\n'.length, 'tlslite-ng echoed both lines');
});

t.test('qkd-tls client -> tlslite-ng server: record_size_limit 64 (ours) and 128 (tlslite-ng\'s), RFC 8449', SUBTEST, async (t) => {
  const c = CASES[0];
  const server = await tlsliteServer(t, c, ['--record-size-limit', '128']);
  const client = qkdClient(t, server.port, ['--record-size-limit', '64', '--trace-json']);
  const input = pattern(5000);
  client.child.stdin.end(input);
  t.equal((await client.waitExit(WAIT)).code, 0, 'the client exits 0');
  t.ok(client.stdout === input.toString('latin1'), 'the bytes came back');
  checkQkd(t, client.stderr, c);
  const done = await tlsliteDone(t, server.peer);
  checkTlslite(t, done, c, input.length);
  t.equal(done.sendRecordLimit, 63, 'tlslite-ng puts at most 63 bytes of content in a record to us');
  t.equal(done.recvRecordLimit, 127, 'tlslite-ng takes up to 127 bytes of content from us');
  const sizes = checkRecordSizes(t, client.stderr, { received: 64, sent: 128 });
  t.equal(Math.max(...sizes.sent), 128, 'qkd-tls fills its records up to tlslite-ng\'s limit');
  t.equal(Math.max(...sizes.received), 64, 'tlslite-ng fills its records up to ours');
});

t.test('qkd-tls client --record-padding 256 <-> tlslite-ng server with 200 bytes of padding in every record: both pad, both read (RFC 8446 §5.4)', SUBTEST, async (t) => {
  const c = CASES[0];
  const server = await tlsliteServer(t, c, ['--padding', '200']);
  const client = qkdClient(t, server.port, ['--record-padding', '256', '--trace-json']);
  const input = pattern(3000);
  client.child.stdin.end(input);
  t.equal((await client.waitExit(WAIT)).code, 0, 'the client exits 0');
  t.ok(client.stdout === input.toString('latin1'), 'the bytes came back');
  checkQkd(t, client.stderr, c);
  checkTlslite(t, await tlsliteDone(t, server.peer), c, input.length);
  const padding = paddingLengths(client.stderr);
  t.ok(padding.received.length >= 3, `${padding.received.length} protected records from tlslite-ng (EncryptedExtensions and Finished, data, close_notify)`);
  t.same([...new Set(padding.received)], [200], 'each carried 200 zeros, which qkd-tls stripped');
  t.ok(padding.sent.length >= 3, `${padding.sent.length} padded protected records sent (Finished, data, close_notify), which tlslite-ng read`);
  const inner = jsonEvents(client.stderr)
    .filter((e) => e.event === 'trace' && e.kind === 'record' && e.direction === 'sent')
    .map((e) => findNode(e.tree, 'TLSInnerPlaintext')?.length)
    .filter((n): n is number => n !== undefined);
  t.same(inner.filter((n) => n % 256 !== 0), [], `each TLSInnerPlaintext sent a multiple of 256 bytes (${inner.join(', ')})`);
  t.ok(padding.sent.includes(253), 'the close_notify among them: 2 bytes, its type and 253 zeros');
});

t.test('qkd-tls client offers an unknown key first -> tlslite-ng server selects the second (selected_identity 1)', SUBTEST, async (t) => {
  const c = CASES[0];
  const server = await tlsliteServer(t, c);
  const client = spawnQkdTls(t, ['client', '--connect', `127.0.0.1:${server.port}`, '--psk', OTHER_PSK_HEX, '--identity', 'other', '--psk', PSK_HEX, '--identity', PSK_IDENTITY, '--json', '--trace-json']);
  client.child.stdin.end('two keys offered\n');
  t.equal((await client.waitExit(WAIT)).code, 0, 'the client exits 0');
  t.equal(client.stdout, 'two keys offered\n', 'the line came back');
  checkQkd(t, client.stderr, c);
  t.same(selectedIdentities(client.stderr, 'received'), ['1'], 'tlslite-ng\'s ServerHello selects identity 1');
  checkTlslite(t, await tlsliteDone(t, server.peer), c, 'two keys offered\n'.length);
});

t.test('qkd-tls client --early-data -> tlslite-ng server: rejected (tlslite-ng skips the 0-RTT records), sent again after the handshake', SUBTEST, async (t) => {
  const c = CASES[0];
  const server = await tlsliteServer(t, c);
  const dir = await mkdtemp(join(tmpdir(), 'qkd-tls-tlslite-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const early = join(dir, 'early.txt');
  await writeFile(early, 'sent as 0-RTT\n');
  const client = qkdClient(t, server.port, ['--early-data', early]);
  client.child.stdin.end('after the handshake\n');
  t.equal((await client.waitExit(WAIT)).code, 0, 'the client exits 0');
  t.equal(client.stdout, 'sent as 0-RTT\nafter the handshake\n', 'the early data came back once, before the rest (RFC 8446 §4.2.10: sent again)');
  t.match(jsonEvent(client.stderr, 'early-data'), { status: 'rejected' }, 'qkd-tls reports the rejection');
  checkQkd(t, client.stderr, c, 'rejected');
  checkTlslite(t, await tlsliteDone(t, server.peer), c, 'sent as 0-RTT\nafter the handshake\n'.length);
});

t.test('qkd-tls client shares x25519 and secp256r1, tlslite-ng prefers secp256r1 (no HelloRetryRequest); no middlebox compatibility', SUBTEST, async (t) => {
  const c: Case = { ...CASES[0], tlsliteGroups: ['secp256r1', 'x25519'], qkdGroups: ['x25519', 'secp256r1'], group: 'secp256r1' };
  const server = await tlsliteServer(t, c);
  const client = qkdClient(t, server.port, ['--groups', 'x25519,secp256r1', '--key-shares', 'x25519,secp256r1', '--no-middlebox-compat']);
  client.child.stdin.end('two shares\n');
  t.equal((await client.waitExit(WAIT)).code, 0, 'the client exits 0');
  t.equal(client.stdout, 'two shares\n', 'the line came back');
  checkQkd(t, client.stderr, c);
  checkTlslite(t, await tlsliteDone(t, server.peer), c, 'two shares\n'.length);
});

t.test('qkd-tls client with the wrong key -> tlslite-ng server: tlslite-ng sends illegal_parameter (RFC 8446 §6.2 says decrypt_error)', SUBTEST, async (t) => {
  const server = await tlsliteServer(t, CASES[0]);
  const client = qkdClient(t, server.port, [], 'SHA-256', WRONG_PSK_HEX);
  client.end();
  t.equal((await client.waitExit(WAIT)).code, 1, 'the client exits 1');
  t.match(jsonEvent(client.stderr, 'error'), { alert: 'illegal_parameter', alertCode: 47, direction: 'received' }, 'qkd-tls names the alert it received');
  t.match(
    jsonEvent(client.stderr, 'error')?.hint,
    /^the server refused our ClientHello, most likely because it holds another key for this identity \(or none\), or binds it to another hash: .*tlslite-ng.*; check --psk and --identity, and --psk-hash on both sides$/,
    'and the likely cause first, then what to check',
  );
  t.notOk(jsonEvent(client.stderr, 'handshake'), 'no handshake reported');
  const bad = await tlsliteOutcome(t, server.peer);
  t.match(bad, { event: 'error', kind: 'TLSLocalAlert', direction: 'sent', alert: 'illegal_parameter' }, 'tlslite-ng sent illegal_parameter');
  t.match((bad as TlsliteError).message, /Binder does not verify/, 'because the binder did not verify');
  // A new tlslite-ng server with the right key still works with the same client command.
  const server2 = await tlsliteServer(t, CASES[0]);
  const good = qkdClient(t, server2.port, []);
  good.child.stdin.end('after the failure\n');
  t.equal((await good.waitExit(WAIT)).code, 0, 'the client exits 0');
  t.equal(good.stdout, 'after the failure\n', 'the line came back');
  checkTlslite(t, await tlsliteDone(t, server2.peer), CASES[0], 'after the failure\n'.length);
});

t.test('qkd-tls client with an unknown identity -> tlslite-ng server: tlslite-ng sends handshake_failure', SUBTEST, async (t) => {
  const server = await tlsliteServer(t, CASES[0]);
  const client = spawnQkdTls(t, ['client', '--connect', `127.0.0.1:${server.port}`, '--psk', PSK_HEX, '--identity', 'nobody', '--json']);
  client.end();
  t.equal((await client.waitExit(WAIT)).code, 1, 'the client exits 1');
  const error = jsonEvent(client.stderr, 'error');
  t.match(error, { alert: 'handshake_failure', alertCode: 40, direction: 'received' }, 'qkd-tls names the alert it received');
  t.match(error?.hint, /knew none of the PSK identities we offered/, 'and the hint names an unknown identity among the causes');
  const bad = await tlsliteOutcome(t, server.peer);
  t.match(bad, { event: 'error', kind: 'TLSLocalAlert', direction: 'sent', alert: 'handshake_failure' }, 'tlslite-ng sent handshake_failure');
  t.match((bad as TlsliteError).message, /Could not find acceptable PSK identity/, 'because it has no key for that identity');
});

// --- helpers --------------------------------------------------------------------------------------------------

/** What the driver prints as its last line: the negotiated parameters, or the failure. */
interface TlsliteDone {
  event: 'done';
  role: 'client' | 'server';
  version: string;
  suite: string;
  kex: Kex;
  group: string | null;
  identity: string;
  sent: number;
  echoed: number;
  keyUpdatesSent: number;
  keyUpdatesReceived: string[];
  sendRecordLimit: number;
  recvRecordLimit: number;
  closeNotifyReceived: boolean;
}
interface TlsliteError {
  event: 'error';
  kind: string;
  direction: 'sent' | 'received' | null;
  alert: string | null;
  message: string;
}

function keyHex(hash: 'SHA-256' | 'SHA-384'): string {
  return hash === 'SHA-384' ? PSK384_HEX : PSK_HEX;
}

/** Starts test/peers/tlslite-peer.py in `role` against (client) or listening on (server, port 0) `port`. */
function tlslite(t: Tap, role: 'client' | 'server', port: number, c: Case, extra: string[], key = keyHex(c.hash)): Peer {
  return spawnPeer(
    t,
    PYTHON,
    [
      DRIVER,
      ...['--role', role, '--host', '127.0.0.1', '--port', String(port), '--identity', PSK_IDENTITY, '--psk', key],
      ...['--hash', c.hash === 'SHA-384' ? 'sha384' : 'sha256', '--modes', c.tlsliteModes.join(','), '--suites', c.suite, '--groups', c.tlsliteGroups.join(',')],
      ...['--timeout', String(WAIT / 1000 - 5)],
      ...extra,
    ],
    { env: { PYTHONPATH: join(VENDOR!, 'tlslite-ng'), PYTHONDONTWRITEBYTECODE: '1' } },
  );
}

/** A tlslite-ng echo server for one connection, once it listens. */
async function tlsliteServer(t: Tap, c: Case, extra: string[] = []): Promise<{ peer: Peer; port: number }> {
  const peer = tlslite(t, 'server', 0, c, extra);
  const text = await peer.waitFor((s) => jsonEvent(s, 'listening') !== undefined, WAIT, 'stdout');
  return { peer, port: Number(jsonEvent(text, 'listening')!.port) };
}

/** Waits for the driver's result line and its exit. */
async function tlsliteOutcome(t: Tap, peer: Peer): Promise<TlsliteDone | TlsliteError> {
  await peer.waitFor((s) => jsonEvents(s).some((e) => e.event === 'done' || e.event === 'error'), WAIT, 'stdout');
  const exit = await peer.waitExit(WAIT);
  const result = jsonEvents(peer.stdout).find((e) => e.event === 'done' || e.event === 'error') as unknown as TlsliteDone | TlsliteError;
  t.equal(exit.code, result.event === 'done' ? 0 : 1, `tlslite-ng's driver exits ${result.event === 'done' ? 0 : 1}`);
  return result;
}

/** The driver's result, which must be a success. */
async function tlsliteDone(t: Tap, peer: Peer): Promise<TlsliteDone> {
  const result = await tlsliteOutcome(t, peer);
  if (result.event !== 'done') throw new Error(`tlslite-ng failed: ${JSON.stringify(result)}\n${peer.transcript()}`);
  return result;
}

/** What tlslite-ng negotiated, and that all bytes went both ways and close_notify came back. */
function checkTlslite(t: Tap, done: TlsliteDone, c: Case, bytes: number): void {
  t.match(done, { version: 'TLS 1.3', suite: c.suite, kex: c.kex, group: c.group, identity: PSK_IDENTITY }, `tlslite-ng: ${c.suite} ${c.kex} ${c.group ?? ''}`);
  t.equal(done.sent, bytes, `tlslite-ng ${done.role === 'client' ? 'sent' : 'received'} ${bytes} bytes`);
  t.equal(done.echoed, bytes, `and ${done.role === 'client' ? 'got them back' : 'echoed them'}`);
  t.equal(done.closeNotifyReceived, true, 'tlslite-ng received close_notify');
}

/** What qkd-tls reported (`--json` handshake line on stderr). */
function checkQkd(t: Tap, stderr: string, c: Case, earlyData: 'none' | 'rejected' = 'none'): void {
  t.match(
    jsonEvent(stderr, 'handshake'),
    { version: 'TLSv1.3', suite: c.suite, kex: c.kex, group: c.group, identity: PSK_IDENTITY, earlyData, ...(c.helloRetry ? { helloRetry: true } : {}) },
    `qkd-tls: ${c.suite} ${c.kex} ${c.group ?? ''}${c.helloRetry ? ' after HelloRetryRequest' : ''}`,
  );
  if (!c.helloRetry) t.notOk(jsonEvent(stderr, 'handshake')!.helloRetry, 'no HelloRetryRequest');
}

/** `qkd-tls server --listen 127.0.0.1:0 --json` with the case's key, once it listens. */
async function qkdServer(t: Tap, extra: string[], hash: 'SHA-256' | 'SHA-384' = 'SHA-256'): Promise<{ peer: Peer; port: number }> {
  const peer = spawnQkdTls(t, ['server', '--listen', '127.0.0.1:0', '--psk', keyHex(hash), '--identity', PSK_IDENTITY, '--psk-hash', hash, '--json', ...extra]);
  const text = await peer.waitFor((s) => jsonEvent(s, 'listening') !== undefined, WAIT, 'stderr');
  return { peer, port: Number(String(jsonEvent(text, 'listening')!.address).split(':').pop()) };
}

/** `qkd-tls client --connect 127.0.0.1:PORT --json` (stdin to the server, the server's data to stdout). */
function qkdClient(t: Tap, port: number, extra: string[], hash: 'SHA-256' | 'SHA-384' = 'SHA-256', key = keyHex(hash)): Peer {
  return spawnQkdTls(t, ['client', '--connect', `127.0.0.1:${port}`, '--psk', key, '--identity', PSK_IDENTITY, '--psk-hash', hash, '--json', ...extra]);
}

/** The same pattern as the driver's (index mod 251). */
function pattern(n: number): Buffer {
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = i % 251;
  return b;
}

/**
 * The TLSInnerPlaintext length of every protected record in a `--trace-json` log, by direction, and checks that
 * each is within the limit the receiving side advertised (RFC 8449 §4: the limit counts the content type).
 */
function checkRecordSizes(t: Tap, stderr: string, limits: { received: number; sent: number }): { received: number[]; sent: number[] } {
  const sizes = { received: [] as number[], sent: [] as number[] };
  for (const e of jsonEvents(stderr)) {
    if (e.event !== 'trace' || e.kind !== 'record') continue;
    const inner = findNode(e.tree, 'TLSInnerPlaintext');
    if (inner) sizes[e.direction === 'sent' ? 'sent' : 'received'].push(inner.length);
  }
  t.ok(sizes.received.length > 5000 / 64, `${sizes.received.length} protected records received`);
  t.ok(sizes.sent.length > 5000 / 128, `${sizes.sent.length} protected records sent`);
  t.ok(Math.max(...sizes.received) <= limits.received, `every record from tlslite-ng within our limit ${limits.received} (largest ${Math.max(...sizes.received)})`);
  t.ok(Math.max(...sizes.sent) <= limits.sent, `every record to tlslite-ng within its limit ${limits.sent} (largest ${Math.max(...sizes.sent)})`);
  return sizes;
}

/** The length of the zero padding of every protected record a `--trace-json` log shows, by direction. */
function paddingLengths(stderr: string): { received: number[]; sent: number[] } {
  const lengths = { received: [] as number[], sent: [] as number[] };
  for (const e of jsonEvents(stderr)) {
    if (e.event !== 'trace' || e.kind !== 'record') continue;
    const zeros = findNode(e.tree, 'zeros (padding)');
    if (zeros) lengths[e.direction === 'sent' ? 'sent' : 'received'].push(zeros.length);
  }
  return lengths;
}

/** The selected_identity of the ServerHello a `--trace-json` log shows in `direction`. */
function selectedIdentities(stderr: string, direction: 'sent' | 'received'): string[] {
  return jsonEvents(stderr)
    .filter((e) => e.event === 'trace' && e.kind === 'handshake' && e.direction === direction)
    .map((e) => findNode(e.tree, 'selected_identity')?.value)
    .filter((v): v is string => v !== undefined);
}

/** The request_update of every KeyUpdate a `--trace-json` log shows in `direction`, in order. */
function keyUpdates(stderr: string, direction: 'sent' | 'received'): string[] {
  return jsonEvents(stderr)
    .filter((e) => e.event === 'trace' && e.kind === 'handshake' && e.direction === direction && (e.tree as TraceNode).name === 'KeyUpdate')
    .map((e) => String(findNode(e.tree, 'request_update')?.value).replace(/ \(0x0\d\)$/, ''));
}

interface TraceNode {
  name: string;
  length: number;
  value?: string;
  children?: TraceNode[];
}

function findNode(node: unknown, name: string): TraceNode | undefined {
  const n = node as TraceNode | undefined;
  if (!n || typeof n !== 'object') return undefined;
  if (n.name === name) return n;
  for (const child of n.children ?? []) {
    const found = findNode(child, name);
    if (found) return found;
  }
  return undefined;
}
