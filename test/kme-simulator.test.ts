/**
 * The ETSI GS QKD 014 key manager simulator against the conformance behaviours listed in
 * shared/docs/etsi-gs-qkd-014.md: exact key counts and sizes, a 400 with an Error body for each invalid
 * input, a key fetched twice fails, status counts follow each call, 503 when empty, key production driven
 * by an injected clock, and mutual TLS with the certificates it generates. All on 127.0.0.1, ephemeral ports.
 */
import { randomBytes, X509Certificate } from 'node:crypto';
import { request as httpRequest, type IncomingHttpHeaders } from 'node:http';
import { copyFile, mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { Etsi014Client, Etsi014Error } from '../lib/qkd/etsi014-client.js';
import { isUuid } from '../lib/qkd/etsi014-api.js';
import { ensureKmeCertificates, makeKmeCertificates } from '../lib/tools/kme/certificates.js';
import { type KmeLogEvent, type KmeSimulator, type KmeSimulatorOptions, startKmeSimulator } from '../lib/tools/kme/simulator.js';
import { HELP, parseKmeArgs } from '../bin/commands/kme.js';

const MASTER = 'client-sae';
const SLAVE = 'server-sae';

interface Reply {
  status: number;
  body: any;
  headers: IncomingHttpHeaders;
}

/** One raw HTTP request with no connection reuse; `sae` goes in the X-SAE-ID header. */
function send(url: string, opts: { method?: string; sae?: string; body?: string; headers?: Record<string, string> } = {}): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const headers: Record<string, string> = { ...opts.headers };
    if (opts.sae !== undefined) headers['x-sae-id'] = opts.sae;
    if (opts.body !== undefined) headers['content-type'] ??= 'application/json';
    const req = httpRequest(url, { method: opts.method ?? 'GET', headers, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        let body: unknown = text;
        try {
          body = JSON.parse(text);
        } catch {
          // left as text
        }
        resolve({ status: res.statusCode ?? 0, body, headers: res.headers });
      });
    });
    req.on('error', reject);
    req.end(opts.body);
  });
}

/** Starts a plain-HTTP simulator with a fixed clock and no production unless asked. */
async function start(tt: { teardown(fn: () => unknown): void }, opts: KmeSimulatorOptions = {}): Promise<KmeSimulator> {
  const kme = await startKmeSimulator({ insecureHttp: true, rateBitsPerSecond: 0, initialKeyCount: 100, now: () => 0, ...opts });
  tt.teardown(() => kme.close());
  return kme;
}

const statusUrl = (k: KmeSimulator) => `${k.master.url}/api/v1/keys/${SLAVE}/status`;
const encUrl = (k: KmeSimulator, q = '') => `${k.master.url}/api/v1/keys/${SLAVE}/enc_keys${q}`;
const decUrl = (k: KmeSimulator, q = '') => `${k.slave.url}/api/v1/keys/${MASTER}/dec_keys${q}`;
const encPost = (k: KmeSimulator, body: unknown) => send(encUrl(k), { method: 'POST', sae: MASTER, body: JSON.stringify(body) });
const decPost = (k: KmeSimulator, ids: string[]) =>
  send(decUrl(k), { method: 'POST', sae: SLAVE, body: JSON.stringify({ key_IDs: ids.map((key_ID) => ({ key_ID })) }) });
const stored = async (k: KmeSimulator) => (await send(statusUrl(k), { sae: MASTER })).body.stored_key_count as number;

t.test('status: every field of clause 6.1, with the configured values', async (t) => {
  const kme = await start(t, { keySize: 256, minKeySize: 64, maxKeySize: 1024, maxKeyCount: 500, maxKeysPerRequest: 16, initialKeyCount: 42 });
  const r = await send(statusUrl(kme), { sae: MASTER });
  t.equal(r.status, 200);
  t.match(r.headers['content-type'], /^application\/json/);
  t.match(r.body, {
    source_KME_ID: 'KME-A',
    target_KME_ID: 'KME-B',
    master_SAE_ID: MASTER,
    slave_SAE_ID: SLAVE,
    key_size: 256,
    stored_key_count: 42,
    max_key_count: 500,
    max_key_per_request: 16,
    max_key_size: 1024,
    min_key_size: 64,
    max_SAE_ID_count: 0,
  });
  const fromSlave = await send(`${kme.slave.url}/api/v1/keys/${MASTER}/status`, { sae: SLAVE });
  t.equal(fromSlave.status, 200, 'the slave SAE may ask its KME for the status too');
  t.match(fromSlave.body, { source_KME_ID: 'KME-B', target_KME_ID: 'KME-A', master_SAE_ID: MASTER, slave_SAE_ID: SLAVE, stored_key_count: 42 });
});

