/**
 * What a connection does with bytes it cannot act on yet or any more: it buffers a bounded amount while it
 * waits for an asynchronous PSK lookup, and it ignores whatever follows the peer's close_notify (RFC 8446 §6.1).
 *
 * Each test pins a fault an independent review found; its comment quotes the rule and says where the code
 * broke it before the fix.
 */
import t from 'tap';
import { concat } from '../lib/codec/bytes.js';
import { ContentType } from '../lib/codec/enums.js';
import { Connection } from '../lib/connection/connection.js';
import { nodeProvider } from '../lib/crypto/node.js';
import type { Deframer } from '../lib/record/deframer.js';
import { connectedWithKeyLogs, errorsOf, makePsk, plainRecord } from './helpers/pair.js';

const crypto = nodeProvider;

/** Both sides connected, with both key logs. */
const connected = () => connectedWithKeyLogs(crypto);

t.test('the server bounds what it buffers while it waits for an asynchronous PSK lookup', async (tt) => {
  // While a `psk-request` is outstanding, receive() pushes every byte into the deframer and processes nothing
  // (connection.ts:134, 245: `paused`), and the Node transport keeps reading the socket (node.ts:319): a client
  // can make the server hold any amount of memory for the duration of the key-manager lookup (up to the 30 s
  // handshake timeout). The only records legitimately in flight then are a change_cipher_spec and 0-RTT data,
  // which the server will skip only up to max(maxEarlyDataSize, 64 KiB) anyway. Expected: the buffered amount is
  // bounded (here: at most 256 KiB), or the connection fails.
  const psk = makePsk('f6');
  const client = Connection.client({ crypto, psks: [psk] });
  const server = Connection.server({ crypto });
  server.receive(client.takeOutput()!);
  tt.ok(server.pskRequest, 'the server waits for the PSK lookup');
  const junk = plainRecord(ContentType.application_data, new Uint8Array((1 << 14) + 17));
  for (let i = 0; i < 256; i++) server.receive(junk); // 4 MiB
  const buffered = (server as unknown as { deframer: Deframer }).deframer.buffered;
  tt.ok(server.phase === 'failed' || buffered <= 256 * 1024, `buffered while waiting: ${buffered} bytes (phase ${server.phase})`);
});

t.test('bytes received after close_notify are ignored', async (tt) => {
  // RFC 8446 §6.1: "Any data received after a closure alert has been received MUST be ignored."
  // handleRecord ignores whole records after close_notify, but process() still runs the deframer, whose header
  // checks throw (connection.ts:245-249, deframer.ts:55, :75): the connection then sends an alert and reports
  // an error after a clean closure. Expected: no error, no alert, the connection stays half-closed.
  for (const [name, trailing] of [
    ['an unknown content type byte', new Uint8Array([0xff, 0xff, 0xff, 0xff, 0xff, 0xff])],
    ['a record header over 2^14 + 256', new Uint8Array([0x17, 0x03, 0x03, 0xff, 0xff])],
  ] as const) {
    const { p } = connected();
    p.server.close();
    const closeNotify = p.server.takeOutput()!;
    p.client.receive(concat(closeNotify, trailing));
    const events = p.client.takeEvents();
    tt.ok(events.some((e) => e.type === 'end'), `${name}: the close_notify is seen`);
    tt.same(errorsOf(events).map((e) => e.message), [], `${name}: no error after close_notify`);
    tt.equal(p.client.takeOutput(), null, `${name}: no alert sent`);
    tt.not(p.client.phase, 'failed', `${name}: not failed`);
  }
});
