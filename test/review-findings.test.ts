/**
 * Findings of an independent review of the TLS core (handshake, connection, record, messages, key schedule,
 * importer, Node transport) against RFC 8446, RFC 8449 and RFC 9258.
 *
 * One subtest per finding: each states the behaviour the RFC (or the project's own contract) asks for, failed
 * before the fix, and now guards against a regression. Nothing here asserts on timing.
 */
import t from 'tap';
import { once } from 'node:events';
import { Duplex } from 'node:stream';
import { concat, fromUtf8, utf8 } from '../lib/codec/bytes.js';
import { CipherSuite, ContentType, ExtensionType, NamedGroup, ProtocolVersion } from '../lib/codec/enums.js';
import { Connection } from '../lib/connection/connection.js';
import type { ConnectionEvent } from '../lib/connection/events.js';
import { nodeProvider } from '../lib/crypto/node.js';
import { ext } from '../lib/messages/extensions.js';
import { decodeClientHello, encodeServerHello, HELLO_RETRY_REQUEST_RANDOM } from '../lib/messages/hello.js';
import type { Deframer } from '../lib/record/deframer.js';
import { connect, createServer, type AsyncPskResolver } from '../lib/transport/node.js';
import {
  firstHandshakeMessage,
  handshake,
  joinHello,
  KeyLog,
  makePsk,
  plainRecord,
  protection,
  splitHello,
  splitRecords,
} from './helpers/pair.js';

const crypto = nodeProvider;
const E = ExtensionType;
const SUITE = 'TLS_AES_128_GCM_SHA256';

const errorsOf = (events: ConnectionEvent[]) => events.flatMap((e) => (e.type === 'error' ? [e.error] : []));
const isZero = (b: Uint8Array) => b.every((x) => x === 0);

/** Both sides connected, with both key logs. */
function connected() {
  const psk = makePsk('review');
  const [ck, sk] = [new KeyLog(), new KeyLog()];
  const p = handshake({ crypto, psks: [psk], keyLog: ck.sink }, { crypto, psks: [psk], keyLog: sk.sink });
  p.collect();
  return { p, ck, sk };
}

// ---------------------------------------------------------------------------------------------------------
// 0-RTT

t.test('F1 0-RTT: client and server pick different default early-data suites, and the whole handshake fails', async (tt) => {
  // RFC 8446 §4.2.10: 0-RTT uses the suite "provisioned along with the key". Without Psk.earlyDataSuite, the
  // client takes the first of ITS suites with the PSK's hash (client.ts:197-200, earlyDataSuiteOf) and the server the
  // first of ITS suites (server.ts:238). When the two preference orders differ the server ACCEPTS 0-RTT with
  // another suite than the client encrypted it with: the early records fail to decrypt (bad_record_mac) and the
  // handshake dies, where it must at worst fall back to 1-RTT. Expected: the handshake completes and the data
  // arrives (as accepted 0-RTT, or resent after a rejection).
  const psk = makePsk('f1');
  const p = handshake(
    { crypto, psks: [psk], suites: ['TLS_CHACHA20_POLY1305_SHA256', 'TLS_AES_128_GCM_SHA256'], earlyData: utf8('early') },
    { crypto, psks: [psk], maxEarlyDataSize: 1024 }, // default suite order: AES-128-GCM first
  );
  tt.equal(p.error('server')?.message, undefined, 'the server does not fail');
  tt.equal(p.error('client')?.message, undefined, 'the client does not fail');
  tt.equal(p.client.phase, 'connected', 'the client is connected');
  tt.equal(fromUtf8(p.received('server')), 'early', 'the early data reaches the server once');
});

