/**
 * PSK sources: the static and file sources (priority, count, one-time use, expiry, copies), the glue that
 * turns keys into PSKs (takePsks, serverPskResolver, with and without the importer), the key-ID identity, and
 * the ETSI GS QKD 014 sources — against stub key managers for the exact behaviour (pool, expiry, wiping,
 * failures, aborts, replay cache) and against the simulator for the real exchange. All on 127.0.0.1.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { fromUtf8, toHex, utf8 } from '../lib/codec/bytes.js';
import { nodeProvider } from '../lib/crypto/node.js';
import { Etsi014Client, Etsi014Error, type Etsi014Key } from '../lib/qkd/etsi014-client.js';
import { Etsi014ClientSource, Etsi014ServerSource, releaseAfter, type Etsi014SourceEvent } from '../lib/qkd/etsi014-source.js';
import { fileKeySource } from '../lib/qkd/file-source.js';
import { decodeImportedIdentity, encodeImportedIdentity, importPsk } from '../lib/psk/importer.js';
import { parseKeyFile } from '../lib/psk/key-file.js';
import { decodeKeyIdIdentity, encodeKeyIdIdentity } from '../lib/psk/key-id.js';
import * as browser from '../lib/browser.js';
import * as qkd from '../lib/qkd/index.js';
import { startKmeSimulator } from '../lib/tools/kme/simulator.js';
import { stubKme } from './helpers/kme-stub.js';
import { withTimeout } from './helpers/peers.js';
import { serverPskResolver, StaticKeySource, takePsks, type PskLease, type ServerKeySource, type SourcedKey } from '../lib/psk/source.js';

const crypto = nodeProvider;
const zero = (b: Uint8Array) => b.every((x) => x === 0);
const key = (id: string, fill: number, extra: Partial<SourcedKey> = {}): SourcedKey => ({
  identity: utf8(id),
  secret: new Uint8Array(32).fill(fill),
  label: id,
  ...extra,
});
const labels = (keys: readonly (SourcedKey | undefined)[]) => keys.map((k) => k?.label);
const UUID = (n: number) => `00000000-0000-4000-8000-${n.toString(16).padStart(12, '0')}`;

t.test('StaticKeySource: priority, count, copies', async (t) => {
  const src = new StaticKeySource([key('c', 3, { priority: 2 }), key('a', 1), key('b', 2, { priority: 1 }), key('a2', 4)]);
  t.same(labels(await src.take()), ['a'], 'one key by default, the best priority');
  t.same(labels(await src.take({ count: 3 })), ['a', 'a2', 'b'], 'lower priority first, given order among equals');
  const [k] = await src.take();
  k.secret.fill(0);
  t.notOk(zero((await src.take())[0].secret), 'the source hands out copies');
  t.same(labels(await src.resolve([utf8('b'), utf8('zz')])), ['b', undefined], 'a server resolves by identity');
  await t.rejects(src.take({ count: 0 }), RangeError);
  t.throws(() => new StaticKeySource([]), TypeError);
  t.throws(() => new StaticKeySource([key('x', 1, { expiresAt: 5 })]), /clock/);
  src.close();
  await t.rejects(src.take(), /no usable key/, 'closed: nothing left');
});

t.test('StaticKeySource: one-time keys and expiry', async (t) => {
  let now = 0;
  const src = new StaticKeySource([key('a', 1), key('b', 2, { expiresAt: 100 }), key('c', 3)], { oneTime: true, now: () => now });
  t.equal(src.available, 3);
  t.same(labels(await src.take({ count: 2 })), ['a', 'b']);
  t.same(labels(await src.resolve([utf8('a'), utf8('c')])), [undefined, 'c'], 'a taken key cannot be resolved again');
  await t.rejects(src.take(), /no usable key left \(each key serves one handshake\)/);
  const src2 = new StaticKeySource([key('b', 2, { expiresAt: 100 })], { now: () => now });
  t.same(labels(await src2.take()), ['b']);
  now = 100;
  await t.rejects(src2.take(), /all expired/, 'an expired key is never handed out');
  t.same(await src2.resolve([utf8('b')]), [undefined]);
});

t.test('key files', async (t) => {
  const text = '# comment\n\nalpha 0011223344556677 \nbeta\tffeeddcc SHA-384 3\ngamma 0102 1\n';
  const keys = parseKeyFile(text, 'k.txt');
  t.same(
    keys.map((k) => [fromUtf8(k.identity), toHex(k.secret), k.hash, k.priority]),
    [
      ['alpha', '0011223344556677', 'SHA-256', 0],
      ['beta', 'ffeeddcc', 'SHA-384', 3],
      ['gamma', '0102', 'SHA-256', 1],
    ],
  );
  t.throws(() => parseKeyFile('a 00\nb zz\n', 'k.txt'), /k\.txt, line 2: the key is not hex/);
  t.throws(() => parseKeyFile('a 00\na 01\n', 'k.txt'), /line 2: identity 'a' appears twice/);
  // The field is named by position, not quoted: it could be half of a key with a stray space.
  t.throws(() => parseKeyFile('a 00 MD5\n', 'k.txt'), /line 1: field 3 is neither/);
  t.throws(() => parseKeyFile('lonely\n', 'k.txt'), /line 1: expected/);
  t.throws(() => parseKeyFile('# nothing\n', 'k.txt'), /no key/);
  // The parser is runtime-neutral (lib/psk/key-file.ts): qkd-tls/browser exports it, as qkd-tls/qkd does.
  t.equal(browser.parseKeyFile, parseKeyFile, 'qkd-tls/browser exports parseKeyFile');
  t.equal(qkd.parseKeyFile, parseKeyFile, 'qkd-tls/qkd still exports it');

  const dir = await mkdtemp(join(tmpdir(), 'qkd-keys-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const file = join(dir, 'keys.txt');
  await writeFile(file, text, { mode: 0o600 });
  const src = fileKeySource(file, { oneTime: true });
  t.same(labels(await src.take({ count: 5 })), ['alpha', 'gamma', 'beta'], 'by priority');
  await t.rejects(src.take(), /no usable key/);
  t.throws(() => fileKeySource(join(dir, 'missing.txt')), /cannot read the key file/);
  // Read with the bound of --psk-file (it was read whole: /dev/zero until memory ran out).
  t.throws(() => fileKeySource('/dev/zero'), /^cannot read the key file \/dev\/zero: \/dev\/zero is larger than 67108864 bytes \(64 MiB\)/);
});

t.test('key files: a line that gives its hash or its priority twice is refused, not read as its last one', async (t) => {
  // Which one was meant cannot be told; the error names the line and the fields by position (not quoted: a
  // field of digits may be half of a key with a stray space).
  t.throws(() => parseKeyFile('a 00\nb 01 SHA-256 SHA-384\n', 'k.txt'), /^k\.txt, line 2: fields 3 and 4 are both a hash \(SHA-256, SHA-384\); a line gives at most one$/);
  t.throws(() => parseKeyFile('a 00 SHA-384 SHA-384\n', 'k.txt'), /line 1: fields 3 and 4 are both a hash/, 'the same hash twice too');
  t.throws(() => parseKeyFile('a 00 1 2\n', 'k.txt'), /^k\.txt, line 1: fields 3 and 4 are both a priority; a line gives at most one$/);
  t.throws(() => parseKeyFile('a 00 7 7\n', 'k.txt'), /line 1: fields 3 and 4 are both a priority/, 'the same priority twice too');
  // The identity and the key are the first two fields by position; an identity on two lines is refused already.
  t.throws(() => parseKeyFile('a 00\na 01\n', 'k.txt'), /line 2: identity 'a' appears twice/);
  // One of each, in either order, is fine.
  t.same(
    parseKeyFile('a 00 SHA-384 2\nb 01 5 SHA-384\n', 'k.txt').map((k) => [k.hash, k.priority]),
    [
      ['SHA-384', 2],
      ['SHA-384', 5],
    ],
  );
});

t.test('key ID identities', async (t) => {
  const id = '550e8400-e29b-41d4-a716-446655440000';
  t.equal(fromUtf8(encodeKeyIdIdentity({ keyId: id })), id);
  t.equal(fromUtf8(encodeKeyIdIdentity({ keyId: id, saeId: 'client/sae' })), `client/sae/${id}`);
  t.same(decodeKeyIdIdentity(utf8(`client/sae/${id}`)), { keyId: id, saeId: 'client/sae' }, 'split at the last slash');
  t.same(decodeKeyIdIdentity(utf8(id)), { keyId: id });
  t.equal(decodeKeyIdIdentity(utf8('client1')), undefined);
  t.equal(decodeKeyIdIdentity(utf8(`/${id}`)), undefined, 'an empty SAE ID');
  t.equal(decodeKeyIdIdentity(utf8(`sae/${id}x`)), undefined, 'not a UUID');
  t.throws(() => encodeKeyIdIdentity({ keyId: 'nope' }), TypeError);
});

t.test('takePsks: plain and imported offers; release wipes', async (t) => {
  const src = new StaticKeySource([key('k1', 1), key('k2', 2, { hash: 'SHA-384' })], { oneTime: true });
  const plain = await takePsks(crypto, src);
  t.same(
    plain.psks.map((p) => [fromUtf8(p.identity), p.hash, p.binderKind]),
    [['k1', 'SHA-256', undefined]],
  );
  plain.release();
  t.ok(zero(plain.psks[0].secret), 'release wipes the offered keys');
  plain.release();

  const imported = await takePsks(crypto, src, { importer: { context: 'ctx', targetKdfs: ['HKDF_SHA256', 'HKDF_SHA384'] } });
  t.equal(imported.psks.length, 2, 'one PSK per target KDF');
  t.ok(imported.keys.every((k) => zero(k.secret)), 'the raw key is wiped once imported (RFC 9258 §4)');
  t.same(
    imported.psks.map((p) => [p.hash, p.binderKind, p.label, fromUtf8(decodeImportedIdentity(p.identity)!.externalIdentity)]),
    [
      ['SHA-256', 'imported', 'k2', 'k2'],
      ['SHA-384', 'imported', 'k2', 'k2'],
    ],
  );
  t.notOk(imported.psks.some((p) => zero(p.secret)));
  imported.release();
  t.ok(imported.psks.every((p) => zero(p.secret)));
  await t.rejects(takePsks(crypto, src), /no usable key left/, 'one-time keys are gone');
});

t.test('takePsks: an import that fails part way wipes the PSKs already derived for the other keys', async (t) => {
  // The second key's identity leaves no room for the ImportedIdentity around it (RFC 9258 §5.1: at most 2^16-1
  // bytes): importing it throws after the first key's imported PSKs (ipskx) were derived.
  const derived: Uint8Array[] = [];
  const recording = {
    ...crypto,
    hkdfExpand: (...a: Parameters<typeof crypto.hkdfExpand>) => {
      const out = crypto.hkdfExpand(...a);
      derived.push(out);
      return out;
    },
  };
  const src = new StaticKeySource([key('k1', 1), key('x'.repeat(0xfffa), 2, { priority: 1 })]);
  await t.rejects(takePsks(recording, src, { count: 2, importer: {} }), /ImportedIdentity/);
  t.ok(derived.length >= 2, 'the first key was imported');
  t.ok(derived.every(zero), 'and everything derived is wiped');
});

/** A server key source that records what it is asked. */
class RecordingSource implements ServerKeySource {
  readonly description = 'recording source';
  readonly asked: string[][] = [];
  constructor(private readonly inner: StaticKeySource) {}
  resolve(ids: readonly Uint8Array[]) {
    this.asked.push(ids.map(fromUtf8));
    return this.inner.resolve(ids);
  }
  close() {}
}

