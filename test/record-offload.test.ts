/**
 * The record offload (lib/connection/offload.ts, lib/transport/webcrypto-records.ts): application_data
 * records sealed and opened with WebCrypto, several in flight, must be byte for byte the records of the
 * connection's synchronous path — across KeyUpdates requested by us, by the peer and the automatic one
 * before the key's limit — and hostile records must still end in the synchronous path's alert and reason.
 */
import t from 'tap';
import { concat, toHex } from '../lib/codec/bytes.js';
import type { ClientOptions, ServerOptions } from '../lib/config/options.js';
import type { ConnectionEvent } from '../lib/config/events.js';
import { nodeProvider } from '../lib/crypto/node.js';
import { nobleProvider } from '../lib/crypto/noble.js';
import type { SupportedSuiteName } from '../lib/suites.js';
import { importRecordKey, sealRecord, WebCryptoRecords } from '../lib/transport/webcrypto-records.js';
import { tlsClientOverStreams, tlsServerOverStreams } from '../lib/transport/streams.js';
import { nonceFor } from '../lib/connection/offload.js';
import { Deframer } from '../lib/record/deframer.js';
import { offloadPair, type OffloadEnd, type OffloadPair } from '../bench/offload-pair.js';
import { handshake, makePsk, seededRandom, withRandom } from './helpers/pair.js';

const joined = (chunks: readonly Uint8Array[]): Uint8Array => concat(...chunks);
const pattern = (n: number, seed: number): Uint8Array => seededRandom(seed)(n);
const count = (events: readonly ConnectionEvent[], type: ConnectionEvent['type'], direction?: string) =>
  events.filter((e) => e.type === type && (direction === undefined || (e as { direction?: string }).direction === direction)).length;
/** The length field of every record in `chunks` (the encrypted record's length: TLSInnerPlaintext + tag). */
function deframeSizes(chunks: readonly Uint8Array[]): number[] {
  const d = new Deframer();
  const sizes: number[] = [];
  for (const c of chunks) {
    d.push(c);
    for (let r = d.next(); r; r = d.next()) sizes.push(r.fragment.length);
  }
  return sizes;
}
const firstError = (end: OffloadEnd) => end.events.find((e): e is Extract<ConnectionEvent, { type: 'error' }> => e.type === 'error')?.error;

function options(suite: SupportedSuiteName, seed: number, extra: { keyUpdateAfterRecords?: number; recordPadding?: number } = {}): [ClientOptions, ServerOptions] {
  const hash = suite === 'TLS_AES_256_GCM_SHA384' ? 'SHA-384' : 'SHA-256';
  // The same key every time: the two runs compared must negotiate the same secrets.
  const psk = makePsk('offload', hash, seededRandom(0x5e)(hash === 'SHA-384' ? 48 : 32));
  return [
    { crypto: withRandom(nodeProvider, seededRandom(seed)), psks: [psk], suites: [suite], ...extra },
    { crypto: withRandom(nodeProvider, seededRandom(seed + 1)), psks: [psk], ...extra },
  ];
}

/** Both directions, several records in flight, KeyUpdates requested by each side, then close_notify both ways. */
async function conversation(p: OffloadPair): Promise<{ clientSent: Uint8Array; serverSent: Uint8Array; clientRecords: number; serverRecords: number }> {
  const fromClient = [pattern(40_000, 1), pattern(100, 2), pattern(70_000, 3), pattern(16_384, 4)];
  const fromServer = [pattern(50_000, 5), pattern(1, 6), pattern(100_000, 7)];
  await p.client.records.write(fromClient[0]);
  await p.client.records.write(fromClient[1]);
  p.client.conn.keyUpdate(true); // ours, asking the peer to update too (§4.6.3)
  p.client.records.flushCore();
  await p.client.records.write(fromClient[2]);
  // (When the server answers the request depends on timing; the comparison needs one order.)
  await p.settle();
  await p.server.records.write(fromServer[0]);
  await p.settle();
  await p.server.records.write(fromServer[1]);
  p.server.conn.keyUpdate(false); // the peer's, unrequested
  p.server.records.flushCore();
  await p.server.records.write(fromServer[2]);
  await p.client.records.write(fromClient[3]);
  await p.settle();
  await p.closeBoth();
  // Each write() is cut into records of at most 2^14 bytes.
  const records = (writes: Uint8Array[]): number => writes.reduce((n, w) => n + Math.ceil(w.length / 16_384), 0);
  return { clientSent: joined(fromClient), serverSent: joined(fromServer), clientRecords: records(fromClient), serverRecords: records(fromServer) };
}

