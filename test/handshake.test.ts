/**
 * The client and server state machines and the sans-IO connection, back to back in memory (test/helpers/pair.ts):
 * key-exchange modes and their preference order, PSK selection, suites restricted by a PSK's hash,
 * HelloRetryRequest (binders over message_hash, the cookie), 0-RTT accepted / rejected / skipped after a retry /
 * over the limit, middlebox compatibility, KeyUpdate, NewSessionTicket, close_notify and half-close, exporters,
 * ALPN, SNI, record_size_limit, PSK failures, the asynchronous PSK lookup, the caller's buffers, the key log.
 */
import t from 'tap';
import { concat, equalConstantTime, toHex, utf8 } from '../lib/codec/bytes.js';
import { AlertDescription, ContentType, ExtensionType, HandshakeType, NamedGroup, ProtocolVersion } from '../lib/codec/enums.js';
import type { ClientOptions } from '../lib/config/options.js';
import { Connection } from '../lib/connection/connection.js';
import { nobleProvider } from '../lib/crypto/noble.js';
import { nodeProvider } from '../lib/crypto/node.js';
import type { CryptoProvider, GroupName } from '../lib/crypto/provider.js';
import type { AlertName } from '../lib/codec/enums.js';
import type { Reason } from '../lib/errors.js';
import { EarlySecret, finishedVerifyData } from '../lib/keyschedule/schedule.js';
import { Transcript } from '../lib/keyschedule/transcript.js';
import { ext, type Extension } from '../lib/messages/extensions.js';
import { decodeClientHello, decodeServerHello, encodeServerHello, HELLO_RETRY_REQUEST_RANDOM } from '../lib/messages/hello.js';
import type { Psk } from '../lib/psk/types.js';
import { Writer } from '../lib/codec/writer.js';
import {
  firstHandshakeMessage,
  handshake,
  handshakeMessage,
  KeyLog,
  makePsk,
  openRecord,
  Pair,
  plainRecord,
  plaintextAlerts,
  protection,
  splitMessages,
  splitRecords,
  type Side,
} from './helpers/pair.js';
import { createEarlyDataReplayGuard } from '../lib/config/anti-replay.js';

const PROVIDERS: readonly CryptoProvider[] = [nobleProvider, nodeProvider];
const ALL_SUITES = ['TLS_AES_128_GCM_SHA256', 'TLS_CHACHA20_POLY1305_SHA256', 'TLS_AES_256_GCM_SHA384'] as const;
type Tap = Pick<typeof t, 'ok' | 'notOk' | 'equal' | 'not' | 'same' | 'match' | 'throws' | 'fail'>;

/** Both sides connected, no error, and the same handshake summary. */
function assertConnected(tt: Tap, p: Pair, msg: string): void {
  tt.equal(p.client.phase, 'connected', `${msg}: client connected (${p.error('client')?.message ?? 'no error'})`);
  tt.equal(p.server.phase, 'connected', `${msg}: server connected (${p.error('server')?.message ?? 'no error'})`);
  const c = p.info('client');
  const s = p.info('server');
  tt.ok(c && s, `${msg}: both sides report the handshake`);
  if (!c || !s) return;
  tt.equal(c.suite, s.suite, `${msg}: same suite`);
  tt.equal(c.kex, s.kex, `${msg}: same kex`);
  tt.equal(c.group, s.group, `${msg}: same group`);
  tt.equal(c.identityIndex, s.identityIndex, `${msg}: same identity index`);
  tt.equal(c.identity, s.identity, `${msg}: same identity`);
  tt.equal(c.helloRetry, s.helloRetry, `${msg}: same helloRetry`);
}

/** Application data flows both ways and the exporters agree. */
function assertTraffic(tt: Tap, p: Pair, msg: string): void {
  const before = { c: p.received('client').length, s: p.received('server').length };
  const up = utf8(`ping from the client: ${msg}`);
  const down = utf8(`pong from the server: ${msg}`);
  p.client.write(up);
  p.server.write(down);
  p.pump();
  tt.equal(toHex(p.received('server').subarray(before.s)), toHex(up), `${msg}: client -> server data`);
  tt.equal(toHex(p.received('client').subarray(before.c)), toHex(down), `${msg}: server -> client data`);
  const ctx = utf8('context');
  tt.equal(
    toHex(p.client.exportKeyingMaterial('EXPORTER-test', ctx, 32)),
    toHex(p.server.exportKeyingMaterial('EXPORTER-test', ctx, 32)),
    `${msg}: exporters agree`,
  );
}

/** `side` failed with `alert`, sent by it (remote false); the peer received that alert (remote true). */
function assertFailed(tt: Tap, p: Pair, detector: Side, alert: AlertName, msg: string, reason?: Reason): void {
  const peer: Side = detector === 'client' ? 'server' : 'client';
  const e = p.error(detector);
  tt.ok(e, `${msg}: ${detector} failed`);
  tt.equal(e?.alert, alert, `${msg}: ${detector} sent ${alert} (${e?.message})`);
  if (reason) tt.equal(e?.reason, reason, `${msg}: reason ${reason}`);
  tt.equal(e?.remote, false, `${msg}: ${detector} detected it`);
  const r = p.error(peer);
  tt.ok(r, `${msg}: ${peer} failed too`);
  tt.equal(r?.alert, alert, `${msg}: ${peer} received ${alert}`);
  tt.equal(r?.remote, true, `${msg}: ${peer} learned it from the alert`);
  tt.equal(p.client.phase, 'failed', `${msg}: client phase failed`);
  tt.equal(p.server.phase, 'failed', `${msg}: server phase failed`);
}

const clientHellos = (p: Pair): Uint8Array[] =>
  splitMessages(concat(...p.records('client').filter((r) => r.type === ContentType.handshake && r.fragment[0] === 1).map((r) => r.fragment)));

for (const crypto of PROVIDERS) {
  const P = crypto.name;

  t.test(`${P}: psk_dhe_ke and psk_ke`, async (tt) => {
    const a = makePsk('alice');
    const dhe = handshake({ crypto, psks: [a] }, { crypto, psks: [a] });
    assertConnected(tt, dhe, 'psk_dhe_ke');
    tt.equal(dhe.info('client')?.kex, 'psk_dhe_ke', 'psk_dhe_ke is the default');
    tt.equal(dhe.info('client')?.group, 'x25519', 'x25519 is the default group');
    tt.equal(dhe.info('client')?.suite, 'TLS_AES_128_GCM_SHA256', 'AES-128-GCM is the default suite');
    tt.equal(dhe.info('client')?.version, 'TLSv1.3');
    assertTraffic(tt, dhe, 'psk_dhe_ke');

    const ke = handshake({ crypto, psks: [a], kexModes: ['psk_ke'] }, { crypto, psks: [a] });
    assertConnected(tt, ke, 'psk_ke');
    tt.equal(ke.info('server')?.kex, 'psk_ke');
    tt.equal(ke.info('server')?.group, null, 'psk_ke has no group');
    const ch = decodeClientHello(clientHellos(ke)[0]);
    tt.equal(ch.keyShares, undefined, 'a psk_ke-only ClientHello carries no key_share');
    tt.equal(ch.supportedGroups, undefined, 'nor supported_groups');
    tt.same(ch.pskModes, [0], 'psk_key_exchange_modes = [psk_ke]');
    const sh = decodeServerHello(firstHandshakeMessage(ke.records('server')));
    tt.equal(sh.keyShare, undefined, 'the ServerHello carries no key_share for psk_ke');
    assertTraffic(tt, ke, 'psk_ke');

    // Two handshakes with the same PSK derive different keys (fresh randoms and shares).
    const again = handshake({ crypto, psks: [a] }, { crypto, psks: [a] });
    tt.not(
      toHex(again.client.exportKeyingMaterial('x', new Uint8Array(0), 16)),
      toHex(dhe.client.exportKeyingMaterial('x', new Uint8Array(0), 16)),
      'two sessions under one PSK export different keys',
    );
  });

  t.test(`${P}: every suite and group completes`, async (tt) => {
    for (const suite of ALL_SUITES) {
      const psk = makePsk('s', suite === 'TLS_AES_256_GCM_SHA384' ? 'SHA-384' : 'SHA-256');
      for (const group of ['x25519', 'secp256r1', 'secp384r1'] as GroupName[]) {
        const p = handshake({ crypto, psks: [psk], suites: [suite], groups: [group] }, { crypto, psks: [psk] });
        assertConnected(tt, p, `${suite} ${group}`);
        tt.equal(p.info('client')?.suite, suite);
        tt.equal(p.info('client')?.group, group);
        assertTraffic(tt, p, `${suite} ${group}`);
      }
    }
  });
}