t.test('configurable SAE and KME IDs', async (t) => {
  const kme = await start(t, { masterSaeId: 'SAE_A', slaveSaeId: 'SAE_B', masterKmeId: 'KME_1', slaveKmeId: 'KME_2' });
  const r = await send(`${kme.master.url}/api/v1/keys/SAE_B/status`, { sae: 'SAE_A' });
  t.match(r.body, { source_KME_ID: 'KME_1', target_KME_ID: 'KME_2', master_SAE_ID: 'SAE_A', slave_SAE_ID: 'SAE_B' });
  t.equal((await send(statusUrl(kme), { sae: MASTER })).status, 401, 'the default IDs are no longer known');
});

t.test('enc_keys: exact counts and sizes, POST and GET', async (t) => {
  const kme = await start(t);
  const five = await encPost(kme, { number: 5 });
  t.equal(five.status, 200);
  t.equal(five.body.keys.length, 5, 'number=5 returns exactly 5 keys');
  for (const k of five.body.keys) {
    t.ok(isUuid(k.key_ID), 'key_ID is a UUID');
    t.equal(Buffer.from(k.key, 'base64').length, 32, 'default key_size 256 bits = 32 bytes');
  }
  t.equal(new Set(five.body.keys.map((k: any) => k.key_ID)).size, 5, 'key IDs are distinct');

  const big = await encPost(kme, { number: 1, size: 1024 });
  t.equal(Buffer.from(big.body.keys[0].key, 'base64').length, 128, 'size=1024 decodes to 128 bytes');

  const get = await send(encUrl(kme, '?number=3&size=512'), { sae: MASTER });
  t.equal(get.status, 200);
  t.equal(get.body.keys.length, 3, 'GET number=3');
  t.ok(get.body.keys.every((k: any) => Buffer.from(k.key, 'base64').length === 64), 'GET size=512 -> 64 bytes');

  const dflt = await send(encUrl(kme), { sae: MASTER });
  t.equal(dflt.body.keys.length, 1, 'no parameters: one key');
  const empty = await send(encUrl(kme), { method: 'POST', sae: MASTER });
  t.equal(empty.body.keys.length, 1, 'an empty POST body means all defaults');
  t.equal(empty.headers['cache-control'], 'no-store', 'key answers are not cacheable');
});

t.test('dec_keys gives the slave the same keys once; a second fetch fails', async (t) => {
  const kme = await start(t);
  const enc = (await encPost(kme, { number: 3 })).body.keys as { key_ID: string; key: string }[];
  const ids = enc.map((k) => k.key_ID);

  const first = await decPost(kme, ids.slice(0, 2));
  t.equal(first.status, 200);
  t.same(first.body.keys, enc.slice(0, 2), 'POST dec_keys returns the same keys and IDs');

  const third = await send(decUrl(kme, `?key_ID=${ids[2]}`), { sae: SLAVE });
  t.equal(third.status, 200);
  t.same(third.body.keys, [enc[2]], 'GET dec_keys returns the same key');

  for (const id of ids) {
    const again = await decPost(kme, [id]);
    t.equal(again.status, 400, 'a key delivered by dec_keys is gone');
    t.match(again.body, { message: /not found/, details: [{ key_ID: id }] });
  }
  const againGet = await send(decUrl(kme, `?key_ID=${ids[0]}`), { sae: SLAVE });
  t.equal(againGet.status, 400, 'also by GET');

  // All or none: a request naming one unknown key consumes nothing.
  const more = (await encPost(kme, { number: 1 })).body.keys[0];
  const mixed = await decPost(kme, [more.key_ID, ids[0]]);
  t.equal(mixed.status, 400);
  t.same(mixed.body.details, [{ key_ID: ids[0] }], 'details name only the unknown key');
  const ok = await decPost(kme, [more.key_ID.toUpperCase()]);
  t.equal(ok.status, 200, 'the good key is still there (and IDs compare without case)');
  t.equal(ok.body.keys[0].key, more.key);

  const multi = await encPost(kme, { number: 2 });
  const both = await send(decUrl(kme, `?key_ID=${multi.body.keys[0].key_ID}&key_ID=${multi.body.keys[1].key_ID}`), { sae: SLAVE });
  t.same(both.body.keys, multi.body.keys, 'GET accepts several key_ID parameters');
});

