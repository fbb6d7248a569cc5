/**
 * The asynchronous key-agreement pause (lib/handshake/key-agreement.ts) with WebCrypto key shares
 * (lib/crypto/webcrypto.ts), on sans-IO connection pairs in Node 20 (whose WebCrypto has X25519 and P-256):
 * - the same seeded randomness gives byte-identical handshakes on the synchronous and asynchronous paths
 *   (ClientHello, ServerHello, every byte both ways, every traffic secret), for x25519 and secp256r1, with and
 *   without a HelloRetryRequest;
 * - where each side pauses, in which state, and what it sends (nothing) meanwhile;
 * - a PSK lookup and a key agreement both pausing one server; bytes received during a pause; destroy and the
 *   handshake timeout during a pause; answers after destroy, when nothing is pending, or to another request;
 * - a hostile peer share ends in the same reason and alert as on the synchronous path;
 * - a runtime whose WebCrypto lacks the algorithm falls back to the synchronous group, with the same bytes;
 * - secrets wiped on every path (PKCS#8 buffers, the fallback's randomness, results that arrive after destroy, the
 *   server's PSK secrets, shares made before a failing one); no fallback once WebCrypto worked; no alert from a
 *   client that has sent nothing yet.
 */
import t from 'tap';
import { concat, fromHex, toHex } from '../lib/codec/bytes.js';
import { Connection, MAX_BUFFERED_WHILE_WAITING } from '../lib/connection/connection.js';
import type { KeyAgreementRequest, KeyAgreementResult } from '../lib/config/events.js';
import { createNobleProvider } from '../lib/crypto/noble.js';
import type { CryptoProvider, GroupName } from '../lib/crypto/provider.js';
import { withWebCryptoKeyShares, type WebCryptoKeyShareProvider } from '../lib/crypto/webcrypto.js';
import type { Reason } from '../lib/errors.js';
import { allOrNothing, AwaitKeyAgreement } from '../lib/handshake/key-agreement.js';
import type { HandshakeIO, HandshakeState } from '../lib/handshake/io.js';
import { runKeyAgreement } from '../lib/transport/key-agreement.js';
import { settle } from './helpers/key-agreement.js';
import { tamperedShares } from './helpers/tampered-groups.js';
import { errorsOf, KeyLog, makePsk, Pair, seededRandom, splitRecords } from './helpers/pair.js';
import { createEarlyDataReplayGuard } from '../lib/config/anti-replay.js';

const noble = (seed: number): CryptoProvider => createNobleProvider({ random: seededRandom(seed) });
const web = (seed: number): WebCryptoKeyShareProvider => withWebCryptoKeyShares(noble(seed));
const OTHER: Record<'x25519' | 'secp256r1', GroupName> = { x25519: 'secp256r1', secp256r1: 'x25519' };

t.test('the same randomness gives the same handshake, byte for byte, with WebCrypto key shares', async (t) => {
  for (const group of ['x25519', 'secp256r1'] as const) {
    for (const hrr of [false, true]) {
      const what = `${group}${hrr ? ', after a HelloRetryRequest' : ''}`;
      const psk = makePsk('same-bytes');
      const run = (crypto: (seed: number) => CryptoProvider) => {
        const logs = [new KeyLog(), new KeyLog()];
        const [cc, sc] = [crypto(11), crypto(12)];
        // With a retry: the client sends a share for the other group only; the server wants `group`.
        const client = { crypto: cc, psks: [psk], keyLog: logs[0].sink, groups: hrr ? [OTHER[group], group] : [group], keyShareGroups: hrr ? [OTHER[group]] : undefined };
        return { pair: new Pair(client, { crypto: sc, psks: [psk], keyLog: logs[1].sink, groups: [group] }), logs, cc, sc };
      };
      const sync = run(noble);
      sync.pair.pump();
      const async = run(web);
      const pauses = await settle(async.pair);

      t.equal(toHex(concat(...async.pair.clientSent)), toHex(concat(...sync.pair.clientSent)), `${what}: every byte the client sent is the same`);
      t.equal(toHex(concat(...async.pair.serverSent)), toHex(concat(...sync.pair.serverSent)), `${what}: every byte the server sent is the same`);
      const [syncCh, asyncCh] = [sync.pair.records('client')[0], async.pair.records('client')[0]];
      t.equal(toHex(asyncCh.bytes), toHex(syncCh.bytes), `${what}: the same ClientHello record`);
      const sh = (p: Pair) => toHex(splitRecords(concat(...p.serverSent))[0].bytes);
      t.equal(sh(async.pair), sh(sync.pair), `${what}: the same first server record (${hrr ? 'HelloRetryRequest' : 'ServerHello'})`);
      t.same(async.logs[0].lines, sync.logs[0].lines, `${what}: the same client secrets (key log)`);
      t.same(async.logs[1].lines, sync.logs[1].lines, `${what}: the same server secrets (key log)`);
      t.ok(async.logs[0].labels().includes('CLIENT_TRAFFIC_SECRET_0'), `${what}: the traffic secrets are among them`);
      t.equal(async.pair.info('client')?.group, group, `${what}: ${group} negotiated`);
      t.equal(async.pair.info('client')?.helloRetry, hrr, `${what}: helloRetry ${hrr}`);
      t.same(
        pauses.map((p) => `${p.side} ${p.state} ${p.step} ${p.groups.join('+')}`),
        [
          `client AwaitKeyShares start ${hr(hrr, OTHER[group], group)}`,
          ...(hrr ? [`client AwaitKeyShares start ${group}`] : []),
          `server AwaitSharedSecret respond ${group}`,
          `client AwaitSharedSecret complete ${group}`,
        ],
        `${what}: where each side paused`,
      );
      const [cc, sc] = [async.cc as WebCryptoKeyShareProvider, async.sc as WebCryptoKeyShareProvider];
      t.equal(cc.keySharePath(group), 'webcrypto', `${what}: the client's ${group} ran in WebCrypto`);
      t.equal(sc.keySharePath(group), 'webcrypto', `${what}: the server's ${group} ran in WebCrypto`);
      t.same(cc.keyShares, { webcrypto: hrr ? 2 : 1, fallback: 0 }, `${what}: the client made ${hrr ? 2 : 1} key share(s) in WebCrypto`);
      t.same(sc.keyShares, { webcrypto: 1, fallback: 0 }, `${what}: the server made 1`);
    }
  }
});

