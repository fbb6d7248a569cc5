/**
 * The record layer (RFC 8446 §5): the deframer under every way of splitting its input, hostile records, the
 * 64-bit sequence number running out, handshake messages across and within records, and the Connection
 * answering hostile records with the right alert.
 */
import t from 'tap';
import fc from 'fast-check';
import { concat, fromHex, toHex, utf8 } from '../lib/codec/bytes.js';
import { AlertDescription, ContentType, type AlertName } from '../lib/codec/enums.js';
import { Connection } from '../lib/connection/connection.js';
import type { ConnectionEvent } from '../lib/config/events.js';
import { nobleProvider } from '../lib/crypto/noble.js';
import { nodeProvider } from '../lib/crypto/node.js';
import type { CryptoProvider } from '../lib/crypto/provider.js';
import { TlsError } from '../lib/errors.js';
import { trafficKeys } from '../lib/keyschedule/schedule.js';
import { Deframer, encodePlaintextRecord, MAX_CIPHERTEXT, MAX_PLAINTEXT, type RawRecord } from '../lib/record/deframer.js';
import { fragments, HandshakeJoiner, MAX_HANDSHAKE_MESSAGE } from '../lib/record/handshake-joiner.js';
import { RecordProtection } from '../lib/record/protection.js';
import { SUITES } from '../lib/suites.js';
import { step, value } from '../vectors/rfc8448.js';

const hex = toHex;
const SUITE = SUITES.TLS_AES_128_GCM_SHA256;

// RFC 8448 §3: the server's first flight, a plaintext ServerHello record then one encrypted record.
const shRecord = value(step('3', 'server', 'send handshake record', 0), 'complete record');
const encRecord = value(step('3', 'server', 'send handshake record', 1), 'complete record');
const encPayload = value(step('3', 'server', 'send handshake record', 1), 'payload');
const serverFlight = concat(shRecord, encRecord);
const serverHsKeys = step('3', 'server', 'derive write traffic keys for handshake data');
const rfcProtection = (crypto: CryptoProvider = nobleProvider) =>
  new RecordProtection(crypto, SUITE, value(serverHsKeys, 'key expanded'), value(serverHsKeys, 'iv expanded'));

type Tap = Pick<typeof t, 'ok' | 'equal' | 'fail'>;

/** Asserts that `fn` throws a TlsError whose alert is `alert` — and never another kind of exception. */
function expectAlert(tt: Tap, fn: () => unknown, alert: AlertName, msg: string): void {
  try {
    fn();
    tt.fail(`${msg}: nothing was thrown`);
  } catch (e) {
    if (!(e instanceof TlsError)) return void tt.fail(`${msg}: threw ${String(e)}, not a TlsError`);
    tt.equal(e.alert, alert, `${msg}: ${alert}`);
    tt.equal(e.remote, false, `${msg}: a local error`);
  }
}

const describe = (r: RawRecord) => `${r.type}/${r.version.toString(16)}/${hex(r.header)}/${hex(r.fragment)}`;

/** Pushes the pieces one after the other, draining records after each push; compares only at the end. */
function deframeAll(pieces: Uint8Array[]): RawRecord[] {
  const d = new Deframer();
  const out: RawRecord[] = [];
  for (const p of pieces) {
    d.push(p);
    for (let r = d.next(); r; r = d.next()) out.push(r);
  }
  if (d.buffered !== 0) throw new Error(`${d.buffered} bytes left in the deframer`);
  return out;
}

const EXPECTED = deframeAll([serverFlight]).map(describe);

// ---- the deframer ---------------------------------------------------------------------------------------------

t.test('the §3 server flight deframes into its two records', async (t) => {
  t.equal(EXPECTED.length, 2);
  t.equal(EXPECTED[0], `22/303/${hex(shRecord.subarray(0, 5))}/${hex(shRecord.subarray(5))}`);
  t.equal(EXPECTED[1], `23/303/${hex(encRecord.subarray(0, 5))}/${hex(encRecord.subarray(5))}`);
});

