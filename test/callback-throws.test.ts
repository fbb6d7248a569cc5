/**
 * Callbacks that throw (lib/callbacks.ts): an observer's exception never changes the outcome and is reported to
 * onCallbackError; a callback the protocol depends on fails its own handshake or connection only, with its
 * alert, and the keys it concerned are wiped. Each test's comment says what the code did before.
 */
import t from 'tap';
import { once } from 'node:events';
import { request as httpRequest } from 'node:http';
import { connect as netConnect, createServer as createNetServer, type AddressInfo } from 'node:net';
import { WebSocket as WsClient } from 'ws';
import { CallbackError, observer } from '../lib/callbacks.js';
import { fromUtf8, utf8 } from '../lib/codec/bytes.js';
import { nodeProvider } from '../lib/crypto/node.js';
import type { Etsi014Client } from '../lib/qkd/etsi014-client.js';
import { Etsi014ClientSource, Etsi014ServerSource, type Etsi014SourceEvent } from '../lib/qkd/etsi014-source.js';
import { encodeKeyIdIdentity } from '../lib/psk/key-id.js';
import { serverPskResolver, StaticKeySource, type PskLease, type SourcedKey } from '../lib/psk/source.js';
import type { Psk } from '../lib/psk/types.js';
import { connect, createServer } from '../lib/transport/node.js';
import { tlsClientOverStreams, tlsServerOverStreams } from '../lib/transport/streams.js';
import { errorsOf, handshake, makePsk } from './helpers/pair.js';
import { memoryPipe } from './helpers/memory-streams.js';
import { seededBytes } from './helpers/seeded-bytes.js';
import { startProxy } from '../lib/proxy/proxy.js';
import type { ProxyLogger } from '../lib/proxy/log.js';
import { startWebSocketBridge } from '../lib/proxy/ws-bridge.js';
import { startKmeSimulator } from '../lib/tools/kme/simulator.js';
import { parseTopology, QkdNetwork } from '../lib/tools/network/index.js';
import { startQkdNetworkServer } from '../lib/tools/network/server.js';
import { listenWebSocket } from '../lib/transport/ws-server.js';

const crypto = nodeProvider;

/** Lets every already-settled promise and queued immediate run (the fake KMEs answer at once). */
async function settleTicks(n = 10): Promise<void> {
  for (let i = 0; i < n; i++) await new Promise<void>((r) => setImmediate(r));
}

/** Waits until `done()` holds, polling every 10 ms for up to 10 s (I/O under load can take many event-loop turns). */
async function until(done: () => boolean): Promise<void> {
  for (let i = 0; i < 1000 && !done(); i++) await new Promise((r) => setTimeout(r, 10));
}

/** Collects process 'unhandledRejection' events for the rest of the test. */
function watchUnhandled(tt: { teardown(fn: () => void): void }): unknown[] {
  const seen: unknown[] = [];
  const on = (e: unknown): void => void seen.push(e);
  process.on('unhandledRejection', on);
  tt.teardown(() => void process.off('unhandledRejection', on));
  return seen;
}

/** A master SAE's ETSI 014 client whose KME answers enc_keys at once with fresh non-zero keys. */
function fakeMaster() {
  const delivered: Uint8Array[] = [];
  let next = 1;
  const client = {
    baseUrl: new URL('http://127.0.0.1:1'),
    async encKeys(_peer: string, r: { number?: number }) {
      return Array.from({ length: r.number ?? 1 }, () => {
        const n = next++;
        const key = new Uint8Array(32).fill(n);
        delivered.push(key);
        return { keyId: `00000000-0000-4000-8000-${n.toString().padStart(12, '0')}`, key };
      });
    },
    close() {},
  } as unknown as Etsi014Client;
  return { client, delivered };
}

const zero = (b: Uint8Array): boolean => b.every((x) => x === 0);

t.test('Etsi014ClientSource: an onEvent that throws on "taken" loses no key and does not fail take()', async (tt) => {
  // etsi014-source.ts hand() spliced the keys out of the pool, then called onEvent: its throw came out of take()
  // synchronously (not even a rejected promise) and the keys were gone from the pool, never handed out, never wiped.
  const kme = fakeMaster();
  const reported: CallbackError[] = [];
  const src = new Etsi014ClientSource({
    client: kme.client,
    peerSaeId: 'server-sae',
    poolSize: 2,
    onEvent: (e) => {
      if (e.type === 'taken') throw new Error('observer broke');
    },
    onCallbackError: (e) => reported.push(e),
  });
  await src.prefetch();
  tt.equal(src.pooled, 2);
  let keys: SourcedKey[] = [];
  try {
    keys = await src.take();
  } catch (e) {
    tt.fail(`take() failed: ${(e as Error).message}`);
  }
  tt.equal(keys.length, 1, 'take() resolves with the key');
  tt.notOk(keys.length > 0 && zero(keys[0].secret), 'the key handed out is intact');
  tt.equal(reported.length, 1, 'the exception is reported');
  tt.ok(reported[0] instanceof CallbackError && reported[0].callback === 'onEvent', 'as a CallbackError naming onEvent');
  tt.match(reported[0]?.message, /observer broke/);
  src.close();
  await settleTicks();
  // Every key the KME delivered is either the caller's (handed out) or wiped.
  const handed = keys.map((k) => k.secret);
  tt.ok(kme.delivered.every((k) => handed.includes(k) || zero(k)), 'no key left unwiped and unowned');
});

