/**
 * A ClientHello whose extensions would not fit their 16-bit length (RFC 8446 §4.1.2: extensions<8..2^16-1>):
 * serverName near MAX_SERVER_NAME_BYTES, long PSK identities, many ALPN names, alone or together. Each is a
 * TypeError naming the options when the connection is made (never the codec Writer's RangeError, never a byte
 * sent). A serverName longer than a DNS name (RFC 1035 §2.3.4: 253 bytes, labels of 63) needs
 * dangerouslyAllowLongServerName, which these tests set (LONG); the longest one that fits reaches our own server,
 * which reads the whole ClientHello and refuses the name (ServerNameNotHostName, RFC 6066 §3), and a ClientHello
 * as long made with a long PSK identity completes a handshake.
 */
import t from 'tap';
import { concat, utf8 } from '../lib/codec/bytes.js';
import { Reader } from '../lib/codec/reader.js';
import { MAX_SERVER_NAME_BYTES, type ClientOptions } from '../lib/config/options.js';
import { Connection } from '../lib/connection/connection.js';
import { nobleProvider } from '../lib/crypto/noble.js';
import type { Extension } from '../lib/messages/extensions.js';
import { decodeClientHello } from '../lib/messages/hello.js';
import type { Psk } from '../lib/psk/types.js';
import { withWebCryptoKeyShares } from '../lib/crypto/webcrypto.js';
import { settle } from './helpers/key-agreement.js';
import { handshake, makePsk, Pair } from './helpers/pair.js';

const crypto = nobleProvider;
const TOO_LONG = /^client: serverName, ALPN names and PSK identities together make the ClientHello's extensions longer than 65535 bytes/;

/** What Connection.client does with these options: the error it throws (and what it would have sent: nothing). */
function clientError(options: Omit<ClientOptions, 'crypto'>): unknown {
  try {
    Connection.client({ crypto, ...options });
  } catch (e) {
    return e;
  }
  return undefined;
}

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
/** Lets serverName go past the DNS lengths, up to MAX_SERVER_NAME_BYTES: the names here are single labels of up to 65530 bytes. */
const LONG = { dangerouslyAllowLongServerName: true } as const;
/** One group: no HelloRetryRequest can ask for a larger key share than the first ClientHello carries. */
const base = { psks: [psk], groups: ['x25519'], ...LONG } as const;
/** `psk` under an identity of `n` bytes (both sides use it): a ClientHello as long as a long serverName makes it. */
const longIdentity = (n: number): Psk => ({ ...psk, identity: utf8('i'.repeat(n)) });
/** The PSK identity length that makes the first ClientHello's extensions exactly 65535 bytes long. */
const longestIdentity = (): number => 1 + 0xffff - extensionsLength({ psks: [longIdentity(1)], groups: ['x25519'] });

t.test('the longest serverName that fits: sent, and read whole by our server, which refuses it; one byte more: a TypeError', (tt) => {
  // The extensions of a ClientHello with a 1-byte name, then as many bytes more as their length has room for.
  const longest = 1 + 0xffff - extensionsLength({ ...base, serverName: 'a' });
  tt.ok(longest < MAX_SERVER_NAME_BYTES, `the longest name that fits (${longest}) is below MAX_SERVER_NAME_BYTES`);
  const name = 'a'.repeat(longest);
  tt.equal(extensionsLength({ ...base, serverName: name }), 0xffff, 'the extensions are exactly 65535 bytes');

  // Our server reads the whole ClientHello (over 2^16 bytes of body) and finds a name no DNS name can be.
  const p = handshake({ crypto, ...base, serverName: name }, { crypto, psks: [psk] });
  tt.equal(p.error('server')?.reason, 'ServerNameNotHostName', 'our server reads the whole ClientHello and refuses the name');
  tt.match(p.error('server')?.message, /is longer than 253 bytes: not a DNS host name \(RFC 6066 §3\)$/);
  tt.equal(p.error('client')?.alert, 'illegal_parameter', 'the client receives illegal_parameter');
  // A ClientHello as long, made with a PSK identity: the handshake completes.
  const identity = longestIdentity();
  tt.equal(extensionsLength({ psks: [longIdentity(identity)], groups: ['x25519'] }), 0xffff, 'with a long PSK identity: extensions of exactly 65535 bytes');
  const q = handshake({ crypto, psks: [longIdentity(identity)], groups: ['x25519'] }, { crypto, psks: [longIdentity(identity)] });
  tt.equal(q.client.phase, 'connected', 'the client completes the handshake');
  tt.equal(q.server.phase, 'connected', 'our own server takes the ClientHello (over 2^16 bytes of body)');

  const e = clientError({ ...base, serverName: 'a'.repeat(longest + 1) });
  tt.type(e, TypeError, 'one byte more is a TypeError');
  tt.match((e as Error).message, TOO_LONG);
  tt.end();
});

