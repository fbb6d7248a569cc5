/**
 * A hostile peer: hellos that break the extension rules (RFC 8446 §4.1, §4.2), ServerHellos a client must refuse,
 * every handshake message type sent to every state that does not expect it, change_cipher_spec rules (§5),
 * unprotected records after the keys, alerts received (§6), and the rule that a fatal alert is sent once.
 *
 * The peer is played by hand: hellos are rewritten in plaintext, and protected messages are sealed with the
 * traffic secrets that the real peer wrote to its key log.
 */
import t from 'tap';
import { concat, utf8 } from '../lib/codec/bytes.js';
import { AlertDescription, CipherSuite, ContentType, ExtensionType, HandshakeType, NamedGroup, ProtocolVersion, type AlertName } from '../lib/codec/enums.js';
import { Writer } from '../lib/codec/writer.js';
import type { ClientOptions, ServerOptions } from '../lib/config/options.js';
import { Connection } from '../lib/connection/connection.js';
import { nodeProvider } from '../lib/crypto/node.js';
import type { Reason } from '../lib/errors.js';
import { alpnExtension } from '../lib/handshake/common.js';
import { ext, type Extension } from '../lib/messages/extensions.js';
import {
  connectedWithKeyLogs,
  errorsOf,
  firstHandshakeMessage,
  handshake,
  handshakeMessage,
  type HelloParts,
  joinHello,
  KeyLog,
  makePsk,
  openRecord,
  Pair,
  plainRecord,
  plaintextAlerts,
  protection,
  splitHello,
  splitMessages,
  splitRecords,
} from './helpers/pair.js';
import { createEarlyDataReplayGuard } from '../lib/config/anti-replay.js';

const crypto = nodeProvider;
const SUITE = 'TLS_AES_128_GCM_SHA256';
const E = ExtensionType;
type Tap = Pick<typeof t, 'ok' | 'equal' | 'same' | 'match' | 'fail'>;


/**
 * Feeds `bytes` to `conn` and checks the outcome: exactly one error event with `alert` (and `reason` when given),
 * detected locally, and — when `plaintextAlert` — exactly one plaintext fatal alert record sent.
 */
function failsWith(
  tt: Tap,
  conn: Connection,
  bytes: Uint8Array,
  alert: AlertName,
  msg: string,
  opts: { reason?: Reason; plaintextAlert?: boolean } = {},
): void {
  let threw: unknown;
  try {
    conn.receive(bytes);
  } catch (e) {
    threw = e;
  }
  tt.equal(threw, undefined, `${msg}: receive does not throw`);
  const errs = errorsOf(conn.takeEvents());
  tt.equal(errs.length, 1, `${msg}: exactly one error event`);
  tt.equal(errs[0]?.alert, alert, `${msg}: ${alert} (${errs[0]?.message})`);
  tt.equal(errs[0]?.remote, false, `${msg}: detected, not received`);
  if (opts.reason) tt.equal(errs[0]?.reason, opts.reason, `${msg}: reason ${opts.reason}`);
  tt.equal(conn.phase, 'failed', `${msg}: phase failed`);
  const out = conn.takeOutput();
  tt.ok(out, `${msg}: an alert was sent`);
  if (opts.plaintextAlert ?? true) {
    tt.same(out ? plaintextAlerts(splitRecords(out)) : [], [{ level: 2, code: AlertDescription[alert] }], `${msg}: one plaintext fatal alert`);
    tt.equal(out ? splitRecords(out).length : 0, 1, `${msg}: and nothing else`);
  } else {
    tt.equal(out ? splitRecords(out).length : 0, 1, `${msg}: one (protected) record`);
  }
}

// ---------------------------------------------------------------------------------------------------------
// Hello rewriting

/** A fresh client's first ClientHello, as a message. */
function clientHello(options: Partial<ClientOptions> = {}) {
  const psk = makePsk('hostile');
  const client = Connection.client({ crypto, psks: [psk], ...options });
  const records = splitRecords(client.takeOutput()!);
  return { client, psk, raw: firstHandshakeMessage(records) };
}

/** A server given a ClientHello rewritten by `edit`; expects it to fail with `alert`. */
function serverRejects(tt: Tap, edit: (p: HelloParts) => void, alert: AlertName, msg: string, opts: { reason?: Reason; client?: Partial<ClientOptions>; server?: Partial<ServerOptions> } = {}): void {
  const { raw, psk } = clientHello(opts.client);
  const parts = splitHello(raw);
  edit(parts);
  const server = Connection.server({ crypto, psks: [psk], ...opts.server });
  failsWith(tt, server, plainRecord(ContentType.handshake, joinHello(parts)), alert, msg, { reason: opts.reason });
}

/** A client given the real server's ServerHello rewritten by `edit`; expects it to fail with `alert`. */
function clientRejects(tt: Tap, edit: (p: HelloParts) => void, alert: AlertName, msg: string, opts: { reason?: Reason; client?: Partial<ClientOptions>; server?: Partial<ServerOptions> } = {}): void {
  const psk = makePsk('hostile');
  const client = Connection.client({ crypto, psks: [psk], ...opts.client });
  const server = Connection.server({ crypto, psks: [psk], ...opts.server });
  server.receive(client.takeOutput()!);
  const records = splitRecords(server.takeOutput()!);
  const parts = splitHello(firstHandshakeMessage(records));
  edit(parts);
  failsWith(tt, client, plainRecord(ContentType.handshake, joinHello(parts)), alert, msg, { reason: opts.reason });
}

const find = (p: HelloParts, type: number) => p.extensions.findIndex((e) => e.type === type);
const replaceExt = (p: HelloParts, e: Extension) => {
  const i = find(p, e.type);
  if (i < 0) throw new Error(`no extension ${e.type} to replace`);
  p.extensions[i] = e;
};
const removeExt = (p: HelloParts, type: number) => {
  const i = find(p, type);
  if (i < 0) throw new Error(`no extension ${type} to remove`);
  p.extensions.splice(i, 1);
};
/** Sets the ServerHello cipher_suite (the last two bytes but one of the prefix: suite u16, compression u8). */
const setSuite = (p: HelloParts, suite: number) => {
  const prefix = p.prefix as Uint8Array;
  prefix[prefix.length - 3] = suite >>> 8;
  prefix[prefix.length - 2] = suite & 0xff;
};