t.test('serverPskResolver: imported identities map back to one lookup; plain ones only when allowed', async (t) => {
  const epsk = key('qkd-1', 5);
  const imported = importPsk(crypto, epsk, { context: 'c' });
  const other = encodeImportedIdentity({ externalIdentity: utf8('qkd-1'), context: utf8('c'), targetProtocol: 0xfefc, targetKdf: 1 });
  const ids = [utf8('legacy'), other, ...imported.map((p) => p.identity)];
  const rec = new RecordingSource(new StaticKeySource([epsk, key('legacy', 6)]));
  const leases: PskLease[] = [];
  const resolve = serverPskResolver(crypto, rec, { importer: { context: 'c' }, onLease: (l) => leases.push(l) });
  const got = await resolve({ identities: ids });
  t.same(rec.asked, [['qkd-1']], 'one lookup for the two imported identities; the plain one not asked (importer only)');
  t.same(
    got.map((p) => p && [p.hash, p.binderKind]),
    [undefined, undefined, ['SHA-256', 'imported'], ['SHA-384', 'imported']],
    'DTLS identity ignored; one PSK per target KDF',
  );
  t.equal(toHex(got[2]!.secret), toHex(imported[0].secret), 'the server derives the same ipskx');
  t.equal(leases.length, 1);
  leases[0].release();
  t.ok(zero(got[2]!.secret) && zero(got[3]!.secret), 'the lease wipes the derived keys');

  const both = serverPskResolver(crypto, rec, { importer: { context: 'c' }, plain: true });
  const got2 = await both({ identities: [...ids, utf8('qkd-1')] });
  t.same(rec.asked[1], ['legacy', fromUtf8(other), 'qkd-1'], 'plain and imported side by side, in the client order');
  t.same(
    got2.map((p) => p && (p.binderKind ?? 'external')),
    [
      'external',
      undefined,
      'imported',
      'imported',
      undefined, // RFC 9258 §4: a key fed to the importer is not also used directly
    ],
  );

  const plainOnly = serverPskResolver(crypto, rec);
  const got3 = await plainOnly({ identities: ids });
  t.same(
    got3.map((p) => p && fromUtf8(p.identity)),
    ['legacy', undefined, undefined, undefined],
    'without the importer, imported identities mean nothing',
  );
});

