/**
 * The ETSI GS QKD 014 client on fetch (lib/qkd/etsi014-fetch.ts), run here with Node's own fetch against the
 * key manager simulator: the same keys reach both SAEs, answers are checked as the Node client checks them
 * (shared code in etsi014-api.ts), failures carry the same reasons; and the simulator's CORS answers, which
 * let a page on loopback (and only there) call it.
 */
import { createServer } from 'node:http';
import t from 'tap';
import { Etsi014Error, Etsi014FetchClient } from '../lib/qkd/etsi014-fetch.js';
import { startKmeSimulator, type KmeSimulator } from '../lib/tools/kme/simulator.js';

/** What a promise rejected with (or a note that it did not). */
function failure(p: Promise<unknown>): Promise<unknown> {
  return p.then(
    () => 'it did not fail',
    (e: unknown) => e,
  );
}

async function kme(tt: Parameters<Parameters<typeof t.test>[0]>[0]): Promise<KmeSimulator> {
  const k = await startKmeSimulator({ insecureHttp: true, initialKeyCount: 20, rateBitsPerSecond: 0 });
  tt.teardown(() => k.close());
  return k;
}

t.test('enc_keys on the master KME, dec_keys by ID on the slave KME: the same keys, each once', async (t) => {
  const k = await kme(t);
  const master = new Etsi014FetchClient({ baseUrl: k.master.url, saeId: k.master.saeId });
  const slave = new Etsi014FetchClient({ baseUrl: k.slave.url, saeId: k.slave.saeId });
  const status = await master.status(k.master.peerSaeId);
  t.match(status, { source_KME_ID: 'KME-A', key_size: 256, stored_key_count: 20 }, 'status');
  const keys = await master.encKeys(k.master.peerSaeId, { number: 2, size: 256 });
  t.equal(keys.length, 2, 'two keys');
  t.ok(keys.every((x) => x.key.length === 32), 'of 256 bits');
  const same = await slave.decKeys(k.slave.peerSaeId, [keys[1].keyId, keys[0].keyId], { method: 'GET' });
  t.same(same.map((x) => x.keyId), [keys[1].keyId, keys[0].keyId], 'dec_keys (GET) in the order asked');
  t.same(same.map((x) => Buffer.from(x.key).toString('hex')), [keys[1], keys[0]].map((x) => Buffer.from(x.key).toString('hex')), 'the same key material');
  const again = await slave.decKeys(k.slave.peerSaeId, [keys[0].keyId]).catch((e: unknown) => e);
  t.ok(again instanceof Etsi014Error, 'a key is delivered once');
  t.match(again, { reason: 'bad_request', status: 400, operation: 'dec_keys' }, 'then 400, reason bad_request');
});

t.test('failures carry the reasons of the Node client', async (t) => {
  const k = await kme(t);
  const stranger = new Etsi014FetchClient({ baseUrl: k.master.url, saeId: 'someone-else', retries: 0 });
  t.match(await failure(stranger.encKeys(k.master.peerSaeId)), { reason: 'unauthorized', status: 401 }, 'an SAE the KME does not serve: 401');
  const down = new Etsi014FetchClient({ baseUrl: 'http://127.0.0.1:1', saeId: 'x', retries: 1, retryDelayMs: 1, timeoutMs: 3000 });
  t.match(await failure(down.status('y')), { reason: 'connection', attempts: 2 }, 'a KME that is down: connection, retried');
  const liar = new Etsi014FetchClient({
    baseUrl: 'http://127.0.0.1:9',
    saeId: 'x',
    fetch: async () => new Response(JSON.stringify({ keys: [{ key_ID: 'not-a-uuid', key: 'AAAA' }] }), { status: 200 }),
  });
  t.match(await failure(liar.encKeys('y')), { reason: 'invalid_response' }, 'a malformed key container: invalid_response');
  // An application's fetch may reject with anything (lib/callbacks.ts): `(e as Error).message` threw a TypeError
  // out of the retry loop for undefined, instead of the KME failure it is.
  for (const thrown of [undefined, 'offline', 42]) {
    const odd = new Etsi014FetchClient({ baseUrl: 'http://127.0.0.1:9', saeId: 'x', retries: 0, fetch: () => Promise.reject(thrown) });
    const e = await failure(odd.encKeys('y'));
    t.match(e, { reason: 'connection', attempts: 1 }, `a fetch rejecting with ${String(thrown)}: connection`);
    t.match((e as Error).message, new RegExp(`: ${String(thrown)}$`), 'its message says what the fetch rejected with');
  }
  t.throws(() => new Etsi014FetchClient({ baseUrl: 'http://kme.example:80' }), /only allowed to a loopback KME/, 'plain HTTP off loopback is refused');
});

t.test('a redirect from the KME is not followed, as by the Node client: keys come only from the KME named', async (t) => {
  // fetch follows redirects by default: an https KME (or whatever answers in its name) could send the key
  // request to any URL, plain HTTP off loopback included, past the check the constructor makes on baseUrl.
  const k = await kme(t);
  const redirector = createServer((req, res) => {
    res.writeHead(307, { location: `${k.master.url}${req.url}` });
    res.end();
  });
  await new Promise<void>((resolve) => redirector.listen(0, '127.0.0.1', resolve));
  t.teardown(() => redirector.close());
  const baseUrl = `http://127.0.0.1:${(redirector.address() as { port: number }).port}`;
  for (const fetchInit of [undefined, { redirect: 'follow' as const }]) {
    const client = new Etsi014FetchClient({ baseUrl, saeId: k.master.saeId, retries: 0, ...(fetchInit ? { fetchInit } : {}) });
    t.match(await failure(client.encKeys(k.master.peerSaeId)), { reason: 'http_status', operation: 'enc_keys' }, `refused${fetchInit ? ' (also when fetchInit asks to follow)' : ''}`);
  }
  t.equal(k.stats().issued, 0, 'no key was issued through the redirect');
});

