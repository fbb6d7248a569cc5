/**
 * The record offload (lib/transport/webcrypto-records.ts) with a WebCrypto that misbehaves — methods that throw
 * instead of answering with a rejected promise (a polyfill, a runtime that breaks WebIDL's promise rule) — and the
 * key material it holds once the connection took its keys back (RFC 8446 §5.3: a nonce is used once; the keys are
 * the connection's to wipe and the transport's to drop).
 */
import t from 'tap';
import v8 from 'node:v8';
import vm from 'node:vm';
import { concat, toHex } from '../lib/codec/bytes.js';
import { nodeProvider } from '../lib/crypto/node.js';
import type { ConnectionEvent } from '../lib/config/events.js';
import { nobleProvider } from '../lib/crypto/noble.js';
import { tlsClientOverStreams, tlsServerOverStreams } from '../lib/transport/streams.js';
import { offloadPair } from '../bench/offload-pair.js';
import { makePsk, seededRandom, wiped, withRandom } from './helpers/pair.js';
import { sealAll } from './helpers/seal-records.js';

type Call = (...args: unknown[]) => Promise<unknown>;

/** Replaces one method of `crypto.subtle` for the rest of test `t`. */
function stubSubtle(t: { teardown(f: () => void): void }, method: 'importKey' | 'encrypt' | 'decrypt', wrap: (original: Call) => Call): void {
  const subtle = globalThis.crypto.subtle as unknown as Record<string, Call>;
  const original = subtle[method].bind(subtle);
  Object.defineProperty(subtle, method, { configurable: true, writable: true, value: wrap(original) });
  t.teardown(() => void delete subtle[method]);
}

const pattern = (n: number, seed: number): Uint8Array => seededRandom(seed)(n);
const errors = (events: readonly ConnectionEvent[]) => events.filter((e) => e.type === 'error');

async function pair(seed: number) {
  const psk = makePsk('offload-review', 'SHA-256', seededRandom(0x5e)(32));
  return offloadPair(
    { crypto: withRandom(nodeProvider, seededRandom(seed)), psks: [psk], suites: ['TLS_AES_128_GCM_SHA256'] },
    { crypto: withRandom(nodeProvider, seededRandom(seed + 1)), psks: [psk] },
    { recordsInFlight: 4 },
  );
}

t.test('an importKey that throws instead of rejecting: writing falls back to the connection cipher, reading to the connection', async (t) => {
  const p = await pair(101);
  let thrown = 0;
  // Only the record keys (raw AES-GCM) from here on: the handshake is over.
  stubSubtle(t, 'importKey', (importKey) => (...args: unknown[]) => {
    if (args[0] === 'raw' && (args[2] as { name?: string })?.name === 'AES-GCM') {
      thrown++;
      throw new DOMException('no AES-GCM here', 'NotSupportedError');
    }
    return importKey(...args);
  });
  // A KeyUpdate each way, so that both pipelines must import new keys.
  p.client.conn.keyUpdate(true);
  p.client.records.flushCore();
  await p.settle();
  const a = pattern(50_000, 102);
  const b = pattern(30_000, 103);
  await t.resolves(p.client.records.write(a), 'the client write resolves (sealed by the connection instead)');
  await t.resolves(p.server.records.write(b), 'the server write resolves');
  await p.settle();
  t.ok(thrown > 0, `importKey was asked and threw (${thrown} times)`);
  t.equal(toHex(p.server.data()), toHex(a), 'the server read what the client wrote');
  t.equal(toHex(p.client.data()), toHex(b), 'the client read what the server wrote');
  t.same(errors(p.client.events), [], 'client: no error');
  t.same(errors(p.server.events), [], 'server: no error');
});