for (const suite of ['TLS_AES_128_GCM_SHA256', 'TLS_AES_256_GCM_SHA384'] as const) {
  // (recordPadding 1000: every record padded, RFC 8446 §5.4, both sides; full records stay full.)
  for (const { keyUpdateAfterRecords, recordPadding } of [{}, { keyUpdateAfterRecords: 5 }, { recordPadding: 1000 }]) {
    const what = `${suite}${keyUpdateAfterRecords ? `, automatic KeyUpdate every ${keyUpdateAfterRecords} records` : ''}${recordPadding ? `, records padded to multiples of ${recordPadding} bytes` : ''}`;
    t.test(`offloaded records are byte-identical to the synchronous path (${what})`, async (t) => {
      const run = async (offload: boolean) => {
        const [c, s] = options(suite, 0x0ff1, { keyUpdateAfterRecords, recordPadding });
        const p = await offloadPair(c, s, { offload, recordsInFlight: 4, keepWire: true });
        const sent = await conversation(p);
        return { p, sent };
      };
      const off = await run(true);
      const sync = await run(false);
      for (const side of ['client', 'server'] as const) {
        const a = joined(off.p[side].wire);
        const b = joined(sync.p[side].wire);
        t.equal(a.length, b.length, `${side}: as many bytes on the wire`);
        t.ok(a.length > 100_000 || side === 'server', `${side}: a real amount of traffic (${a.length} bytes)`);
        t.equal(toHex(a), toHex(b), `${side}: every byte it sent is the same with and without the offload`);
        t.same(off.p[side].events.filter((e) => e.type === 'error'), [], `${side}: no error`);
        t.equal(off.p[side].conn.phase, 'closed', `${side}: closed cleanly (close_notify both ways)`);
        t.equal(count(off.p[side].events, 'key-update', 'write'), count(sync.p[side].events, 'key-update', 'write'), `${side}: the same write KeyUpdates`);
        t.equal(count(off.p[side].events, 'key-update', 'read'), count(sync.p[side].events, 'key-update', 'read'), `${side}: the same read KeyUpdates`);
        const written = side === 'client' ? off.sent.clientRecords : off.sent.serverRecords;
        t.equal(off.p[side].records.offloadedWrites, written, `${side}: all ${written} of its records sealed by WebCrypto, after each KeyUpdate too`);
        t.ok(off.p[side].records.offloadedReads > 0, `${side}: ${off.p[side].records.offloadedReads} records opened by WebCrypto`);
        t.equal(sync.p[side].records.offloadedWrites + sync.p[side].records.offloadedReads, 0, `${side}: offload:false offloads nothing`);
      }
      if (recordPadding) {
        // Every protected record either full or a multiple of the block (header and tag aside).
        const sizes = deframeSizes(off.p.client.wire).slice(2); // after the ClientHello and the ChangeCipherSpec
        const bad = sizes.filter((n) => n - 16 !== 16_385 && (n - 16) % recordPadding !== 0);
        t.same(bad, [], `client: all ${sizes.length} protected records padded (TLSInnerPlaintext a multiple of ${recordPadding} or full)`);
      }
      t.ok(off.p.client.records.peakRecordsInFlight >= 3, `several records in flight at once (${off.p.client.records.peakRecordsInFlight})`);
      t.equal(toHex(off.p.server.data()), toHex(off.sent.clientSent), 'the server read what the client wrote');
      t.equal(toHex(off.p.client.data()), toHex(off.sent.serverSent), 'the client read what the server wrote');
      // KeyUpdates: the client's, the server's answer to update_requested, the server's own; plus automatic ones.
      const clientWrites = count(off.p.client.events, 'key-update', 'write');
      const serverWrites = count(off.p.server.events, 'key-update', 'write');
      if (keyUpdateAfterRecords) {
        t.ok(clientWrites >= 2, `client: its KeyUpdate and automatic ones (${clientWrites})`);
        t.ok(serverWrites >= 3, `server: two KeyUpdates and automatic ones (${serverWrites})`);
      } else {
        t.equal(clientWrites, 1, 'client: one KeyUpdate');
        t.equal(serverWrites, 2, "server: the answer to the client's request and its own");
      }
      t.equal(count(off.p.server.events, 'key-update', 'read'), clientWrites, "the server followed each of the client's KeyUpdates");
      t.equal(count(off.p.client.events, 'key-update', 'read'), serverWrites, "the client followed each of the server's KeyUpdates");
    });
  }
}