function hr(hrr: boolean, other: GroupName, group: GroupName): GroupName {
  return hrr ? other : group;
}

t.test('0-RTT data goes out after the pause, with the same bytes; accepted, and rejected after a HelloRetryRequest', async (t) => {
  const early = new TextEncoder().encode('early words');
  for (const hrr of [false, true]) {
    const psk = makePsk('early');
    const run = (crypto: (seed: number) => CryptoProvider) =>
      new Pair(
        { crypto: crypto(140), psks: [psk], earlyData: early, groups: ['x25519', 'secp256r1'], keyShareGroups: ['x25519'] },
        { crypto: crypto(141), psks: [psk], maxEarlyDataSize: 1024, earlyDataReplayGuard: createEarlyDataReplayGuard(), groups: hrr ? ['secp256r1'] : ['x25519'] },
      );
    const sync = run(noble);
    sync.pump();
    const async = run(web);
    await settle(async);
    t.equal(toHex(concat(...async.clientSent)), toHex(concat(...sync.clientSent)), `${hrr ? 'retry' : 'no retry'}: the client sent the same bytes`);
    t.equal(toHex(concat(...async.serverSent)), toHex(concat(...sync.serverSent)), `${hrr ? 'retry' : 'no retry'}: the server too`);
    t.equal(async.info('client')?.earlyData, hrr ? 'rejected' : 'accepted', `0-RTT ${hrr ? 'rejected' : 'accepted'}`);
    if (!hrr) t.equal(new TextDecoder().decode(async.received('server', 'early')), 'early words', 'the server read the early data');
  }
});

t.test('a ClientHello with a synchronous share (X25519MLKEM768) and a WebCrypto one (x25519): the same bytes', async (t) => {
  for (const serverGroup of ['x25519', 'X25519MLKEM768'] as GroupName[]) {
    const psk = makePsk('mixed');
    const run = (crypto: (seed: number) => CryptoProvider) =>
      new Pair(
        { crypto: crypto(150), psks: [psk], groups: ['X25519MLKEM768', 'x25519'], keyShareGroups: ['X25519MLKEM768', 'x25519'] },
        { crypto: crypto(151), psks: [psk], groups: [serverGroup] },
      );
    const sync = run(noble);
    sync.pump();
    const async = run(web);
    const pauses = await settle(async);
    t.equal(toHex(concat(...async.clientSent)), toHex(concat(...sync.clientSent)), `server picks ${serverGroup}: the client sent the same bytes`);
    t.equal(toHex(concat(...async.serverSent)), toHex(concat(...sync.serverSent)), `server picks ${serverGroup}: the server too`);
    t.equal(async.info('client')?.group, serverGroup);
    t.same(pauses[0], { side: 'client', state: 'AwaitKeyShares', step: 'start', groups: ['X25519MLKEM768', 'x25519'] }, 'one pause for both shares');
    t.equal(pauses.some((x) => x.step === 'complete'), serverGroup === 'x25519', `a pause to complete only for x25519`);
  }
});

t.test('the client pauses before its ClientHello and sends nothing meanwhile', async (t) => {
  const c = Connection.client({ crypto: web(1), psks: [makePsk('c')] });
  t.equal(c.takeOutput(), null, 'no ClientHello yet');
  t.equal(c.stateName, 'AwaitKeyShares', 'waiting for the key shares');
  const request = c.pendingKeyAgreement!;
  t.match(request, { step: 'start', groups: ['x25519'] }, 'the request names the step and the group');
  t.same(
    c.takeEvents().map((e) => e.type),
    ['key-agreement'],
    'one key-agreement event',
  );
  t.equal(request.run(), request.run(), 'run() gives the same promise every time');
  await runKeyAgreement(c, request);
  t.equal(c.pendingKeyAgreement, null, 'nothing pending once answered');
  t.equal(c.stateName, 'ExpectServerHello');
  t.ok(c.takeOutput(), 'the ClientHello goes out after the pause');
  c.destroy();
});

t.test('answers out of place: nothing pending throws, another request throws, after destroy ignored', async (t) => {
  const a = Connection.client({ crypto: web(2), psks: [makePsk('a')] });
  const b = Connection.client({ crypto: web(3), psks: [makePsk('b')] });
  const resultA = await a.pendingKeyAgreement!.run();
  const resultB = await b.pendingKeyAgreement!.run();
  t.throws(() => a.provideKeyAgreement(resultB), /another key agreement request/, 'a result of another connection is refused');
  t.throws(() => a.failKeyAgreement(new Error('b failed'), b.pendingKeyAgreement!), /another key agreement request/, 'so is its failure');
  t.equal(a.phase, 'handshaking', 'and the handshake goes on');
  const requestA = a.pendingKeyAgreement!;
  a.provideKeyAgreement(resultA);
  await t.resolves(runKeyAgreement(a, requestA), 'running an answered request again gives its answer to nobody, without throwing');
  t.throws(() => a.provideKeyAgreement(resultA), /not waiting for a key agreement/, 'a second answer: nothing is pending');
  t.throws(() => a.failKeyAgreement(new Error('x')), /not waiting for a key agreement/, 'failing when nothing is pending throws too');
  const nothing = Connection.server({ crypto: web(4), psks: [makePsk('n')] });
  t.throws(() => nothing.provideKeyAgreement(resultA), /not waiting for a key agreement/, 'a server before any ClientHello');
  b.destroy();
  t.doesNotThrow(() => b.provideKeyAgreement(resultB), 'an answer after destroy is ignored');
  t.doesNotThrow(() => b.failKeyAgreement(new Error('late')), 'so is a failure');
  t.equal(b.takeOutput(), null, 'and nothing is sent');
  t.equal(b.phase, 'closed');
  a.destroy();
});

/** A pair whose client has sent its ClientHello and whose server now waits in AwaitSharedSecret. */
async function serverPaused(seed: number, serverOptions: { psks?: ReturnType<typeof makePsk>[] } = {}) {
  const psk = makePsk('paused');
  const p = new Pair({ crypto: web(seed), psks: [psk] }, { crypto: web(seed + 1), psks: [psk], ...serverOptions });
  await runKeyAgreement(p.client, p.client.pendingKeyAgreement!);
  p.pump();
  return { p, psk };
}