// ---- ETSI 014 sources against stubs ----------------------------------------------------------------------------

interface StubCall {
  n: number;
  resolve(keys: Etsi014Key[]): void;
  reject(e: Error): void;
}

/** A stand-in for the master's Etsi014Client: enc_keys calls wait until the test answers them. */
function stubMaster() {
  const calls: StubCall[] = [];
  let next = 1;
  const delivered: Etsi014Key[] = [];
  const client = {
    baseUrl: new URL('http://127.0.0.1:1'),
    encKeys(_peer: string, req: { number?: number }) {
      return new Promise<Etsi014Key[]>((resolve, reject) => calls.push({ n: req.number ?? 1, resolve, reject }));
    },
    close() {},
  } as unknown as Etsi014Client;
  const answer = (i = 0) => {
    const c = calls.splice(i, 1)[0];
    const keys = Array.from({ length: c.n }, () => ({ keyId: UUID(next), key: new Uint8Array(32).fill(next++ & 0xff) }));
    delivered.push(...keys);
    c.resolve(keys);
  };
  return { client, calls, answer, delivered };
}

const tick = () => new Promise((r) => setImmediate(r));

t.test('Etsi014ClientSource: pool, single use, expiry and wiping (stub KME)', async (t) => {
  let now = 0;
  const events: Etsi014SourceEvent[] = [];
  const kme = stubMaster();
  const src = new Etsi014ClientSource({ client: kme.client, peerSaeId: 'server-sae', saeId: 'client-sae', poolSize: 3, batchSize: 2, keyLifetimeMs: 1000, now: () => now, onEvent: (e) => events.push(e) });
  t.teardown(() => src.close());
  const filled = src.prefetch();
  t.same(kme.calls.map((c) => c.n), [2, 1], 'fills the pool in batches, two requests at a time');
  kme.answer();
  kme.answer();
  await filled;
  t.equal(src.pooled, 3);

  const first = await src.take();
  t.equal(first.length, 1);
  t.equal(fromUtf8(first[0].identity), `client-sae/${UUID(1)}`, 'the key ID travels in the identity, with the SAE ID');
  t.equal(first[0].label, UUID(1));
  t.equal(first[0].expiresAt, 1000);
  t.same(kme.calls.map((c) => c.n), [1], 'a take from the pool triggers a refill in the background');
  const two = await src.take({ count: 2 });
  t.same(labels(two), [UUID(2), UUID(3)]);

  // Concurrent takes with an empty pool: each gets its own key, in arrival order.
  const waiting = [src.take(), src.take(), src.take()];
  await tick();
  while (kme.calls.length > 0) kme.answer();
  await tick();
  while (kme.calls.length > 0) kme.answer();
  const got = (await Promise.all(waiting)).flat();
  const all = [...first, ...two, ...got].map((k) => k.label);
  t.equal(new Set(all).size, all.length, 'no key goes to two handshakes');
  t.ok(got.every((k) => !zero(k.secret)));

  // Expiry: pooled keys past their lifetime are wiped and never handed out.
  await tick();
  while (kme.calls.length > 0) kme.answer();
  await tick();
  const pooledBefore = src.pooled;
  t.ok(pooledBefore > 0, 'the pool refilled');
  const pooledKeys = kme.delivered.filter((k) => !all.includes(k.keyId));
  now = 5000;
  t.equal(src.pooled, 0, 'expired keys leave the pool');
  t.ok(pooledKeys.every((k) => zero(k.key)), 'and are wiped');
  const expired = events.filter((e) => e.type === 'expired');
  t.ok(expired.length > 0);

  // close wipes what the pool holds.
  const fresh = src.take();
  await tick();
  kme.answer();
  await fresh;
  await tick();
  while (kme.calls.length > 0) kme.answer();
  await tick();
  const held = kme.delivered.slice(-Math.max(1, src.pooled));
  src.close();
  t.ok(held.every((k) => zero(k.key)), 'close wipes the pool');
  await t.rejects(src.take(), /closed/);
});

