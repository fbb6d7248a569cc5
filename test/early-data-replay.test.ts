/**
 * 0-RTT anti-replay (RFC 8446 §8, §8.2): a server accepts the early data of one ClientHello at most once.
 *
 * Before: a server with maxEarlyDataSize > 0 accepted the 0-RTT data of every ClientHello whose binder verified,
 * so an attacker who recorded a client's first flight (ClientHello + early data) could send it again, to the same
 * server or another with the same key, and have its early data decrypted and handed to the application each time.
 * A replay is made here in two ways: the recorded bytes sent again (an attacker, who cannot complete the
 * handshake), and a twin client with the same key and the same (seeded) randomness, whose first flight is the
 * same bytes and which can complete the handshake, so that what the application receives is visible.
 */
import t from 'tap';
import { EventEmitter, once } from 'node:events';
import * as net from 'node:net';
import { concat, fromUtf8, toHex, utf8 } from '../lib/codec/bytes.js';
import { ContentType } from '../lib/codec/enums.js';
import type { ClientOptions, ServerOptions } from '../lib/config/options.js';
import { Connection } from '../lib/connection/connection.js';
import { nodeProvider } from '../lib/crypto/node.js';
import { createEarlyDataReplayGuard, type EarlyDataReplayGuard } from '../lib/config/anti-replay.js';
import type { RecordTrace } from '../lib/record/trace-hook.js';
import { connect, createServer, type QkdTlsSocket } from '../lib/transport/node.js';
import { tlsServerOverStreams } from '../lib/transport/streams.js';
import { errorsOf, handshake, makePsk, Pair, seededRandom, splitRecords, withRandom } from './helpers/pair.js';
import { serverPskResolver, StaticKeySource } from '../lib/psk/source.js';
import { memoryPipe } from './helpers/memory-streams.js';

const crypto = nodeProvider;
const EARLY = 'early words';

/** A client whose randomness comes from `seed`: the same seed makes the same first flight, byte for byte. */
function twinClient(psk: ReturnType<typeof makePsk>, seed: number, extra: Partial<ClientOptions> = {}): ClientOptions {
  return { crypto: withRandom(crypto, seededRandom(seed)), psks: [psk], earlyData: utf8(EARLY), ...extra };
}

/** A guard that counts its calls, around a real one. */
function counting(inner: EarlyDataReplayGuard = createEarlyDataReplayGuard()): EarlyDataReplayGuard & { calls: number } {
  const g = {
    calls: 0,
    firstUse(binder: Uint8Array): boolean {
      g.calls++;
      return inner.firstUse(binder);
    },
  };
  return g;
}

t.test('the same first flight to two servers sharing a guard: 0-RTT accepted by the first, rejected as a replay by the second', async (tt) => {
  const psk = makePsk('replay-pair');
  const guard = createEarlyDataReplayGuard();
  const server = (): ServerOptions => ({ crypto, psks: [psk], maxEarlyDataSize: 1024, earlyDataReplayGuard: guard });

  const first = handshake(twinClient(psk, 81), server());
  tt.equal(first.info('server')?.earlyData, 'accepted', 'the first copy: 0-RTT accepted');
  tt.equal(first.info('server')?.earlyDataRejection, undefined, 'no rejection reason when accepted');
  tt.equal(fromUtf8(first.received('server', 'early')), EARLY, 'the first copy: the early data is delivered');

  const replay = handshake(twinClient(psk, 81), server());
  tt.equal(toHex(replay.clientSent[0]), toHex(first.clientSent[0]), 'the second first flight is the same bytes (a replay)');
  tt.ok(
    splitRecords(first.clientSent[0]).some((r) => r.type === ContentType.application_data),
    'that flight carries the 0-RTT records',
  );
  tt.same(errorsOf(replay.events('server')), [], 'the replay does not fail the handshake (RFC 8446 §8.2: reject 0-RTT, do not abort)');
  tt.equal(replay.server.phase, 'connected', 'the replay completes 1-RTT');
  tt.equal(replay.client.phase, 'connected', 'its client too');
  tt.equal(replay.info('server')?.earlyData, 'rejected', 'the replay: 0-RTT rejected');
  tt.equal(replay.info('server')?.earlyDataRejection, 'replay', 'the server says why: a replay');
  tt.equal(replay.info('client')?.earlyData, 'rejected', 'the client learns that its 0-RTT was rejected');
  tt.equal(replay.info('client')?.earlyDataRejection, undefined, 'a client is not told why');
  tt.equal(replay.received('server').length, 0, 'the replay: nothing is delivered, early or not');

  // The recorded bytes sent again by someone who cannot go on (no key): the server answers, delivers nothing.
  const third = Connection.server(server());
  third.receive(first.clientSent[0]);
  const events = third.takeEvents();
  tt.same(errorsOf(events), [], 'a raw replay of the first flight: no failure');
  tt.notOk(third.takeOutput() === null, 'the server answers it (ServerHello ...)');
  tt.same(
    events.filter((e) => e.type === 'data'),
    [],
    'a raw replay of the first flight: no early data delivered',
  );
});