t.test('a decrypt that throws instead of rejecting: the records go back to the connection, which opens them', async (t) => {
  const p = await pair(111);
  stubSubtle(t, 'decrypt', () => () => {
    throw new DOMException('decrypt is broken', 'OperationError');
  });
  const a = pattern(70_000, 112);
  await p.client.records.write(a);
  await p.settle();
  t.equal(toHex(p.server.data()), toHex(a), 'every byte arrives, in order');
  t.same(errors(p.server.events), [], 'server: no error');
  t.same(errors(p.client.events), [], 'client: no error');
  t.equal(p.server.records.offloadedReads, 0, 'nothing was opened by WebCrypto');
  // After a KeyUpdate (a new read handle, imported and lent from the pipeline's callbacks) too.
  p.client.conn.keyUpdate(false);
  p.client.records.flushCore();
  const b = pattern(20_000, 113);
  await p.client.records.write(b);
  await p.settle();
  t.equal(toHex(p.server.data()), toHex(concat(a, b)), 'and after the KeyUpdate');
  t.same(errors(p.server.events), [], 'still no error');
});

// ---- the imported keys are dropped once the connection took its keys back ----------------------------------

v8.setFlagsFromString('--expose-gc');
const gc = vm.runInNewContext('gc') as () => void;

/** Keeps a WeakRef to every record key (raw AES-GCM) WebCrypto imports during test `t`. */
function watchRecordKeys(t: { teardown(f: () => void): void }): WeakRef<object>[] {
  const refs: WeakRef<object>[] = [];
  stubSubtle(t, 'importKey', (importKey) => (...args: unknown[]) => {
    const imported = importKey(...args);
    if (args[0] !== 'raw' || (args[2] as { name?: string })?.name !== 'AES-GCM') return imported;
    return imported.then((k) => {
      refs.push(new WeakRef(k as object));
      return k;
    });
  });
  return refs;
}

/** How many of `refs` still reach their key after garbage collection. */
/** A client and a server over the streams transport, joined in memory, offloading, handshake done. */
async function offloadedStreams(identity: string) {
  const psk = makePsk(identity, 'SHA-256');
  const c2s = new TransformStream<Uint8Array, Uint8Array>();
  const s2c = new TransformStream<Uint8Array, Uint8Array>();
  const common = { crypto: nobleProvider, psks: [psk], suites: ['TLS_AES_128_GCM_SHA256'] as const, offload: true };
  const client = tlsClientOverStreams({ readable: s2c.readable, writable: c2s.writable }, common);
  const server = tlsServerOverStreams({ readable: c2s.readable, writable: s2c.writable }, common);
  await Promise.all([client.handshake, server.handshake]);
  return { client, server };
}

async function alive(refs: readonly WeakRef<object>[]): Promise<number> {
  for (let i = 0; i < 3; i++) {
    await new Promise((r) => setTimeout(r, 0)); // (a WeakRef holds its target until the end of the current job)
    gc();
  }
  return refs.filter((r) => r.deref() !== undefined).length;
}

t.test('once both sides closed, neither pipeline keeps the CryptoKeys it imported', async (t) => {
  const refs = watchRecordKeys(t);
  const p = await pair(121);
  await p.client.records.write(pattern(40_000, 122));
  await p.server.records.write(pattern(40_000, 123));
  await p.settle();
  t.ok(refs.length >= 4, `each side imported its read and write key (${refs.length} keys)`);
  await p.closeBoth();
  t.equal(p.client.conn.phase, 'closed');
  t.equal(p.server.conn.phase, 'closed');
  t.equal(await alive(refs), 0, 'every imported key can be collected while the pipelines are still referenced');
  t.ok(p.client.records.idle && p.server.records.idle);
});

t.test('destroy(): the pipeline drops its CryptoKeys at its next flushCore (as after any call into the connection)', async (t) => {
  const refs = watchRecordKeys(t);
  const p = await pair(131);
  await p.client.records.write(pattern(40_000, 132));
  await p.settle();
  t.ok(refs.length >= 2, `the client's write key and the server's read key were imported (${refs.length} keys)`);
  p.client.conn.destroy();
  p.client.records.flushCore();
  p.server.conn.destroy();
  p.server.records.flushCore();
  t.equal(await alive(refs), 0, 'every imported key can be collected');
});

