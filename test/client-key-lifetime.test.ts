/**
 * Client-side key lifetime in the command line's key sources (bin/cli/key-source.ts): no copy of a key is left
 * behind where nothing wipes it. Each test's comment says where the code broke this before the fix.
 */
import { once } from 'node:events';
import * as net from 'node:net';
import t from 'tap';
import { run as runClient } from '../bin/commands/client.js';
import { parseKeySource } from '../bin/cli/key-source.js';
import { fromHex } from '../lib/codec/bytes.js';
import { Etsi014Client } from '../lib/qkd/etsi014-client.js';
import { answerJson, stubKme } from './helpers/kme-stub.js';
import { withTimeout } from './helpers/peers.js';

t.test('--psk leaves no copy of the key in Node\'s shared Buffer pool', async (t) => {
  // bin/cli/key-source.ts decoded --psk with Buffer.from(hex, 'hex'), whose 32 bytes come from Node's shared pool
  // (8 KiB slabs that later small Buffers reuse), and kept a copy: the decoded bytes stayed in the pool, unwiped.
  // Expected: the key's bytes appear nowhere in the current pool slab (the key we compare with is not in it:
  // fromHex makes a fresh array).
  const hex = 'c0ffee' + '5a'.repeat(26) + 'beef';
  const key = fromHex(hex);
  const slab = (): Buffer => Buffer.from(Buffer.allocUnsafe(1).buffer); // a view of the pool's current slab
  const before = slab().buffer;
  const keys = parseKeySource({ psk: [hex], identity: ['k1'] }, { role: 'client' });
  t.teardown(() => keys.close());
  const after = slab();
  t.equal(after.buffer, before, 'the same slab as before parsing (no rollover hid a copy)');
  t.equal(after.indexOf(key), -1, 'no copy of the key in the Buffer pool');
  const [psk] = await keys.clientPsks();
  t.same(psk.secret, key, 'the key itself is the one given');
});

t.test('qkd-tls client: a key the KME would deliver after the connection failed is never delivered, or wiped', async (t) => {
  // The open item of the server-side audit: `qkd-tls client` releases its keys on 'close', so a key that arrived
  // after a connect error was thought to be left unwiped. What covers it: on 'close' the client also closes its key
  // source, which rejects the pending take (no key is handed out after that), wipes any key that still arrives,
  // and (since c17d00b) aborts the enc_keys call, dropping its answer. This pins all three: the connection is
  // refused while the KME holds its answer until the client has exited.
  const delivered: Uint8Array[] = [];
  const settled: Promise<unknown>[] = [];
  const encKeys = Etsi014Client.prototype.encKeys;
  Etsi014Client.prototype.encKeys = function (this: Etsi014Client, ...args: Parameters<typeof encKeys>) {
    const call = encKeys.apply(this, args).then((keys) => {
      delivered.push(...keys.map((k) => k.key));
      return keys;
    });
    settled.push(call.catch(() => {}));
    return call;
  };
  t.teardown(() => {
    Etsi014Client.prototype.encKeys = encKeys;
  });
  let exited!: () => void;
  const clientExited = new Promise<void>((r) => (exited = r));
  const kme = await stubKme(t, (_req, res) => {
    void clientExited.then(() => {
      if (res.writable) answerJson(res, 200, { keys: [{ key_ID: '00000000-0000-4000-8000-000000000001', key: Buffer.alloc(32, 0x5a).toString('base64') }] });
    });
  });
  const refused = await closedPort();
  const code = await runClient(['--connect', `127.0.0.1:${refused}`, '--kme', kme.url, '--sae-id', 'client-sae', '--peer-sae-id', 'server-sae', '--kme-timeout', '60000']);
  t.equal(code, 1, 'the connection failed');
  exited();
  t.equal(settled.length, 1, 'the client had asked its KME for a key');
  await withTimeout(Promise.all(settled), 10_000, 'the enc_keys call to end');
  t.ok(delivered.every((k) => k.every((b) => b === 0)), `no key left unwiped (${delivered.length} delivered)`);
  t.equal(delivered.length, 0, 'none delivered: the call was cancelled when the client closed its key source');
});

/** A loopback port with nobody listening: a connection to it is refused. */
async function closedPort(): Promise<number> {
  const probe = net.createServer().listen(0, '127.0.0.1');
  await once(probe, 'listening');
  const port = (probe.address() as net.AddressInfo).port;
  await new Promise((r) => probe.close(r));
  return port;
}
