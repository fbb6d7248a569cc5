/**
 * Findings of the adversarial review of the QKD key path (the ETSI GS QKD 014 clients, the key sources, the RFC 9258
 * import), each shown against the code before its fix:
 *  - a `ca` for the KME that holds no certificate was taken without a word: an empty one (an empty --kme-ca file)
 *    as no ca at all, so the KME was checked against Node's public CAs instead of the CA named, anything else as an
 *    empty trust store (every request then failed as "self-signed certificate in certificate chain"); likewise an
 *    empty cert or key (an empty --kme-cert or --kme-key file) was taken as none: no client certificate was
 *    presented, and the KME's refusal ("certificate required") was all the user saw;
 *  - the Node client left the check of the KME's certificate to Node's default, which NODE_TLS_REJECT_UNAUTHORIZED=0
 *    turns off: keys were then fetched from a KME whose certificate nobody checked;
 *  - the client key source took a key ID that its KME had delivered before (in an earlier enc_keys answer) as a new
 *    key: a broken or hostile KME that repeats one had one key ID, and its key, serve two handshakes;
 *  - the ETSI clients wiped the bytes of a whole answer (which carries keys, base64) and of an oversized one, but not
 *    those of an answer that failed part way: cut off by the KME, or past the call's deadline;
 *  - a dec_keys whose answer was cut off part way was sent again, and the KME, which had delivered the key with the
 *    lost answer, said 400 "already delivered": the server key source then refused the client's key ID as one its KME
 *    does not know (unknown_psk_identity) where its KME link had failed (handshake_failure).
 */
import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import type { ClientRequest, IncomingMessage } from 'node:http';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { Etsi014Client, type Etsi014Key } from '../lib/qkd/etsi014-client.js';
import { Etsi014FetchClient } from '../lib/qkd/etsi014-fetch.js';
import { Etsi014ClientSource, Etsi014ServerSource, type Etsi014KeyClient, type Etsi014SourceEvent } from '../lib/qkd/etsi014-source.js';
import { encodeKeyIdIdentity } from '../lib/psk/key-id.js';
import { makeKmeCertificates } from '../lib/tools/kme/certificates.js';
import { startKmeSimulator } from '../lib/tools/kme/simulator.js';
import { answerJson, etsi014Failure, stubKme } from './helpers/kme-stub.js';
import { runQkdTls } from './helpers/peers.js';

