/**
 * 0-RTT rules both ends must follow for early data to work (RFC 8446 §4.2.10, RFC 8449): which suite and ALPN
 * protocol a PSK's early data is provisioned with, when rejected early data is resent, how much of it a server
 * skips, and which record size limit applies to it.
 *
 * Each test pins a fault an independent review found; its comment quotes the rule and says where the code
 * broke it before the fix.
 */
import t from 'tap';
import { once } from 'node:events';
import { fromUtf8, utf8 } from '../lib/codec/bytes.js';
import { nodeProvider } from '../lib/crypto/node.js';
import { Connection } from '../lib/connection/connection.js';
import { connect } from '../lib/transport/node.js';
import { handshake, makePsk, protection } from './helpers/pair.js';
import { createEarlyDataReplayGuard } from '../lib/config/anti-replay.js';

const crypto = nodeProvider;

t.test('0-RTT: client and server agree on the default early-data suite, so different suite orders still connect', async (tt) => {
  // RFC 8446 §4.2.10: 0-RTT uses the suite "provisioned along with the key". Without Psk.earlyDataSuite, the
  // client takes the first of ITS suites with the PSK's hash (client.ts:197-200, earlyDataSuiteOf) and the server the
  // first of ITS suites (server.ts:238). When the two preference orders differ the server ACCEPTS 0-RTT with
  // another suite than the client encrypted it with: the early records fail to decrypt (bad_record_mac) and the
  // handshake dies, where it must at worst fall back to 1-RTT. Expected: the handshake completes and the data
  // arrives (as accepted 0-RTT, or resent after a rejection).
  const psk = makePsk('f1');
  const p = handshake(
    { crypto, psks: [psk], suites: ['TLS_CHACHA20_POLY1305_SHA256', 'TLS_AES_128_GCM_SHA256'], earlyData: utf8('early') },
    { crypto, psks: [psk], maxEarlyDataSize: 1024, earlyDataReplayGuard: createEarlyDataReplayGuard() }, // default suite order: AES-128-GCM first
  );
  tt.equal(p.error('server')?.message, undefined, 'the server does not fail');
  tt.equal(p.error('client')?.message, undefined, 'the client does not fail');
  tt.equal(p.client.phase, 'connected', 'the client is connected');
  tt.equal(fromUtf8(p.received('server')), 'early', 'the early data reaches the server once');
});

t.test('an earlyDataSuite of another hash than its PSK is a configuration error', async (tt) => {
  // Before: a SHA-256 PSK with a SHA-384 earlyDataSuite threw HKDF's "PRK must be at least 48 bytes"; a SHA-384
  // PSK with a SHA-256 suite derived early keys no server could share.
  const sha256 = { ...makePsk('eds-256'), earlyDataSuite: 'TLS_AES_256_GCM_SHA384' as const };
  const sha384 = { ...makePsk('eds-384', 'SHA-384'), earlyDataSuite: 'TLS_AES_128_GCM_SHA256' as const };
  for (const psk of [sha256, sha384]) {
    tt.throws(() => Connection.client({ crypto, psks: [psk], earlyData: utf8('x') }), /does not use the PSK's hash/, `${psk.hash} PSK with ${psk.earlyDataSuite}`);
    tt.doesNotThrow(() => Connection.client({ crypto, psks: [psk] }), 'without 0-RTT the suite is not used');
  }
});

t.test('0-RTT is accepted only under the ALPN protocol the PSK was provisioned with', async (tt) => {
  // RFC 8446 §4.2.10: to accept early data the server "MUST verify that ... The selected ALPN protocol, if any"
  // is the one associated with the PSK (for external PSKs: provisioned with the key); RFC 9258 §5.1 says the
  // same for imported keys. The Psk type provisions no ALPN, yet the server (server.ts:241) accepts 0-RTT and
  // selects "http/1.1" for data the client may have written for "h2". OpenSSL's client aborts with
  // illegal_parameter on exactly this (early_data accepted with an ALPN that differs from the session's).
  // Expected: 0-RTT is rejected when an ALPN is selected that the PSK was not provisioned with.
  const psk = makePsk('f2');
  const p = handshake(
    { crypto, psks: [psk], alpn: ['h2', 'http/1.1'], earlyData: utf8('PRI * HTTP/2.0') },
    { crypto, psks: [psk], alpn: ['http/1.1'], maxEarlyDataSize: 1024, earlyDataReplayGuard: createEarlyDataReplayGuard() },
  );
  tt.equal(p.info('server')?.alpn, 'http/1.1', 'ALPN http/1.1 is selected');
  tt.not(p.info('server')?.earlyData, 'accepted', '0-RTT is not accepted under an ALPN the PSK was not provisioned with');
  tt.equal(p.received('server', 'early').length, 0, 'no early data is delivered');
});

t.test('rejected 0-RTT data is not resent automatically under a different negotiated ALPN', async (tt) => {
  // RFC 8446 §4.2.10: "A TLS implementation SHOULD NOT automatically resend early data ... A TLS implementation
  // MUST NOT automatically resend early data unless the negotiated connection selects the same ALPN protocol."
  // The client once resent whenever resendRejectedEarlyData was not false (the default was true), whatever ALPN
  // the server selected; now the default is false, and even when set the data is resent only under the PSK's
  // earlyDataAlpn. Expected: with an ALPN negotiated that is not the one the early data was written for (the
  // PSK has none provisioned), nothing is resent.
  const psk = makePsk('f3');
  const p = handshake(
    { crypto, psks: [psk], alpn: ['h2', 'http/1.1'], earlyData: utf8('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n') },
    { crypto, psks: [psk], alpn: ['http/1.1'] }, // maxEarlyDataSize 0: 0-RTT rejected
  );
  tt.equal(p.info('client')?.alpn, 'http/1.1', 'ALPN http/1.1 is selected');
  tt.equal(p.info('client')?.earlyData, 'rejected', '0-RTT was rejected');
  tt.equal(p.received('server').length, 0, 'the h2 preface written as 0-RTT is not replayed into an http/1.1 connection');
  tt.equal(p.info('client')?.earlyDataResent, false, 'and the client is told it was not resent (HandshakeInfo.earlyDataResent)');
});

t.test('the skip budget for rejected 0-RTT counts record overhead against max_early_data_size', async (tt) => {
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
      { crypto, psks: [known], maxEarlyDataSize: size, earlyDataReplayGuard: createEarlyDataReplayGuard() },
    );
    tt.equal(p.error('server')?.message, undefined, 'trial decryption: the server skips all the rejected 0-RTT data');
    tt.equal(p.received('server').length, size, 'trial decryption: the data arrives once, resent');
    tt.equal(p.info('client')?.earlyDataResent, true, 'trial decryption: the client is told it was resent');
    tt.equal(p.info('server')?.earlyDataResent, undefined, 'a server has no earlyDataResent');
  }
  {
    // HelloRetryRequest: the server wants secp256r1, the client sent x25519.
    const psk = makePsk('f4-hrr');
    const p = handshake(
      { crypto, psks: [psk], earlyData: data, resendRejectedEarlyData: true },
      { crypto, psks: [psk], groups: ['secp256r1'], maxEarlyDataSize: size, earlyDataReplayGuard: createEarlyDataReplayGuard() },
    );
    tt.equal(p.error('server')?.message, undefined, 'after HelloRetryRequest: the server skips all the 0-RTT data');
    tt.equal(p.received('server').length, size, 'after HelloRetryRequest: the data arrives once, resent');
  }
});