t.test('Etsi014ClientSource: an onEvent that throws on "fetched" neither hangs take() nor is an unhandled rejection', async (tt) => {
  // The 'fetched' event is emitted inside the encKeys .then callback: its throw skipped pump(), so the waiting
  // take() never settled, and the callback's promise rejected with nobody to handle it (a crash under Node's default).
  const unhandled = watchUnhandled(tt);
  const kme = fakeMaster();
  const reported: CallbackError[] = [];
  const src = new Etsi014ClientSource({
    client: kme.client,
    peerSaeId: 'server-sae',
    poolSize: 0,
    onEvent: () => {
      throw new Error('observer broke');
    },
    onCallbackError: (e) => reported.push(e),
  });
  let outcome = 'pending';
  let got: Uint8Array | undefined;
  src.take().then(
    (k) => ((outcome = 'resolved'), (got = k[0].secret)),
    () => (outcome = 'rejected'),
  );
  await settleTicks();
  src.close();
  await settleTicks();
  tt.equal(outcome, 'resolved', 'take() resolves with the fetched key');
  tt.equal(unhandled.length, 0, 'no unhandled rejection');
  tt.same(
    reported.map((e) => e.callback),
    ['onEvent', 'onEvent'],
    'both throws (fetched, taken) are reported',
  );
  tt.ok(kme.delivered.every((k) => k === got || zero(k)), 'no key left unwiped and unowned');
});

t.test('Etsi014ClientSource: a clock (now) that throws fails take() and wipes the keys it cannot date; no crash', async (tt) => {
  // now() dated the keys of each enc_keys answer inside its .then callback: a throw there left the keys neither
  // pooled nor wiped, the waiting take() pending, and an unhandled rejection. The sweep timer called it too: there a
  // throw was an uncaught exception. Keys whose age cannot be known are wiped (never kept past an unknown lifetime).
  const unhandled = watchUnhandled(tt);
  const kme = fakeMaster();
  const reported: CallbackError[] = [];
  const broken = new Etsi014ClientSource({
    client: kme.client,
    peerSaeId: 'server-sae',
    poolSize: 0,
    now: () => {
      throw new Error('clock broke');
    },
    onCallbackError: (e) => reported.push(e),
  });
  const outcome = await Promise.race([
    broken.take().then(
      () => 'resolved',
      (e: Error) => e.message,
    ),
    new Promise<string>((resolve) => setTimeout(() => resolve('still pending after 5 s'), 5_000)),
  ]);
  tt.match(outcome, /clock broke/, 'take() rejects, saying why');
  tt.ok(kme.delivered.length > 0 && kme.delivered.every(zero), 'the keys of that answer are wiped');
  broken.close();
  // A clock that fails later, in the sweep: the pooled keys are wiped and the failure reported, nothing thrown.
  const later = fakeMaster();
  let clockBroken = false;
  const uncaught: unknown[] = [];
  const onUncaught = (e: unknown): void => void uncaught.push(e);
  process.prependListener('uncaughtException', onUncaught);
  tt.teardown(() => void process.off('uncaughtException', onUncaught));
  const src = new Etsi014ClientSource({
    client: later.client,
    peerSaeId: 'server-sae',
    poolSize: 2,
    keyLifetimeMs: 20,
    now: () => {
      if (clockBroken) throw new Error('clock broke later');
      return 0;
    },
    onCallbackError: (e) => reported.push(e),
  });
  await src.prefetch();
  tt.equal(src.pooled, 2, 'two keys pooled while the clock worked');
  clockBroken = true;
  await until(() => src.pooled === 0);
  tt.equal(src.pooled, 0, 'the sweep emptied the pool');
  tt.ok(later.delivered.every(zero), 'the pooled keys are wiped by the sweep');
  src.close();
  tt.equal(uncaught.length, 0, 'no uncaught exception from the sweep');
  tt.ok(reported.some((e) => e.callback === 'now' && /clock broke later/.test(e.message)), "the sweep's failure is reported, naming now");
  tt.equal(unhandled.length, 0, 'no unhandled rejection');
});

t.test('Etsi014ClientSource: an async onEvent whose promise rejects is reported, not an unhandled rejection', async (tt) => {
  // An async observer's rejected promise was dropped by the source: an unhandled rejection per event.
  const unhandled = watchUnhandled(tt);
  const kme = fakeMaster();
  const reported: CallbackError[] = [];
  const src = new Etsi014ClientSource({
    client: kme.client,
    peerSaeId: 'server-sae',
    poolSize: 1,
    onEvent: async (e: Etsi014SourceEvent) => {
      throw new Error(`async observer broke on ${e.type}`);
    },
    onCallbackError: (e) => reported.push(e),
  });
  const keys = await src.take();
  await settleTicks();
  src.close();
  tt.equal(keys.length, 1);
  tt.equal(unhandled.length, 0, 'no unhandled rejection');
  tt.ok(reported.length >= 2, 'each rejection is reported');
  tt.ok(reported.every((e) => e.callback === 'onEvent'));
});