t.test('streams transport: after a clean close both ways, the CryptoKeys can be collected while the streams are still held', async (t) => {
  const refs = watchRecordKeys(t);
  const { client, server } = await offloadedStreams('offload-review-streams');
  const cw = client.writable.getWriter();
  await cw.write(pattern(50_000, 141));
  await cw.close();
  const got: Uint8Array[] = [];
  for await (const chunk of server.readable) got.push(chunk);
  const sw = server.writable.getWriter();
  await sw.write(pattern(100, 142));
  await sw.close();
  for await (const chunk of client.readable) got.push(chunk);
  t.equal(toHex(concat(...got)), toHex(concat(pattern(50_000, 141), pattern(100, 142))), 'both directions carried their data');
  t.ok(client.offloaded.sealed > 0 && server.offloaded.opened > 0, 'through the offload');
  t.ok(refs.length >= 4, `keys imported (${refs.length})`);
  t.equal(await alive(refs), 0, 'every imported key can be collected');
  t.ok(client.connection && server.connection, '(the streams are held until here)');
});

t.test('streams transport: after abort() (the connection destroyed), the CryptoKeys can be collected while the streams are still held', async (t) => {
  const refs = watchRecordKeys(t);
  const { client, server } = await offloadedStreams('offload-review-abort');
  const cw = client.writable.getWriter();
  await cw.write(pattern(50_000, 151));
  const reader = server.readable.getReader();
  let got = 0;
  while (got < 50_000) got += (await reader.read()).value?.length ?? 0;
  const sw = server.writable.getWriter();
  await sw.write(pattern(100, 152));
  t.ok(client.offloaded.sealed > 0 && server.offloaded.opened > 0, 'records went through the offload');
  await cw.abort(new Error('the application gave up'));
  await sw.abort(new Error('so did the server'));
  t.equal(client.connection.phase, 'closed', 'client: destroyed');
  t.equal(server.connection.phase, 'closed', 'server: destroyed');
  t.ok(refs.length >= 3, `keys imported: both write keys, the server's read key (${refs.length})`);
  t.equal(await alive(refs), 0, 'every imported key can be collected');
  t.ok(client.connection && server.connection, '(the streams are held until here)');
});

// ---- sealing fails: the connection is over ----------------------------------------------------------------

/** A streams pair over in-memory streams, handshake done; `encrypt` refuses its `refuse`-th call from then on. */
async function streamsPair(t: { teardown(f: () => void): void }, refuse: number) {
  const { client, server } = await offloadedStreams('offload-review-seal');
  let calls = 0;
  stubSubtle(t, 'encrypt', (encrypt) => (...args: unknown[]) => (++calls === refuse ? Promise.reject(new DOMException('the cipher failed', 'OperationError')) : encrypt(...args)));
  return { client, server };
}

t.test('streams transport: WebCrypto refuses to seal a record, then the peer closes: the connection is over, its keys wiped', async (t) => {
  const { client, server } = await streamsPair(t, 3);
  const cw = client.writable.getWriter();
  // Five records: the third is refused, so the stream of records the client sends has a gap from there on. (The
  // write itself may resolve first: it resolves once there is room, as a socket's would.)
  await cw.write(pattern(5 * 16_384, 161)).catch(() => {});
  await t.rejects(cw.close(), /the cipher failed/, 'closing rejects with what WebCrypto said (no close_notify after a gap)');
  t.notOk(wiped(client.connection), 'the client still reads what the server sends');
  await server.writable.getWriter().close();
  const cr = client.readable.getReader();
  t.same(await cr.read(), { done: true, value: undefined }, "the client's readable ends with the server's close_notify");
  await new Promise((r) => setTimeout(r, 0)); // (the read loop stops reading right after)
  t.ok(wiped(client.connection), "then the client connection's secrets are wiped (nothing can be sent, nothing more is read)");
});