t.test('key-exchange mode preference: the server follows its order among the client modes', async (tt) => {
  const crypto = nodeProvider;
  const a = makePsk('a');
  const cases: { client: ('psk_ke' | 'psk_dhe_ke')[]; server?: ('psk_ke' | 'psk_dhe_ke')[]; expect: 'psk_ke' | 'psk_dhe_ke' | null }[] = [
    { client: ['psk_ke', 'psk_dhe_ke'], expect: 'psk_dhe_ke' }, // server default prefers DHE
    { client: ['psk_dhe_ke', 'psk_ke'], server: ['psk_ke', 'psk_dhe_ke'], expect: 'psk_ke' },
    { client: ['psk_ke', 'psk_dhe_ke'], server: ['psk_ke', 'psk_dhe_ke'], expect: 'psk_ke' },
    { client: ['psk_dhe_ke', 'psk_ke'], server: ['psk_dhe_ke'], expect: 'psk_dhe_ke' },
    { client: ['psk_ke'], server: ['psk_ke'], expect: 'psk_ke' },
    { client: ['psk_ke'], server: ['psk_dhe_ke'], expect: null },
    { client: ['psk_dhe_ke'], server: ['psk_ke'], expect: null },
  ];
  for (const c of cases) {
    const msg = `client ${c.client.join(',')} / server ${(c.server ?? ['default']).join(',')}`;
    const p = handshake({ crypto, psks: [a], kexModes: c.client }, { crypto, psks: [a], kexModes: c.server });
    const ch = decodeClientHello(clientHellos(p)[0]);
    tt.same(
      ch.pskModes,
      c.client.map((m) => (m === 'psk_ke' ? 0 : 1)),
      `${msg}: the client lists its modes in its order`,
    );
    if (c.expect === null) {
      assertFailed(tt, p, 'server', 'handshake_failure', msg);
      tt.equal(p.error('server')?.reason, 'NoCommonKeyExchangeMode', `${msg}: reason`);
    } else {
      assertConnected(tt, p, msg);
      tt.equal(p.info('client')?.kex, c.expect, `${msg}: ${c.expect}`);
    }
  }
});

t.test('several PSKs: the server selects among the identities it knows; selected_identity is honoured', async (tt) => {
  const crypto = nodeProvider;
  const [a, b, c] = [makePsk('key-A'), makePsk('key-B'), makePsk('key-C')];

  // The server knows only B: it selects index 1, and the client uses B's secret.
  let p = handshake({ crypto, psks: [a, b, c] }, { crypto, psks: [b] });
  assertConnected(tt, p, 'server knows B');
  tt.equal(p.info('client')?.identityIndex, 1, 'selected_identity 1');
  tt.equal(p.info('client')?.identity, 'key-B');
  tt.equal(decodeServerHello(firstHandshakeMessage(p.records('server'))).selectedIdentity, 1, 'on the wire: selected_identity 1');
  const ch = decodeClientHello(clientHellos(p)[0]);
  tt.same(
    ch.psks?.identities.map((i) => new TextDecoder().decode(i.identity)),
    ['key-A', 'key-B', 'key-C'],
    'identities offered in order',
  );
  tt.equal(ch.psks?.binders.length, 3, 'one binder per identity');
  assertTraffic(tt, p, 'B');

  // Knowing C and B (in that order), the server takes the first in the client's order: B.
  p = handshake({ crypto, psks: [a, b, c] }, { crypto, psks: [c, b] });
  assertConnected(tt, p, 'server knows C and B');
  tt.equal(p.info('server')?.identity, 'key-B', 'first known PSK in the client order');

  // A synchronous resolver that knows only C.
  const seen: string[][] = [];
  p = handshake(
    { crypto, psks: [a, b, c] },
    {
      crypto,
      psks: (req) => {
        seen.push(req.identities.map((i) => new TextDecoder().decode(i)));
        return req.identities.map((i) => (equalConstantTime(i, c.identity) ? c : undefined));
      },
    },
  );
  assertConnected(tt, p, 'resolver knows C');
  tt.equal(p.info('client')?.identityIndex, 2, 'selected_identity 2');
  tt.same(seen, [['key-A', 'key-B', 'key-C']], 'the resolver saw every identity once');
  assertTraffic(tt, p, 'C');

  // The server holds a different secret under B's identity than the client: the binder of B fails.
  const wrongB: Psk = { ...b, secret: makePsk('x').secret };
  p = handshake({ crypto, psks: [a, b] }, { crypto, psks: [wrongB] });
  assertFailed(tt, p, 'server', 'decrypt_error', 'B with a different secret');
});

t.test("a PSK's hash restricts the cipher suites", async (tt) => {
  const crypto = nodeProvider;
  const h384 = makePsk('sha384', 'SHA-384');
  const h256 = makePsk('sha256', 'SHA-256');

  let p = handshake({ crypto, psks: [h384] }, { crypto, psks: [h384] });
  assertConnected(tt, p, 'SHA-384 PSK');
  tt.equal(p.info('client')?.suite, 'TLS_AES_256_GCM_SHA384', 'a SHA-384 PSK can only use AES-256-GCM-SHA384');
  assertTraffic(tt, p, 'SHA-384 PSK');

  // Both offered: the server's suite order decides, and with it the PSK.
  p = handshake({ crypto, psks: [h384, h256] }, { crypto, psks: [h384, h256] });
  assertConnected(tt, p, 'both, server prefers AES-128');
  tt.equal(p.info('server')?.suite, 'TLS_AES_128_GCM_SHA256');
  tt.equal(p.info('server')?.identity, 'sha256', 'the SHA-256 PSK goes with AES-128');
  tt.equal(p.info('client')?.identityIndex, 1);
  p = handshake({ crypto, psks: [h384, h256] }, { crypto, psks: [h384, h256], suites: ['TLS_AES_256_GCM_SHA384', 'TLS_AES_128_GCM_SHA256'] });
  assertConnected(tt, p, 'both, server prefers AES-256');
  tt.equal(p.info('server')?.suite, 'TLS_AES_256_GCM_SHA384');
  tt.equal(p.info('client')?.identity, 'sha384');
  tt.equal(decodeClientHello(clientHellos(p)[0]).psks?.binders[0].length, 48, 'the SHA-384 binder is 48 bytes');

  // No suite for the PSK's hash on the server: handshake_failure.
  p = handshake({ crypto, psks: [h384] }, { crypto, psks: [h384], suites: ['TLS_AES_128_GCM_SHA256'] });
  assertFailed(tt, p, 'server', 'handshake_failure', 'SHA-384 PSK, server without AES-256');
  tt.equal(p.error('server')?.reason, 'NoCommonCipherSuite');

  // A client cannot offer a PSK that none of its suites can use.
  tt.throws(() => Connection.client({ crypto, psks: [h384], suites: ['TLS_AES_128_GCM_SHA256'] }), TypeError, 'no usable PSK is a usage error');
  // ... and leaves such a PSK out when another is usable.
  p = handshake({ crypto, psks: [h384, h256], suites: ['TLS_CHACHA20_POLY1305_SHA256'] }, { crypto, psks: [h384, h256] });
  assertConnected(tt, p, 'unusable PSK left out');
  tt.equal(decodeClientHello(clientHellos(p)[0]).psks?.identities.length, 1, 'only the SHA-256 PSK is offered');
  tt.equal(p.info('client')?.suite, 'TLS_CHACHA20_POLY1305_SHA256');
});

