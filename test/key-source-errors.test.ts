/**
 * Key sources and the proxy's configuration fail cleanly on bad input: an ETSI 014 source whose SAE ID cannot
 * go in a PSK identity fails take() (no unhandled rejection), so does one whose ETSI client throws at once, answers
 * no list or a key ID that is not a UUID (and the next take() still gets keys), and a malformed config line or key-file line is
 * reported without echoing key material. Each test's comment says where the code broke this before the fix.
 */
import t from 'tap';
import type { Etsi014Client } from '../lib/qkd/etsi014-client.js';
import { Etsi014ClientSource, type Etsi014KeyClient } from '../lib/qkd/etsi014-source.js';
import { parseKeyFile } from '../lib/psk/key-file.js';
import { parseConfig, type ConfigSchema } from '../lib/proxy/config-file.js';

/** Lets every already-settled promise and queued immediate run (no clock involved: the fake KME answers at once). */
async function settleTicks(n = 10): Promise<void> {
  for (let i = 0; i < n; i++) await new Promise<void>((r) => setImmediate(r));
}

/** How a take() settled by the time every settled promise has run: 'N key(s)', the rejection's code and message, or 'pending'. */
async function takeOutcome(source: Etsi014ClientSource): Promise<string> {
  let said = 'pending';
  source.take().then(
    (keys) => (said = `${keys.length} key(s)`),
    (e: { code?: string; message?: string }) => (said = `${e.code}: ${e.message}`),
  );
  await settleTicks();
  return said;
}

t.test('Etsi014ClientSource with an SAE ID that cannot go in an identity fails take() instead of an unhandled rejection', async (t) => {
  // lib/qkd/etsi014-source.ts: hand() calls encodeKeyIdIdentity, which throws for an SAE ID that is not
  // printable ASCII (lib/psk/key-id.ts:635). saeId is never checked in the constructor (:108-131), so the throw
  // happens in pump() inside the encKeys .then callback (:259): an unhandled rejection (a crash under Node's
  // default), the waiting take() never settles, and the keys spliced out of the pool are never wiped.
  // Expected: the constructor rejects the SAE ID, or take() rejects; no unhandled rejection; no key left unwiped.
  const unhandled: unknown[] = [];
  const onUnhandled = (e: unknown): void => void unhandled.push(e);
  process.on('unhandledRejection', onUnhandled);
  t.teardown(() => void process.off('unhandledRejection', onUnhandled));
  const delivered: Uint8Array[] = [];
  const client = {
    baseUrl: new URL('http://127.0.0.1:1'),
    async encKeys(_peer: string, r: { number?: number }) {
      return Array.from({ length: r.number ?? 1 }, (_, i) => {
        const key = new Uint8Array(32).fill(0x5a);
        delivered.push(key);
        return { keyId: `00000000-0000-4000-8000-00000000000${i}`, key };
      });
    },
    close() {},
  } as unknown as Etsi014Client;
  let outcome = 'pending';
  let source: Etsi014ClientSource | undefined;
  try {
    source = new Etsi014ClientSource({ client, peerSaeId: 'server-sae', saeId: 'cli\u00e9nt-sae', poolSize: 0 });
    source.take().then(
      () => (outcome = 'resolved'),
      () => (outcome = 'rejected'),
    );
  } catch {
    outcome = 'constructor-threw';
  }
  await settleTicks();
  source?.close();
  t.not(outcome, 'pending', 'take() settles (or the constructor refuses the SAE ID)');
  t.equal(unhandled.length, 0, 'no unhandled rejection');
  t.ok(delivered.every((k) => k.every((b) => b === 0)), 'every key the KME delivered is wiped');
});

t.test('Etsi014ClientSource: an ETSI client that throws at once, or answers no list, fails that take(); the next ones still get keys', async (t) => {
  // lib/qkd/etsi014-source.ts, fetch(): encKeys was called directly and .then() chained on what it returned. A client
  // (the application's, Etsi014KeyClient) that threw synchronously left its call counted as in flight for good; once
  // maxConcurrentRequests (2) had, pump() sent no enc_keys again and every take() waited forever, the KME up or not.
  // One answering undefined threw in the fulfilment handler: an unhandled rejection, and its take() never settled.
  // Expected: each such call fails its take() (ERR_QKD_KEY_UNAVAILABLE, naming what went wrong), and later take()s
  // get keys once the client answers; no unhandled rejection.
  const unhandled: unknown[] = [];
  const onUnhandled = (e: unknown): void => void unhandled.push(e);
  process.on('unhandledRejection', onUnhandled);
  t.teardown(() => void process.off('unhandledRejection', onUnhandled));
  let calls = 0;
  const client = {
    location: 'http://127.0.0.1:1',
    encKeys(_peer: string, r: { number?: number }) {
      calls++;
      if (calls <= 2) throw new TypeError(`the application's client refused call #${calls}`);
      if (calls === 3) return Promise.resolve(undefined);
      return Promise.resolve(Array.from({ length: r.number ?? 1 }, (_, i) => ({ keyId: `00000000-0000-4000-8000-0000000000${calls}${i}`, key: new Uint8Array(32).fill(calls) })));
    },
    decKeys() {
      throw new Error('not used');
    },
    close() {},
  };
  // (Typed as the ETSI client it pretends to be: a JavaScript caller's client is checked by nothing.)
  const source = new Etsi014ClientSource({ client: client as unknown as Etsi014KeyClient, peerSaeId: 'server-sae', poolSize: 0 });
  t.teardown(() => source.close());
  const outcome = () => takeOutcome(source);
  t.equal(await outcome(), "ERR_QKD_KEY_UNAVAILABLE: could not get a QKD key: the application's client refused call #1");
  t.equal(await outcome(), "ERR_QKD_KEY_UNAVAILABLE: could not get a QKD key: the application's client refused call #2");
  t.equal(await outcome(), 'ERR_QKD_KEY_UNAVAILABLE: could not get a QKD key: the ETSI 014 client answered enc_keys with undefined, not a list of keys');
  t.equal(await outcome(), '1 key(s)', 'the client answers again: so does the source (it waited forever)');
  t.equal(await outcome(), '1 key(s)');
  t.equal(calls, 5, 'one enc_keys per take()');
  t.equal(unhandled.length, 0, 'no unhandled rejection');
});