t.test('Etsi014ClientSource: a client whose enc_keys rejects with something other than an Error fails take()', async (tt) => {
  // failed() read `(e as Error).message`: a rejection with undefined made that a TypeError inside the encKeys
  // .then callback, an unhandled rejection, and the waiting take() never settled.
  const unhandled = watchUnhandled(tt);
  const client = {
    baseUrl: new URL('http://127.0.0.1:1'),
    encKeys: () => Promise.reject(undefined),
    close() {},
  } as unknown as Etsi014Client;
  const src = new Etsi014ClientSource({ client, peerSaeId: 'server-sae', poolSize: 0 });
  let outcome = 'pending';
  let message = '';
  src.take().then(
    () => (outcome = 'resolved'),
    (e: Error) => ((outcome = 'rejected'), (message = e.message)),
  );
  await settleTicks();
  src.close();
  tt.equal(outcome, 'rejected', 'take() rejects');
  tt.equal(message, 'could not get a QKD key: undefined');
  tt.equal(unhandled.length, 0, 'no unhandled rejection');
});

t.test('Etsi014ServerSource: an onEvent that throws on "resolved" or "refused" does not fail or burn the lookup', async (tt) => {
  // resolve() called onEvent({ type: 'resolved' }) after dec_keys delivered the key: the throw rejected the lookup
  // (the handshake failed) with the key fetched, its ID spent, and its bytes never wiped. A throw on 'refused'
  // stopped the lookup of the identities after it.
  const keyA = new Uint8Array(32).fill(0x41);
  const store = new Map([['00000000-0000-4000-8000-00000000000b', keyA]]);
  const client = {
    baseUrl: new URL('http://127.0.0.1:2'),
    async decKeys(_peer: string, ids: readonly string[]) {
      const k = store.get(ids[0]);
      if (!k) throw new Error('not found');
      store.delete(ids[0]);
      return [{ keyId: ids[0], key: k }];
    },
    close() {},
  } as unknown as Etsi014Client;
  const reported: CallbackError[] = [];
  const src = new Etsi014ServerSource({
    client,
    peerSaeIds: ['client-sae'],
    onEvent: () => {
      throw new Error('observer broke');
    },
    onCallbackError: (e) => reported.push(e),
  });
  const ids = [
    encodeKeyIdIdentity({ keyId: '00000000-0000-4000-8000-00000000000a', saeId: 'someone-else' }), // refused: unexpected SAE
    encodeKeyIdIdentity({ keyId: '00000000-0000-4000-8000-00000000000b', saeId: 'client-sae' }),
  ];
  let out;
  try {
    out = await src.resolve(ids);
  } catch (e) {
    tt.fail(`resolve() rejected: ${(e as Error).message}`);
  }
  tt.equal(out?.[0], undefined, 'the refused identity has no key');
  tt.equal(out?.[1]?.secret, keyA, 'the key the KME delivered goes to the handshake');
  tt.same(
    reported.map((e) => e.callback),
    ['onEvent', 'onEvent'],
    'both throws (refused, resolved) are reported',
  );
});

t.test('observer(): anything thrown or rejected is reported once, and a throwing onCallbackError is not the end', async (tt) => {
  // lib/callbacks.ts itself: values that are not Errors (even one whose toString throws), a rejected promise, and an
  // onCallbackError that throws in turn (both then go to console.error) never escape to the caller.
  const unhandled = watchUnhandled(tt);
  const reported: CallbackError[] = [];
  const hostile = {
    toString: () => {
      throw new Error('no text');
    },
  };
  for (const thrown of [undefined, 'text', Symbol('s'), hostile]) {
    const call = observer(
      'probe',
      () => {
        throw thrown;
      },
      (e) => reported.push(e),
    );
    tt.doesNotThrow(() => call?.());
  }
  const later = async (): Promise<void> => {
    throw new Error('later');
  };
  observer('probe', later, (e) => reported.push(e))?.();
  await settleTicks();
  tt.equal(reported.length, 5, 'each is reported once');
  tt.ok(reported.every((e) => e instanceof CallbackError && e.callback === 'probe'));
  tt.equal(reported[4].message, 'the probe callback threw: later');
  tt.equal(observer('absent', undefined, undefined), undefined, 'no observer, no wrapper (no work for it)');
  const lines: string[] = [];
  const original = console.error;
  console.error = (...a: unknown[]) => void lines.push(a.join(' '));
  try {
    const first = (): void => {
      throw new Error('first');
    };
    const second = (): void => {
      throw new Error('second');
    };
    observer('probe', first, second)?.();
  } finally {
    console.error = original;
  }
  tt.same(lines, ['qkd-tls: the onCallbackError callback threw: second', 'qkd-tls: the probe callback threw: first']);
  tt.equal(unhandled.length, 0, 'no unhandled rejection');
});