t.test('status counts follow each call', async (t) => {
  const kme = await start(t, { keySize: 256, initialKeyCount: 20 });
  t.equal(await stored(kme), 20);
  await encPost(kme, { number: 5 });
  t.equal(await stored(kme), 15, 'enc_keys number=5 takes 5');
  await encPost(kme, { number: 2, size: 512 });
  t.equal(await stored(kme), 11, 'two 512-bit keys take four 256-bit keys');
  const small = await send(encUrl(kme, '?number=1&size=128'), { sae: MASTER });
  t.equal(await stored(kme), 10, 'half a key leaves 10.5 keys: stored_key_count counts whole keys');
  let st = (await send(statusUrl(kme), { sae: MASTER })).body;
  t.equal(st.status_extension.pending_key_count, 8, '8 keys wait for the slave');
  await decPost(kme, [small.body.keys[0].key_ID]);
  st = (await send(statusUrl(kme), { sae: MASTER })).body;
  t.equal(st.stored_key_count, 10, 'dec_keys does not draw new key material');
  t.equal(st.status_extension.pending_key_count, 7, 'and removes the delivered key');
  t.match(kme.stats(), { storedKeyCount: 10, pendingKeyCount: 7, issued: 8, redeemed: 1 });
});

t.test('503 with an Error body when key material is insufficient', async (t) => {
  const empty = await start(t, { initialKeyCount: 0 });
  const r = await encPost(empty, {});
  t.equal(r.status, 503);
  t.match(r.body, { message: /not enough key material/ });
  t.equal((await send(encUrl(empty), { sae: MASTER })).status, 503, 'GET too');

  const two = await start(t, { initialKeyCount: 2 });
  t.equal((await encPost(two, { number: 3 })).status, 503, '3 keys from a store of 2');
  t.equal(await stored(two), 2, 'a refused request takes nothing');
  t.equal((await encPost(two, { number: 2 })).status, 200);
  t.equal((await encPost(two, { number: 1 })).status, 503, 'then it is empty');
});

t.test('key production follows the injected clock, up to max_key_count', async (t) => {
  let now = 5_000;
  const kme = await start(t, { keySize: 256, rateBitsPerSecond: 256, initialKeyCount: 0, maxKeyCount: 10, now: () => now });
  t.equal(await stored(kme), 0);
  t.equal((await encPost(kme, {})).status, 503, 'nothing produced yet');
  now += 1000;
  t.equal(await stored(kme), 1, '256 bits after 1 s at 256 bit/s');
  now += 2500;
  t.equal(await stored(kme), 3, '3.5 keys count as 3');
  t.equal((await encPost(kme, { number: 1, size: 512 })).status, 200);
  t.equal(await stored(kme), 1, 'a 512-bit key takes two, leaving 1.5');
  now += 500;
  t.equal(await stored(kme), 2, 'the half key completes');
  now += 3_600_000;
  t.equal(await stored(kme), 10, 'the store is bounded by max_key_count');
  t.equal((await encPost(kme, { number: 10 })).status, 200);
  t.equal(await stored(kme), 0);
});

t.test('keys the slave never fetches expire (pendingKeyTtlMs)', async (t) => {
  let now = 0;
  const kme = await start(t, { pendingKeyTtlMs: 60_000, now: () => now });
  const a = (await encPost(kme, {})).body.keys[0].key_ID;
  now += 30_000;
  const b = (await encPost(kme, {})).body.keys[0].key_ID;
  now += 30_000;
  t.equal((await decPost(kme, [a])).status, 400, 'the first key expired after 60 s');
  t.equal((await decPost(kme, [b])).status, 200, 'the second one had 30 s left');
  t.match(kme.stats(), { expired: 1, redeemed: 1, pendingKeyCount: 0 });
});

t.test('keys waiting for the slave are bounded by max_key_count', async (t) => {
  let now = 0;
  const kme = await start(t, { keySize: 256, maxKeyCount: 4, initialKeyCount: 4, rateBitsPerSecond: 1024, now: () => now });
  t.equal((await encPost(kme, { number: 4 })).status, 200);
  now += 1000; // the store refills with 4 keys
  t.equal(await stored(kme), 4);
  const r = await encPost(kme, { number: 1 });
  t.equal(r.status, 503, 'four keys already wait for dec_keys');
  t.match(r.body.message, /wait for the slave/);
  t.equal(await stored(kme), 4, 'the refusal took nothing');
});

t.test('keys and key IDs come from the injected randomness', async (t) => {
  const drawn: Uint8Array[] = [];
  const kme = await start(t, {
    randomBytes: (n) => {
      const b = new Uint8Array(randomBytes(n));
      drawn.push(b.slice());
      return b;
    },
  });
  const k = (await encPost(kme, { size: 64 })).body.keys[0];
  t.equal(drawn.length, 2, 'one draw for the key ID, one for the key');
  t.equal(k.key, Buffer.from(drawn[1]).toString('base64'), 'the key is the drawn bytes');
  t.equal(k.key_ID.replace(/-/g, '').slice(0, 8), Buffer.from(drawn[0].subarray(0, 4)).toString('hex'), 'the ID is drawn too');
  t.equal(k.key_ID[14], '4', 'a version 4 UUID');
});