t.test('the deframer yields identical records for every split point of the §3 server flight', async (t) => {
  let bad = 0;
  for (let i = 0; i <= serverFlight.length; i++) {
    const a = serverFlight.slice(0, i);
    const b = serverFlight.slice(i);
    const got = deframeAll([a, b]).map(describe);
    if (got.join() !== EXPECTED.join()) {
      bad++;
      t.fail(`split at ${i}`);
    }
    if (hex(concat(a, b)) !== hex(serverFlight)) t.fail(`the deframer wrote into its input at split ${i}`);
  }
  t.equal(bad, 0, `all ${serverFlight.length + 1} two-way splits`);
  const oneByOne = Array.from(serverFlight, (b) => new Uint8Array([b]));
  t.same(deframeAll(oneByOne).map(describe), EXPECTED, 'one byte at a time');
});

t.test('the deframer yields identical records for random multi-way splits', async (t) => {
  fc.assert(
    fc.property(fc.uniqueArray(fc.integer({ min: 0, max: serverFlight.length }), { maxLength: 12 }), (cuts) => {
      const points = [0, ...cuts.sort((x, y) => x - y), serverFlight.length];
      const pieces = points.slice(1).map((end, i) => serverFlight.slice(points[i], end));
      return deframeAll(pieces).map(describe).join() === EXPECTED.join();
    }),
    { numRuns: 500, seed: 8448 },
  );
  t.pass('500 random splits into up to 13 pieces');
});

t.test('records returned earlier stay intact when more bytes arrive', async (t) => {
  const d = new Deframer();
  d.push(serverFlight.subarray(0, shRecord.length + 10));
  const first = d.next()!;
  t.equal(d.next(), null, 'the second record is incomplete');
  d.push(serverFlight.subarray(shRecord.length + 10));
  const second = d.next()!;
  t.equal(describe(first), EXPECTED[0], 'the first record is unchanged');
  t.equal(describe(second), EXPECTED[1]);
});

t.test('truncated input: the deframer returns null and never throws', async (t) => {
  for (const n of [1, 2, 3, 4, 5, 6, 50, shRecord.length - 1]) {
    const d = new Deframer();
    d.push(shRecord.subarray(0, n));
    t.equal(d.next(), null, `${n} bytes of a ${shRecord.length}-byte record`);
    t.equal(d.buffered, n);
  }
  const d = new Deframer();
  d.push(new Uint8Array(0));
  t.equal(d.next(), null, 'nothing at all');
});

t.test('hostile record headers', async (t) => {
  const header = (type: number, length: number) => new Uint8Array([type, 3, 3, length >> 8, length & 0xff]);
  // §5.2: a TLSCiphertext longer than 2^14 + 256 is record_overflow, known from the header alone.
  expectAlert(t, () => {
    const d = new Deframer();
    d.push(header(ContentType.application_data, MAX_CIPHERTEXT + 1));
    d.next();
  }, 'record_overflow', 'a header announcing 2^14 + 257 bytes');
  expectAlert(t, () => {
    const d = new Deframer();
    d.push(header(ContentType.handshake, 0xffff));
    d.next();
  }, 'record_overflow', 'a header announcing 65535 bytes');
  const atLimit = new Deframer();
  atLimit.push(header(ContentType.application_data, MAX_CIPHERTEXT));
  t.equal(atLimit.next(), null, 'exactly 2^14 + 256 is allowed (waits for the body)');
  atLimit.push(new Uint8Array(MAX_CIPHERTEXT));
  t.equal(atLimit.next()?.fragment.length, MAX_CIPHERTEXT);

  // §5: an unknown record type is unexpected_message, from its first byte.
  for (const type of [0x00, 0x13, 0x18, 0x63, 0xff]) {
    expectAlert(t, () => {
      const d = new Deframer();
      d.push(new Uint8Array([type]));
      d.next();
    }, 'unexpected_message', `content type 0x${type.toString(16)}`);
  }
  // A byte that reads as text (an HTTP peer: "GET ...", "HTTP/1.1 ...") says the peer may not speak TLS; it said only
  // "record content type 0x47" (found in a README walkthrough).
  const http = new Deframer();
  http.push(new TextEncoder().encode('GET / HTTP/1.1\r\n'));
  t.throws(() => http.next(), { reason: 'RecordUnknownContentType', message: /sent: record content type 0x47 \("G"\): the peer does not seem to speak TLS \(it sent text\)$/ });
  const binary = new Deframer();
  binary.push(Uint8Array.of(0x63));
  t.throws(() => binary.next(), { message: /sent: record content type 0x63 \("c"\)/ }, '0x63 is "c"');
  const notText = new Deframer();
  notText.push(Uint8Array.of(0x18));
  t.throws(() => notText.next(), { message: /sent: record content type 0x18$/ }, 'a byte that is not text: no guess');
});

