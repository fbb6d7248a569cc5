/**
 * Findings of the ETSI GS QKD 014 conformance review of the key-delivery clients (lib/qkd/etsi014-*.ts), each
 * against a stub KME on 127.0.0.1 that answers the way the finding needs:
 *  - an oversized answer is an invalid answer, not a connection failure: never retried (a dec_keys whose answer
 *    arrived has delivered its keys, clause 5.3; asking again got a 400 that hid the real failure);
 *  - so is an answer the HTTP parser refuses (two Content-Length headers, a header section over its bound): it was
 *    "cannot reach the KME", sent four times, and the server key source took the 400 that followed for an unknown key;
 *  - timeoutMs bounds a fetch client's call even when its fetch does not pass the signal on, or answers a body that
 *    does not end with it (both waited without end), and what such a body delivered is wiped;
 *  - enc_keys answers keys of one size, the size of the request (clause 6.2), also when the request leaves the
 *    size to the KME's default;
 *  - a peer SAE ID that URL resolution would drop from the path ('.', '..') is refused before any request;
 *  - the client key source refuses a key size that is not a multiple of 8 bits (clause 6.2) when it is made;
 *  - a KME's error message reaches our error messages with its control characters escaped, also the server key
 *    source's 'refused' event for a key ID the KME does not know (it quoted the KME's text raw).
 */
import t from 'tap';
import { Etsi014Client } from '../lib/qkd/etsi014-client.js';
import { Etsi014FetchClient } from '../lib/qkd/etsi014-fetch.js';
import { MAX_RESPONSE_BYTES } from '../lib/qkd/etsi014-calls.js';
import { Etsi014ClientSource, Etsi014ServerSource, type Etsi014SourceEvent } from '../lib/qkd/etsi014-source.js';
import { answerJson as json, etsi014Failure as failure, stubKme as stub } from './helpers/kme-stub.js';
import { withTimeout } from './helpers/peers.js';
import { WAIT } from './helpers/runtimes.js';

const KEY_ID = '6f0e4a5c-1b2d-4c3e-8f90-a1b2c3d4e5f6';
const KEY_ID_2 = '0b7c1f2e-3d4a-4b5c-9d6e-7f8091a2b3c4';

const clients = {
  node: (baseUrl: string) => new Etsi014Client({ baseUrl, retries: 3, retryDelayMs: 1, maxRetryDelayMs: 2 }),
  fetch: (baseUrl: string) => new Etsi014FetchClient({ baseUrl, retries: 3, retryDelayMs: 1, maxRetryDelayMs: 2 }),
};

for (const [name, make] of Object.entries(clients)) {
  t.test(`${name} client: an answer over the size bound is invalid_response, and dec_keys is not sent again`, async (t) => {
    // The first answer is a 200 too large to read; any further request finds the key delivered (400), as a
    // KME that hands each key out once would answer.
    const { url, seen } = await stub(t, (_req, res, n) => {
      if (n > 1) return json(res, 400, { message: 'key not found: already delivered' });
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(`{"keys":[${' '.repeat(MAX_RESPONSE_BYTES)}]}`);
    });
    const c = make(url);
    t.teardown(() => c.close());
    const e = await failure(c.decKeys('client-sae', [KEY_ID]));
    t.match(e, { reason: 'invalid_response', operation: 'dec_keys', status: 200, attempts: 1 }, e.message);
    t.match(e.message, /larger than/);
    t.equal(seen.requests, 1, 'one request: the key the KME delivered is not asked for again');
  });

  t.test(`${name} client: enc_keys keys of different sizes are an invalid answer (clause 6.2: one size per request)`, async (t) => {
    const keys = [
      { key_ID: KEY_ID, key: Buffer.alloc(32, 1).toString('base64') },
      { key_ID: KEY_ID_2, key: Buffer.alloc(16, 2).toString('base64') },
    ];
    const { url } = await stub(t, (_req, res) => json(res, 200, { keys }));
    const c = make(url);
    t.teardown(() => c.close());
    const e = await failure(c.encKeys('server-sae', { number: 2 }));
    t.match(e, { reason: 'invalid_response', operation: 'enc_keys' }, e.message);
    t.match(e.message, /different sizes/);
    t.notOk(e.message.includes(keys[0].key) || e.message.includes(keys[1].key), 'no key in the message');
  });

  t.test(`${name} client: control characters in a KME's error message are escaped, not printed raw`, async (t) => {
    // An escape sequence that would clear a terminal, a line break that would fake a log line, a bidi override.
    const message = 'no such key\u001b[2J\r\nkey_ID accepted\u202e\u0085';
    const { url } = await stub(t, (_req, res) => json(res, 400, { message }));
    const c = make(url);
    t.teardown(() => c.close());
    const e = await failure(c.decKeys('client-sae', [KEY_ID]));
    t.match(e, { reason: 'bad_request', status: 400 });
    t.notMatch(e.message, /[\u0000-\u001f\u007f-\u009f\u202a-\u202e]/, 'no control character in the message');
    t.match(e.message, 'no such key\\u001b[2J\\u000d\\u000akey_ID accepted\\u202e\\u0085');
    t.equal(e.body?.message, message, 'the KME\'s own body is kept as it was, for a caller that wants it');
  });
}