t.test('the server pauses after the ClientHello (and after the PSK lookup when both pause)', async (t) => {
  const { p } = await serverPaused(20);
  t.equal(p.server.stateName, 'AwaitSharedSecret');
  t.match(p.server.pendingKeyAgreement, { step: 'respond', groups: ['x25519'] });
  t.equal(p.serverSent.length, 0, 'the server sent nothing yet');
  await settle(p);
  t.equal(p.info('client')?.kex, 'psk_dhe_ke', 'then the handshake completes');

  const psk = makePsk('lookup');
  const q = new Pair({ crypto: web(30), psks: [psk] }, { crypto: web(31) });
  await runKeyAgreement(q.client, q.client.pendingKeyAgreement!);
  q.pump();
  t.equal(q.server.stateName, 'AwaitPsks', 'first the PSK lookup');
  t.equal(q.server.pendingKeyAgreement, null, 'no key agreement is pending during the lookup');
  q.server.providePsks([psk]);
  t.equal(q.server.stateName, 'AwaitSharedSecret', 'then the key agreement');
  t.same(
    q.events('server').map((e) => e.type),
    ['psk-request', 'key-agreement'],
    'each announced by its event',
  );
  const pauses = await settle(q);
  t.same(pauses.map((x) => `${x.side} ${x.step}`), ['server respond', 'client complete']);
  t.equal(q.info('server')?.identity, 'lookup', 'the handshake completes with the looked-up PSK');
});

t.test('bytes received during a pause wait, within the bound of the PSK pause', async (t) => {
  // The client pauses after the ServerHello; the rest of the server's flight arrived in the same read.
  const psk = makePsk('buffered');
  const p = new Pair({ crypto: web(40), psks: [psk] }, { crypto: noble(41), psks: [psk] });
  await runKeyAgreement(p.client, p.client.pendingKeyAgreement!);
  p.pump();
  t.equal(p.serverSent.length, 1, "the server's whole flight arrived as one chunk");
  t.equal(p.client.stateName, 'AwaitSharedSecret', 'the client paused after the ServerHello');
  t.equal(p.client.takeOutput(), null, 'and answers nothing meanwhile');
  await runKeyAgreement(p.client, p.client.pendingKeyAgreement!);
  t.equal(p.client.phase, 'connected', 'EncryptedExtensions and Finished, buffered, are read after the pause');
  p.pump();
  t.equal(p.server.phase, 'connected');

  // A read buffer that the transport reuses while the key agreement runs (Connection.receive keeps no view of it).
  const psk2 = makePsk('reused-buffer');
  const r = new Pair({ crypto: web(42), psks: [psk2] }, { crypto: noble(43), psks: [psk2] });
  await runKeyAgreement(r.client, r.client.pendingKeyAgreement!);
  r.server.receive(r.client.takeOutput()!);
  const flight = r.server.takeOutput()!;
  const buf = new Uint8Array(flight.length + 100);
  buf.set(flight);
  r.client.receive(buf.subarray(0, flight.length));
  t.equal(r.client.stateName, 'AwaitSharedSecret');
  buf.fill(0xee); // the next read reuses the buffer while WebCrypto works
  await runKeyAgreement(r.client, r.client.pendingKeyAgreement!);
  t.equal(r.client.phase, 'connected', 'the ServerHello and the buffered flight survive the reused read buffer');
  r.server.receive(r.client.takeOutput()!);
  t.equal(r.server.phase, 'connected');

  const { p: q } = await serverPaused(50);
  q.server.receive(new Uint8Array(MAX_BUFFERED_WHILE_WAITING + 1));
  const err = q.error('server');
  t.equal(err?.reason, 'TooMuchDataWhileWaiting', 'more than the bound fails the handshake');
  t.match(err?.message, /key agreement was pending/, 'naming the key agreement');
});

t.test('destroy and the handshake timeout during a pause; a late answer is ignored', async (t) => {
  const { p } = await serverPaused(60);
  const request = p.server.pendingKeyAgreement!;
  p.server.destroy();
  t.equal(p.server.pendingKeyAgreement, null, 'nothing pending once destroyed');
  const late = await request.run();
  t.doesNotThrow(() => p.server.provideKeyAgreement(late), 'the answer after destroy is ignored');
  t.equal(p.server.takeOutput(), null, 'no ServerHello goes out');

  const { p: q } = await serverPaused(70);
  const pending = q.server.pendingKeyAgreement!;
  q.server.handshakeTimedOut();
  t.equal(q.error('server')?.reason, 'HandshakeTimeout', 'the timeout fails the handshake');
  const alert = q.server.takeOutput();
  t.ok(alert && splitRecords(alert).every((r) => r.type === 21), 'with its alert only');
  q.server.provideKeyAgreement(await pending.run());
  t.equal(q.server.takeOutput(), null, 'the late answer sends nothing');

  // The client's pause after the ServerHello.
  const psk = makePsk('client-destroy');
  const r = new Pair({ crypto: web(80), psks: [psk] }, { crypto: noble(81), psks: [psk] });
  await runKeyAgreement(r.client, r.client.pendingKeyAgreement!);
  r.pump();
  const completing = r.client.pendingKeyAgreement!;
  t.equal(completing.step, 'complete');
  r.client.destroy();
  r.client.provideKeyAgreement(await completing.run());
  t.equal(r.client.phase, 'closed', 'the client stays closed');
  t.equal(r.client.takeOutput(), null, 'and sends nothing');
});

t.test('a key agreement that fails for a reason of ours is KeyAgreementFailed (internal_error)', async (t) => {
  const { p } = await serverPaused(90);
  p.server.failKeyAgreement(new Error('the WebCrypto worker died'));
  const err = p.error('server');
  t.equal(err?.reason, 'KeyAgreementFailed');
  t.equal(err?.alert, 'internal_error');
  p.pump();
  t.equal(p.error('client')?.alert, 'internal_error', 'the client receives the alert');
});

