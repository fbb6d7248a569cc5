/**
 * The record offload lends received records a window at a time (lib/connection/offload.ts,
 * lib/transport/webcrypto-records.ts): a read of thousands of small records — which anyone on the path can send,
 * no key needed — must not become thousands of lent records (a record object, views and a nonce each: ≈1.9 MB for
 * one 64 KiB read of 22-byte records before). The connection keeps the records it has not lent as the bytes they
 * came in; the transport takes at most twice recordsInFlight at a time, and reads on only once all are lent. The
 * records, their order, sequence numbers and nonces are those of the synchronous path, with a KeyUpdate or a
 * failing record in the middle of such a read too.
 */
import t from 'tap';
import { concat, toHex } from '../lib/codec/bytes.js';
import type { ConnectionEvent } from '../lib/config/events.js';
import { nodeProvider } from '../lib/crypto/node.js';
import { Connection } from '../lib/connection/connection.js';
import { nobleProvider } from '../lib/crypto/noble.js';
import { Deframer } from '../lib/record/deframer.js';
import { WebCryptoRecords } from '../lib/transport/webcrypto-records.js';
import { tlsClientOverStreams, tlsServerOverStreams } from '../lib/transport/streams.js';
import { offloadPair, type OffloadPair } from '../bench/offload-pair.js';
import { makePsk, seededRandom, withRandom } from './helpers/pair.js';
import type { Tap } from './helpers/peers.js';
import { sealAll } from './helpers/seal-records.js';

/** recordsInFlight of the pairs below: at most twice this many records are lent at once. */
const IN_FLIGHT = 4;
const WINDOW = 2 * IN_FLIGHT;

const pattern = (n: number, seed: number): Uint8Array => seededRandom(seed)(n);
type ErrorEvent = Extract<ConnectionEvent, { type: 'error' }>;
const errors = (events: readonly ConnectionEvent[]) => events.filter((e): e is ErrorEvent => e.type === 'error');

async function pair(seed: number): Promise<OffloadPair> {
  const psk = makePsk('offload-lazy', 'SHA-256', seededRandom(0x5e)(32));
  return offloadPair(
    { crypto: withRandom(nodeProvider, seededRandom(seed)), psks: [psk], suites: ['TLS_AES_128_GCM_SHA256'] },
    { crypto: withRandom(nodeProvider, seededRandom(seed + 1)), psks: [psk] },
    { recordsInFlight: IN_FLIGHT },
  );
}

type Call = (...args: unknown[]) => Promise<unknown>;

/**
 * Holds every answer of WebCrypto's decrypt until released (calling its entry); once `held.stop()` is called, later
 * calls answer at once.
 */
function holdDecrypts(t: { teardown(f: () => void): void }): (() => void)[] & { stop(): void } {
  const subtle = globalThis.crypto.subtle as unknown as Record<string, Call>;
  const decrypt = subtle.decrypt.bind(subtle);
  let holding = true;
  const held = Object.assign([] as (() => void)[], { stop: () => void (holding = false) });
  Object.defineProperty(subtle, 'decrypt', {
    configurable: true,
    writable: true,
    value: (...args: unknown[]) => {
      const answer = decrypt(...args);
      if (!holding) return answer;
      return new Promise((resolve, reject) => held.push(() => void answer.then(resolve, reject)));
    },
  });
  t.teardown(() => void delete subtle.decrypt);
  return held;
}

/** Answers every open held so far (each once). */
function releaseAll(held: (() => void)[]): void {
  for (let i = 0; i < held.length; i++) {
    const f = held[i];
    if (!f) continue;
    delete held[i];
    f();
  }
}

const turn = (): Promise<void> => new Promise((r) => setImmediate(r));

/** The records the pipeline holds, lent by the connection and not yet delivered or returned (private). */
function lentNow(records: object): number {
  return (records as unknown as { opening: unknown[] }).opening.length;
}


/** `n` small contents (1 to 7 bytes: records of 23 to 29 bytes), `n` of them fill about 26n bytes. */
const smallContents = (n: number, seed: number): Uint8Array[] => Array.from({ length: n }, (_, i) => pattern(1 + (i % 7), seed + i));

// ---- one read of the smallest records ----------------------------------------------------------------------