t.test('Etsi014ClientSource: a failing or hanging KME fails the waiting handshakes; abort', async (t) => {
  const kme = stubMaster();
  const events: Etsi014SourceEvent[] = [];
  const src = new Etsi014ClientSource({ client: kme.client, peerSaeId: 's', poolSize: 0, onEvent: (e) => events.push(e) });
  t.teardown(() => src.close());
  const a = src.take();
  const b = src.take();
  await tick();
  t.same(kme.calls.map((c) => c.n), [1, 1], 'no prefetch with poolSize 0: exactly what is asked');
  const timeout = () => new Etsi014Error('timeout', 'no answer from the KME for enc_keys within 50 ms', 'enc_keys', undefined, undefined, 1);
  kme.calls.shift()!.reject(timeout());
  await tick();
  t.equal(kme.calls.length, 1, 'while another request is in flight, the waiters wait for it (no retry loop)');
  kme.calls.shift()!.reject(timeout());
  await t.rejects(a, /could not get a QKD key: no answer from the KME for enc_keys within 50 ms/);
  await t.rejects(b, /could not get a QKD key/);
  t.match(events.at(-1), { type: 'fetch-failed' });
  t.match(src.lastError?.message, /within 50 ms/);
  // The next take tries again.
  const c = src.take();
  await tick();
  kme.answer();
  t.equal((await c).length, 1);
  t.equal(src.lastError, undefined);
  // A waiting take can be aborted; its key is not lost to anyone else.
  const ac = new AbortController();
  const d = src.take({ signal: ac.signal });
  await tick();
  ac.abort(new Error('handshake abandoned'));
  await t.rejects(d, /handshake abandoned/);
  kme.answer();
  await tick();
  t.equal(src.pooled, 1, 'the key that arrived for the aborted take waits in the pool');
});

