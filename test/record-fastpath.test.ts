/**
 * The bulk fast paths added for the benchmarks give exactly the bytes of the simple paths they replace:
 * Aead.sealInto against Aead.seal (every provider and AEAD, plaintext in any number of parts), the noble
 * provider's own AES-GCM (lib/crypto/gcm.ts: cached key schedule and GHASH table) against node:crypto and
 * @noble/ciphers' gcm, RecordProtection.sealInto against seal, Connection.writev filling records across chunk
 * boundaries, the deframer handing out records that lie within one received chunk without copying them, and
 * Connection.receiveOwned (the pending tail of a read kept as a view, not copied) against receive.
 */
import t from 'tap';
import fc from 'fast-check';
import { createCipheriv } from 'node:crypto';
import { gcm } from '@noble/ciphers/aes.js';
import { concat, toHex } from '../lib/codec/bytes.js';
import { ContentType } from '../lib/codec/enums.js';
import { Connection } from '../lib/connection/connection.js';
import { AesGcmKey } from '../lib/crypto/gcm.js';
import { createNobleProvider } from '../lib/crypto/noble.js';
import { createNodeProvider } from '../lib/crypto/node.js';
import type { AeadName, CryptoProvider } from '../lib/crypto/provider.js';
import { Deframer, MAX_RETAINED_CHUNKS } from '../lib/record/deframer.js';
import { RecordProtection } from '../lib/record/protection.js';
import { SUITES } from '../lib/suites.js';
import type { Psk } from '../lib/psk/types.js';

const PROVIDERS: CryptoProvider[] = [createNobleProvider(), createNodeProvider()];
const AEADS: readonly AeadName[] = ['AES-128-GCM', 'AES-256-GCM', 'CHACHA20-POLY1305'];
const hex = toHex;

/** Deterministic bytes (a simple LCG: the tests must replay exactly). */
function bytes(seed: number, n: number): Uint8Array {
  const out = new Uint8Array(n);
  let x = (seed * 2654435761) >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    x = (Math.imul(x, 1664525) + 1013904223) >>> 0;
    out[i] = x >>> 24;
  }
  return out;
}

/** Cuts `data` at the given points into parts (some possibly empty). */
function split(data: Uint8Array, cuts: number[]): Uint8Array[] {
  const points = [0, ...cuts.map((c) => Math.min(c, data.length)).sort((a, b) => a - b), data.length];
  return points.slice(1).map((end, i) => data.subarray(points[i], end));
}

t.test('Aead.sealInto writes exactly what seal returns, for any split of the plaintext', async (t) => {
  for (const p of PROVIDERS) {
    for (const name of AEADS) {
      const keyLength = name === 'AES-128-GCM' ? 16 : 32;
      fc.assert(
        fc.property(
          fc.integer({ min: 0, max: 3000 }),
          fc.array(fc.integer({ min: 0, max: 3000 }), { maxLength: 4 }),
          fc.integer({ min: 0, max: 7 }),
          fc.integer({ min: 1, max: 1_000_000 }),
          (length, cuts, offset, seed) => {
            const aead = p.aead(name, bytes(seed, keyLength));
            const nonce = bytes(seed + 1, 12);
            const aad = bytes(seed + 2, seed % 13);
            const plaintext = bytes(seed + 3, length);
            const expected = aead.seal(nonce, aad, plaintext);
            const out = new Uint8Array(offset + length + 16 + 3).fill(0xee);
            const written = aead.sealInto!(nonce, aad, split(plaintext, cuts), out, offset);
            const ok =
              written === length + 16 &&
              hex(out.subarray(offset, offset + written)) === hex(expected) &&
              out.subarray(0, offset).every((b) => b === 0xee) &&
              out.subarray(offset + written).every((b) => b === 0xee);
            aead.destroy();
            return ok;
          },
        ),
        { numRuns: 60, seed: 1234 },
      );
      t.pass(`${p.name} ${name}: sealInto == seal, nothing written outside its range`);
    }
  }
  const aead = PROVIDERS[0].aead('AES-128-GCM', new Uint8Array(16));
  t.throws(() => aead.sealInto!(new Uint8Array(12), new Uint8Array(0), [new Uint8Array(10)], new Uint8Array(25), 0), RangeError, 'too little room is refused');
});