t.test('Connection: a keyLog callback that throws does not fail the handshake', async (tt) => {
  // connection.ts logSecret called keyLog inside the handshake's guard: its throw became InternalError, and the
  // handshake failed with internal_error because of a debugging aid.
  const psk = makePsk('cb-keylog');
  const reported: CallbackError[] = [];
  const keyLog = (): void => {
    throw new Error('disk full');
  };
  const p = handshake({ crypto, psks: [psk], keyLog, onCallbackError: (e) => reported.push(e) }, { crypto, psks: [psk] });
  tt.equal(p.client.phase, 'connected', 'the handshake completes');
  tt.equal(p.server.phase, 'connected');
  tt.same(errorsOf(p.events('client')), []);
  tt.ok(reported.length > 0 && reported.every((e) => e.callback === 'keyLog' && /disk full/.test(e.message)), 'each throw is reported, naming keyLog');
});

t.test('Connection: a trace hook that throws changes nothing on the wire', async (tt) => {
  // The trace hook ran after a record was sealed and before it was queued: its throw lost the record (its sequence
  // number used) and failed the handshake with internal_error; from write() it escaped to the caller.
  const psk = makePsk('cb-trace');
  const reported: CallbackError[] = [];
  const trace = (): void => {
    throw new Error('tracer broke');
  };
  const p = handshake({ crypto, psks: [psk], trace, onCallbackError: (e) => reported.push(e) }, { crypto, psks: [psk], trace, onCallbackError: (e) => reported.push(e) });
  tt.equal(p.client.phase, 'connected', 'the handshake completes');
  tt.equal(p.server.phase, 'connected');
  p.client.write(utf8('hello'));
  p.pump();
  tt.equal(fromUtf8(p.received('server')), 'hello', 'application data flows');
  tt.ok(reported.length > 0 && reported.every((e) => e.callback === 'trace'), 'each throw is reported, naming trace');
});

t.test('without onCallbackError, an observer exception is one line on console.error', async (tt) => {
  // The default report: the exception is seen, not swallowed, and does not end the connection.
  const psk = makePsk('cb-console');
  const lines: string[] = [];
  const original = console.error;
  console.error = (...a: unknown[]) => void lines.push(a.join(' '));
  let p;
  try {
    p = handshake(
      {
        crypto,
        psks: [psk],
        keyLog: () => {
          throw new Error('no log file');
        },
      },
      { crypto, psks: [psk] },
    );
  } finally {
    console.error = original;
  }
  tt.equal(p.client.phase, 'connected');
  tt.ok(lines.length > 0, 'reported on console.error');
  tt.ok(lines.every((l) => /^qkd-tls: the keyLog callback threw: no log file$/.test(l)), lines[0]);
});

t.test('Connection: a server psks function that throws fails that handshake with PskLookupThrew (internal_error)', async (tt) => {
  // The throw became a bare InternalError carrying only the thrown message, without naming the lookup; an
  // async function given here answered a promise: "found.slice is not a function", and its rejection was unhandled.
  const unhandled = watchUnhandled(tt);
  const psk = makePsk('cb-lookup');
  const p = handshake(
    { crypto, psks: [psk] },
    {
      crypto,
      psks: () => {
        throw new Error('database down');
      },
    },
  );
  const se = p.error('server');
  tt.equal(se?.reason, 'PskLookupThrew');
  tt.equal(se?.alert, 'internal_error', 'internal_error sent (RFC 8446 §6.2)');
  tt.match(se?.message, /the psks lookup function threw: database down/);
  tt.match(p.error('client'), { alert: 'internal_error', remote: true }, 'the client received it');

  const q = handshake(
    { crypto, psks: [psk] },
    {
      crypto,
      psks: (async () => {
        throw new Error('async by mistake');
      }) as unknown as () => Psk[],
    },
  );
  await settleTicks();
  tt.equal(q.error('server')?.reason, 'PskLookupThrew');
  tt.match(q.error('server')?.message, /answered a promise/);
  tt.equal(unhandled.length, 0, 'no unhandled rejection');
});

t.test('serverPskResolver: an onLease that throws wipes the lease and fails that lookup only', async (tt) => {
  // The lease was handed to onLease and its throw rejected the lookup: nobody held the lease any more, and the
  // resolved keys (one-time QKD keys) stayed in memory, never wiped.
  const secrets = [new Uint8Array(32).fill(7), new Uint8Array(32).fill(8)];
  const source = new StaticKeySource(
    secrets.map((s, i) => ({ identity: utf8(`lease-${i}`), secret: s })),
    { oneTime: true },
  );
  const leases: PskLease[] = [];
  let calls = 0;
  const resolver = serverPskResolver(crypto, source, {
    onLease: (lease) => {
      leases.push(lease);
      if (calls++ === 0) throw new Error('lease table full');
    },
  });
  const server = createServer({ crypto, psks: resolver }, (s) => s.end('ok'));
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  tt.teardown(() => void server.close());
  const run = async (i: number): Promise<{ error?: Error; data?: string }> => {
    const psk: Psk = { identity: utf8(`lease-${i}`), secret: secrets[i].slice(), hash: 'SHA-256' };
    const c = connect({ port: server.address().port, psks: [psk] });
    const chunks: Buffer[] = [];
    c.on('data', (b: Buffer) => chunks.push(b));
    const error = await new Promise<Error | undefined>((resolve) => {
      c.once('error', resolve);
      c.once('end', () => resolve(undefined));
    });
    c.destroy();
    return { error, data: Buffer.concat(chunks).toString() };
  };
  const first = await run(0);
  tt.match(first.error, { alert: 'handshake_failure', remote: true }, 'the first handshake fails with its alert');
  tt.ok(zero(leases[0].psks[0].secret), 'the key of the lease onLease threw on is wiped');
  const second = await run(1);
  tt.equal(second.error, undefined, 'the server goes on serving');
  tt.equal(second.data, 'ok');
  for (const l of leases) l.release();
  source.close();
});