for (const crypto of PROVIDERS) {
  t.test(`${crypto.name}: HelloRetryRequest`, async (tt) => {
    const psk = makePsk('retry');
    const cases: { serverGroups: GroupName[]; share: GroupName; cookie: boolean; compat: boolean }[] = [
      // The server takes a share the client sent for any of its groups; it asks again only when there is none.
      { serverGroups: ['secp256r1', 'secp384r1'], share: 'x25519', cookie: true, compat: true },
      { serverGroups: ['x25519'], share: 'secp384r1', cookie: true, compat: false },
      { serverGroups: ['secp384r1', 'secp256r1'], share: 'x25519', cookie: false, compat: true },
    ];
    for (const c of cases) {
      const msg = `server ${c.serverGroups.join(',')}, client share ${c.share}, cookie ${c.cookie}, compat ${c.compat}`;
      const p = handshake(
        { crypto, psks: [psk], keyShareGroups: [c.share], middleboxCompatibility: c.compat },
        { crypto, psks: [psk], groups: c.serverGroups, helloRetryCookie: c.cookie },
      );
      assertConnected(tt, p, msg);
      const want = c.serverGroups[0];
      tt.equal(p.info('client')?.helloRetry, true, `${msg}: helloRetry reported`);
      tt.equal(p.info('client')?.group, want, `${msg}: the server's group`);

      const [ch1Raw, ch2Raw] = clientHellos(p);
      const hrrRaw = firstHandshakeMessage(p.records('server'));
      const hrr = decodeServerHello(hrrRaw);
      tt.ok(hrr.isHelloRetryRequest, `${msg}: the server's first message is a HelloRetryRequest`);
      tt.equal(hrr.selectedGroup, NamedGroup[want], `${msg}: HRR selects ${want}`);
      const ch1 = decodeClientHello(ch1Raw);
      const ch2 = decodeClientHello(ch2Raw);
      tt.same(
        ch2.keyShares?.map((k) => k.group),
        [NamedGroup[want]],
        `${msg}: the second ClientHello has one new share for ${want}`,
      );
      tt.equal(toHex(ch2.random), toHex(ch1.random), `${msg}: same random`);
      if (c.cookie) {
        tt.ok(hrr.cookie && hrr.cookie.length > 0, `${msg}: HRR carries a cookie`);
        tt.equal(toHex(ch2.cookie ?? new Uint8Array(0)), toHex(hrr.cookie!), `${msg}: the cookie is echoed`);
      } else {
        tt.equal(hrr.cookie, undefined, `${msg}: no cookie`);
        tt.equal(ch2.cookie, undefined, `${msg}: none echoed`);
      }
      // §4.2.11.2: the binders are recomputed over message_hash(CH1) || HRR || truncated CH2.
      const es = EarlySecret.fromPsk(crypto, 'SHA-256', psk.secret);
      const bk = es.binderKey('external');
      const h = crypto.hash('SHA-256');
      const binder1 = finishedVerifyData(crypto, 'SHA-256', bk, h.digest(ch1Raw.subarray(0, ch1.truncatedLength)));
      const tr = new Transcript(crypto, 'SHA-256').add(ch1Raw).replaceWithMessageHash().add(hrrRaw);
      const binder2 = finishedVerifyData(crypto, 'SHA-256', bk, tr.currentWith(ch2Raw.subarray(0, ch2.truncatedLength)));
      tt.equal(toHex(ch1.psks!.binders[0]), toHex(binder1), `${msg}: first binder over the truncated CH1`);
      tt.equal(toHex(ch2.psks!.binders[0]), toHex(binder2), `${msg}: second binder over message_hash || HRR || truncated CH2`);
      tt.not(toHex(binder1), toHex(binder2), `${msg}: the binder changed`);
      const ccs = (s: Side) => p.records(s).filter((r) => r.type === ContentType.change_cipher_spec).length;
      tt.equal(ccs('client'), c.compat ? 1 : 0, `${msg}: client change_cipher_spec count`);
      tt.equal(ccs('server'), c.compat ? 1 : 0, `${msg}: server change_cipher_spec count (after the HRR only)`);
      assertTraffic(tt, p, msg);
    }
  });
}

/** A client that has sent its first ClientHello, and that ClientHello. */
function clientAfterHello(options: Partial<ClientOptions> = {}): { client: Connection; ch: ReturnType<typeof decodeClientHello>; psk: Psk } {
  const psk = makePsk('scripted');
  const client = Connection.client({ crypto: nodeProvider, psks: [psk], ...options });
  const out = client.takeOutput()!;
  return { client, ch: decodeClientHello(firstHandshakeMessage(splitRecords(out))), psk };
}

function helloRetryRecord(ch: ReturnType<typeof decodeClientHello>, group: number | undefined, cookie?: Uint8Array): Uint8Array {
  const list = [];
  if (group !== undefined) list.push(ext(ExtensionType.key_share, (w) => w.u16(group)));
  if (cookie) list.push(ext(ExtensionType.cookie, (w) => w.vec16(cookie)));
  list.push(ext(ExtensionType.supported_versions, (w) => w.u16(ProtocolVersion.TLSv1_3)));
  const hrr = encodeServerHello({ random: HELLO_RETRY_REQUEST_RANDOM, sessionIdEcho: ch.sessionId, cipherSuite: 0x1301, extensions: list });
  return plainRecord(ContentType.handshake, hrr);
}

/** The client's error after receiving `bytes`, checking that it sent exactly one alert, in plaintext. */
function clientFailsOn(tt: Tap, client: Connection, bytes: Uint8Array, alert: AlertName, msg: string, reason?: Reason): void {
  client.receive(bytes);
  const ev = client.takeEvents().filter((e) => e.type === 'error');
  tt.equal(ev.length, 1, `${msg}: one error event`);
  const e = ev[0]?.type === 'error' ? ev[0].error : undefined;
  tt.equal(e?.alert, alert, `${msg}: ${alert} (${e?.message})`);
  if (reason) tt.equal(e?.reason, reason, `${msg}: reason ${reason}`);
  tt.equal(e?.remote, false, `${msg}: detected locally`);
  const out = client.takeOutput();
  const alerts = out ? plaintextAlerts(splitRecords(out)) : [];
  tt.same(alerts, [{ level: 2, code: AlertDescription[alert] }], `${msg}: one fatal ${alert} alert sent`);
}

t.test('HelloRetryRequest from a scripted server: a second one, or one for a group already sent', async (tt) => {
  // A second HelloRetryRequest is unexpected_message (§4.1.4).
  {
    const { client, ch } = clientAfterHello({ middleboxCompatibility: false });
    client.receive(helloRetryRecord(ch, NamedGroup.secp256r1, utf8('cookie-1')));
    const out = client.takeOutput();
    tt.ok(out, 'the client answers the first HRR');
    const ch2 = decodeClientHello(firstHandshakeMessage(splitRecords(out!)));
    tt.same(
      ch2.keyShares?.map((k) => k.group),
      [NamedGroup.secp256r1],
      'with a secp256r1 share',
    );
    tt.equal(new TextDecoder().decode(ch2.cookie), 'cookie-1', 'and the cookie');
    tt.equal(client.takeEvents().filter((e) => e.type === 'error').length, 0, 'no error yet');
    clientFailsOn(tt, client, helloRetryRecord(ch, NamedGroup.secp384r1), 'unexpected_message', 'second HRR', 'SecondHelloRetryRequest');
  }
  // An HRR asking for the group we already sent a share for changes nothing: illegal_parameter (§4.1.4).
  {
    const { client, ch } = clientAfterHello();
    clientFailsOn(tt, client, helloRetryRecord(ch, NamedGroup.x25519), 'illegal_parameter', 'HRR for x25519, already sent', 'HelloRetryRequestBadGroup');
  }
  // An HRR for a group we do not support, or that changes nothing at all.
  {
    const { client, ch } = clientAfterHello({ groups: ['x25519', 'secp256r1'] });
    clientFailsOn(tt, client, helloRetryRecord(ch, NamedGroup.secp384r1), 'illegal_parameter', 'HRR for a group not offered', 'HelloRetryRequestBadGroup');
  }
  {
    const { client, ch } = clientAfterHello();
    clientFailsOn(tt, client, helloRetryRecord(ch, NamedGroup.x448), 'illegal_parameter', 'HRR for an unknown group', 'HelloRetryRequestBadGroup');
  }
  {
    const { client, ch } = clientAfterHello();
    clientFailsOn(tt, client, helloRetryRecord(ch, undefined), 'illegal_parameter', 'HRR with neither key_share nor cookie', 'HelloRetryRequestUseless');
  }
  {
    const { client, ch } = clientAfterHello({ kexModes: ['psk_ke'] });
    clientFailsOn(tt, client, helloRetryRecord(ch, NamedGroup.secp256r1), 'unsupported_extension', 'HRR asking psk_ke-only client for a group (it sent no key_share: RFC 8446 §4.1.4)', 'UnsolicitedKeyShare');
  }
});