t.test('a 64 KiB read of forged 22-byte records: at most twice recordsInFlight of them are lent at once, not all 2,978, then bad_record_mac', async (t) => {
  const p = await pair(301);
  const lent = p.server.conn.offloadRead()!;
  const before = lent.nextSequence;
  const held = holdDecrypts(t);
  // 5 + 1 + 16 bytes: the smallest record that may be application data; none authentic (no key needed to send them).
  const size = 22;
  const blob = new Uint8Array(Math.floor(65_536 / size) * size);
  for (let at = 0; at < blob.length; at += size) blob.set([23, 3, 3, 0, size - 5], at);
  p.server.records.receive(blob, true);
  p.server.collect();
  t.equal(blob.length / size, 2978, 'one read of 2,978 records');
  t.ok(lent.nextSequence - before <= WINDOW, `the connection lent ${lent.nextSequence - before} of them (sequence numbers assigned), at most ${WINDOW}`);
  t.ok(lentNow(p.server.records) <= WINDOW, `the pipeline holds ${lentNow(p.server.records)} records, at most ${WINDOW}`);
  t.ok(lent.hasRecords, 'the rest wait in the connection, unlent');
  t.equal(held.length, lentNow(p.server.records), 'each record held is being opened');
  held.stop();
  releaseAll(held);
  await p.settle();
  t.equal(errors(p.server.events)[0]?.error.reason, 'RecordBadMac', 'the server fails with bad_record_mac (RFC 8446 §5.2)');
  t.equal(p.server.received.length, 0, 'nothing delivered');
  t.notOk(lent.active || lent.hasRecords, 'the handle is revoked: nothing more is lent');
});

/**
 * Delivers one read of `wire` to the server of `p` with every open held, then answers the opens as they come,
 * checking after every turn that the records lent and not yet delivered or returned are at most the window.
 * Resolves with the most seen at once.
 */
async function readAnsweringAll(t: Tap, p: OffloadPair, wire: Uint8Array, until: () => boolean): Promise<number> {
  const held = holdDecrypts(t);
  p.server.records.receive(wire, true);
  p.server.collect();
  let most = lentNow(p.server.records);
  for (let round = 0; round < 20_000 && !until(); round++) {
    releaseAll(held);
    await turn();
    most = Math.max(most, lentNow(p.server.records));
  }
  held.stop();
  releaseAll(held);
  await p.settle();
  return most;
}

t.test('2,500 small authentic records in one read: never more than twice recordsInFlight lent, all delivered in order, each opened by WebCrypto', async (t) => {
  const p = await pair(311);
  const contents = smallContents(2500, 312);
  const wire = concat(...(await sealAll(p.client.conn, contents)));
  t.ok(wire.length > 60_000, `one read of ${wire.length} bytes`);
  const lent = p.server.conn.offloadRead()!;
  const first = lent.nextSequence;
  const most = await readAnsweringAll(t, p, wire, () => p.server.received.length >= 2500);
  t.ok(most <= WINDOW, `at most ${most} records lent at once (the window: ${WINDOW})`);
  t.equal(toHex(p.server.data()), toHex(concat(...contents)), 'every record delivered, in order');
  t.equal(p.server.records.offloadedReads, 2500, 'all opened by WebCrypto');
  t.equal(lent.nextSequence, first + 2500, 'one sequence number each, in order');
  t.same(errors(p.server.events), [], 'no error');
});

t.test("a read of 2,500 small records with the peer's KeyUpdate in the middle: the records after it are opened under the new key", async (t) => {
  const p = await pair(321);
  const beforeKu = smallContents(1250, 322);
  const afterKu = smallContents(1250, 5322);
  const a = await sealAll(p.client.conn, beforeKu);
  p.client.conn.keyUpdate(false); // revokes the client's write handle and queues its KeyUpdate record
  const ku = concat(...p.client.conn.takeOutputChunks());
  const b = await sealAll(p.client.conn, afterKu); // a new handle: the new key, sequence numbers from 0 (§5.3)
  const most = await readAnsweringAll(t, p, concat(...a, ku, ...b), () => p.server.received.length >= 2500 || errors(p.server.events).length > 0);
  t.ok(most <= WINDOW, `at most ${most} records lent at once (the window: ${WINDOW})`);
  t.equal(toHex(p.server.data()), toHex(concat(...beforeKu, ...afterKu)), 'every record delivered once, in order');
  t.equal(p.server.events.filter((e) => e.type === 'key-update' && e.direction === 'read').length, 1, 'the server followed the KeyUpdate');
  t.same(errors(p.server.events), [], 'no error (nothing opened under the old key after it was accepted)');
  t.equal(p.server.records.offloadedReads, 1250, 'WebCrypto opened the records before the KeyUpdate; the connection those after it');
  const more = pattern(40_000, 323);
  await p.client.records.write(more);
  await p.settle();
  t.equal(toHex(p.server.data()), toHex(concat(...beforeKu, ...afterKu, more)), 'then what the client writes under its new key');
  t.ok(p.server.records.offloadedReads > 1250, 'opened by WebCrypto again, under the new read key');
});