t.test('StaticKeySource: a clock (now) that throws fails take() and resolve() with no one-time key burned', async (tt) => {
  // take() and resolve() marked each one-time key used and copied it as they went, reading the clock for each key
  // with an expiry: a throw at the second key left the first marked used, its copy in an array nobody got (never
  // wiped), and that key lost to every later handshake.
  let broken = true;
  const now = (): number => {
    if (broken) throw new Error('clock broke');
    return 1000;
  };
  const keys = [
    { identity: utf8('static-a'), secret: new Uint8Array(32).fill(1) },
    { identity: utf8('static-b'), secret: new Uint8Array(32).fill(2), expiresAt: 5000 },
  ];
  const source = new StaticKeySource(keys, { oneTime: true, now });
  tt.teardown(() => source.close());
  await tt.rejects(source.take({ count: 2 }), { message: /the now clock threw: clock broke/ }, 'take() fails, naming the clock');
  await tt.rejects(source.resolve(keys.map((k) => k.identity)), { message: /the now clock threw: clock broke/ }, 'resolve() fails, naming the clock');
  broken = false;
  tt.equal(source.available, 2, 'neither key was used up by the failed calls');
  const taken = await source.take({ count: 2 });
  tt.same(taken.map((k) => fromUtf8(k.identity)), ['static-a', 'static-b'], 'a later take gets both keys');
  const again = new StaticKeySource(keys, { oneTime: true, now });
  broken = true;
  await tt.rejects(again.resolve([keys[0].identity, keys[1].identity]));
  broken = false;
  const resolved = await again.resolve([keys[0].identity, keys[0].identity, keys[1].identity]);
  tt.same(resolved.map((k) => (k ? fromUtf8(k.identity) : undefined)), ['static-a', undefined, 'static-b'], 'a later resolve gets both keys (an identity offered twice, once)');
  again.close();
});

t.test('connect: a psks function that throws at once fails the socket, not the caller', async (tt) => {
  // connect() called options.psks() and chained .then on it: a throw (or an answer that is not a promise) came
  // out of connect() itself, with the TCP connection already started and left to itself.
  const psk = makePsk('cb-connect');
  const server = createServer({ crypto, psks: [psk] }, (s) => s.end());
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  tt.teardown(() => void server.close());
  let socket;
  try {
    socket = connect({
      port: server.address().port,
      psks: () => {
        throw new Error('no key manager configured');
      },
    });
  } catch (e) {
    tt.fail(`connect() threw: ${(e as Error).message}`);
    return;
  }
  const [err] = (await once(socket, 'error')) as [Error];
  tt.match(err.message, /could not obtain PSKs: no key manager configured/);
  if (!socket.destroyed) await once(socket, 'close');
  tt.ok(socket.destroyed, 'the socket is destroyed');
});

t.test('createServer: a traceConnection factory or a keyLog that throws leaves the handshakes alone', async (tt) => {
  // node.ts accept() called traceConnection(tls) with the connection's construction: its throw destroyed the socket
  // before the handshake (the client saw the connection closed); a keyLog throw failed the handshake with
  // internal_error.
  const psk = makePsk('cb-node');
  const reported: CallbackError[] = [];
  const server = createServer(
    {
      crypto,
      psks: [psk],
      traceConnection: () => {
        throw new Error('no tracer today');
      },
      keyLog: () => {
        throw new Error('key log full');
      },
      onCallbackError: (e) => reported.push(e),
    },
    (s) => s.end('served'),
  );
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  tt.teardown(() => void server.close());
  for (let i = 0; i < 2; i++) {
    const c = connect({ port: server.address().port, psks: [psk] });
    const chunks: Buffer[] = [];
    c.on('data', (b: Buffer) => chunks.push(b));
    const error = await new Promise<Error | undefined>((resolve) => {
      c.once('error', resolve);
      c.once('end', () => resolve(undefined));
    });
    c.destroy();
    tt.equal(error, undefined, `connection ${i + 1} completes`);
    tt.equal(Buffer.concat(chunks).toString(), 'served');
  }
  const names = new Set(reported.map((e) => e.callback));
  tt.same([...names].sort(), ['keyLog', 'traceConnection'], 'each throw is reported, naming its callback');
});

t.test('streams: a lookupPsks that throws something other than an Error fails the handshake with its alert', async (tt) => {
  // streams.ts read `(e as Error).message`: `throw undefined` made that a TypeError out of the event loop, so the
  // handshake promise rejected with it and no alert was sent: the client waited for its timeout.
  const [c, s] = memoryPipe();
  const psk = makePsk('cb-streams');
  const server = tlsServerOverStreams(s, {
    crypto,
    lookupPsks: async () => {
      throw undefined;
    },
  });
  const client = tlsClientOverStreams(c, { crypto, psks: [psk] });
  const se = await server.handshake.then(
    () => null,
    (e: unknown) => e,
  );
  const ce = await client.handshake.then(
    () => null,
    (e: unknown) => e,
  );
  tt.match(se, { reason: 'PskUnavailable', alert: 'handshake_failure', remote: false }, 'the server sent its alert');
  tt.match(ce, { alert: 'handshake_failure', remote: true }, 'the client received it');
});