t.test('streams transport: the peer closed, then WebCrypto refuses to seal a record: the connection is over, its keys wiped', async (t) => {
  const { client, server } = await streamsPair(t, 2);
  await server.writable.getWriter().close();
  const cr = client.readable.getReader();
  t.same(await cr.read(), { done: true, value: undefined }, "the server's close_notify ends the client's readable");
  t.notOk(wiped(client.connection), 'the client may still write');
  const cw = client.writable.getWriter();
  await cw.write(pattern(3 * 16_384, 171)).catch(() => {});
  await t.rejects(cw.close(), /the cipher failed/, 'closing rejects with what WebCrypto said');
  t.ok(wiped(client.connection), "the client connection's secrets are wiped");
});

// ---- WebCrypto answering the opens out of order ------------------------------------------------------------

/**
 * Holds every answer of WebCrypto's `method` until released (calling its entry), so the test decides the order
 * WebCrypto answers in; once `held.stop()` is called, later calls answer at once.
 */
function holdAnswers(t: { teardown(f: () => void): void }, method: 'encrypt' | 'decrypt'): (() => void)[] & { stop(): void } {
  let holding = true;
  const held = Object.assign([] as (() => void)[], { stop: () => void (holding = false) });
  stubSubtle(t, method, (original) => (...args: unknown[]) => {
    const answer = original(...args);
    if (!holding) return answer;
    return new Promise((resolve, reject) => held.push(() => void answer.then(resolve, reject)));
  });
  return held;
}

const holdDecrypts = (t: { teardown(f: () => void): void }) => holdAnswers(t, 'decrypt');
const holdEncrypts = (t: { teardown(f: () => void): void }) => holdAnswers(t, 'encrypt');

async function turns(n: number): Promise<void> {
  for (let i = 0; i < n; i++) await new Promise((r) => setTimeout(r, 0));
}

t.test('opens answered last first: the records are delivered in order, each once the ones before it are', async (t) => {
  const p = await pair(181);
  const held = holdDecrypts(t);
  // Four records of one write (recordsInFlight 4: all four are opened at once).
  const a = pattern(4 * 16_384 - 100, 182);
  p.client.records.write(a).catch(() => {});
  for (let i = 0; i < 200 && held.length < 4; i++) await turns(1);
  t.equal(held.length, 4, 'four opens wait for WebCrypto');
  for (let i = held.length - 1; i > 0; i--) held[i]();
  await turns(5);
  t.equal(p.server.received.length, 0, 'nothing is delivered while the first record is still being opened');
  held.stop();
  held[0]();
  await p.settle();
  t.equal(toHex(p.server.data()), toHex(a), 'then all of it, in order');
  t.equal(p.server.records.offloadedReads, 4, 'all four opened by WebCrypto');
});

t.test('a forged record among records opened out of order: nothing after it is delivered, and the connection ends in bad_record_mac', async (t) => {
  const p = await pair(191);
  // Records sealed with the client's write key, forged in the middle, sent in one piece.
  const { importRecordKey, sealRecord } = await import('../lib/transport/webcrypto-records.js');
  const h = p.client.conn.offloadWrite()!;
  const key = await importRecordKey(h.key);
  const inner = (byte: number) => Uint8Array.of(byte, byte, 23);
  const records = [];
  for (let i = 0; i < 5; i++) records.push(await sealRecord(key, h.reserve()!, inner(0x41 + i)));
  records[2][records[2].length - 1] ^= 1; // the third one's tag
  const held = holdDecrypts(t);
  p.server.records.receive(concat(...records));
  p.server.collect();
  t.equal(held.length, 5, 'all five opens wait for WebCrypto (recordsInFlight 4: up to 8 at once)');
  // The forged record and the one after it answer first (that one authenticates: it would be good data).
  held[3]();
  held[2]();
  await turns(5);
  t.equal(p.server.received.length, 0, 'nothing delivered yet');
  held.stop(); // (the client opens the server's alert)
  held[1]();
  held[0]();
  held[4](); // (the fifth: dropped unread, the connection has failed)
  await p.settle();
  t.equal(toHex(p.server.data()), '41414242', 'only the two records before the forged one are delivered');
  const err = errors(p.server.events)[0] as Extract<ConnectionEvent, { type: 'error' }> | undefined;
  t.equal(err?.error.reason, 'RecordBadMac', 'the server fails with bad_record_mac (RFC 8446 §5.2)');
  t.equal(err?.error.alertCode, 20);
  t.equal(p.server.conn.phase, 'failed');
});