t.test('a read of 2,500 small records with a forged one in the middle: the records before it are delivered, nothing after, bad_record_mac', async (t) => {
  const p = await pair(331);
  const contents = smallContents(2500, 332);
  const records = await sealAll(p.client.conn, contents);
  records[1300] = records[1300].slice();
  records[1300][records[1300].length - 1] ^= 1; // its tag
  const most = await readAnsweringAll(t, p, concat(...records), () => errors(p.server.events).length > 0);
  t.ok(most <= WINDOW, `at most ${most} records lent at once (the window: ${WINDOW})`);
  t.equal(toHex(p.server.data()), toHex(concat(...contents.slice(0, 1300))), 'the 1,300 records before it, in order, and nothing after');
  const err = errors(p.server.events)[0]?.error;
  t.equal(err?.reason, 'RecordBadMac', 'the server fails with bad_record_mac (RFC 8446 §5.2)');
  t.equal(err?.alertCode, 20);
  t.equal(errors(p.client.events)[0]?.error.alertCode, 20, 'the client receives the alert');
});

t.test('close() and destroy() while records wait unlent', async (t) => {
  t.test('close(): our close_notify goes out, and every record waiting is still read', async (t) => {
    const p = await pair(341);
    const contents = smallContents(300, 342);
    const wire = concat(...(await sealAll(p.client.conn, contents)));
    const held = holdDecrypts(t);
    p.server.records.receive(wire, true);
    p.server.collect();
    t.ok(p.server.conn.offloadRead()!.hasRecords, 'records wait unlent');
    p.server.conn.close();
    p.server.records.flushCore();
    held.stop();
    releaseAll(held);
    await p.settle();
    t.equal(toHex(p.server.data()), toHex(concat(...contents)), 'every record delivered, in order');
    t.ok(p.client.events.some((e) => e.type === 'end'), "the client received the server's close_notify");
    t.same(errors(p.server.events), [], 'no error');
  });
  t.test('destroy(): nothing more is lent or delivered, and the pipeline goes idle', async (t) => {
    const p = await pair(351);
    const wire = concat(...(await sealAll(p.client.conn, smallContents(300, 352))));
    const held = holdDecrypts(t);
    p.server.records.receive(wire, true);
    p.server.collect();
    const lent = p.server.conn.offloadRead()!;
    const sequence = lent.nextSequence;
    p.server.conn.destroy();
    p.server.records.flushCore();
    held.stop();
    releaseAll(held);
    await p.settle();
    t.equal(p.server.received.length, 0, 'nothing delivered');
    t.equal(lent.nextSequence, sequence, 'nothing more lent');
    t.same(lent.takeRecords(), [], 'and the handle lends nothing when asked');
    t.ok(p.server.records.idle, 'the pipeline is idle');
  });
});

// ---- headers are still checked when the bytes arrive -------------------------------------------------------

t.test('a bad record header after many small records in one read ends the connection when the read arrives, as before', async (t) => {
  // `split`: where the second read starts in the bad header (for the length: between its two bytes).
  for (const [name, tail, split, reason] of [
    ['an unknown record type', Uint8Array.of(0x99, 3, 3, 0, 1, 0), 0, 'RecordUnknownContentType'],
    ['a length over 2^14 + 256', Uint8Array.of(23, 3, 3, 0x41, 0x01), 4, 'RecordOverflow'],
  ] as const) {
    const p = await pair(361);
    const wire = concat(...(await sealAll(p.client.conn, smallContents(500, 362))), tail);
    const cut = wire.length - tail.length + split;
    p.server.records.receive(wire.slice(0, cut), true);
    p.server.collect();
    t.equal(p.server.conn.phase, 'connected', `${name}: not failed before the read that completes the bad header`);
    p.server.records.receive(wire.slice(cut), true);
    p.server.collect();
    t.equal(errors(p.server.events)[0]?.error.reason, reason, `${name}: ${reason} as soon as the header is read, with the records before it unopened`);
    await p.settle();
    t.equal(p.server.received.length, 0, `${name}: nothing delivered (the connection failed before they were opened)`);
  }
});