t.test('ChaCha20-Poly1305 stays on the synchronous path (WebCrypto has no ChaCha20)', async (t) => {
  const [c, s] = options('TLS_CHACHA20_POLY1305_SHA256', 7);
  const p = await offloadPair(c, s, { recordsInFlight: 4 });
  const sent = await conversation(p);
  t.equal(toHex(p.server.data()), toHex(sent.clientSent));
  t.equal(toHex(p.client.data()), toHex(sent.serverSent));
  t.equal(p.client.records.offloadedWrites + p.server.records.offloadedReads, 0, 'nothing offloaded');
  t.equal(p.client.conn.phase, 'closed');
});

t.test('the lent key is wiped when the connection takes the direction back', async (t) => {
  const [c, s] = options('TLS_AES_128_GCM_SHA256', 9);
  const p = await offloadPair(c, s);
  const w = p.client.conn.offloadWrite()!;
  const r = p.server.conn.offloadRead()!;
  t.ok(w.active && r.active, 'both handles active');
  t.notOk(w.key.every((b) => b === 0), 'the lent write key is a key');
  const first = w.nextSequence;
  t.ok(w.reserve() && w.reserve(), 'two records reserved');
  p.client.conn.keyUpdate(false);
  t.notOk(w.active, 'a KeyUpdate revokes the write handle');
  t.ok(w.key.every((b) => b === 0), 'and wipes the lent key');
  t.equal(w.reserve(), null, 'a revoked handle reserves nothing');
  t.equal(w.nextSequence, first + 2, 'the sequence numbers the transport used are accounted for');
  const w2 = p.client.conn.offloadWrite()!;
  t.equal(w2.nextSequence, 0, 'the new key starts at sequence 0');
  t.not(toHex(w2.key), toHex(new Uint8Array(16)), 'with a new key');
  p.server.conn.destroy();
  t.notOk(r.active, 'destroy revokes the read handle');
  t.ok(r.key.every((b) => b === 0), 'and wipes its key');
});

t.test('keyUpdateAfterRecords is validated', async (t) => {
  const [c] = options('TLS_AES_128_GCM_SHA256', 3);
  const { Connection } = await import('../lib/connection/connection.js');
  t.throws(() => Connection.client({ ...c, keyUpdateAfterRecords: 0 }), /keyUpdateAfterRecords/);
  t.throws(() => Connection.client({ ...c, keyUpdateAfterRecords: 1.5 }), /keyUpdateAfterRecords/);
});