t.test('F2 0-RTT accepted although the selected ALPN was not provisioned with the PSK', async (tt) => {
  // RFC 8446 §4.2.10: to accept early data the server "MUST verify that ... The selected ALPN protocol, if any"
  // is the one associated with the PSK (for external PSKs: provisioned with the key); RFC 9258 §5.1 says the
  // same for imported keys. The Psk type provisions no ALPN, yet the server (server.ts:241) accepts 0-RTT and
  // selects "http/1.1" for data the client may have written for "h2". OpenSSL's client aborts with
  // illegal_parameter on exactly this (early_data accepted with an ALPN that differs from the session's).
  // Expected: 0-RTT is rejected when an ALPN is selected that the PSK was not provisioned with.
  const psk = makePsk('f2');
  const p = handshake(
    { crypto, psks: [psk], alpn: ['h2', 'http/1.1'], earlyData: utf8('PRI * HTTP/2.0') },
    { crypto, psks: [psk], alpn: ['http/1.1'], maxEarlyDataSize: 1024 },
  );
  tt.equal(p.info('server')?.alpn, 'http/1.1', 'ALPN http/1.1 is selected');
  tt.not(p.info('server')?.earlyData, 'accepted', '0-RTT is not accepted under an ALPN the PSK was not provisioned with');
  tt.equal(p.received('server', 'early').length, 0, 'no early data is delivered');
});

t.test('F3 rejected 0-RTT data is resent automatically under a negotiated ALPN', async (tt) => {
  // RFC 8446 §4.2.10: "A TLS implementation SHOULD NOT automatically resend early data ... A TLS implementation
  // MUST NOT automatically resend early data unless the negotiated connection selects the same ALPN protocol."
  // client.ts:486 resends whenever resendRejectedEarlyData is not false (the default is true), whatever ALPN the
  // server selected. Expected: with an ALPN negotiated that is not the one the early data was written for (the
  // PSK has none provisioned), nothing is resent.
  const psk = makePsk('f3');
  const p = handshake(
    { crypto, psks: [psk], alpn: ['h2', 'http/1.1'], earlyData: utf8('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n') },
    { crypto, psks: [psk], alpn: ['http/1.1'] }, // maxEarlyDataSize 0: 0-RTT rejected
  );
  tt.equal(p.info('client')?.alpn, 'http/1.1', 'ALPN http/1.1 is selected');
  tt.equal(p.info('client')?.earlyData, 'rejected', '0-RTT was rejected');
  tt.equal(p.received('server').length, 0, 'the h2 preface written as 0-RTT is not replayed into an http/1.1 connection');
});

t.test('F4 the rejected-0-RTT skip budget counts record overhead against max_early_data_size', async (tt) => {
  // RFC 8446 §4.2.10 / §4.6.1: max_early_data_size counts "Application Data payload (i.e., plaintext but not
  // padding or the inner content type byte)", and a server rejecting 0-RTT skips records "up to the configured
  // max_early_data_size". connection.ts:268 (trial decryption) and :286 (after HelloRetryRequest) subtract the
  // whole ciphertext (content + type byte + 16-byte tag per record), so a client sending exactly the allowed
  // amount makes the server fail with unexpected_message. Expected: early data within the limit is skipped
  // and the handshake completes (the data is then resent as 1-RTT data).
  const size = 100_000; // more than the 64 KiB floor of the skip limit
  const data = new Uint8Array(size).fill(0x61);
  {
    // Trial decryption: 0-RTT under the first PSK, which the server does not know, so it selects the second.
    const known = makePsk('f4-known');
    const p = handshake(
      { crypto, psks: [makePsk('f4-unknown'), known], earlyData: data, resendRejectedEarlyData: true },
      { crypto, psks: [known], maxEarlyDataSize: size },
    );
    tt.equal(p.error('server')?.message, undefined, 'trial decryption: the server skips all the rejected 0-RTT data');
    tt.equal(p.received('server').length, size, 'trial decryption: the data arrives once, resent');
  }
  {
    // HelloRetryRequest: the server wants secp256r1, the client sent x25519.
    const psk = makePsk('f4-hrr');
    const p = handshake(
      { crypto, psks: [psk], earlyData: data, resendRejectedEarlyData: true },
      { crypto, psks: [psk], groups: ['secp256r1'], maxEarlyDataSize: size },
    );
    tt.equal(p.error('server')?.message, undefined, 'after HelloRetryRequest: the server skips all the 0-RTT data');
    tt.equal(p.received('server').length, size, 'after HelloRetryRequest: the data arrives once, resent');
  }
});

