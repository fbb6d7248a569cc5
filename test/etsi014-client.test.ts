/**
 * The ETSI GS QKD 014 client: round trips with the simulator, errors that say what went wrong (400, 401,
 * 503, timeouts, refused connections, answers that break the spec), retries, keep-alive. All on 127.0.0.1.
 */
import { createServer as createNetServer, type Server as NetServer, type Socket } from 'node:net';
import t from 'tap';
import { Etsi014Client } from '../lib/qkd/etsi014-client.js';
import { type KmeSimulator, type KmeSimulatorOptions, startKmeSimulator } from '../lib/tools/kme/simulator.js';
import { answerJson as json, etsi014Failure as failure, stubKme as stub } from './helpers/kme-stub.js';

const MASTER = 'client-sae';
const SLAVE = 'server-sae';
type Teardown = { teardown(fn: () => unknown): void };

async function simulator(tt: Teardown, opts: KmeSimulatorOptions = {}): Promise<KmeSimulator> {
  const kme = await startKmeSimulator({ insecureHttp: true, rateBitsPerSecond: 0, initialKeyCount: 50, now: () => 0, ...opts });
  tt.teardown(() => kme.close());
  return kme;
}

function clients(tt: Teardown, kme: KmeSimulator, extra: { timeoutMs?: number; retries?: number } = {}) {
  const common = { retryDelayMs: 1, maxRetryDelayMs: 5, ...extra };
  const master = new Etsi014Client({ baseUrl: kme.master.url, saeId: MASTER, ...common });
  const slave = new Etsi014Client({ baseUrl: kme.slave.url, saeId: SLAVE, ...common });
  tt.teardown(() => (master.close(), slave.close()));
  return { master, slave };
}

