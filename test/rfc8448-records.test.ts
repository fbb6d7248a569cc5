/**
 * The record half of the RFC 8448 replay (vectors/replay.ts): every record the traces print — plaintext
 * hellos, the encrypted server flights, client Finished, 0-RTT data, EndOfEarlyData, NewSessionTicket,
 * application data both ways, alerts, ChangeCipherSpec — decrypts with RecordProtection at the right sequence
 * number and re-encrypts to the exact record, for both crypto providers.
 *
 * RFC 8448 uses only TLS_AES_128_GCM_SHA256, so the other two suites get round trips with padding and a
 * known-answer record computed independently with node:crypto.
 */
import t from 'tap';
import { createCipheriv } from 'node:crypto';
import { fromHex, toHex, utf8 } from '../lib/codec/bytes.js';
import { ContentType } from '../lib/codec/enums.js';
import { nobleProvider } from '../lib/crypto/noble.js';
import { nodeProvider } from '../lib/crypto/node.js';
import type { CryptoProvider } from '../lib/crypto/provider.js';
import { Deframer } from '../lib/record/deframer.js';
import { RecordProtection } from '../lib/record/protection.js';
import { SUITES, type SuiteInfo, type SupportedSuiteName } from '../lib/suites.js';
import { countBySection, runRfc8448Checks, type Check } from '../vectors/replay.js';

const PROVIDERS: CryptoProvider[] = [nobleProvider, nodeProvider];
const isRecordCheck = (c: Check) => /^(client|server) record of /.test(c.name);

/** At least this many record checks per section, so that a section silently skipped fails. */
const MIN_PER_SECTION: Record<string, number> = { '3': 21, '4': 23, '5': 18, '6': 14, '7': 16 };

