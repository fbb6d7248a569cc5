/**
 * Public API semantics of the sans-IO Connection and the model-1 key sources, as a user calls them: getters that
 * agree with what the methods accept, and keys that serve exactly one handshake.
 */
import t from 'tap';
import { Connection } from '../lib/connection/connection.js';
import { nodeProvider } from '../lib/crypto/node.js';
import { makePsk } from './helpers/pair.js';

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
