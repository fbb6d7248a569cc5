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
import type { TlsError } from '../lib/errors.js';
import { importedResolver, importPsk, type ExternalPsk } from '../lib/psk/importer.js';
import { serverPskResolver, type ServerKeySource } from '../lib/psk/source.js';
import { MIN_PSK_BYTES, type Psk } from '../lib/psk/types.js';
import { type AsyncPskResolver, createServer } from '../lib/transport/node.js';
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

t.test('RFC 9258 importer: an EPSK under 128 bits is refused (ipskx would hide it from the connection)', async (tt) => {
  const epsk = (bytes: number): ExternalPsk => ({ identity: utf8('qkd-key'), secret: new Uint8Array(bytes).fill(3) });
  tt.throws(() => importPsk(crypto, epsk(15)), { name: 'TypeError', message: /importPsk: the EPSK: a PSK must be at least 128 bits long \(RFC 9257 §6\)/ });
  tt.equal(importPsk(crypto, epsk(16)).length, 2, '16 bytes is enough');
  const shortImported = importPsk(crypto, epsk(4), { dangerouslyAllowShortPsks: true });
  tt.equal(shortImported[0].secret.length, 32, 'the opt-out: ipskx is 32 bytes, whatever the EPSK');

  // A server resolver that imports a short EPSK: PskTooShort, handshake_failure (before, the handshake completed).
  let p = handshake({ crypto, psks: shortImported }, { crypto, psks: importedResolver(crypto, [epsk(4)]) });
  tt.equal(p.error('server')?.reason, 'PskTooShort', 'importedResolver: named reason');
  tt.equal(p.error('client')?.alert, 'handshake_failure', 'importedResolver: the client received handshake_failure');
  p = handshake({ crypto, psks: shortImported }, { crypto, psks: importedResolver(crypto, [epsk(4)], { dangerouslyAllowShortPsks: true }) });
  tt.equal(p.server.phase, 'connected', 'importedResolver with the opt-out');

  // serverPskResolver over a key source: the lookup rejects, and the key it resolved is wiped.
  const resolved = epsk(4);
  const source: ServerKeySource = { description: 'test', resolve: async () => [resolved], close() {} };
  const resolve = serverPskResolver(crypto, source, { importer: {} });
  const failure = await resolve({ identities: [shortImported[0].identity] }).then(() => undefined, (e: unknown) => e);
  tt.equal((failure as TlsError | undefined)?.reason, 'PskTooShort', 'serverPskResolver rejects: PskTooShort');
  tt.ok(resolved.secret.every((b) => b === 0), 'the resolved EPSK is wiped');
});

t.test('createServer: a short static PSK is refused when the server is made, not by each connection once it listens', async (tt) => {
  // (Found by review: the server listened, and every connection failed with tlsClientError.)
  tt.throws(() => createServer({ psks: [psk(8)], crypto }), { name: 'TypeError', message: /server: a PSK must be at least 128 bits long/ });
  tt.throws(() => createServer({ psks: [psk(32)], crypto, suites: ['TLS_NOPE' as never] }), TypeError, 'and any other option a connection refuses');
  const server = createServer({ psks: [psk(16)], crypto });
  tt.ok(server, 'a good one is made');
  const lenient = createServer({ psks: [psk(2)], crypto, dangerouslyAllowShortPsks: true });
  tt.ok(lenient, 'the opt-out');
  // An asynchronous lookup may be called on its own, without the socket the transport passes (AsyncPskResolver).
  const lookup: AsyncPskResolver = async (request) => request.identities.map(() => psk(16));
  tt.equal((await lookup({ identities: [utf8('x')] } as never)).length, 1);
});