t.test('ClientHello extension rules (server side)', async (tt) => {
  serverRejects(tt, (p) => p.extensions.splice(0, 0, p.extensions[find(p, E.supported_versions)]), 'illegal_parameter', 'duplicate extension', {
    reason: 'DuplicateExtension',
  });
  serverRejects(
    tt,
    (p) => {
      const psk = p.extensions.pop()!;
      p.extensions.unshift(psk);
    },
    'illegal_parameter',
    'pre_shared_key not last',
    { reason: 'PskExtensionNotLast' },
  );
  // Two identities, one binder.
  serverRejects(
    tt,
    (p) => {
      const data = new Writer()
        .vec16((l) => l.vec16(utf8('one')).u32(0).vec16(utf8('two')).u32(0))
        .vec16((l) => l.vec8(new Uint8Array(32)))
        .finish();
      replaceExt(p, { type: E.pre_shared_key, data });
    },
    'illegal_parameter',
    'identities/binders count mismatch',
    { reason: 'PskBinderCountMismatch' },
  );
  serverRejects(tt, (p) => removeExt(p, E.psk_key_exchange_modes), 'missing_extension', 'no psk_key_exchange_modes', { reason: 'PskModesMissing' });
  serverRejects(tt, (p) => replaceExt(p, ext(E.supported_versions, (w) => w.vec8((l) => l.u16(ProtocolVersion.TLSv1_2)))), 'protocol_version', 'supported_versions without 1.3', { reason: 'UnsupportedVersion' });
  serverRejects(tt, (p) => removeExt(p, E.supported_versions), 'protocol_version', 'no supported_versions (a TLS 1.2 ClientHello)');
  // §9.2: without pre_shared_key a ClientHello needs signature_algorithms (ours has none) and supported_groups.
  serverRejects(tt, (p) => removeExt(p, E.pre_shared_key), 'missing_extension', 'no pre_shared_key, no signature_algorithms', { reason: 'NoPskNorCertificateExtensions' });
  serverRejects(
    tt,
    (p) => {
      removeExt(p, E.pre_shared_key);
      p.extensions.unshift(ext(E.signature_algorithms, (w) => w.vec16((l) => l.u16(0x0804))));
    },
    'handshake_failure',
    'no pre_shared_key: a certificate ClientHello',
    { reason: 'NoPskOffered' },
  );
  serverRejects(tt, (p) => removeExt(p, E.supported_groups), 'missing_extension', 'key_share without supported_groups', { reason: 'KeyShareWithoutSupportedGroups' });
  serverRejects(tt, (p) => removeExt(p, E.key_share), 'missing_extension', 'psk_dhe_ke with supported_groups but no key_share', {
    reason: 'SupportedGroupsWithoutKeyShare',
  });
  serverRejects(
    tt,
    (p) => replaceExt(p, ext(E.supported_groups, (w) => w.vec16((l) => l.u16(NamedGroup.secp256r1)))),
    'illegal_parameter',
    'a key share for a group not in supported_groups',
    { reason: 'KeyShareGroupNotOffered' },
  );
  serverRejects(
    tt,
    (p) => replaceExt(p, ext(E.key_share, (w) => w.vec16((l) => l.u16(NamedGroup.x25519).vec16(new Uint8Array(32)).u16(NamedGroup.x25519).vec16(new Uint8Array(32))))),
    'illegal_parameter',
    'two key shares for one group',
    { reason: 'KeyShareDuplicateGroup' },
  );
  serverRejects(tt, (p) => p.extensions.splice(0, 0, ext(E.early_data, (w) => w.u8(1))), 'decode_error', 'a non-empty early_data');
  serverRejects(
    tt,
    (p) => replaceExt(p, ext(E.psk_key_exchange_modes, (w) => w.vec8((l) => l.u8(7)))),
    'handshake_failure',
    'only unknown key-exchange modes',
    { reason: 'NoCommonKeyExchangeMode' },
  );
  serverRejects(
    tt,
    (p) => {
      const prefix = p.prefix as Uint8Array;
      prefix[prefix.length - 1] = 1; // legacy_compression_methods = [1]
    },
    'illegal_parameter',
    'compression methods other than [null]',
    { reason: 'CompressionMethodsInvalid' },
  );
  serverRejects(
    tt,
    (p) => p.extensions.splice(0, 0, { type: E.record_size_limit, data: new Uint8Array([0, 63]) }),
    'illegal_parameter',
    'record_size_limit below 64',
    { reason: 'RecordSizeLimitTooSmall' },
  );
  // A ClientHello offering only suites the server lacks.
  serverRejects(tt, () => {}, 'handshake_failure', 'no common suite', {
    client: { suites: ['TLS_CHACHA20_POLY1305_SHA256'] },
    server: { suites: ['TLS_AES_128_GCM_SHA256'] },
    reason: 'NoCommonCipherSuite',
  });
  // Binders: a flipped bit is decrypt_error.
  serverRejects(
    tt,
    (p) => {
      const psk = p.extensions[p.extensions.length - 1];
      const data = psk.data.slice();
      data[data.length - 1] ^= 1;
      p.extensions[p.extensions.length - 1] = { type: psk.type, data };
    },
    'decrypt_error',
    'a flipped binder bit',
    { reason: 'IncorrectBinder' },
  );
  // Unknown extensions in a ClientHello are ignored (§4.2).
  const { raw, psk } = clientHello({ dangerousClientHelloExtensions: (l) => [{ type: 0x7a7a, data: new Uint8Array([1, 2, 3]) }, ...l] });
  const p = new Pair({ crypto, psks: [psk] }, { crypto, psks: [psk] });
  p.server.receive(plainRecord(ContentType.handshake, raw));
  tt.equal(errorsOf(p.server.takeEvents()).length, 0, 'an unknown ClientHello extension (GREASE-like) is ignored');
  tt.ok(p.server.takeOutput(), 'and the server answers');
});

t.test('ClientHello built with dangerousClientHelloExtensions: duplicate, missing modes, no TLS 1.3', async (tt) => {
  const cases: { name: string; edit: (l: Extension[]) => Extension[]; alert: AlertName; server?: Partial<ServerOptions>; reason?: Reason }[] = [
    { name: 'duplicate server_name', edit: (l) => [ext(E.server_name, (w) => w.vec16((x) => x.u8(0).vec16(utf8('a')))), ...l, ext(E.server_name, (w) => w.vec16((x) => x.u8(0).vec16(utf8('b'))))], alert: 'illegal_parameter', reason: 'DuplicateExtension' },
    { name: 'two host_name entries in one server_name', edit: (l) => [ext(E.server_name, (w) => w.vec16((x) => x.u8(0).vec16(utf8('a')).u8(0).vec16(utf8('b')))), ...l], alert: 'illegal_parameter', reason: 'ServerNameDuplicateHostName' },
    { name: 'no psk_key_exchange_modes', edit: (l) => l.filter((e) => e.type !== E.psk_key_exchange_modes), alert: 'missing_extension', reason: 'PskModesMissing' },
    // The binder covers these, so the server reaches the key exchange.
    { name: 'an x25519 share of 31 bytes', edit: (l) => l.map((e) => (e.type === E.key_share ? ext(E.key_share, (w) => w.vec16((x) => x.u16(NamedGroup.x25519).vec16(new Uint8Array(31).fill(5)))) : e)), alert: 'illegal_parameter', reason: 'InvalidPeerKeyShare' },
    { name: 'an all-zero x25519 share', edit: (l) => l.map((e) => (e.type === E.key_share ? ext(E.key_share, (w) => w.vec16((x) => x.u16(NamedGroup.x25519).vec16(new Uint8Array(32)))) : e)), alert: 'illegal_parameter', reason: 'KeyExchangeZeroSecret' },
    { name: 'a secp256r1 share off the curve', edit: (l) => l.map((e) => (e.type === E.key_share ? ext(E.key_share, (w) => w.vec16((x) => x.u16(NamedGroup.secp256r1).vec16(new Uint8Array(65).fill(4, 0, 1).fill(1, 1)))) : e)), alert: 'illegal_parameter', server: { groups: ['secp256r1'] }, reason: 'InvalidPeerKeyShare' },
    { name: 'supported_versions = TLS 1.2 only', edit: (l) => l.map((e) => (e.type === E.supported_versions ? ext(E.supported_versions, (w) => w.vec8((v) => v.u16(0x0303))) : e)), alert: 'protocol_version' },
  ];
  for (const c of cases) {
    const psk = makePsk('dangerous');
    const p = handshake({ crypto, psks: [psk], dangerousClientHelloExtensions: c.edit }, { crypto, psks: [psk], ...c.server });
    tt.equal(p.error('server')?.alert, c.alert, `${c.name}: the server sends ${c.alert}`);
    tt.equal(p.error('client')?.alert, c.alert, `${c.name}: the client receives it`);
    tt.equal(p.error('client')?.remote, true, `${c.name}: remote`);
    if (c.reason) tt.equal(p.error('server')?.reason, c.reason, `${c.name}: reason ${c.reason}`);
  }
});

