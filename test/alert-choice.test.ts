/**
 * Faults whose alert RFC 8446 names precisely (§5.4, §4.2.11, §4.1.4, §9.2): each must end in that alert, not in
 * a neighbouring one.
 *
 * Each test pins a fault an independent review found; its comment quotes the rule and says where the code
 * broke it before the fix.
 */
import t from 'tap';
import { CipherSuite, ContentType, ExtensionType, NamedGroup, ProtocolVersion } from '../lib/codec/enums.js';
import { Connection } from '../lib/connection/connection.js';
import { nodeProvider } from '../lib/crypto/node.js';
import { ext } from '../lib/messages/extensions.js';
import { decodeClientHello, encodeServerHello, HELLO_RETRY_REQUEST_RANDOM } from '../lib/messages/hello.js';
import { createEarlyDataReplayGuard } from '../lib/config/anti-replay.js';
import {
  connectedWithKeyLogs,
  errorsOf,
  firstHandshakeMessage,
  handshake,
  joinHello,
  makePsk,
  plainRecord,
  protection,
  splitHello,
  splitRecords,
} from './helpers/pair.js';

const crypto = nodeProvider;
const E = ExtensionType;
const SUITE = 'TLS_AES_128_GCM_SHA256';

/** Both sides connected, with both key logs. */
const connected = () => connectedWithKeyLogs(crypto);