t.test('a randomBytes that returns Node Buffers (node:crypto randomBytes itself) still gives the slave the master\'s key', async (t) => {
  // Buffer#slice() is a view, not a copy: the copy kept for dec_keys must not share memory with the key that
  // enc_keys hands out and wipes once encoded.
  const kme = await start(t, { randomBytes });
  const enc = (await encPost(kme, { number: 2 })).body.keys as { key_ID: string; key: string }[];
  const dec = await decPost(kme, enc.map((k) => k.key_ID));
  t.equal(dec.status, 200);
  t.same(dec.body.keys, enc, 'dec_keys returns the keys enc_keys delivered');
  for (const k of dec.body.keys as { key: string }[]) t.not(Buffer.from(k.key, 'base64').toString('hex'), '0'.repeat(64), 'not a wiped key');
});

t.test('a POST body sent as anything but application/json is 415 and spends no key', async (t) => {
  const kme = await start(t);
  // ETSI GS QKD 014's OpenAPI takes request bodies as application/json only (curl -d sends a form's type, fetch
  // text/plain): it was accepted, so a client that a strict KME refuses passed here.
  const storedBefore = await stored(kme);
  for (const type of ['application/x-www-form-urlencoded', 'text/plain;charset=UTF-8', '']) {
    const r = await send(encUrl(kme), { method: 'POST', sae: MASTER, body: '{"number": 1}', headers: { 'content-type': type } });
    t.equal(r.status, 415, `a body sent as '${type}': 415`);
    t.match(r.body.message, /must be sent as Content-Type: application\/json/);
  }
  const asForm = await send(decUrl(kme), { method: 'POST', sae: SLAVE, body: '{"key_IDs": []}', headers: { 'content-type': 'text/plain' } });
  t.equal(asForm.status, 415, 'dec_keys too');
  for (const type of ['application/json; charset=utf-8', 'Application/JSON']) {
    const r = await send(encUrl(kme), { method: 'POST', sae: MASTER, body: '{"number": 1}', headers: { 'content-type': type } });
    t.equal(r.status, 200, `'${type}' is JSON`);
  }
  t.equal((await send(encUrl(kme), { method: 'POST', sae: MASTER, body: '', headers: { 'content-type': 'text/plain' } })).status, 200, 'an empty body (the defaults) needs no type');
  t.equal(await stored(kme), storedBefore - 3, 'the refused requests spent no key');
});