const LOW_ORDER_X25519 = [
  '0000000000000000000000000000000000000000000000000000000000000000',
  '0100000000000000000000000000000000000000000000000000000000000000',
  'e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800',
  'ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f',
  '0000000000000000000000000000000000000000000000000000000000000080',
];

t.test('a hostile peer share ends in the same reason and alert as on the synchronous path', async (t) => {
  const flip = (s: Uint8Array) => {
    const b = s.slice();
    b[b.length - 1] ^= 1;
    return b;
  };
  const cases: { group: GroupName; edit: (s: Uint8Array) => Uint8Array; reason: Reason; what: string; beforePause: boolean }[] = [
    { group: 'x25519', edit: (s) => s.subarray(0, 31), reason: 'InvalidPeerKeyShare', what: '31 bytes', beforePause: true },
    { group: 'x25519', edit: (s) => concat(s, new Uint8Array(1)), reason: 'InvalidPeerKeyShare', what: '33 bytes', beforePause: true },
    ...LOW_ORDER_X25519.map((u) => ({ group: 'x25519' as GroupName, edit: () => fromHex(u), reason: 'KeyExchangeZeroSecret' as Reason, what: `low-order u ${u.slice(0, 8)}..${u.slice(-4)}`, beforePause: false })),
    { group: 'secp256r1', edit: flip, reason: 'InvalidPeerKeyShare', what: 'a point off the curve', beforePause: true },
    { group: 'secp256r1', edit: (s) => concat(Uint8Array.of(0x02), s.subarray(1)), reason: 'InvalidPeerKeyShare', what: 'prefix 0x02 (not uncompressed)', beforePause: true },
    { group: 'secp256r1', edit: (s) => concat(Uint8Array.of(0x02 | (s[64] & 1)), s.subarray(1, 33)), reason: 'InvalidPeerKeyShare', what: 'a compressed point (33 bytes)', beforePause: true },
    { group: 'secp256r1', edit: () => concat(Uint8Array.of(4), new Uint8Array(64)), reason: 'InvalidPeerKeyShare', what: '0x04 and zeros', beforePause: true },
    { group: 'secp256r1', edit: (s) => s.subarray(0, 64), reason: 'InvalidPeerKeyShare', what: '64 bytes', beforePause: true },
  ];
  for (const c of cases) {
    for (const detector of ['server', 'client'] as const) {
      const what = `${c.group} ${detector === 'server' ? 'client' : 'server'} share: ${c.what}`;
      const psk = makePsk('hostile');
      const outcome = async (detecting: CryptoProvider) => {
        const evil = tamperedShares(noble(101), c.group, detector === 'server' ? { client: c.edit } : { server: c.edit });
        const [cc, sc] = detector === 'server' ? [evil, detecting] : [detecting, evil];
        const p = new Pair({ crypto: cc, psks: [psk], groups: [c.group] }, { crypto: sc, psks: [psk], groups: [c.group] });
        const pauses = await settle(p);
        return { err: p.error(detector), peer: p.error(detector === 'server' ? 'client' : 'server'), pauses: pauses.filter((x) => x.side === detector) };
      };
      const sync = await outcome(noble(102));
      const async = await outcome(web(102));
      t.equal(sync.err?.reason, c.reason, `${what}: the synchronous ${detector} fails with ${c.reason}`);
      t.equal(async.err?.reason, c.reason, `${what}: so does the WebCrypto ${detector}`);
      t.equal(async.err?.alert, sync.err?.alert, `${what}: the same alert (${sync.err?.alert})`);
      t.equal(async.peer?.alert, sync.err?.alert, `${what}: which the peer receives`);
      const step = detector === 'server' ? 'respond' : 'complete';
      t.equal(async.pauses.some((x) => x.step === step), !c.beforePause, `${what}: ${c.beforePause ? 'refused before the pause' : 'refused after the WebCrypto work'}`);
    }
  }
});

t.test("a runtime whose WebCrypto lacks the algorithm falls back to the synchronous group, with the same bytes", async (t) => {
  const subtle = globalThis.crypto.subtle;
  const importKey = subtle.importKey;
  // As a runtime without X25519 in WebCrypto would answer.
  Object.defineProperty(subtle, 'importKey', {
    configurable: true,
    writable: true,
    value: function (this: unknown, ...args: Parameters<typeof importKey>) {
      const alg = args[2] as { name?: string } | string;
      if ((typeof alg === 'string' ? alg : alg.name) === 'X25519') return Promise.reject(new DOMException('Unrecognized algorithm name', 'NotSupportedError'));
      return importKey.apply(subtle, args);
    },
  });
  t.teardown(() => {
    delete (subtle as unknown as Record<string, unknown>).importKey;
  });
  const psk = makePsk('fallback');
  const sync = new Pair({ crypto: noble(111), psks: [psk] }, { crypto: noble(112), psks: [psk] });
  sync.pump();
  const [cc, sc] = [web(111), web(112)];
  const p = new Pair({ crypto: cc, psks: [psk] }, { crypto: sc, psks: [psk] });
  const pauses = await settle(p);
  t.equal(toHex(concat(...p.clientSent)), toHex(concat(...sync.clientSent)), 'the client sent the same bytes');
  t.equal(toHex(concat(...p.serverSent)), toHex(concat(...sync.serverSent)), 'the server sent the same bytes');
  t.equal(p.info('client')?.group, 'x25519');
  t.equal(cc.keySharePath('x25519'), 'fallback', "the client's x25519 fell back");
  t.equal(sc.keySharePath('x25519'), 'fallback', "the server's too");
  t.same(cc.keyShares, { webcrypto: 0, fallback: 1 });
  t.same(
    pauses.map((x) => `${x.side} ${x.step}`),
    ['client start', 'server respond', 'client complete'],
    'each side paused to learn the algorithm is missing (the client share made then finishes through the pause too)',
  );
  const again = new Pair({ crypto: cc, psks: [psk] }, { crypto: sc, psks: [psk] });
  t.same(await settle(again), [], 'from then on the synchronous group runs with no pause');
  t.equal(again.info('server')?.kex, 'psk_dhe_ke');
  t.equal(cc.keySharePath('secp256r1'), 'untried', 'P-256 is still to be tried');
});