t.test('with dangerouslyAcceptReplayedEarlyData and no guard, a replay is accepted again (what the opt-out means)', async (tt) => {
  const psk = makePsk('replay-dangerous');
  const server = (): ServerOptions => ({ crypto, psks: [psk], maxEarlyDataSize: 1024, dangerouslyAcceptReplayedEarlyData: true });
  for (const copy of ['first', 'second']) {
    const p = handshake(twinClient(psk, 82), server());
    tt.equal(fromUtf8(p.received('server', 'early')), EARLY, `${copy} copy: delivered`);
  }
});

t.test('the guard is consulted last: after the binder verified, and only when 0-RTT would otherwise be accepted', async (tt) => {
  // RFC 8446 §8.2: "the server first verifies the PSK binder": a ClientHello made without the key never fills the
  // register. §4.2.10's other conditions reject 0-RTT for their own reasons, without recording anything.
  const psk = makePsk('replay-order');
  const forged = { ...psk, secret: new Uint8Array(32).fill(7) };
  const g = counting();
  const p = handshake(twinClient(forged, 83), { crypto, psks: [psk], maxEarlyDataSize: 1024, earlyDataReplayGuard: g });
  tt.equal(p.error('server')?.reason, 'IncorrectBinder', 'a wrong binder fails as before (decrypt_error)');
  tt.equal(g.calls, 0, 'the guard never saw the forged binder');

  const cases: { name: string; client: Partial<ClientOptions>; server: Partial<ServerOptions>; reason: string; psks?: 'second' }[] = [
    { name: 'maxEarlyDataSize 0', client: {}, server: { maxEarlyDataSize: 0 }, reason: 'disabled' },
    { name: 'an ALPN protocol the PSK was not provisioned with', client: { alpn: ['h2'] }, server: { alpn: ['h2'] }, reason: 'not-provisioned' },
    { name: 'a HelloRetryRequest', client: { groups: ['x25519', 'secp256r1'] }, server: { groups: ['secp256r1'] }, reason: 'hello-retry' },
    { name: "not the client's first PSK", client: {}, server: {}, reason: 'not-first-psk', psks: 'second' },
  ];
  for (const c of cases) {
    const other = makePsk('replay-order-other');
    const counter = counting();
    const clientPsks = c.psks === 'second' ? [other, psk] : [psk];
    const q = handshake(
      { ...twinClient(psk, 84), psks: clientPsks, ...c.client },
      { crypto, psks: [psk], maxEarlyDataSize: 1024, earlyDataReplayGuard: counter, ...c.server },
    );
    tt.equal(q.server.phase, 'connected', `${c.name}: connected`);
    tt.equal(q.info('server')?.earlyData, 'rejected', `${c.name}: 0-RTT rejected`);
    tt.equal(q.info('server')?.earlyDataRejection, c.reason, `${c.name}: reason ${c.reason}`);
    tt.equal(counter.calls, 0, `${c.name}: the guard is not consulted`);
  }
  const counter = counting();
  handshake(twinClient(psk, 85), { crypto, psks: [psk], maxEarlyDataSize: 1024, earlyDataReplayGuard: counter });
  tt.equal(counter.calls, 1, 'accepted 0-RTT: the guard is consulted once');
});

t.test('a full guard rejects 0-RTT for every new ClientHello, never aborts, never forgets', async (tt) => {
  const psk = makePsk('replay-full');
  const guard = createEarlyDataReplayGuard({ maxEntries: 2 });
  const server = (): ServerOptions => ({ crypto, psks: [psk], maxEarlyDataSize: 1024, earlyDataReplayGuard: guard });
  const statuses: string[] = [];
  for (const seed of [91, 92, 93, 94]) {
    const p = handshake(twinClient(psk, seed), server());
    tt.same(errorsOf(p.events('server')), [], `ClientHello ${seed}: no failure`);
    tt.equal(p.server.phase, 'connected', `ClientHello ${seed}: connected`);
    statuses.push(`${p.info('server')?.earlyData}${p.info('server')?.earlyDataRejection ? '/' + p.info('server')?.earlyDataRejection : ''}`);
  }
  tt.same(statuses, ['accepted', 'accepted', 'rejected/replay', 'rejected/replay'], 'two accepted, then every new one rejected');
  tt.equal(guard.size, 2, 'the register holds two');
  tt.equal(guard.full, true, 'and says it is full');
  const again = handshake(twinClient(psk, 91), server());
  tt.equal(again.info('server')?.earlyDataRejection, 'replay', 'a replay of a recorded one is still rejected (nothing was evicted)');
});

