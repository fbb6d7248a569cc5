/**
 * Backpressure and bounded memory in the I/O layers, found by review: what an application writes must not
 * pile up in memory while the peer does not let it through (a handshake that never completes included).
 */
import t from 'tap';
import { once } from 'node:events';
import * as net from 'node:net';
import { connect } from '../lib/transport/node.js';
import { makePsk } from './helpers/pair.js';

const psk = makePsk('io-backpressure');

t.test('writes made while the handshake is pending get backpressure (a server that never answers)', async (tt) => {
  // A TCP server that reads the ClientHello and never answers it.
  const silent = net.createServer((s) => {
    s.on('error', () => {});
    s.resume();
  });
  silent.listen(0, '127.0.0.1');
  await once(silent, 'listening');
  tt.teardown(() => silent.close());
  const tls = connect({ host: '127.0.0.1', port: (silent.address() as net.AddressInfo).port, psks: [psk], handshakeTimeout: 0 });
  tls.on('error', () => {});
  tt.teardown(() => tls.destroy());
  const chunk = Buffer.alloc(1 << 20);
  let accepted = 0;
  while (accepted < 32 && tls.write(chunk)) accepted++;
  // node:tls holds such writes in the Writable's buffer: write() returns false once past the high-water mark.
  tt.ok(accepted < 32, `write() returned false after ${accepted} MiB (not 32 MiB taken in while nothing can be sent)`);
});