t.test('Etsi014Client refuses a ca with no certificate (rather than trust other CAs or none) and an empty cert or key', async (t) => {
  const certs = await makeKmeCertificates({ kmeIds: ['KME-A', 'KME-B'], saeIds: ['client-sae', 'server-sae'] });
  const sae = certs.saes['client-sae'];
  const make = (ca: string | Buffer | (string | Buffer)[]) => new Etsi014Client({ baseUrl: 'https://127.0.0.1:9', ca, cert: sae.cert, key: sae.key });
  // Node's own behaviour, the reason for the check: '' counts as no ca (the public CAs), the others as no CA at all.
  t.throws(() => make(''), { name: 'TypeError', message: /ca holds no PEM certificate.*it is empty.*public CAs/ }, 'an empty ca (an empty file)');
  t.throws(() => make(Buffer.alloc(0)), { name: 'TypeError', message: /ca holds no PEM certificate/ }, 'an empty Buffer');
  t.throws(() => make('not a certificate\n'), { name: 'TypeError', message: /ca holds no PEM certificate \(-----BEGIN CERTIFICATE-----\): give/ }, 'text that is no PEM');
  t.throws(() => make(sae.key), { name: 'TypeError', message: /ca holds no PEM certificate/ }, 'a private key given as the ca');
  t.throws(() => make([]), { name: 'TypeError', message: /ca is an empty list/ }, 'an empty list');
  t.throws(() => make([certs.ca, '']), { name: 'TypeError', message: /ca entry #2 holds no PEM certificate/ }, 'an empty entry in a list');
  const damaged = certs.ca.replace(/\n[A-Za-z0-9+/]{8}/, '\n!!!!!!!!');
  t.throws(() => make(damaged), { name: 'TypeError', message: /ca holds a certificate that cannot be read/ }, 'a damaged certificate');

  // An empty client certificate or key is not taken as none (no client certificate: the KME turns the SAE away).
  for (const [what, cert, key] of [['cert', '', sae.key], ['key', sae.cert, ''], ['cert', '', ''], ['key', sae.cert, Buffer.alloc(0)]] as const) {
    t.throws(
      () => new Etsi014Client({ baseUrl: 'https://127.0.0.1:9', ca: certs.ca, cert, key }),
      { name: 'TypeError', message: new RegExp(`^Etsi014Client: ${what} is empty`) },
      `an empty ${what}${cert === '' && key === '' ? ' (and key)' : ''}`,
    );
  }

  // The CA that issued the KME's certificate is taken, as a string, a Buffer or in a list, and works.
  const kme = await startKmeSimulator({ certificates: certs, rateBitsPerSecond: 0, initialKeyCount: 4 });
  t.teardown(() => kme.close());
  // (Also as OpenSSL's TRUSTED CERTIFICATE, `openssl x509 -trustout`, which Node reads as a CA too: its DER with a
  // trust trailer, here an empty one, SEQUENCE {}.)
  const der = Buffer.from(certs.ca.replace(/-----[^-]+-----|\s/g, ''), 'base64');
  const trusted = `-----BEGIN TRUSTED CERTIFICATE-----\n${Buffer.concat([der, Buffer.from([0x30, 0x00])]).toString('base64').replace(/.{64}/g, '$&\n')}\n-----END TRUSTED CERTIFICATE-----\n`;
  for (const ca of [certs.ca, Buffer.from(certs.ca), [certs.ca], trusted]) {
    const c = new Etsi014Client({ baseUrl: kme.master.url, ca, cert: sae.cert, key: sae.key, retries: 0 });
    const status = await c.status('server-sae');
    c.close();
    const as = Array.isArray(ca) ? 'a list' : ca === trusted ? 'a TRUSTED CERTIFICATE' : typeof ca === 'string' ? 'a string' : 'a Buffer';
    t.equal(status.source_KME_ID, 'KME-A', `status over mutual TLS with the ca as ${as}`);
  }
});

t.test('qkd-tls: an empty --kme-ca, --kme-cert or --kme-key file is a usage error, not the public CAs or no certificate', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'qkd-kme-ca-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const certs = await makeKmeCertificates({ kmeIds: ['KME-A'], saeIds: ['a'] });
  const empty = join(dir, 'empty.pem');
  await writeFile(empty, '');
  const cert = join(dir, 'a.crt');
  const key = join(dir, 'a.key');
  await writeFile(cert, certs.saes.a.cert);
  await writeFile(key, certs.saes.a.key);
  const kme = ['--kme', 'https://127.0.0.1:9', '--sae-id', 'a', '--peer-sae-id', 'b'];
  for (const [files, said] of [
    [['--kme-ca', empty], /ca holds no PEM certificate .*it is empty/],
    [['--kme-cert', empty, '--kme-key', key], /cert is empty/],
    [['--kme-cert', cert, '--kme-key', empty], /key is empty/],
  ] as const) {
    const r = await runQkdTls(['client', '--connect', '127.0.0.1:9', ...kme, ...files], { ms: 20_000 });
    t.equal(r.code, 2, `${files[files.indexOf(empty) - 1]} empty: exit code 2`);
    t.match(r.stderr, new RegExp(`^qkd-tls client: --kme: Etsi014Client: ${said.source}`, 'm'), r.stderr.trim());
    t.notMatch(r.stderr, /\n\s+at /, 'no stack trace');
  }
});

t.test('Etsi014Client checks the KME certificate even when NODE_TLS_REJECT_UNAUTHORIZED=0', async (t) => {
  const certs = await makeKmeCertificates({ kmeIds: ['KME-A', 'KME-B'], saeIds: ['client-sae', 'server-sae'] });
  const stranger = await makeKmeCertificates({ kmeIds: ['KME-X'], saeIds: ['someone'] });
  const kme = await startKmeSimulator({ certificates: certs, rateBitsPerSecond: 0, initialKeyCount: 4 });
  t.teardown(() => kme.close());
  const sae = certs.saes['client-sae'];
  // A client that trusts another CA than the one that issued the KME's certificate, as it would see a man in the
  // middle, under the environment variable that turns Node's certificate checks off by default (Node warns once).
  const c = new Etsi014Client({ baseUrl: kme.master.url, ca: stranger.ca, cert: sae.cert, key: sae.key, retries: 0 });
  t.teardown(() => c.close());
  const before = process.env.NODE_TLS_REJECT_UNAUTHORIZED;
  process.env.NODE_TLS_REJECT_UNAUTHORIZED = '0';
  let outcome: Etsi014Key[] | Error;
  try {
    outcome = await c.encKeys('server-sae').catch((e: Error) => e);
  } finally {
    if (before === undefined) delete process.env.NODE_TLS_REJECT_UNAUTHORIZED;
    else process.env.NODE_TLS_REJECT_UNAUTHORIZED = before;
  }
  t.ok(outcome instanceof Error, 'no key from a KME whose certificate the ca did not issue');
  t.match(outcome, { reason: 'tls', message: /self-signed certificate in certificate chain/ });
});

/** A KME (as the client source sees it) that answers each enc_keys call with the keys `answer` makes. */
function scriptedKme(answer: (call: number, n: number) => Etsi014Key[]) {
  const delivered: Etsi014Key[] = [];
  let calls = 0;
  const client: Etsi014KeyClient = {
    location: 'http://127.0.0.1:9',
    encKeys: async (_peer, req = {}) => {
      const keys = answer(++calls, req.number ?? 1);
      delivered.push(...keys);
      return keys;
    },
    decKeys: async () => [],
    close() {},
  };
  return { client, delivered };
}

const KEY_A = '6f0e4a5c-1b2d-4c3e-8f90-a1b2c3d4e5f6';
const KEY_B = '0b7c1f2e-3d4a-4b5c-9d6e-7f8091a2b3c4';

t.test('Etsi014ClientSource refuses a key ID its KME delivered before: one key ID, one handshake', async (t) => {
  // The KME hands out KEY_A, then KEY_A again (as is, then in capitals: a UUID is the same in either case).
  const ids = [KEY_A, KEY_A, KEY_A.toUpperCase(), KEY_B];
  const kme = scriptedKme((call) => [{ keyId: ids[call - 1], key: new Uint8Array(32).fill(call) }]);
  const events: Etsi014SourceEvent[] = [];
  const src = new Etsi014ClientSource({ client: kme.client, peerSaeId: 'server-sae', poolSize: 0, onEvent: (e) => events.push(e) });
  t.teardown(() => src.close());

  const [first] = await src.take();
  t.equal(first.label, KEY_A, 'the first delivery of a key ID is a key');
  await t.rejects(src.take(), { message: new RegExp(`could not get a QKD key: the KME delivered key ID ${KEY_A} with enc_keys again`) }, 'delivered again: refused');
  await t.rejects(src.take(), { message: new RegExp(`key ID ${KEY_A.toUpperCase()} with enc_keys again`) }, 'in capitals: refused');
  t.ok(kme.delivered.slice(1, 3).every((k) => k.key.every((b) => b === 0)), 'the keys of the refused answers are wiped');
  t.ok(first.secret.some((b) => b !== 0), 'the key taken first is left to its handshake');
  const [next] = await src.take();
  t.equal(next.label, KEY_B, 'a new key ID after them is a key again');
  t.same(
    events.filter((e) => e.type === 'fetch-failed').map((e) => e.type === 'fetch-failed' && /again/.test(e.message)),
    [true, true],
    'each refusal is reported',
  );
});

t.test('Etsi014ClientSource refuses an answer that names one key ID twice, from a client that does not check', async (t) => {
  const kme = scriptedKme((call, n) => Array.from({ length: n }, (_, i) => ({ keyId: KEY_B, key: new Uint8Array(32).fill(call * 16 + i + 1) })));
  const src = new Etsi014ClientSource({ client: kme.client, peerSaeId: 'server-sae', poolSize: 0 });
  t.teardown(() => src.close());
  await t.rejects(src.take({ count: 2 }), { message: new RegExp(`key ID ${KEY_B} with enc_keys again`) });
  t.ok(kme.delivered.every((k) => k.key.every((b) => b === 0)), 'both keys wiped');
});

/** The start of a Key container whose key (base64 of 32 bytes of 0x41) is cut off: what an interrupted answer holds. */
const PARTIAL_ANSWER = `{"keys":[{"key_ID":"${KEY_A}","key":"${Buffer.alloc(32, 0x41).toString('base64')}`;

t.test('Node client: the part of an answer read before it failed is wiped (cut off by the KME, past the deadline)', async (t) => {
  // Every chunk of every answer the client reads, as node:http hands it to the client (the same Buffer).
  const seen: Buffer[] = [];
  const onRequest = (message: unknown): void => {
    (message as { request: ClientRequest }).request.on('response', (res: IncomingMessage) => res.on('data', (c: Buffer) => seen.push(c)));
  };
  subscribe('http.client.request.start', onRequest);
  t.teardown(() => unsubscribe('http.client.request.start', onRequest));
  for (const [how, end, reason] of [
    ['cut off', (res: import('node:http').ServerResponse) => setTimeout(() => res.destroy(), 50), 'connection'],
    ['stalled past the deadline', () => {}, 'timeout'],
  ] as const) {
    seen.length = 0;
    const { url } = await stubKme(t, (_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.write(PARTIAL_ANSWER);
      end(res);
    });
    const c = new Etsi014Client({ baseUrl: url, saeId: 'server-sae', retries: 0, timeoutMs: 500 });
    const e = await etsi014Failure(c.decKeys('client-sae', [KEY_A]));
    c.close();
    t.equal(e.reason, reason, `${how}: ${e.message}`);
    t.ok(seen.length > 0 && seen.some((b) => b.length > 0), `${how}: part of the answer was read`);
    t.ok(seen.every((b) => b.every((x) => x === 0)), `${how}: and it is wiped`);
  }
});

t.test('fetch client: the part of an answer read before it failed is wiped', async (t) => {
  for (const [how, ending, timeoutMs, reason] of [
    ['cut off', 'error', 5000, 'connection'],
    ['stalled past the deadline', 'stall', 200, 'timeout'],
  ] as const) {
    const chunk = new TextEncoder().encode(PARTIAL_ANSWER);
    const fetchFn = (async (_url: string, init: RequestInit) => {
      const body = new ReadableStream<Uint8Array>({
        start(ctl) {
          ctl.enqueue(chunk);
          init.signal?.addEventListener('abort', () => ctl.error(init.signal!.reason));
        },
        pull(ctl) {
          if (ending === 'error') ctl.error(new TypeError('terminated: other side closed'));
        },
      });
      return new Response(body, { status: 200, headers: { 'content-type': 'application/json' } });
    }) as unknown as typeof fetch;
    const c = new Etsi014FetchClient({ baseUrl: 'http://127.0.0.1:9', saeId: 'server-sae', retries: 0, timeoutMs, fetch: fetchFn });
    const e = await etsi014Failure(c.decKeys('client-sae', [KEY_A]));
    t.equal(e.reason, reason, `${how}: ${e.message}`);
    t.ok(chunk.every((x) => x === 0), `${how}: the part read is wiped`);
  }
});

for (const [name, make] of [
  ['Node', (baseUrl: string) => new Etsi014Client({ baseUrl, saeId: 'sae', retries: 3, retryDelayMs: 1, maxRetryDelayMs: 2 })],
  ['fetch', (baseUrl: string) => new Etsi014FetchClient({ baseUrl, saeId: 'sae', retries: 3, retryDelayMs: 1, maxRetryDelayMs: 2 })],
] as const) {
  t.test(`${name} client: a dec_keys whose answer is cut off is not sent again (its key left with the lost answer)`, async (t) => {
    // The answer to a first request breaks off after its first bytes; asked again, the KME has delivered that key.
    let cutNext = true;
    const { url, seen } = await stubKme(t, (_req, res) => {
      if (!cutNext) return answerJson(res, 400, { message: 'key not found: already delivered' });
      cutNext = false;
      res.writeHead(200, { 'content-type': 'application/json' });
      res.write(PARTIAL_ANSWER);
      setTimeout(() => res.destroy(), 20);
    });
    const c = make(url);
    t.teardown(() => c.close());
    const e = await etsi014Failure(c.decKeys('client-sae', [KEY_A]));
    t.match(e, { reason: 'connection', operation: 'dec_keys', attempts: 1 }, e.message);
    t.match(e.message, /broke while the answer \(HTTP 200\) arrived/);
    t.equal(seen.requests, 1, 'one request: the key the KME delivered is not asked for again');

    // The server key source: a KME failure (the handshake fails with handshake_failure), not a key ID its KME
    // does not know (unknown_psk_identity).
    const events: Etsi014SourceEvent[] = [];
    const server = new Etsi014ServerSource({ client: make(url), ownsClient: true, peerSaeIds: ['client-sae'], onEvent: (ev) => events.push(ev) });
    t.teardown(() => server.close());
    const before = seen.requests;
    cutNext = true;
    await t.rejects(server.resolve([encodeKeyIdIdentity({ keyId: KEY_B })]), /key manager failed for key ID .*broke while the answer/);
    t.equal(seen.requests, before + 1, 'the server source asked once');
    t.same(events.map((ev) => ev.type), ['lookup-failed']);
  });

  t.test(`${name} client: an enc_keys whose answer is cut off is asked again (new keys; nothing is lost)`, async (t) => {
    const { url, seen } = await stubKme(t, (_req, res, n) => {
      if (n > 1) return answerJson(res, 200, { keys: [{ key_ID: KEY_B, key: Buffer.alloc(32, 9).toString('base64') }] });
      res.writeHead(200, { 'content-type': 'application/json' });
      res.write(PARTIAL_ANSWER);
      setTimeout(() => res.destroy(), 20);
    });
    const c = make(url);
    t.teardown(() => c.close());
    const [k] = await c.encKeys('server-sae');
    t.equal(k.keyId, KEY_B);
    t.equal(seen.requests, 2);
  });
}