/** A TCP server that accepts connections and never says anything. */
async function silent(tt: Teardown): Promise<string> {
  const sockets: Socket[] = [];
  const server: NetServer = createNetServer((s) => {
    sockets.push(s);
    s.on('error', () => {});
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  tt.teardown(() => new Promise<void>((r) => (sockets.forEach((s) => s.destroy()), server.close(() => r()))));
  return `127.0.0.1:${(server.address() as { port: number }).port}`;
}

const STATUS = {
  source_KME_ID: 'A',
  target_KME_ID: 'B',
  master_SAE_ID: MASTER,
  slave_SAE_ID: SLAVE,
  key_size: 256,
  stored_key_count: 1,
  max_key_count: 10,
  max_key_per_request: 8,
  max_key_size: 1024,
  min_key_size: 64,
  max_SAE_ID_count: 0,
};
const KEY_ID = '6f0e4a5c-1b2d-4c3e-8f90-a1b2c3d4e5f6';

t.test('round trip: the slave gets the master keys, POST and GET', async (t) => {
  const kme = await simulator(t);
  const { master, slave } = clients(t, kme);

  const st = await master.status(SLAVE);
  t.match(st, { master_SAE_ID: MASTER, slave_SAE_ID: SLAVE, key_size: 256, stored_key_count: 50 });

  const posted = await master.encKeys(SLAVE, { number: 3, size: 512 });
  t.equal(posted.length, 3);
  t.ok(posted.every((k) => k.key instanceof Uint8Array && k.key.length === 64), '3 keys of 512 bits');
  const got = await master.encKeys(SLAVE, { number: 2 }, { method: 'GET' });
  t.equal(got.length, 2);
  t.ok(got.every((k) => k.key.length === 32), 'default size 256 bits');

  const reversed = posted.map((k) => k.keyId).reverse();
  const dec = await slave.decKeys(MASTER, reversed);
  t.same(
    dec.map((k) => k.keyId),
    reversed,
    'decKeys answers in the order asked',
  );
  t.same(dec, [...posted].reverse(), 'same key material');
  const decGet = await slave.decKeys(MASTER, got.map((k) => k.keyId), { method: 'GET' });
  t.same(decGet, got, 'GET with several key_ID parameters');

  t.same((await master.encKeys(SLAVE)).length, 1, 'no request fields: one key');
});

t.test('concurrent calls share the connections and never share a key', async (t) => {
  const kme = await simulator(t, { initialKeyCount: 200 });
  const { master, slave } = clients(t, kme);
  const batches = await Promise.all(Array.from({ length: 20 }, () => master.encKeys(SLAVE, { number: 4 })));
  const keys = batches.flat();
  t.equal(new Set(keys.map((k) => k.keyId)).size, 80, '80 distinct key IDs');
  t.equal(new Set(keys.map((k) => Buffer.from(k.key).toString('hex'))).size, 80, '80 distinct keys');
  const back = await Promise.all(batches.map((b) => slave.decKeys(MASTER, b.map((k) => k.keyId))));
  t.same(back, batches, 'each batch comes back to the slave');
  t.match(kme.stats(), { storedKeyCount: 120, pendingKeyCount: 0, issued: 80, redeemed: 80 });
});

t.test('400 answers surface as bad_request with the KME message and details', async (t) => {
  const kme = await simulator(t);
  const { master, slave } = clients(t, kme);

  const e = await failure(master.encKeys(SLAVE, { size: 100 }));
  t.match(e, { name: 'Etsi014Error', reason: 'bad_request', status: 400, operation: 'enc_keys', attempts: 1 });
  t.match(e.message, /HTTP 400 Bad Request.*multiple of 8/, e.message);
  t.match(e.kmeMessage, /multiple of 8/);

  t.match(await failure(master.encKeys(SLAVE, { number: 0 }, { method: 'GET' })), { reason: 'bad_request' }, 'GET number=0');
  t.match(await failure(master.encKeys(SLAVE, { extensionMandatory: [{ x: 1 }] })), { reason: 'bad_request' }, 'mandatory extension');

  const [k] = await master.encKeys(SLAVE);
  await slave.decKeys(MASTER, [k.keyId]);
  const again = await failure(slave.decKeys(MASTER, [k.keyId]));
  t.match(again, { reason: 'bad_request', status: 400, operation: 'dec_keys' }, 'a key fetched a second time fails');
  t.same(again.details, [{ key_ID: k.keyId }], 'details name the key');
  t.match(await failure(slave.decKeys(MASTER, ['nope'])), { reason: 'bad_request' }, 'not a UUID');
});

t.test('401 answers surface as unauthorized with a hint', async (t) => {
  const kme = await simulator(t);
  const stranger = new Etsi014Client({ baseUrl: kme.master.url, saeId: 'mallory', retries: 3 });
  t.teardown(() => stranger.close());
  const e = await failure(stranger.encKeys(SLAVE));
  t.match(e, { reason: 'unauthorized', status: 401, attempts: 1 }, 'not retried');
  t.match(e.message, /HTTP 401 Unauthorized.*mallory.*peer SAE ID/, e.message);

  const { master } = clients(t, kme);
  const wrongPeer = await failure(master.status('nobody'));
  t.match(wrongPeer, { reason: 'unauthorized', status: 401 });
  t.match(wrongPeer.message, /'nobody' is the right peer SAE ID/);
});

t.test('503 is retried with backoff, then succeeds', async (t) => {
  let now = 0;
  let kme: KmeSimulator | undefined;
  kme = await simulator(t, {
    initialKeyCount: 0,
    rateBitsPerSecond: 256,
    now: () => now,
    // The first refusal lets one second of key production happen before the retry.
    log: (e) => {
      if (e.type === 'request' && e.status === 503) now += 1000;
    },
  });
  const jitter: number[] = [];
  const master = new Etsi014Client({ baseUrl: kme.master.url, saeId: MASTER, retries: 3, retryDelayMs: 1, random: () => (jitter.push(0), 0.5) });
  t.teardown(() => master.close());
  const keys = await master.encKeys(SLAVE);
  t.equal(keys.length, 1, 'the key produced meanwhile');
  t.same(kme.stats().responses, { 503: 1, 200: 1 }, 'one refusal, one success');
  t.equal(jitter.length, 1, 'one backoff, with jitter');
});

t.test('503 until the retries run out: unavailable', async (t) => {
  const kme = await simulator(t, { initialKeyCount: 0 });
  const { master } = clients(t, kme, { retries: 2 });
  const e = await failure(master.encKeys(SLAVE));
  t.match(e, { reason: 'unavailable', status: 503, attempts: 3 });
  t.match(e.kmeMessage, /not enough key material/);
  t.match(e.message, /HTTP 503, 3 attempt/);
  t.same(kme.stats().responses, { 503: 3 });
});

t.test('a KME that never answers: timeout within timeoutMs', async (t) => {
  const hostPort = await silent(t);
  const plain = new Etsi014Client({ baseUrl: `http://${hostPort}`, saeId: MASTER, timeoutMs: 200 });
  t.teardown(() => plain.close());
  const e = await failure(plain.encKeys(SLAVE));
  t.match(e, { reason: 'timeout', status: undefined });
  t.match(e.message, /no answer from the KME for enc_keys within 200 ms/);

  const tls = new Etsi014Client({ baseUrl: `https://${hostPort}`, timeoutMs: 200 });
  t.teardown(() => tls.close());
  t.match(await failure(tls.status(SLAVE)), { reason: 'timeout' }, 'also when the TLS handshake never completes');

  const { url } = await stub(t, (_req, res) => {
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': '1000' });
    res.write('{"keys":['); // and nothing more
  });
  const stalled = new Etsi014Client({ baseUrl: url, timeoutMs: 200 });
  t.teardown(() => stalled.close());
  t.match(await failure(stalled.encKeys(SLAVE)), { reason: 'timeout' }, 'also when the answer stalls half way');
});

t.test('refused connections are retried, then reported', async (t) => {
  const kme = await simulator(t);
  const url = kme.master.url;
  await kme.close();
  const c = new Etsi014Client({ baseUrl: url, saeId: MASTER, retries: 2, retryDelayMs: 1 });
  t.teardown(() => c.close());
  const e = await failure(c.status(SLAVE));
  t.match(e, { reason: 'connection', attempts: 3 });
  t.match(e.message, /cannot reach the KME .*ECONNREFUSED/);
});

t.test('a dropped connection is retried', async (t) => {
  const { url, seen } = await stub(t, (req, res, n) => {
    if (n === 1) req.socket.destroy();
    else json(res, 200, STATUS);
  });
  const c = new Etsi014Client({ baseUrl: url, retries: 1, retryDelayMs: 1 });
  t.teardown(() => c.close());
  t.match(await c.status(SLAVE), STATUS);
  t.equal(seen.requests, 2);
});

t.test('answers that break the spec: invalid_response, without key material in the message', async (t) => {
  const secret = Buffer.alloc(32, 7).toString('base64');
  const answers: Record<string, unknown> = {
    '/api/v1/keys/count/enc_keys': { keys: [{ key_ID: KEY_ID, key: secret }] },
    '/api/v1/keys/size/enc_keys': { keys: [{ key_ID: KEY_ID, key: secret }] },
    '/api/v1/keys/b64/enc_keys': { keys: [{ key_ID: KEY_ID, key: 'not base64!' }] },
    '/api/v1/keys/uuid/enc_keys': { keys: [{ key_ID: 'key-1', key: secret }] },
    '/api/v1/keys/nokeys/enc_keys': { stuff: [] },
    '/api/v1/keys/dup/enc_keys': { keys: [{ key_ID: KEY_ID, key: secret }, { key_ID: KEY_ID, key: secret }] },
    '/api/v1/keys/other/dec_keys': { keys: [{ key_ID: KEY_ID, key: secret }] },
    '/api/v1/keys/partial/status': { ...STATUS, key_size: '256' },
  };
  const { url } = await stub(t, (req, res) => {
    const path = (req.url ?? '').split('?')[0];
    if (path === '/api/v1/keys/text/status') {
      res.writeHead(200);
      res.end('hello');
    } else json(res, 200, answers[path] ?? {});
  });
  const c = new Etsi014Client({ baseUrl: url });
  t.teardown(() => c.close());
  const cases: [string, () => Promise<unknown>][] = [
    ['fewer keys than asked', () => c.encKeys('count', { number: 2 })],
    ['wrong size', () => c.encKeys('size', { size: 128 })],
    ['key not base64', () => c.encKeys('b64')],
    ['key_ID not a UUID', () => c.encKeys('uuid')],
    ['no keys array', () => c.encKeys('nokeys')],
    ['duplicate key_IDs', () => c.encKeys('dup', { number: 2 })],
    ['dec_keys returns other IDs', () => c.decKeys('other', ['00000000-0000-4000-8000-000000000000'])],
    ['status field of the wrong type', () => c.status('partial')],
    ['not JSON', () => c.status('text')],
  ];
  for (const [name, p] of cases) {
    const e = await failure(p());
    t.equal(e.reason, 'invalid_response', `${name}: ${e.message}`);
    t.notOk(e.message.includes(secret), `${name}: no key in the message`);
  }
});

t.test('other HTTP statuses, a path prefix in baseUrl, keep-alive', async (t) => {
  const { url, seen } = await stub(t, (req, res) => {
    if (req.url?.startsWith('/kme-a/')) json(res, 200, STATUS);
    else json(res, 404, { message: 'no such thing' });
  });
  const c = new Etsi014Client({ baseUrl: `${url}/kme-a/` });
  t.teardown(() => c.close());
  for (let i = 0; i < 3; i++) await c.status('peer sae');
  t.equal(seen.urls[0], '/kme-a/api/v1/keys/peer%20sae/status', 'prefix kept, SAE ID percent-encoded');
  t.equal(seen.connections, 1, 'three calls over one kept-alive connection');

  const bare = new Etsi014Client({ baseUrl: url });
  t.teardown(() => bare.close());
  const e = await failure(bare.status(SLAVE));
  t.match(e, { reason: 'http_status', status: 404, kmeMessage: 'no such thing' });
});

t.test('a caller can abort', async (t) => {
  const hostPort = await silent(t);
  const c = new Etsi014Client({ baseUrl: `http://${hostPort}`, timeoutMs: 60_000 });
  t.teardown(() => c.close());
  const ac = new AbortController();
  const p = c.encKeys(SLAVE, {}, { signal: ac.signal });
  setImmediate(() => ac.abort());
  t.match(await failure(p), { reason: 'aborted' });
  const pre = new AbortController();
  pre.abort();
  t.match(await failure(c.status(SLAVE, { signal: pre.signal })), { reason: 'aborted' }, 'already aborted');
});

t.test('options and arguments are checked up front', async (t) => {
  t.throws(() => new Etsi014Client({ baseUrl: 'http://192.0.2.1:80' }), /only allowed to a loopback KME/);
  t.throws(() => new Etsi014Client({ baseUrl: 'ftp://127.0.0.1' }), /must be an https: URL, or http: to a loopback KME/);
  t.throws(() => new Etsi014Client({ baseUrl: '127.0.0.1:8443' }), /^Etsi014Client: baseUrl is not a URL: 127\.0\.0\.1:8443/);
  // One that does not parse is quoted without a user name and password in it.
  t.throws(() => new Etsi014Client({ baseUrl: 'https://sae:s3cr3t@kme.example:99999' }), /^Etsi014Client: baseUrl is not a URL: https:\/\/kme\.example:99999 \(expected/);
  // A password with "/", "#" or "?" in it (which end a URL's authority), or a scheme without "//": all of it goes too.
  for (const baseUrl of ['https://sae:pa/ss#w0rd@kme.example:99999', 'https:sae:s3/cr3t@kme.example:99999', 'https://sae:p?w@d@kme.example:99999']) {
    const err = (() => {
      try {
        new Etsi014Client({ baseUrl });
      } catch (e) {
        return e as Error;
      }
      return undefined;
    })();
    t.match(err?.message, /^Etsi014Client: baseUrl is not a URL: https:\/*kme\.example:99999 \(expected/, `${baseUrl.split('@')[0].replace(/:[^:]*$/, ':***')}@...: quoted without its user info`);
    t.notMatch(err?.message ?? '', /s3|pa\/ss|w0rd|p\?w/, 'no part of the password');
  }
  t.throws(() => new Etsi014Client({ baseUrl: 'https://127.0.0.1', cert: 'x' }), /cert and key go together/);
  t.throws(() => new Etsi014Client({ baseUrl: 'https://127.0.0.1', timeoutMs: 0 }), /timeoutMs/);
  const c = new Etsi014Client({ baseUrl: 'http://127.0.0.1:1' });
  t.teardown(() => c.close());
  await t.rejects(c.encKeys(SLAVE, { extensionOptional: [{}] }, { method: 'GET' }), /GET carries only number and size/);
  await t.rejects(c.status(''), /peer SAE ID/);
});

// The wrong scheme for the KME (found in a README walkthrough: `qkd-tls kme` speaks HTTPS unless --insecure-http):
// https:// to a plain HTTP KME failed, after four attempts, with "EPROTO: write EPROTO 80CC...:error:0A00010B:SSL
// routines:ssl3_get_record:wrong version number:../deps/openssl/...", and http:// to an HTTPS KME with a bare
// "ECONNRESET: socket hang up". Each now says what to check; the first is a TLS failure, not retried.
t.test('the wrong scheme for the KME says so', async (t) => {
  const plain = await stub(t, (_req, res) => json(res, 200, {}));
  const tlsToPlain = new Etsi014Client({ baseUrl: plain.url.replace('http:', 'https:'), retryDelayMs: 1 });
  t.teardown(() => tlsToPlain.close());
  const e = await failure(tlsToPlain.status(SLAVE));
  t.equal(e.reason, 'tls', 'a TLS failure');
  t.equal(e.attempts, 1, 'not retried: it will not fix itself');
  t.match(e.message, /it does not answer in TLS \(wrong version number\); is it a plain http:\/\/ KME\?$/);
  // A server that hangs up on a plain HTTP request, as an HTTPS one does.
  const hangUp: NetServer = createNetServer((s: Socket) => s.once('data', () => s.destroy()));
  await new Promise<void>((r) => hangUp.listen(0, '127.0.0.1', r));
  t.teardown(() => hangUp.close());
  const plainToTls = new Etsi014Client({ baseUrl: `http://127.0.0.1:${(hangUp.address() as { port: number }).port}`, retries: 0 });
  t.teardown(() => plainToTls.close());
  const h = await failure(plainToTls.status(SLAVE));
  t.equal(h.reason, 'connection');
  t.match(h.message, /ECONNRESET: socket hang up; if the KME speaks HTTPS, use an https:\/\/ URL$/);
});