for (const crypto of PROVIDERS) {
  t.test(`${crypto.name}: 0-RTT accepted`, async (tt) => {
    const psk = makePsk('zero-rtt');
    const early = utf8('GET /idempotent');
    const p = handshake({ crypto, psks: [psk], earlyData: early }, { crypto, psks: [psk], maxEarlyDataSize: 1024, earlyDataReplayGuard: createEarlyDataReplayGuard() });
    assertConnected(tt, p, '0-RTT accepted');
    tt.equal(p.info('client')?.earlyData, 'accepted');
    tt.equal(p.info('server')?.earlyData, 'accepted');
    tt.same(
      p.events('client').filter((e) => e.type === 'early-data'),
      [{ type: 'early-data', status: 'accepted' }],
      'the client learns: accepted',
    );
    tt.equal(toHex(p.received('server', 'early')), toHex(early), 'the data arrives as early data');
    tt.equal(p.received('server', 'normal').length, 0, 'and is not sent again');
    const ch = decodeClientHello(clientHellos(p)[0]);
    tt.ok(ch.earlyData, 'the ClientHello carries early_data');
    // The client's first flight: ClientHello, the compatibility CCS, then the 0-RTT record.
    const first = splitRecords(p.clientSent[0]).map((r) => r.type);
    tt.same(first, [ContentType.handshake, ContentType.change_cipher_spec, ContentType.application_data], 'CH, CCS, 0-RTT record');
    assertTraffic(tt, p, '0-RTT accepted');
  });

  t.test(`${crypto.name}: 0-RTT rejected`, async (tt) => {
    const psk = makePsk('zero-rtt');
    const early = utf8('early, to be rejected');
    let p = handshake({ crypto, psks: [psk], earlyData: early, resendRejectedEarlyData: true }, { crypto, psks: [psk] });
    assertConnected(tt, p, '0-RTT rejected');
    tt.equal(p.info('server')?.earlyData, 'rejected', 'server default: rejected');
    tt.equal(p.info('client')?.earlyData, 'rejected');
    tt.same(
      p.events('client').filter((e) => e.type === 'early-data'),
      [{ type: 'early-data', status: 'rejected' }],
      'the client learns: rejected',
    );
    tt.equal(p.received('server', 'early').length, 0, 'nothing arrives as early data (skipped by trial decryption)');
    tt.equal(toHex(p.received('server', 'normal')), toHex(early), 'resent after the handshake');
    assertTraffic(tt, p, '0-RTT rejected');

    p = handshake({ crypto, psks: [psk], earlyData: early }, { crypto, psks: [psk] });
    assertConnected(tt, p, '0-RTT rejected, no resend');
    tt.equal(p.received('server').length, 0, 'by default (RFC 8446 §4.2.10: SHOULD NOT resend) the data is dropped');
    assertTraffic(tt, p, 'no resend');

    // The server accepts 0-RTT only for the first PSK.
    const other = makePsk('other');
    p = handshake({ crypto, psks: [psk, other], earlyData: early, resendRejectedEarlyData: true }, { crypto, psks: [other], maxEarlyDataSize: 1024, earlyDataReplayGuard: createEarlyDataReplayGuard() });
    assertConnected(tt, p, '0-RTT with the second PSK selected');
    tt.equal(p.info('server')?.earlyData, 'rejected', 'rejected: the server did not select the first PSK');
    tt.equal(toHex(p.received('server', 'normal')), toHex(early), 'resent');
  });
}

t.test('0-RTT after a HelloRetryRequest is skipped and resent', async (tt) => {
  const crypto = nodeProvider;
  const psk = makePsk('hrr-early');
  const early = new Uint8Array(40000).fill(7);
  const p = handshake(
    { crypto, psks: [psk], earlyData: early, resendRejectedEarlyData: true },
    { crypto, psks: [psk], maxEarlyDataSize: 100000, earlyDataReplayGuard: createEarlyDataReplayGuard(), groups: ['secp256r1'] },
  );
  assertConnected(tt, p, '0-RTT + HRR');
  tt.equal(p.info('server')?.helloRetry, true);
  tt.equal(p.info('server')?.earlyData, 'rejected', 'rejected after a retry');
  tt.same(
    p.events('client').filter((e) => e.type === 'early-data'),
    [{ type: 'early-data', status: 'rejected' }],
    'the client learns it once',
  );
  tt.equal(p.received('server', 'early').length, 0, 'no early data delivered');
  tt.equal(toHex(p.received('server', 'normal')), toHex(early), 'resent once after the handshake');
  tt.notOk(decodeClientHello(clientHellos(p)[1]).earlyData, 'no early_data in the second ClientHello');
  assertTraffic(tt, p, '0-RTT + HRR');
});

t.test('more early data than allowed is unexpected_message', async (tt) => {
  const crypto = nodeProvider;
  const psk = makePsk('greedy');
  // Accepted, but over max_early_data_size.
  let p = handshake({ crypto, psks: [psk], earlyData: new Uint8Array(100) }, { crypto, psks: [psk], maxEarlyDataSize: 99, earlyDataReplayGuard: createEarlyDataReplayGuard() });
  assertFailed(tt, p, 'server', 'unexpected_message', 'accepted 0-RTT over the limit');
  tt.equal(p.error('server')?.reason, 'EarlyDataTooLong');
  // Exactly at the limit is fine.
  p = handshake({ crypto, psks: [psk], earlyData: new Uint8Array(100) }, { crypto, psks: [psk], maxEarlyDataSize: 100, earlyDataReplayGuard: createEarlyDataReplayGuard() });
  assertConnected(tt, p, 'at the limit');
  tt.equal(p.received('server', 'early').length, 100);
  // Rejected, and more undecryptable data than the server skips.
  p = handshake({ crypto, psks: [psk], earlyData: new Uint8Array(70000) }, { crypto, psks: [psk] });
  assertFailed(tt, p, 'server', 'unexpected_message', 'rejected 0-RTT over the skip limit');
  // After an HRR, more plaintext-skipped data than the limit.
  p = handshake({ crypto, psks: [psk], earlyData: new Uint8Array(70000) }, { crypto, psks: [psk], groups: ['secp256r1'] });
  tt.equal(p.error('server')?.alert, 'unexpected_message', 'skipped 0-RTT after HRR over the limit');
});