t.test('the noble provider AES-GCM equals node:crypto and @noble/ciphers gcm, and refuses any changed byte', async (t) => {
  let cases = 0;
  for (let i = 0; i < 300; i++) {
    const keyLength = i % 2 ? 16 : 32;
    const key = bytes(i, keyLength);
    const nonce = bytes(i + 7, 12);
    const aad = bytes(i + 11, i % 29);
    const plaintext = bytes(i + 13, (i * 7919) % 2100);
    const c = createCipheriv(keyLength === 16 ? 'aes-128-gcm' : 'aes-256-gcm', key, nonce);
    c.setAAD(aad);
    const reference = concat(c.update(plaintext), c.final(), c.getAuthTag());
    const k = new AesGcmKey(key);
    const sealed = k.seal(nonce, aad, plaintext);
    if (hex(sealed) !== hex(reference)) t.fail(`case ${i}: differs from node:crypto`);
    if (hex(sealed) !== hex(gcm(key, nonce, aad).encrypt(plaintext))) t.fail(`case ${i}: differs from @noble/ciphers gcm`);
    if (hex(k.open(nonce, aad, sealed) ?? Uint8Array.of(1)) !== hex(plaintext)) t.fail(`case ${i}: does not open`);
    const tampered = sealed.slice();
    tampered[(i * 31) % tampered.length] ^= 1 << i % 8;
    if (k.open(nonce, aad, tampered) !== null) t.fail(`case ${i}: a changed byte was accepted`);
    if (aad.length > 0) {
      const otherAad = aad.slice();
      otherAad[0] ^= 0x80;
      if (k.open(nonce, otherAad, sealed) !== null) t.fail(`case ${i}: a changed AAD was accepted`);
    }
    k.destroy();
    cases++;
  }
  t.equal(cases, 300, '300 random keys, nonces, AADs and lengths 0..2099');
  const k = new AesGcmKey(new Uint8Array(16));
  k.destroy();
  t.throws(() => k.seal(new Uint8Array(12), new Uint8Array(0), new Uint8Array(1)), TypeError, 'a destroyed key refuses to seal');
  t.equal(new AesGcmKey(new Uint8Array(16)).open(new Uint8Array(12), new Uint8Array(0), new Uint8Array(15)), null, 'shorter than a tag: null');
});

t.test('RecordProtection.sealInto equals seal and opens on the other provider', async (t) => {
  for (const suite of Object.values(SUITES)) {
    for (const p of PROVIDERS) {
      const key = bytes(suite.id, suite.keyLength);
      const iv = bytes(suite.id + 1, suite.ivLength);
      const a = new RecordProtection(p, suite, key, iv);
      const b = new RecordProtection(p, suite, key, iv);
      const reader = new RecordProtection(PROVIDERS.find((q) => q !== p)!, suite, key, iv);
      for (const [length, padding] of [[0, 3], [1, 0], [100, 0], [16384, 0], [16000, 384], [5000, 0]]) {
        const content = bytes(length + padding, length);
        const sealed = a.seal(ContentType.application_data, content, padding);
        const out = new Uint8Array(sealed.length + 9);
        const n = b.sealInto(ContentType.application_data, split(content, [length >> 2, length >> 1]), out, 4, padding);
        t.equal(n, sealed.length, `${suite.name} ${p.name}: ${length}+${padding} record length`);
        t.equal(hex(out.subarray(4, 4 + n)), hex(sealed), `${suite.name} ${p.name}: ${length}+${padding} same record`);
        const d = new Deframer();
        d.push(sealed);
        const opened = reader.open(d.next()!);
        t.equal(hex(opened.content), hex(content), `${suite.name}: ${length}+${padding} opens across providers`);
      }
      t.throws(() => b.sealInto(ContentType.application_data, [new Uint8Array(16385)], new Uint8Array(20000), 0), RangeError, 'over 2^14 + 1 inner bytes');
      t.throws(() => b.sealInto(ContentType.application_data, [new Uint8Array(10)], new Uint8Array(20), 0), RangeError, 'too little room');
    }
  }
});