t.test('Deframer.check reads each header once across chunk boundaries and takes nothing out; hasRecord says whether next() has one', async (t) => {
  const records = [Uint8Array.of(23, 3, 3, 0, 3, 1, 2, 3), Uint8Array.of(22, 3, 3, 0, 1, 9), Uint8Array.of(21, 3, 3, 0, 2, 1, 0)];
  const all = concat(...records);
  for (let cut = 1; cut < all.length; cut++) {
    const d = new Deframer();
    d.push(all.subarray(0, cut));
    d.check();
    d.push(all.subarray(cut));
    d.check();
    t.equal(d.buffered, all.length, `cut at ${cut}: nothing taken out`);
    const got: string[] = [];
    while (d.hasRecord) got.push(toHex(d.next()!.bytes));
    t.same(got, records.map(toHex), `cut at ${cut}: the three records, in order`);
    t.equal(d.next(), null);
  }
  const bad = new Deframer();
  bad.push(concat(records[0], Uint8Array.of(0x30)));
  t.throws(() => bad.check(), { reason: 'RecordUnknownContentType', message: /content type 0x30/ }, 'a bad type byte is found before the records ahead of it are taken');
  t.equal(bad.buffered, records[0].length + 1, 'still nothing taken out');
});

// ---- the streams transport reads on only once the connection has lent everything ------------------------------

/**
 * An offloading streams client and server in memory, handshake done; the server's transport hands over one chunk
 * per read (`push`; null ends the stream), counting the reads it was asked for (`pulls`).
 */
async function countedStreams(identity: string) {
  const psk = makePsk(identity, 'SHA-256');
  const common = { crypto: nobleProvider, psks: [psk], suites: ['TLS_AES_128_GCM_SHA256'] as const, offload: true, recordsInFlight: IN_FLIGHT };
  const queue: Uint8Array[] = [];
  let wake: (() => void) | null = null;
  let ended = false;
  const io = { pulls: 0, reads: 0, queued: () => queue.length };
  const push = (chunk: Uint8Array | null): void => {
    if (chunk) queue.push(chunk);
    else ended = true;
    wake?.();
    wake = null;
  };
  const serverIn = new ReadableStream<Uint8Array>(
    {
      async pull(c) {
        io.pulls++;
        while (queue.length === 0 && !ended) await new Promise<void>((r) => (wake = r));
        if (queue.length === 0) return c.close();
        io.reads++;
        c.enqueue(queue.shift()!);
      },
    },
    { highWaterMark: 0 },
  );
  const c2s = new TransformStream<Uint8Array, Uint8Array>();
  const s2c = new TransformStream<Uint8Array, Uint8Array>();
  void (async () => {
    const r = c2s.readable.getReader();
    for (;;) {
      const { value, done } = await r.read();
      if (done) return;
      push(value);
    }
  })();
  const client = tlsClientOverStreams({ readable: s2c.readable, writable: c2s.writable }, common);
  const server = tlsServerOverStreams({ readable: serverIn, writable: s2c.writable }, common);
  await Promise.all([client.handshake, server.handshake]);
  const got: Uint8Array[] = [];
  const reading = (async () => {
    for await (const chunk of server.readable) got.push(chunk);
  })();
  for (let i = 0; i < 5; i++) await turn();
  return { client, server, push, io, got, reading };
}

t.test('streams transport: no read from the transport while records read before wait unlent in the connection; then all of it, to the end of stream', async (t) => {
  const { client, server, push, io, got, reading } = await countedStreams('offload-lazy-streams');
  // Records sealed with the client's key (its transport sends nothing meanwhile), handed to the server in two reads.
  const contents = smallContents(2000, 372);
  const records = await sealAll(client.connection, contents);
  const lent = server.connection.offloadRead()!;
  const first = lent.nextSequence;
  const held = holdDecrypts(t);
  const readsBefore = io.reads;
  push(concat(...records.slice(0, 1000)));
  push(concat(...records.slice(1000)));
  for (let i = 0; i < 20; i++) await turn();
  t.equal(io.reads, readsBefore + 1, 'the server read the first chunk only');
  t.equal(io.queued(), 1, 'the second waits in its transport');
  t.ok(lent.hasRecords, 'while records of the first wait unlent in the connection');
  t.ok(lent.nextSequence - first <= WINDOW, `${lent.nextSequence - first} records lent (at most ${WINDOW})`);
  t.ok(held.length <= WINDOW, `${held.length} records being opened`);
  push(null); // the end of stream right behind the records
  held.stop();
  releaseAll(held);
  await reading;
  t.equal(toHex(concat(...got)), toHex(concat(...contents)), 'then every record of both reads, in order, and the end of stream');
  t.equal(server.offloaded.opened, 2000, 'all opened by WebCrypto');
});

