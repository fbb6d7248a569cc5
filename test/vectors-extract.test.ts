/**
 * vectors/rfc8448.json must be exactly what vectors/extract-rfc8448.ts makes of the RFC 8448 text, the
 * extracted bytes must be right (checked by hand and by recomputing every HKDF step and X25519 key), and
 * the extractor must refuse damaged input, naming the section and line.
 */
import t from 'tap';
import { readFileSync } from 'node:fs';
import { extract as hkdfExtract, expand as hkdfExpand } from '@noble/hashes/hkdf.js';
import { sha256 } from '@noble/hashes/sha2.js';
import { x25519 } from '@noble/curves/ed25519.js';
import { toHex } from '../lib/codec/bytes.js';
import { extractRfc8448, formatRfc8448Json } from '../vectors/extract-rfc8448.js';
import { loadRfc8448, RFC8448_TRACE_SECTIONS, section, step, value } from '../vectors/rfc8448.js';

const rfcText = readFileSync(new URL('../../../shared/docs/rfc8448.txt', import.meta.url), 'utf8');
const committed = readFileSync(new URL('../../vectors/rfc8448.json', import.meta.url), 'utf8');
const extracted = extractRfc8448(rfcText);

t.test('the committed JSON is exactly the extraction of the RFC text', async (t) => {
  t.equal(formatRfc8448Json(extracted), committed, 'regenerate with: node dist/vectors/extract-rfc8448.js');
  t.same(loadRfc8448(), extracted, 'the loader returns the same data');
});

t.test('every trace section 3..7 is present, titled, and has steps on both sides', async (t) => {
  const v = loadRfc8448();
  t.equal(v.source, 'RFC 8448');
  t.same(v.sections.map((s) => s.number), [...RFC8448_TRACE_SECTIONS]);
  t.same(v.sections.map((s) => s.title), [
    'Simple 1-RTT Handshake',
    'Resumed 0-RTT Handshake',
    'HelloRetryRequest',
    'Client Authentication',
    'Compatibility Mode',
  ]);
  for (const s of v.sections) {
    t.ok(s.steps.length > 40, `§${s.number} has ${s.steps.length} steps`);
    t.same(s.steps.map((x) => x.index), s.steps.map((_, i) => i), `§${s.number} indexes run from 0`);
    t.ok(s.steps.some((x) => x.side === 'client') && s.steps.some((x) => x.side === 'server'));
    for (const x of s.steps) t.notOk(/:$|\s\s|\n/.test(x.action), `§${s.number} "${x.action}" is folded`);
  }
  // 272 "{client}"/"{server}" lines and 543 labelled values in sections 3 to 7 of the RFC.
  t.equal(v.sections.reduce((n, s) => n + s.steps.length, 0), 272);
  t.equal(v.sections.reduce((n, s) => n + s.steps.reduce((m, x) => m + Object.keys(x.values).length, 0), 0), 543);
});

t.test('known values, checked by hand against the RFC', async (t) => {
  const kp = step('3', 'client', 'create an ephemeral x25519 key pair');
  t.equal(kp.index, 0);
  t.match(toHex(value(kp, 'private key')), /^49af42ba7f7994852d713ef2784bcbca/);
  t.equal(toHex(value(kp, 'private key')), '49af42ba7f7994852d713ef2784bcbcaa7911de26adc5642cb634540e7ea5005');

  const shs = step('3', 'server', 'derive secret "tls13 s hs traffic"');
  t.equal(toHex(value(shs, 'expanded')), 'b67b7d690cc16c4e75e54213cb2d37b4e9c912bcded9105d42befd59d391ad38');
  t.equal(value(shs, 'info').length, 54);

  const keys = step('3', 'server', 'derive write traffic keys for handshake data');
  t.equal(toHex(value(keys, 'key expanded')), '3fce516009c21727d0f2e4e86ee403bc');
  t.equal(toHex(value(keys, 'iv expanded')), '5d313eb2671276ee13000b30');

  // A hex dump that a page break cuts in two (§3 server Certificate, pages 7 and 8).
  const cert = value(step('3', 'server', 'construct a Certificate handshake message'), 'Certificate');
  t.equal(cert.length, 445);
  t.equal(toHex(cert.subarray(0, 4)), '0b0001b9');
  t.equal(toHex(cert.subarray(-4)), '4de10000');

  // Zero-length values and the "0 (all zero octets)" salt of RFC 8446 §7.1 (Hash.length zeros).
  const fin = step('3', 'server', 'calculate finished "tls13 finished"');
  t.equal(value(fin, 'hash').length, 0);
  t.same(value(step('3', 'server', 'extract secret "early"'), 'salt'), new Uint8Array(32));

  // A step line that wraps, and a "(same as ...)" step that carries no values.
  const wrapped = step('3', 'client', 'derive read traffic keys for handshake data');
  t.equal(wrapped.action, 'derive read traffic keys for handshake data (same as server handshake data write traffic keys)');
  t.same(wrapped.values, {});
});