t.test('middlebox compatibility on and off', async (tt) => {
  const crypto = nodeProvider;
  const psk = makePsk('compat');
  const ccs = (p: Pair, s: Side) => p.records(s).filter((r) => r.type === ContentType.change_cipher_spec);

  const on = handshake({ crypto, psks: [psk] }, { crypto, psks: [psk] });
  assertConnected(tt, on, 'compat on');
  tt.equal(decodeClientHello(clientHellos(on)[0]).sessionId.length, 32, 'a 32-byte legacy_session_id');
  tt.equal(toHex(decodeServerHello(firstHandshakeMessage(on.records('server'))).sessionIdEcho), toHex(decodeClientHello(clientHellos(on)[0]).sessionId), 'echoed');
  tt.equal(ccs(on, 'client').length, 1, 'the client sends one CCS');
  tt.equal(ccs(on, 'server').length, 1, 'the server sends one CCS');
  tt.same(
    splitRecords(on.serverSent[0]).map((r) => r.type).slice(0, 2),
    [ContentType.handshake, ContentType.change_cipher_spec],
    'the server CCS follows the ServerHello',
  );
  tt.same(
    splitRecords(on.clientSent[1]).map((r) => r.type),
    [ContentType.change_cipher_spec, ContentType.application_data],
    'the client CCS precedes its protected Finished',
  );
  for (const s of ['client', 'server'] as Side[]) tt.same([...ccs(on, s)[0].fragment], [1], `${s} CCS is the byte 0x01`);

  const off = handshake({ crypto, psks: [psk], middleboxCompatibility: false }, { crypto, psks: [psk] });
  assertConnected(tt, off, 'compat off');
  tt.equal(decodeClientHello(clientHellos(off)[0]).sessionId.length, 0, 'empty legacy_session_id');
  tt.equal(ccs(off, 'client').length, 0, 'no client CCS');
  tt.equal(ccs(off, 'server').length, 0, 'no server CCS');

  // Both sides tolerate a dummy CCS during the handshake even when they did not use compatibility mode.
  const ccsRecord = plainRecord(ContentType.change_cipher_spec, new Uint8Array([1]));
  let n = 0;
  const tolerant = handshake(
    { crypto, psks: [psk], middleboxCompatibility: false },
    { crypto, psks: [psk] },
    {
      // Before the ServerHello and between it and the protected flight (not after the Finished: §5).
      toClient: (b) => {
        if (n++ !== 0) return b;
        const [sh, ...rest] = splitRecords(b);
        return concat(ccsRecord, sh.bytes, ccsRecord, ...rest.map((r) => r.bytes));
      },
      toServer: (b) => (b[0] === ContentType.application_data && n === 1 ? (n++, concat(ccsRecord, b)) : b),
    },
  );
  assertConnected(tt, tolerant, 'extra CCS tolerated');
  tt.equal(n, 2, 'a CCS was injected both ways');
  assertTraffic(tt, tolerant, 'after extra CCS');
});

t.test('KeyUpdate in both directions, update_requested answered, data flows after', async (tt) => {
  for (const crypto of PROVIDERS) {
    const psk = makePsk('ku');
    const keys = new KeyLog();
    const p = handshake({ crypto, psks: [psk], keyLog: keys.sink }, { crypto, psks: [psk] });
    assertConnected(tt, p, `${crypto.name} before KeyUpdate`);
    p.events('client').length = 0;
    p.events('server').length = 0;

    // Client updates, not requesting: only its write / the server's read change.
    p.client.keyUpdate(false);
    p.client.write(utf8('after client update'));
    const sentAfter = p.client.takeOutput()!;
    p.server.receive(sentAfter);
    p.pump();
    tt.same(p.events('client').filter((e) => e.type === 'key-update'), [{ type: 'key-update', direction: 'write' }], 'client: write updated');
    tt.same(p.events('server').filter((e) => e.type === 'key-update'), [{ type: 'key-update', direction: 'read' }], 'server: read updated');
    tt.equal(new TextDecoder().decode(p.received('server')), 'after client update', 'data after the update');
    // The record after the KeyUpdate is no longer readable with CLIENT_TRAFFIC_SECRET_0.
    const old = protection(crypto, 'TLS_AES_128_GCM_SHA256', keys.secret('CLIENT_TRAFFIC_SECRET_0'));
    const recs = splitRecords(sentAfter);
    tt.equal(recs.length, 2, 'KeyUpdate and data records');
    const ku = openRecord(old, recs[0]);
    tt.same([ku.type, ...ku.content], [ContentType.handshake, HandshakeType.key_update, 0, 0, 1, 0], 'a KeyUpdate(update_not_requested) under the old key');
    let reason = 'none';
    try {
      openRecord(old, recs[1]);
    } catch (e) {
      reason = (e as { reason?: string }).reason ?? String(e);
    }
    tt.equal(reason, 'RecordBadMac', 'the data uses the new key');

    // Server updates and requests: the client answers with its own KeyUpdate.
    p.events('client').length = 0;
    p.events('server').length = 0;
    p.server.keyUpdate(true);
    p.pump();
    tt.same(
      p.events('server').filter((e) => e.type === 'key-update').map((e) => (e as { direction: string }).direction),
      ['write', 'read'],
      'server: its write, then its read after the answer',
    );
    tt.same(
      p.events('client').filter((e) => e.type === 'key-update').map((e) => (e as { direction: string }).direction),
      ['read', 'write'],
      'client: read, then answered (write)',
    );
    // Several more in a row, both ways, then data.
    for (let i = 0; i < 3; i++) {
      p.client.keyUpdate(i % 2 === 0);
      p.server.keyUpdate(false);
    }
    p.pump();
    tt.equal(p.error('client'), undefined, 'no client error after many updates');
    tt.equal(p.error('server'), undefined, 'no server error after many updates');
    assertTraffic(tt, p, `${crypto.name} after KeyUpdates`);
    // Before the handshake KeyUpdate is a usage error.
    tt.throws(() => Connection.client({ crypto, psks: [psk] }).keyUpdate(), Error, 'keyUpdate before the handshake throws');
  }
});

t.test('a NewSessionTicket from a scripted server is ignored (and parsed)', async (tt) => {
  const crypto = nodeProvider;
  const psk = makePsk('nst');
  const keys = new KeyLog();
  const p = handshake({ crypto, psks: [psk] }, { crypto, psks: [psk], keyLog: keys.sink });
  assertConnected(tt, p, 'handshake');
  const sats = protection(crypto, 'TLS_AES_128_GCM_SHA256', keys.secret('SERVER_TRAFFIC_SECRET_0'));
  const ticket = (lifetime: number) =>
    handshakeMessage(
      HandshakeType.new_session_ticket,
      new Writer()
        .u32(lifetime)
        .u32(0x01020304)
        .vec8(new Uint8Array([0]))
        .vec16(utf8('a ticket we cannot use'))
        .vec16((e) => e.u16(ExtensionType.early_data).vec16((b) => b.u32(1024)))
        .finish(),
    );
  p.client.receive(sats.seal(ContentType.handshake, ticket(7200)));
  p.client.receive(sats.seal(ContentType.application_data, utf8('data after the ticket')));
  tt.equal(p.client.phase, 'connected', 'still connected after the ticket');
  tt.equal(p.client.takeOutput(), null, 'nothing sent in answer');
  tt.equal(new TextDecoder().decode(p.received('client')), 'data after the ticket', 'data after the ticket arrives');
  // A malformed ticket (lifetime over 7 days) is still a protocol error.
  p.client.receive(sats.seal(ContentType.handshake, ticket(604801)));
  tt.equal(p.error('client')?.alert, 'illegal_parameter', 'a ticket lifetime over 7 days is illegal_parameter');
  tt.equal(p.error('client')?.reason, 'TicketLifetimeTooLong', 'reason TicketLifetimeTooLong');
});