t.test('groups WebCrypto does not do stay with the base provider, with no pause', async (t) => {
  const psk = makePsk('ffdhe');
  const crypto = web(120);
  t.equal(crypto.keySharePath('ffdhe2048'), 'base');
  const p = new Pair({ crypto, psks: [psk], groups: ['ffdhe2048'] }, { crypto: web(121), psks: [psk], groups: ['ffdhe2048'] });
  t.same(await settle(p), [], 'no pause');
  t.equal(p.info('client')?.group, 'ffdhe2048');
  t.same(errorsOf(p.events('server')), []);
});

t.test('a request nobody runs reports no unhandled rejection', async (t) => {
  let unhandled = 0;
  const onUnhandled = () => unhandled++;
  process.on('unhandledRejection', onUnhandled);
  t.teardown(() => void process.off('unhandledRejection', onUnhandled));
  const psk = makePsk('unrun');
  const evil = tamperedShares(noble(130), 'x25519', { server: () => new Uint8Array(32) });
  const p = new Pair({ crypto: web(131), psks: [psk] }, { crypto: evil, psks: [psk] });
  await runKeyAgreement(p.client, p.client.pendingKeyAgreement!);
  p.pump();
  const request: KeyAgreementRequest = p.client.pendingKeyAgreement!;
  t.equal(request.step, 'complete');
  p.client.destroy(); // the zero-secret failure is never run by anyone
  await new Promise((r) => setTimeout(r, 50));
  t.equal(unhandled, 0);
});

/** What a key agreement's result carries (opaque to the API: read here to check that it was wiped). */
const valueOf = <T>(r: KeyAgreementResult): T => (r as unknown as { value: T }).value;
const zero = (b: Uint8Array): boolean => b.length > 0 && b.every((x) => x === 0);
const tick = (): Promise<void> => new Promise((r) => setTimeout(r, 5));

/** Replaces `crypto.subtle[method]` with `wrap(original)` until the test ends. */
type Call = (...args: unknown[]) => Promise<unknown>;
function stubSubtle(t: { teardown(f: () => void): void }, method: 'importKey' | 'deriveBits', wrap: (original: Call) => Call): void {
  const subtle = globalThis.crypto.subtle;
  const original = (subtle[method] as unknown as Call).bind(subtle);
  Object.defineProperty(subtle, method, { configurable: true, writable: true, value: wrap(original) });
  t.teardown(() => void delete (subtle as unknown as Record<string, unknown>)[method]);
}

t.test('the PKCS#8 buffers handed to WebCrypto are wiped once imported', async (t) => {
  const seen: Uint8Array[] = [];
  stubSubtle(t, 'importKey', (importKey) => ((format: unknown, data: unknown, ...rest: unknown[]) => {
    if (format === 'pkcs8') seen.push(data as Uint8Array);
    return importKey(format, data, ...rest);
  }));
  for (const group of ['x25519', 'secp256r1'] as const) {
    const psk = makePsk(`pkcs8-${group}`);
    const p = new Pair({ crypto: web(150), psks: [psk], groups: [group] }, { crypto: web(151), psks: [psk], groups: [group] });
    await settle(p);
    t.equal(p.info('client')?.group, group);
  }
  t.equal(seen.length, 4, 'a private key imported per side and group');
  t.ok(seen.every(zero), 'each PKCS#8 buffer (the private key) is zeros now');
});

t.test('what a key agreement produces after destroy is wiped or disposed of', async (t) => {
  // Server, destroyed while its share and the shared secret are being made.
  const { p } = await serverPaused(160);
  const responding = p.server.pendingKeyAgreement!;
  p.server.destroy();
  const exchanged = valueOf<{ share: Uint8Array; sharedSecret: Uint8Array }>(await responding.run());
  await tick();
  t.ok(zero(exchanged.sharedSecret), "the server's late shared secret is wiped");

  // Client, destroyed while its key shares are being made: the late shares are destroyed.
  const c = Connection.client({ crypto: web(162), psks: [makePsk('start-destroy')], groups: ['x25519', 'secp256r1'], keyShareGroups: ['x25519', 'secp256r1'] });
  const starting = c.pendingKeyAgreement!;
  c.destroy();
  const shares = valueOf<{ group: GroupName; key: { complete(s: Uint8Array): Promise<Uint8Array> } }[]>(await starting.run());
  await tick();
  t.equal(shares.length, 2);
  for (const s of shares) {
    const peer = s.group === 'x25519' ? noble(163).group('x25519')!.start(new Uint8Array(32).fill(1)).share : noble(163).group('secp256r1')!.start(new Uint8Array(48).fill(1)).share;
    await t.rejects(s.key.complete(peer), /destroyed/, `the late ${s.group} share is destroyed (its private CryptoKey dropped)`);
  }

  // Client, destroyed while the shared secret is being made: that secret is wiped, and the key share released.
  const psk = makePsk('complete-destroy');
  const r = new Pair({ crypto: web(164), psks: [psk] }, { crypto: noble(165), psks: [psk] });
  const first = r.client.pendingKeyAgreement!;
  const own = valueOf<{ key: { complete(s: Uint8Array): Promise<Uint8Array> } }[]>(await first.run());
  await runKeyAgreement(r.client, first);
  r.pump();
  const completing = r.client.pendingKeyAgreement!;
  t.equal(completing.step, 'complete');
  r.client.destroy();
  const secret = valueOf<Uint8Array>(await completing.run());
  await tick();
  t.ok(zero(secret), "the client's late shared secret is wiped");
  await t.rejects(own[0].key.complete(new Uint8Array(32).fill(9)), /destroyed/, 'and its key share destroyed');
});

