/**
 * Faults in the sans-IO core found by a review that mutated real handshakes: each test pins one (the input that
 * triggers it, the rule it breaks) and fails on the code before its fix.
 */
import t from 'tap';
import { concat } from '../lib/codec/bytes.js';
import { ContentType, ExtensionType, ProtocolVersion } from '../lib/codec/enums.js';
import { Connection } from '../lib/connection/connection.js';
import { nodeProvider } from '../lib/crypto/node.js';
import { ext } from '../lib/messages/extensions.js';
import { encodeServerHello, HELLO_RETRY_REQUEST_RANDOM } from '../lib/messages/hello.js';
import { connectedWithKeyLogs, errorsOf, firstHandshakeMessage, joinHello, makePsk, Pair, plainRecord, protection, splitHello, splitRecords } from './helpers/pair.js';
import { createEarlyDataReplayGuard } from '../lib/config/anti-replay.js';

const crypto = nodeProvider;
const E = ExtensionType;

/** A handshake message cut into plaintext handshake records of at most 2^14 bytes. */
type Rec = ReturnType<typeof splitRecords>[number];

/**
 * `p.pump()`, the server's first flight changed once on its way: record `pick` of it replaced by `replace(record)`
 * (the rest as they were).
 */
function pumpFirstFlightRewritten(p: Pair, pick: (r: Rec) => boolean, replace: (r: Rec, recs: readonly Rec[]) => Uint8Array): void {
  let first = true;
  p.pump({
    toClient: (b) => {
      if (!first) return b;
      first = false;
      const recs = splitRecords(b);
      const i = recs.findIndex(pick);
      return concat(...recs.slice(0, i).map((r) => r.bytes), replace(recs[i], recs), ...recs.slice(i + 1).map((r) => r.bytes));
    },
  });
}

/** The server's first handshake message (ServerHello or HelloRetryRequest) with `change` made to its extensions, as a plaintext record. */
const helloWith = (change: (hello: ReturnType<typeof splitHello>) => void) => (_r: Rec, recs: readonly Rec[]): Uint8Array => {
  const hello = splitHello(firstHandshakeMessage(recs));
  change(hello);
  return plainRecord(ContentType.handshake, joinHello(hello));
};

/** A client sending 0-RTT data to a server that accepts it (`maxEarlyDataSize` above 0) or rejects it (0). */
const earlyDataPair = (label: string, maxEarlyDataSize: number): Pair => {
  const psk = makePsk(label);
  return new Pair({ crypto, psks: [psk], earlyData: new Uint8Array(10) }, { crypto, psks: [psk], maxEarlyDataSize, earlyDataReplayGuard: createEarlyDataReplayGuard() });
};

function handshakeRecords(message: Uint8Array): Uint8Array {
  const recs: Uint8Array[] = [];
  for (let at = 0; at < message.length; at += 1 << 14) recs.push(plainRecord(ContentType.handshake, message.subarray(at, at + (1 << 14))));
  return concat(...recs);
}

t.test('a HelloRetryRequest cookie too long to echo is illegal_parameter, not internal_error', async (tt) => {
  // RFC 8446 §4.2.2: cookie<1..2^16-1>, which the client MUST copy into its second ClientHello, whose
  // extensions<8..2^16-1> then overflow. Before the fix the Writer's RangeError became internal_error (80).
  const psk = makePsk('cookie');
  const client = Connection.client({ crypto, psks: [psk], serverName: `${'a'.repeat(63)}.${'b'.repeat(63)}.${'c'.repeat(63)}.example` }); // 199 bytes
  const ch = splitHello(firstHandshakeMessage(splitRecords(client.takeOutput()!)));
  const sessionId = ch.prefix.subarray(2 + 32 + 1, 2 + 32 + 1 + ch.prefix[2 + 32]);
  const hrr = encodeServerHello({
    random: HELLO_RETRY_REQUEST_RANDOM,
    sessionIdEcho: sessionId,
    cipherSuite: 0x1301,
    extensions: [ext(E.cookie, (w) => w.vec16(new Uint8Array(65400).fill(7))), ext(E.supported_versions, (w) => w.u16(ProtocolVersion.TLSv1_3))],
  });
  tt.ok(hrr.length <= 1 << 16, 'the HelloRetryRequest itself is within the handshake message limit');
  let threw: unknown;
  try {
    client.receive(handshakeRecords(hrr));
  } catch (e) {
    threw = e;
  }
  tt.equal(threw, undefined, 'receive does not throw');
  const errs = errorsOf(client.takeEvents());
  tt.equal(errs.length, 1, 'one error');
  tt.equal(errs[0]?.alert, 'illegal_parameter', `illegal_parameter (got ${errs[0]?.alert}: ${errs[0]?.message})`);
  tt.equal(errs[0]?.reason as string, 'HelloRetryRequestCookieTooLong', 'its own reason');
  const out = client.takeOutput();
  tt.ok(out && splitRecords(out).some((r) => r.type === ContentType.alert && r.fragment[1] === 47), 'the alert is sent');
});