t.test('close_notify and half-close', async (tt) => {
  for (const crypto of PROVIDERS) {
    const psk = makePsk('close');
    const p = handshake({ crypto, psks: [psk] }, { crypto, psks: [psk] });
    assertConnected(tt, p, 'handshake');
    p.client.write(utf8('last words'));
    p.client.close();
    tt.notOk(p.client.writable, 'the client can no longer write');
    tt.throws(() => p.client.write(utf8('x')), Error, 'writing after close throws');
    p.pump();
    tt.equal(new TextDecoder().decode(p.received('server')), 'last words', 'data before close_notify arrives');
    tt.ok(p.events('server').some((e) => e.type === 'end'), 'the server sees end');
    tt.ok(p.server.peerClosed, 'server.peerClosed');
    tt.equal(p.server.phase, 'connected', 'the server can still write');
    // The other direction keeps going.
    for (let i = 0; i < 3; i++) p.server.write(utf8(`reply ${i};`));
    p.pump();
    tt.equal(new TextDecoder().decode(p.received('client')), 'reply 0;reply 1;reply 2;', 'the half-closed client still receives');
    tt.equal(p.client.phase, 'connected', 'client not closed until the server closes');
    p.server.close();
    p.pump();
    tt.ok(p.events('client').some((e) => e.type === 'end'), 'the client sees end');
    tt.equal(p.client.phase, 'closed', 'client closed');
    tt.equal(p.server.phase, 'closed', 'server closed');
    tt.equal(p.error('client'), undefined, 'no error');
    tt.equal(p.error('server'), undefined, 'no error');
  }

  // Written and closed before the handshake completed: sent after it, in order.
  const crypto = nodeProvider;
  const psk = makePsk('early-close');
  const p = new Pair({ crypto, psks: [psk] }, { crypto, psks: [psk] });
  p.client.write(utf8('queued '));
  p.client.write(utf8('before the handshake'));
  p.client.close();
  p.pump();
  tt.equal(new TextDecoder().decode(p.received('server')), 'queued before the handshake', 'queued data arrives');
  tt.ok(p.events('server').some((e) => e.type === 'end'), 'then close_notify');
  p.server.write(utf8('still here'));
  p.pump();
  tt.equal(new TextDecoder().decode(p.received('client')), 'still here', 'server data after the client closed');

  // close_notify during the handshake is reported as the peer giving up.
  const q = new Pair({ crypto, psks: [psk] }, { crypto, psks: [psk] });
  q.server.receive(q.client.takeOutput()!);
  q.server.takeOutput();
  q.client.receive(plainRecord(ContentType.alert, new Uint8Array([1, 0])));
  tt.equal(q.error('client')?.remote, true, 'close_notify before the handshake completes is an error (remote)');
  tt.equal(q.error('client')?.alert, 'close_notify');
});

t.test('exporters: equal on both sides, different by label, context and session', async (tt) => {
  for (const crypto of PROVIDERS) {
    for (const hash of ['SHA-256', 'SHA-384'] as const) {
      const psk = makePsk('exp', hash);
      const p = handshake({ crypto, psks: [psk] }, { crypto, psks: [psk] });
      assertConnected(tt, p, `${crypto.name} ${hash}`);
      const ex = (s: Side, label: string, ctx: string, n = 32) =>
        toHex((s === 'client' ? p.client : p.server).exportKeyingMaterial(label, utf8(ctx), n));
      tt.equal(ex('client', 'EXPORTER-a', 'ctx'), ex('server', 'EXPORTER-a', 'ctx'), 'same label and context: equal');
      tt.equal(ex('client', 'EXPORTER-a', '', 64), ex('server', 'EXPORTER-a', '', 64), '64 bytes, empty context: equal');
      tt.not(ex('client', 'EXPORTER-a', 'ctx'), ex('client', 'EXPORTER-b', 'ctx'), 'another label: different');
      tt.not(ex('client', 'EXPORTER-a', 'ctx'), ex('client', 'EXPORTER-a', 'ctx2'), 'another context: different');
      tt.equal(ex('client', 'EXPORTER-a', 'ctx', 16).length, 32, '16 bytes asked, 16 given');
    }
  }
  tt.throws(
    () => Connection.client({ crypto: nodeProvider, psks: [makePsk('x')] }).exportKeyingMaterial('x', new Uint8Array(0), 16),
    Error,
    'no exporter before the handshake',
  );
});

t.test('ALPN negotiation and no_application_protocol', async (tt) => {
  const crypto = nodeProvider;
  const psk = makePsk('alpn');
  let p = handshake({ crypto, psks: [psk], alpn: ['h2', 'http/1.1'] }, { crypto, psks: [psk], alpn: ['http/1.1', 'h2'] });
  assertConnected(tt, p, 'ALPN');
  tt.equal(p.info('server')?.alpn, 'http/1.1', "the server's preference wins");
  tt.equal(p.info('client')?.alpn, 'http/1.1', 'the client learns it');
  tt.same(decodeClientHello(clientHellos(p)[0]).alpn, ['h2', 'http/1.1'], 'the client offers in its order');

  p = handshake({ crypto, psks: [psk], alpn: ['h2'] }, { crypto, psks: [psk], alpn: ['qkd/1'] });
  assertFailed(tt, p, 'server', 'no_application_protocol', 'no common protocol', 'NoApplicationProtocol');

  p = handshake({ crypto, psks: [psk], alpn: ['h2'] }, { crypto, psks: [psk] });
  assertConnected(tt, p, 'server without ALPN');
  tt.equal(p.info('client')?.alpn, undefined, 'no protocol when the server has none');
  p = handshake({ crypto, psks: [psk] }, { crypto, psks: [psk], alpn: ['h2'] });
  assertConnected(tt, p, 'client without ALPN');
  tt.equal(p.info('server')?.alpn, undefined, 'no protocol when the client offers none');

  // A server that answers a protocol the client did not offer.
  p = handshake(
    { crypto, psks: [psk], alpn: ['h2'] },
    { crypto, psks: [psk], alpn: ['h2'], dangerousEncryptedExtensions: (l) => l.map((e) => (e.type === ExtensionType.application_layer_protocol_negotiation ? ext(e.type, (w) => w.vec16((x) => x.vec8(utf8('spdy/3')))) : e)) },
  );
  assertFailed(tt, p, 'client', 'illegal_parameter', 'ALPN answer not offered');
});

t.test('SNI', async (tt) => {
  const crypto = nodeProvider;
  const psk = makePsk('sni');
  let p = handshake({ crypto, psks: [psk], serverName: 'kme.example.org' }, { crypto, psks: [psk] });
  assertConnected(tt, p, 'SNI');
  tt.equal(p.info('server')?.serverName, 'kme.example.org', 'the server sees the name');
  tt.equal(p.info('client')?.serverName, 'kme.example.org', 'the client sees the acknowledgement');
  tt.equal(decodeClientHello(clientHellos(p)[0]).serverName, 'kme.example.org', 'on the wire');
  const names: (string | undefined)[] = [];
  p = handshake(
    { crypto, psks: [psk], serverName: 'a.example' },
    { crypto, psks: (r) => (names.push(r.serverName), r.identities.map(() => psk)) },
  );
  assertConnected(tt, p, 'SNI with a resolver');
  tt.same(names, ['a.example'], 'the PSK lookup gets the name');
  p = handshake({ crypto, psks: [psk] }, { crypto, psks: [psk] });
  tt.equal(p.info('server')?.serverName, undefined, 'no name');
  tt.equal(p.info('client')?.serverName, undefined, 'no acknowledgement');
});

t.test('SNI: a fully qualified serverName goes out without its trailing dot (RFC 6066 §3), and both sides say so', async (tt) => {
  // Before, "kme.example.org." was a TypeError ("ends with a dot"); Go's hostnameInSNI, rustls and curl drop the dot.
  const crypto = nodeProvider;
  const psk = makePsk('sni-fqdn');
  const names: (string | undefined)[] = [];
  const p = handshake({ crypto, psks: [psk], serverName: 'kme.example.org.' }, { crypto, psks: (r) => (names.push(r.serverName), r.identities.map(() => psk)) });
  assertConnected(tt, p, 'SNI with a trailing dot');
  tt.equal(decodeClientHello(clientHellos(p)[0]).serverName, 'kme.example.org', 'on the wire: no trailing dot');
  tt.equal(p.info('client')?.serverName, 'kme.example.org', "the client's handshake info: the name as sent");
  tt.equal(p.info('server')?.serverName, 'kme.example.org', 'the server sees the name without the dot');
  tt.same(names, ['kme.example.org'], 'and so does its PSK lookup');
});