// ---- many small records in one read: opened at most twice recordsInFlight at a time ------------------------------

t.test('garbage records injected in one read: WebCrypto is asked to open at most twice recordsInFlight of them, not all, before bad_record_mac', async (t) => {
  const p = await pair(201);
  let calls = 0;
  stubSubtle(t, 'decrypt', (decrypt) => (...args: unknown[]) => {
    calls++;
    return decrypt(...args);
  });
  // 64 KiB of the smallest records that may be application data (5 + 1 + 16 bytes), none authentic (an attacker on
  // the path needs no key for this): the synchronous path stops at the first one.
  const size = 5 + 1 + 16;
  const blob = new Uint8Array(Math.floor(65_536 / size) * size);
  for (let at = 0; at < blob.length; at += size) blob.set([23, 3, 3, 0, size - 5], at);
  p.server.records.receive(blob, true);
  p.server.collect();
  await p.settle();
  const err = errors(p.server.events)[0] as Extract<ConnectionEvent, { type: 'error' }> | undefined;
  t.equal(err?.error.reason, 'RecordBadMac', 'the server fails with bad_record_mac (RFC 8446 §5.2)');
  t.equal(p.server.received.length, 0, 'nothing delivered');
  // (+1: the client opens the server's alert.)
  t.ok(calls <= 2 * 4 + 1, `WebCrypto was asked to open ${calls} records (the server's of the ${blob.length / size}, at most twice recordsInFlight 4, and the client's alert)`);
});

t.test('many small authentic records in one read: at most twice recordsInFlight opens wait for WebCrypto at once, all delivered in order', async (t) => {
  const p = await pair(211);
  const { importRecordKey, sealRecord } = await import('../lib/transport/webcrypto-records.js');
  const h = p.client.conn.offloadWrite()!;
  const key = await importRecordKey(h.key);
  const records: Uint8Array[] = [];
  const sent: Uint8Array[] = [];
  for (let i = 0; i < 100; i++) {
    const content = pattern(1 + (i % 7), 212 + i);
    sent.push(content);
    const inner = new Uint8Array(content.length + 1);
    inner.set(content);
    inner[content.length] = 23;
    records.push(await sealRecord(key, h.reserve()!, inner));
  }
  const held = holdDecrypts(t);
  p.server.records.receive(concat(...records), true);
  p.server.collect();
  let most = 0;
  // Answer the oldest open each turn, watching how many wait at once.
  for (let round = 0; round < 1000 && p.server.received.length < 100; round++) {
    const waiting = held.filter(Boolean).length;
    most = Math.max(most, waiting);
    const i = held.findIndex(Boolean);
    if (i >= 0) {
      const f = held[i];
      delete held[i];
      f();
    }
    await turns(1);
  }
  held.stop();
  await p.settle();
  t.ok(most <= 2 * 4, `at most ${most} opens waited at once (twice recordsInFlight: 4)`);
  t.equal(toHex(p.server.data()), toHex(concat(...sent)), 'every record delivered, in order');
  t.equal(p.server.records.offloadedReads, 100, 'all opened by WebCrypto');
  t.same(errors(p.server.events), [], 'no error');
});

// ---- the batching: a sealed record waits for the next of its write ----------------------------------------