t.test('lent records carry their header and body as views of their bytes, views of what was received when it was handed over', async (t) => {
  const write = (p: ReturnType<typeof handshake>): Uint8Array => {
    p.client.write(new Uint8Array(40_000).fill(0x61)); // three records: 16 KiB, 16 KiB and the rest
    return p.client.takeOutput()!;
  };
  const p = handshake(...options('TLS_AES_128_GCM_SHA256', 13));
  const wire = write(p);
  const spans: [number, number][] = [];
  for (let at = 0; at < wire.length; at += spans[spans.length - 1][1]) spans.push([at, 5 + ((wire[at + 3] << 8) | wire[at + 4])]);
  t.equal(spans.length, 3, 'three records on the wire');
  type Lent = { bytes: Uint8Array; header: Uint8Array; body: Uint8Array };
  const check = (how: string, r: Lent, i: number, viewOf: Uint8Array | null): void => {
    const [at, length] = spans[i];
    t.equal(toHex(r.bytes), toHex(wire.subarray(at, at + length)), `${how}: record ${i}`);
    t.ok(r.header.buffer === r.bytes.buffer && r.header.byteOffset === r.bytes.byteOffset && r.header.length === 5, `${how}: record ${i}'s header is a view of its first 5 bytes`);
    t.ok(r.body.buffer === r.bytes.buffer && r.body.byteOffset === r.bytes.byteOffset + 5 && r.body.length === length - 5, `${how}: its body a view of the rest`);
    if (viewOf) t.ok(r.bytes.buffer === viewOf.buffer, `${how}: record ${i} is a view of the read it came in`);
  };
  // Handed over in two reads that split the second record: the others are views of the reads, the split one a copy.
  const reads = [wire.slice(0, spans[1][0] + 100), wire.slice(spans[1][0] + 100)];
  const lent = p.server.offloadRead()!;
  for (const read of reads) p.server.receiveOwned(read);
  const owned = lent.takeRecords();
  t.equal(owned.length, 3);
  check('owned', owned[0], 0, reads[0]);
  check('owned', owned[1], 1, null);
  t.ok(reads.every((b) => b.buffer !== owned[1].bytes.buffer), 'owned: the split record is a copy');
  check('owned', owned[2], 2, reads[1]);
  // Not handed over (receive): every record is a copy, with its views.
  const q = handshake(...options('TLS_AES_128_GCM_SHA256', 13));
  const lent2 = q.server.offloadRead()!;
  const again = write(q);
  q.server.receive(again);
  const copied = lent2.takeRecords();
  t.equal(copied.length, 3);
  copied.forEach((r, i) => {
    check('receive', r, i, null);
    t.not(r.bytes.buffer, again.buffer, `receive: record ${i} is a copy`);
  });
});

// ---- hostile records through the offload -------------------------------------------------------------------

/** Builds a protected record with the client's lent key: `inner` is the whole TLSInnerPlaintext. */
async function crafted(p: OffloadPair, inner: Uint8Array, tamper = false): Promise<Uint8Array> {
  const h = p.client.conn.offloadWrite()!;
  const key = await importRecordKey(h.key);
  const rec = await sealRecord(key, h.reserve()!, inner);
  if (tamper) rec[rec.length - 1] ^= 0x01;
  return rec;
}

const HOSTILE: { name: string; inner: () => Uint8Array; tamper?: boolean; reason: string; alert: number }[] = [
  { name: 'a bad tag', inner: () => Uint8Array.of(1, 2, 3, 23), tamper: true, reason: 'RecordBadMac', alert: 20 },
  { name: 'an unknown inner content type', inner: () => Uint8Array.of(1, 2, 3, 0x63), reason: 'RecordUnknownContentType', alert: 10 },
  { name: 'an all-zero plaintext', inner: () => new Uint8Array(12), reason: 'RecordAllZeroPlaintext', alert: 10 },
  {
    name: 'an oversize plaintext (2^14 + 2 bytes)',
    inner: () => {
      const b = new Uint8Array((1 << 14) + 2).fill(0x41);
      b[b.length - 1] = 23;
      return b;
    },
    reason: 'RecordOverflow',
    alert: 22,
  },
  { name: 'a protected change_cipher_spec', inner: () => Uint8Array.of(1, 20), reason: 'RecordBadChangeCipherSpec', alert: 10 },
];