t.test('a received server_name that is not a DNS host name: illegal_parameter (ServerNameNotHostName); an IP literal is ignored (RFC 6066 §3)', async (tt) => {
  // Before, the server took any bytes (read as UTF-8, up to 65530 of them) and handed them to the PSK lookup and the
  // handshake info. rustls and LibreSSL answer illegal_parameter and both ignore an IP literal, as if no server_name
  // had been sent. A trailing dot (which rustls' and OpenSSL's servers accept) is dropped: the lookup sees one form.
  const withName = (name: Uint8Array) => (l: Extension[]) => [ext(E.server_name, (w) => w.vec16((x) => x.u8(0).vec16(name))), ...l];
  const longest = `${'a'.repeat(63)}.`.repeat(4).slice(0, 253);
  const refused: [string, Uint8Array, RegExp][] = [
    ['two trailing dots', utf8('kme.example..'), /"kme\.example\.\." has an empty label .*: not a DNS host name \(RFC 6066 §3\)$/],
    ['a space', utf8('kme example'), /contains a space/],
    ['raw UTF-8 (not its A-label form)', utf8('bücher.example'), /which is not ASCII/],
    ['a NUL byte', new Uint8Array([0x61, 0, 0x62]), /"a\\u0000b" contains a control character \(U\+0000\)/],
    ['bytes that are not UTF-8', new Uint8Array([0x61, 0xff]), /which is not ASCII/],
    ['an empty label', utf8('a..example'), /has an empty label/],
    ['a label of 64 bytes', utf8(`${'a'.repeat(64)}.example`), /has a label of 64 bytes/],
    // RFC 952, RFC 1123 §2.1, as rustls' DnsName: these were taken and handed to the PSK lookup.
    ['a label that starts with "-"', utf8('-kme.example'), /"-kme\.example" has a label that starts with "-" \("-kme"\): not a DNS host name \(RFC 6066 §3\)$/],
    ['a label that ends with "-"', utf8('kme-.example'), /"kme-\.example" has a label that ends with "-" \("kme-"\): not a DNS host name/],
    ['a last label of digits only', utf8('kme.example.123'), /"kme\.example\.123" has a last label of digits only \("123"\), which could be read as an IP address: not a DNS host name/],
    ['an IPv4 address in short form', utf8('127.1'), /"127\.1" has a last label of digits only/],
    ['254 bytes', utf8(`${longest}a`), /is longer than 253 bytes/],
    ['65000 bytes', utf8('a'.repeat(65_000)), /is longer than 253 bytes/],
    ['a port', utf8('kme.example:443'), /contains ":"/],
    // (Its host of hex digits made it look like an IPv6 address, and it was ignored as one: the handshake went on.)
    ['a port after a host of hex digits', utf8('beef:443'), /"beef:443" contains ":" \(a port does not go in a server name\): not a DNS host name/],
    ['an IPv4 address and a port', utf8('192.0.2.1:443'), /"192\.0\.2\.1:443" contains ":" \(a port does not go in a server name\)/],
  ];
  for (const [what, name, message] of refused) {
    const psk = makePsk('sni-hostile');
    const lookups: unknown[] = [];
    const p = handshake({ crypto, psks: [psk], dangerousClientHelloExtensions: withName(name) }, { crypto, psks: (r) => (lookups.push(r), r.identities.map(() => psk)) });
    tt.equal(p.error('server')?.alert, 'illegal_parameter', `${what}: the server sends illegal_parameter`);
    tt.equal(p.error('server')?.reason, 'ServerNameNotHostName', `${what}: reason ServerNameNotHostName`);
    tt.match(p.error('server')?.message, message, `${what}: the message says what is wrong`);
    tt.equal(p.error('client')?.alert, 'illegal_parameter', `${what}: the client receives it`);
    tt.equal(lookups.length, 0, `${what}: no PSK lookup`);
  }
  for (const ip of ['192.0.2.1', '::1', '[2001:db8::1]', '::ffff:192.0.2.1']) {
    const psk = makePsk('sni-ip');
    const names: (string | undefined)[] = [];
    const p = handshake({ crypto, psks: [psk], dangerousClientHelloExtensions: withName(utf8(ip)) }, { crypto, psks: (r) => (names.push(r.serverName), r.identities.map(() => psk)) });
    tt.equal(p.client.phase, 'connected', `${ip}: the handshake completes`);
    tt.equal(p.server.phase, 'connected', `${ip}: on both sides`);
    tt.equal(p.info('server')?.serverName, undefined, `${ip}: the server takes it as no server_name`);
    tt.same(names, [undefined], `${ip}: and so does its PSK lookup`);
  }
  // The limits themselves: a name of 253 bytes in labels of 63 (and "_", as the client allows) is taken.
  for (const [name, seen] of [[longest], ['my_service.internal'], ['xn--bcher-kva.example'], ['kme.example.', 'kme.example'], [`${longest}.`, longest], ['KME.Example.', 'kme.example'], ['My_Service.INTERNAL', 'my_service.internal'], ['xn--80ak6aa92e.xn--p1ai'], ['a--b.example'], ['123.example']]) {
    const psk = makePsk('sni-ok');
    const names: (string | undefined)[] = [];
    const p = handshake({ crypto, psks: [psk], dangerousClientHelloExtensions: withName(utf8(name)) }, { crypto, psks: (r) => (names.push(r.serverName), r.identities.map(() => psk)) });
    tt.equal(p.server.phase, 'connected', `${name.slice(0, 30)}: connected`);
    tt.equal(p.info('server')?.serverName, seen ?? name, `${name.slice(0, 30)}: the server sees the name${seen ? ' as it is checked: lowercase, without a trailing dot' : ''}`);
    tt.same(names, [seen ?? name], `${name.slice(0, 30)}: and so does its PSK lookup`);
  }
});

t.test('ServerHello rules (client side)', async (tt) => {
  clientRejects(tt, (p) => p.extensions.push(p.extensions[find(p, E.supported_versions)]), 'illegal_parameter', 'duplicate extension in ServerHello', {
    reason: 'DuplicateExtension',
  });
  clientRejects(tt, (p) => p.extensions.unshift(ext(E.psk_key_exchange_modes, (w) => w.vec8((l) => l.u8(1)))), 'illegal_parameter', 'psk_key_exchange_modes in a ServerHello (not allowed there)', {
    reason: 'ExtensionNotAllowedInMessage',
  });
  clientRejects(tt, (p) => p.extensions.unshift(ext(E.application_layer_protocol_negotiation, (w) => w.vec16((l) => l.vec8(utf8('h2'))))), 'illegal_parameter', 'ALPN in a ServerHello (EncryptedExtensions only)', {
    reason: 'ExtensionNotAllowedInMessage',
  });
  clientRejects(tt, (p) => p.extensions.unshift({ type: 0x7a7a, data: new Uint8Array(0) }), 'unsupported_extension', 'an unknown extension in a ServerHello', {
    reason: 'UnsolicitedExtension',
  });
  clientRejects(tt, (p) => p.extensions.unshift(ext(E.cookie, (w) => w.vec16(utf8('c')))), 'illegal_parameter', 'cookie in a ServerHello (HRR only)', { reason: 'ExtensionNotAllowedInMessage' });
  clientRejects(tt, (p) => removeExt(p, E.supported_versions), 'protocol_version', 'a TLS 1.2 ServerHello (no supported_versions)', { reason: 'UnsupportedVersion' });
  clientRejects(tt, (p) => (p.extensions.length = 0), 'protocol_version', 'a ServerHello without extensions');
  clientRejects(tt, (p) => replaceExt(p, ext(E.supported_versions, (w) => w.u16(0x0303))), 'illegal_parameter', 'supported_versions selecting TLS 1.2', {
    reason: 'ServerSelectedUnofferedVersion',
  });
  clientRejects(tt, (p) => replaceExt(p, ext(E.supported_versions, (w) => w.u16(0x7f1c))), 'illegal_parameter', 'supported_versions selecting a draft version', {
    reason: 'ServerSelectedUnofferedVersion',
  });
  clientRejects(
    tt,
    (p) => {
      const prefix = p.prefix as Uint8Array;
      prefix[2 + 32 + 1] ^= 0xff; // first byte of legacy_session_id_echo
    },
    'illegal_parameter',
    'wrong legacy_session_id_echo',
    { reason: 'SessionIdEchoMismatch' },
  );
  clientRejects(tt, (p) => setSuite(p, CipherSuite.TLS_AES_256_GCM_SHA384), 'illegal_parameter', 'a suite not offered', {
    client: { suites: ['TLS_AES_128_GCM_SHA256'] },
    reason: 'ServerSelectedUnofferedSuite',
  });
  clientRejects(tt, (p) => setSuite(p, CipherSuite.TLS_AES_128_CCM_SHA256), 'illegal_parameter', 'an unknown suite', { reason: 'ServerSelectedUnofferedSuite' });
  clientRejects(tt, (p) => setSuite(p, CipherSuite.TLS_AES_256_GCM_SHA384), 'illegal_parameter', 'a suite whose hash is not the PSK hash', {
    reason: 'PskHashMismatchesSuite',
  });
  clientRejects(
    tt,
    (p) => replaceExt(p, ext(E.key_share, (w) => w.u16(NamedGroup.secp256r1).vec16(new Uint8Array(65).fill(4, 0, 1)))),
    'illegal_parameter',
    'a key share for a group the client sent no share for',
    { reason: 'ServerSelectedUnofferedGroup' },
  );
  clientRejects(
    tt,
    (p) => replaceExt(p, ext(E.key_share, (w) => w.u16(NamedGroup.x25519).vec16(new Uint8Array(32)))),
    'illegal_parameter',
    'an all-zero x25519 share',
    { reason: 'KeyExchangeZeroSecret' },
  );
  clientRejects(tt, (p) => replaceExt(p, ext(E.pre_shared_key, (w) => w.u16(1))), 'illegal_parameter', 'selected_identity out of range', {
    reason: 'ServerSelectedUnofferedPsk',
  });
  clientRejects(tt, (p) => replaceExt(p, ext(E.pre_shared_key, (w) => w.u16(0xffff))), 'illegal_parameter', 'selected_identity 65535', { reason: 'ServerSelectedUnofferedPsk' });
  clientRejects(tt, (p) => removeExt(p, E.pre_shared_key), 'handshake_failure', 'no PSK selected (a certificate handshake)', { reason: 'PskNotSelected' });
  clientRejects(tt, (p) => removeExt(p, E.key_share), 'illegal_parameter', 'no key_share when only psk_dhe_ke was offered (RFC 8446 §4.2.11)', {
    reason: 'ServerKeyShareMissing',
  });
});