t.test('record_size_limit does not apply to 0-RTT records, which were protected without it', async (tt) => {
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
      { crypto, psks: [psk], recordSizeLimit: 1024, maxEarlyDataSize: 8192, earlyDataReplayGuard: createEarlyDataReplayGuard() },
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

t.test('after a HelloRetryRequest, 0-RTT data one byte over the skip limit is EarlyDataTooLong', async (tt) => {
  // RFC 8446 §4.2.10: after a HelloRetryRequest the server skips 0-RTT records "up to the configured
  // max_early_data_size" (here the 64 KiB floor). connection.ts skipped only while the budget was above zero, so
  // a record arriving once it was exactly used up fell through to 'RecordUnexpectedPlaintext' instead of the
  // named reason for too much 0-RTT data.
  const limit = 1 << 16;
  for (const [size, reason] of [
    [limit, undefined],
    [limit + 1, 'EarlyDataTooLong'],
  ] as const) {
    const psk = makePsk(`hrr-skip-${size}`);
    const p = handshake({ crypto, psks: [psk], earlyData: new Uint8Array(size) }, { crypto, psks: [psk], groups: ['secp256r1'] });
    tt.equal(p.error('server')?.reason, reason, `${size} bytes of 0-RTT after a retry: ${reason ?? 'skipped'}`);
    // (No error is not enough: a server that waits for more would have none either.)
    if (!reason) tt.same([p.client.phase, p.server.phase], ['connected', 'connected'], `${size} bytes of 0-RTT after a retry: the handshake completes`);
  }
});

t.test('a client whose 0-RTT cannot be accepted sends its alerts under the handshake keys the server reads', async (tt) => {
  // RFC 8446 §4.2.10: a server that selects another PSK than the first rejects 0-RTT and reads the client's
  // handshake keys, skipping what it cannot decrypt. client.ts kept its early write keys until
  // EncryptedExtensions had been decoded, so an alert about a malformed EncryptedExtensions (here a non-empty
  // server_name, RFC 6066 §3) went out under the early keys: the server skipped it as rejected 0-RTT and waited.
  const known = makePsk('eoed-known');
  const p = handshake(
    { crypto, psks: [makePsk('eoed-unknown'), known], earlyData: utf8('hello') },
    { crypto, psks: [known], maxEarlyDataSize: 100, earlyDataReplayGuard: createEarlyDataReplayGuard(), dangerousEncryptedExtensions: (l) => [...l, { type: 0, data: Uint8Array.of(1) }] },
  );
  tt.equal(p.error('client')?.reason, 'DecodeTrailingBytes', 'the client refuses the EncryptedExtensions');
  tt.equal(p.error('server')?.remote, true, 'the server received the alert');
  tt.equal(p.error('server')?.alert, 'decode_error', 'decode_error');
});