// ---------------------------------------------------------------------------------------------------------
// Tools, the proxy and the WebSocket listener

/** One plain HTTP GET on 127.0.0.1, with `sae` in X-SAE-ID; resolves with the status. */
function httpGet(url: string, sae: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(url, { headers: { 'x-sae-id': sae }, agent: false }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    req.on('error', reject);
    req.end();
  });
}

t.test('KME simulator: a log callback that throws does not end the process, and requests go on being answered', async (tt) => {
  // simulator.ts called options.log after res.end(), inside the HTTP server's request handling: the throw was an
  // uncaught exception, which ends a Node process.
  const reported: CallbackError[] = [];
  const kme = await startKmeSimulator({
    insecureHttp: true,
    rateBitsPerSecond: 0,
    initialKeyCount: 10,
    log: () => {
      throw new Error('log sink broke');
    },
    onCallbackError: (e) => reported.push(e),
  });
  tt.teardown(() => kme.close());
  const url = `${kme.master.url}/api/v1/keys/server-sae/status`;
  tt.equal(await httpGet(url, 'client-sae'), 200, 'first request answered');
  tt.equal(await httpGet(url, 'client-sae'), 200, 'and the next');
  tt.same(
    reported.map((e) => e.callback),
    ['log', 'log'],
    'each throw is reported, naming log',
  );
});

t.test('QKD network: an onEvent that throws does not break a relay, and the network server keeps answering', async (tt) => {
  // network.ts emitted 'route' and 'relay' after the keys were relayed and booked: the throw came out of relay()
  // with the master's keys lost (never returned, never wiped) and the slave's left pending; a throw on
  // 'link-state' in advance() left the other links behind. The server's onRequest ran after res.end(): an uncaught
  // exception.
  const reported: CallbackError[] = [];
  const topology = { nodes: [{ name: 'A', saes: ['client-sae'] }, { name: 'B', saes: ['server-sae'] }], links: [{ a: 'A', b: 'B', km: 10 }] };
  const clock = { ms: 0 };
  const net = new QkdNetwork({
    topology: parseTopology(topology),
    now: () => clock.ms,
    randomBytes: seededBytes(5),
    onEvent: () => {
      throw new Error('dashboard gone');
    },
    onCallbackError: (e) => reported.push(e),
  });
  clock.ms = 5000;
  let r;
  try {
    r = net.relay('client-sae', 'server-sae', 1, 256);
  } catch (e) {
    tt.fail(`relay() threw: ${(e as Error).message}`);
  }
  tt.equal(r?.ok, true, 'the relay succeeds');
  if (r?.ok) {
    const got = net.redeem('client-sae', 'server-sae', [r.keys[0].keyId]);
    tt.equal(got.ok, true, 'and the slave redeems the key');
  }
  tt.ok(reported.length > 0 && reported.every((e) => e.callback === 'onEvent'), 'each throw is reported, naming onEvent');
  net.destroy();

  const served: CallbackError[] = [];
  const server = await startQkdNetworkServer({
    topology: parseTopology(topology),
    insecureHttp: true,
    onRequest: () => {
      throw new Error('request log broke');
    },
    onCallbackError: (e) => served.push(e),
  });
  tt.teardown(() => server.close());
  tt.equal(await httpGet(`${server.url}/network`, 'client-sae'), 200, 'first request answered');
  tt.equal(await httpGet(`${server.url}/network`, 'client-sae'), 200, 'and the next');
  tt.same(
    served.map((e) => e.callback),
    ['onRequest', 'onRequest'],
  );
});

/** Opens a WebSocket to `url` and resolves once it closes, with what it received. */
function wsRoundTrip(url: string, send: Buffer): Promise<{ opened: boolean; data: Buffer }> {
  return new Promise((resolve) => {
    const ws = new WsClient(url);
    const got: Buffer[] = [];
    let opened = false;
    ws.on('open', () => {
      opened = true;
      ws.send(send);
    });
    ws.on('message', (d: Buffer) => {
      got.push(d);
      ws.close();
    });
    ws.on('error', () => {});
    ws.on('close', () => resolve({ opened, data: Buffer.concat(got) }));
  });
}

t.test('listenWebSocket: a connection handler that throws closes that connection only', async (tt) => {
  // ws-server.ts called onConnection inside the WebSocketServer's 'connection' event (the HTTP 'upgrade'
  // handling): a throw was an uncaught exception, which ends a Node process.
  const reported: CallbackError[] = [];
  let calls = 0;
  const listener = await listenWebSocket({ host: '127.0.0.1', port: 0, onCallbackError: (e) => reported.push(e) }, ({ stream }) => {
    if (calls++ === 0) throw new Error('handler broke');
    stream.pipe(stream);
  });
  tt.teardown(() => listener.close());
  const url = `ws://127.0.0.1:${listener.address().port}/`;
  const first = await wsRoundTrip(url, Buffer.from('one'));
  tt.equal(first.data.length, 0, 'the first connection is closed without an answer');
  const second = await wsRoundTrip(url, Buffer.from('two'));
  tt.equal(second.data.toString(), 'two', 'the next connection is served');
  tt.same(
    reported.map((e) => e.callback),
    ['onConnection'],
  );
});