t.test('a flood of user_canceled warnings ends in TooManyIdleRecords, as other idle records do', async (tt) => {
  // RFC 8446 §6.1 lets user_canceled be a warning that is ignored; ignoring any number of them lets a peer keep a
  // connection busy with records that carry nothing (CVE-2016-8610, "SSL Death Alert"). Before the fix,
  // connection.ts took 1000 of them, in plaintext during the handshake or protected afterwards, and stayed up.
  const warning = plainRecord(ContentType.alert, new Uint8Array([1, 90]));
  const server = Connection.server({ crypto, psks: [makePsk('uc-flood')] });
  server.receive(concat(...Array.from({ length: 1000 }, () => warning)));
  let errs = errorsOf(server.takeEvents());
  tt.equal(errs.length, 1, 'plaintext, during the handshake: one error');
  tt.equal(errs[0]?.reason, 'TooManyIdleRecords', `TooManyIdleRecords (got ${errs[0]?.reason})`);
  tt.equal(errs[0]?.alert, 'unexpected_message');

  const { p, ck } = connectedWithKeyLogs(crypto, 'uc-flood-2');
  const cats = protection(crypto, 'TLS_AES_128_GCM_SHA256', ck.secret('CLIENT_TRAFFIC_SECRET_0'));
  p.server.receive(concat(...Array.from({ length: 1000 }, () => cats.seal(ContentType.alert, new Uint8Array([1, 90])))));
  errs = errorsOf(p.server.takeEvents());
  tt.equal(errs.length, 1, 'protected, once connected: one error');
  tt.equal(errs[0]?.reason, 'TooManyIdleRecords', `TooManyIdleRecords (got ${errs[0]?.reason})`);

  // A few are still ignored, and data resets the count.
  const { p: q, ck: qk } = connectedWithKeyLogs(crypto, 'uc-few');
  const w = protection(crypto, 'TLS_AES_128_GCM_SHA256', qk.secret('CLIENT_TRAFFIC_SECRET_0'));
  for (let i = 0; i < 10; i++) {
    q.server.receive(concat(...Array.from({ length: 40 }, () => w.seal(ContentType.alert, new Uint8Array([1, 90])))));
    q.server.receive(w.seal(ContentType.application_data, new Uint8Array([i])));
  }
  tt.equal(q.server.phase, 'connected', 'runs of 40 warnings between data records are ignored');
  tt.equal(errorsOf(q.server.takeEvents()).length, 0, 'no error');
});

t.test('a client that cannot read EncryptedExtensions after sending 0-RTT sends its alert under the handshake keys', async (tt) => {
  // RFC 8446 §4.2.10: a server that rejects 0-RTT reads the client's handshake keys and skips records that fail to
  // decrypt. Before the fix a client whose EncryptedExtensions failed to decode (here: an extension twice, §4.2)
  // sent its alert under the early keys: the server skipped it as rejected 0-RTT data and waited forever.
  const psk = makePsk('ee-0rtt');
  const dup = (list: readonly { type: number; data: Uint8Array }[]) => [...list, ext(E.server_name), ext(E.server_name)];
  for (const maxEarlyDataSize of [0, 100]) {
    const what = maxEarlyDataSize ? '0-RTT accepted' : '0-RTT rejected';
    const p = new Pair(
      { crypto, psks: [psk], earlyData: new Uint8Array(10), serverName: 'x' },
      { crypto, psks: [psk], maxEarlyDataSize, earlyDataReplayGuard: createEarlyDataReplayGuard(), dangerousEncryptedExtensions: dup },
    );
    p.pump();
    tt.equal(p.error('client')?.reason, 'DuplicateExtension', `${what}: the client refuses the EncryptedExtensions`);
    tt.equal(p.client.phase, 'failed');
    tt.equal(p.server.phase, 'failed', `${what}: the server does not wait forever (${p.error('server')?.message})`);
    if (!maxEarlyDataSize) tt.equal(p.error('server')?.alert, 'illegal_parameter', `${what}: the server reads the client's alert`);
  }
});