t.test('400 with an Error body for each invalid input; nothing consumed', async (t) => {
  const kme = await start(t, { initialKeyCount: 100, minKeySize: 64, maxKeySize: 1024, maxKeysPerRequest: 8 });
  const before = await stored(kme);
  const someKey = (await encPost(kme, {})).body.keys[0].key_ID; // one real pending key for the dec_keys cases
  const encPosts: [string, unknown][] = [
    ['number 0', { number: 0 }],
    ['number negative', { number: -1 }],
    ['number not a number', { number: 'abc' }],
    ['number as a string', { number: '5' }],
    ['number fractional', { number: 1.5 }],
    ['number null', { number: null }],
    ['number above max_key_per_request', { number: 9 }],
    ['size 0', { size: 0 }],
    ['size negative', { size: -256 }],
    ['size not a number', { size: 'big' }],
    ['size not a multiple of 8', { size: 100 }],
    ['size below min_key_size', { size: 56 }],
    ['size above max_key_size', { size: 1032 }],
    ['additional_slave_SAE_IDs duplicates', { additional_slave_SAE_IDs: ['x', 'x'] }],
    ['additional_slave_SAE_IDs empty string', { additional_slave_SAE_IDs: [''] }],
    ['additional_slave_SAE_IDs contains the slave', { additional_slave_SAE_IDs: [SLAVE] }],
    ['additional_slave_SAE_IDs contains the master', { additional_slave_SAE_IDs: [MASTER] }],
    ['additional_slave_SAE_IDs not strings', { additional_slave_SAE_IDs: [1] }],
    ['additional_slave_SAE_IDs beyond max_SAE_ID_count 0', { additional_slave_SAE_IDs: ['third-sae'] }],
    ['unsupported extension_mandatory', { extension_mandatory: [{ abc_route_type: 'direct' }] }],
    ['extension_optional not objects', { extension_optional: ['x'] }],
    ['body is an array', [1, 2]],
  ];
  for (const [name, body] of encPosts) {
    const r = await encPost(kme, body);
    t.equal(r.status, 400, `enc_keys POST: ${name}`);
    t.type(r.body?.message, 'string', `${name}: Error body has a message (${r.body?.message})`);
  }
  const mandatory = await encPost(kme, { extension_mandatory: [{ abc_route_type: 'direct' }] });
  t.same(mandatory.body.details, [{ extension: 'abc_route_type' }], 'details name the unsupported extension');

  const malformed = await send(encUrl(kme), { method: 'POST', sae: MASTER, body: '{"number": 1' });
  t.equal(malformed.status, 400, 'malformed JSON');
  t.match(malformed.body.message, /not valid JSON/);

  for (const q of ['?number=0', '?number=-1', '?number=abc', '?number=1.5', '?number=', '?number=9', '?number=1&number=2', '?size=100', '?size=0', '?size=2048', '?size=x']) {
    const r = await send(encUrl(kme, q), { sae: MASTER });
    t.equal(r.status, 400, `enc_keys GET ${q}`);
    t.type(r.body?.message, 'string');
  }

  const decBodies: [string, unknown][] = [
    ['key_ID not a UUID', { key_IDs: [{ key_ID: 'not-a-uuid' }] }],
    ['key_IDs empty', { key_IDs: [] }],
    ['key_IDs missing', {}],
    ['key_IDs not an array', { key_IDs: someKey }],
    ['key_ID missing in an item', { key_IDs: [{}] }],
    ['key_IDs duplicated', { key_IDs: [{ key_ID: someKey }, { key_ID: someKey }] }],
    ['too many key_IDs', { key_IDs: Array.from({ length: 9 }, () => ({ key_ID: someKey })) }],
  ];
  for (const [name, body] of decBodies) {
    const r = await send(decUrl(kme), { method: 'POST', sae: SLAVE, body: JSON.stringify(body) });
    t.equal(r.status, 400, `dec_keys POST: ${name}`);
    t.type(r.body?.message, 'string');
  }
  t.equal((await send(decUrl(kme), { sae: SLAVE })).status, 400, 'dec_keys GET without key_ID');
  t.equal((await send(decUrl(kme, '?key_ID=1234'), { sae: SLAVE })).status, 400, 'dec_keys GET with a non-UUID key_ID');

  t.equal((await send(`${kme.master.url}/api/v1/keys//status`, { sae: MASTER })).status, 400, 'blank SAE ID in the path');
  t.equal((await send(`${kme.master.url}/api/v1/keys/%20/enc_keys`, { sae: MASTER })).status, 400, 'whitespace SAE ID in the path');
  t.equal((await send(`${kme.master.url}/api/v1/keys/%E0%A4%A/status`, { sae: MASTER })).status, 400, 'broken percent-encoding');
  const same = await send(`${kme.master.url}/api/v1/keys/${MASTER}/enc_keys`, { sae: MASTER });
  t.equal(same.status, 400, 'master == slave');
  t.match(same.body.message, /must differ/);
  t.equal((await send(`${kme.slave.url}/api/v1/keys/${SLAVE}/dec_keys?key_ID=${someKey}`, { sae: SLAVE })).status, 400, 'dec_keys naming the slave as master');

  t.equal(await stored(kme), before - 1, 'only the one valid request took key material');
  t.equal((await decPost(kme, [someKey])).status, 200, 'the pending key survived every bad request');
});

t.test('401 for an unidentified or unauthorised SAE', async (t) => {
  const kme = await start(t);
  const cases: [string, string, string | undefined, string?][] = [
    ['no X-SAE-ID', statusUrl(kme), undefined],
    ['unknown caller', statusUrl(kme), 'mallory'],
    ['the slave SAE at the master KME', encUrl(kme), SLAVE],
    ['the master SAE at the slave KME', decUrl(kme, '?key_ID=00000000-0000-4000-8000-000000000000'), MASTER],
    ['a link to an unknown slave', `${kme.master.url}/api/v1/keys/other-sae/enc_keys`, MASTER],
    ['a link to an unknown master', `${kme.slave.url}/api/v1/keys/other-sae/dec_keys?key_ID=00000000-0000-4000-8000-000000000000`, SLAVE],
    ['enc_keys at the slave KME', `${kme.slave.url}/api/v1/keys/${MASTER}/enc_keys`, SLAVE],
    ['dec_keys at the master KME', `${kme.master.url}/api/v1/keys/${SLAVE}/dec_keys?key_ID=00000000-0000-4000-8000-000000000000`, MASTER],
  ];
  for (const [name, url, sae] of cases) {
    const r = await send(url, { sae });
    t.equal(r.status, 401, name);
    t.type(r.body?.message, 'string', `${name}: ${r.body?.message}`);
  }
  t.equal(kme.stats().issued, 0, 'no key left the store');
});