t.test('record_size_limit: records no larger than the peer allows', async (tt) => {
  const crypto = nodeProvider;
  const psk = makePsk('rsl');
  // The client allows 256 bytes of TLSInnerPlaintext: the server's protected records stay within 256 + 16.
  let p = handshake({ crypto, psks: [psk], recordSizeLimit: 256 }, { crypto, psks: [psk] });
  assertConnected(tt, p, 'client limit 256');
  const big = new Uint8Array(5000).map((_, i) => i & 0xff);
  p.server.write(big);
  p.client.write(big);
  p.pump();
  tt.equal(toHex(p.received('client')), toHex(big), 'the data arrives');
  tt.equal(toHex(p.received('server')), toHex(big), 'both ways');
  const serverProtected = p.records('server').filter((r) => r.type === ContentType.application_data);
  tt.ok(serverProtected.length >= 20, 'the server split its data into many records');
  tt.ok(serverProtected.every((r) => r.fragment.length <= 256 + 16), 'every server record fits 256 bytes of inner plaintext');
  const clientProtected = p.records('client').filter((r) => r.type === ContentType.application_data);
  tt.ok(clientProtected.some((r) => r.fragment.length > 4000), 'the client was not limited (the server allows 2^14 + 1)');

  // The server allows 512.
  p = handshake({ crypto, psks: [psk], recordSizeLimit: 16385 }, { crypto, psks: [psk], recordSizeLimit: 512 });
  assertConnected(tt, p, 'server limit 512');
  p.client.write(big);
  p.pump();
  tt.equal(toHex(p.received('server')), toHex(big), 'the data arrives');
  tt.ok(
    p.records('client').filter((r) => r.type === ContentType.application_data).every((r) => r.fragment.length <= 512 + 16),
    'every client record fits 512 bytes of inner plaintext',
  );

  // A peer that ignores our limit: record_overflow.
  const keys = new KeyLog();
  p = handshake({ crypto, psks: [psk], recordSizeLimit: 256 }, { crypto, psks: [psk], keyLog: keys.sink });
  const sats = protection(crypto, 'TLS_AES_128_GCM_SHA256', keys.secret('SERVER_TRAFFIC_SECRET_0'));
  p.client.receive(sats.seal(ContentType.application_data, new Uint8Array(256)));
  tt.equal(p.error('client')?.alert, 'record_overflow', 'a 257-byte inner plaintext over a 256 limit is record_overflow');
});