t.test('after a HelloRetryRequest, a record of the client flight that fails to decrypt is bad_record_mac', async (tt) => {
  // RFC 8446 §4.2.10: after a HelloRetryRequest the server skips the 0-RTT records (application_data sent before the
  // second ClientHello); skipping records that fail to decrypt is only for a ServerHello that rejects the 0-RTT of
  // its own ClientHello. §5.2: "If the decryption fails, the receiver MUST terminate the connection with a
  // bad_record_mac alert." Before the fix server.ts skipped them after the retry too, and waited for more.
  const psk = makePsk('hrr-0rtt');
  let chunk = 0;
  const p = new Pair({ crypto, psks: [psk], earlyData: new Uint8Array(10) }, { crypto, psks: [psk], groups: ['secp256r1'] });
  p.pump({
    toServer: (b) => {
      // The third chunk is the client's Finished flight (after the first ClientHello and the second one).
      if (++chunk !== 3) return b;
      const out = b.slice();
      out[out.length - 1] ^= 1;
      return out;
    },
  });
  tt.ok(p.events('client').some((e) => e.type === 'early-data' && e.status === 'rejected'), 'the client retried, its 0-RTT rejected');
  tt.equal(p.server.phase, 'failed', `the server fails (state ${p.server.stateName})`);
  tt.equal(p.error('server')?.reason, 'RecordBadMac', 'RecordBadMac');
  tt.equal(p.error('server')?.alert, 'bad_record_mac');
});

t.test('every plaintext record over 2^14 bytes is record_overflow, whatever its type and state', async (tt) => {
  // RFC 8446 §5.1: "The length MUST NOT exceed 2^14 bytes. An endpoint that receives a record that exceeds this
  // length MUST terminate the connection with a "record_overflow" alert." Before the fix connection.ts checked
  // only while no read keys were set, and after the type: an oversize change_cipher_spec was unexpected_message,
  // an oversize plaintext alert after the ServerHello decode_error.
  const psk = makePsk('overflow');
  const big = new Uint8Array((1 << 14) + 1);
  big[0] = 1;
  const afterServerHello = () => {
    const client = Connection.client({ crypto, psks: [psk] });
    const server = Connection.server({ crypto, psks: [psk] });
    server.receive(client.takeOutput()!);
    for (const r of splitRecords(server.takeOutput()!)) if (r.type !== ContentType.application_data) client.receive(r.bytes);
    tt.equal(client.stateName, 'ExpectEncryptedExtensions');
    return client;
  };
  const fresh = () => {
    const client = Connection.client({ crypto, psks: [psk] });
    client.takeOutput();
    return client;
  };
  for (const [name, make] of [['fresh', fresh], ['after the ServerHello', afterServerHello]] as const) {
    for (const type of [ContentType.change_cipher_spec, ContentType.alert, ContentType.handshake]) {
      const client = make();
      client.receive(plainRecord(type, big));
      const errs = errorsOf(client.takeEvents());
      tt.equal(errs[0]?.alert, 'record_overflow', `${name}, content type ${type}: record_overflow (got ${errs[0]?.message})`);
    }
  }
});

t.test('a client with 0-RTT in flight that refuses a HelloRetryRequest sends its alert in plaintext', async (tt) => {
  // RFC 8446 §4.2.10: after a HelloRetryRequest the server skips application_data records (the 0-RTT data) and
  // reads the plaintext second ClientHello. Before the fix a client refusing the HelloRetryRequest (here one
  // rewritten on the path to ask for x25519, for which the client already sent a share: §4.1.4 illegal_parameter)
  // sent its alert under the early keys: the server skipped it as 0-RTT data and waited.
  const psk = makePsk('hrr-alert');
  const p = new Pair({ crypto, psks: [psk], earlyData: new Uint8Array(10) }, { crypto, psks: [psk], groups: ['secp256r1'] });
  pumpFirstFlightRewritten(
    p,
    (r) => r.type === ContentType.handshake,
    helloWith((hrr) => {
      hrr.extensions[hrr.extensions.findIndex((e) => e.type === E.key_share)] = ext(E.key_share, (w) => w.u16(0x001d)); // x25519
    }),
  );
  tt.equal(p.error('client')?.reason, 'HelloRetryRequestBadGroup', 'the client refuses the HelloRetryRequest');
  tt.equal(p.server.phase, 'failed', `the server does not wait (state ${p.server.stateName})`);
  tt.equal(p.error('server')?.alert, 'illegal_parameter', 'it reads the client alert');
  tt.equal(p.error('server')?.remote, true);
});