t.test('§4 has the 0-RTT steps', async (t) => {
  const binder = step('4', 'client', 'calculate PSK binder');
  t.equal(value(binder, 'ClientHello prefix').length, 477);
  t.equal(toHex(value(binder, 'finished')), '3add4fb2d8fdf822a0ca3cf7678ef5e88dae990141c5924d57bb6fa31b9e5f9d');
  t.equal(value(step('4', 'client', 'derive secret "tls13 c e traffic"'), 'expanded').length, 32);
  t.ok(step('4', 'client', 'derive write traffic keys for early application data'));
  t.equal(toHex(value(step('4', 'client', 'construct an EndOfEarlyData handshake message'), 'EndOfEarlyData')), '05000000');
  t.ok(step('4', 'server', /^derive read traffic keys for early application data/));
  t.ok(step('4', 'client', 'send application_data record'));
});

t.test('§5 has a HelloRetryRequest (a ServerHello carrying the HRR random) and a second ClientHello', async (t) => {
  const hrr = value(step('5', 'server', 'construct a ServerHello handshake message', 0), 'ServerHello');
  // RFC 8446 §4.1.3: the HelloRetryRequest random is SHA-256("HelloRetryRequest").
  t.equal(toHex(hrr.subarray(6, 38)), 'cf21ad74e59a6111be1d8c021e65b891c2a211167abb8c5e079e09e2c8a8339c');
  t.ok(step('5', 'client', 'construct a ClientHello handshake message', 1));
  t.ok(step('5', 'client', 'create an ephemeral P-256 key pair'));
  t.ok(step('5', 'server', 'construct a ServerHello handshake message', 1));
});

t.test('§6 has client authentication, §7 the ChangeCipherSpec compatibility steps', async (t) => {
  t.ok(step('6', 'server', 'construct a CertificateRequest handshake message'));
  t.ok(step('6', 'client', 'construct a CertificateVerify handshake message'));
  for (const side of ['client', 'server'] as const) {
    const ccs = step('7', side, 'send change_cipher_spec record');
    t.equal(toHex(value(ccs, 'payload')), '01');
    t.equal(toHex(value(ccs, 'complete record')), '140303000101');
  }
});

t.test('every HKDF step and X25519 key pair recomputes from the extracted bytes', async (t) => {
  let checked = 0;
  for (const s of loadRfc8448().sections) {
    for (const x of s.steps) {
      const where = `§${s.number} #${x.index} {${x.side}} ${x.action}`;
      const has = (...labels: string[]): boolean => labels.every((l) => l in x.values);
      if (has('PRK', 'info', 'expanded')) {
        const len = value(x, 'expanded').length;
        t.equal(toHex(hkdfExpand(sha256, value(x, 'PRK'), value(x, 'info'), len)), x.values.expanded, where);
        checked++;
      }
      if (has('PRK', 'key info', 'key expanded', 'iv info', 'iv expanded')) {
        const prk = value(x, 'PRK');
        t.equal(toHex(hkdfExpand(sha256, prk, value(x, 'key info'), 16)), x.values['key expanded'], where);
        t.equal(toHex(hkdfExpand(sha256, prk, value(x, 'iv info'), 12)), x.values['iv expanded'], where);
        checked++;
      }
      if (has('salt', 'IKM', 'secret')) {
        t.equal(toHex(hkdfExtract(sha256, value(x, 'IKM'), value(x, 'salt'))), x.values.secret, where);
        checked++;
      }
      if (x.action.startsWith('create an ephemeral x25519 key pair')) {
        t.equal(toHex(x25519.getPublicKey(value(x, 'private key'))), x.values['public key'], where);
        checked++;
      }
    }
  }
  t.equal(checked, 104, 'Derive-Secret/finished expansions, traffic keys, Extracts and X25519 key pairs recomputed');
});