t.test('random bytes give records or TlsErrors, never another exception', async (t) => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 80 }), (bytes) => {
      try {
        deframeAll([bytes]);
      } catch (e) {
        return e instanceof TlsError || (e instanceof Error && /bytes left in the deframer/.test(e.message));
      }
      return true;
    }),
    { numRuns: 2000, seed: 5 },
  );
  t.pass('2000 random inputs');
});

// ---- record protection --------------------------------------------------------------------------------------

for (const crypto of [nobleProvider, nodeProvider]) {
  t.test(`hostile protected records (${crypto.name})`, async (t) => {
    const rec = () => deframeAll([encRecord])[0];
    t.equal(hex(rfcProtection(crypto).open(rec()).content), hex(encPayload), 'the RFC record opens');

    const tampered = (at: number) => {
      const r = rec();
      const fragment = r.fragment.slice();
      fragment[at] ^= 0x01;
      return { ...r, fragment };
    };
    expectAlert(t, () => rfcProtection(crypto).open(tampered(encRecord.length - 6)), 'bad_record_mac', 'a flipped tag bit');
    expectAlert(t, () => rfcProtection(crypto).open(tampered(0)), 'bad_record_mac', 'a flipped ciphertext bit');
    const badHeader = { ...rec(), header: Uint8Array.of(0x17, 3, 1, encRecord[3], encRecord[4]) };
    expectAlert(t, () => rfcProtection(crypto).open(badHeader), 'bad_record_mac', 'a changed header (additional data)');

    const p = rfcProtection(crypto);
    expectAlert(t, () => p.open(tampered(5)), 'bad_record_mac', 'a failed record');
    t.equal(p.sequence, 0, 'does not advance the sequence number');
    t.equal(hex(p.open(rec()).content), hex(encPayload), 'so the genuine record still opens');
    expectAlert(t, () => p.open(rec()), 'bad_record_mac', 'the same record replayed (sequence 1)');

    for (const n of [0, 1, 15, 16]) {
      const short = { type: 23, version: 0x0303, header: Uint8Array.of(0x17, 3, 3, 0, n), fragment: new Uint8Array(n) };
      expectAlert(t, () => rfcProtection(crypto).open(short), 'bad_record_mac', `a protected record of ${n} bytes (no room for type and tag)`);
    }

    // §5.4: an inner plaintext of only zeros has no content type.
    const zeros = rfcProtection(crypto).seal(0, new Uint8Array(0), 20);
    expectAlert(t, () => rfcProtection(crypto).open(deframeAll([zeros])[0]), 'unexpected_message', 'an all-zero inner plaintext');

    // §5.4: an inner plaintext longer than 2^14 + 1 is record_overflow, though its record passes the deframer.
    const inner = new Uint8Array(MAX_PLAINTEXT + 2);
    inner[0] = 0x41;
    inner[inner.length - 1] = ContentType.application_data;
    const length = inner.length + 16;
    const h = Uint8Array.of(0x17, 3, 3, length >> 8, length & 0xff);
    const big = concat(h, crypto.aead(SUITE.aead, value(serverHsKeys, 'key expanded')).seal(value(serverHsKeys, 'iv expanded'), h, inner));
    t.ok(big.length - 5 <= MAX_CIPHERTEXT, 'the record itself is within 2^14 + 256');
    expectAlert(t, () => rfcProtection(crypto).open(deframeAll([big])[0]), 'record_overflow', 'an inner plaintext of 2^14 + 2 bytes');

    // RFC 8449: with a lowered limit, a longer protected record is record_overflow before decryption.
    const limited = rfcProtection(crypto);
    limited.maxInnerPlaintext = 100;
    expectAlert(t, () => limited.open(rec()), 'record_overflow', 'a record beyond record_size_limit + 255');

    fc.assert(
      fc.property(fc.uint8Array({ minLength: 0, maxLength: 200 }), (fragment) => {
        try {
          rfcProtection(crypto).open({ type: 23, version: 0x0303, header: Uint8Array.of(0x17, 3, 3, 0, fragment.length), fragment });
          return false;
        } catch (e) {
          return e instanceof TlsError && e.alert === 'bad_record_mac';
        }
      }),
      { numRuns: 300, seed: 1 },
    );
    t.pass('300 random fragments: bad_record_mac every time');
  });

  t.test(`sequence-number exhaustion (${crypto.name})`, async (t) => {
    const key = new Uint8Array(16).fill(0x11);
    const iv = Uint8Array.from({ length: 12 }, (_, i) => i);
    const sealer = new RecordProtection(crypto, SUITE, key, iv);
    sealer.dangerousSetSequence(0xffffffff, 0xffffffff);
    const last = sealer.seal(ContentType.application_data, utf8('last'));
    // The nonce of sequence 2^64 - 1 is the IV with its last eight bytes inverted (§5.3).
    const nonce = iv.slice();
    for (let i = 4; i < 12; i++) nonce[i] ^= 0xff;
    const inner = concat(utf8('last'), Uint8Array.of(ContentType.application_data));
    t.equal(hex(last.subarray(5)), hex(crypto.aead(SUITE.aead, key).seal(nonce, last.subarray(0, 5), inner)), 'the last record uses seq 2^64 - 1');
    expectAlert(t, () => sealer.seal(ContentType.application_data, utf8('one too many')), 'internal_error', 'sealing after 2^64 records');
    t.throws(() => sealer.seal(ContentType.application_data, utf8('again')), TlsError, 'and it stays exhausted');

    const opener = new RecordProtection(crypto, SUITE, key, iv);
    opener.dangerousSetSequence(0xffffffff, 0xffffffff);
    t.equal(hex(opener.open(deframeAll([last])[0]).content), hex(utf8('last')), 'the receiver opens the last record');
    expectAlert(t, () => opener.open(deframeAll([last])[0]), 'internal_error', 'and refuses to open beyond it');

    const carry = new RecordProtection(crypto, SUITE, key, iv);
    carry.dangerousSetSequence(0, 0xffffffff);
    carry.seal(ContentType.application_data, utf8('x'));
    t.equal(carry.sequence, 0x1_0000_0000, 'the low half carries into the high half');
  });
}