t.test('Etsi014ClientSource: an answer whose key ID is not a UUID, or whose entry is no key, fails its take() and is wiped', async (t) => {
  // lib/qkd/etsi014-source.ts: the answer went into the pool unchecked (the ETSI clients check key IDs, clause 6.3; an
  // application's client need not), and hand() threw making the identity of a key ID that is not a UUID: inside pump(),
  // in the enc_keys handler, an unhandled rejection; the take() never settled and the key, spliced out of the pool,
  // was never wiped. Expected: that take() fails naming the problem, the answer's keys are wiped, the next take() works.
  const unhandled: unknown[] = [];
  const onUnhandled = (e: unknown): void => void unhandled.push(e);
  process.on('unhandledRejection', onUnhandled);
  t.teardown(() => void process.off('unhandledRejection', onUnhandled));
  const delivered: Uint8Array[] = [];
  const answers: ((key: Uint8Array) => unknown[])[] = [
    (key) => [{ keyId: 'key-1', key }],
    (key) => [{ keyId: '00000000-0000-4000-8000-000000000001', key }, { keyId: '00000000-0000-4000-8000-000000000002', key: 'c2VjcmV0' }],
    (key) => [{ keyId: '00000000-0000-4000-8000-000000000003', key }],
  ];
  const client = {
    location: 'http://127.0.0.1:1',
    async encKeys() {
      const key = new Uint8Array(32).fill(0x5a);
      delivered.push(key);
      return answers[delivered.length - 1](key);
    },
    async decKeys() {
      return [];
    },
    close() {},
  };
  const source = new Etsi014ClientSource({ client: client as unknown as Etsi014KeyClient, peerSaeId: 'server-sae', poolSize: 0 });
  t.teardown(() => source.close());
  const outcome = () => takeOutcome(source);
  t.equal(await outcome(), 'ERR_QKD_KEY_UNAVAILABLE: could not get a QKD key: the KME delivered a key ID that is not a UUID with enc_keys (ETSI GS QKD 014 clause 6.3)');
  t.ok(delivered[0].every((b) => b === 0), 'its key is wiped');
  t.equal(await outcome(), 'ERR_QKD_KEY_UNAVAILABLE: could not get a QKD key: the ETSI 014 client answered enc_keys with an entry that is not a key ({ keyId, key: Uint8Array })');
  t.ok(delivered[1].every((b) => b === 0), 'the key beside it is wiped');
  t.equal(await outcome(), '1 key(s)', 'the next answer is taken');
  t.equal(unhandled.length, 0, 'no unhandled rejection');
});

t.test('a config line written with ":" instead of "=" does not echo the key in the error message', async (t) => {
  // lib/proxy/config-file.ts:118: a line without "=" is quoted (up to 57 characters) in the ConfigError, so
  // `psk: <64 hex digits>` puts 26 bytes of the key into the error that the CLI prints to stderr/journald.
  // Expected: the error names the file, line and problem without repeating the line's value.
  const schema: ConfigSchema = { global: {}, service: { role: { type: 'string' }, psk: { type: 'string', multiple: true }, identity: { type: 'string' } } };
  const key = '0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0';
  let message = '';
  try {
    parseConfig(`[web]\nrole = client\npsk: ${key}\nidentity = web-key\n`, 'proxy.conf', schema);
  } catch (e) {
    message = (e as Error).message;
  }
  t.match(message, /proxy\.conf:3/, 'the error points at the line');
  t.notOk(message.includes(key.slice(0, 16)), `no key material in "${message.replace(/[0-9a-f]{16,}/g, '<hex>')}"`);
});

t.test('a key file line whose key contains a space does not echo half of the key in the error message', async (t) => {
  // lib/psk/key-file.ts: an unrecognised third/fourth field is quoted in the error; a key pasted with a space
  // in the middle makes its second half that field. Expected: the error names the line without the field's value.
  const first = '00112233445566778899aabbccddeeff';
  const second = '8899aabbccddeeff0011223344556677';
  let message = '';
  try {
    parseKeyFile(`client1 ${first} ${second}\n`, 'keys.txt');
  } catch (e) {
    message = (e as Error).message;
  }
  t.match(message, /keys\.txt, line 1/, 'the error points at the line');
  t.notOk(message.includes(second), 'no key material in the error message');
});