t.test('ClientHello.legacy_version 0x0300 or lower is protocol_version, whatever supported_versions says (RFC 8446 Appendix D.5)', async (tt) => {
  // tlsfuzzer's test-tls13-legacy-version (ported in test/peers/tlsfuzzer-psk-conversations.py) found these
  // accepted: the server looked only at supported_versions (§4.2.1), which still offers TLS 1.3 here.
  const setLegacyVersion = (v: number) => (p: HelloParts) => {
    (p.prefix as Uint8Array)[0] = v >> 8;
    (p.prefix as Uint8Array)[1] = v & 0xff;
  };
  for (const v of [0x0300, 0x0200, 0x0002, 0x0000, 0x0103]) {
    serverRejects(tt, setLegacyVersion(v), 'protocol_version', `ClientHello.legacy_version 0x${v.toString(16).padStart(4, '0')}`, {
      reason: 'ClientHelloLegacyVersionSsl3',
    });
  }
  // 0x0301 is not covered by D.5: supported_versions decides (§4.2.1), so the ClientHello gets past the version
  // checks to its binder, which the edit broke (the binder covers the whole ClientHello): decrypt_error.
  serverRejects(tt, setLegacyVersion(0x0301), 'decrypt_error', 'ClientHello.legacy_version 0x0301 gets past the version checks', {
    reason: 'IncorrectBinder',
  });
});

t.test('each remaining fault has its own named reason', async (tt) => {
  // Client side: the ServerHello's fixed fields (RFC 8446 §4.1.3).
  clientRejects(tt, (p) => ((p.prefix as Uint8Array)[1] = 0x04), 'illegal_parameter', 'ServerHello.legacy_version 0x0304', {
    reason: 'LegacyVersionNot0303',
  });
  // Appendix D.5: 0x0300 (and below) is protocol_version, not the illegal_parameter of other values.
  clientRejects(tt, (p) => ((p.prefix as Uint8Array)[1] = 0x00), 'protocol_version', 'ServerHello.legacy_version 0x0300', {
    reason: 'ServerHelloLegacyVersionSsl3',
  });
  clientRejects(
    tt,
    (p) => {
      (p.prefix as Uint8Array)[0] = 0x02;
      (p.prefix as Uint8Array)[1] = 0x00;
    },
    'protocol_version',
    'ServerHello.legacy_version 0x0200',
    { reason: 'ServerHelloLegacyVersionSsl3' },
  );
  clientRejects(tt, (p) => ((p.prefix as Uint8Array)[(p.prefix as Uint8Array).length - 1] = 1), 'illegal_parameter', 'ServerHello compression method 1', {
    reason: 'CompressionMethodsInvalid',
  });
  // Server side: psk_dhe_ke without a group in common (§4.1.1).
  serverRejects(tt, () => {}, 'handshake_failure', 'no group in common', {
    client: { groups: ['x25519'] },
    server: { groups: ['secp384r1'] },
    reason: 'NoCommonGroup',
  });
  // §4.1.4: after a HelloRetryRequest the ServerHello must select the suite the HelloRetryRequest named.
  {
    const psk = makePsk('retry-suite');
    const client = Connection.client({ crypto, psks: [psk], middleboxCompatibility: false });
    const server = Connection.server({ crypto, psks: [psk], groups: ['secp256r1'] });
    server.receive(client.takeOutput()!);
    client.receive(server.takeOutput()!); // the HelloRetryRequest, for TLS_AES_128_GCM_SHA256
    server.receive(client.takeOutput()!);
    const parts = splitHello(firstHandshakeMessage(splitRecords(server.takeOutput()!)));
    setSuite(parts, CipherSuite.TLS_CHACHA20_POLY1305_SHA256);
    failsWith(tt, client, plainRecord(ContentType.handshake, joinHello(parts)), 'illegal_parameter', 'a ServerHello with another suite than the HRR', {
      reason: 'ServerHelloSuiteDiffersFromRetry',
    });
  }
  // §4.2.10: 0-RTT accepted under an ALPN protocol that is not the one provisioned with the PSK (none here).
  {
    const psk = makePsk('early-alpn');
    const p = handshake(
      { crypto, psks: [psk], alpn: ['h2'], earlyData: utf8('x') },
      { crypto, psks: [psk], alpn: ['h2'], dangerousEncryptedExtensions: (l) => [...l, ext(E.early_data)] },
    );
    tt.equal(p.error('client')?.alert, 'illegal_parameter', '0-RTT accepted under another ALPN: illegal_parameter');
    tt.equal(p.error('client')?.reason, 'EarlyDataAcceptedWrongAlpn', 'reason EarlyDataAcceptedWrongAlpn');
  }
  // §4.6.3: a KeyUpdate whose request_update is neither 0 nor 1.
  {
    const { p, sk } = connected();
    const sats = protection(crypto, SUITE, sk.secret('SERVER_TRAFFIC_SECRET_0'));
    failsWith(tt, p.client, sats.seal(ContentType.handshake, handshakeMessage(HandshakeType.key_update, new Uint8Array([2]))), 'illegal_parameter', 'KeyUpdate request_update 2', {
      reason: 'KeyUpdateRequestInvalid',
      plaintextAlert: false,
    });
  }
  // §4.4.4: a server Finished that does not verify.
  {
    const { client, keys, flight } = clientAfterServerHello();
    const secret = keys.secret('SERVER_HANDSHAKE_TRAFFIC_SECRET');
    const [ee] = splitMessages(openRecord(protection(crypto, SUITE, secret), flight[0]).content);
    const shts = protection(crypto, SUITE, secret);
    client.receive(shts.seal(ContentType.handshake, ee));
    failsWith(tt, client, shts.seal(ContentType.handshake, handshakeMessage(HandshakeType.finished, new Uint8Array(32))), 'decrypt_error', 'a wrong server Finished', {
      reason: 'IncorrectFinished',
      plaintextAlert: false,
    });
  }
  // Application data under the client's handshake keys, before its Finished.
  {
    const { server, keys } = clientAfterServerHello();
    const chts = protection(crypto, SUITE, keys.secret('CLIENT_HANDSHAKE_TRAFFIC_SECRET'));
    failsWith(tt, server, chts.seal(ContentType.application_data, utf8('too soon')), 'unexpected_message', 'application data before the client Finished', {
      reason: 'ApplicationDataBeforeHandshake',
      plaintextAlert: false,
    });
  }
});