// ---- handshake messages and records ---------------------------------------------------------------------------

t.test('HandshakeJoiner: several messages in one record, one message across records', async (t) => {
  // EncryptedExtensions, Certificate, CertificateVerify, Finished in one record (RFC 8448 §3).
  const types = [8, 11, 15, 20];
  const whole = new HandshakeJoiner();
  whole.push(encPayload);
  const msgs = [];
  for (let m = whole.next(); m; m = whole.next()) msgs.push(m);
  t.same(msgs.map((m) => m.type), types, 'four messages from one record');
  t.equal(hex(concat(...msgs.map((m) => m.raw))), hex(encPayload), 'their raw bytes are the record');
  t.ok(whole.isEmpty);
  t.equal(hex(msgs[3].body), hex(value(step('3', 'server', 'calculate finished'), 'finished')), 'Finished body = verify_data');

  for (const size of [1, 3, 4, 5, 64, 445, 656]) {
    const j = new HandshakeJoiner();
    const got = [];
    for (const f of fragments(encPayload, size)) {
      j.push(f);
      for (let m = j.next(); m; m = j.next()) got.push(m);
    }
    t.same(got.map((m) => hex(m.raw)), msgs.map((m) => hex(m.raw)), `fragments of ${size} bytes`);
    t.ok(j.isEmpty);
  }

  const partial = new HandshakeJoiner();
  partial.push(encPayload.subarray(0, 10));
  partial.next();
  t.notOk(partial.isEmpty, 'a partial message is pending');
  expectAlert(t, () => new HandshakeJoiner().push(new Uint8Array(0)), 'unexpected_message', 'a zero-length handshake fragment');
  const huge = new HandshakeJoiner();
  huge.push(Uint8Array.of(20, (MAX_HANDSHAKE_MESSAGE + 1) >> 16, ((MAX_HANDSHAKE_MESSAGE + 1) >> 8) & 0xff, (MAX_HANDSHAKE_MESSAGE + 1) & 0xff));
  expectAlert(t, () => huge.next(), 'decode_error', 'a message longer than the limit');
  t.same([...fragments(new Uint8Array(0), 10)], [], 'no fragments of nothing');
  t.same([...fragments(new Uint8Array(25), 10)].map((f) => f.length), [10, 10, 5]);
});