t.test('bad requests never break it or its counts', async (t) => {
  const kme = await start(t, { maxBodyBytes: 1024, initialKeyCount: 10 });
  const r404 = await send(`${kme.master.url}/api/v2/keys/${SLAVE}/status`, { sae: MASTER });
  t.equal(r404.status, 404, 'unknown path');
  t.type(r404.body.message, 'string');
  t.equal((await send(`${kme.master.url}/`, { sae: MASTER })).status, 404, 'root');
  t.equal((await send(`${kme.master.url}/api/v1/keys/${SLAVE}/other`, { sae: MASTER })).status, 404, 'unknown operation');

  const put = await send(encUrl(kme), { method: 'PUT', sae: MASTER, body: '{}' });
  t.equal(put.status, 405, 'PUT enc_keys');
  t.equal(put.headers.allow, 'GET, POST');
  const postStatus = await send(statusUrl(kme), { method: 'POST', sae: MASTER, body: '{}' });
  t.equal(postStatus.status, 405, 'POST status');
  t.equal(postStatus.headers.allow, 'GET');
  t.equal((await send(decUrl(kme), { method: 'DELETE', sae: SLAVE })).status, 405, 'DELETE dec_keys');

  const big = await send(encUrl(kme), { method: 'POST', sae: MASTER, body: JSON.stringify({ number: 1, pad: 'x'.repeat(2000) }) });
  t.equal(big.status, 413, 'a body over maxBodyBytes');

  // A body that announces 10 MB: answered at once, without reading it.
  const announced = await new Promise<number>((resolve, reject) => {
    const req = httpRequest(encUrl(kme), { method: 'POST', agent: false, headers: { 'x-sae-id': MASTER, 'content-length': String(10_000_000) } }, (res) => {
      resolve(res.statusCode ?? 0);
      res.resume();
      req.destroy();
    });
    req.on('error', reject);
    req.write('{"number":');
  });
  t.equal(announced, 413, 'a 10 MB Content-Length');

  // A chunked body that grows past the limit.
  const chunked = await new Promise<number>((resolve, reject) => {
    const req = httpRequest(encUrl(kme), { method: 'POST', agent: false, headers: { 'x-sae-id': MASTER } }, (res) => {
      resolve(res.statusCode ?? 0);
      res.resume();
      req.destroy();
    });
    req.on('error', reject);
    req.write(Buffer.alloc(4096, 0x20));
  });
  t.equal(chunked, 413, 'a chunked body over the limit');

  // A client that sends half a request and disappears.
  await new Promise<void>((resolve) => {
    const req = httpRequest(encUrl(kme), { method: 'POST', agent: false, headers: { 'x-sae-id': MASTER, 'content-length': '100' } });
    req.on('error', () => resolve());
    req.write('{"num', () => {
      req.destroy();
      resolve();
    });
  });

  t.equal(await stored(kme), 10, 'no key material was taken');
  const ok = await encPost(kme, { number: 2 });
  t.equal(ok.status, 200, 'and it still serves');
  t.equal(ok.body.keys.length, 2);
  t.equal(await stored(kme), 8);
  t.equal(kme.stats().issued, 2);
});

t.test('the log reports each request without key material', async (t) => {
  const events: KmeLogEvent[] = [];
  const kme = await start(t, { log: (e) => events.push(e) });
  const enc = await encPost(kme, { number: 2 });
  await decPost(kme, [enc.body.keys[0].key_ID]);
  await encPost(kme, { size: 100 });
  t.match(events, [
    { type: 'request', kmeId: 'KME-A', method: 'POST', path: `/api/v1/keys/${SLAVE}/enc_keys`, callerSaeId: MASTER, status: 200, keyCount: 2 },
    { type: 'request', kmeId: 'KME-B', method: 'POST', path: `/api/v1/keys/${MASTER}/dec_keys`, callerSaeId: SLAVE, status: 200, keyCount: 1 },
    { type: 'request', kmeId: 'KME-A', status: 400, keyCount: 0, message: /multiple of 8/ },
  ]);
  const logged = JSON.stringify(events);
  for (const k of enc.body.keys) t.notOk(logged.includes(k.key), 'no key in the log');
});

t.test('options are checked', async (t) => {
  await t.rejects(startKmeSimulator({ insecureHttp: true, host: '0.0.0.0' }), /only allowed on loopback/, 'plain HTTP off loopback');
  await t.rejects(startKmeSimulator({}), /choose mutual TLS/, 'no transport chosen');
  await t.rejects(startKmeSimulator({ insecureHttp: true, keySize: 100 }), /multiple of 8/);
  await t.rejects(startKmeSimulator({ insecureHttp: true, keySize: 2048, maxKeySize: 1024 }), /minKeySize <= keySize <= maxKeySize/);
  await t.rejects(startKmeSimulator({ insecureHttp: true, masterSaeId: 'x', slaveSaeId: 'x' }), /must differ/);
  await t.rejects(startKmeSimulator({ insecureHttp: true, rateBitsPerSecond: -1 }), /non-negative/);
});

