/**
 * bench/framing-only.ts, the no-TLS transfer that `qkd-tls bench --runtimes` reports next to the offloaded one: it
 * moves every byte (sealed and opened by WebCrypto, in order: a record opened with the wrong nonce or header
 * fails, and the transfer with it), with any number of records in flight. Nothing here depends on speed.
 */
import t from 'tap';
import { framingOnlyTransfer } from '../bench/framing-only.js';

for (const inFlight of [1, 3, 8]) {
  t.test(`the no-TLS transfer moves every byte (${inFlight} records in flight)`, async (t) => {
    const { amount, ms } = await framingOnlyTransfer(1_000_000, inFlight, () => performance.now());
    t.equal(amount, 16 * 65_536, 'sixteen 64 KiB writes, read back in full');
    t.ok(ms > 0);
  });
}