t.test("the server key source's refusal of a key ID unknown to the KME quotes the KME's message escaped, as the client's errors do", async (t) => {
  // The 'refused' event's message is what `qkd-tls server --kme` and the proxy print (key-refused): it quoted
  // Etsi014Error.kmeMessage, the KME's text as it was, not the escaped one of the error's message.
  const message = 'no such key\u001b[2J\r\nkey_ID accepted\u202e\u0085';
  const { url } = await stub(t, (_req, res) => json(res, 400, { message }));
  const client = new Etsi014Client({ baseUrl: url, retries: 0 });
  const events: Etsi014SourceEvent[] = [];
  const source = new Etsi014ServerSource({ client, ownsClient: true, peerSaeIds: ['client-sae'], onEvent: (e) => events.push(e) });
  t.teardown(() => source.close());
  const out = await source.resolve([new TextEncoder().encode(KEY_ID)]);
  t.same(out, [undefined], 'no key');
  const refused = events.find((e) => e.type === 'refused');
  t.match(refused, { type: 'refused', reason: 'unknown-to-kme' });
  const said = refused?.type === 'refused' ? refused.message : '';
  t.notMatch(said, /[\u0000-\u001f\u007f-\u009f\u202a-\u202e]/, 'no control character in the message');
  t.match(said, 'no such key\\u001b[2J\\u000d\\u000akey_ID accepted\\u202e\\u0085');
});

t.test("a peer SAE ID of '.' or '..' is refused before any request: the URL would lose its {SAE_ID} segment (clause 5.1)", async (t) => {
  // Without the check, '..' sent enc_keys to /api/v1/enc_keys and '.' to /api/v1/keys/enc_keys (RFC 3986 §5.2.4).
  const { url, seen } = await stub(t, (_req, res) => json(res, 200, { keys: [{ key_ID: KEY_ID, key: Buffer.alloc(32, 3).toString('base64') }] }));
  for (const [name, make] of Object.entries(clients)) {
    const c = make(url);
    t.teardown(() => c.close());
    for (const peer of ['.', '..']) {
      await t.rejects(c.encKeys(peer), { name: 'TypeError', message: /cannot be sent as a URL path segment/ }, `${name} client, enc_keys to '${peer}'`);
      await t.rejects(c.decKeys(peer, [KEY_ID]), TypeError, `${name} client, dec_keys from '${peer}'`);
      await t.rejects(c.status(peer), TypeError, `${name} client, status of '${peer}'`);
    }
  }
  t.equal(seen.requests, 0, 'no request left');
});

t.test('Etsi014ClientSource refuses a keySize that is not a multiple of 8 bits (clause 6.2) when it is made, not on each handshake', async (t) => {
  const client = new Etsi014Client({ baseUrl: 'http://127.0.0.1:1' });
  t.teardown(() => client.close());
  for (const keySize of [130, 256.5, Infinity]) {
    t.throws(() => new Etsi014ClientSource({ client, peerSaeId: 'server-sae', keySize, poolSize: 0 }), { name: 'RangeError', message: /multiple of 8 bits/ }, `keySize ${keySize}`);
  }
  const ok = new Etsi014ClientSource({ client, peerSaeId: 'server-sae', keySize: 136, poolSize: 0 });
  ok.close();
  t.pass('136 bits (17 bytes) is accepted');
});