t.test('a single-use key (its source gives it out once: QKD, a one-time source) is not recorded, and its replay finds no key', async (tt) => {
  const psk = makePsk('one-time');
  const source = new StaticKeySource([psk], { oneTime: true });
  tt.equal(source.singleUse, true, 'a one-time static source says its keys serve one handshake');
  tt.equal(new StaticKeySource([psk]).singleUse, false, 'a reusable one does not');
  // A guard that is full already: it would reject any 0-RTT it is asked about.
  const full = createEarlyDataReplayGuard({ maxEntries: 1 });
  full.firstUse(new Uint8Array(32).fill(1));
  const guard = counting(full);
  const lookupPsks = serverPskResolver(crypto, source);
  const server = async (client: ClientOptions) => {
    const p = new Pair(client, { crypto, maxEarlyDataSize: 1024, earlyDataReplayGuard: guard });
    p.pump();
    const request = p.server.pskRequest!;
    p.server.providePsks(await lookupPsks(request));
    p.pump();
    return p;
  };
  const first = await server(twinClient(psk, 91));
  tt.equal(first.info('server')?.earlyData, 'accepted', 'its 0-RTT is accepted although the guard is full');
  tt.equal(fromUtf8(first.received('server', 'early')), EARLY, 'and delivered');
  tt.equal(guard.calls, 0, 'the guard was not consulted (nothing recorded for a key that cannot come back)');
  const replay = await server(twinClient(psk, 91));
  tt.equal(toHex(replay.clientSent[0]), toHex(first.clientSent[0]), 'a replay: the same first flight');
  tt.equal(replay.server.phase, 'failed', 'finds no key: the handshake fails');
  tt.equal(replay.received('server').length, 0, 'and nothing is delivered');
  tt.equal(guard.calls, 0, 'the guard is still untouched');
  // The same key from a reusable source goes through the guard (which, full, rejects its 0-RTT).
  const reusable = serverPskResolver(crypto, new StaticKeySource([psk]));
  const p = new Pair(twinClient(psk, 92), { crypto, maxEarlyDataSize: 1024, earlyDataReplayGuard: guard });
  p.pump();
  p.server.providePsks(await reusable(p.server.pskRequest!));
  p.pump();
  tt.same([p.info('server')?.earlyData, p.info('server')?.earlyDataRejection, guard.calls], ['rejected', 'replay', 1], 'a reusable key is checked by the guard');
});

t.test('createEarlyDataReplayGuard on its own', async (tt) => {
  const g = createEarlyDataReplayGuard({ maxEntries: 3 });
  const a = new Uint8Array(32).fill(1);
  const b = new Uint8Array(32).fill(2);
  tt.equal(g.firstUse(a), true, 'a new binder: first use');
  tt.equal(g.firstUse(a), false, 'the same binder again: a repeat');
  tt.equal(g.firstUse(a.slice()), false, 'the same bytes in another buffer: a repeat');
  const sameStart = a.slice();
  sameStart[20] ^= 0xff;
  tt.equal(g.firstUse(sameStart), false, 'a binder equal in its first 16 bytes counts as a repeat (128 bits are recorded)');
  tt.equal(g.firstUse(b), true, 'another binder: first use');
  tt.equal(g.size, 2, 'two recorded');
  tt.equal(g.firstUse(new Uint8Array(32).fill(3)), true, 'a third: first use');
  tt.equal(g.full, true, 'full at maxEntries');
  tt.equal(g.firstUse(new Uint8Array(32).fill(4)), false, 'full: a new binder is answered as a repeat');
  tt.equal(g.firstUse(a), false, 'full: an old one is still a repeat');
  tt.equal(g.size, 3, 'nothing added, nothing evicted');
  tt.equal(createEarlyDataReplayGuard().maxEntries, 100_000, 'default bound: 100,000');
  for (const maxEntries of [0, -1, 1.5, Number.NaN, Number.POSITIVE_INFINITY]) {
    tt.throws(() => createEarlyDataReplayGuard({ maxEntries }), TypeError, `maxEntries ${maxEntries} is refused`);
  }
});

