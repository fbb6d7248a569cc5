/**
 * The key-schedule half of the RFC 8448 replay (vectors/replay.ts): (EC)DHE secrets, every Extract and
 * Derive-Secret, transcript hashes (with §5's message_hash rule), traffic keys and IVs, Finished, the §3
 * resumption PSK and the §4 binder — for both crypto providers, one assertion per check, named after it.
 * The record rows of the same replay are asserted in rfc8448-records.test.ts.
 */
import t from 'tap';
import { nobleProvider } from '../lib/crypto/noble.js';
import { nodeProvider } from '../lib/crypto/node.js';
import type { CryptoProvider, KeyExchangeGroup } from '../lib/crypto/provider.js';
import { countBySection, runRfc8448Checks, type Check } from '../vectors/replay.js';

const PROVIDERS: CryptoProvider[] = [nobleProvider, nodeProvider];
const isRecordCheck = (c: Check) => /^(client|server) record of /.test(c.name);
const keySchedule = (checks: Check[]) => checks.filter((c) => !isRecordCheck(c));

/** At least this many key-schedule checks per section, so that a section silently skipped fails. */
const MIN_PER_SECTION: Record<string, number> = { '3': 36, '4': 46, '5': 39, '6': 34, '7': 34 };

/** Rows every section must have (patterns over the check names). */
const EVERY_SECTION: RegExp[] = [
  /^client x25519 public key from its private key$/,
  /^early secret = HKDF-Extract\(0, /,
  /^\(EC\)DHE \S+ shared secret, client side/,
  /^\(EC\)DHE \S+ shared secret, server side/,
  /^Derive-Secret\(\., "derived", ""\) before the handshake secret/,
  /^handshake secret = HKDF-Extract\(derived, \(EC\)DHE\)$/,
  /^Derive-Secret\(\., "derived", ""\) before the master secret/,
  /^master secret = HKDF-Extract\(derived, 0\)$/,
  /^Transcript-Hash\(.*ServerHello\)$/,
  /^Transcript-Hash\(.*server Finished\)$/,
  /^Transcript-Hash\(.*client Finished\)$/,
  /^client_handshake_traffic_secret = /,
  /^server_handshake_traffic_secret = /,
  /^client_application_traffic_secret_0 = /,
  /^server_application_traffic_secret_0 = /,
  /^exporter_master_secret = /,
  /^resumption_master_secret = /,
  /^server handshake traffic write key and IV$/,
  /^server application traffic write key and IV$/,
  /^client application traffic write key and IV$/,
  /^server finished_key = /,
  /^server Finished verify_data = /,
  /^client finished_key = /,
  /^client Finished verify_data = /,
  /^server Finished message = /,
  /^client Finished message = /,
  /^ClientHello\d? decodes and re-encodes byte for byte$/,
  /^ServerHello decodes and re-encodes byte for byte$/,
  /^EncryptedExtensions decodes and re-encodes byte for byte$/,
];
const PER_SECTION: Record<string, RegExp[]> = {
  '3': [/^early secret = HKDF-Extract\(0, 0\)$/, /^resumption PSK = HKDF-Expand-Label\(resumption_master_secret, "resumption", ticket_nonce\)$/, /^NewSessionTicket decodes/],
  '4': [
    /^early secret = HKDF-Extract\(0, PSK derived from §3\)$/,
    /^ClientHello prefix = /,
    /^PSK identity = the ticket of §3 NewSessionTicket$/,
    /^binder hash = Transcript-Hash\(truncated ClientHello\)$/,
    /^binder_key = Derive-Secret\(early secret, "res binder", ""\)$/,
    /^binder finished_key = /,
    /^PSK binder = HMAC\(finished_key, binder hash\)$/,
    /^the ClientHello sent carries that binder$/,
    /^Transcript-Hash\(ClientHello\)$/,
    /^client_early_traffic_secret = /,
    /^early_exporter_master_secret = /,
    /^client early application data write key and IV$/,
    /^client handshake traffic write key and IV$/,
    /^client Finished verify_data = HMAC\(finished_key, Transcript-Hash\(ClientHello\.\.EndOfEarlyData\)\)$/,
    /^EndOfEarlyData decodes and re-encodes byte for byte$/,
  ],
  '5': [
    /^HelloRetryRequest decodes and re-encodes byte for byte$/,
    /^\(EC\)DHE secp256r1 shared secret, client side/,
    /^\(EC\)DHE secp256r1 shared secret, server side/,
    /^client secp256r1 public key from its private key$/,
    /^server secp256r1 public key from its private key$/,
    /^message_hash rule: /,
    /^Transcript-Hash\(message_hash\(ClientHello1\), HelloRetryRequest, ClientHello2\.\.ServerHello\)$/,
  ],
  '6': [/^client Finished verify_data = HMAC\(finished_key, Transcript-Hash\(ClientHello\.\.client CertificateVerify\)\)$/],
  '7': [/^client handshake traffic write key and IV \(server read keys\)$/],
};

for (const crypto of PROVIDERS) {
  t.test(`RFC 8448 key schedule, ${crypto.name} provider`, async (t) => {
    const checks = keySchedule(runRfc8448Checks(crypto));
    for (const c of checks) t.ok(c.pass, `§${c.section} ${c.name}${c.detail ? ` — ${c.detail}` : ''}`);
    const counts = countBySection(checks);
    for (const [section, min] of Object.entries(MIN_PER_SECTION)) {
      t.ok((counts[section] ?? 0) >= min, `§${section}: ${counts[section] ?? 0} key-schedule checks (at least ${min})`);
    }
    for (const section of Object.keys(MIN_PER_SECTION)) {
      const names = checks.filter((c) => c.section === section).map((c) => c.name);
      for (const want of [...EVERY_SECTION, ...(PER_SECTION[section] ?? [])]) {
        t.ok(names.some((n) => want.test(n)), `§${section} has a check matching ${want}`);
      }
    }
  });
}

t.test('both providers run the same checks, and the names are unique within a section', async (t) => {
  const [a, b] = PROVIDERS.map((p) => runRfc8448Checks(p).map((c) => `§${c.section} ${c.name}`));
  t.same(a, b);
  t.equal(new Set(a).size, a.length, 'no duplicate names');
  t.ok(a.length >= 280, `${a.length} checks in all`);
});

// ---- the checks can fail, and a fault shows in exactly the rows it should --------------------------------------

/** A provider whose HKDF-Expand corrupts one output: the one whose HkdfLabel names `label`. */
function corruptExpand(base: CryptoProvider, label: string): CryptoProvider {
  const needle = new TextEncoder().encode(`tls13 ${label}`);
  const contains = (hay: Uint8Array) => hay.some((_, i) => needle.every((b, j) => hay[i + j] === b));
  return {
    ...base,
    name: `${base.name} with a broken "${label}"`,
    hkdfExpand: (hash, prk, info, length) => {
      const out = base.hkdfExpand(hash, prk, info, length);
      if (contains(info)) out[0] ^= 1;
      return out;
    },
  };
}

t.test('a wrong "c hs traffic" derivation fails the rows that depend on it, and only those', async (t) => {
  const checks = runRfc8448Checks(corruptExpand(nobleProvider, 'c hs traffic'));
  const byName = (section: string, re: RegExp) => checks.filter((c) => c.section === section && re.test(c.name));
  for (const section of ['3', '4', '5', '6', '7']) {
    const chts = byName(section, /^client_handshake_traffic_secret = /);
    t.equal(chts.length, 1);
    t.notOk(chts[0].pass, `§${section}: client_handshake_traffic_secret fails`);
    t.match(chts[0].detail, /^secret: ours [0-9a-f]+… \(32 bytes\), RFC [0-9a-f]+… \(32 bytes\)$/, 'the detail shows both values');
    t.notOk(byName(section, /^client Finished verify_data/)[0].pass, `§${section}: so does the client Finished`);
    t.ok(byName(section, /^server_handshake_traffic_secret = /)[0].pass, `§${section}: the server secret still passes`);
    t.ok(byName(section, /^server Finished verify_data/)[0].pass, `§${section}: the server Finished still passes`);
    t.ok(byName(section, /^master secret/)[0].pass, `§${section}: the master secret still passes`);
    t.ok(byName(section, /^client_application_traffic_secret_0/)[0].pass, `§${section}: application secrets still pass`);
  }
});

t.test('a broken key exchange fails the shared-secret rows and everything after, never throws', async (t) => {
  const base = nobleProvider;
  const brokenX25519: KeyExchangeGroup = {
    ...base.group('x25519')!,
    start(randomness) {
      const share = base.group('x25519')!.start(randomness);
      return {
        group: share.group,
        share: share.share,
        destroy: () => share.destroy(),
        complete: (peer) => {
          const s = share.complete(peer);
          s[31] ^= 0x80;
          return s;
        },
      };
    },
  };
  const broken: CryptoProvider = { ...base, name: 'broken x25519', group: (g) => (g === 'x25519' ? brokenX25519 : base.group(g)) };
  const checks = runRfc8448Checks(broken);
  const row = (section: string, re: RegExp) => checks.find((c) => c.section === section && re.test(c.name))!;
  t.notOk(row('3', /^\(EC\)DHE x25519 shared secret, client side/).pass);
  t.ok(row('3', /^\(EC\)DHE x25519 shared secret, server side/).pass, 'the server side is not affected');
  t.notOk(row('3', /^handshake secret/).pass);
  t.ok(row('3', /^early secret/).pass);
  t.ok(row('5', /^\(EC\)DHE secp256r1 shared secret, client side/).pass, '§5 uses P-256');
  t.notOk(row('3', /^server record of EncryptedExtensions.*decrypts/).pass, 'records under the wrong keys fail');
  t.ok(checks.every((c) => c.pass || typeof c.detail === 'string'), 'every failure says why');
});