t.test('the simulator answers CORS for loopback pages only', async (t) => {
  const k = await kme(t);
  const url = `${k.master.url}/api/v1/keys/${k.master.peerSaeId}/enc_keys`;
  const preflight = (origin: string) =>
    fetch(url, { method: 'OPTIONS', headers: { origin, 'access-control-request-method': 'POST', 'access-control-request-headers': 'content-type, x-sae-id' } });
  const ok = await preflight('http://127.0.0.1:8080');
  t.equal(ok.status, 204, 'a preflight from a loopback page: 204');
  t.equal(ok.headers.get('access-control-allow-origin'), 'http://127.0.0.1:8080', 'that origin is allowed');
  t.match(ok.headers.get('access-control-allow-headers'), /x-sae-id/, 'with the X-SAE-ID header');
  const far = await preflight('https://attacker.example');
  t.equal(far.status, 403, 'a preflight from any other origin: 403');
  t.equal(far.headers.get('access-control-allow-origin'), null, 'without CORS headers');
  const keys = await fetch(url, { method: 'POST', headers: { origin: 'https://attacker.example', 'x-sae-id': k.master.saeId, 'content-type': 'application/json' }, body: '{}' });
  t.equal(keys.headers.get('access-control-allow-origin'), null, 'a real answer to another origin carries no CORS header (a browser hides it)');
  t.equal(k.stats().storedKeyCount, 19, 'no preflight touched the key store (only the one POST took a key)');
});

t.test('fetchInit.headers are sent in every form fetch takes (a Headers or a list of pairs was dropped)', async (t) => {
  const forms: [string, RequestInit['headers']][] = [
    ['a record', { 'x-extra': 'yes' }],
    ['a Headers', new Headers({ 'x-extra': 'yes' })],
    ['a list of pairs', [['x-extra', 'yes']]],
  ];
  for (const [form, headers] of forms) {
    let sent: Headers | undefined;
    const client = new Etsi014FetchClient({
      baseUrl: 'http://127.0.0.1:9',
      saeId: 'sae-a',
      retries: 0,
      fetchInit: { headers },
      fetch: async (_url, init) => {
        sent = new Headers(init?.headers);
        return new Response(JSON.stringify({ keys: [] }), { status: 200 });
      },
    });
    await client.status('sae-b').catch(() => {});
    t.equal(sent?.get('x-extra'), 'yes', `${form}: the extra header is sent`);
    t.equal(sent?.get('x-sae-id'), 'sae-a', `${form}: and the client's own`);
  }
});

t.test('a baseUrl with a user name and password: refused when the client is made, and no failure message quotes URL credentials', async (t) => {
  // Node's fetch rejects "Request cannot be constructed from a URL that includes credentials: <the URL>", so the
  // password was in the message (and the cause) of every failure, and in the logs that print it; Deno's names the URL
  // in its cause. Such a baseUrl is now refused at once (fetch would refuse every request), without quoting it.
  const secret = 's3cr3t-pw';
  for (const baseUrl of [`https://sae:${secret}@127.0.0.1:9`, `https://${secret}@127.0.0.1:9`, new URL(`https://sae:${secret}@127.0.0.1:9/kme/`)]) {
    let thrown: unknown;
    try {
      new Etsi014FetchClient({ baseUrl, retries: 0 });
    } catch (e) {
      thrown = e;
    }
    t.type(thrown, TypeError, `${String(baseUrl).replace(secret, '***')}: a TypeError`);
    t.match((thrown as Error).message, /^Etsi014FetchClient: baseUrl must not hold a user name or password \(fetch refuses such a URL\): https:\/\/127\.0\.0\.1:9; /, 'saying why, with the origin');
    t.notMatch((thrown as Error).message, secret, 'without the password');
  }
  const denoLike = new Etsi014FetchClient({
    baseUrl: 'https://127.0.0.1:9',
    retries: 0,
    fetch: () =>
      Promise.reject(
        new TypeError(`fetch failed (https://sae:${secret}@127.0.0.1:9/)`, {
          // (Its password straddles the 500th character, where a cause is clipped.)
          cause: new Error(`${'x'.repeat(480)}: (https://sae:${secret}@127.0.0.1:9/api/v1/keys/peer/enc_keys?number=1)`),
        }),
      ),
  });
  const d = await failure(denoLike.encKeys('peer'));
  t.match(d, { message: /^cannot reach the KME at https:\/\/127\.0\.0\.1:9 for enc_keys \(1 attempt\(s\)\): fetch failed \(https:\/\/127\.0\.0\.1:9\/\): x+: \(https:\/\/127\.0\.0[.\d]*\.\.\.$/ }, 'URLs in the message and its cause: said without them');
  t.notMatch((d as Error).message, secret.slice(0, 4), 'no part of the password, though the cause is longer than a clipped one');
});