t.test('a server that accepts 0-RTT without a replay guard is refused when it is made', async (tt) => {
  const psk = makePsk('replay-options');
  tt.throws(
    () => Connection.server({ crypto, psks: [psk], maxEarlyDataSize: 1024 }),
    { name: 'TypeError', message: /earlyDataReplayGuard: createEarlyDataReplayGuard\(\).*dangerouslyAcceptReplayedEarlyData: true/ },
    'maxEarlyDataSize without a guard: a TypeError that says what to pass',
  );
  tt.throws(
    () => Connection.server({ crypto, psks: [psk], maxEarlyDataSize: 1024, earlyDataReplayGuard: {} as EarlyDataReplayGuard }),
    { name: 'TypeError', message: /firstUse/ },
    'a guard without firstUse: a TypeError',
  );
  tt.doesNotThrow(() => Connection.server({ crypto, psks: [psk] }).destroy(), 'no 0-RTT: no guard needed');
  tt.doesNotThrow(() => Connection.server({ crypto, psks: [psk], maxEarlyDataSize: 1024, earlyDataReplayGuard: createEarlyDataReplayGuard() }).destroy(), 'with a guard');
  tt.doesNotThrow(() => Connection.server({ crypto, psks: [psk], maxEarlyDataSize: 1024, dangerouslyAcceptReplayedEarlyData: true }).destroy(), 'with the dangerous opt-out');

  // The streams transport serves one connection per call: its caller gives the guard.
  const [, s] = memoryPipe();
  tt.throws(() => tlsServerOverStreams(s, { crypto, psks: [psk], maxEarlyDataSize: 1024 }), { name: 'TypeError', message: /earlyDataReplayGuard/ }, 'tlsServerOverStreams: the same TypeError');

  // createServer makes one guard per server, shared by its connections.
  const made = createServer({ crypto, psks: [psk], maxEarlyDataSize: 1024 });
  tt.equal(typeof made.earlyDataReplayGuard?.firstUse, 'function', 'createServer with 0-RTT: a guard of its own');
  const given = createEarlyDataReplayGuard();
  tt.equal(createServer({ crypto, psks: [psk], maxEarlyDataSize: 1024, earlyDataReplayGuard: given }).earlyDataReplayGuard, given, 'or the one given');
  tt.equal(createServer({ crypto, psks: [psk] }).earlyDataReplayGuard, undefined, 'without 0-RTT: none');
  tt.equal(createServer({ crypto, psks: [psk], maxEarlyDataSize: 1024, dangerouslyAcceptReplayedEarlyData: true }).earlyDataReplayGuard, undefined, 'with the opt-out: none');
});

t.test('a guard that throws or answers no boolean fails that handshake (internal_error), named', async (tt) => {
  const psk = makePsk('replay-throws');
  const guards: [string, EarlyDataReplayGuard][] = [
    ['throws', { firstUse: () => { throw new Error('store down'); } }],
    ['answers a promise', { firstUse: () => Promise.resolve(true) as unknown as boolean }],
  ];
  for (const [name, guard] of guards) {
    const p = handshake(twinClient(psk, 86), { crypto, psks: [psk], maxEarlyDataSize: 1024, earlyDataReplayGuard: guard });
    tt.equal(p.error('server')?.reason, 'EarlyDataReplayGuardFailed', `${name}: EarlyDataReplayGuardFailed`);
    tt.equal(p.error('server')?.alert, 'internal_error', `${name}: internal_error`);
    tt.equal(p.received('server').length, 0, `${name}: nothing delivered`);
  }
});

