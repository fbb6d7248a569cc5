/**
 * A ClientHello whose extensions fill their 16-bit length (RFC 8446 §4.1.2: extensions<8..2^16-1>), with a
 * serverName as long as fits: our own server takes it (a handshake message over 2^16 bytes of body).
 */
import t from 'tap';
import { concat } from '../lib/codec/bytes.js';
import { Reader } from '../lib/codec/reader.js';
import { MAX_SERVER_NAME_BYTES, type ClientOptions } from '../lib/config/options.js';
import { Connection } from '../lib/connection/connection.js';
import { nobleProvider } from '../lib/crypto/noble.js';
import { decodeClientHello } from '../lib/messages/hello.js';
import { handshake, makePsk } from './helpers/pair.js';

const crypto = nobleProvider;
/** The length of the extensions block of the first ClientHello these options make. */
function extensionsLength(options: Omit<ClientOptions, 'crypto'>): number {
  const c = Connection.client({ crypto, ...options });
  const out = c.takeOutput()!;
  c.destroy();
  // The ClientHello's records (a long one spans several): each a 5-byte header, then a fragment.
  const fragments: Uint8Array[] = [];
  for (let at = 0; at < out.length; ) {
    const length = (out[at + 3] << 8) | out[at + 4];
    fragments.push(out.subarray(at + 5, at + 5 + length));
    at += 5 + length;
  }
  const ch = decodeClientHello(concat(...fragments));
  const r = new Reader(ch.raw, 4);
  r.bytes(2 + 32, 'version, random');
  r.vec8('legacy_session_id');
  r.bytes(2 + 2 * ch.cipherSuites.length, 'cipher_suites');
  r.vec8('compression');
  return r.u16('extensions length');
}

const psk = makePsk('client1');
/** One group: no HelloRetryRequest can ask for a larger key share than the first ClientHello carries. */
const base = { psks: [psk], groups: ['x25519'] } as const;

t.test('the longest serverName that fits: a handshake with our own server', (tt) => {
  // The extensions of a ClientHello with a 1-byte name, then as many bytes more as their length has room for.
  const longest = 1 + 0xffff - extensionsLength({ ...base, serverName: 'a' });
  tt.ok(longest < MAX_SERVER_NAME_BYTES, `the longest name that fits (${longest}) is below MAX_SERVER_NAME_BYTES`);
  const name = 'a'.repeat(longest);
  tt.equal(extensionsLength({ ...base, serverName: name }), 0xffff, 'the extensions are exactly 65535 bytes');

  const p = handshake({ crypto, ...base, serverName: name }, { crypto, psks: [psk] });
  tt.equal(p.client.phase, 'connected', 'the client completes the handshake');
  tt.equal(p.server.phase, 'connected', 'our own server takes the ClientHello (over 2^16 bytes of body)');
  tt.equal(p.server.handshake?.serverName, name, 'and sees the whole name');
  tt.end();
});