t.test('F5 record_size_limit is applied to 0-RTT records, which were protected without it', async (tt) => {
  // RFC 8449 §4: "Records are subject to the limits that were set in the handshake that produces the keys that
  // are used to protect those records." The client early traffic keys come from the PSK alone, and the client
  // wrote its 0-RTT records before it could see the server's limit; yet the server installs its own limit on
  // the early-data reader (server.ts:288 sets it, connection.ts:477 copies it into every new reader), and the
  // pre-decryption length check (protection.ts:147) also fires while skipping rejected 0-RTT. Expected: 0-RTT
  // records up to 2^14 bytes are accepted (or skipped, when 0-RTT is rejected); the limit applies from the
  // handshake keys on.
  const data = new Uint8Array(4000).fill(0x62);
  {
    const psk = makePsk('f5-accept');
    const p = handshake(
      { crypto, psks: [psk], recordSizeLimit: 16385, earlyData: data },
      { crypto, psks: [psk], recordSizeLimit: 1024, maxEarlyDataSize: 8192 },
    );
    tt.equal(p.error('server')?.message, undefined, 'accepted 0-RTT: no record_overflow');
    tt.equal(p.received('server', 'early').length, data.length, 'accepted 0-RTT: the early data is delivered');
  }
  {
    const psk = makePsk('f5-reject');
    const p = handshake({ crypto, psks: [psk], recordSizeLimit: 16385, earlyData: data }, { crypto, psks: [psk], recordSizeLimit: 1024 });
    tt.equal(p.error('server')?.message, undefined, 'rejected 0-RTT: the records are skipped, not record_overflow');
    tt.equal(p.client.phase, 'connected', 'rejected 0-RTT: the handshake completes');
  }
});

// ---------------------------------------------------------------------------------------------------------
// Memory driven by the peer, closure