t.test('close() stops both KMEs and wipes what they hold', async (t) => {
  const kme = await startKmeSimulator({ insecureHttp: true, rateBitsPerSecond: 0, initialKeyCount: 5 });
  await encPost(kme, {});
  await kme.close();
  t.equal(kme.stats().pendingKeyCount, 0, 'pending keys dropped');
  await t.rejects(send(statusUrl(kme), { sae: MASTER }), { code: 'ECONNREFUSED' }, 'master KME closed');
  await t.rejects(send(decUrl(kme), { sae: SLAVE }), { code: 'ECONNREFUSED' }, 'slave KME closed');
});

t.test('mutual TLS with generated certificates', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'qkd-kme-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const kme = await startKmeSimulator({ certsDir: dir, rateBitsPerSecond: 0, initialKeyCount: 10, now: () => 0 });
  t.teardown(() => kme.close());
  t.equal(kme.createdFiles.length, 5, 'CA, two KME and two SAE certificates created');
  t.match(kme.master.url, /^https:\/\/127\.0\.0\.1:\d+$/);
  t.equal(((await stat(join(dir, 'ca.key'))).mode & 0o777).toString(8), '600', 'private keys are 0600');

  const creds = kme.credentials!;
  const master = new Etsi014Client({ baseUrl: kme.master.url, ca: creds.ca, cert: creds.saes[MASTER].cert, key: creds.saes[MASTER].key, retries: 0 });
  const slave = new Etsi014Client({ baseUrl: kme.slave.url, ca: creds.ca, cert: creds.saes[SLAVE].cert, key: creds.saes[SLAVE].key, retries: 0 });
  t.teardown(() => (master.close(), slave.close()));

  t.equal((await master.status(SLAVE)).stored_key_count, 10, 'status over mutual TLS');
  const keys = await master.encKeys(SLAVE, { number: 2, size: 256 });
  const same = await slave.decKeys(MASTER, keys.map((k) => k.keyId));
  t.same(same, keys, 'the slave gets the same keys, identified by its certificate');

  // The SAE is its certificate: the slave's certificate at the master KME is refused.
  const wrong = new Etsi014Client({ baseUrl: kme.master.url, ca: creds.ca, cert: creds.saes[SLAVE].cert, key: creds.saes[SLAVE].key, retries: 0 });
  t.teardown(() => wrong.close());
  await t.rejects(wrong.encKeys(SLAVE), { name: 'Etsi014Error', reason: 'unauthorized', status: 401 });

  // The X-SAE-ID header means nothing over TLS.
  const headerOnly = await new Promise<number>((resolve, reject) => {
    import('node:https').then(({ request }) => {
      const req = request(`${kme.master.url}/api/v1/keys/${SLAVE}/status`, { ca: creds.ca, cert: creds.saes[SLAVE].cert, key: creds.saes[SLAVE].key, headers: { 'x-sae-id': MASTER }, agent: false }, (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      });
      req.on('error', reject);
      req.end();
    }, reject);
  });
  t.equal(headerOnly, 401, 'a header cannot override the certificate');

  // No client certificate: the TLS handshake is refused.
  const anonymous = new Etsi014Client({ baseUrl: kme.master.url, ca: creds.ca, retries: 0 });
  t.teardown(() => anonymous.close());
  const err = await anonymous.status(SLAVE).then(
    () => undefined,
    (e: unknown) => e,
  );
  t.ok(err instanceof Etsi014Error, 'a client without a certificate fails');
  t.match((err as Etsi014Error).reason, /^(tls|connection)$/, `refused in the handshake: ${(err as Error).message}`);

  // A certificate from another CA is refused as well.
  const other = await makeKmeCertificates({ kmeIds: [], saeIds: [MASTER] });
  const stranger = new Etsi014Client({ baseUrl: kme.master.url, ca: creds.ca, cert: other.saes[MASTER].cert, key: other.saes[MASTER].key, retries: 0 });
  t.teardown(() => stranger.close());
  await t.rejects(stranger.status(SLAVE), { name: 'Etsi014Error', reason: /^(tls|connection)$/ }, 'a client certificate from another CA fails');
  t.ok(kme.stats().tlsErrors >= 2, 'the KME counted the refused handshakes');

  // The client checks the KME too: a client trusting another CA refuses the KME.
  const distrust = new Etsi014Client({ baseUrl: kme.master.url, ca: other.ca, cert: creds.saes[MASTER].cert, key: creds.saes[MASTER].key, retries: 0 });
  t.teardown(() => distrust.close());
  await t.rejects(distrust.status(SLAVE), { name: 'Etsi014Error', reason: 'tls' }, 'an untrusted KME certificate fails');
});