t.test('a key_share answered to a psk_ke-only client is unsupported_extension', async (tt) => {
  clientRejects(
    tt,
    (p) => p.extensions.splice(1, 0, ext(E.key_share, (w) => w.u16(NamedGroup.x25519).vec16(new Uint8Array(32).fill(9)))),
    'unsupported_extension',
    'key_share to psk_ke',
    { client: { kexModes: ['psk_ke'] }, server: { kexModes: ['psk_ke'] }, reason: 'UnsolicitedKeyShare' },
  );
});

t.test('EncryptedExtensions rules (client side), through the real server', async (tt) => {
  const cases: { name: string; add: Extension; client?: Partial<ClientOptions>; alert: AlertName; reason: Reason }[] = [
    { name: 'ALPN not offered', add: ext(E.application_layer_protocol_negotiation, (w) => w.vec16((l) => l.vec8(utf8('h2')))), alert: 'unsupported_extension', reason: 'UnsolicitedExtension' },
    { name: 'record_size_limit not offered', add: ext(E.record_size_limit, (w) => w.u16(1000)), alert: 'unsupported_extension', reason: 'UnsolicitedExtension' },
    { name: 'early_data not offered', add: ext(E.early_data), alert: 'unsupported_extension', reason: 'UnsolicitedExtension' },
    { name: 'server_name not offered', add: ext(E.server_name), alert: 'unsupported_extension', reason: 'UnsolicitedExtension' },
    { name: 'an unknown extension', add: { type: 0x7a7a, data: new Uint8Array(0) }, alert: 'unsupported_extension', reason: 'UnsolicitedExtension' },
    { name: 'key_share (not allowed in EE)', add: ext(E.key_share, (w) => w.u16(NamedGroup.x25519).vec16(new Uint8Array(32))), alert: 'illegal_parameter', reason: 'ExtensionNotAllowedInMessage' },
    { name: 'supported_versions (not allowed in EE)', add: ext(E.supported_versions, (w) => w.u16(0x0304)), alert: 'illegal_parameter', reason: 'ExtensionNotAllowedInMessage' },
    { name: 'pre_shared_key (not allowed in EE)', add: ext(E.pre_shared_key, (w) => w.u16(0)), alert: 'illegal_parameter', reason: 'ExtensionNotAllowedInMessage' },
    { name: 'two ALPN protocols', add: ext(E.application_layer_protocol_negotiation, (w) => w.vec16((l) => l.vec8(utf8('h2')).vec8(utf8('h3')))), client: { alpn: ['h2', 'h3'] }, alert: 'illegal_parameter', reason: 'AlpnResponseNotOneProtocol' },
    { name: 'an ALPN protocol the client did not offer', add: ext(E.application_layer_protocol_negotiation, (w) => w.vec16((l) => l.vec8(utf8('h3')))), client: { alpn: ['h2'] }, alert: 'illegal_parameter', reason: 'ServerSelectedUnofferedAlpn' },
    { name: '0-RTT accepted that was not sent under the selected PSK', add: ext(E.early_data), client: { earlyData: utf8('x'), psks: [makePsk('other'), makePsk('ee')] }, alert: 'illegal_parameter', reason: 'EarlyDataAcceptedWrongPsk' },
  ];
  for (const c of cases) {
    const psk = makePsk('ee');
    const clientPsks = c.client?.psks ? [c.client.psks[0], psk] : [psk];
    const p = handshake(
      { crypto, ...c.client, psks: clientPsks },
      { crypto, psks: [psk], dangerousEncryptedExtensions: (l) => [...l, c.add] },
    );
    tt.equal(p.error('client')?.alert, c.alert, `${c.name}: the client sends ${c.alert} (${p.error('client')?.message})`);
    tt.equal(p.error('client')?.remote, false, `${c.name}: detected by the client`);
    tt.equal(p.error('client')?.reason, c.reason, `${c.name}: reason ${c.reason}`);
    // (With 0-RTT the client's alert goes under the early keys, which a server that rejected 0-RTT skips.)
    if (c.client?.earlyData) continue;
    tt.equal(p.error('server')?.alert, c.alert, `${c.name}: the server receives it`);
    tt.equal(p.error('server')?.remote, true, `${c.name}: remote`);
  }
  // A duplicate in EncryptedExtensions.
  const psk = makePsk('ee-dup');
  const p = handshake({ crypto, psks: [psk], serverName: 'x' }, { crypto, psks: [psk], dangerousEncryptedExtensions: (l) => [...l, ...l] });
  tt.equal(p.error('client')?.alert, 'illegal_parameter', 'a duplicate extension in EncryptedExtensions');
  tt.equal(p.error('client')?.reason, 'DuplicateExtension', 'reason DuplicateExtension');
});