t.test('server: a short PSK among the lookup\'s answers is passed over for a usable one, plain or imported', async (tt) => {
  // (Before, a short plain PSK failed the handshake if it came first, while one short imported EPSK failed the
  // whole lookup, even beside a usable one: both now pass over it, and fail only when nothing else is left.)
  const short = psk(4, 'short');
  const good = psk(32, 'good');
  const client = { crypto, psks: [short, good], dangerouslyAllowShortPsks: true };
  let p = handshake(client, { crypto, psks: () => [short, good] });
  tt.equal(p.server.phase, 'connected', `plain: connected (${p.error('server')?.message ?? ''})`);
  tt.equal(p.server.handshake?.identityIndex, 1, 'plain: the usable PSK, the second offered, was selected');

  const epsk = (name: string, bytes: number): ExternalPsk => ({ identity: utf8(name), secret: new Uint8Array(bytes).fill(5) });
  const epsks = [epsk('short-epsk', 4), epsk('good-epsk', 32)];
  const imported = [...importPsk(crypto, epsks[0], { targetKdfs: ['HKDF_SHA256'], dangerouslyAllowShortPsks: true }), ...importPsk(crypto, epsks[1], { targetKdfs: ['HKDF_SHA256'] })];
  p = handshake({ crypto, psks: imported }, { crypto, psks: importedResolver(crypto, epsks) });
  tt.equal(p.server.phase, 'connected', `imported: connected (${p.error('server')?.message ?? ''})`);
  tt.equal(p.server.handshake?.identityIndex, 1, 'imported: the usable EPSK\'s identity was selected');

  // Only short ones: PskTooShort (handshake_failure), both ways.
  p = handshake({ crypto, psks: [short], dangerouslyAllowShortPsks: true }, { crypto, psks: () => [short] });
  tt.equal(p.error('server')?.reason, 'PskTooShort', 'plain, only short: PskTooShort');
  p = handshake({ crypto, psks: imported.slice(0, 1) }, { crypto, psks: importedResolver(crypto, epsks) });
  tt.equal(p.error('server')?.reason, 'PskTooShort', 'imported, only short: PskTooShort');
});

// A PSK of the wrong shape is a TypeError that says which field, when the connection or server is made (found in a
// README walkthrough): `identity: 'alice'` (a string) failed inside the handshake with "body is not a function", a
// string secret was taken as its length in bytes ("got 24 bits"), `hash: 'SHA256'` gave "no PSK usable with the
// configured cipher suites", and no `psks` at all "options.psks is not iterable".
t.test('a PSK of the wrong shape, or no psks, is a TypeError naming what is wrong', async (tt) => {
  const good = psk(32, 'alice');
  const bad = (p: Record<string, unknown>): Psk => p as unknown as Psk;
  const cases: [string, Psk, RegExp][] = [
    ['a string identity', bad({ ...good, identity: 'alice' }), /a PSK's identity is a Uint8Array \(such as new TextEncoder\(\)\.encode\('alice'\)\), got a string of 5 characters/],
    ['a string secret', bad({ ...good, secret: 'abc' }), /a PSK's secret is a Uint8Array, got a string of 3 characters$/],
    ['a hash spelled SHA256', bad({ ...good, hash: 'SHA256' }), /a PSK's hash is 'SHA-256' or 'SHA-384', got the string "SHA256"/],
  ];
  for (const [what, p, message] of cases) {
    tt.throws(() => Connection.client({ crypto, psks: [p] }), { name: 'TypeError', message }, `client: ${what}`);
    tt.throws(() => Connection.server({ crypto, psks: [p] }), { name: 'TypeError', message }, `server: ${what}`);
  }
  tt.throws(() => Connection.client({ crypto } as unknown as Parameters<typeof Connection.client>[0]), { name: 'TypeError', message: /^client: psks is required: an array of PSKs/ }, 'client: no psks');
  tt.doesNotThrow(() => Connection.client({ crypto, psks: [{ ...good, identity: Buffer.from('alice') }] }), 'a Buffer is a Uint8Array');
});

// The secret given as a string (a hex key, a passphrase) is the key: the TypeError, which reaches logs, says what
// it is without quoting it; so does a PSK given as a string instead of an object.
t.test('a PSK of the wrong shape: the message never quotes the secret', async (tt) => {
  const hex = '00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff';
  const withSecret = { identity: utf8('alice'), secret: hex, hash: 'SHA-256' } as unknown as Psk;
  const asString = hex as unknown as Psk;
  const swapped = { identity: hex, secret: utf8('alice'), hash: 'SHA-256' } as unknown as Psk;
  for (const [what, p] of [['a hex secret', withSecret], ['a PSK that is a hex string', asString], ['the key given as the identity', swapped]] as const) {
    for (const make of [() => Connection.client({ crypto, psks: [p] }), () => Connection.server({ crypto, psks: [p] })]) {
      let message = '';
      try {
        make();
      } catch (e) {
        message = (e as Error).message;
      }
      tt.match(message, /a string of 64 characters/, `${what}: what it is`);
      tt.notMatch(message, /0011223344/, `${what}: not the key itself`);
    }
  }
});