t.test('F6 the server buffers without limit while it waits for an asynchronous PSK lookup', async (tt) => {
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

t.test('F7 bytes received after close_notify are not ignored', async (tt) => {
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

// ---------------------------------------------------------------------------------------------------------
// Wrong alerts, missing checks

t.test('F8 a protected zero-length alert is decode_error instead of unexpected_message', async (tt) => {
  // RFC 8446 §5.4: "Implementations MUST NOT send Handshake and Alert records that have a zero-length
  // TLSInnerPlaintext.content; if such a message is received, the receiving implementation MUST terminate the
  // connection with an "unexpected_message" alert." connection.ts:337 answers decode_error.
  const { p, sk } = connected();
  const sats = protection(crypto, SUITE, sk.secret('SERVER_TRAFFIC_SECRET_0'));
  p.client.receive(sats.seal(ContentType.alert, new Uint8Array(0)));
  const errs = errorsOf(p.client.takeEvents());
  tt.equal(errs.length, 1, 'one error');
  tt.equal(errs[0]?.alert, 'unexpected_message', `unexpected_message (got ${errs[0]?.alert})`);
});

t.test('F9 a ServerHello without key_share for a psk_dhe_ke-only client is missing_extension, not illegal_parameter', async (tt) => {
  // RFC 8446 §4.2.11: "Clients MUST verify ... that a server "key_share" extension is present if required by the
  // ClientHello "psk_key_exchange_modes" extension. If these values are not consistent, the client MUST abort
  // the handshake with an "illegal_parameter" alert." client.ts:324 sends missing_extension (and
  // test/handshake-hostile.test.ts:289 asserts that wrong alert).
  const psk = makePsk('f9');
  const client = Connection.client({ crypto, psks: [psk] }); // psk_dhe_ke only (the default)
  const server = Connection.server({ crypto, psks: [psk] });
  server.receive(client.takeOutput()!);
  const parts = splitHello(firstHandshakeMessage(splitRecords(server.takeOutput()!)));
  parts.extensions.splice(
    parts.extensions.findIndex((e) => e.type === E.key_share),
    1,
  );
  client.receive(plainRecord(ContentType.handshake, joinHello(parts)));
  const errs = errorsOf(client.takeEvents());
  tt.equal(errs[0]?.alert, 'illegal_parameter', `illegal_parameter (got ${errs[0]?.alert})`);
});

t.test('F10 a HelloRetryRequest key_share sent to a client that offered no key_share is illegal_parameter, not unsupported_extension', async (tt) => {
  // RFC 8446 §4.1.4: "a HelloRetryRequest MUST NOT contain any extensions that were not first offered by the
  // client in its ClientHello, with the exception of optionally the "cookie""; §4.2: "Upon receiving such an
  // extension, an endpoint MUST abort the handshake with an "unsupported_extension" alert." client.ts:246 checks
  // the HRR against a fixed set instead of what was offered, and :251 then answers illegal_parameter.
  const psk = makePsk('f10');
  const client = Connection.client({ crypto, psks: [psk], kexModes: ['psk_ke'] });
  const ch = decodeClientHello(firstHandshakeMessage(splitRecords(client.takeOutput()!)));
  tt.equal(ch.keyShares, undefined, 'the ClientHello has no key_share');
  const hrr = encodeServerHello({
    random: HELLO_RETRY_REQUEST_RANDOM,
    sessionIdEcho: ch.sessionId,
    cipherSuite: CipherSuite.TLS_AES_128_GCM_SHA256,
    extensions: [ext(E.key_share, (w) => w.u16(NamedGroup.x25519)), ext(E.supported_versions, (w) => w.u16(ProtocolVersion.TLSv1_3))],
  });
  client.receive(plainRecord(ContentType.handshake, hrr));
  const errs = errorsOf(client.takeEvents());
  tt.equal(errs[0]?.alert, 'unsupported_extension', `unsupported_extension (got ${errs[0]?.alert})`);
});

t.test('F11 a ClientHello with supported_groups but no key_share is accepted from a psk_ke client', async (tt) => {
  // RFC 8446 §9.2: a TLS 1.3 ClientHello "If containing a "supported_groups" extension, it MUST also contain a
  // "key_share" extension, and vice versa ... Servers receiving a ClientHello which does not conform to these
  // requirements MUST abort the handshake with a "missing_extension" alert." server.ts:143 only checks this when
  // the client offers psk_dhe_ke.
  const psk = makePsk('f11');
  const p = handshake(
    {
      crypto,
      psks: [psk],
      kexModes: ['psk_ke'],
      // Covered by the binder, so the server reaches its checks.
      dangerousClientHelloExtensions: (l) => [ext(E.supported_groups, (w) => w.vec16((g) => g.u16(NamedGroup.x25519))), ...l],
    },
    { crypto, psks: [psk] },
  );
  tt.equal(p.error('server')?.alert, 'missing_extension', `missing_extension (got ${p.error('server')?.alert ?? 'a completed handshake'})`);
});

// ---------------------------------------------------------------------------------------------------------
// API state and secrets

t.test('F12 exportKeyingMaterial after destroy() or a fatal error returns keys derived from a wiped secret', async (tt) => {
  // connection.ts:202-205 only checks `this.secrets`, which wipeKeys() zeroes (connection.ts:485) but never
  // clears: after destroy() — which the Node transport calls on every close — or after a fatal alert, the
  // exporter silently returns HKDF output keyed with zeros, the same bytes for every connection with the same
  // suite. RFC 8446 §7.5 exporters are bound to the session; a caller must get an error, not a constant.
  const label = 'EXPERIMENTAL review';
  const ctx = new Uint8Array(0);
  const outputs: Uint8Array[] = [];
  for (const end of ['destroy', 'fatal'] as const) {
    const { p, sk } = connected();
    const before = p.client.exportKeyingMaterial(label, ctx, 32);
    if (end === 'destroy') p.client.destroy();
    else p.client.receive(protection(crypto, SUITE, sk.secret('SERVER_TRAFFIC_SECRET_0')).seal(ContentType.alert, new Uint8Array([2, 80])));
    let after: Uint8Array | undefined;
    let threw = false;
    try {
      after = p.client.exportKeyingMaterial(label, ctx, 32);
    } catch {
      threw = true;
    }
    if (after) outputs.push(after);
    tt.ok(threw, `after ${end}: exportKeyingMaterial throws (got ${after ? 'keying material' : 'nothing'})`);
    if (after) tt.notSame(after, before, `after ${end}: at least not the session's own keys`);
  }
  if (outputs.length === 2) tt.notSame(outputs[0], outputs[1], 'two different sessions do not export the same bytes after the end');
});

t.test('F13 providePsks() after failPskLookup() or destroy() resumes the handshake and sends a ServerHello', async (tt) => {
  // connection.ts:139-149 only checks that the state is AwaitPsks, which a fatal error or destroy() leaves in
  // place: the state machine then runs on a failed/closed connection, derives keys and queues a ServerHello and
  // the encrypted flight after the alert. Expected: an Error (as for write() after close), and no output.
  for (const end of ['failPskLookup', 'destroy'] as const) {
    const psk = makePsk('f13');
    const client = Connection.client({ crypto, psks: [psk] });
    const server = Connection.server({ crypto });
    server.receive(client.takeOutput()!);
    tt.ok(server.pskRequest, `${end}: the server waits for the PSK lookup`);
    if (end === 'failPskLookup') server.failPskLookup('the key manager is unreachable');
    else server.destroy();
    server.takeOutput();
    server.takeEvents();
    let threw = false;
    try {
      server.providePsks([psk]);
    } catch {
      threw = true;
    }
    const out = server.takeOutput();
    tt.equal(out, null, `${end}: nothing is sent afterwards (got ${out ? splitRecords(out).length : 0} records)`);
    tt.ok(threw, `${end}: providePsks throws`);
  }
});

t.test("F14 receive() keeps views of the caller's buffer: a reused read buffer corrupts the handshake", async (tt) => {
  // deframer.ts:42-46 keeps the pushed Uint8Array itself (no copy) while a record is incomplete, the
  // handshake joiner (handshake-joiner.ts:31) keeps the record view while a message is incomplete, and a
  // ClientHello waiting for an asynchronous PSK lookup (server.ts AwaitPsks) is a view as well. Connection.receive
  // documents none of this, and the usual read loop (one buffer, refilled by every read: BYOB readers,
  // Deno.Conn.read(buf), pooled buffers) then feeds the handshake bytes that were overwritten. Like rustls'
  // read_tls, receive() should copy whatever it keeps beyond the call.
  const psk = makePsk('f14');
  {
    const client = Connection.client({ crypto, psks: [psk] });
    const ch = client.takeOutput()!;
    const server = Connection.server({ crypto, psks: [psk] });
    const buf = new Uint8Array(4096);
    buf.set(ch.subarray(0, 60));
    server.receive(buf.subarray(0, 60));
    buf.fill(0xee);
    buf.set(ch.subarray(60));
    server.receive(buf.subarray(0, ch.length - 60));
    tt.same(errorsOf(server.takeEvents()).map((e) => e.message), [], 'a ClientHello read in two reads into one buffer is accepted');
    tt.equal(server.stateName, 'ExpectClientFinished', 'and answered with the server flight');
  }
  {
    const client = Connection.client({ crypto, psks: [psk] });
    const ch = client.takeOutput()!;
    const server = Connection.server({ crypto });
    const buf = new Uint8Array(4096);
    buf.set(ch);
    server.receive(buf.subarray(0, ch.length));
    tt.ok(server.pskRequest, 'the server waits for the PSK lookup');
    buf.fill(0); // the next read reuses the buffer while the key manager answers
    server.providePsks([psk]);
    tt.same(errorsOf(server.takeEvents()).map((e) => e.message), [], 'the binder verifies after the read buffer was reused');
  }
});

t.test('F15 destroy() and fatal errors leave the handshake-state secrets unwiped', async (tt) => {
  // connection.ts:236 promises that destroy() "Wipes every key this connection holds", but wipeKeys() only
  // reaches the record protections and the post-handshake secrets: traffic secrets held by a handshake state
  // (server ExpectClientFinished: chts, cats, sats, exporter master secret; client ExpectEncryptedExtensions:
  // chts, shts, the Handshake Secret) stay in memory after destroy() and after a failed handshake (e.g. a wrong
  // client Finished: server.ts:464 wipes only chts).
  type ServerState = { n: { chts: Uint8Array; cats: Uint8Array; sats: Uint8Array; ems: Uint8Array } };
  type ClientState = { n: { chts: Uint8Array; shts: Uint8Array; hs: { dangerousSecret(): Uint8Array } } };
  {
    const psk = makePsk('f15-server');
    const client = Connection.client({ crypto, psks: [psk] });
    const server = Connection.server({ crypto, psks: [psk] });
    server.receive(client.takeOutput()!);
    tt.equal(server.stateName, 'ExpectClientFinished');
    const n = (server as unknown as { state: ServerState }).state.n;
    server.destroy();
    for (const k of ['chts', 'cats', 'sats', 'ems'] as const) tt.ok(isZero(n[k]), `server destroy(): ${k} wiped`);
  }
  {
    const psk = makePsk('f15-finished');
    const sk = new KeyLog();
    const client = Connection.client({ crypto, psks: [psk] });
    const server = Connection.server({ crypto, psks: [psk], keyLog: sk.sink });
    server.receive(client.takeOutput()!);
    const n = (server as unknown as { state: ServerState }).state.n;
    const chts = protection(crypto, SUITE, sk.secret('CLIENT_HANDSHAKE_TRAFFIC_SECRET'));
    server.receive(chts.seal(ContentType.handshake, concat(new Uint8Array([20, 0, 0, 32]), new Uint8Array(32))));
    tt.equal(server.error?.alert, 'decrypt_error', 'a wrong client Finished fails the handshake');
    tt.equal(server.error?.reason, 'IncorrectFinished', 'reason IncorrectFinished');
    for (const k of ['cats', 'sats', 'ems'] as const) tt.ok(isZero(n[k]), `server after a wrong Finished: ${k} wiped`);
  }
  {
    const psk = makePsk('f15-client');
    const client = Connection.client({ crypto, psks: [psk] });
    const server = Connection.server({ crypto, psks: [psk] });
    server.receive(client.takeOutput()!);
    const hello = splitRecords(server.takeOutput()!).filter((r) => r.type !== ContentType.application_data);
    client.receive(concat(...hello.map((r) => r.bytes)));
    tt.equal(client.stateName, 'ExpectEncryptedExtensions');
    const n = (client as unknown as { state: ClientState }).state.n;
    client.destroy();
    tt.ok(isZero(n.chts), 'client destroy(): chts wiped');
    tt.ok(isZero(n.shts), 'client destroy(): shts wiped');
    tt.ok(isZero(n.hs.dangerousSecret()), 'client destroy(): Handshake Secret wiped');
  }
});

t.test('F16 recordSizeLimit outside 64..16385 is sent as configured (and above 65535 silently truncated)', async (tt) => {
  // RFC 8449 §4: "Endpoints MUST NOT send a "record_size_limit" extension with a value smaller than 64" and
  // "MUST NOT send a value higher than the protocol-defined maximum record size" (2^14 + 1 for TLS 1.3).
  // client.ts:168 and server.ts:286 write options.recordSizeLimit with Writer.u16, unchecked: 70000 goes out
  // as 4464. Expected: the options are validated (TypeError), as other options are in startClient/startServer.
  const psk = makePsk('f16');
  for (const v of [10, 20000, 70000]) {
    tt.throws(() => Connection.client({ crypto, psks: [psk], recordSizeLimit: v }), TypeError, `client recordSizeLimit ${v} is refused`);
    tt.throws(() => Connection.server({ crypto, psks: [psk], recordSizeLimit: v }), TypeError, `server recordSizeLimit ${v} is refused`);
  }
});

t.test('F17 no automatic KeyUpdate before the AEAD usage limit', async (tt) => {
  // RFC 8446 §5.5: for AES-GCM "up to 2^24.5 full-size records ... may be encrypted on a given connection while
  // keeping a safety margin of approximately 2^-57 ... Implementations SHOULD do a key update as described in
  // Section 4.6.3 prior to reaching these limits." Nothing counts records (connection.ts:396, sealApplicationData);
  // a long-lived QKD proxy link reaches the limit after ~390 GB. Expected: a write past the limit is
  // preceded by a KeyUpdate (as rustls does).
  const { p } = connected();
  const writer = (p.client as unknown as { writer: { dangerousSetSequence(hi: number, lo: number): void } }).writer;
  writer.dangerousSetSequence(0, Math.ceil(2 ** 24.5));
  p.client.write(utf8('one more record'));
  const events = p.client.takeEvents();
  tt.ok(
    events.some((e) => e.type === 'key-update' && e.direction === 'write'),
    'the client updated its write keys before sealing past the AES-GCM limit',
  );
});

// ---------------------------------------------------------------------------------------------------------
// Node transport

t.test('F18 the Node transport formats every traffic secret into a key-log string even when nobody asked', async (tt) => {
  // node.ts:76/130 always pass tls.keyLogSink(options.keyLog), which is a function even without a keyLog option
  // or a 'keylog' listener (node.ts:237-242); Connection.logSecret (connection.ts:582) therefore renders the
  // handshake and application traffic secrets and the exporter secret as hex strings for every connection.
  // JavaScript strings cannot be wiped, so each session's secrets stay on the heap until collected, contrary to
  // the project rule "wipe key material". Expected: no key-log line is built unless a keyLog option or a
  // 'keylog' listener exists.
  const psk = makePsk('f18');
  const server = createServer({ psks: [psk] }, (s) => s.end());
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  let lines = 0;
  const socket = connect({ host: '127.0.0.1', port: server.address().port, psks: [psk] });
  const count = socket.listenerCount.bind(socket);
  // The sink asks listenerCount('keylog') once per line, after the line was built.
  socket.listenerCount = ((name: string | symbol) => {
    if (name === 'keylog') lines++;
    return count(name);
  }) as typeof socket.listenerCount;
  socket.on('error', () => {});
  await once(socket, 'secureConnect');
  socket.destroy();
  server.destroyAll();
  server.close();
  tt.equal(lines, 0, `key-log lines built without a key log: ${lines}`);
});

t.test('F19 a PSK resolver that throws synchronously escapes into the socket data handler', async (tt) => {
  // node.ts:406 calls `resolver(request).then(...)` unguarded, from the socket 'data' handler. An
  // AsyncPskResolver written as a plain function that throws before returning its promise (for example on an
  // identity it cannot parse — peer-controlled input), or that returns a non-promise, throws out of
  // onSocketData: in a real server an uncaught exception that takes the whole process down, and the connection
  // is left waiting for PSKs. Expected: the failure becomes failPskLookup (handshake_failure) and a
  // tlsClientError.
  const psk = makePsk('f19');
  const resolver = ((request: { identities: readonly Uint8Array[] }) => {
    throw new Error(`cannot parse identity ${request.identities.length}`);
  }) as unknown as AsyncPskResolver;
  const server = createServer({ psks: resolver });
  const clientErrors: Error[] = [];
  server.on('tlsClientError', (e: Error) => clientErrors.push(e));
  const raw = new Duplex({
    read() {},
    write(_chunk, _encoding, callback) {
      callback();
    },
  });
  const tls = server.accept(raw);
  const ch = Connection.client({ crypto, psks: [psk] }).takeOutput()!;
  let thrown: unknown;
  try {
    raw.emit('data', Buffer.from(ch)); // what a net.Socket does when bytes arrive
  } catch (e) {
    thrown = e;
  }
  await new Promise((r) => setImmediate(r));
  tt.equal((thrown as Error | undefined)?.message, undefined, 'nothing is thrown into the socket event handler');
  tt.equal(clientErrors.length, 1, 'the failure is reported as a tlsClientError');
  tls.destroy();
  raw.destroy();
});