t.test('a protected zero-length alert is unexpected_message', async (tt) => {
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

t.test('a ServerHello without key_share for a psk_dhe_ke-only client is illegal_parameter', async (tt) => {
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

t.test('a HelloRetryRequest key_share sent to a client that offered no key_share is unsupported_extension', async (tt) => {
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

t.test('a psk_ke ClientHello with supported_groups but no key_share is refused with missing_extension', async (tt) => {
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

t.test('a ClientHello without pre_shared_key and without signature_algorithms is refused with missing_extension', async (tt) => {
  // RFC 8446 §9.2: a TLS 1.3 ClientHello "If not containing a "pre_shared_key" extension, it MUST contain both a
  // "signature_algorithms" extension and a "supported_groups" extension. ... Servers receiving a ClientHello which
  // does not conform to these requirements MUST abort the handshake with a "missing_extension" alert."
  // server.ts answered every ClientHello without pre_shared_key with handshake_failure (NoPskOffered), this one too.
  // (OpenSSL's server, which the interop tests see, answers a ClientHello without signature_algorithms the same way.)
  const client = Connection.client({ crypto, psks: [makePsk('f12')] });
  const parts = splitHello(firstHandshakeMessage(splitRecords(client.takeOutput()!)));
  parts.extensions.pop(); // pre_shared_key (the last extension, §4.2.11)
  tt.notOk(parts.extensions.some((e) => e.type === E.signature_algorithms), 'the ClientHello has no signature_algorithms');
  const server = Connection.server({ crypto, psks: [makePsk('f12')] });
  server.receive(plainRecord(ContentType.handshake, joinHello(parts)));
  const errs = errorsOf(server.takeEvents());
  tt.equal(errs.length, 1, 'one error');
  tt.equal(errs[0]?.alert, 'missing_extension', `missing_extension (got ${errs[0]?.alert}: ${errs[0]?.message})`);
  tt.equal(errs[0]?.reason, 'NoPskNorCertificateExtensions', 'reason NoPskNorCertificateExtensions');
  tt.same(splitRecords(server.takeOutput()!).map((r) => [...r.fragment]), [[2, 109]], 'one fatal missing_extension alert sent');

  // A conforming certificate ClientHello (signature_algorithms and supported_groups, no PSK) is still the handshake
  // this PSK-only server cannot do: handshake_failure, as before.
  const certificateHello = splitHello(joinHello(parts));
  certificateHello.extensions.unshift(ext(E.signature_algorithms, (w) => w.vec16((l) => l.u16(0x0804).u16(0x0403))));
  const server2 = Connection.server({ crypto, psks: [makePsk('f12')] });
  server2.receive(plainRecord(ContentType.handshake, joinHello(certificateHello)));
  const errs2 = errorsOf(server2.takeEvents());
  tt.equal(errs2[0]?.alert, 'handshake_failure', `a certificate ClientHello: handshake_failure (got ${errs2[0]?.alert})`);
  tt.equal(errs2[0]?.reason, 'NoPskOffered', 'reason NoPskOffered');
});

t.test('after a HelloRetryRequest, early_data in EncryptedExtensions is unsupported_extension', async (tt) => {
  // RFC 8446 §4.2: "Implementations MUST NOT send extension responses if the remote endpoint did not send the
  // corresponding extension requests ... Upon receiving such an extension, an endpoint MUST abort the handshake
  // with an "unsupported_extension" alert." EncryptedExtensions answers the ClientHello the server accepted: after a
  // HelloRetryRequest the second one, which carries no early_data (§4.2.10: "A client MUST NOT include the
  // "early_data" extension in its followup ClientHello"). client.ts counted the extensions of both ClientHellos as
  // offered, took the early_data for a response, and answered illegal_parameter (EarlyDataAcceptedWrongPsk).
  // (BoringSSL relies on the same rule: its second ClientHello never offers early data, so an early_data reply is
  // refused as unsolicited.)
  const psk = makePsk('f13');
  const p = handshake(
    // The client shares x25519 only; the server wants secp256r1: a HelloRetryRequest, after the 0-RTT data.
    { crypto, psks: [psk], earlyData: new TextEncoder().encode('0-rtt'), groups: ['x25519', 'secp256r1'], keyShareGroups: ['x25519'] },
    {
      crypto,
      psks: [psk],
      groups: ['secp256r1'],
      maxEarlyDataSize: 1024,
      earlyDataReplayGuard: createEarlyDataReplayGuard(),
      dangerousEncryptedExtensions: (l) => [...l, ext(E.early_data)],
    },
  );
  const first = splitHello(firstHandshakeMessage(p.records('server')));
  tt.same([...first.prefix.subarray(2, 34)], [...HELLO_RETRY_REQUEST_RANDOM], 'the server answered with a HelloRetryRequest');
  tt.equal(p.error('client')?.alert, 'unsupported_extension', `unsupported_extension (got ${p.error('client')?.alert}: ${p.error('client')?.message})`);
  tt.equal(p.error('client')?.reason, 'UnsolicitedExtension', 'reason UnsolicitedExtension');
  tt.equal(p.error('server')?.alert, 'unsupported_extension', 'the server receives it (the client sends it under its handshake keys)');
  tt.equal(p.error('server')?.remote, true, 'remote, on the server');
});

t.test('supported_groups in EncryptedExtensions to a client that sent none is unsupported_extension', async (tt) => {
  // RFC 8446 §4.2: "Implementations MUST NOT send extension responses if the remote endpoint did not send the
  // corresponding extension requests, with the exception of the "cookie" extension in the HelloRetryRequest. Upon
  // receiving such an extension, an endpoint MUST abort the handshake with an "unsupported_extension" alert."
  // §4.2.7 lets a server send its supported_groups in EncryptedExtensions, in answer to the client's. A psk_ke-only
  // client sends no supported_groups (nor key_share); client.ts accepted the server's anyway ("a server may always
  // tell us its groups"). OpenSSL and rustls refuse it as unsolicited.
  const groups = ext(E.supported_groups, (w) => w.vec16((l) => l.u16(NamedGroup.secp256r1)));
  const psk = makePsk('f14');
  const p = handshake({ crypto, psks: [psk], kexModes: ['psk_ke'] }, { crypto, psks: [psk], dangerousEncryptedExtensions: (l) => [groups, ...l] });
  tt.equal(p.error('client')?.alert, 'unsupported_extension', `unsupported_extension (got ${p.error('client')?.alert ?? 'a completed handshake'})`);
  tt.equal(p.error('client')?.reason, 'UnsolicitedExtension', 'reason UnsolicitedExtension');
  tt.equal(p.error('server')?.alert, 'unsupported_extension', 'the server receives it');

  // A client that sent supported_groups (psk_dhe_ke) takes the server's, as RFC 8448's trace has them.
  const psk2 = makePsk('f14-dhe');
  const q = handshake({ crypto, psks: [psk2] }, { crypto, psks: [psk2], dangerousEncryptedExtensions: (l) => [groups, ...l] });
  tt.equal(q.client.phase, 'connected', `a psk_dhe_ke client completes (${q.error('client')?.message ?? 'no error'})`);
  tt.equal(q.info('client')?.kex, 'psk_dhe_ke');
});