t.test('the loader reports what it cannot find', async (t) => {
  t.throws(() => step('3', 'client', 'no such step'), /§3: no client step #0 matching no such step \(0 matches\)/);
  t.throws(() => step('3', 'client', 'create an ephemeral x25519 key pair', 1), /\(1 match\)/);
  t.throws(() => section('9'), /no section 9/);
  t.throws(() => value(step('3', 'client', 'create an ephemeral x25519 key pair'), 'PRK'), /has no value "PRK" \(has "private key", "public key"\)/);
  t.throws(() => {
    (loadRfc8448().sections as unknown[]).pop();
  }, TypeError, 'the loaded vectors are frozen');
});

t.test('page-break handling does not depend on the exact running header', async (t) => {
  const variant = rfcText.replace(/^RFC 8448 +TLS 1\.3 Traces +January 2019$/gm, 'RFC 8448           Example TLS 1.3 Traces           January 2019');
  t.not(variant, rfcText);
  t.same(extractRfc8448(variant), extracted);
});

t.test('damaged input is refused, naming the section and the line', async (t) => {
  const lines = rfcText.split('\n');
  const lineOf = (needle: string): number => lines.findIndex((l) => l.includes(needle)) + 1;
  const damage = (needle: string, replacement: string): string => {
    t.ok(rfcText.includes(needle), `the RFC text contains ${JSON.stringify(needle)}`);
    return rfcText.replace(needle, replacement);
  };

  const pk = '      private key (32 octets):  49 af 42 ba';
  const tampered = damage(pk, pk.replace('32 octets', '31 octets'));
  t.throws(() => extractRfc8448(tampered), {
    name: 'Rfc8448FormatError',
    section: '3',
    line: lineOf(pk),
    message: `RFC 8448 §3 line ${lineOf(pk)}: "private key" declares 31 octets but has 32`,
  });
  t.throws(() => extractRfc8448(tampered), /^RFC 8448 §3 line \d+: "private key" declares 31 octets/);

  // One octet missing from the end of a value split by a page break (§3 server Certificate).
  const certTail = '96 12 29 ac 91 87 b4 2b 4d e1 00 00\n';
  t.throws(() => extractRfc8448(damage(certTail, '96 12 29 ac 91 87 b4 2b 4d e1 00\n')), /§3 line \d+: "Certificate" declares 445 octets but has 444/);

  const pub = '      public key (32 octets):  99 38 1d e5';
  t.throws(() => extractRfc8448(damage(pub, pub.replace('public key', 'private key'))), /§3 line \d+: duplicate label "private key"/);

  const ikm = '00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00\n\n      secret (32 octets):  33 ad';
  t.throws(() => extractRfc8448(damage(ikm, ikm.replace('00\n\n', '00\n         zz zz\n\n'))), /§3 line \d+: unparseable line .*"zz zz"/);
  t.throws(() => extractRfc8448(damage(ikm, ikm.replace('00\n\n', '00\n      a note inside a step\n\n'))), /§3 line \d+: unparseable line/);

  const empty = '      hash (0 octets):  (empty)';
  t.throws(() => extractRfc8448(damage(empty, '      hash (1 octets):  (empty)')), /§3 line \d+: "hash" is "\(empty\)" but declares 1 octets/);
  t.throws(() => extractRfc8448(damage('   {server}  create an ephemeral x25519', '   {proxy}  create an ephemeral x25519')), /§3 line \d+: unknown side "\{proxy\}"/);
  const sameAs = '   {client}  derive secret "tls13 exp master" (same as server)\n';
  t.throws(() => extractRfc8448(damage(sameAs, `${sameAs}\n      PRK (1 octets):  00\n`)), /§3 line \d+: value line after step .* no trailing colon/);
  t.throws(() => extractRfc8448(damage('      payload (1 octets):  01', '      payload:  01')), /§7 line \d+: value "payload" has no octet count/);
  t.throws(() => extractRfc8448(damage('\n7.  Compatibility Mode', '\n7.x Compatibility Mode')), /§6 line 3059: unparseable line in step "send alert record": "7.x Compatibility Mode"/);
  t.throws(() => extractRfc8448(rfcText.slice(0, rfcText.indexOf('\n7.  Compatibility Mode'))), /^RFC 8448 §7: section heading not found \(a line "7\.  TITLE" at the left margin\)$/);
});
