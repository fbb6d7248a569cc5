/**
 * Client-side key lifetime in the command line's key sources (bin/cli/key-source.ts): no copy of a key is left
 * behind where nothing wipes it. Each test's comment says where the code broke this before the fix.
 */
import t from 'tap';
import { parseKeySource } from '../bin/cli/key-source.js';
import { fromHex } from '../lib/codec/bytes.js';

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