t.test('the fallback path wipes its copy of the randomness', async (t) => {
  stubSubtle(t, 'importKey', (importKey) => ((...args: unknown[]) => {
    const alg = args[2] as { name?: string } | string;
    if ((typeof alg === 'string' ? alg : alg.name) === 'X25519') return Promise.reject(new DOMException('Unrecognized algorithm name', 'NotSupportedError'));
    return importKey(...args);
  }));
  const given: Uint8Array[] = [];
  const recording = (seed: number): CryptoProvider => {
    const base = noble(seed);
    return {
      ...base,
      group: (n) => {
        const g = base.group(n);
        if (!g || n !== 'x25519') return g;
        return {
          name: g.name,
          randomLength: g.randomLength,
          start: (r) => (given.push(r), g.start(r)),
          respond: (cs, r) => (given.push(r), g.respond(cs, r)),
        };
      },
    };
  };
  const psk = makePsk('fallback-wipe');
  const [cc, sc] = [withWebCryptoKeyShares(recording(170)), withWebCryptoKeyShares(recording(171))];
  const p = new Pair({ crypto: cc, psks: [psk] }, { crypto: sc, psks: [psk] });
  await settle(p);
  t.equal(p.info('client')?.kex, 'psk_dhe_ke');
  t.equal(cc.keySharePath('x25519'), 'fallback');
  t.equal(given.length, 2, 'the synchronous group made the client share and the server share');
  t.ok(given.every(zero), 'from copies of the randomness, wiped since');
});

t.test('a WebCrypto failure of the shared secret that says nothing of the peer key is ours: KeyAgreementFailed, not the peer blamed', async (t) => {
  // The server's derivations, in order: x25519 derives its public key (against the base point) and then the
  // shared secret; P-256 takes its public key from noble, so its first derivation is the shared secret.
  const cases = [
    { group: 'x25519', failing: 2, name: 'InvalidAccessError' },
    { group: 'secp256r1', failing: 1, name: 'OperationError' },
  ] as const;
  for (const { group, failing, name } of cases) {
    await t.test(group, async (t) => {
      const psk = makePsk(`ours-${group}`);
      const p = new Pair({ crypto: web(200), psks: [psk], groups: [group] }, { crypto: web(201), psks: [psk], groups: [group] });
      await runKeyAgreement(p.client, p.client.pendingKeyAgreement!); // the ClientHello, before the stub
      let calls = 0;
      stubSubtle(t, 'deriveBits', (deriveBits) => ((...args: unknown[]) =>
        ++calls === failing ? Promise.reject(new DOMException('refused', name)) : deriveBits(...args)));
      await settle(p); // the server starts its work on the ClientHello, through the stub
      t.ok(calls >= failing, 'the stubbed derivation ran');
      t.equal(p.error('server')?.reason, 'KeyAgreementFailed', `a ${name} of our own is KeyAgreementFailed`);
      t.equal(p.error('server')?.alert, 'internal_error', "sent as internal_error, not as the peer's fault");
      t.equal(p.info('client'), undefined, 'no handshake completes');
    });
  }
});

t.test('a runtime that returns an all-zero X25519 secret rather than refusing it: KeyExchangeZeroSecret', async (t) => {
  stubSubtle(t, 'deriveBits', (deriveBits) => ((...args: unknown[]) =>
    deriveBits(...args).catch((e: unknown) => {
      if ((e as { name?: string }).name === 'OperationError') return new ArrayBuffer(32);
      throw e;
    })));
  for (const detector of ['server', 'client'] as const) {
    const psk = makePsk(`zero-${detector}`);
    const evil = tamperedShares(noble(180), 'x25519', detector === 'server' ? { client: () => new Uint8Array(32) } : { server: () => new Uint8Array(32) });
    const [cc, sc] = detector === 'server' ? [evil, web(181)] : [web(181), evil];
    const p = new Pair({ crypto: cc, psks: [psk] }, { crypto: sc, psks: [psk] });
    await settle(p);
    t.equal(p.error(detector)?.reason, 'KeyExchangeZeroSecret', `the ${detector} refuses the all-zero secret`);
    t.equal(p.info(detector), undefined, 'no handshake completes');
  }
});

t.test('once WebCrypto has worked, a failure of our own key fails the handshake: no fallback', async (t) => {
  const crypto = web(190);
  const psk = makePsk('no-late-fallback');
  const ok = new Pair({ crypto, psks: [psk] }, { crypto: web(191), psks: [psk] });
  await settle(ok);
  t.equal(crypto.keySharePath('x25519'), 'webcrypto');
  // A peer's low-order point does not make the group fall back either.
  const evil = tamperedShares(noble(192), 'x25519', { server: () => new Uint8Array(32) });
  const bad = new Pair({ crypto, psks: [psk] }, { crypto: evil, psks: [psk] });
  await settle(bad);
  t.equal(bad.error('client')?.reason, 'KeyExchangeZeroSecret');
  t.equal(crypto.keySharePath('x25519'), 'webcrypto', "a peer's bad share leaves the path alone");

  stubSubtle(t, 'importKey', (importKey) => ((...args: unknown[]) =>
    args[0] === 'pkcs8' ? Promise.reject(new DOMException('the key store is full', 'OperationError')) : importKey(...args)));
  const c = Connection.client({ crypto, psks: [psk] });
  await runKeyAgreement(c, c.pendingKeyAgreement!);
  t.equal(c.error?.reason, 'KeyAgreementFailed', 'our own failure is internal_error');
  t.equal(crypto.keySharePath('x25519'), 'webcrypto', 'and no fallback');
  t.same(crypto.keyShares, { webcrypto: 2, fallback: 0 });
});

t.test('a WebCrypto that never settles holds no copy of our private key', async (t) => {
  const crypto = web(195);
  const psk = makePsk('never-settles');
  await settle(new Pair({ crypto, psks: [psk] }, { crypto: web(196), psks: [psk] }));
  t.equal(crypto.keySharePath('x25519'), 'webcrypto', 'WebCrypto has worked for this provider');
  const imported: Uint8Array[] = [];
  stubSubtle(t, 'importKey', (importKey) => ((...args: unknown[]) => {
    if (args[0] !== 'pkcs8') return importKey(...args);
    imported.push(args[1] as Uint8Array);
    return new Promise(() => {}); // never settles
  }));
  const c = Connection.client({ crypto, psks: [psk] });
  t.ok(c.pendingKeyAgreement, 'the client waits for its key share');
  t.equal(imported.length, 1, 'its private key went to WebCrypto, which never answers');
  t.ok(zero(imported[0]), 'the PKCS#8 document is wiped already (WebCrypto took its copy in importKey)');
  c.destroy();
  t.equal(c.pendingKeyAgreement, null, 'destroy ends the wait');
});