// ---- the Connection answers hostile records with the right alert ---------------------------------------------

const PSK = { identity: utf8('client1'), secret: new Uint8Array(32).fill(7), hash: 'SHA-256' as const };
const output = (c: Connection): Uint8Array => c.takeOutput() ?? new Uint8Array(0);
const errorOf = (events: ConnectionEvent[]) => events.find((e): e is Extract<ConnectionEvent, { type: 'error' }> => e.type === 'error')?.error;
const plaintextAlert = (code: number) => hex(encodePlaintextRecord(ContentType.alert, Uint8Array.of(2, code)));

t.test('a server rejects hostile plaintext records with the right alert', async (t) => {
  const cases: [string, Uint8Array, AlertName][] = [
    ['an unknown content type', fromHex('6303030001 00'), 'unexpected_message'],
    ['a record header over 2^14 + 256', fromHex('1603034101'), 'record_overflow'],
    ['a plaintext record over 2^14', concat(fromHex('1603034001'), new Uint8Array(MAX_PLAINTEXT + 1)), 'record_overflow'],
    ['application data before the handshake', fromHex('1703030003 010203'), 'unexpected_message'],
    ['a zero-length handshake record', fromHex('1603030000'), 'unexpected_message'],
    ['a change_cipher_spec before the ClientHello', fromHex('1403030001 01'), 'unexpected_message'],
    ['a ClientHello that does not parse', fromHex('1603030008 0100000401020304'), 'decode_error'],
  ];
  for (const [what, bytes, alert] of cases) {
    const server = Connection.server({ crypto: nobleProvider, psks: [PSK] });
    server.receive(bytes);
    t.equal(hex(output(server)), plaintextAlert(AlertDescription[alert]), `${what}: a fatal ${alert} alert record`);
    const err = errorOf(server.takeEvents());
    t.equal(err?.alert, alert, `${what}: the error event names ${alert}`);
    t.equal(server.phase, 'failed');
    server.receive(bytes);
    t.equal(output(server).length, 0, `${what}: nothing more once failed`);
  }
  const waiting = Connection.server({ crypto: nobleProvider, psks: [PSK] });
  waiting.receive(fromHex('160303'));
  t.equal(output(waiting).length, 0, 'a truncated header: no output');
  t.same(waiting.takeEvents(), [], 'and no events');
  t.equal(waiting.phase, 'handshaking');
});

