/**
 * A serverPskResolver answer is for one connection: Connection.providePsks wipes its leased keys once the handshake
 * has copied them (6839691). A caller that keeps the answer and hands it to a second connection (a caching wrapper
 * around the resolver) must not get a handshake under the wiped, all-zero key: anyone who names the identity and
 * offers zeros would be authenticated.
 */
import t from 'tap';
import { Connection } from '../lib/connection/connection.js';
import { nobleProvider } from '../lib/crypto/noble.js';
import { TlsError } from '../lib/errors.js';
import { serverPskResolver, StaticKeySource, type ServerKeySource } from '../lib/psk/source.js';
import type { Psk, PskRequest } from '../lib/psk/types.js';
import { makePsk } from './helpers/pair.js';

const psk = makePsk('reuse');

/** Runs one handshake, answering the server's psk-request with `answer`; the server's error, if any. */
async function run(clientPsk: Psk, answer: (r: PskRequest) => Promise<readonly (Psk | undefined)[]>): Promise<{ completed: boolean; serverError?: TlsError }> {
  const client = Connection.client({ crypto: nobleProvider, psks: [clientPsk] });
  const server = Connection.server({ crypto: nobleProvider });
  server.receive(client.takeOutput()!);
  const request = server.takeEvents().find((e) => e.type === 'psk-request');
  if (request?.type !== 'psk-request') throw new Error('no psk-request');
  server.providePsks(await answer(request.request));
  const out = server.takeOutput();
  if (out) client.receive(out);
  const back = client.takeOutput();
  if (back) server.receive(back);
  const events = server.takeEvents();
  const error = events.find((e) => e.type === 'error');
  return {
    completed: events.some((e) => e.type === 'handshake'),
    ...(error?.type === 'error' ? { serverError: error.error as TlsError } : {}),
  };
}

t.test('a serverPskResolver answer handed to a second connection: refused, never a handshake under the wiped key', async (t) => {
  const source = new StaticKeySource([{ identity: psk.identity, secret: psk.secret }]);
  t.teardown(() => source.close());
  const resolve = serverPskResolver(nobleProvider, source);
  let cached: readonly (Psk | undefined)[] | undefined;
  const caching = async (r: PskRequest): Promise<readonly (Psk | undefined)[]> => (cached ??= await resolve(r));

  const first = await run(psk, caching);
  t.ok(first.completed, 'the first connection completes with the real key');

  // An attacker who knows the identity (it is sent in the clear) and offers an all-zero key of the same length.
  const zeros = makePsk('reuse', 'SHA-256', new Uint8Array(psk.secret.length));
  const second = await run(zeros, caching);
  t.notOk(second.completed, 'an all-zero key does not complete a handshake');
  t.equal(second.serverError?.reason, 'PskUnavailable', 'the lookup fails (handshake_failure), not a binder check on a wiped key');
  t.match(second.serverError?.message, /already wiped.*one connection/, 'and says why');

  // The real client is refused the same way, and a fresh answer for each connection works.
  const third = await run(psk, caching);
  t.equal(third.serverError?.reason, 'PskUnavailable', 'the real key is refused too (the answer holds no key any more)');
  t.ok((await run(psk, resolve)).completed, 'one resolver answer per connection: completes');
});

t.test('a PSK array of the caller, handed to several connections, is never wiped nor refused', async (t) => {
  const own = [makePsk('reuse', 'SHA-256', psk.secret.slice())];
  for (const round of [1, 2]) t.ok((await run(psk, async () => own)).completed, `connection ${round} completes`);
  t.ok(own[0].secret.some((b) => b !== 0), 'the caller\'s key is untouched');
});

t.test('a server key source that resolves into the same buffer again, refilled with a new key: the new key is used', async (t) => {
  // As for a client (test/client-released-psk.test.ts): a source may recycle its buffers; after the connection
  // wiped the first answer's key, the buffer refilled with the next key holds a fresh key, not zeros.
  const buffer = new Uint8Array(32);
  const keys = [makePsk('recycled-1'), makePsk('recycled-2')];
  const recycling: ServerKeySource = {
    description: 'one recycled buffer',
    async resolve(identities) {
      return identities.map((id) => {
        const k = keys.find((x) => x.identity.length === id.length && x.identity.every((b, i) => b === id[i]));
        if (!k) return undefined;
        buffer.set(k.secret);
        return { identity: k.identity, secret: buffer };
      });
    },
    close() {},
  };
  const resolve = serverPskResolver(nobleProvider, recycling);
  for (const k of keys) {
    const r = await run(k, resolve);
    t.equal(r.serverError, undefined, `${new TextDecoder().decode(k.identity)}: not refused`);
    t.ok(r.completed, 'the handshake completes');
    t.ok(buffer.every((b) => b === 0), 'the connection wiped the buffer');
  }
});