t.test('listenWebSocket: a route that throws refuses that request with 400, and says why', async (tt) => {
  // ws-server.ts turned a throw from `route` into 400 and dropped the exception: no way to see it.
  const reported: CallbackError[] = [];
  const listener = await listenWebSocket(
    { host: '127.0.0.1', port: 0, onCallbackError: (e) => reported.push(e) },
    ({ stream }) => stream.pipe(stream),
    (req) => {
      if (req.url === '/broken') throw new Error('route table broke');
      return undefined;
    },
  );
  tt.teardown(() => listener.close());
  const port = listener.address().port;
  const status = await new Promise<number>((resolve) => {
    const ws = new WsClient(`ws://127.0.0.1:${port}/broken`);
    ws.on('unexpected-response', (_req, res) => {
      resolve(res.statusCode ?? 0);
      ws.terminate();
    });
    ws.on('error', () => {});
  });
  tt.equal(status, 400, 'the request is refused');
  tt.equal((await wsRoundTrip(`ws://127.0.0.1:${port}/`, Buffer.from('ok'))).data.toString(), 'ok', 'other requests are served');
  tt.same(
    reported.map((e) => e.callback),
    ['route'],
  );
  tt.match(reported[0]?.message, /route table broke/);
});

t.test('WebSocket bridge: an onConnection record observer that throws changes nothing', async (tt) => {
  // ws-bridge.ts called onConnection from the sockets' 'close' and 'error' handlers: a throw was an uncaught
  // exception, which ends a Node process.
  const echoServer = createNetServer((s) => s.pipe(s));
  await new Promise<void>((r) => echoServer.listen(0, '127.0.0.1', r));
  tt.teardown(() => void echoServer.close());
  const reported: CallbackError[] = [];
  const bridge = await startWebSocketBridge({
    host: '127.0.0.1',
    port: 0,
    allow: [{ host: '127.0.0.1', port: (echoServer.address() as AddressInfo).port }],
    onConnection: () => {
      throw new Error('record sink broke');
    },
    onCallbackError: (e) => reported.push(e),
  });
  tt.teardown(() => bridge.close());
  const url = `ws://127.0.0.1:${bridge.address().port}/`;
  for (const word of ['one', 'two']) {
    const r = await wsRoundTrip(url, Buffer.from(word));
    tt.equal(r.data.toString(), word, `connection "${word}" relayed`);
  }
  await until(() => reported.length >= 2);
  tt.same(
    reported.map((e) => e.callback),
    ['onConnection', 'onConnection'],
    'each throw is reported, naming onConnection',
  );
});

/** A server proxy in front of an echo backend, and a client proxy with `clientOptions` (its keys, logger, ...). */
async function proxiesWith(
  tt: { teardown(fn: () => unknown): void; fail(m: string): void },
  client: { release?: (psks: readonly Psk[]) => void; logger?: ProxyLogger; onCallbackError: (e: CallbackError) => void },
) {
  const backendServer = createNetServer((s) => s.pipe(s));
  await new Promise<void>((r) => backendServer.listen(0, '127.0.0.1', r));
  tt.teardown(() => void backendServer.close());
  const secret = new Uint8Array(32).fill(0x33);
  const identity = utf8('proxy-cb');
  const serverProxy = await startProxy({
    services: [
      {
        name: 'srv',
        role: 'server',
        accept: { host: '127.0.0.1', port: 0 },
        connect: { host: '127.0.0.1', port: (backendServer.address() as AddressInfo).port },
        keys: { clientPsks: async () => [], server: [{ identity, secret, hash: 'SHA-256' }], description: 'static' },
      },
    ],
  });
  tt.teardown(() => serverProxy.close());
  const given: Psk[] = [];
  try {
    const proxy = await startProxy({
      services: [
        {
          name: 'cli',
          role: 'client',
          accept: { host: '127.0.0.1', port: 0 },
          connect: { host: '127.0.0.1', port: serverProxy.services[0].address.port },
          keys: {
            clientPsks: async () => {
              const p: Psk = { identity, secret: secret.slice(), hash: 'SHA-256' };
              given.push(p);
              return [p];
            },
            server: [],
            description: 'test keys',
            ...(client.release ? { release: client.release } : {}),
          },
        },
      ],
      ...(client.logger ? { logger: client.logger } : {}),
      onCallbackError: client.onCallbackError,
    });
    tt.teardown(() => proxy.close());
    return { proxy, given };
  } catch (e) {
    tt.fail(`startProxy rejected: ${(e as Error).message}`);
    return undefined;
  }
}

