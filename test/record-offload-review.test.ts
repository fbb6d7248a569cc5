/**
 * The record offload (lib/transport/webcrypto-records.ts) with a WebCrypto that misbehaves — methods that throw
 * instead of answering with a rejected promise (a polyfill, a runtime that breaks WebIDL's promise rule) — and the
 * key material it holds once the connection took its keys back (RFC 8446 §5.3: a nonce is used once; the keys are
 * the connection's to wipe and the transport's to drop).
 */
import t from 'tap';
import { concat, toHex } from '../lib/codec/bytes.js';
import { nodeProvider } from '../lib/crypto/node.js';
import type { ConnectionEvent } from '../lib/config/events.js';
import { offloadPair } from '../bench/offload-pair.js';
import { makePsk, seededRandom, withRandom } from './helpers/pair.js';

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