t.test('second ClientHello rules (server side)', async (tt) => {
  /** A server that sent a HelloRetryRequest (it wants secp256r1; the client's first share is x25519). */
  const afterRetry = () => {
    const psk = makePsk('retry');
    const client = Connection.client({ crypto, psks: [psk, makePsk('second')], middleboxCompatibility: false });
    const server = Connection.server({ crypto, psks: [psk], groups: ['secp256r1'] });
    const ch1 = client.takeOutput()!;
    server.receive(ch1);
    client.receive(server.takeOutput()!);
    const ch2 = firstHandshakeMessage(splitRecords(client.takeOutput()!));
    tt.equal(server.stateName, 'ExpectSecondClientHello', 'the server waits for the second ClientHello');
    return { server, ch1: firstHandshakeMessage(splitRecords(ch1)), ch2 };
  };
  const run = (edit: (parts: HelloParts, ch1: HelloParts) => void, alert: AlertName, msg: string, reason?: Reason) => {
    const { server, ch1, ch2 } = afterRetry();
    const parts = splitHello(ch2);
    edit(parts, splitHello(ch1));
    failsWith(tt, server, plainRecord(ContentType.handshake, joinHello(parts)), alert, msg, { reason });
  };
  run((p) => ((p.prefix as Uint8Array)[5] ^= 1), 'illegal_parameter', 'a different random', 'ClientHelloRetryMismatch');
  run((p) => removeExt(p, E.cookie), 'illegal_parameter', 'the cookie left out', 'BadCookie');
  run(
    (p) => replaceExt(p, ext(E.cookie, (w) => w.vec16(utf8('forged cookie')))),
    'illegal_parameter',
    'a different cookie',
    'BadCookie',
  );
  run(
    (p, c1) => replaceExt(p, c1.extensions[find(c1, E.key_share)]),
    'illegal_parameter',
    'the old x25519 share again',
    'RetryKeyShareWrongGroup',
  );
  run((p) => p.extensions.unshift(ext(E.early_data)), 'illegal_parameter', 'early_data in the second ClientHello', 'EarlyDataAfterHelloRetryRequest');
  run(
    (p) => replaceExt(p, { type: E.pre_shared_key, data: new Writer().vec16((l) => l.vec16(utf8('new-id')).u32(0)).vec16((l) => l.vec8(new Uint8Array(32))).finish() }),
    'illegal_parameter',
    'a PSK identity not in the first ClientHello',
    'ClientHelloRetryMismatch',
  );
  // §4.1.2: the client "MUST send the same ClientHello" but for key_share, early_data, cookie, pre_shared_key and
  // padding; the server used to compare only the random, the session ID and one cipher suite, so a second
  // ClientHello could drop psk_dhe_ke (after the retry asked for a group), list other groups or ALPN protocols.
  const swapSuites = (p: HelloParts) => {
    const b = p.prefix as Uint8Array; // version 2, random 32, session ID 1 (empty), suites length 2, then suites
    [b[37], b[38], b[39], b[40]] = [b[39], b[40], b[37], b[38]];
  };
  run(swapSuites, 'illegal_parameter', 'the cipher suites in another order', 'ClientHelloRetryMismatch');
  run((p) => replaceExt(p, ext(E.psk_key_exchange_modes, (w) => w.vec8((l) => l.u8(0)))), 'illegal_parameter', 'psk_ke instead of psk_dhe_ke', 'ClientHelloRetryMismatch');
  run(
    (p) => replaceExt(p, ext(E.supported_groups, (w) => w.vec16((l) => l.u16(0x17).u16(0x1d)))),
    'illegal_parameter',
    'supported_groups changed',
    'ClientHelloRetryMismatch',
  );
  run((p) => p.extensions.unshift(alpnExtension(['h2'])), 'illegal_parameter', 'ALPN added', 'ClientHelloRetryMismatch');
  // The binders of the first ClientHello do not verify in the second (they cover another transcript).
  run((p, c1) => replaceExt(p, c1.extensions[find(c1, E.pre_shared_key)]), 'decrypt_error', 'binders not recomputed', 'IncorrectBinder');
  {
    // The same with valid binders: a client that drops psk_dhe_ke from its second ClientHello (after a retry that
    // asked for a group) no longer gets a psk_ke handshake without forward secrecy.
    const psk = makePsk('retry-modes');
    let hellos = 0;
    const p = handshake(
      {
        crypto,
        psks: [psk],
        kexModes: ['psk_dhe_ke', 'psk_ke'],
        dangerousClientHelloExtensions: (l) => (++hellos === 1 ? l : l.map((e) => (e.type === E.psk_key_exchange_modes ? ext(E.psk_key_exchange_modes, (w) => w.vec8((m) => m.u8(0))) : e))),
      },
      { crypto, psks: [psk], groups: ['secp256r1'] },
    );
    tt.equal(hellos, 2, 'the client answered a HelloRetryRequest');
    tt.equal(p.error('server')?.reason, 'ClientHelloRetryMismatch', 'a second ClientHello with other key-exchange modes is refused');
    tt.equal(p.info('server'), undefined, 'no handshake completes');
  }
  // And the unmodified second ClientHello completes (the checks above are not vacuous).
  const { server, ch2 } = afterRetry();
  server.receive(plainRecord(ContentType.handshake, ch2));
  tt.equal(errorsOf(server.takeEvents()).length, 0, 'the real second ClientHello is accepted');
  tt.equal(server.stateName, 'ExpectClientFinished', 'and answered');
});

// ---------------------------------------------------------------------------------------------------------
// Every state rejects every handshake message it does not expect

interface StateSetup {
  readonly state: string;
  readonly side: 'client' | 'server';
  /** The message types this state accepts. */
  readonly expected: readonly number[];
  /** Whether the alert this state sends is protected (it has write keys by then). */
  readonly protectedAlert: boolean;
  /** A connection in this state, and how to wrap a handshake message so that it reaches it. */
  make(): { conn: Connection; wrap: (message: Uint8Array) => Uint8Array };
}

/** The client has the ServerHello; returns it with the server's logged secrets and its protected flight. */
function clientAfterServerHello(options: Partial<ClientOptions> = {}) {
  const psk = makePsk('states');
  const keys = new KeyLog();
  const client = Connection.client({ crypto, psks: [psk], ...options });
  const server = Connection.server({ crypto, psks: [psk], keyLog: keys.sink });
  server.receive(client.takeOutput()!);
  const records = splitRecords(server.takeOutput()!);
  const hello = records.filter((r) => r.type !== ContentType.application_data);
  const flight = records.filter((r) => r.type === ContentType.application_data);
  client.receive(concat(...hello.map((r) => r.bytes)));
  return { client, server, keys, flight };
}

/** Both sides connected, with both key logs. */
const connected = () => connectedWithKeyLogs(crypto, 'states');

const STATES: StateSetup[] = [
  {
    state: 'ExpectServerHello',
    side: 'client',
    expected: [HandshakeType.server_hello],
    protectedAlert: false,
    make() {
      const conn = Connection.client({ crypto, psks: [makePsk('states')] });
      conn.takeOutput();
      return { conn, wrap: (m) => plainRecord(ContentType.handshake, m) };
    },
  },
  {
    state: 'ExpectEncryptedExtensions',
    side: 'client',
    expected: [HandshakeType.encrypted_extensions],
    protectedAlert: true,
    make() {
      const { client, keys } = clientAfterServerHello();
      const shts = protection(crypto, SUITE, keys.secret('SERVER_HANDSHAKE_TRAFFIC_SECRET'));
      return { conn: client, wrap: (m) => shts.seal(ContentType.handshake, m) };
    },
  },
  {
    state: 'ExpectServerFinished',
    side: 'client',
    expected: [HandshakeType.finished],
    protectedAlert: true,
    make() {
      const { client, keys, flight } = clientAfterServerHello();
      const secret = keys.secret('SERVER_HANDSHAKE_TRAFFIC_SECRET');
      const [ee] = splitMessages(openRecord(protection(crypto, SUITE, secret), flight[0]).content);
      const shts = protection(crypto, SUITE, secret);
      client.receive(shts.seal(ContentType.handshake, ee));
      return { conn: client, wrap: (m) => shts.seal(ContentType.handshake, m) };
    },
  },
  {
    state: 'ExpectPostHandshake',
    side: 'client',
    expected: [HandshakeType.new_session_ticket, HandshakeType.key_update],
    protectedAlert: true,
    make() {
      const { p, sk } = connected();
      const sats = protection(crypto, SUITE, sk.secret('SERVER_TRAFFIC_SECRET_0'));
      return { conn: p.client, wrap: (m) => sats.seal(ContentType.handshake, m) };
    },
  },
  {
    state: 'ExpectClientHello',
    side: 'server',
    expected: [HandshakeType.client_hello],
    protectedAlert: false,
    make() {
      const conn = Connection.server({ crypto, psks: [makePsk('states')] });
      return { conn, wrap: (m) => plainRecord(ContentType.handshake, m) };
    },
  },
  {
    state: 'ExpectSecondClientHello',
    side: 'server',
    expected: [HandshakeType.client_hello],
    protectedAlert: false,
    make() {
      const psk = makePsk('states');
      const client = Connection.client({ crypto, psks: [psk] });
      const conn = Connection.server({ crypto, psks: [psk], groups: ['secp256r1'] });
      conn.receive(client.takeOutput()!);
      conn.takeOutput();
      return { conn, wrap: (m) => plainRecord(ContentType.handshake, m) };
    },
  },
  {
    state: 'ExpectEndOfEarlyData',
    side: 'server',
    expected: [HandshakeType.end_of_early_data],
    protectedAlert: true,
    make() {
      const psk = makePsk('states');
      const ck = new KeyLog();
      const client = Connection.client({ crypto, psks: [psk], keyLog: ck.sink, earlyData: utf8('0-RTT') });
      const conn = Connection.server({ crypto, psks: [psk], maxEarlyDataSize: 100, earlyDataReplayGuard: createEarlyDataReplayGuard() });
      const first = splitRecords(client.takeOutput()!).filter((r) => r.type !== ContentType.application_data);
      conn.receive(concat(...first.map((r) => r.bytes)));
      conn.takeOutput();
      const early = protection(crypto, SUITE, ck.secret('CLIENT_EARLY_TRAFFIC_SECRET'));
      return { conn, wrap: (m) => early.seal(ContentType.handshake, m) };
    },
  },
  {
    state: 'ExpectClientFinished',
    side: 'server',
    expected: [HandshakeType.finished],
    protectedAlert: true,
    make() {
      const psk = makePsk('states');
      const ck = new KeyLog();
      const client = Connection.client({ crypto, psks: [psk], keyLog: ck.sink });
      const conn = Connection.server({ crypto, psks: [psk] });
      conn.receive(client.takeOutput()!);
      client.receive(conn.takeOutput()!);
      client.takeOutput(); // the client's Finished never arrives
      const chts = protection(crypto, SUITE, ck.secret('CLIENT_HANDSHAKE_TRAFFIC_SECRET'));
      return { conn, wrap: (m) => chts.seal(ContentType.handshake, m) };
    },
  },
  {
    state: 'ExpectPostHandshake',
    side: 'server',
    expected: [HandshakeType.key_update],
    protectedAlert: true,
    make() {
      const { p, ck } = connected();
      const cats = protection(crypto, SUITE, ck.secret('CLIENT_TRAFFIC_SECRET_0'));
      return { conn: p.server, wrap: (m) => cats.seal(ContentType.handshake, m) };
    },
  },
];