t.test('serverName of MAX_SERVER_NAME_BYTES (65530): a TypeError, not a RangeError', (tt) => {
  const serverName = 'a'.repeat(MAX_SERVER_NAME_BYTES);
  for (const options of [
    { psks: [psk], serverName, ...LONG },
    { ...base, serverName },
    { psks: [psk], serverName, kexModes: ['psk_ke'] as const, ...LONG },
    { psks: [psk], serverName, earlyData: utf8('GET /'), ...LONG },
  ]) {
    const e = clientError(options);
    tt.type(e, TypeError, JSON.stringify({ ...options, psks: undefined, serverName: serverName.length, earlyData: undefined }));
    tt.notOk(e instanceof RangeError);
    tt.match((e as Error).message, TOO_LONG);
  }
  // Without dangerouslyAllowLongServerName, such a name is not a DNS name: refused before the size is looked at.
  const e = clientError({ psks: [psk], serverName });
  tt.type(e, TypeError);
  tt.match((e as Error).message, /^client: serverName: is longer than 253 bytes; /);
  tt.end();
});

t.test('long PSK identities, many ALPN names, and the three together', (tt) => {
  const id = (n: number, c: string): Psk => ({ ...makePsk('x'), identity: utf8(c.repeat(n)) });
  const alpn = (count: number) => Array.from({ length: count }, (_, i) => `${i}`.padStart(200, 'p'));
  const cases: [string, Omit<ClientOptions, 'crypto'>][] = [
    ['one identity of 65535 bytes', { psks: [id(0xffff, 'i')] }],
    ['two identities of 40000 bytes', { psks: [id(40_000, 'i'), id(40_000, 'j')] }],
    ['ALPN: 330 names of 200 bytes (a list over 65535 bytes)', { psks: [psk], alpn: alpn(330) }],
    ['ALPN: 300 names of 200 bytes (a list that fits, extensions that do not)', { psks: [psk], alpn: alpn(300), serverName: 'a'.repeat(6000), ...LONG }],
    ['serverName, ALPN and identities of 20000 bytes each', { psks: [id(20_000, 'i')], alpn: alpn(100), serverName: 'a'.repeat(26_000), ...LONG }],
  ];
  for (const [what, options] of cases) {
    const e = clientError(options);
    tt.type(e, TypeError, what);
    tt.match((e as Error)?.message, TOO_LONG, what);
  }
  // Just under: the same kinds of options that fit together connect (a server name as long as a DNS name can be).
  const dnsLongest = `${'a'.repeat(63)}.`.repeat(4).slice(0, 253);
  const p = handshake({ crypto, psks: [id(40_000, 'i'), psk], alpn: alpn(100), serverName: dnsLongest }, { crypto, psks: [psk], alpn: [alpn(100)[99]] });
  tt.equal(p.client.phase, 'connected', 'options that fit together complete a handshake');
  tt.end();
});

t.test('the second ClientHello: a HelloRetryRequest may ask for a larger key share', (tt) => {
  const groups = ['x25519', 'secp384r1'] as const;
  const longest = 1 + 0xffff - extensionsLength({ psks: [psk], groups, serverName: 'a', ...LONG });
  // The first ClientHello fits with its x25519 share (32 bytes); a second one with the secp384r1 share (97 bytes)
  // that a HelloRetryRequest may ask for would not.
  const e = clientError({ psks: [psk], groups, serverName: 'a'.repeat(longest), ...LONG });
  tt.type(e, TypeError);
  tt.match((e as Error).message, TOO_LONG);
  tt.match((e as Error).message, /second ClientHello, with the key share for secp384r1/);
  tt.end();
});

t.test('dangerousClientHelloExtensions that overflow: the same TypeError, nothing sent', (tt) => {
  const big: Extension = { type: 0x7a7a, data: new Uint8Array(0xfff0) };
  const e = clientError({ psks: [psk], dangerousClientHelloExtensions: (l) => [big, ...l] });
  tt.type(e, TypeError);
  tt.match((e as Error).message, TOO_LONG);
  tt.match((e as Error).message, /dangerousClientHelloExtensions/);
  tt.end();
});

t.test('asynchronous key shares (WebCrypto): the TypeError when the connection is made, before the pause', async (tt) => {
  const web = withWebCryptoKeyShares(nobleProvider);
  let e: unknown;
  try {
    Connection.client({ crypto: web, psks: [psk], serverName: 'a'.repeat(MAX_SERVER_NAME_BYTES), ...LONG });
  } catch (err) {
    e = err;
  }
  tt.type(e, TypeError);
  tt.match((e as Error).message, TOO_LONG);
  // The longest ClientHello that fits (a long PSK identity) still connects through the pause.
  const identity = longestIdentity();
  const p = new Pair({ crypto: web, psks: [longIdentity(identity)], groups: ['x25519'] }, { crypto, psks: [longIdentity(identity)] });
  await settle(p);
  tt.equal(p.client.phase, 'connected');
  tt.equal(p.server.handshake?.identityBytes.length, identity);
});