t.test('four records and one byte, the byte sealed last, a zero-length write and close() right after: one write in order, then close_notify', async (t) => {
  const psk = makePsk('offload-review-batch', 'SHA-256', seededRandom(0x5e)(32));
  const p = await offloadPair(
    { crypto: withRandom(nodeProvider, seededRandom(221)), psks: [psk], suites: ['TLS_AES_128_GCM_SHA256'] },
    { crypto: withRandom(nodeProvider, seededRandom(222)), psks: [psk] },
    { recordsInFlight: 8, keepWire: true },
  );
  const held = holdEncrypts(t);
  const data = pattern(4 * 16_384 + 1, 223);
  const wireBefore = p.client.wire.length;
  await p.client.records.write(data);
  await p.client.records.write(new Uint8Array(0));
  p.client.conn.close();
  p.client.records.flushCore();
  t.equal(held.length, 5, 'five records are with WebCrypto');
  for (let i = 0; i < 4; i++) held[i]();
  await turns(3);
  t.equal(p.client.wire.length, wireBefore, 'the four sealed records wait for the fifth (same write, it fits)');
  held.stop();
  held[4]();
  await p.settle();
  const sent = p.client.wire.slice(wireBefore);
  t.equal(sent.length, 1, 'one write');
  const lengths: number[] = [];
  for (let at = 0; at < sent[0].length; at += 5 + lengths[lengths.length - 1]) lengths.push((sent[0][at + 3] << 8) | sent[0][at + 4]);
  t.same(lengths, [16_401, 16_401, 16_401, 16_401, 18, 19], 'five records, then close_notify (2 + 1 + 16)');
  t.equal(toHex(p.server.data()), toHex(data), 'the server read it all, in order');
  t.same(p.server.events.map((e) => e.type), ['handshake', 'end'], 'then the end, no error');
});

// ---- the opens' counters across returns, KeyUpdates and destroy() (second review of 5cf8705 / eaa765b) ----------

/** The pipeline's open counters (private): both 0 once nothing is being opened. */
function openCounters(records: object): { decrypting: number; started: number } {
  const r = records as unknown as { decrypting: number; started: number };
  return { decrypting: r.decrypting, started: r.started };
}


t.test('an empty record returned while later opens are still with WebCrypto: those answers start the next records, all delivered once, in order', async (t) => {
  const psk = makePsk('offload-review-stale', 'SHA-256', seededRandom(0x5e)(32));
  // recordsInFlight 1: at most two opens at once, so one stale open holds half the slots.
  const p = await offloadPair(
    { crypto: withRandom(nodeProvider, seededRandom(231)), psks: [psk], suites: ['TLS_AES_128_GCM_SHA256'] },
    { crypto: withRandom(nodeProvider, seededRandom(232)), psks: [psk] },
    { recordsInFlight: 1 },
  );
  const contents = Array.from({ length: 8 }, (_, i) => (i === 1 ? new Uint8Array(0) : pattern(10 + i, 233 + i)));
  const records = await sealAll(p.client.conn, contents);
  const held = holdDecrypts(t);
  p.server.records.receive(concat(...records.slice(0, 6)), true);
  p.server.collect();
  t.equal(held.length, 2, 'two opens wait (twice recordsInFlight 1)');
  held[0](); // record 0: delivered; record 2 starts
  await turns(3);
  t.equal(held.length, 3, 'the answer started the next record');
  held[1](); // record 1 (empty): goes back to the connection with 2..5, while record 2's open is still with WebCrypto
  await turns(3);
  t.equal(openCounters(p.server.records).decrypting, 1, "record 2's open is still counted");
  // Two more records arrive under the same handle (lent again): one slot is free, the stale open holds the other.
  p.server.records.receive(concat(...records.slice(6)), true);
  p.server.collect();
  t.equal(held.length, 4, 'one of the two new records is opened at once');
  held[2](); // the stale answer: dropped, and it starts the last record
  await turns(3);
  t.equal(held.length, 5, 'the stale answer started the waiting record');
  held.stop();
  held[4]();
  held[3]();
  await p.settle();
  t.equal(toHex(p.server.data()), toHex(concat(...contents)), 'every record once, in order');
  t.same(openCounters(p.server.records), { decrypting: 0, started: 0 }, 'the counters are back at 0');
  t.same(errors(p.server.events), [], 'no error');
});