for (const h of HOSTILE) {
  for (const offload of [true, false]) {
    t.test(`${h.name} after good data ends in ${h.reason} (${offload ? 'offloaded' : 'synchronous'} read)`, async (t) => {
      const [c, s] = options('TLS_AES_128_GCM_SHA256', 21);
      const p = await offloadPair(c, s, { offload, recordsInFlight: 4 });
      // Two good records and the hostile one arrive in one read, so they are opened at the same time.
      const good1 = await crafted(p, Uint8Array.of(0x68, 0x69, 23));
      const good2 = await crafted(p, Uint8Array.of(0x21, 23));
      const bad = await crafted(p, h.inner(), h.tamper);
      p.server.records.receive(joined([good1, good2, bad]));
      p.server.collect();
      await p.settle();
      t.equal(toHex(p.server.data()), '686921', 'the good data before it is delivered, in order');
      const err = firstError(p.server);
      t.equal(err?.reason, h.reason, `the server fails with ${h.reason}`);
      t.equal(err?.alertCode, h.alert, `and alert ${h.alert}`);
      t.equal(p.server.conn.phase, 'failed');
      const seen = firstError(p.client);
      t.equal(seen?.remote, true, 'the client receives the alert');
      t.equal(seen?.alertCode, h.alert, 'the same alert');
      if (offload) t.equal(p.server.records.offloadedReads, 2, 'the good records were opened by WebCrypto');
    });
  }
}

t.test('the offload works with the noble provider on the connection side too', async (t) => {
  const psk = makePsk('noble');
  const p = await offloadPair({ crypto: withRandom(nobleProvider, seededRandom(5)), psks: [psk] }, { crypto: nobleProvider, psks: [psk] });
  await p.client.records.write(pattern(100_000, 11));
  await p.settle();
  t.equal(toHex(p.server.data()), toHex(pattern(100_000, 11)));
  t.ok(p.client.records.offloadedWrites >= 7 && p.server.records.offloadedReads >= 7, 'offloaded');
});

t.test('a record returned without a key change keeps the lent read key (nothing derived or imported again)', async (t) => {
  const [c, s] = options('TLS_AES_128_GCM_SHA256', 31);
  const p = await offloadPair(c, s, { recordsInFlight: 4 });
  const before = p.server.conn.offloadRead()!;
  t.ok(before.active, 'the server lent its read key after the handshake');
  // An empty application_data record is not the offload's (the connection counts idle records), then data.
  p.server.records.receive(joined([await crafted(p, Uint8Array.of(23)), await crafted(p, Uint8Array.of(0x41, 23))]));
  await p.settle();
  t.equal(toHex(p.server.data()), '41', 'the data after it arrives');
  const after = p.server.conn.offloadRead()!;
  t.equal(after, before, 'the same handle is lent again');
  t.ok(after.active && !after.key.every((b) => b === 0), 'active, its key kept');
  t.equal(after.nextSequence, 2, 'continuing after the two records the connection opened itself');
  p.server.records.receive(await crafted(p, Uint8Array.of(0x42, 23)));
  await p.settle();
  t.equal(toHex(p.server.data()), '4142');
  t.equal(p.server.records.offloadedReads, 1, 'the next record is opened by WebCrypto with the kept key');
  // A KeyUpdate does replace it.
  p.client.conn.keyUpdate(false);
  p.client.records.flushCore();
  await p.settle();
  t.notOk(before.active, 'after a KeyUpdate the old read handle is revoked');
  t.ok(before.key.every((b) => b === 0), 'and its key wiped');
  t.not(p.server.conn.offloadRead(), before, 'a new handle is lent');
});