t.test('allOrNothing: when one key share fails, the ones made are disposed of', async (t) => {
  const disposed: string[] = [];
  const failure = new Error('second');
  await t.rejects(
    allOrNothing([Promise.resolve('a'), Promise.reject(failure), Promise.resolve('c')], (v) => void disposed.push(v)),
    failure,
  );
  t.same(disposed, ['a', 'c']);
  t.same(await allOrNothing([Promise.resolve(1), Promise.resolve(2)], () => t.fail('nothing to dispose of')), [1, 2]);
});

t.test('AwaitKeyAgreement: released once when the handshake fails after the pause or is destroyed during it', async (t) => {
  const make = (next: (io: HandshakeIO, v: string) => HandshakeState) => {
    const log: string[] = [];
    const state = new AwaitKeyAgreement(Promise.resolve('value'), {
      name: 'AwaitSharedSecret',
      step: 'respond',
      groups: ['x25519'],
      next,
      discard: (v) => void log.push(`discard ${v}`),
      release: () => void log.push('release'),
    });
    return { state, log };
  };
  const failing = make(() => {
    throw new Error('the flight failed');
  });
  const result = await failing.state.keyAgreement.run();
  t.throws(() => failing.state.resume({} as HandshakeIO, result), /the flight failed/);
  failing.state.destroy();
  await tick();
  t.same(failing.log, ['release'], 'a failure after the pause releases the paused secrets, once');

  const destroyed = make(() => t.fail('not resumed') as never);
  destroyed.state.destroy();
  destroyed.state.destroy();
  await tick();
  t.same(destroyed.log, ['release', 'discard value'], 'destroy releases, and disposes of the late value, once');
});

t.test('a client with 0-RTT in flight whose key agreement fails after the ServerHello alerts in plaintext', async (t) => {
  // RFC 8446 §4.2.10: a server that rejected 0-RTT reads the client's handshake keys and skips what fails to decrypt.
  // A client paused after the ServerHello (AwaitSharedSecret) has no handshake keys yet; before the fix the alert of
  // its failed key agreement went under the early keys, which that server skipped as 0-RTT data, and it waited. As
  // for a ServerHello refused on the synchronous path (test/core-review), the alert now goes in plaintext.
  const psk = makePsk('async-0rtt');
  const p = new Pair({ crypto: web(230), psks: [psk], earlyData: new Uint8Array(10) }, { crypto: noble(231), psks: [psk] });
  await runKeyAgreement(p.client, p.client.pendingKeyAgreement!); // the key share of the first ClientHello
  p.pump();
  t.equal(p.client.stateName, 'AwaitSharedSecret', 'the client waits for its shared secret, after the ServerHello');
  t.equal(p.server.stateName, 'ExpectClientFinished', 'the server rejected 0-RTT and waits for the client flight');
  p.client.failKeyAgreement(new Error('the WebCrypto worker died'));
  t.equal(p.client.error?.reason, 'KeyAgreementFailed');
  const out = p.client.takeOutput();
  t.same(out ? splitRecords(out).map((r) => [r.type, ...r.fragment]) : [], [[21, 2, 80]], 'one plaintext internal_error alert');
  p.server.receive(out!);
  t.equal(p.server.phase, 'failed', `the server does not wait (${p.server.stateName})`);
  t.equal(p.server.error?.alert, 'internal_error', 'it reads the client alert');
  t.equal(p.server.error?.remote, true);
});

t.test('a client that fails before its first ClientHello sends nothing: there is no peer to alert yet', async (t) => {
  const c = Connection.client({ crypto: web(200), psks: [makePsk('first-fails')] });
  t.equal(c.stateName, 'AwaitKeyShares');
  c.failKeyAgreement(new Error('the WebCrypto worker died'));
  t.equal(c.error?.reason, 'KeyAgreementFailed');
  t.equal(c.takeOutput(), null, 'no alert as the first bytes on the wire');
  t.equal(c.error?.alertSent, false, 'and the error says so');
  t.match(c.error?.message, /not sent/);

  const d = Connection.client({ crypto: web(201), psks: [makePsk('first-times-out')] });
  d.handshakeTimedOut();
  t.equal(d.error?.reason, 'HandshakeTimeout');
  t.equal(d.takeOutput(), null, 'a timeout during the first pause sends nothing either');

  // After a HelloRetryRequest the server waits for our second ClientHello: it is alerted.
  const psk = makePsk('retry-fails');
  const p = new Pair({ crypto: web(202), psks: [psk], groups: ['x25519', 'secp256r1'], keyShareGroups: ['x25519'] }, { crypto: noble(203), psks: [psk], groups: ['secp256r1'] });
  await runKeyAgreement(p.client, p.client.pendingKeyAgreement!);
  p.pump();
  t.equal(p.client.stateName, 'AwaitKeyShares', 'the client makes its share for the retry');
  p.client.handshakeTimedOut();
  const out = p.client.takeOutput();
  t.ok(out && splitRecords(out).some((r) => r.type === 21), 'the timeout alert goes out');
  t.equal(p.client.error?.alertSent, true);
});

t.test('a random source that fails between two key shares: the share already made is disposed of', async (t) => {
  let unhandled = 0;
  const onUnhandled = () => unhandled++;
  process.on('unhandledRejection', onUnhandled);
  t.teardown(() => void process.off('unhandledRejection', onUnhandled));
  for (const first of ['x25519', 'X25519MLKEM768'] as GroupName[]) {
    const base = noble(210);
    let calls = 0;
    // Client random, legacy_session_id, the first share's randomness; then the source fails.
    const failing: CryptoProvider = {
      ...base,
      random: (n) => {
        if (++calls > 3) throw new Error('the entropy source failed');
        return base.random(n);
      },
    };
    const crypto = withWebCryptoKeyShares(failing);
    const made: Promise<{ complete(s: Uint8Array): Promise<Uint8Array> | Uint8Array }>[] = [];
    const spied: CryptoProvider = {
      ...crypto,
      group: (n) => {
        const g = crypto.group(n);
        if (!g) return g;
        const start = (r: Uint8Array) => {
          const k = g.start(r);
          made.push(Promise.resolve(k));
          return k;
        };
        return { name: g.name, randomLength: g.randomLength, respond: (c, r) => g.respond(c, r), start };
      },
      asyncGroup: (n) => {
        const g = crypto.asyncGroup!(n);
        if (!g) return g;
        const start = (r: Uint8Array) => {
          const p = g.start(r);
          made.push(p);
          return p;
        };
        return { ...g, checkPeerShare: (f, s) => g.checkPeerShare(f, s), respond: (c, r) => g.respond(c, r), start };
      },
    };
    t.throws(
      () => Connection.client({ crypto: spied, psks: [makePsk('entropy')], groups: [first, 'secp256r1'], keyShareGroups: [first, 'secp256r1'] }),
      /the entropy source failed/,
      `${first} first: the client cannot start`,
    );
    t.equal(made.length, 1, `${first}: one share was made before the failure`);
    const share = await made[0];
    await tick();
    const peer = new Uint8Array(first === 'x25519' ? 32 : 1120).fill(9);
    await t.rejects(Promise.resolve().then(() => share.complete(peer)), /destroyed/, `${first}: and it is destroyed`);
  }
  await tick();
  t.equal(unhandled, 0, 'no unhandled rejection');
});