t.test('a KeyUpdate among records opened out of order: the records after it are opened by the connection under the new key, and later ones by WebCrypto again', async (t) => {
  const p = await pair(241);
  const before = Array.from({ length: 4 }, (_, i) => pattern(100 + i, 242 + i));
  const after = Array.from({ length: 6 }, (_, i) => pattern(200 + i, 252 + i));
  const a = await sealAll(p.client.conn, before);
  p.client.conn.keyUpdate(false); // revokes the client's write handle and queues its KeyUpdate record
  const ku = concat(...p.client.conn.takeOutputChunks());
  const b = await sealAll(p.client.conn, after); // a new handle: the new key
  const held = holdDecrypts(t);
  p.server.records.receive(concat(...a, ku, ...b), true);
  p.server.collect();
  t.equal(held.length, 8, 'eight opens wait (twice recordsInFlight 4), the rest waits unstarted');
  for (let i = held.length - 1; i >= 0; i--) held[i](); // last first
  held.stop();
  await p.settle();
  t.equal(toHex(p.server.data()), toHex(concat(...before, ...after)), 'everything once, in order');
  t.same(errors(p.server.events), [], 'no error (nothing opened under the wrong key was accepted)');
  const opened = p.server.records.offloadedReads;
  t.equal(opened, 4, 'WebCrypto delivered the four records before the KeyUpdate');
  const more = pattern(50_000, 262);
  await p.client.records.write(more);
  await p.settle();
  t.equal(toHex(p.server.data()), toHex(concat(...before, ...after, more)), 'then what the client writes under its new key');
  t.ok(p.server.records.offloadedReads > opened, `opened by WebCrypto under the new read key (${p.server.records.offloadedReads - opened} records)`);
  t.same(openCounters(p.server.records), { decrypting: 0, started: 0 }, 'the counters are back at 0');
  t.same(errors(p.server.events), [], 'no error');
});

t.test('destroy() while opens are with WebCrypto and more records wait unstarted: readDrained resolves, nothing is delivered after', async (t) => {
  const p = await pair(271);
  const contents = Array.from({ length: 20 }, (_, i) => pattern(30 + i, 272 + i));
  const records = await sealAll(p.client.conn, contents);
  const held = holdDecrypts(t);
  p.server.records.receive(concat(...records), true);
  p.server.collect();
  t.equal(held.length, 8, 'eight opens wait, twelve records unstarted');
  held[0]();
  await turns(3);
  t.equal(p.server.received.length, 1, 'the first record is delivered');
  p.server.conn.destroy();
  p.server.records.flushCore(); // (the transport's part after destroy: drops the read key)
  let drained = false;
  void p.server.records.readDrained().then(() => (drained = true));
  held.stop();
  for (let i = 1; i < held.length; i++) held[i]();
  await turns(5);
  t.ok(drained, 'readDrained resolves (the records waiting unstarted are dropped with the handle)');
  t.equal(p.server.received.length, 1, 'nothing delivered after destroy()');
  t.ok(p.server.records.idle, 'the pipeline is idle');
  t.same(openCounters(p.server.records), { decrypting: 0, started: 0 }, 'the counters are back at 0');
});

t.test('streams transport: after WebCrypto refused to seal, the client still reads everything the server sends, then the server closes', async (t) => {
  const { client, server } = await streamsPair(t, 2);
  const cw = client.writable.getWriter();
  await cw.write(pattern(3 * 16_384, 281)).catch(() => {});
  await t.rejects(cw.write(pattern(10, 282)), /the cipher failed/, 'a write after the failure rejects with it');
  const data = pattern(200_000, 283);
  const sw = server.writable.getWriter();
  const cr = client.readable.getReader();
  const reading = (async () => {
    const parts: Uint8Array[] = [];
    for (;;) {
      const { value, done } = await cr.read();
      if (done) return concat(...parts);
      parts.push(value);
    }
  })();
  await sw.write(data);
  t.notOk(wiped(client.connection), 'the connection is not wiped while the server still sends');
  await sw.close();
  t.equal(toHex(await reading), toHex(data), 'the client read all of it after its sending failed');
  await new Promise((r) => setTimeout(r, 0));
  t.ok(wiped(client.connection), 'then its keys are wiped');
});
