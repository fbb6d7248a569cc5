/**
 * drain() and close() against connections in the phases where the proxy waits on something other than a socket:
 * a client service's connection whose key (a QKD key: ETSI 014 enc_keys) has not arrived yet. The drain deadline
 * must end it (the application is reset, the line logged "shutdown") and drain() must resolve then, not when the
 * Key Manager answers (a KME that hangs holds a request for up to its timeout, --kme-timeout, or for good with a
 * key source of the library's user); a key that arrives after the connection was cut is handed back (wiped), unused.
 */
import * as net from 'node:net';
import t from 'tap';
import type { ProxyKeySource } from '../lib/proxy/proxy.js';
import type { Psk } from '../lib/psk/types.js';
import { backend, echo, onEndOrError, PSK, proxyPair, waitUntil } from './proxy-helpers.js';

const LOCAL = '127.0.0.1';

/** A client key source that answers only when the test opens its gate, as a slow or hung Key Manager does. */
function gatedKeys(): { keys: ProxyKeySource; open: () => void; taken: () => number; released: Psk[][] } {
  let open!: () => void;
  const gate = new Promise<void>((r) => (open = r));
  let taken = 0;
  const released: Psk[][] = [];
  const keys: ProxyKeySource = {
    clientPsks: async () => {
      taken++;
      await gate;
      return [{ ...PSK, secret: Uint8Array.from(PSK.secret) }];
    },
    server: [PSK],
    description: 'gated test PSK',
    release: (psks) => {
      released.push([...psks]);
    },
  };
  return { keys, open, taken: () => taken, released };
}

function endOf(s: net.Socket): Promise<string> {
  return new Promise((resolve) =>
    onEndOrError(
      s,
      () => resolve('end'),
      (e) => resolve((e as NodeJS.ErrnoException).code ?? e.message),
    ),
  );
}

/** Resolves with 'settled' if `p` settles within `ms`, else with 'pending' (a liveness bound, not a speed check). */
function within(p: Promise<unknown>, ms: number): Promise<'settled' | 'pending'> {
  let timer: NodeJS.Timeout | undefined;
  const bound = new Promise<'pending'>((r) => (timer = setTimeout(() => r('pending'), ms)));
  return Promise.race([p.then(() => 'settled' as const), bound]).finally(() => clearTimeout(timer));
}

for (const how of ['close', 'drain deadline'] as const) {
  t.test(`${how}: a connection still waiting for its key is cut at once, logged once, and the late key is released unused`, async (t) => {
    const b = await backend(t, echo);
    const g = gatedKeys();
    t.teardown(() => g.open());
    const pair = await proxyPair(t, b.port, { client: { keys: g.keys } });
    const app = net.connect({ host: LOCAL, port: pair.port, allowHalfOpen: true });
    const appEnd = endOf(app);
    await waitUntil(() => g.taken() === 1, 'the proxy to ask for a key');
    const stopped = how === 'close' ? pair.client.close() : pair.client.drain(50);
    t.equal(await appEnd, 'ECONNRESET', 'the application is reset');
    // The key source has not answered, and will not until the test opens the gate: drain() must not wait for it.
    t.equal(await within(stopped, 10_000), 'settled', `${how} resolves while the key source still has not answered`);
    t.same(
      pair.clientLog.records.map((r) => r.end),
      ['shutdown'],
      'one line, "shutdown"',
    );
    t.equal(pair.client.stats().active, 0);
    g.open();
    await waitUntil(() => g.released.length === 1, 'the late key to be released');
    t.equal(pair.clientLog.records.length, 1, 'still one line once the key came');
    t.equal(pair.serverLog.records.length, 0, 'the late key was never used: no connection reached the server proxy');
  });
}