t.test('Etsi014ClientSource: close cancels its enc_keys calls still in flight (one not yet sent is never sent)', async (t) => {
  // Found by review: close() rejected the waiting handshakes and wiped keys that arrived later, but left the calls
  // running; the request still went out (a `qkd-tls client` whose connection was refused while its source was
  // fetching sent it after it had closed), so the KME issued a QKD key that the server's KME then kept pending.
  const signals: (AbortSignal | undefined)[] = [];
  const master = {
    baseUrl: new URL('http://127.0.0.1:1'),
    encKeys: (_peer: string, _req: unknown, call?: { signal?: AbortSignal }) => {
      signals.push(call?.signal);
      return new Promise<Etsi014Key[]>(() => {});
    },
    close() {},
  } as unknown as Etsi014Client;
  const src = new Etsi014ClientSource({ client: master, peerSaeId: 'server-sae', poolSize: 2, batchSize: 1 });
  const waiting = src.take();
  t.equal(signals.length, 2, 'two enc_keys calls in flight');
  t.ok(signals.every((s) => s !== undefined && !s.aborted), 'each with a signal, not aborted while the source is open');
  src.close();
  await t.rejects(waiting, /closed/);
  t.ok(signals.every((s) => s?.aborted), 'close aborts every call in flight');

  // The same against an HTTP key manager that holds its answer (nothing else would end the call: its timeout is a
  // minute): the client drops the request, so there is nothing left for the KME to answer with a key.
  let asked!: () => void;
  const request = new Promise<void>((r) => (asked = r));
  let dropped!: Promise<void>;
  const kme = await stubKme(t, (_req, res) => {
    dropped = new Promise((r) => res.once('close', () => r()));
    asked();
  });
  const client = new Etsi014Client({ baseUrl: kme.url, saeId: 'client-sae', timeoutMs: 60_000 });
  t.teardown(() => client.close());
  const src2 = new Etsi014ClientSource({ client, peerSaeId: 'server-sae', poolSize: 0 });
  const taking = src2.take();
  await withTimeout(request, 10_000, 'the enc_keys request');
  src2.close();
  await t.rejects(taking, /closed/);
  await withTimeout(dropped, 10_000, 'the client to drop its enc_keys request (the old code left it waiting for the answer)');
  t.equal(kme.seen.requests, 1, 'one request, not retried');
});