t.test("streams transport: one read of more full records than are lent at once, then the peer's close_notify: it is opened before the transport is read on", async (t) => {
  const { client, server, push, io, got } = await countedStreams('offload-lazy-close');
  // 13 full records (more than the 8 lent at once), then close_notify, a short record: the last one of the read is
  // known only once the connection has lent them all.
  const contents = Array.from({ length: 13 }, (_, i) => pattern(16_384, 381 + i));
  const records = await sealAll(client.connection, contents);
  client.connection.close();
  const closeNotify = concat(...client.connection.takeOutputChunks());
  t.equal(closeNotify.length, 5 + 2 + 1 + 16, 'a close_notify record');
  const held = holdDecrypts(t);
  const pullsBefore = io.pulls;
  push(concat(...records, closeNotify));
  // WebCrypto answers one open a turn, oldest first.
  for (let round = 0; round < 2000 && !server.connection.peerClosed; round++) {
    const i = held.findIndex(Boolean);
    if (i >= 0) {
      const f = held[i];
      delete held[i];
      f();
    }
    await turn();
  }
  held.stop();
  releaseAll(held);
  for (let i = 0; i < 20; i++) await turn();
  t.ok(server.connection.peerClosed, "the server processed the client's close_notify");
  t.equal(io.pulls, pullsBefore, 'and asked its transport for nothing more: no read after the read that held it (§6.1)');
  t.equal(toHex(concat(...got)), toHex(concat(...contents)), 'every record before it delivered, in order');
});

// ---- records opened while afterCore runs ---------------------------------------------------------------------

t.test('records that fill the window while an asynchronous afterCore runs: once it settles, the rest of the read is lent too (no stall)', async (t) => {
  // WebCryptoRecordsOptions.afterCore may be asynchronous ("records received meanwhile are opened once it settles").
  // Here the records received meanwhile fill the window and are all opened before it settles: they are delivered
  // then, and the records behind them, still unlent in the connection, must be taken next. Before the fix, the end
  // of afterCore took records first (no room: the window was full) and delivered second, so nothing took the rest:
  // unlentRecords stayed true with nothing being opened, and a transport waiting in readRoom() waited for good.
  const psk = makePsk('offload-lazy-after-core', 'SHA-256', seededRandom(0x5f)(32));
  const client = Connection.client({ crypto: withRandom(nodeProvider, seededRandom(391)), psks: [psk], suites: ['TLS_AES_128_GCM_SHA256'] });
  const server = Connection.server({ crypto: withRandom(nodeProvider, seededRandom(392)), psks: [psk] });
  for (let i = 0; i < 4; i++) {
    for (const c of client.takeOutputChunks()) server.receive(c);
    for (const c of server.takeOutputChunks()) client.receive(c);
  }
  t.equal(server.phase, 'connected', 'handshake done');
  client.takeEvents();
  server.takeEvents();
  const got: Uint8Array[] = [];
  let gate: (() => void) | null = null;
  let afterCoreCalls = 0;
  const records = new WebCryptoRecords(server, {
    send: async () => {},
    deliver: (d) => got.push(d),
    afterCore: async () => {
      afterCoreCalls++;
      await new Promise<void>((r) => (gate = r));
      for (const ev of server.takeEvents()) if (ev.type === 'data') got.push(ev.data);
    },
    recordsInFlight: 1, // a window of 2
  });
  records.takeLentRecords();
  // An empty application_data record: WebCrypto does not accept it, so it goes back to the connection, which counts
  // it as idle and lends the same key again (afterCore then runs).
  const [empty, ...small] = await sealAll(client, [new Uint8Array(0), ...smallContents(6, 393)]);
  // (Each wait below is bounded by a number of event-loop turns, long enough for WebCrypto on a loaded machine.)
  const until = async (done: () => boolean): Promise<void> => {
    for (let i = 0; i < 5000 && !done(); i++) await new Promise((r) => setTimeout(r, 1));
  };
  records.receive(empty, true);
  await until(() => afterCoreCalls > 0);
  t.equal(afterCoreCalls, 1, 'the empty record went back to the connection: afterCore is running');
  // Meanwhile a read of six records: two are lent (the window) and opened; four wait in the connection.
  const contents = smallContents(6, 393);
  records.receive(concat(...small), true);
  const opening = (records as unknown as { opening: { done: boolean }[] }).opening;
  await until(() => opening.length === 2 && opening.every((o) => o.done));
  t.ok(opening.length === 2 && opening.every((o) => o.done), 'the window is full and opened, waiting for afterCore');
  t.ok(records.unlentRecords, 'the rest of the read waits unlent');
  gate!();
  await until(() => records.idle);
  t.equal(toHex(concat(...got)), toHex(concat(...contents)), 'every record delivered, in order');
  t.notOk(records.unlentRecords, 'none left unlent');
  t.ok(records.idle, 'the pipeline is idle');
});