t.test("the peer's KeyUpdate in the middle of records opened at once: the records after it are opened under the new key", async (t) => {
  const [c, s] = options('TLS_AES_128_GCM_SHA256', 41);
  const p = await offloadPair(c, s, { recordsInFlight: 8 });
  // The server's records, made on its synchronous path and delivered to the client in one piece.
  const a = pattern(40_000, 42);
  const b = pattern(30_000, 43);
  p.server.conn.write(a);
  p.server.conn.keyUpdate(false);
  p.server.conn.write(b);
  const wire = p.server.conn.takeOutput()!;
  p.client.records.receive(wire);
  p.client.collect();
  await p.settle();
  t.equal(toHex(p.client.data()), toHex(joined([a, b])), 'every byte, in order');
  t.equal(count(p.client.events, 'key-update', 'read'), 1, 'the client followed the KeyUpdate');
  t.same(p.client.events.filter((e) => e.type === 'error'), [], 'no error');
  t.ok(p.client.records.offloadedReads >= 3, `the records before it were opened by WebCrypto (${p.client.records.offloadedReads})`);
  // Afterwards the offload has the new key.
  const before = p.client.records.offloadedReads;
  await p.server.records.write(pattern(20_000, 44));
  await p.settle();
  t.ok(p.client.records.offloadedReads > before, 'later records are opened by WebCrypto under the new key');
});

t.test('overlapping writes keep their order', async (t) => {
  const [c, s] = options('TLS_AES_128_GCM_SHA256', 61);
  const p = await offloadPair(c, s, { recordsInFlight: 2 });
  const parts = [pattern(70_000, 62), pattern(5, 63), pattern(50_000, 64)];
  await Promise.all(parts.map((d) => p.client.records.write(d)));
  await p.settle();
  t.equal(toHex(p.server.data()), toHex(joined(parts)), 'the data arrives in call order');
});

t.test('close() right after writes: close_notify follows every record in flight', async (t) => {
  const [c, s] = options('TLS_AES_128_GCM_SHA256', 51);
  const p = await offloadPair(c, s, { recordsInFlight: 8, keepWire: true });
  const data = pattern(200_000, 52);
  // write() resolves once there is room again, with records still being sealed: close() comes right then.
  await p.client.records.write(data.subarray(0, 100_000));
  await p.client.records.write(data.subarray(100_000));
  t.ok(!p.client.records.idle, 'records are still in flight when close() is called');
  p.client.conn.close();
  p.client.records.flushCore();
  await p.settle();
  t.equal(toHex(p.server.data()), toHex(data), 'the server read everything');
  t.same(p.server.events.map((e) => e.type), ['handshake', 'end'], 'then the end of the stream, and no error');
  t.equal(p.client.records.offloadedWrites, 14, 'all 14 records sealed by WebCrypto');
});

t.test('a sink that does not take what it is given holds back the writer, and nothing is lost when it resumes', async (t) => {
  const [c, s] = options('TLS_AES_128_GCM_SHA256', 71);
  const p = await offloadPair(c, s);
  // A second pipeline on the client's connection, whose sink settles nothing until released.
  const held: { bytes: Uint8Array; release: () => void }[] = [];
  const stalled = new WebCryptoRecords(p.client.conn, {
    send: (bytes) => new Promise<void>((release) => held.push({ bytes, release })),
    deliver: () => {},
    afterCore: () => {},
    recordsInFlight: 2,
  });
  const data = pattern(40 * 16_384, 72);
  let written = false;
  const writing = stalled.write(data).then(() => (written = true));
  // (However slowly WebCrypto answers on a loaded machine: bounded by tap's timeout, and by 10 s here.)
  for (let i = 0; i < 2000 && held.length < 2; i++) await new Promise((r) => setTimeout(r, 5));
  await new Promise((r) => setTimeout(r, 20));
  t.equal(held.length, 2, 'at most recordsInFlight (2) writes are handed to the sink unsettled');
  t.notOk(written, 'write() waits while the sink takes nothing');
  // Bound: the unsettled writes (each up to four full records) plus the rest of three times recordsInFlight.
  t.ok(stalled.offloadedWrites <= 2 * 4 + 3 * 2, `the records sealed ahead are bounded (${stalled.offloadedWrites} of 40)`);
  // Release the sink, feeding what it was given to the server, until everything went through (bounded).
  for (let rounds = 0; !(written && stalled.idle) && rounds < 2000; rounds++) {
    const next = held.shift();
    if (next) {
      p.server.records.receive(next.bytes, true);
      p.server.collect();
      next.release();
    }
    await new Promise((r) => setTimeout(r, next ? 0 : 2));
  }
  await writing;
  await p.server.records.readDrained();
  t.equal(toHex(p.server.data()), toHex(data), 'the server read every byte, in order');
  t.equal(stalled.offloadedWrites, 40, 'all 40 records sealed by WebCrypto');
});

