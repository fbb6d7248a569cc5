/**
 * Public API semantics of the sans-IO Connection and the model-1 key sources, as a user calls them: getters that
 * agree with what the methods accept, and keys that serve exactly one handshake.
 */
import t from 'tap';
import { Connection } from '../lib/connection/connection.js';
import { MAX_SERVER_NAME_BYTES, serverNameProblem } from '../lib/config/options.js';
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

t.test('a cipher suite, key-exchange mode or group listed twice is a TypeError (RFC 8446 §4.2.8: one key share per group)', async (tt) => {
  // (Found by review: groups ['x25519', 'x25519'] sent two key shares for one group, which §4.2.8 forbids, and
  // 256 modes made the ClientHello's encoder throw a RangeError.)
  const psks = [makePsk('api-twice')];
  for (const make of [(o: object) => Connection.client({ crypto, psks, ...o }), (o: object) => Connection.server({ crypto, psks, ...o })]) {
    tt.throws(() => make({ groups: ['x25519', 'secp256r1', 'x25519'] }), { name: 'TypeError', message: /group x25519 is listed twice/ });
    tt.throws(() => make({ kexModes: ['psk_ke', 'psk_ke'] }), { name: 'TypeError', message: /key-exchange mode psk_ke is listed twice/ });
    tt.throws(() => make({ suites: ['TLS_AES_128_GCM_SHA256', 'TLS_AES_128_GCM_SHA256'] }), { name: 'TypeError', message: /cipher suite TLS_AES_128_GCM_SHA256 is listed twice/ });
    tt.doesNotThrow(() => make({ groups: ['x25519', 'secp256r1'], kexModes: ['psk_dhe_ke', 'psk_ke'] }), 'each once');
  }
});

t.test('serverName is an ASCII DNS host name (one trailing dot allowed), never an IP address (RFC 6066 §3, RFC 1035 §2.3.4)', async (tt) => {
  // (Found in interop work: raw UTF-8 got illegal_parameter from GnuTLS 3.7; the rest RFC 6066 §3 forbids too.)
  const psks = [makePsk('api-sni')];
  for (const [name, problem] of [
    ['bücher.example', /contains "ü" \(U\+00FC\), which is not ASCII; .*A-label form/],
    ['a b', /contains a space; a server name is a DNS host name/],
    ['a\tb', /contains a control character \(U\+0009\)/],
    ['example.com/x', /contains "\/"/],
    ['host:443', /contains ":" \(a port does not go in a server name\)/],
    ['beef:443', /contains ":" \(a port does not go in a server name\)/], // not "an IP address"
    ['example.com..', /has an empty label/],
    ['.', /has an empty label/],
    ['a..example', /has an empty label/],
    ['.example', /has an empty label/],
    // RFC 1035 §2.3.4: labels of at most 63 bytes, names of at most 253 (255 on the wire).
    [`${'a'.repeat(64)}.example`, /has a label of 64 bytes \("aaaaaaaaaaaaaaaa\.\.\."\), longer than 63; /],
    [`${'a'.repeat(63)}.`.repeat(4).slice(0, 254), /is longer than 253 bytes; /],
    [`${`${'a'.repeat(63)}.`.repeat(4).slice(0, 254)}.`, /is longer than 253 bytes; /],
    // RFC 952, RFC 1123 §2.1 (and rustls' DnsName): a label starts and ends with a letter or digit (they were accepted).
    ['-kme.example', /^client: serverName: has a label that starts with "-" \("-kme"\); /],
    ['kme.-example', /has a label that starts with "-" \("-example"\); /],
    ['kme-.example', /^client: serverName: has a label that ends with "-" \("kme-"\); /],
    ['kme.example-', /has a label that ends with "-" \("example-"\); /],
    ['kme.example-.', /has a label that ends with "-" \("example-"\); /],
    ['-', /has a label that starts with "-" \("-"\)/],
    ['xn--', /has a label that ends with "-" \("xn--"\)/],
    [`-${'a'.repeat(40)}.example`, /has a label that starts with "-" \("-aaaaaaaaaaaaaaa\.\.\."\); /],
    // RFC 1123 §2.1: the last label is not all digits (rustls: it may be read as an IPv4 address, "127.1" as 127.0.0.1).
    ['example.123', /^client: serverName: has a last label of digits only \("123"\), which could be read as an IP address; /],
    ['127.1', /has a last label of digits only \("1"\)/],
    ['1.2.3', /has a last label of digits only \("3"\)/],
    ['example.123.', /has a last label of digits only \("123"\)/],
    ['8080', /has a last label of digits only \("8080"\)/],
    ['192.0.2.1', /is an IP address/],
    ['::1', /is an IP address/],
    ['[2001:db8::1]', /is an IP address/],
    ['::ffff:192.0.2.1', /is an IP address/],
  ] as const) {
    tt.throws(() => Connection.client({ crypto, psks, serverName: name }), { name: 'TypeError', message: problem }, name);
    // Each refusal says what a server name may be.
    tt.throws(() => Connection.client({ crypto, psks, serverName: name }), { message: /; a server name is a DNS host name \(RFC 6066 §3\): ASCII letters, digits, "-" and "_" in labels separated by "\."; no label starts or ends with "-", and the last is not all digits \(RFC 1123 §2\.1\); at most 63 bytes a label and 253 in all \(RFC 1035 §2\.3\.4\); .*a trailing dot is dropped; not an IP address$/ }, name);
  }
  const longest = `${'a'.repeat(63)}.`.repeat(4).slice(0, 253); // four labels: 63, 63, 63 and 61 bytes
  for (const name of ['xn--bcher-kva.example', 'localhost', '1.example', '192.0.2.1.example', 'my_service.internal', 'A-B.example', 'example.com.', longest, `${longest}.`, 'a--b.example', '_srv.example', '123.example', '0x7f.example', 'example.x1', 'example.1a', '1-2']) {
    tt.doesNotThrow(() => Connection.client({ crypto, psks, serverName: name }), name);
  }
  // dangerouslyAllowLongServerName (for ClientHello size tests) lifts the DNS lengths only, up to MAX_SERVER_NAME_BYTES.
  const dangerous = { crypto, psks, dangerouslyAllowLongServerName: true };
  tt.doesNotThrow(() => Connection.client({ ...dangerous, serverName: 'a'.repeat(300) }), 'a 300-byte label with dangerouslyAllowLongServerName');
  tt.throws(() => Connection.client({ ...dangerous, serverName: 'a b' }), { name: 'TypeError', message: /contains a space/ }, 'the characters are checked still');
  tt.throws(() => Connection.client({ ...dangerous, serverName: 'a'.repeat(MAX_SERVER_NAME_BYTES + 1) }), { name: 'TypeError', message: /^client: serverName: is longer than 65530 bytes; / });
  tt.equal(serverNameProblem('a'.repeat(300), { dangerouslyAllowLongServerName: true }), undefined, 'serverNameProblem takes the option too');
  tt.match(serverNameProblem('a'.repeat(300)), /^is longer than 253 bytes; /);
});