t.test('proxy: a logger that throws neither stops the proxy nor its connections', async (tt) => {
  // proxy.ts called logger.event('listening') in start(): its throw made startProxy reject with the service
  // listening; logger.connection threw out of a socket's 'close' handler.
  const reported: CallbackError[] = [];
  const broken = (): void => {
    throw new Error('logger broke');
  };
  const run = await proxiesWith(tt, { logger: { connection: broken, event: broken }, onCallbackError: (e) => reported.push(e) });
  if (!run) return;
  for (const word of ['one', 'two']) tt.equal(await tcpRoundTrip(run.proxy.services[0].address.port, word), word, `connection "${word}" proxied`);
  await until(() => run.proxy.stats().active === 0);
  tt.equal(run.proxy.stats().ended.closed, 2, 'both connections are counted');
  tt.same([...new Set(reported.map((e) => e.callback))].sort(), ['logger.connection', 'logger.event'], 'every throw is reported, naming its callback');
});

t.test('proxy: a key source whose release throws gets its keys wiped, and the proxy goes on', async (tt) => {
  // keys.release was called from the TLS socket's 'secure' listener: its throw was an uncaught exception (the
  // proxy process ended) and the keys stayed unwiped.
  const reported: CallbackError[] = [];
  const run = await proxiesWith(tt, {
    release: () => {
      throw new Error('release broke');
    },
    onCallbackError: (e) => reported.push(e),
  });
  if (!run) return;
  for (const word of ['one', 'two']) tt.equal(await tcpRoundTrip(run.proxy.services[0].address.port, word), word, `connection "${word}" proxied`);
  tt.equal(run.given.length, 2);
  tt.ok(run.given.every((p) => zero(p.secret)), 'the keys whose release threw are wiped');
  tt.same(
    reported.map((e) => e.callback),
    ['keys.release', 'keys.release'],
  );
});

t.test('proxy: a key source whose clientPsks rejects with something other than an Error ends that connection', async (tt) => {
  // The rejection handler read `e.message`: with undefined it threw, an unhandled rejection, and the accepted
  // connection was neither failed nor counted (its client waited).
  const unhandled = watchUnhandled(tt);
  const proxy = await startProxy({
    services: [
      {
        name: 'cli',
        role: 'client',
        accept: { host: '127.0.0.1', port: 0 },
        connect: { host: '127.0.0.1', port: 9 },
        keys: { clientPsks: () => Promise.reject(undefined), server: [], description: 'broken source' },
      },
    ],
  });
  tt.teardown(() => proxy.close());
  // (The bound only turns the old hang into a failure; the connection ends at once.)
  let bound: NodeJS.Timeout | undefined;
  const hung = new Promise<string>((r) => (bound = setTimeout(() => r('still open after 10 s'), 10_000)));
  tt.equal(await Promise.race([tcpRoundTrip(proxy.services[0].address.port, 'hello'), hung]), '', 'the connection ends without data');
  clearTimeout(bound);
  await until(() => proxy.stats().active === 0);
  tt.equal(proxy.stats().ended['key-unavailable'], 1, 'counted as key-unavailable');
  tt.equal(unhandled.length, 0, 'no unhandled rejection');
});

t.test('proxy: a server key source that rejects with something other than an Error is key-unavailable, saying what it rejected with', async (tt) => {
  // The server role kept the rejection as an Error and logged `key source: ${e.message}`: a lookup rejecting with
  // undefined was logged as a plain handshake failure (the key source's failure unsaid), one rejecting with a
  // string as "key source: undefined".
  for (const [rejection, said] of [
    [undefined, 'key source: undefined'],
    ['KME down', 'key source: KME down'],
  ] as const) {
    const records: { end: string; error?: string }[] = [];
    let logged!: () => void;
    const firstRecord = new Promise<void>((r) => (logged = r));
    const proxy = await startProxy({
      services: [
        {
          name: 'srv',
          role: 'server',
          accept: { host: '127.0.0.1', port: 0 },
          connect: { host: '127.0.0.1', port: 9 },
          keys: { clientPsks: async () => [], server: () => Promise.reject(rejection), description: 'broken source' },
        },
      ],
      logger: {
        connection: (r) => {
          records.push(r);
          logged();
        },
        event: () => {},
      },
    });
    tt.teardown(() => proxy.close());
    const c = connect({ port: proxy.services[0].address.port, psks: [makePsk('proxy-srv')] });
    const error = await new Promise<unknown>((resolve) => {
      c.once('error', resolve);
      c.once('close', () => resolve(undefined));
    });
    c.destroy();
    tt.ok(error, `the client's handshake fails (${String(rejection)})`);
    // (The bound only turns a missing record into a failure; the record comes as the connection ends.)
    let bound: NodeJS.Timeout | undefined;
    await Promise.race([firstRecord, new Promise<void>((r) => (bound = setTimeout(r, 10_000)))]);
    clearTimeout(bound);
    tt.same(
      records.map((r) => ({ end: r.end, error: r.error })),
      [{ end: 'key-unavailable', error: said }],
      `logged as key-unavailable: ${said}`,
    );
  }
});

/** Sends `word` over TCP to 127.0.0.1:port, half-closes, and resolves with everything received. */
function tcpRoundTrip(port: number, word: string): Promise<string> {
  return new Promise((resolve) => {
    const s = netConnect({ host: '127.0.0.1', port, allowHalfOpen: true });
    const got: Buffer[] = [];
    s.on('data', (d: Buffer) => got.push(d));
    s.on('error', () => resolve(Buffer.concat(got).toString()));
    s.on('end', () => {
      s.end();
      resolve(Buffer.concat(got).toString());
    });
    s.end(word);
  });
}