/** A client and server that completed a handshake, and the client's view of both application secrets. */
function connectedPair(): { client: Connection; server: Connection; secrets: Map<string, string> } {
  const secrets = new Map<string, string>();
  const client = Connection.client({ crypto: nobleProvider, psks: [PSK], keyLog: (l) => void secrets.set(l.split(' ')[0], l.split(' ')[2]) });
  const server = Connection.server({ crypto: nobleProvider, psks: [PSK] });
  server.receive(output(client));
  client.receive(output(server));
  server.receive(output(client));
  if (client.phase !== 'connected' || server.phase !== 'connected') throw new Error('the handshake did not complete');
  client.takeEvents();
  server.takeEvents();
  return { client, server, secrets };
}

function protectionFor(secretHex: string): RecordProtection {
  const { key, iv } = trafficKeys(nobleProvider, SUITE.hash, fromHex(secretHex), SUITE.keyLength, SUITE.ivLength);
  return new RecordProtection(nobleProvider, SUITE, key, iv);
}

t.test('a connected client rejects hostile protected records with the right (encrypted) alert', async (t) => {
  const forged = (serverSecret: string): Record<string, [Uint8Array, AlertName]> => {
    const p = () => protectionFor(serverSecret);
    const good = p().seal(ContentType.application_data, utf8('hello'));
    const badTag = good.slice();
    badTag[badTag.length - 1] ^= 1;
    const { key, iv } = trafficKeys(nobleProvider, SUITE.hash, fromHex(serverSecret), SUITE.keyLength, SUITE.ivLength);
    const inner = new Uint8Array(MAX_PLAINTEXT + 2);
    inner[inner.length - 1] = ContentType.application_data;
    const h = Uint8Array.of(0x17, 3, 3, (inner.length + 16) >> 8, (inner.length + 16) & 0xff);
    return {
      'a bad authentication tag': [badTag, 'bad_record_mac'],
      'a protected record shorter than the tag': [fromHex('170303000a 00112233445566778899'), 'bad_record_mac'],
      'an unknown inner content type': [p().seal(0x63, utf8('x')), 'unexpected_message'],
      'an inner plaintext of only zeros': [p().seal(0, new Uint8Array(0), 7), 'unexpected_message'],
      'an inner plaintext over 2^14 + 1': [concat(h, nobleProvider.aead(SUITE.aead, key).seal(iv, h, inner)), 'record_overflow'],
      'a protected change_cipher_spec': [p().seal(ContentType.change_cipher_spec, Uint8Array.of(1)), 'unexpected_message'],
      'a plaintext handshake record after the keys': [fromHex('1603030005 1800000100'), 'unexpected_message'],
      'an alert of three bytes': [p().seal(ContentType.alert, Uint8Array.of(2, 10, 0)), 'decode_error'],
    };
  };
  const names = Object.keys(forged('00'.repeat(32)));
  for (const what of names) {
    const { client, server, secrets } = connectedPair();
    const [bytes, alert] = forged(secrets.get('SERVER_TRAFFIC_SECRET_0')!)[what];
    client.receive(bytes);
    const err = errorOf(client.takeEvents());
    t.equal(err?.alert, alert, `${what}: the client fails with ${alert}`);
    t.equal(client.phase, 'failed');
    const out = output(client);
    t.equal(out.length, 5 + 2 + 1 + 16, `${what}: one protected alert record`);
    const opened = protectionFor(secrets.get('CLIENT_TRAFFIC_SECRET_0')!).open(deframeAll([out])[0]);
    t.same([opened.type, hex(opened.content)], [ContentType.alert, hex(Uint8Array.of(2, AlertDescription[alert]))], `${what}: it is a fatal ${alert} alert`);
    server.receive(out);
    const remote = errorOf(server.takeEvents());
    t.same([remote?.alert, remote?.remote], [alert, true], `${what}: the server receives ${alert}`);
  }
});
