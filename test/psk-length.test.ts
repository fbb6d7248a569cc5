/**
 * RFC 9257 §6: "Each PSK ... MUST be at least 128 bits long". A shorter secret falls to an offline search
 * against one recorded binder. Before, a client's `psks`, a server's static list and whatever a server's lookup
 * answered were used whatever their length (a 2-byte key completed a handshake); now they are refused unless
 * `dangerouslyAllowShortPsks` is set.
 */
import t from 'tap';
import { utf8 } from '../lib/codec/bytes.js';
import { Connection } from '../lib/connection/connection.js';
import { nodeProvider } from '../lib/crypto/node.js';
import { MIN_PSK_BYTES, type Psk } from '../lib/psk/types.js';
import { handshake } from './helpers/pair.js';

const crypto = nodeProvider;
const psk = (bytes: number, identity = 'short'): Psk => ({ identity: utf8(identity), secret: new Uint8Array(bytes).fill(7), hash: 'SHA-256' });

t.test('a PSK is at least 16 bytes (the constant)', async (tt) => {
  tt.equal(MIN_PSK_BYTES, 16);
});

t.test('client: a PSK secret shorter than 128 bits is a TypeError when the connection is made', async (tt) => {
  tt.throws(() => Connection.client({ crypto, psks: [psk(15)] }), { name: 'TypeError', message: /at least 128 bits long \(RFC 9257 §6\), got 120 bits/ });
  // Any configured PSK, not only the first.
  tt.throws(() => Connection.client({ crypto, psks: [psk(32, 'a'), psk(2, 'b')] }), TypeError, 'a short second PSK');
  tt.doesNotThrow(() => Connection.client({ crypto, psks: [psk(16)] }), '16 bytes is enough');
  tt.doesNotThrow(() => Connection.client({ crypto, psks: [psk(2)], dangerouslyAllowShortPsks: true }), 'the opt-out');
});

t.test('server: a static PSK list with a short secret is a TypeError when the connection is made', async (tt) => {
  tt.throws(() => Connection.server({ crypto, psks: [psk(32, 'a'), psk(8, 'b')] }), { name: 'TypeError', message: /server: a PSK must be at least 128 bits long \(RFC 9257 §6\), got 64 bits/ });
  tt.doesNotThrow(() => Connection.server({ crypto, psks: [psk(16)] }));
  tt.doesNotThrow(() => Connection.server({ crypto, psks: [psk(2)], dangerouslyAllowShortPsks: true }), 'the opt-out');
});

t.test('server: a resolver or an asynchronous lookup answering a short PSK fails the handshake (PskTooShort, handshake_failure)', async (tt) => {
  const short = psk(2);
  const client = { crypto, psks: [short], dangerouslyAllowShortPsks: true };
  // A synchronous resolver.
  let p = handshake(client, { crypto, psks: () => [short] });
  tt.equal(p.error('server')?.reason, 'PskTooShort', 'server: named reason');
  tt.equal(p.error('server')?.alert, 'handshake_failure', 'server: alert sent');
  tt.match(p.error('server')?.message, /RFC 9257 §6/);
  tt.equal(p.error('client')?.alert, 'handshake_failure', 'client: alert received');
  tt.equal(p.error('client')?.remote, true);
  tt.equal(p.server.phase, 'failed');

  // An asynchronous lookup (providePsks), as the Node transport's AsyncPskResolver answers.
  p = handshake(client, { crypto });
  p.server.providePsks([short]);
  p.pump();
  tt.equal(p.error('server')?.reason, 'PskTooShort', 'providePsks: named reason');
  tt.equal(p.error('client')?.alert, 'handshake_failure', 'providePsks: client received handshake_failure');

  // The opt-out on the server lets it through: the handshake completes with a 2-byte key.
  p = handshake(client, { crypto, psks: () => [short], dangerouslyAllowShortPsks: true });
  tt.equal(p.client.phase, 'connected', `opt-out: client connected (${p.error('client')?.message ?? ''})`);
  tt.equal(p.server.phase, 'connected', 'opt-out: server connected');

  // A resolver answering 16 bytes is fine.
  const ok = psk(16, 'ok');
  p = handshake({ crypto, psks: [ok] }, { crypto, psks: () => [ok] });
  tt.equal(p.server.phase, 'connected', '16 bytes from a resolver');
});