const ALL_TYPES = [...Object.values(HandshakeType), 0, 3, 6, 99, 255];

t.test('every state rejects every handshake message type it does not expect', async (tt) => {
  let cases = 0;
  for (const s of STATES) {
    for (const type of ALL_TYPES) {
      if (s.expected.includes(type)) continue;
      const { conn, wrap } = s.make();
      tt.equal(conn.stateName, s.state, `${s.side} ${s.state}: reached`);
      tt.equal(conn.isClient, s.side === 'client');
      failsWith(tt, conn, wrap(handshakeMessage(type, new Uint8Array([0]))), 'unexpected_message', `${s.side} ${s.state} given type ${type}`, {
        reason: 'UnexpectedMessage',
        plaintextAlert: !s.protectedAlert,
      });
      cases++;
    }
  }
  tt.ok(cases >= 9 * 10, `${cases} state/message combinations`);
  // The setups are sound: in each state, the expected message type (with a broken body) is not rejected as unexpected.
  for (const s of STATES) {
    const { conn, wrap } = s.make();
    conn.receive(wrap(handshakeMessage(s.expected[0], new Uint8Array([0xff]))));
    const errs = errorsOf(conn.takeEvents());
    tt.ok(errs.every((e) => e.reason !== 'UnexpectedMessage'), `${s.side} ${s.state}: type ${s.expected[0]} is not "unexpected" (${errs[0]?.reason ?? 'ok'})`);
  }
});

// ---------------------------------------------------------------------------------------------------------
// change_cipher_spec, plaintext records, record-level garbage

t.test('change_cipher_spec rules (RFC 8446 §5)', async (tt) => {
  const ccs = (b: number[]) => plainRecord(ContentType.change_cipher_spec, new Uint8Array(b));
  failsWith(tt, Connection.server({ crypto, psks: [makePsk('x')] }), ccs([1]), 'unexpected_message', 'server: CCS before the ClientHello', {
    reason: 'RecordUnexpectedChangeCipherSpec',
  });
  // After the ServerHello the client protects what it sends (its alerts too) with its handshake keys.
  failsWith(tt, clientAfterServerHello().client, ccs([2]), 'unexpected_message', 'client: CCS of value 2', {
    reason: 'RecordBadChangeCipherSpec',
    plaintextAlert: false,
  });
  failsWith(tt, clientAfterServerHello().client, ccs([1, 1]), 'unexpected_message', 'client: CCS of two bytes', { plaintextAlert: false });
  failsWith(tt, clientAfterServerHello().client, ccs([]), 'unexpected_message', 'client: empty CCS', { plaintextAlert: false });
  {
    const { client, keys } = clientAfterServerHello();
    const shts = protection(crypto, SUITE, keys.secret('SERVER_HANDSHAKE_TRAFFIC_SECRET'));
    failsWith(tt, client, shts.seal(ContentType.change_cipher_spec, new Uint8Array([1])), 'unexpected_message', 'client: a protected CCS', {
      plaintextAlert: false,
    });
  }
  {
    const { p } = connected();
    failsWith(tt, p.client, ccs([1]), 'unexpected_message', 'client: CCS after the handshake', { plaintextAlert: false });
  }
  {
    const { p } = connected();
    failsWith(tt, p.server, ccs([1]), 'unexpected_message', 'server: CCS after the handshake', { plaintextAlert: false });
  }
  {
    // A CCS between two fragments of the ServerHello.
    const psk = makePsk('frag');
    const client = Connection.client({ crypto, psks: [psk] });
    const server = Connection.server({ crypto, psks: [psk] });
    server.receive(client.takeOutput()!);
    const sh = firstHandshakeMessage(splitRecords(server.takeOutput()!));
    const bytes = concat(plainRecord(ContentType.handshake, sh.subarray(0, 10)), ccs([1]), plainRecord(ContentType.handshake, sh.subarray(10)));
    failsWith(tt, client, bytes, 'unexpected_message', 'client: CCS inside a fragmented ServerHello', { reason: 'RecordInterleavedHandshake' });
    // The same fragments without the CCS are fine.
    const c2 = Connection.client({ crypto, psks: [psk] });
    const s2 = Connection.server({ crypto, psks: [psk] });
    s2.receive(c2.takeOutput()!);
    const sh2 = firstHandshakeMessage(splitRecords(s2.takeOutput()!));
    c2.receive(concat(plainRecord(ContentType.handshake, sh2.subarray(0, 10)), plainRecord(ContentType.handshake, sh2.subarray(10))));
    tt.equal(c2.stateName, 'ExpectEncryptedExtensions', 'a ServerHello in two records is accepted');
  }
});