const psk: Psk = { identity: new TextEncoder().encode('fastpath'), secret: bytes(99, 32), hash: 'SHA-256' };

function connectedPair(crypto: CryptoProvider): { client: Connection; server: Connection } {
  const client = Connection.client({ crypto, psks: [psk] });
  const server = Connection.server({ crypto, psks: [psk] });
  for (let i = 0; i < 8; i++) {
    const c = client.takeOutput();
    if (c) server.receive(c);
    const s = server.takeOutput();
    if (s) client.receive(s);
  }
  client.takeEvents();
  server.takeEvents();
  return { client, server };
}

t.test('Connection.writev fills 16 KiB records across chunk boundaries, in one output buffer', async (t) => {
  for (const crypto of PROVIDERS) {
    const { client, server } = connectedPair(crypto);
    t.equal(client.phase, 'connected');
    const sizes = [1, 16383, 2, 40000, 0, 7, 16384];
    const chunks = sizes.map((n, i) => bytes(1000 + i, n));
    const all = concat(...chunks);
    client.writev(chunks);
    const out = client.takeOutputChunks();
    t.equal(out.length, 1, `${crypto.name}: one buffer for the whole write`);
    const d = new Deframer();
    d.push(out[0]);
    const lengths: number[] = [];
    for (let r = d.next(); r; r = d.next()) lengths.push(r.fragment.length - 17);
    const full = Math.floor(all.length / 16384);
    t.same(lengths, [...Array(full).fill(16384), all.length - full * 16384], `${crypto.name}: full records, then the rest`);
    server.receive(out[0]);
    const got = server.takeEvents().flatMap((e) => (e.type === 'data' ? [e.data] : []));
    t.equal(hex(concat(...got)), hex(all), `${crypto.name}: the peer receives the bytes in order`);
    client.writev([]);
    t.equal(client.hasOutput, false, 'an empty write sends nothing');
  }
});

t.test('Connection.writev before the handshake completes is queued and sent after it', async (t) => {
  const crypto = PROVIDERS[1];
  const client = Connection.client({ crypto, psks: [psk] });
  const server = Connection.server({ crypto, psks: [psk] });
  const chunks = [bytes(1, 10), bytes(2, 20000)];
  client.writev(chunks);
  chunks[0].fill(0); // the queued copy must not change with the caller's buffer
  let received: Uint8Array = new Uint8Array(0);
  for (let i = 0; i < 8; i++) {
    const c = client.takeOutput();
    if (c) server.receive(c);
    const s = server.takeOutput();
    if (s) client.receive(s);
    for (const e of server.takeEvents()) if (e.type === 'data') received = concat(received, e.data);
  }
  t.equal(hex(received), hex(concat(bytes(1, 10), bytes(2, 20000))));
});

t.test('the deframer returns records within one chunk as views and copies only a record that straddles chunks', async (t) => {
  const writer = new RecordProtection(PROVIDERS[1], SUITES.TLS_AES_128_GCM_SHA256, bytes(5, 16), bytes(6, 12));
  const records = [100, 16384, 3].map((n, i) => writer.seal(ContentType.application_data, bytes(i, n)));
  const stream = concat(...records);
  const cut = records[0].length + 1000; // inside the second record
  const first = stream.slice(0, cut);
  const second = stream.slice(cut);
  const d = new Deframer();
  d.push(first);
  const r0 = d.next()!;
  t.equal(r0.fragment.buffer, first.buffer, 'a record inside the chunk is a view of it');
  t.equal(d.next(), null, 'the straddling record waits for more bytes');
  d.push(second);
  const r1 = d.next()!;
  t.not(r1.fragment.buffer, first.buffer, 'the straddling record is a copy');
  t.equal(hex(concat(r1.header, r1.fragment)), hex(records[1]));
  const r2 = d.next()!;
  t.equal(r2.fragment.buffer, second.buffer, 'the record after it is a view again');
  t.equal(hex(concat(r2.header, r2.fragment)), hex(records[2]));
  t.equal(d.buffered, 0);
  // A header split across three chunks.
  const e = new Deframer();
  e.push(records[2].subarray(0, 1));
  e.push(records[2].subarray(1, 3));
  t.equal(e.next(), null);
  e.push(records[2].subarray(3));
  t.equal(hex(concat(e.next()!.header)), hex(records[2].subarray(0, 5)), 'a header split over three chunks');
});