t.test('certificates are reused on the next start, and given ones are used', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'qkd-kme-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const first = await startKmeSimulator({ certsDir: dir, rateBitsPerSecond: 0 });
  const ca = first.credentials!.ca;
  await first.close();
  const second = await startKmeSimulator({ certsDir: dir, rateBitsPerSecond: 0 });
  t.teardown(() => second.close());
  t.same(second.createdFiles, [], 'nothing regenerated');
  t.equal(second.credentials!.ca, ca, 'same CA');

  const third = await startKmeSimulator({ certsDir: dir, rateBitsPerSecond: 0, masterSaeId: 'new-sae' });
  t.teardown(() => third.close());
  t.same(third.createdFiles, [join(dir, 'sae-new-sae.crt')], 'only the new SAE certificate is made');

  const given = await makeKmeCertificates({ kmeIds: ['KME-A', 'KME-B'], saeIds: [MASTER] });
  const fourth = await startKmeSimulator({ certificates: given, rateBitsPerSecond: 0 });
  t.teardown(() => fourth.close());
  const c = new Etsi014Client({ baseUrl: fourth.master.url, ca: given.ca, cert: given.saes[MASTER].cert, key: given.saes[MASTER].key, retries: 0 });
  t.teardown(() => c.close());
  t.equal((await c.status(SLAVE)).source_KME_ID, 'KME-A', 'given certificates serve');
  await t.rejects(startKmeSimulator({ certificates: await makeKmeCertificates({ kmeIds: ['KME-A'], saeIds: [] }) }), /no server certificate for KME 'KME-B'/);
});

t.test('each SAE gets a certificate naming itself, even when two SAE IDs map to the same file name', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'qkd-kme-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const cn = (pem: string) => new X509Certificate(pem).toLegacyObject().subject.CN;
  const ids = ['alice@A', 'alice_A', 'alice A'];
  const set = await ensureKmeCertificates(dir, { kmeIds: ['KME-A'], saeIds: ids });
  for (const id of ids) t.equal(cn(set.saes[id].cert), id, `the certificate for '${id}' names '${id}'`);
  t.equal(new Set(ids.map((id) => set.saes[id].certFile)).size, ids.length, 'one file each');
  t.equal(set.saes.alice_A.certFile, join(dir, 'sae-alice_A.crt'), 'a file-safe ID keeps its plain file name');

  // A certificate file that names another SAE (copied, or left by an older naming) is not reused.
  for (const ext of ['crt', 'key']) await copyFile(join(dir, `sae-alice_A.${ext}`), join(dir, `sae-bob.${ext}`));
  const again = await ensureKmeCertificates(dir, { kmeIds: ['KME-A'], saeIds: ['bob'] });
  t.equal(cn(again.saes.bob.cert), 'bob', 'remade for the SAE it is for');
  t.same(again.created, [join(dir, 'sae-bob.crt')]);
});

t.test('qkd-tls kme: command-line options', async (t) => {
  const d = parseKmeArgs([]);
  t.match(d, { json: false, help: false, options: { host: '127.0.0.1', masterPort: 8443, slavePort: 8444 } });
  t.match(d.options.certsDir, /kme-certs$/, 'mutual TLS by default, certificates in ./kme-certs');
  t.notOk(d.options.insecureHttp);

  const all = parseKmeArgs([
    '--listen', '[::1]:0', '--rate', '512', '--key-size', '128', '--min-key-size', '8', '--max-key-size', '2048', '--max-keys', '9',
    '--max-keys-per-request', '3', '--initial-keys', '2', '--insecure-http', '--master-sae', 'A', '--slave-sae', 'B',
    '--master-kme', 'K1', '--slave-kme', 'K2', '--json',
  ]);
  t.match(all, {
    json: true,
    options: {
      host: '::1', masterPort: 0, slavePort: 0, rateBitsPerSecond: 512, keySize: 128, minKeySize: 8, maxKeySize: 2048, maxKeyCount: 9,
      maxKeysPerRequest: 3, initialKeyCount: 2, insecureHttp: true, masterSaeId: 'A', slaveSaeId: 'B', masterKmeId: 'K1', slaveKmeId: 'K2',
    },
  });
  t.equal(all.options.certsDir, undefined);
  t.equal(parseKmeArgs(['--listen', '0.0.0.0:9000', '--slave-port', '9100']).options.slavePort, 9100);
  t.ok(parseKmeArgs(['-h']).help);
  t.throws(() => parseKmeArgs(['--listen', 'nohost']), /HOST:PORT/);
  t.throws(() => parseKmeArgs(['--rate', 'fast']), /--rate wants a whole number/);
  t.throws(() => parseKmeArgs(['--listen', '127.0.0.1:65535']), /--slave-port/);
  t.throws(() => parseKmeArgs(['--bogus']), /Unknown option/);
  for (const opt of ['--listen', '--slave-port', '--rate', '--key-size', '--min-key-size', '--max-key-size', '--max-keys', '--max-keys-per-request', '--initial-keys', '--certs', '--insecure-http', '--master-sae', '--slave-sae', '--master-kme', '--slave-kme', '--json', '--help']) {
    t.ok(HELP.includes(opt), `--help documents ${opt}`);
  }
});