const EVERY_SECTION: RegExp[] = [
  /^client record of ClientHello1? \(plaintext\) frames exactly$/,
  /^server record of ServerHello \(plaintext\) frames exactly$/,
  /^server record of EncryptedExtensions, .*server Finished \(server handshake traffic keys, seq 0\) decrypts to the RFC payload$/,
  /^server record of EncryptedExtensions, .*server Finished \(server handshake traffic keys, seq 0\) re-encrypts to the RFC record$/,
  /^client record of .*client Finished \(client handshake traffic keys, seq 0\) decrypts to the RFC payload$/,
  /^client record of .*client Finished \(client handshake traffic keys, seq 0\) re-encrypts to the RFC record$/,
  /^client record of alert close_notify \(client application traffic keys, seq \d\) decrypts/,
  /^server record of alert close_notify \(server application traffic keys, seq \d\) re-encrypts/,
];
const PER_SECTION: Record<string, RegExp[]> = {
  '3': [
    /^server record of NewSessionTicket \(server application traffic keys, seq 0\) decrypts/,
    /^server record of NewSessionTicket \(server application traffic keys, seq 0\) re-encrypts/,
    /^client record of 50 bytes of application data \(client application traffic keys, seq 0\) re-encrypts/,
    /^server record of 50 bytes of application data \(server application traffic keys, seq 1\) re-encrypts/,
    /^server record of alert close_notify \(server application traffic keys, seq 2\) re-encrypts/,
  ],
  '4': [
    /^client record of 6 bytes of 0-RTT application data \(client early traffic keys, seq 0\) decrypts/,
    /^client record of 6 bytes of 0-RTT application data \(client early traffic keys, seq 0\) re-encrypts/,
    /^client record of EndOfEarlyData \(client early traffic keys, seq 1\) decrypts/,
    /^client record of EndOfEarlyData \(client early traffic keys, seq 1\) re-encrypts/,
    /^server record of EncryptedExtensions, server Finished \(/,
    /^client record of 50 bytes of application data \(client application traffic keys, seq 0\) decrypts/,
    /^server record of 50 bytes of application data \(server application traffic keys, seq 0\) decrypts/,
  ],
  '5': [/^client record of ClientHello1 \(plaintext\)/, /^server record of HelloRetryRequest \(plaintext\)/, /^client record of ClientHello2 \(plaintext\)/],
  '6': [/^client record of client Certificate, client CertificateVerify, client Finished \(client handshake traffic keys, seq 0\) re-encrypts/],
  '7': [/^server record of change_cipher_spec \(plaintext\) frames exactly$/, /^client record of change_cipher_spec \(plaintext\) frames exactly$/],
};

for (const crypto of PROVIDERS) {
  t.test(`RFC 8448 records, ${crypto.name} provider`, async (t) => {
    const checks = runRfc8448Checks(crypto).filter(isRecordCheck);
    for (const c of checks) t.ok(c.pass, `§${c.section} ${c.name}${c.detail ? ` — ${c.detail}` : ''}`);
    const counts = countBySection(checks);
    for (const [section, min] of Object.entries(MIN_PER_SECTION)) {
      t.ok((counts[section] ?? 0) >= min, `§${section}: ${counts[section] ?? 0} record checks (at least ${min})`);
      const names = checks.filter((c) => c.section === section).map((c) => c.name);
      for (const want of [...EVERY_SECTION, ...(PER_SECTION[section] ?? [])]) {
        t.ok(names.some((n) => want.test(n)), `§${section} has a check matching ${want}`);
      }
    }
  });
}

t.test('an AEAD that seals wrongly fails the re-encrypt rows, not the decrypt rows', async (t) => {
  const base = nobleProvider;
  const broken: CryptoProvider = {
    ...base,
    name: 'broken seal',
    aead: (name, key) => {
      const a = base.aead(name, key);
      return {
        name: a.name,
        keyLength: a.keyLength,
        nonceLength: a.nonceLength,
        tagLength: a.tagLength,
        open: (n, aad, c) => a.open(n, aad, c),
        destroy: () => a.destroy(),
        seal: (n, aad, p) => {
          const out = a.seal(n, aad, p);
          out[out.length - 1] ^= 1;
          return out;
        },
      };
    },
  };
  const checks = runRfc8448Checks(broken).filter(isRecordCheck);
  const reencrypt = checks.filter((c) => / re-encrypts to the RFC record$/.test(c.name));
  const decrypt = checks.filter((c) => / decrypts to the RFC payload$/.test(c.name));
  t.ok(reencrypt.length >= 27, `${reencrypt.length} re-encrypt rows`);
  t.ok(reencrypt.every((c) => !c.pass), 'every re-encrypt row fails');
  t.ok(decrypt.every((c) => c.pass), 'every decrypt row still passes');
});

// ---- ChaCha20-Poly1305 and AES-256-GCM ---------------------------------------------------------------------

const KEY32 = Uint8Array.from({ length: 32 }, (_, i) => i);
const IV = Uint8Array.from({ length: 12 }, (_, i) => 0xa0 + i);
const KAT_CONTENT = utf8('RFC 8446 section 5.2 known answer');
const KAT_PADDING = 5;
/** Sequence number 0x00000001_00000002: both halves of the 64-bit counter enter the nonce. */
const KAT_SEQ = [1, 2] as const;

/**
 * The known-answer records, computed once with node:crypto (see {@link independentRecord}) for key 00..1f,
 * IV a0..ab, sequence 2^32 + 2, application_data "RFC 8446 section 5.2 known answer" and 5 bytes of padding.
 */
const KAT: Partial<Record<SupportedSuiteName, string>> = {
  TLS_CHACHA20_POLY1305_SHA256:
    '1703030037348628b358c8ee3cdb60aaf5692945006ed01f6b1316709a8a87129cbe3b87f1824a22f8af2b92c59a303b8fde74fa668fdef2a23ff17f',
  TLS_AES_256_GCM_SHA384:
    '170303003798d88461b02314d9c5e81dbba4843ce83913b2a8a76f7cf50a9ac04d20c12e98f3fdc79aa0a9d82cc3f0c91bc503f4247b08e790e80847',
};

/** RFC 8446 §5.2–§5.4 written out with node:crypto directly: nonce = iv XOR seq, AAD = header, inner = content || type || zeros. */
function independentRecord(suite: SuiteInfo, key: Uint8Array, iv: Uint8Array, seq: readonly [number, number], type: number, content: Uint8Array, padding: number): string {
  const nonce = Buffer.from(iv);
  const seqBytes = Buffer.alloc(8);
  seqBytes.writeUInt32BE(seq[0], 0);
  seqBytes.writeUInt32BE(seq[1], 4);
  for (let i = 0; i < 8; i++) nonce[4 + i] ^= seqBytes[i];
  const inner = Buffer.concat([content, Buffer.from([type]), Buffer.alloc(padding)]);
  const header = Buffer.from([ContentType.application_data, 3, 3, 0, 0]);
  header.writeUInt16BE(inner.length + 16, 3);
  const algorithm = suite.aead === 'CHACHA20-POLY1305' ? 'chacha20-poly1305' : suite.aead === 'AES-256-GCM' ? 'aes-256-gcm' : 'aes-128-gcm';
  const cipher = createCipheriv(algorithm as 'aes-256-gcm', key, nonce, { authTagLength: 16 });
  cipher.setAAD(header, { plaintextLength: inner.length });
  return toHex(Buffer.concat([header, cipher.update(inner), cipher.final(), cipher.getAuthTag()]));
}

function protection(crypto: CryptoProvider, suite: SuiteInfo, key = KEY32.subarray(0, suite.keyLength)): RecordProtection {
  return new RecordProtection(crypto, suite, key, IV);
}

function openRecord(p: RecordProtection, record: Uint8Array) {
  const d = new Deframer();
  d.push(record);
  const raw = d.next();
  if (!raw) throw new Error('incomplete record');
  return p.open(raw);
}

for (const name of ['TLS_CHACHA20_POLY1305_SHA256', 'TLS_AES_256_GCM_SHA384'] as const) {
  const suite = SUITES[name];
  t.test(`${name}: the known-answer record`, async (t) => {
    const kat = KAT[name]!;
    t.equal(independentRecord(suite, KEY32, IV, KAT_SEQ, ContentType.application_data, KAT_CONTENT, KAT_PADDING), kat, 'node:crypto, written out, gives the committed record');
    for (const crypto of PROVIDERS) {
      const sealer = protection(crypto, suite);
      sealer.dangerousSetSequence(...KAT_SEQ);
      t.equal(toHex(sealer.seal(ContentType.application_data, KAT_CONTENT, KAT_PADDING)), kat, `${crypto.name} seals the known answer`);
      t.equal(sealer.sequence, 0x1_0000_0003, 'the sequence number advanced by one');
      const opener = protection(crypto, suite);
      opener.dangerousSetSequence(...KAT_SEQ);
      const opened = openRecord(opener, fromHex(kat));
      t.equal(opened.type, ContentType.application_data, `${crypto.name} opens it: inner type`);
      t.equal(toHex(opened.content), toHex(KAT_CONTENT), `${crypto.name} opens it: content without the padding`);
      const wrongSeq = protection(crypto, suite);
      wrongSeq.dangerousSetSequence(KAT_SEQ[0], KAT_SEQ[1] + 1);
      t.throws(() => openRecord(wrongSeq, fromHex(kat)), { name: 'TlsError', alert: 'bad_record_mac' }, `${crypto.name}: at another sequence number it does not open`);
    }
  });

  t.test(`${name}: round trips with padding, across providers`, async (t) => {
    const cases: [number, number][] = [
      [0, 0],
      [0, 1],
      [1, 0],
      [1, 255],
      [100, 31],
      [1000, 1000],
      [16384, 0],
      [16000, 384],
      [0, 16384],
    ];
    for (const [sealCrypto, openCrypto] of [[nobleProvider, nodeProvider], [nodeProvider, nobleProvider], [nobleProvider, nobleProvider], [nodeProvider, nodeProvider]]) {
      const sealer = protection(sealCrypto, suite);
      const opener = protection(openCrypto, suite);
      for (const [length, padding] of cases) {
        for (const type of [ContentType.application_data, ContentType.handshake, ContentType.alert]) {
          const content = Uint8Array.from({ length }, (_, i) => (i * 7 + length) & 0xff);
          const record = sealer.seal(type, content, padding);
          t.equal(record.length, 5 + length + 1 + padding + 16, `record length for ${length}+${padding}`);
          const opened = openRecord(opener, record);
          if (opened.type !== type || toHex(opened.content) !== toHex(content)) {
            t.fail(`${sealCrypto.name} -> ${openCrypto.name}: type ${type}, ${length} bytes + ${padding} padding did not round-trip`);
          }
        }
      }
      t.equal(opener.sequence, cases.length * 3, `${sealCrypto.name} -> ${openCrypto.name}: both sides counted ${cases.length * 3} records`);
      t.pass(`${sealCrypto.name} -> ${openCrypto.name}: all round trips`);
    }
    const p = protection(nobleProvider, suite);
    t.throws(() => p.seal(ContentType.application_data, new Uint8Array(16384), 1), RangeError, 'more than 2^14 + 1 bytes of inner plaintext is refused');
  });
}
