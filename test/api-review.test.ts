/**
 * Public API semantics of the sans-IO Connection and the model-1 key sources, as a user calls them: getters that
 * agree with what the methods accept, and keys that serve exactly one handshake.
 */
import t from 'tap';
import { Connection } from '../lib/connection/connection.js';
import { nodeProvider } from '../lib/crypto/node.js';
import { fromUtf8, utf8 } from '../lib/codec/bytes.js';
import { makePsk, Pair } from './helpers/pair.js';

const crypto = nodeProvider;

t.test('pskRequest is null once the connection failed or was destroyed (providePsks would throw)', async (tt) => {
  for (const end of ['failPskLookup', 'handshakeTimedOut', 'destroy'] as const) {
    const psk = makePsk('api-psk-request');
    const client = Connection.client({ crypto, psks: [psk] });
    const server = Connection.server({ crypto });
    server.receive(client.takeOutput()!);
    tt.ok(server.pskRequest, `${end}: the server waits for the PSK lookup`);
    if (end === 'failPskLookup') server.failPskLookup('the key manager is unreachable');
    else if (end === 'handshakeTimedOut') server.handshakeTimedOut();
    else server.destroy();
    tt.equal(server.pskRequest, null, `${end}: no pending request any more`);
    tt.throws(() => server.providePsks([psk]), Error, `${end}: and providePsks refuses, as documented`);
  }
});

t.test('the client sends the earlyData given at construction, even when the caller reuses its buffer', async (tt) => {
  // 0-RTT data is sent with the first flight and, rejected, sent again after the handshake
  // (resendRejectedEarlyData, RFC 8446 §4.2.10): both must be the bytes given, not what the buffer holds later.
  const psk = makePsk('api-early-data');
  const data = utf8('GET /original');
  const p = new Pair({ crypto, psks: [psk], earlyData: data, resendRejectedEarlyData: true }, { crypto, psks: [psk] });
  data.fill(0x58); // the application reuses its buffer
  p.pump();
  tt.equal(p.client.phase, 'connected');
  tt.ok(p.clientEvents.some((e) => e.type === 'early-data' && e.status === 'rejected'), 'the server rejected the 0-RTT data');
  tt.same(p.received('server').length ? fromUtf8(p.received('server')) : '', 'GET /original', 'the data resent after the handshake is the original');
});