// An answer the HTTP parser refuses: the KME did answer (a 200 carrying a key, with two Content-Length headers; a
// header section over the parser's 16 KiB bound), so it is an invalid answer, not a KME that cannot be reached.
const KEY_B64 = Buffer.alloc(32, 0x5a).toString('base64');
const CONTAINER = JSON.stringify({ keys: [{ key_ID: KEY_ID, key: KEY_B64 }] });
const NOT_HTTP = {
  'two Content-Length headers': `HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: ${CONTAINER.length}\r\ncontent-length: ${CONTAINER.length + 1}\r\n\r\n${CONTAINER}`,
  'a header section over 16 KiB': `HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nx-filler: ${'f'.repeat(20_000)}\r\ncontent-length: ${CONTAINER.length}\r\n\r\n${CONTAINER}`,
};

for (const [name, make] of Object.entries(clients)) {
  for (const [what, raw] of Object.entries(NOT_HTTP)) {
    t.test(`${name} client: a dec_keys answer that is not HTTP (${what}) is invalid_response, not sent again`, async (t) => {
      // The first answer is written raw on the socket; asked again, the KME has delivered that key (400), as a KME
      // that hands each key out once answers (clause 5.3). It was taken for a connection failure ("cannot reach the
      // KME"), sent 4 times, and the server key source read the 400 as a key ID its KME does not know.
      let malformedNext = true;
      const { url, seen } = await stub(t, (_req, res) => {
        if (!malformedNext) return json(res, 400, { message: 'key not found: already delivered' });
        malformedNext = false;
        res.socket!.end(raw);
      });
      const c = make(url);
      t.teardown(() => c.close());
      const e = await failure(c.decKeys('client-sae', [KEY_ID]));
      t.match(e, { reason: 'invalid_response', operation: 'dec_keys', attempts: 1 }, e.message);
      t.match(e.message, /the KME's answer to dec_keys is invalid: it is not HTTP\/1\.1 that can be read \((HPE_|UND_ERR_HEADERS_OVERFLOW)/);
      t.notOk(e.message.includes(KEY_B64), 'no key in the message');
      t.equal(seen.requests, 1, 'one request: the key the KME delivered is not asked for again');

      // The server key source: a KME failure (the handshake fails with handshake_failure), not a key ID its KME does
      // not know (unknown_psk_identity).
      const events: Etsi014SourceEvent[] = [];
      const server = new Etsi014ServerSource({ client: make(url), ownsClient: true, peerSaeIds: ['client-sae'], onEvent: (ev) => events.push(ev) });
      t.teardown(() => server.close());
      malformedNext = true;
      await t.rejects(server.resolve([new TextEncoder().encode(KEY_ID_2)]), /key manager failed for key ID .*not HTTP/);
      t.equal(seen.requests, 2, 'the server source asked once');
      t.same(events.map((ev) => ev.type), ['lookup-failed']);
    });
  }
}

// An application's fetch (Etsi014FetchClientOptions.fetch: a Worker binding's, a wrapper adding headers) is trusted with
// nothing: a wrapper that forgets to pass `signal` on, or a Response it makes itself (whose body no signal ends).
t.test('fetch client: timeoutMs bounds the call when the fetch ignores the signal, or its body does not end with it', { timeout: 20_000 }, async (t) => {
  const kmeThatNeverAnswers = (): Promise<Response> => new Promise<Response>(() => {});
  const forgetful = new Etsi014FetchClient({ baseUrl: 'http://127.0.0.1:1', timeoutMs: 100, fetch: () => kmeThatNeverAnswers() });
  const e1 = await failure(forgetful.encKeys('server-sae'));
  t.match(e1, { reason: 'timeout', operation: 'enc_keys', attempts: 1 }, e1.message);

  // A 200 whose body delivers the start of a key container, then nothing more.
  const start = new TextEncoder().encode(`{"keys":[{"key_ID":"${KEY_ID}","key":"${KEY_B64}"`);
  const stalled = new Etsi014FetchClient({
    baseUrl: 'http://127.0.0.1:1',
    timeoutMs: 100,
    fetch: async () => new Response(new ReadableStream<Uint8Array>({ start: (c) => c.enqueue(start) }), { status: 200 }),
  });
  const e2 = await failure(stalled.decKeys('client-sae', [KEY_ID]));
  t.match(e2, { reason: 'timeout', operation: 'dec_keys', attempts: 1 }, e2.message);
  t.ok(start.every((b) => b === 0), 'the part of the answer read (a key, in base64) is wiped');
});

t.test('fetch client: a Response that comes after the deadline has its body cancelled, not read without end', { timeout: 20_000 }, async (t) => {
  // Regression: readCapped cancelled the body on the signal's 'abort' event, added when the Response came; a fetch
  // that ignores the signal and answers after the deadline found the signal fired already, the listener never ran, and
  // a body that stalls was waited for without end (its connection held) after the call had failed with 'timeout'.
  // (Cancelling before reading would drop what the body held unwiped: it is read, wiped, then the body cancelled.)
  let cancelled: (reason: unknown) => void = () => {};
  const cancel = new Promise<unknown>((r) => (cancelled = r));
  // What the late body holds (the start of a key container), then nothing more.
  const held = new TextEncoder().encode(`{"keys":[{"key_ID":"${KEY_ID}","key":"${KEY_B64}"`);
  let answered: () => void = () => {};
  const answer = new Promise<void>((r) => (answered = r));
  const late = new Etsi014FetchClient({
    baseUrl: 'http://127.0.0.1:1',
    timeoutMs: 100,
    fetch: () =>
      new Promise<Response>((resolve) =>
        setTimeout(() => {
          resolve(new Response(new ReadableStream<Uint8Array>({ start: (c) => c.enqueue(held), cancel: (reason) => cancelled(reason) }), { status: 200 }));
          answered();
        }, 300),
      ),
  });
  const e = await failure(late.encKeys('server-sae'));
  t.match(e, { reason: 'timeout', operation: 'enc_keys', attempts: 1 }, e.message);
  await withTimeout(answer, WAIT, 'the late answer');
  t.ok(await withTimeout(cancel, WAIT, 'the late body to be cancelled'), 'the body of the late answer is cancelled');
  await withTimeout((async () => { while (!held.every((b) => b === 0)) await new Promise((r) => setTimeout(r, 5)); })(), WAIT, 'what the late body held to be wiped');
  t.pass('what it held (a key, in base64) is wiped');
});

t.test('Etsi014ServerSource.close() aborts the dec_keys calls in flight: their handshakes fail at once, a late key is wiped', async (t) => {
  // The lookup ran until the client's own timeout after close() (5 s by default, or for good with an application's
  // client that has none), and its handshake waited with it.
  const late = new Uint8Array(32).fill(7);
  let signal: AbortSignal | undefined;
  let answer: ((keys: { keyId: string; key: Uint8Array }[]) => void) | undefined;
  const client = {
    location: 'http://127.0.0.1:1',
    encKeys: () => Promise.reject(new Error('not used')),
    decKeys: (_sae: string, ids: readonly string[], call: { signal?: AbortSignal } = {}) => {
      signal = call.signal;
      return new Promise<{ keyId: string; key: Uint8Array }[]>((resolve) => (answer = (keys) => resolve(keys)));
    },
    close() {},
  };
  const source = new Etsi014ServerSource({ client: client as unknown as ConstructorParameters<typeof Etsi014ServerSource>[0]['client'], peerSaeIds: ['client-sae'] });
  const lookup = source.resolve([new TextEncoder().encode(KEY_ID)]);
  await new Promise((r) => setImmediate(r));
  t.ok(signal && !signal.aborted, 'the lookup is in flight');
  source.close();
  t.equal(signal?.aborted, true, 'close() aborts it');
  await t.rejects(withTimeout(lookup, WAIT, 'the lookup to end'), { code: 'ERR_QKD_KEY_SOURCE_CLOSED' }, 'its handshake fails at once');
  // A client that answers anyway (this one ignores the signal): the key is wiped, not handed out.
  const again = new Etsi014ServerSource({ client: client as unknown as ConstructorParameters<typeof Etsi014ServerSource>[0]['client'], peerSaeIds: ['client-sae'] });
  const second = again.resolve([new TextEncoder().encode(KEY_ID)]);
  await new Promise((r) => setImmediate(r));
  again.close();
  answer!([{ keyId: KEY_ID, key: late }]);
  await t.rejects(withTimeout(second, WAIT, 'the lookup to end'), { code: 'ERR_QKD_KEY_SOURCE_CLOSED' });
  t.ok(late.every((b) => b === 0), 'the late key is wiped');
});
