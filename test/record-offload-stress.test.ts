/**
 * The record offload (lib/transport/webcrypto-records.ts) under random timing, seeded: WebCrypto's answers out of
 * order (random delays, seals and opens), a sink that keeps order but delays at random, writes of many sizes, KeyUpdates (ours,
 * requested, automatic), the server writing meanwhile, and close_notify — every byte arrives, in order, and the
 * pipeline never stalls, with 1, 2, 3 and 8 records in flight. STRESS_SEEDS=N runs N seeds (default 12).
 */
import t from 'tap';
import { concat, toHex } from '../lib/codec/bytes.js';
import { nodeProvider } from '../lib/crypto/node.js';
import { Connection } from '../lib/connection/connection.js';
import { WebCryptoRecords } from '../lib/transport/webcrypto-records.js';
import { makePsk, seededRandom, withRandom } from './helpers/pair.js';

type Call = (...args: unknown[]) => Promise<unknown>;


function stubEncrypt(t: { teardown(f: () => void): void }, delay: () => number, method: 'encrypt' | 'decrypt' = 'encrypt'): void {
  const subtle = globalThis.crypto.subtle;
  const original = (subtle[method] as unknown as Call).bind(subtle);
  Object.defineProperty(subtle, method, {
    configurable: true,
    writable: true,
    value: (...args: unknown[]) => {
      const p = original(...args);
      const d = delay();
      return d < 0 ? p : p.then((v) => new Promise((r) => setTimeout(() => r(v), d)));
    },
  });
  t.teardown(() => void delete (subtle as unknown as Record<string, unknown>)[method]);
}

class End {
  records!: WebCryptoRecords;
  received: Uint8Array[] = [];
  errors: unknown[] = [];
  peer!: End;
  sinkTail: Promise<void> = Promise.resolve();
  constructor(
    readonly conn: Connection,
    rand: () => number,
    recordsInFlight: number,
  ) {
    this.records = new WebCryptoRecords(conn, {
      // In order, as a WritableStream's writer: each call after the previous one, with a random delay.
      send: (bytes) => {
        const d = Math.floor(rand() * 4);
        this.sinkTail = this.sinkTail.then(async () => {
          if (d > 0) await new Promise((r) => setTimeout(r, d - 1));
          else await null;
          this.peer.records.receive(bytes, true);
          this.peer.collect();
        });
        return this.sinkTail;
      },
      deliver: (d) => this.received.push(d),
      afterCore: () => this.collect(),
      recordsInFlight,
    });
  }
  collect(): void {
    for (const ev of this.conn.takeEvents()) {
      if (ev.type === 'data') this.received.push(ev.data);
      if (ev.type === 'error') this.errors.push(ev.error);
    }
  }
}

for (let seed = 1; seed <= Number(process.env.STRESS_SEEDS ?? 12); seed++) {
  t.test(`random WebCrypto and sink timing, seed ${seed}`, async (t) => {
    const r = seededRandom(seed * 7919);
    const rand = (): number => r(1)[0] / 256;
    stubEncrypt(t, () => (rand() < 0.3 ? -1 : Math.floor(rand() * 3)));
    // Opens answered out of order too (delivered in order all the same, recordsInFlight at a time).
    stubEncrypt(t, () => (rand() < 0.3 ? -1 : Math.floor(rand() * 3)), 'decrypt');
    const psk = makePsk('stress', 'SHA-256', seededRandom(0x5e)(32));
    const rif = [1, 2, 3, 8][seed % 4];
    const auto = seed % 3 === 0 ? 7 : undefined;
    const c = new End(Connection.client({ crypto: withRandom(nodeProvider, seededRandom(seed)), psks: [psk], suites: ['TLS_AES_128_GCM_SHA256'], keyUpdateAfterRecords: auto }), rand, rif);
    const s = new End(Connection.server({ crypto: withRandom(nodeProvider, seededRandom(seed + 1000)), psks: [psk], keyUpdateAfterRecords: auto }), rand, rif);
    c.peer = s;
    s.peer = c;
    const settle = async (): Promise<void> => {
      for (let round = 0; round < 3000; round++) {
        await c.records.drained().catch(() => {});
        await s.records.drained().catch(() => {});
        await c.records.readDrained();
        await s.records.readDrained();
        await new Promise((res) => setTimeout(res, 1));
        if (c.records.idle && s.records.idle) return;
      }
      throw new Error('did not settle');
    };
    c.records.flushCore();
    await settle();
    t.equal(c.conn.phase, 'connected');
    const sent: Uint8Array[] = [];
    const writes: Promise<void>[] = [];
    const sentBack: Uint8Array[] = [];
    for (let i = 0; i < 40; i++) {
      const sizes = [1, 100, 5000, 16_384, 16_385, 40_000, 65_536, 70_000];
      const d = seededRandom(seed * 100 + i)(sizes[Math.floor(rand() * sizes.length)]);
      sent.push(d);
      const w = c.records.write(d);
      writes.push(w);
      const x = rand();
      if (x < 0.08) {
        c.conn.keyUpdate(x < 0.04);
        c.records.flushCore();
      } else if (x < 0.5) await w;
      // the server writes a little too (its KeyUpdate answers interleave)
      if (rand() < 0.2) {
        const back = seededRandom(i)(300);
        sentBack.push(back);
        writes.push(s.records.write(back));
      }
    }
    await Promise.all(writes);
    c.conn.close();
    c.records.flushCore();
    await settle();
    t.same(c.errors, [], 'client: no error');
    t.same(s.errors, [], 'server: no error');
    t.equal(toHex(concat(...s.received)), toHex(concat(...sent)), `the server read every byte in order (recordsInFlight ${rif}, auto KeyUpdate ${auto})`);
    t.equal(toHex(concat(...c.received)), toHex(concat(...sentBack)), 'and the client read what the server wrote, in order');
    t.ok(c.records.offloadedWrites > 0);
  });
}