t.test('a server destroyed during its pause has wiped every secret it derived from the PSK (with and without 0-RTT)', async (t) => {
  for (const early of [false, true]) {
    const base = noble(220);
    const derived: Uint8Array[] = [];
    const recording: CryptoProvider = {
      ...base,
      hkdfExtract: (h, salt, ikm) => {
        const r = base.hkdfExtract(h, salt, ikm);
        derived.push(r);
        return r;
      },
      hkdfExpand: (h, prk, info, length) => {
        const r = base.hkdfExpand(h, prk, info, length);
        derived.push(r);
        return r;
      },
    };
    const psk = makePsk('server-release');
    const server = Connection.server({ crypto: withWebCryptoKeyShares(recording), psks: [psk], maxEarlyDataSize: early ? 1024 : undefined, earlyDataReplayGuard: createEarlyDataReplayGuard() });
    const client = Connection.client({ crypto: noble(221), psks: [psk], earlyData: early ? new Uint8Array([1, 2, 3]) : undefined });
    server.receive(client.takeOutput()!);
    t.equal(server.stateName, 'AwaitSharedSecret');
    t.ok(derived.length >= (early ? 4 : 2), `${early ? '0-RTT' : 'no 0-RTT'}: the early secret (and the early traffic secret) derived before the pause`);
    server.destroy();
    await tick();
    t.ok(derived.every(zero), `${early ? '0-RTT' : 'no 0-RTT'}: every one of them is zeros after destroy`);
  }
});

/**
 * A handshake between two providers with WebCrypto key shares (seeds `seed` and `seed + 1`), against the same
 * providers in JavaScript: it completes with x25519 and every byte on the wire is the same.
 */
async function fallbackSameBytes(t: { equal(a: unknown, b: unknown, m: string): void }, name: string, seed: number) {
  const psk = makePsk(name);
  const sync = new Pair({ crypto: noble(seed), psks: [psk] }, { crypto: noble(seed + 1), psks: [psk] });
  sync.pump();
  const [cc, sc] = [withWebCryptoKeyShares(noble(seed)), withWebCryptoKeyShares(noble(seed + 1))];
  const p = new Pair({ crypto: cc, psks: [psk] }, { crypto: sc, psks: [psk] });
  await settle(p);
  t.equal(p.info('client')?.group, 'x25519', 'the handshake completes');
  t.equal(toHex(concat(...p.clientSent)), toHex(concat(...sync.clientSent)), 'the client sent the same bytes');
  t.equal(toHex(concat(...p.serverSent)), toHex(concat(...sync.serverSent)), 'the server sent the same bytes');
  return { cc, sc };
}

t.test('importKey that throws synchronously before WebCrypto worked: the fallback makes the same bytes', async (t) => {
  const seen: Uint8Array[] = [];
  stubSubtle(t, 'importKey', (importKey) => (...args: unknown[]) => {
    if (args[0] === 'pkcs8') {
      seen.push(args[1] as Uint8Array);
      throw new DOMException('no X25519 here', 'NotSupportedError');
    }
    return importKey(...args);
  });
  const { cc } = await fallbackSameBytes(t, 'sync-throw', 301);
  t.equal(cc.keySharePath('x25519'), 'fallback');
  t.ok(seen.length === 2 && seen.every((b) => b.every((x) => x === 0)), 'the PKCS#8 buffers are wiped even so');
});

t.test("X25519 imported but its public key not derived (deriveBits refused) before WebCrypto worked: the fallback makes the same bytes", async (t) => {
  // The fallback's copy of the randomness is kept until the whole key pair is made, not only until the private
  // key is imported: a runtime may import an algorithm it cannot derive with, and the handshake still completes.
  stubSubtle(t, 'deriveBits', (deriveBits) => (...args: unknown[]) => {
    if ((args[0] as { name?: string }).name === 'X25519') return Promise.reject(new DOMException('X25519 derivation is not supported', 'NotSupportedError'));
    return deriveBits(...args);
  });
  const { cc, sc } = await fallbackSameBytes(t, 'derive-refused', 321);
  t.equal(cc.keySharePath('x25519'), 'fallback', "the client's x25519 fell back");
  t.equal(sc.keySharePath('x25519'), 'fallback', "the server's too");
});

t.test('importKey that throws synchronously after WebCrypto worked: KeyAgreementFailed, nothing escapes', async (t) => {
  const crypto = withWebCryptoKeyShares(noble(311));
  const psk = makePsk('sync-throw-late');
  await settle(new Pair({ crypto, psks: [psk] }, { crypto: withWebCryptoKeyShares(noble(312)), psks: [psk] }));
  t.equal(crypto.keySharePath('x25519'), 'webcrypto');
  stubSubtle(t, 'importKey', (importKey) => (...args: unknown[]) => {
    if (args[0] === 'pkcs8') throw new DOMException('the key store is full', 'OperationError');
    return importKey(...args);
  });
  const c = Connection.client({ crypto, psks: [psk] });
  await runKeyAgreement(c, c.pendingKeyAgreement!);
  t.equal(c.error?.reason, 'KeyAgreementFailed');
  t.equal(crypto.keySharePath('x25519'), 'webcrypto', 'no fallback');
});