t.test('PSK failures: wrong key, unknown identity', async (tt) => {
  for (const crypto of PROVIDERS) {
    const psk = makePsk('shared');
    let p = handshake({ crypto, psks: [psk] }, { crypto, psks: [{ ...psk, secret: makePsk('x').secret }] });
    assertFailed(tt, p, 'server', 'decrypt_error', `${crypto.name} wrong key`);
    tt.equal(p.error('server')?.reason, 'IncorrectBinder', 'the binder does not verify');
    tt.same(plaintextAlerts(p.records('server')), [{ level: 2, code: 51 }], 'one plaintext decrypt_error alert, nothing else');
    tt.equal(p.records('server').length, 1, 'the server sent only the alert');

    p = handshake({ crypto, psks: [psk] }, { crypto, psks: [makePsk('somebody-else')] });
    assertFailed(tt, p, 'server', 'unknown_psk_identity', `${crypto.name} unknown identity`, 'UnknownPskIdentity');
    // The server's message names what was offered (it said only "none of the offered PSK identities is known":
    // found in a README walkthrough, where --importer on the client only was a mystery to the server's operator).
    tt.match(p.error('server')?.message, /none of the offered PSK identities is known \(offered: shared\)$/, 'the message names the offered identity');
  }
  // The same key bound to SHA-256 by the client and SHA-384 by the server: the binder has the other hash's length.
  // The message said "wrong key?" (found in a README walkthrough, with --psk-hash SHA-384 on the server only).
  const shared = makePsk('shared');
  const hashes = handshake({ crypto: nodeProvider, psks: [shared] }, { crypto: nodeProvider, psks: [{ ...shared, hash: 'SHA-384' }] });
  assertFailed(tt, hashes, 'server', 'decrypt_error', 'SHA-256 against SHA-384');
  tt.match(hashes.error('server')?.message, /PSK binder does not verify: the client bound the key to SHA-256, this side to SHA-384 \(the two sides must agree on the PSK's hash\)/);
  const offered = ['a "quoted" one', 'b', 'c', 'd'].map((name) => makePsk(name));
  const p = handshake({ crypto: nodeProvider, psks: offered }, { crypto: nodeProvider, psks: [makePsk('other')] });
  tt.match(p.error('server')?.message, /\(offered: "a \\"quoted\\" one", b, c and 1 more\)$/, 'at most three, each quoted when not plain');
});

t.test('asynchronous PSK lookup: psk-request, providePsks, failPskLookup', async (tt) => {
  const crypto = nodeProvider;
  const [a, b] = [makePsk('km-key-1'), makePsk('km-key-2')];
  // Answered later.
  let p = handshake({ crypto, psks: [a, b], serverName: 'qkd.example' }, { crypto });
  const req = p.events('server').filter((e) => e.type === 'psk-request');
  tt.equal(req.length, 1, 'one psk-request event');
  const r = req[0]?.type === 'psk-request' ? req[0].request : undefined;
  tt.same(r?.identities.map((i) => new TextDecoder().decode(i)), ['km-key-1', 'km-key-2'], 'with the offered identities');
  tt.equal(r?.serverName, 'qkd.example', 'and the server name');
  tt.equal(p.server.stateName, 'AwaitPsks', 'the server waits');
  tt.ok(p.server.pskRequest, 'pskRequest is set');
  tt.equal(p.client.phase, 'handshaking', 'the client waits too');
  tt.throws(() => p.client.providePsks([]), Error, 'providePsks on a connection that is not waiting throws');
  p.server.providePsks([undefined, b]);
  p.pump();
  assertConnected(tt, p, 'PSKs provided later');
  tt.equal(p.info('server')?.identity, 'km-key-2');
  tt.equal(p.server.pskRequest, null, 'no pending request');
  assertTraffic(tt, p, 'async');

  // Bytes that arrive while the lookup runs are processed after it (0-RTT here).
  p = handshake({ crypto, psks: [a], earlyData: utf8('early') }, { crypto, maxEarlyDataSize: 100, earlyDataReplayGuard: createEarlyDataReplayGuard() });
  p.server.providePsks([a]);
  p.pump();
  assertConnected(tt, p, 'async with 0-RTT');
  tt.equal(new TextDecoder().decode(p.received('server', 'early')), 'early', 'early data read after the lookup');

  // With a HelloRetryRequest the keys are looked up once.
  p = handshake({ crypto, psks: [a] }, { crypto, groups: ['secp384r1'] });
  p.server.providePsks([a]);
  p.pump();
  assertConnected(tt, p, 'async with HRR');
  tt.equal(p.events('server').filter((e) => e.type === 'psk-request').length, 1, 'one lookup for two ClientHellos');

  // The lookup fails.
  p = handshake({ crypto, psks: [a] }, { crypto });
  p.server.failPskLookup('the key manager is unreachable');
  p.pump();
  assertFailed(tt, p, 'server', 'handshake_failure', 'failPskLookup');
  tt.equal(p.error('server')?.reason, 'PskUnavailable');
  tt.match(p.error('server')?.message, /key manager is unreachable/, 'the detail is kept');

  // Nothing found.
  p = handshake({ crypto, psks: [a] }, { crypto });
  p.server.providePsks([null]);
  p.pump();
  assertFailed(tt, p, 'server', 'unknown_psk_identity', 'lookup found nothing', 'UnknownPskIdentity');

  // A lookup that answers for another number of identities than were offered is the application's bug.
  p = handshake({ crypto, psks: [a] }, { crypto });
  p.server.providePsks([a, a]);
  p.pump();
  assertFailed(tt, p, 'server', 'internal_error', 'lookup answered two PSKs for one identity', 'PskLookupWrongCount');
});

t.test("the caller's PSK buffers (Node Buffers) are never wiped", async (tt) => {
  const crypto = nodeProvider;
  const hex = '00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff';
  const fresh = (): Psk => ({ identity: Buffer.from('buffer-id'), secret: Buffer.from(hex, 'hex'), hash: 'SHA-256' });
  const intact = (psk: Psk, msg: string) => {
    tt.equal(toHex(psk.secret), hex, `${msg}: secret intact`);
    tt.equal(new TextDecoder().decode(psk.identity), 'buffer-id', `${msg}: identity intact`);
  };
  tt.ok(Buffer.from(hex, 'hex').buffer.byteLength > 32, 'the test secret is a view into a shared pool (as Buffer.from makes it)');

  let [c, s] = [fresh(), fresh()];
  let p = handshake({ crypto, psks: [c], earlyData: utf8('e') }, { crypto, psks: [s], maxEarlyDataSize: 10, earlyDataReplayGuard: createEarlyDataReplayGuard() });
  assertConnected(tt, p, 'static PSKs');
  p.client.close();
  p.server.close();
  p.pump();
  p.client.destroy();
  p.server.destroy();
  intact(c, 'client after close and destroy');
  intact(s, 'server after close and destroy');

  [c, s] = [fresh(), fresh()];
  p = handshake({ crypto, psks: [c] }, { crypto, groups: ['secp256r1'] });
  p.server.providePsks([s]);
  p.pump();
  assertConnected(tt, p, 'provided PSK with HRR');
  intact(c, 'client after HRR');
  intact(s, 'provided PSK');

  [c, s] = [fresh(), { ...fresh(), secret: Buffer.from(hex.replace(/^00/, 'ff'), 'hex') }];
  p = handshake({ crypto, psks: [c] }, { crypto, psks: [s] });
  tt.equal(p.error('server')?.alert, 'decrypt_error', 'wrong key fails');
  intact(c, 'client after a failure');
  tt.equal(toHex(s.secret), hex.replace(/^00/, 'ff'), 'server secret intact after a failure');
});

t.test('key log: NSS lines with the right labels, usable to decrypt', async (tt) => {
  for (const hash of ['SHA-256', 'SHA-384'] as const) {
    const crypto = nodeProvider;
    const psk = makePsk('log', hash);
    const [ck, sk] = [new KeyLog(), new KeyLog()];
    const p = handshake({ crypto, psks: [psk], keyLog: ck.sink, earlyData: utf8('zero') }, { crypto, psks: [psk], keyLog: sk.sink, maxEarlyDataSize: 10, earlyDataReplayGuard: createEarlyDataReplayGuard() });
    assertConnected(tt, p, `key log ${hash}`);
    const random = toHex(decodeClientHello(clientHellos(p)[0]).random);
    const hexLen = hash === 'SHA-256' ? 64 : 96;
    const re = new RegExp(`^([A-Z0-9_]+) ${random} [0-9a-f]{${hexLen}}$`);
    for (const l of ck.lines) tt.match(l, re, `client line in NSS format: ${l.split(' ')[0]}`);
    const want = [
      'CLIENT_EARLY_TRAFFIC_SECRET',
      'EARLY_EXPORTER_SECRET',
      'CLIENT_HANDSHAKE_TRAFFIC_SECRET',
      'SERVER_HANDSHAKE_TRAFFIC_SECRET',
      'CLIENT_TRAFFIC_SECRET_0',
      'SERVER_TRAFFIC_SECRET_0',
      'EXPORTER_SECRET',
    ];
    tt.same([...ck.labels()].sort(), [...want].sort(), 'client labels');
    tt.same([...sk.lines].sort(), [...ck.lines].sort(), 'the server logs the same lines');
    const suite = hash === 'SHA-256' ? 'TLS_AES_128_GCM_SHA256' : 'TLS_AES_256_GCM_SHA384';
    // The secrets decrypt the traffic.
    const serverRecs = p.records('server').filter((r) => r.type === ContentType.application_data);
    const ee = openRecord(protection(crypto, suite, ck.secret('SERVER_HANDSHAKE_TRAFFIC_SECRET')), serverRecs[0]);
    tt.equal(ee.content[0], HandshakeType.encrypted_extensions, 'SERVER_HANDSHAKE_TRAFFIC_SECRET opens EncryptedExtensions');
    const earlyRec = splitRecords(p.clientSent[0]).filter((r) => r.type === ContentType.application_data)[0];
    tt.equal(new TextDecoder().decode(openRecord(protection(crypto, suite, ck.secret('CLIENT_EARLY_TRAFFIC_SECRET')), earlyRec).content), 'zero', 'CLIENT_EARLY_TRAFFIC_SECRET opens the 0-RTT data');
    p.client.write(utf8('logged'));
    const rec = splitRecords(p.client.takeOutput()!)[0];
    tt.equal(new TextDecoder().decode(openRecord(protection(crypto, suite, ck.secret('CLIENT_TRAFFIC_SECRET_0')), rec).content), 'logged', 'CLIENT_TRAFFIC_SECRET_0 opens application data');
    tt.ok(!ck.lines.some((l) => l.includes(toHex(psk.secret))), 'the PSK itself is never logged');
  }
  // Without early data there are no early lines.
  const ck = new KeyLog();
  const psk = makePsk('log2');
  handshake({ crypto: nodeProvider, psks: [psk], keyLog: ck.sink }, { crypto: nodeProvider, psks: [psk] });
  tt.same(ck.labels(), ['CLIENT_HANDSHAKE_TRAFFIC_SECRET', 'SERVER_HANDSHAKE_TRAFFIC_SECRET', 'CLIENT_TRAFFIC_SECRET_0', 'SERVER_TRAFFIC_SECRET_0', 'EXPORTER_SECRET'], 'five lines, in order');
});

t.test("a client's alert after the ServerHello reaches the server (handshake keys, or early keys while 0-RTT may be accepted)", async (t) => {
  // The server's EncryptedExtensions carry an extension the client never offered: the client must fail with
  // unsupported_extension, and the server — whichever keys it reads with at that point — must receive it.
  const bogus = (list: Extension[]): Extension[] => [...list, { type: 0x7a7a, data: new Uint8Array(0) }];
  for (const c of [
    { name: 'no 0-RTT', client: {}, server: {} },
    { name: '0-RTT rejected', client: { earlyData: utf8('early') }, server: {} },
    { name: '0-RTT accepted', client: { earlyData: utf8('early') }, server: { maxEarlyDataSize: 1024, earlyDataReplayGuard: createEarlyDataReplayGuard() } },
  ]) {
    const psk = makePsk('alert-keys');
    const p = handshake(
      { crypto: nodeProvider, psks: [psk], ...c.client },
      { crypto: nodeProvider, psks: [psk], dangerousEncryptedExtensions: bogus, ...c.server },
    );
    t.equal(p.error('client')?.alert, 'unsupported_extension', `${c.name}: the client detects it`);
    t.equal(p.error('client')?.remote, false, `${c.name}: detected by the client`);
    t.equal(p.error('server')?.alert, 'unsupported_extension', `${c.name}: the server receives the alert`);
    t.equal(p.error('server')?.remote, true, `${c.name}: received by the server`);
  }
});

t.test('the randomness a key share is made from is wiped once the group has its private key', async (tt) => {
  for (const crypto of PROVIDERS) {
    for (const groupName of ['x25519', 'secp256r1', 'secp384r1'] as const) {
      const given: Uint8Array[] = [];
      // The same provider, with groups that record the randomness they are handed.
      const spying: CryptoProvider = {
        ...crypto,
        group: (name) => {
          const g = crypto.group(name);
          if (!g) return g;
          return {
            name: g.name,
            randomLength: g.randomLength,
            start: (r) => (given.push(r), g.start(r)),
            respond: (share, r) => (given.push(r), g.respond(share, r)),
          };
        },
      };
      const psk = makePsk(`wipe-${groupName}`);
      const p = handshake({ crypto: spying, psks: [psk], kexModes: ['psk_dhe_ke'], groups: [groupName] }, { crypto: spying, psks: [psk], kexModes: ['psk_dhe_ke'], groups: [groupName] });
      assertConnected(tt, p, `${crypto.name} ${groupName}`);
      tt.equal(given.length, 2, `${crypto.name} ${groupName}: a client and a server share were made`);
      tt.ok(
        given.every((r) => r.every((b) => b === 0)),
        `${crypto.name} ${groupName}: both randomness arrays are zero after the handshake`,
      );
    }
  }
});