t.test('retainViews keeps the pending tail of a chunk as a view; detach copies it', async (t) => {
  const writer = new RecordProtection(PROVIDERS[1], SUITES.TLS_AES_128_GCM_SHA256, bytes(7, 16), bytes(8, 12));
  const records = [50, 2000].map((n, i) => writer.seal(ContentType.application_data, bytes(20 + i, n)));
  const cut = records[0].length + 700; // inside the second record
  for (const keep of [true, false]) {
    const first = concat(...records).slice(0, cut);
    const second = concat(...records).slice(cut);
    const d = new Deframer();
    d.push(first);
    t.ok(d.next(), 'the first record');
    t.equal(d.next(), null);
    if (keep) d.retainViews();
    else d.detach();
    t.equal(d.pendingChunks, 1);
    first.fill(0xee, records[0].length + 5); // the pending body; only a caller that did not hand the chunk over may do this
    d.push(second);
    const r = d.next()!;
    const intact = hex(concat(r.header, r.fragment)) === hex(records[1]);
    if (keep) t.notOk(intact, 'retainViews: the pending bytes are still the chunk itself (no copy was made)');
    else t.ok(intact, 'detach: the pending bytes were copied before the call returned');
  }
});

t.test('retainViews joins the chunks of a peer that trickles its bytes', async (t) => {
  const writer = new RecordProtection(PROVIDERS[1], SUITES.TLS_AES_128_GCM_SHA256, bytes(9, 16), bytes(10, 12));
  const record = writer.seal(ContentType.application_data, bytes(30, 3000));
  const d = new Deframer();
  let most = 0;
  let got = null;
  for (let i = 0; i < record.length && !got; i++) {
    d.push(record.slice(i, i + 1));
    got = d.next();
    d.retainViews();
    most = Math.max(most, d.pendingChunks);
  }
  t.ok(got, 'the record comes out once its last byte arrives');
  t.equal(hex(concat(got!.header, got!.fragment)), hex(record), 'intact');
  t.ok(most <= MAX_RETAINED_CHUNKS && most > 1, `views kept, but never more than ${MAX_RETAINED_CHUNKS} chunks pending (saw ${most})`);
});

/** What `server` delivers when `wire` arrives in reads cut at `cuts`, each read a fresh buffer (as net.Socket gives). */
function receivedFrom(server: Connection, wire: Uint8Array, cuts: number[], owned: boolean): string {
  for (const part of split(wire, cuts)) {
    const read = part.slice();
    if (owned) server.receiveOwned(read);
    else server.receive(read);
  }
  const events = server.takeEvents();
  const failed = events.find((e) => e.type === 'error');
  if (failed) throw new Error(`receive failed: ${failed.error.message}`);
  if (!events.some((e) => e.type === 'end')) throw new Error('the close_notify did not arrive');
  return hex(concat(...events.flatMap((e) => (e.type === 'data' ? [e.data] : []))));
}

t.test('Connection.receiveOwned delivers exactly what receive does, for any split of the stream into reads', async (t) => {
  const payload = bytes(77, 70000); // four full records and a short one, then close_notify
  let runs = 0;
  fc.assert(
    fc.property(fc.constantFrom(...PROVIDERS), fc.array(fc.integer({ min: 0, max: 70200 }), { maxLength: 12 }), (crypto, cuts) => {
      const results = [true, false].map((owned) => {
        const { client, server } = connectedPair(crypto);
        client.write(payload);
        client.close();
        return receivedFrom(server, concat(...client.takeOutputChunks()), cuts, owned);
      });
      runs++;
      return results[0] === hex(payload) && results[1] === hex(payload);
    }),
    { numRuns: 40 },
  );
  t.equal(runs, 40, 'every split delivered the payload, in order, through both');
});