t.test('plaintext where protection is required, and record-level garbage', async (tt) => {
  const hello = utf8('hello');
  failsWith(tt, Connection.server({ crypto, psks: [makePsk('x')] }), plainRecord(ContentType.application_data, hello), 'unexpected_message', 'server: application data before any keys');
  {
    const client = Connection.client({ crypto, psks: [makePsk('x')] });
    client.takeOutput();
    failsWith(tt, client, plainRecord(ContentType.application_data, hello), 'unexpected_message', 'client: application data before the ServerHello');
  }
  {
    const { client, flight, keys } = clientAfterServerHello();
    const [ee] = splitMessages(openRecord(protection(crypto, SUITE, keys.secret('SERVER_HANDSHAKE_TRAFFIC_SECRET')), flight[0]).content);
    failsWith(tt, client, plainRecord(ContentType.handshake, ee), 'unexpected_message', 'client: EncryptedExtensions in plaintext', {
      reason: 'RecordUnexpectedPlaintext',
      plaintextAlert: false,
    });
  }
  {
    const { p } = connected();
    failsWith(tt, p.server, plainRecord(ContentType.handshake, handshakeMessage(HandshakeType.key_update, new Uint8Array([0]))), 'unexpected_message', 'server: a plaintext handshake record after the handshake', {
      plaintextAlert: false,
      reason: 'RecordUnexpectedPlaintext',
    });
  }
  {
    // Unprotected application data after the handshake cannot be told from a forged protected record.
    const { p } = connected();
    failsWith(tt, p.server, plainRecord(ContentType.application_data, hello), 'bad_record_mac', 'server: plaintext application data after the handshake', {
      plaintextAlert: false,
    });
  }
  {
    const { p } = connected();
    failsWith(tt, p.server, plainRecord(ContentType.alert, new Uint8Array([2, 40])), 'unexpected_message', 'server: a plaintext alert after the handshake', {
      plaintextAlert: false,
      reason: 'RecordUnexpectedPlaintext',
    });
  }
  {
    const { p } = connected();
    failsWith(tt, p.client, plainRecord(ContentType.handshake, handshakeMessage(HandshakeType.key_update, new Uint8Array([0]))), 'unexpected_message', 'client: plaintext KeyUpdate', {
      plaintextAlert: false,
    });
  }
  const fresh = () => Connection.server({ crypto, psks: [makePsk('x')] });
  failsWith(tt, fresh(), plainRecord(ContentType.handshake, new Uint8Array(0)), 'unexpected_message', 'a zero-length handshake record', { reason: 'RecordEmptyFragment' });
  failsWith(tt, fresh(), plainRecord(0x18, hello), 'unexpected_message', 'an unknown content type', { reason: 'RecordUnknownContentType' });
  failsWith(tt, fresh(), new Uint8Array([0x16, 3, 3, 0x41, 0x01]), 'record_overflow', 'a record header over 2^14 + 256');
  failsWith(tt, fresh(), plainRecord(ContentType.handshake, new Uint8Array((1 << 14) + 1)), 'record_overflow', 'a plaintext record over 2^14');
  failsWith(tt, fresh(), plainRecord(ContentType.handshake, new Uint8Array([1, 2, 0, 0])), 'decode_error', 'a handshake message over 64 KiB');
  failsWith(tt, fresh(), plainRecord(ContentType.handshake, handshakeMessage(1, new Uint8Array(10))), 'decode_error', 'a truncated ClientHello body');
  {
    // Half a ClientHello, then an alert record: handshake messages must not be interleaved.
    const { raw } = clientHello();
    failsWith(
      tt,
      fresh(),
      concat(plainRecord(ContentType.handshake, raw.subarray(0, 20)), plainRecord(ContentType.alert, new Uint8Array([1, 90]))),
      'unexpected_message',
      'an alert inside a fragmented ClientHello',
    );
  }
  {
    // A protected record with a flipped bit.
    const { p } = connected();
    p.client.write(hello);
    const rec = p.client.takeOutput()!.slice();
    rec[rec.length - 1] ^= 1;
    failsWith(tt, p.server, rec, 'bad_record_mac', 'a tampered protected record', { plaintextAlert: false });
    // The client, having received the protected bad_record_mac, reports it as remote.
    p.client.receive(p.server.takeOutput() ?? new Uint8Array(0));
    p.collect();
  }
  {
    const { p } = connected();
    p.client.write(hello);
    const rec = p.client.takeOutput()!.slice();
    rec[rec.length - 1] ^= 1;
    p.server.receive(rec);
    const alert = p.server.takeOutput()!;
    p.client.receive(alert);
    const errs = errorsOf(p.client.takeEvents());
    tt.equal(errs.length, 1, 'client: one error');
    tt.equal(errs[0]?.alert, 'bad_record_mac', 'client: the server’s protected bad_record_mac');
    tt.equal(errs[0]?.remote, true, 'client: remote');
    tt.equal(p.client.takeOutput(), null, 'no alert in answer to an alert');
  }
});

// ---------------------------------------------------------------------------------------------------------
// Alerts

t.test('alerts received', async (tt) => {
  const received = (conn: Connection, bytes: Uint8Array) => {
    conn.receive(bytes);
    const errs = errorsOf(conn.takeEvents());
    return { errs, out: conn.takeOutput() };
  };
  const alert = (level: number, code: number) => plainRecord(ContentType.alert, new Uint8Array([level, code]));
  const fresh = () => Connection.server({ crypto, psks: [makePsk('x')] });

  let r = received(fresh(), alert(2, 40));
  tt.equal(r.errs.length, 1, 'a fatal alert: one error');
  tt.equal(r.errs[0]?.alert, 'handshake_failure');
  tt.equal(r.errs[0]?.remote, true, 'remote');
  tt.equal(r.errs[0]?.reason, 'PeerSentAlert');
  tt.equal(r.out, null, 'nothing sent back');

  r = received(fresh(), alert(1, 42));
  tt.equal(r.errs[0]?.alert, 'bad_certificate', 'a warning-level error alert is fatal all the same (§6.2)');
  tt.equal(r.errs[0]?.remote, true);

  r = received(fresh(), alert(2, 200));
  tt.equal(r.errs[0]?.alert, 'alert_200', 'an unknown alert code is named by its number');
  tt.equal(r.errs[0]?.alertCode, 200);

  r = received(fresh(), plainRecord(ContentType.alert, new Uint8Array([2, 40, 0])));
  tt.equal(r.errs[0]?.alert, 'decode_error', 'a three-byte alert is decode_error');
  tt.equal(r.errs[0]?.remote, false);

  // user_canceled as a warning is ignored; the handshake then goes on.
  {
    const psk = makePsk('uc');
    const p = new Pair({ crypto, psks: [psk] }, { crypto, psks: [psk] });
    p.server.receive(alert(1, 90));
    p.pump();
    tt.equal(p.server.phase, 'connected', 'user_canceled (warning) is ignored');
  }
  // A protected fatal alert during the handshake.
  {
    const { client, keys } = clientAfterServerHello();
    const shts = protection(crypto, SUITE, keys.secret('SERVER_HANDSHAKE_TRAFFIC_SECRET'));
    r = received(client, shts.seal(ContentType.alert, new Uint8Array([2, 47])));
    tt.equal(r.errs[0]?.alert, 'illegal_parameter', 'a protected alert is read');
    tt.equal(r.errs[0]?.remote, true);
    tt.equal(r.out, null, 'nothing sent back');
  }
  // After the handshake, from the server.
  {
    const { p, sk } = connected();
    const sats = protection(crypto, SUITE, sk.secret('SERVER_TRAFFIC_SECRET_0'));
    r = received(p.client, sats.seal(ContentType.alert, new Uint8Array([2, 80])));
    tt.equal(r.errs[0]?.alert, 'internal_error', 'an alert after the handshake');
    tt.equal(r.errs[0]?.remote, true);
    tt.equal(p.client.phase, 'failed');
    tt.equal(r.out, null);
  }
});

t.test('a fatal alert is sent exactly once', async (tt) => {
  // A bad ClientHello followed by more garbage in the same chunk, then more chunks.
  const { raw } = clientHello();
  const bad = raw.slice();
  bad[bad.length - 1] ^= 1; // binder
  const server = Connection.server({ crypto, psks: [makePsk('hostile')] });
  server.receive(concat(plainRecord(ContentType.handshake, bad), plainRecord(ContentType.handshake, bad), plainRecord(0x42, new Uint8Array(3))));
  const out = server.takeOutput();
  tt.equal(out ? splitRecords(out).length : 0, 1, 'one record out');
  tt.equal(errorsOf(server.takeEvents()).length, 1, 'one error event');
  server.receive(plainRecord(ContentType.handshake, bad));
  server.receive(plainRecord(ContentType.alert, new Uint8Array([2, 10])));
  server.close();
  tt.equal(server.takeOutput(), null, 'nothing more after the failure');
  tt.equal(server.takeEvents().length, 0, 'no more events');
  tt.throws(() => server.write(utf8('x')), Error, 'write after a failure throws');
  tt.equal(server.error?.alert, 'decrypt_error', 'the first error is kept');

  // After the handshake: two tampered records in one chunk give one protected alert.
  const { p } = connected();
  p.client.write(utf8('one'));
  p.client.write(utf8('two'));
  const recs = splitRecords(p.client.takeOutput()!).map((r) => r.bytes.slice());
  for (const r of recs) r[r.length - 1] ^= 1;
  p.server.receive(concat(...recs));
  const o = p.server.takeOutput();
  tt.equal(o ? splitRecords(o).length : 0, 1, 'one protected alert for two bad records');
  tt.equal(errorsOf(p.server.takeEvents()).length, 1, 'one error event');
  tt.throws(() => p.server.keyUpdate(), Error, 'keyUpdate after a failure throws');
});