t.test('four records written at once leave as one write, headers beside them, the first body 64 bytes into its allocation', async (t) => {
  const [c, s] = options('TLS_AES_128_GCM_SHA256', 81);
  const p = await offloadPair(c, s, { keepWire: true });
  const data = pattern(4 * 16_384, 82);
  await p.client.records.write(data);
  await p.settle();
  t.equal(toHex(p.server.data()), toHex(data), 'the server read it');
  // The four records are sealed together: however WebCrypto orders its answers, they leave as one write.
  const sealedWrites = p.client.wire.filter((w) => w.length >= 5 + 16_384 + 1 + 16);
  t.same(
    sealedWrites.map((w) => w.length),
    [4 * (5 + 16_384 + 1 + 16)],
    `one write of four records (writes of ${p.client.wire.map((w) => w.length).join(', ')} bytes)`,
  );
  for (const w of sealedWrites) {
    // (4K aliasing: see sendReady; the wire bytes themselves are checked by the byte-identical tests above.)
    t.equal(w.byteOffset, 64 - 5, 'the write starts 59 bytes into its buffer, so its first body starts at 64');
    for (let at = 0; at < w.length; ) {
      const length = (w[at + 3] << 8) | w[at + 4];
      t.same([...w.subarray(at, at + 3)], [23, 3, 3], `a record header at ${at}`);
      at += 5 + length;
      if (at > w.length) t.fail('a record runs past the end of its write');
    }
  }
});

t.test('records of separate writes do not wait for each other: a small write leaves while the next is sealed', async (t) => {
  const [c, s] = options('TLS_AES_128_GCM_SHA256', 85);
  const p = await offloadPair(c, s, { keepWire: true });
  // WebCrypto answers only when released here, in any order.
  const held: (() => void)[] = [];
  const subtle = globalThis.crypto.subtle;
  const encrypt = subtle.encrypt.bind(subtle);
  Object.defineProperty(subtle, 'encrypt', {
    configurable: true,
    writable: true,
    value: (...args: Parameters<typeof encrypt>) => {
      const sealed = encrypt(...args);
      return new Promise<ArrayBuffer>((resolve, reject) => held.push(() => void sealed.then(resolve, reject)));
    },
  });
  t.teardown(() => void delete (subtle as unknown as Record<string, unknown>).encrypt);
  const wireBefore = p.client.wire.length;
  await p.client.records.write(pattern(100, 86));
  await p.client.records.write(pattern(100, 87));
  t.equal(held.length, 2, 'both records are with WebCrypto');
  held[0]();
  // Until the first record is on the wire. WebCrypto answers from a thread pool, late on a busy machine (a 300 ms
  // delay failed the 200 ms this waited before); the second record stays held until released below, so a write that
  // waited for it would never get there: the bound is only a safety net, hence generous.
  for (const until = Date.now() + 10_000; p.client.wire.length === wireBefore && Date.now() < until; ) await new Promise((r) => setTimeout(r, 1));
  t.same(
    p.client.wire.slice(wireBefore).map((w) => w.length),
    [5 + 100 + 1 + 16],
    'the first write left alone, without waiting for the second one still being sealed',
  );
  held[1]();
  await p.settle();
  t.equal(toHex(p.server.data()), toHex(joined([pattern(100, 86), pattern(100, 87)])), 'the server read both, in order');
});