/** A stand-in for the slave's Etsi014Client. */
function stubSlave(keys: Map<string, Uint8Array>, behaviour: { fail?: Error; notAddressed?: Set<string> } = {}) {
  const asked: string[] = [];
  const client = {
    baseUrl: new URL('http://127.0.0.1:2'),
    async decKeys(peer: string, ids: readonly string[]) {
      asked.push(`${peer}:${ids.join(',')}`);
      if (behaviour.fail) throw behaviour.fail;
      if (behaviour.notAddressed?.has(ids[0])) {
        throw new Etsi014Error('unauthorized', 'KME refused the dec_keys request (HTTP 401 Unauthorized): key_ID not addressed to this SAE', 'dec_keys', 401, { message: 'key_ID not addressed to this SAE' }, 1);
      }
      const k = keys.get(ids[0]);
      if (!k) throw new Etsi014Error('bad_request', 'KME rejected the dec_keys request as invalid (HTTP 400 Bad Request): unknown key_ID', 'dec_keys', 400, { message: 'unknown key_ID' }, 1);
      keys.delete(ids[0]);
      return [{ keyId: ids[0], key: k }];
    },
    close() {},
  } as unknown as Etsi014Client;
  return { client, asked };
}

// ETSI GS QKD 014 clause 5.4: a KME answers dec_keys with 401 for a key ID that its master SAE's Get key named for
// another slave SAE (the network simulator does since 671288a). That key is not this server's: the identity is
// refused and the next one looked up, as for a key ID the KME does not know; it was a KME failure (handshake_failure),
// so a client offering such a key first never got to its next one.
t.test('Etsi014ServerSource: a key ID the KME says is addressed to another SAE (401) is refused, the next one tried', async (t) => {
  const store = new Map([1, 2].map((n) => [UUID(n), new Uint8Array(32).fill(n)]));
  const kme = stubSlave(store, { notAddressed: new Set([UUID(1)]) });
  const events: Etsi014SourceEvent[] = [];
  const src = new Etsi014ServerSource({ client: kme.client, peerSaeIds: ['client-sae'], onEvent: (e) => events.push(e) });
  const id = (n: number) => encodeKeyIdIdentity({ keyId: UUID(n), saeId: 'client-sae' });
  const got = await src.resolve([id(1), id(2)]);
  t.same(labels(got), [undefined, UUID(2)], 'the second key ID is used');
  t.match(events.find((e) => e.type === 'refused'), { reason: 'not-addressed', keyId: UUID(1), message: /401/ });
  t.ok(src.hasUsed(UUID(1)), 'the refused key ID is remembered all the same');
});