t.test('over TCP (createServer on 127.0.0.1): a recorded first flight gets its early data delivered once', async (tt) => {
  const psk = makePsk('replay-tcp');
  /** What each accepted connection decrypted of the client's application data (0-RTT records included), in order. */
  const opened: string[][] = [];
  const clientHellos: string[] = [];
  /** What the application read on each completed connection, with its handshake summary. */
  const delivered: { data: string; earlyData?: string; rejection?: string }[] = [];
  const deliveries = new EventEmitter();
  const server = createServer(
    {
      crypto,
      psks: [psk],
      maxEarlyDataSize: 1024,
      traceConnection: () => {
        const mine: string[] = [];
        opened.push(mine);
        return (r: RecordTrace) => {
          if (r.direction !== 'received') return;
          if (!r.protected && r.type === ContentType.handshake) clientHellos.push(toHex(r.content));
          if (r.protected && r.opened && r.type === ContentType.application_data) mine.push(fromUtf8(r.content));
        };
      },
    },
    (socket: QkdTlsSocket) => {
      const chunks: Buffer[] = [];
      socket.on('data', (c: Buffer) => chunks.push(c));
      socket.on('end', () => {
        delivered.push({ data: Buffer.concat(chunks).toString(), earlyData: socket.handshake?.earlyData, rejection: socket.handshake?.earlyDataRejection });
        deliveries.emit('delivered');
        socket.end();
      });
    },
  );
  server.on('tlsClientError', () => {});
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  tt.teardown(() => {
    server.destroyAll();
    server.close();
  });
  const port = server.address().port;

  /** A client that completes the handshake, then closes. */
  const completed = async (seed: number): Promise<QkdTlsSocket> => {
    const c = connect({ port, ...twinClient(psk, seed) });
    c.resume();
    await once(c, 'secureConnect');
    c.end();
    await once(c, 'close');
    return c;
  };
  const ended = async (n: number): Promise<void> => {
    while (delivered.length < n) await once(deliveries, 'delivered');
  };

  // 1. The client's own connection: 0-RTT accepted, the early data delivered.
  const genuine = await completed(87);
  await ended(1);
  tt.equal(genuine.handshake?.earlyData, 'accepted', 'the client: 0-RTT accepted');
  tt.same(delivered[0], { data: EARLY, earlyData: 'accepted', rejection: undefined }, 'the application reads the early data once');

  // 2. An attacker sends the recorded first flight again on a new TCP connection (it cannot finish the handshake).
  const recorded = Connection.client(twinClient(psk, 87)).takeOutput()!;
  const raw = net.connect({ host: '127.0.0.1', port });
  const failed = once(server, 'tlsClientError');
  raw.write(recorded);
  await once(raw, 'data'); // the server's answer: it has read the ClientHello and the 0-RTT records after it
  raw.destroy();
  await failed;
  tt.equal(clientHellos[1], clientHellos[0], 'the raw replay is the same ClientHello');
  tt.same(opened[1], [], 'the raw replay: its 0-RTT records are not decrypted (rejected as a replay, skipped)');

  // 3. The same first flight once more, from a twin that can finish the handshake: it completes 1-RTT.
  const twin = await completed(87);
  await ended(2);
  tt.equal(clientHellos[2], clientHellos[0], 'the twin sent the same ClientHello');
  tt.equal(twin.handshake?.earlyData, 'rejected', 'the twin: 0-RTT rejected');
  tt.same(delivered[1], { data: '', earlyData: 'rejected', rejection: 'replay' }, 'the application reads nothing, and is told it was a replay');
  tt.same(opened[2], [], 'nothing of it was decrypted');
  tt.equal(server.earlyDataReplayGuard && (server.earlyDataReplayGuard as { size?: number }).size, 1, "the server's guard holds one ClientHello");
  tt.equal(concat(...opened.flat().map(utf8)).length, EARLY.length, 'in all, the early data was decrypted once');
});

t.test('over WHATWG streams (tlsServerOverStreams, a guard from its caller): a raw replay reads no early data', async (tt) => {
  // This transport hands early data to the application's readable as it arrives, before the handshake completes
  // (an attacker who replays a first flight never completes it): the guard is what keeps a replay out of it.
  const psk = makePsk('replay-streams');
  const guard = createEarlyDataReplayGuard();
  const recorded = Connection.client(twinClient(psk, 88)).takeOutput()!;
  /** One server connection, sent the recorded flight and then the end of its input; what its application read. */
  const serve = async (): Promise<string> => {
    const [c, s] = memoryPipe();
    const tls = tlsServerOverStreams(s, { crypto, psks: [psk], maxEarlyDataSize: 1024, earlyDataReplayGuard: guard, handshakeTimeout: 0 });
    tls.handshake.catch(() => {});
    void c.readable.pipeTo(new WritableStream()).catch(() => {}); // the server's answer, read and dropped
    // Reading starts first: a readable that errors (the handshake fails at the end of input, nothing follows the
    // first flight) drops what was queued and not yet read.
    const read: Uint8Array[] = [];
    const reader = tls.readable.getReader();
    const reading = (async () => {
      try {
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          read.push(value);
        }
      } catch {
        // the failed handshake
      }
    })();
    const writer = c.writable.getWriter();
    await writer.write(recorded);
    await writer.close();
    await reading;
    return fromUtf8(concat(...read));
  };
  tt.equal(await serve(), EARLY, 'the first connection that gets the flight reads its early data');
  tt.equal(await serve(), '', 'a second one, given the same guard, reads nothing');
});