t.test('nonces come from a copy of the IV even when the provider hands out Node Buffers (whose slice() is a view)', async (t) => {
  const iv = Buffer.alloc(12, 0xa0);
  const nonces = [0, 1, 2, 3, 0x1_0000_0001].map((seq) => toHex(nonceFor(iv, seq)));
  t.same(nonces, ['a0'.repeat(12), 'a0'.repeat(11) + 'a1', 'a0'.repeat(11) + 'a2', 'a0'.repeat(11) + 'a3', 'a0'.repeat(4) + 'a0a0a0a1a0a0a0a1'], 'IV XOR the sequence number (RFC 8446 §5.3)');
  t.equal(toHex(iv), 'a0'.repeat(12), 'the IV itself is unchanged');
  // Through a connection whose provider's HKDF returns Buffers (as createHmac().digest() does).
  const bufferProvider = { ...nobleProvider, hkdfExpand: (...a: Parameters<typeof nobleProvider.hkdfExpand>) => Buffer.from(nobleProvider.hkdfExpand(...a)) };
  const psk = makePsk('offload-buffer', 'SHA-256');
  const p = handshake({ crypto: bufferProvider, psks: [psk], suites: ['TLS_AES_128_GCM_SHA256'] }, { crypto: nobleProvider, psks: [psk] });
  const h = p.client.offloadWrite()!;
  const seen = new Set<string>();
  for (let i = 0; i < 16; i++) seen.add(toHex(h.reserve()!));
  t.equal(seen.size, 16, 'sixteen records, sixteen different nonces');
});

t.test('a sink that throws instead of rejecting: write() and drained() reject, nothing is sent after it', async (t) => {
  const [c, s] = options('TLS_AES_128_GCM_SHA256', 91);
  const p = await offloadPair(c, s);
  let calls = 0;
  const records = new WebCryptoRecords(p.client.conn, {
    send: () => {
      if (++calls === 2) throw new Error('sink threw synchronously');
      return Promise.resolve();
    },
    deliver: () => {},
    afterCore: () => {},
    recordsInFlight: 2,
  });
  await t.rejects(records.write(pattern(10 * 16_384, 92)), /sink threw synchronously/, 'write() rejects');
  await t.rejects(records.drained(), /sink threw synchronously/, 'drained() rejects');
  await new Promise((r) => setTimeout(r, 20));
  t.equal(calls, 2, 'nothing more was handed to the sink after it threw');
});

t.test('the application cancels its readable while records are being opened: no crash, nothing delivered after', async (t) => {
  const psk = makePsk('offload-cancel', 'SHA-256');
  const c2s = new TransformStream<Uint8Array, Uint8Array>(undefined, { highWaterMark: 16 }, { highWaterMark: 16 });
  const s2c = new TransformStream<Uint8Array, Uint8Array>();
  const common = { crypto: nobleProvider, psks: [psk], suites: ['TLS_AES_128_GCM_SHA256'] as const, offload: true, recordsInFlight: 8 };
  const client = tlsClientOverStreams({ readable: s2c.readable, writable: c2s.writable }, { ...common, suites: ['TLS_AES_128_GCM_SHA256'] });
  const server = tlsServerOverStreams({ readable: c2s.readable, writable: s2c.writable }, common);
  await Promise.all([client.handshake, server.handshake]);
  const w = client.writable.getWriter();
  void w.write(new Uint8Array(64 * 16_384)).catch(() => {});
  const r = server.readable.getReader();
  const first = await r.read();
  t.equal(first.value?.length, 16_384, 'a first record read');
  // Records after it are being opened right now; their plaintext has nowhere to go once the stream is cancelled.
  await r.cancel('done reading');
  await new Promise((res) => setTimeout(res, 200));
  t.pass('no exception escaped (an unhandled rejection would fail this file)');
});