t.test('Etsi014ServerSource: dec_keys once per key ID, replay cache, refusals, failures', async (t) => {
  const store = new Map([1, 2, 3, 4, 5].map((n) => [UUID(n), new Uint8Array(32).fill(n)]));
  const kme = stubSlave(store);
  const events: Etsi014SourceEvent[] = [];
  const src = new Etsi014ServerSource({ client: kme.client, peerSaeIds: ['client-sae', 'other-sae'], replayCacheSize: 3, onEvent: (e) => events.push(e) });
  const id = (n: number, sae?: string) => encodeKeyIdIdentity({ keyId: UUID(n), saeId: sae });

  let got = await src.resolve([utf8('junk'), id(1, 'client-sae'), id(2)]);
  t.same(labels(got), [undefined, UUID(1), undefined], 'stops at the first key delivered');
  t.same(kme.asked, [`client-sae:${UUID(1)}`]);
  t.equal(got[1]!.hash, 'SHA-256');

  got = await src.resolve([id(1, 'client-sae'), id(2)]);
  t.equal(got[0], undefined, 'a replayed key ID is refused');
  t.equal(got[1]?.label, UUID(2), 'a bare key ID is looked up for the first peer SAE');
  t.match(events.find((e) => e.type === 'refused'), { reason: 'replayed', keyId: UUID(1) });
  t.same(kme.asked.slice(1), [`client-sae:${UUID(2)}`], 'the replayed key is not even asked for');

  got = await src.resolve([id(3, 'mallory')]);
  t.same(got, [undefined]);
  t.match(events.at(-1), { type: 'refused', reason: 'unexpected-sae' });
  // The SAE ID comes from the client's identity, up to about 1 KB: the message (logged as is) quotes at most 100 characters.
  got = await src.resolve([id(3, 'm'.repeat(900))]);
  const longSae = events.at(-1) as Etsi014SourceEvent & { message: string };
  t.match(longSae, { type: 'refused', reason: 'unexpected-sae' });
  t.ok(longSae.message.length < 250, `the message stays short (${longSae.message.length} characters)`);

  got = await src.resolve([id(9), id(3, 'other-sae')]);
  t.equal(got[1]?.label, UUID(3), 'unknown to the KME: the next one is tried');
  t.match(events.find((e) => e.type === 'refused' && e.reason === 'unknown-to-kme'), { keyId: UUID(9) });

  // Concurrent handshakes naming the same key: one gets it.
  const race = await Promise.all([src.resolve([id(4)]), src.resolve([id(4)])]);
  t.equal(race.filter((r) => r[0] !== undefined).length, 1, 'a key ID serves one handshake even concurrently');
  t.equal(src.rememberedKeyIds, 3, 'the replay cache is bounded');
  t.notOk(src.hasUsed(UUID(1)), 'the oldest entries are forgotten first');
  t.ok(src.hasUsed(UUID(4)));

  const many = new Etsi014ServerSource({ client: stubSlave(new Map()).client, peerSaeIds: ['client-sae'], maxLookups: 2, onEvent: (e) => events.push(e) });
  t.same(await many.resolve([id(11), id(12), id(13), id(14)]), [undefined, undefined, undefined, undefined]);
  t.match(events.at(-1), { type: 'refused', reason: 'too-many', keyId: UUID(13) });

  const down = new Etsi014ServerSource({
    client: stubSlave(store, { fail: new Etsi014Error('connection', 'cannot reach the KME at http://127.0.0.1:2 for dec_keys (1 attempt(s)): ECONNREFUSED', 'dec_keys', undefined, undefined, 1) }).client,
    peerSaeIds: ['client-sae'],
  });
  await t.rejects(down.resolve([id(5)]), /key manager failed for key ID .*: cannot reach the KME/);
  t.ok(down.hasUsed(UUID(5)), 'a key whose fetch failed is never tried again');
  t.throws(() => new Etsi014ServerSource({ client: kme.client, peerSaeIds: [] }), TypeError);
});