t.test('a client with 0-RTT in flight that refuses a ServerHello sends its alert in plaintext', async (tt) => {
  // RFC 8446 §4.2.10: after its ServerHello a server reads the client's early keys (0-RTT accepted) or its handshake
  // keys, skipping records that fail to decrypt (rejected). Before the fix a client refusing the ServerHello (here
  // one rewritten on the path to select PSK #1 of the one offered: §4.2.11 illegal_parameter) sent its alert under
  // the early keys: a server that rejected 0-RTT skipped it as 0-RTT data and waited for the client's Finished.
  // Refused, the ServerHello gave the client no handshake keys: the alert goes in plaintext, read in both cases.
  for (const maxEarlyDataSize of [0, 100]) {
    const what = maxEarlyDataSize ? '0-RTT accepted' : '0-RTT rejected';
    const p = earlyDataPair('sh-alert', maxEarlyDataSize);
    pumpFirstFlightRewritten(
      p,
      (r) => r.type === ContentType.handshake,
      helloWith((sh) => {
        sh.extensions[sh.extensions.findIndex((e) => e.type === E.pre_shared_key)] = ext(E.pre_shared_key, (w) => w.u16(1));
      }),
    );
    tt.equal(p.error('client')?.reason, 'ServerSelectedUnofferedPsk', `${what}: the client refuses the ServerHello`);
    const alerts = p.records('client').filter((r) => r.type === ContentType.alert);
    tt.same(alerts.map((r) => [...r.fragment]), [[2, 47]], `${what}: its alert is one plaintext illegal_parameter`);
    tt.equal(p.server.phase, 'failed', `${what}: the server does not wait (state ${p.server.stateName})`);
    tt.equal(p.error('server')?.alert, 'illegal_parameter', `${what}: it reads the client alert`);
    tt.equal(p.error('server')?.remote, true, `${what}: remote`);
  }
});

t.test('a client with 0-RTT in flight whose EncryptedExtensions record fails to decrypt sends its alert under the handshake keys', async (tt) => {
  // RFC 8446 §4.2.10, as above: a server that rejected 0-RTT reads the client's handshake keys and skips what fails to
  // decrypt. The client that cannot read EncryptedExtensions because its record fails authentication (§5.2:
  // bad_record_mac), rather than its decoding, does not know either whether 0-RTT was accepted. Before the fix its
  // alert went under the early keys (the EncryptedExtensions rule above applied only inside the state): the
  // rejecting server skipped it and waited for the client's Finished.
  for (const maxEarlyDataSize of [0, 100]) {
    const what = maxEarlyDataSize ? '0-RTT accepted' : '0-RTT rejected';
    const p = earlyDataPair('ee-mac', maxEarlyDataSize);
    // The first protected record of the server's flight (EncryptedExtensions), its last byte (the tag) flipped.
    pumpFirstFlightRewritten(
      p,
      (r) => r.type === ContentType.application_data,
      (r) => {
        const bad = r.bytes.slice();
        bad[bad.length - 1] ^= 1;
        return bad;
      },
    );
    tt.equal(p.error('client')?.reason, 'RecordBadMac', `${what}: the client cannot read the EncryptedExtensions record`);
    tt.equal(p.server.phase, 'failed', `${what}: the server does not wait (state ${p.server.stateName})`);
    // Rejected: the server reads the alert. Accepted: it reads the early keys, so the alert fails to decrypt, which
    // ends the handshake there too (as for unreadable EncryptedExtensions, above).
    if (!maxEarlyDataSize) {
      tt.equal(p.error('server')?.alert, 'bad_record_mac', `${what}: it reads the client alert`);
      tt.equal(p.error('server')?.remote, true, `${what}: remote`);
    }
  }
});

t.test('skipped 0-RTT records that carry no data are bounded like other idle records', async (tt) => {
  // RFC 8446 §4.2.10 bounds the skipping of rejected 0-RTT data by its size (max_early_data_size); a record whose
  // ciphertext holds no data (shorter than the tag and content type) counts 0 bytes against that bound. Before
  // the fix connection.ts skipped any number of them, after a rejecting ServerHello and after a
  // HelloRetryRequest alike, and the server waited: a flood of records that carry nothing, which
  // TooManyIdleRecords is there to end.
  const psk = makePsk('skip-empty');
  const empty = new Uint8Array([ContentType.application_data, 3, 3, 0, 0]);
  const flood = concat(...Array.from({ length: 1000 }, () => empty));
  for (const [what, groups] of [['after a ServerHello rejecting 0-RTT', undefined], ['after a HelloRetryRequest', ['secp256r1' as const]]] as const) {
    const client = Connection.client({ crypto, psks: [psk], earlyData: new Uint8Array(10) });
    const server = Connection.server({ crypto, psks: [psk], groups: groups ? [...groups] : undefined });
    server.receive(client.takeOutput()!);
    tt.equal(server.phase, 'handshaking', `${what}: the server answered (${server.stateName})`);
    server.receive(flood);
    const errs = errorsOf(server.takeEvents());
    tt.equal(errs[0]?.reason, 'TooManyIdleRecords', `${what}: TooManyIdleRecords (got ${errs[0]?.reason ?? 'nothing'}, ${server.stateName})`);
  }
});