t.test('ETSI 014 sources refuse a QKD key shorter than 128 bits (RFC 9257 §6), and wipe it', async (t) => {
  // The client: a KME that answers enc_keys with 64-bit keys (no size was asked for: the KME's default).
  const short = Array.from({ length: 2 }, (_, i) => ({ keyId: UUID(100 + i), key: new Uint8Array(8).fill(0xaa) }));
  const master = {
    baseUrl: new URL('http://127.0.0.1:1'),
    encKeys: async () => short,
    close() {},
  } as unknown as Etsi014Client;
  const events: Etsi014SourceEvent[] = [];
  const client = new Etsi014ClientSource({ client: master, peerSaeId: 'server-sae', poolSize: 0, onEvent: (e) => events.push(e) });
  t.teardown(() => client.close());
  await t.rejects(client.take(), /128 bits/, 'no handshake gets a 64-bit key');
  t.equal(client.pooled, 0, 'nothing pooled');
  t.ok(short.every((k) => zero(k.key)), 'the short keys are wiped');
  t.match(events.at(-1), { type: 'fetch-failed', message: /128 bits/ });
  t.throws(() => new Etsi014ClientSource({ client: master, peerSaeId: 'server-sae', keySize: 64 }), /128/, 'nor asked for');

  // The server: a KME that answers dec_keys with a 64-bit key.
  const store = new Map([[UUID(7), new Uint8Array(8).fill(0xbb)]]);
  const held = store.get(UUID(7))!;
  const server = new Etsi014ServerSource({ client: stubSlave(store).client, peerSaeIds: ['client-sae'] });
  await t.rejects(server.resolve([encodeKeyIdIdentity({ keyId: UUID(7) })]), /128 bits/, 'the handshake fails (handshake_failure)');
  t.ok(zero(held), 'the short key is wiped');
});

t.test('releaseAfter: releases leases on a timer, or all at once', async (t) => {
  const handler = releaseAfter(60_000);
  const secret = new Uint8Array(8).fill(1);
  let released = 0;
  handler({ psks: [], release: () => (secret.fill(0), released++) });
  t.equal(released, 0);
  handler.releaseAll();
  t.equal(released, 1);
  t.ok(zero(secret));
  const quick = releaseAfter(1);
  const keepAlive = setInterval(() => {}, 1000); // the lease timers are unref'd: keep the test process up
  await new Promise<void>((resolve) => quick({ psks: [], release: resolve }));
  clearInterval(keepAlive);
  t.pass('released by the timer');
});

// ---- against the simulator -------------------------------------------------------------------------------------

t.test('ETSI 014 sources against the KME simulator: client and server get the same keys', async (t) => {
  const kme = await startKmeSimulator({ insecureHttp: true, rateBitsPerSecond: 0, initialKeyCount: 40 });
  const master = new Etsi014Client({ baseUrl: kme.master.url, saeId: 'client-sae' });
  const slave = new Etsi014Client({ baseUrl: kme.slave.url, saeId: 'server-sae' });
  const client = new Etsi014ClientSource({ client: master, ownsClient: true, peerSaeId: 'server-sae', saeId: 'client-sae', poolSize: 4, batchSize: 3 });
  const server = new Etsi014ServerSource({ client: slave, ownsClient: true, peerSaeIds: ['client-sae'] });
  t.teardown(async () => (client.close(), server.close(), await kme.close()));

  await client.prefetch();
  t.equal(client.pooled, 4);
  t.equal(kme.stats().issued, 4, 'prefetched from KME-A');
  const offered = await Promise.all(Array.from({ length: 10 }, () => client.take()));
  const ids = offered.flat().map((k) => k.label);
  t.equal(new Set(ids).size, 10, 'ten takes, ten distinct keys');
  for (const [k] of offered) {
    const [got] = (await server.resolve([k.identity])) as SourcedKey[];
    t.equal(toHex(got.secret), toHex(k.secret), `the server gets the same key for ${k.label}`);
  }
  t.equal(kme.stats().redeemed, 10);
  const [again] = await server.resolve([offered[0][0].identity]);
  t.equal(again, undefined, 'a second resolve of a used key ID is refused');
});
