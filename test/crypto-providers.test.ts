/**
 * One table of known-answer and hostile-input cases, run against every CryptoProvider, plus exchanges
 * across providers (a noble client with a node server and vice versa).
 */
import t from 'tap';
import { concat, fromHex, toHex, utf8 } from '../lib/codec/bytes.js';
import { nobleProvider } from '../lib/crypto/noble.js';
import { nodeProvider } from '../lib/crypto/node.js';
import type { AeadName, CryptoProvider, GroupName, HashName } from '../lib/crypto/provider.js';
import { TlsError, type Reason } from '../lib/errors.js';

const PROVIDERS: CryptoProvider[] = [nobleProvider, nodeProvider];

/** Asserts that `fn` throws a TlsError with `reason`, and nothing else. */
function throwsReason(tt: Tap, fn: () => unknown, reason: Reason, msg: string): void {
  try {
    fn();
    tt.fail(`${msg}: expected TlsError(${reason}), nothing was thrown`);
  } catch (e) {
    tt.ok(e instanceof TlsError, `${msg}: threw a TlsError (${(e as Error)?.message})`);
    tt.equal((e as TlsError).reason, reason, `${msg}: reason ${reason}`);
  }
}
type Tap = Pick<typeof t, 'ok' | 'equal' | 'fail'>;

const hex = (b: Uint8Array) => toHex(b);
const repeat = (byte: number, n: number) => new Uint8Array(n).fill(byte);

// ---------------------------------------------------------------------------------------------------
// Hashes: FIPS 180-2 appendix examples and the million-'a' message.

const HASH_CASES: { hash: HashName; input: Uint8Array; digest: string; what: string }[] = [
  { hash: 'SHA-256', what: 'empty', input: new Uint8Array(0), digest: 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855' },
  { hash: 'SHA-256', what: 'abc', input: utf8('abc'), digest: 'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad' },
  {
    hash: 'SHA-256',
    what: '448-bit message',
    input: utf8('abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq'),
    digest: '248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1',
  },
  { hash: 'SHA-256', what: "a million 'a'", input: repeat(0x61, 1_000_000), digest: 'cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0' },
  {
    hash: 'SHA-384',
    what: 'empty',
    input: new Uint8Array(0),
    digest: '38b060a751ac96384cd9327eb1b1e36a21fdb71114be07434c0cc7bf63f6e1da274edebfe76f65fbd51ad2f14898b95b',
  },
  {
    hash: 'SHA-384',
    what: 'abc',
    input: utf8('abc'),
    digest: 'cb00753f45a35e8bb5a03d699ac65007272c32ab0eded1631a8b605a43ff5bed8086072ba1e7cc2358baeca134c825a7',
  },
  {
    hash: 'SHA-384',
    what: '896-bit message',
    input: utf8('abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu'),
    digest: '09330c33f71147e83d192fc782cd1b4753111b173b3b05d22fa08086e3b0f712fcc7c71a557e2db966c3e9fa91746039',
  },
  {
    hash: 'SHA-384',
    what: "a million 'a'",
    input: repeat(0x61, 1_000_000),
    digest: '9d0e1809716474cb086e834e310a4a1ced149e9c00f248527972cec5704c2a5b07b8b3dc38ecc4ebae97ddd87f3d8985',
  },
];

// RFC 4231 §4.2, §4.3, §4.7 (test cases 1, 2 and 6).
const HMAC_CASES: { key: Uint8Array; data: Uint8Array; sha256: string; sha384: string; what: string }[] = [
  {
    what: 'RFC 4231 test case 1',
    key: repeat(0x0b, 20),
    data: utf8('Hi There'),
    sha256: 'b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7',
    sha384: 'afd03944d84895626b0825f4ab46907f15f9dadbe4101ec682aa034c7cebc59cfaea9ea9076ede7f4af152e8b2fa9cb6',
  },
  {
    what: 'RFC 4231 test case 2',
    key: utf8('Jefe'),
    data: utf8('what do ya want for nothing?'),
    sha256: '5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843',
    sha384: 'af45d2e376484031617f78d2b58a6b1b9c7ef464f5a01b47e42ec3736322445e8e2240ca5e69e2c78b3239ecfab21649',
  },
  {
    what: 'RFC 4231 test case 6 (key longer than a block)',
    key: repeat(0xaa, 131),
    data: utf8('Test Using Larger Than Block-Size Key - Hash Key First'),
    sha256: '60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54',
    sha384: '4ece084485813e9088d2c63a041bc5b44f9ef1012a2b588f3cd11f05033ac4c60c2ef6ab4030fe8296248df163f44952',
  },
];

// RFC 5869 appendix A.1-A.3, and the RFC 8448 §3 early secret / "derived" step.
const range = (from: number, to: number) => Uint8Array.from({ length: to - from + 1 }, (_, i) => from + i);
const HKDF_CASES: { what: string; hash: HashName; ikm: Uint8Array; salt: Uint8Array; info: Uint8Array; length: number; prk: string; okm: string }[] = [
  {
    what: 'RFC 5869 A.1',
    hash: 'SHA-256',
    ikm: repeat(0x0b, 22),
    salt: range(0x00, 0x0c),
    info: range(0xf0, 0xf9),
    length: 42,
    prk: '077709362c2e32df0ddc3f0dc47bba6390b6c73bb50f9c3122ec844ad7c2b3e5',
    okm: '3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865',
  },
  {
    what: 'RFC 5869 A.2',
    hash: 'SHA-256',
    ikm: range(0x00, 0x4f),
    salt: range(0x60, 0xaf),
    info: range(0xb0, 0xff),
    length: 82,
    prk: '06a6b88c5853361a06104c9ceb35b45cef760014904671014a193f40c15fc244',
    okm:
      'b11e398dc80327a1c8e7f78c596a49344f012eda2d4efad8a050cc4c19afa97c59045a99cac7827271cb41c65e590e09' +
      'da3275600c2f09b8367793a9aca3db71cc30c58179ec3e87c14c01d5c1f3434f1d87',
  },
  {
    what: 'RFC 5869 A.3 (empty salt and info)',
    hash: 'SHA-256',
    ikm: repeat(0x0b, 22),
    salt: new Uint8Array(0),
    info: new Uint8Array(0),
    length: 42,
    prk: '19ef24a32c717b167f33a91d6f648bdf96596776afdb6377ac434c1c293ccb04',
    okm: '8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d9d201395faa4b61a96c8',
  },
  {
    what: 'RFC 8448 §3 early secret and "tls13 derived" (one block)',
    hash: 'SHA-256',
    ikm: new Uint8Array(32),
    salt: new Uint8Array(32),
    // HkdfLabel { length 32, "tls13 derived", Hash("") } (RFC 8446 §7.1)
    info: fromHex('0020 0d 746c7331332064657269766564 20 e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855'),
    length: 32,
    prk: '33ad0a1c607ec03b09e6cd9893680ce210adf300aa1f2660e1b22e10f170f92a',
    okm: '6f2615a108c702c5678f54fc9dbab69716c076189c48250cebeac3576c3611ba',
  },
];

// ---------------------------------------------------------------------------------------------------
// AEADs: RFC 8439 §2.8.2, and McGrew & Viega "The Galois/Counter Mode of Operation" test cases.

const GCM_P = 'd9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a721c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b391aafd255';
const GCM_P60 = GCM_P.slice(0, 120);
const GCM_A = 'feedfacedeadbeeffeedfacedeadbeefabaddad2';
const GCM_K128 = 'feffe9928665731c6d6a8f9467308308';
const GCM_IV = 'cafebabefacedbaddecaf888';

const AEAD_CASES: { what: string; aead: AeadName; key: string; nonce: string; aad: string; pt: string; ct: string; tag: string }[] = [
  {
    what: 'RFC 8439 §2.8.2',
    aead: 'CHACHA20-POLY1305',
    key: '808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f',
    nonce: '070000004041424344454647',
    aad: '50515253c0c1c2c3c4c5c6c7',
    pt: toHex(utf8("Ladies and Gentlemen of the class of '99: If I could offer you only one tip for the future, sunscreen would be it.")),
    ct:
      'd31a8d34648e60db7b86afbc53ef7ec2a4aded51296e08fea9e2b5a736ee62d63dbea45e8ca9671282fafb69da92728b1a71de0a9e060b2905d6a5b67ecd3b36' +
      '92ddbd7f2d778b8c9803aee328091b58fab324e4fad675945585808b4831d7bc3ff4def08e4b7a9de576d26586cec64b6116',
    tag: '1ae10b594f09e26a7e902ecbd0600691',
  },
  {
    what: 'GCM test case 2',
    aead: 'AES-128-GCM',
    key: '00000000000000000000000000000000',
    nonce: '000000000000000000000000',
    aad: '',
    pt: '00000000000000000000000000000000',
    ct: '0388dace60b6a392f328c2b971b2fe78',
    tag: 'ab6e47d42cec13bdf53a67b21257bddf',
  },
  {
    what: 'GCM test case 3',
    aead: 'AES-128-GCM',
    key: GCM_K128,
    nonce: GCM_IV,
    aad: '',
    pt: GCM_P,
    ct: '42831ec2217774244b7221b784d0d49ce3aa212f2c02a4e035c17e2329aca12e21d514b25466931c7d8f6a5aac84aa051ba30b396a0aac973d58e091473f5985',
    tag: '4d5c2af327cd64a62cf35abd2ba6fab4',
  },
  {
    what: 'GCM test case 4',
    aead: 'AES-128-GCM',
    key: GCM_K128,
    nonce: GCM_IV,
    aad: GCM_A,
    pt: GCM_P60,
    ct: '42831ec2217774244b7221b784d0d49ce3aa212f2c02a4e035c17e2329aca12e21d514b25466931c7d8f6a5aac84aa051ba30b396a0aac973d58e091',
    tag: '5bc94fbc3221a5db94fae95ae7121a47',
  },
  {
    what: 'GCM test case 14',
    aead: 'AES-256-GCM',
    key: '0000000000000000000000000000000000000000000000000000000000000000',
    nonce: '000000000000000000000000',
    aad: '',
    pt: '00000000000000000000000000000000',
    ct: 'cea7403d4d606b6e074ec5d3baf39d18',
    tag: 'd0d1c8a799996bf0265b98b5d48ab919',
  },
  {
    what: 'GCM test case 15',
    aead: 'AES-256-GCM',
    key: GCM_K128 + GCM_K128,
    nonce: GCM_IV,
    aad: '',
    pt: GCM_P,
    ct: '522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662898015ad',
    tag: 'b094dac5d93471bdec1a502270e3cc6c',
  },
  {
    what: 'GCM test case 16',
    aead: 'AES-256-GCM',
    key: GCM_K128 + GCM_K128,
    nonce: GCM_IV,
    aad: GCM_A,
    pt: GCM_P60,
    ct: '522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662',
    tag: '76fc6ece0f4e1768cddf8853bb2d551b',
  },
];

// ---------------------------------------------------------------------------------------------------
// Key exchange vectors.

/** RFC 7748 §6.1. */
const X25519_ALICE = {
  priv: '77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a',
  pub: '8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a',
};
const X25519_BOB = {
  priv: '5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb',
  pub: 'de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f',
};
const X25519_K = '4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742';

/** RFC 7748 §5.2: single scalar multiplications (the second u has its top bit set, which must be masked). */
const X25519_SCALARMULT = [
  {
    scalar: 'a546e36bf0527c9d3b16154b82465edd62144c0ac1fc5a18506a2244ba449ac4',
    u: 'e6db6867583030db3594c1a424b15f7c726624ec26b3353b10a903a6d0ab1c4c',
    out: 'c3da55379de9c6908e94ea4df28d084f32eccf03491c71f754b4075577a28552',
  },
  {
    scalar: '4b66e9d4d1b4673c5ad22691957d6af5c11b6421e0ea01d42ca4169e7918ba0d',
    u: 'e5210f12786811d3f4b7959d0538ae2c31dbe7106fc03c3efc4cd549c715a493',
    out: '95cbde9476e8907d7aade45cb4b873f88b595a68799fa152e6f8f7647aac7957',
  },
];

/** RFC 8448 §3: the client's and server's ephemeral keys and the resulting (EC)DHE secret. */
const RFC8448 = {
  clientPriv: '49af42ba7f7994852d713ef2784bcbcaa7911de26adc5642cb634540e7ea5005',
  clientPub: '99381de560e4bd43d23d8e435a7dbafeb3c06e51c13cae4d5413691e529aaf2c',
  serverPriv: 'b1580eeadf6dd589b8ef4f2d5652578cc810e9980191ec8d058308cea216a21e',
  serverPub: 'c9828876112095fe66762bdbf7c672e156d6cc253b833df1dd69b1b04e751f0f',
  shared: '8bd4054fb55b9d63fdfbacf9f04b9f0d35e6d63f537563efd46272900f89492d',
};

/**
 * X25519 inputs whose result is all zeros (points of order 1, 2, 4, 8 and their non-canonical
 * encodings, RFC 7748 §6.1 / §5: the top bit is masked and values >= p are reduced).
 */
const X25519_LOW_ORDER = [
  '0000000000000000000000000000000000000000000000000000000000000000', // 0
  '0100000000000000000000000000000000000000000000000000000000000000', // 1
  'e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800', // order 8
  '5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157', // order 8
  'ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f', // p - 1
  'edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f', // p (= 0)
  'eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f', // p + 1 (= 1)
  '0000000000000000000000000000000000000000000000000000000000000080', // 0 with the top bit set
  '0100000000000000000000000000000000000000000000000000000000000080', // 1 with the top bit set
  'e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b880', // order 8, top bit set
];

/** RFC 5903 §8.1 (P-256) and §8.2 (P-384): private keys i, r, public keys gi, gr, shared x-coordinate. */
const RFC5903: Record<'secp256r1' | 'secp384r1', { i: string; r: string; gi: string; gr: string; z: string }> = {
  secp256r1: {
    i: 'c88f01f510d9ac3f70a292daa2316de544e9aab8afe84049c62a9c57862d1433',
    r: 'c6ef9c5d78ae012a011164acb397ce2088685d8f06bf9be0b283ab46476bee53',
    gi: '04dad0b65394221cf9b051e1feca5787d098dfe637fc90b9ef945d0c3772581180' + '5271a0461cdb8252d61f1c456fa3e59ab1f45b33accf5f58389e0577b8990bb3',
    gr: '04d12dfb5289c8d4f81208b70270398c342296970a0bccb74c736fc7554494bf63' + '56fbf3ca366cc23e8157854c13c58d6aac23f046ada30f8353e74f33039872ab',
    z: 'd6840f6b42f6edafd13116e0e12565202fef8e9ece7dce03812464d04b9442de',
  },
  secp384r1: {
    i: '099f3c7034d4a2c699884d73a375a67f7624ef7c6b3c0f160647b67414dce655e35b538041e649ee3faef896783ab194',
    r: '41cb0779b4bdb85d47846725fbec3c9430fab46cc8dc5060855cc9bda0aa2942e0308312916b8ed2960e4bd55a7448fc',
    gi:
      '04667842d7d180ac2cde6f74f37551f55755c7645c20ef73e31634fe72b4c55ee6de3ac808acb4bdb4c88732aee95f41aa' +
      '9482ed1fc0eeb9cafc4984625ccfc23f65032149e0e144ada024181535a0f38eeb9fcff3c2c947dae69b4c634573a81c',
    gr:
      '04e558dbef53eecde3d3fccfc1aea08a89a987475d12fd950d83cfa41732bc509d0d1ac43a0336def96fda41d0774a3571' +
      'dcfbec7aacf3196472169e838430367f66eebe3c6e70c416dd5f0c68759dd1fff83fa40142209dff5eaad96db9e6386c',
    z: '11187331c279962d93d604243fd592cb9d0a926f422e47187521287e7156c5c4d603135569b9e9d09cf5d4a270f59746',
  },
};

/**
 * The seed that makes a NIST group use private scalar `k` (hex, big-endian): since
 * scalar = (seed mod (n-1)) + 1, the seed k-1 padded to randomLength bytes does it.
 */
function seedForScalar(k: string, randomLength: number): Uint8Array {
  const v = BigInt('0x' + k) - 1n;
  const out = new Uint8Array(randomLength);
  let x = v;
  for (let i = randomLength - 1; i >= 0; i--) {
    out[i] = Number(x & 0xffn);
    x >>= 8n;
  }
  return out;
}

/** Deterministic "randomness" for replayable tests: bytes of SHA-256(label || counter). */
function detRandom(label: string, n: number): Uint8Array {
  const out = new Uint8Array(n);
  for (let i = 0, c = 0; i < n; c++) {
    const block = nobleProvider.hash('SHA-256').digest(concat(utf8(label), Uint8Array.of(c)));
    out.set(block.subarray(0, Math.min(32, n - i)), i);
    i += 32;
  }
  return out;
}

/** Hostile NIST shares built from a valid one; every one must end in InvalidPeerKeyShare. */
function hostileNistShares(valid: Uint8Array, field: number): [string, Uint8Array][] {
  const x = valid.subarray(1, 1 + field);
  const yOdd = valid[valid.length - 1] & 1;
  const offCurve = valid.slice();
  offCurve[offCurve.length - 1] ^= 1;
  // The field primes of FIPS 186-5 / SP 800-186: P-256 and P-384.
  const prime = field === 32 ? 2n ** 256n - 2n ** 224n + 2n ** 192n + 2n ** 96n - 1n : 2n ** 384n - 2n ** 128n - 2n ** 96n + 2n ** 32n - 1n;
  const pHex = prime.toString(16).padStart(2 * field, '0');
  const hybrid = valid.slice();
  hybrid[0] = 0x06 | yOdd;
  const prefixed02 = valid.slice();
  prefixed02[0] = 0x02;
  return [
    ['empty', new Uint8Array(0)],
    ['one byte short', valid.subarray(0, valid.length - 1)],
    ['one byte long', concat(valid, Uint8Array.of(0))],
    ['compressed point (0x02/0x03 || X)', concat(Uint8Array.of(0x02 | yOdd), x)],
    ['point at infinity (0x00)', Uint8Array.of(0)],
    ['hybrid encoding (0x06/0x07)', hybrid],
    ['right length, 0x02 prefix', prefixed02],
    ['off the curve (y flipped)', offCurve],
    ['all-zero coordinates', concat(Uint8Array.of(4), new Uint8Array(2 * field))],
    ['x = p (not a field element)', concat(Uint8Array.of(4), fromHex(pHex), valid.subarray(1 + field))],
  ];
}

// ---------------------------------------------------------------------------------------------------

for (const p of PROVIDERS) {
  t.test(`${p.name}: hashes`, async (tt) => {
    for (const c of HASH_CASES) {
      const h = p.hash(c.hash);
      tt.equal(h.name, c.hash);
      tt.equal(h.outputLength, c.digest.length / 2, `${c.hash} outputLength`);
      tt.equal(hex(h.digest(c.input)), c.digest, `${c.hash} ${c.what} (one shot)`);
      const s = h.create();
      for (let i = 0; i < c.input.length; i += 4099) s.update(c.input.subarray(i, i + 4099));
      tt.equal(hex(s.peek()), c.digest, `${c.hash} ${c.what} (incremental)`);
      tt.equal(hex(s.peek()), c.digest, `${c.hash} ${c.what} (peek twice gives the same answer)`);
    }
  });

  t.test(`${p.name}: HashState peek and clone do not disturb the running state`, async (tt) => {
    for (const name of ['SHA-256', 'SHA-384'] as const) {
      const h = p.hash(name);
      const s = h.create();
      tt.equal(hex(s.peek()), hex(h.digest(new Uint8Array(0))), `${name}: peek of nothing`);
      s.update(utf8('a'));
      tt.equal(hex(s.peek()), hex(h.digest(utf8('a'))), `${name}: peek after "a"`);
      s.update(utf8('b'));
      const c = s.clone();
      c.update(utf8('c'));
      s.update(utf8('x'));
      tt.equal(hex(c.peek()), hex(h.digest(utf8('abc'))), `${name}: the clone continues independently`);
      tt.equal(hex(s.peek()), hex(h.digest(utf8('abx'))), `${name}: the original is unaffected by the clone`);
      const c2 = c.clone();
      c.update(utf8('d'));
      tt.equal(hex(c2.peek()), hex(h.digest(utf8('abc'))), `${name}: a clone of a clone is a snapshot`);
      tt.equal(hex(c.peek()), hex(h.digest(utf8('abcd'))), `${name}: clones can keep updating`);
    }
  });

  t.test(`${p.name}: HMAC (RFC 4231)`, async (tt) => {
    for (const c of HMAC_CASES) {
      tt.equal(hex(p.hmac('SHA-256', c.key, c.data)), c.sha256, `HMAC-SHA-256 ${c.what}`);
      tt.equal(hex(p.hmac('SHA-384', c.key, c.data)), c.sha384, `HMAC-SHA-384 ${c.what}`);
    }
  });

  t.test(`${p.name}: HKDF (RFC 5869, RFC 8448)`, async (tt) => {
    for (const c of HKDF_CASES) {
      const prk = p.hkdfExtract(c.hash, c.salt, c.ikm);
      tt.equal(hex(prk), c.prk, `${c.what}: PRK`);
      tt.equal(hex(p.hkdfExpand(c.hash, prk, c.info, c.length)), c.okm, `${c.what}: OKM`);
      // Every prefix length gives the prefix of the OKM (the one-block fast path and the loop agree).
      for (const n of [0, 1, 12, 16, 31, 32, 33, c.length]) {
        if (n <= c.length) tt.equal(hex(p.hkdfExpand(c.hash, prk, c.info, n)), c.okm.slice(0, 2 * n), `${c.what}: first ${n} bytes`);
      }
    }
    // RFC 8448 §3 extracts the early secret with "salt: 0"; an empty salt means HashLen zeros (RFC 5869 §2.2).
    tt.equal(hex(p.hkdfExtract('SHA-256', new Uint8Array(0), new Uint8Array(32))), HKDF_CASES[3].prk, 'empty salt = HashLen zeros');
    tt.throws(() => p.hkdfExpand('SHA-256', new Uint8Array(32), new Uint8Array(0), 255 * 32 + 1), RangeError, 'L > 255*HashLen');
    tt.throws(() => p.hkdfExpand('SHA-384', new Uint8Array(48), new Uint8Array(0), -1), RangeError, 'negative L');
    tt.throws(() => p.hkdfExpand('SHA-384', new Uint8Array(32), new Uint8Array(0), 48), TypeError, 'PRK shorter than HashLen');
    tt.equal(p.hkdfExpand('SHA-384', new Uint8Array(48), new Uint8Array(0), 255 * 48).length, 255 * 48, 'the maximum L');
  });

  t.test(`${p.name}: AEAD known answers`, async (tt) => {
    for (const c of AEAD_CASES) {
      const aead = p.aead(c.aead, fromHex(c.key));
      tt.equal(aead.name, c.aead);
      tt.equal(aead.keyLength, c.key.length / 2, `${c.what}: keyLength`);
      tt.equal(aead.nonceLength, 12);
      tt.equal(aead.tagLength, 16);
      const sealed = aead.seal(fromHex(c.nonce), fromHex(c.aad), fromHex(c.pt));
      tt.equal(hex(sealed), c.ct + c.tag, `${c.what}: seal`);
      const opened = aead.open(fromHex(c.nonce), fromHex(c.aad), fromHex(c.ct + c.tag));
      tt.equal(opened && hex(opened), c.pt, `${c.what}: open`);
      aead.destroy();
    }
  });

  t.test(`${p.name}: AEAD rejects every tampering with null`, async (tt) => {
    for (const c of AEAD_CASES) {
      const aead = p.aead(c.aead, fromHex(c.key));
      const nonce = fromHex(c.nonce);
      const aad = fromHex(c.aad);
      const sealed = fromHex(c.ct + c.tag);
      const flip = (b: Uint8Array, i: number) => {
        const x = b.slice();
        x[i] ^= 0x01;
        return x;
      };
      tt.equal(aead.open(nonce, aad, flip(sealed, sealed.length - 1)), null, `${c.what}: tag bit flipped`);
      tt.equal(aead.open(nonce, aad, flip(sealed, 0)), null, `${c.what}: ciphertext bit flipped`);
      tt.equal(aead.open(flip(nonce, 11), aad, sealed), null, `${c.what}: nonce changed`);
      tt.equal(aead.open(nonce, concat(aad, Uint8Array.of(0)), sealed), null, `${c.what}: aad extended`);
      if (aad.length > 0) tt.equal(aead.open(nonce, flip(aad, 0), sealed), null, `${c.what}: aad bit flipped`);
      tt.equal(aead.open(nonce, aad, sealed.subarray(0, sealed.length - 1)), null, `${c.what}: truncated`);
      tt.equal(aead.open(nonce, aad, sealed.subarray(0, 15)), null, `${c.what}: shorter than a tag`);
      tt.equal(aead.open(nonce, aad, new Uint8Array(0)), null, `${c.what}: empty`);
      const otherKey = fromHex(c.key);
      otherKey[0] ^= 0x80;
      tt.equal(p.aead(c.aead, otherKey).open(nonce, aad, sealed), null, `${c.what}: wrong key`);
    }
  });

  t.test(`${p.name}: AEAD edge cases and misuse`, async (tt) => {
    for (const name of ['AES-128-GCM', 'AES-256-GCM', 'CHACHA20-POLY1305'] as const) {
      const key = detRandom(name, name === 'AES-128-GCM' ? 16 : 32);
      const aead = p.aead(name, key);
      const nonce = detRandom('nonce', 12);
      const empty = aead.seal(nonce, new Uint8Array(0), new Uint8Array(0));
      tt.equal(empty.length, 16, `${name}: empty plaintext seals to a bare tag`);
      tt.equal(aead.open(nonce, new Uint8Array(0), empty)?.length, 0, `${name}: and opens to empty`);
      key.fill(0);
      const record = detRandom('record', 16385);
      const sealed = aead.seal(nonce, utf8('hdr'), record);
      tt.equal(hex(aead.open(nonce, utf8('hdr'), sealed) ?? new Uint8Array(0)), hex(record), `${name}: the AEAD keeps its own copy of the key`);
      tt.throws(() => p.aead(name, new Uint8Array(name === 'AES-128-GCM' ? 32 : 16)), TypeError, `${name}: wrong key length`);
      tt.throws(() => aead.seal(new Uint8Array(8), new Uint8Array(0), record), TypeError, `${name}: short nonce on seal`);
      tt.throws(() => aead.open(new Uint8Array(16), new Uint8Array(0), sealed), TypeError, `${name}: long nonce on open`);
      aead.destroy();
      tt.throws(() => aead.seal(nonce, new Uint8Array(0), record), TypeError, `${name}: seal after destroy`);
      tt.throws(() => aead.open(nonce, new Uint8Array(0), sealed), TypeError, `${name}: open after destroy`);
    }
    tt.throws(() => p.aead('AES-192-GCM' as AeadName, new Uint8Array(24)), TypeError, 'unknown AEAD');
    tt.throws(() => p.hash('SHA-1' as HashName), TypeError, 'unknown hash');
  });

  t.test(`${p.name}: x25519 (RFC 7748, RFC 8448)`, async (tt) => {
    const g = p.group('x25519')!;
    tt.equal(g.name, 'x25519');
    tt.equal(g.randomLength, 32);
    const alice = g.start(fromHex(X25519_ALICE.priv));
    tt.equal(alice.group, 'x25519');
    tt.equal(hex(alice.share), X25519_ALICE.pub, 'RFC 7748 §6.1 Alice public key');
    const bob = g.respond(alice.share, fromHex(X25519_BOB.priv));
    tt.equal(hex(bob.share), X25519_BOB.pub, 'RFC 7748 §6.1 Bob public key');
    tt.equal(hex(bob.sharedSecret), X25519_K, 'RFC 7748 §6.1 K (Bob)');
    tt.equal(hex(alice.complete(bob.share)), X25519_K, 'RFC 7748 §6.1 K (Alice)');
    alice.destroy();
    tt.throws(() => alice.complete(bob.share), TypeError, 'complete after destroy');

    for (const [i, v] of X25519_SCALARMULT.entries()) {
      tt.equal(hex(g.respond(fromHex(v.u), fromHex(v.scalar)).sharedSecret), v.out, `RFC 7748 §5.2 vector ${i + 1}`);
    }

    const client = g.start(fromHex(RFC8448.clientPriv));
    tt.equal(hex(client.share), RFC8448.clientPub, 'RFC 8448 §3 client key_share');
    const server = g.respond(client.share, fromHex(RFC8448.serverPriv));
    tt.equal(hex(server.share), RFC8448.serverPub, 'RFC 8448 §3 server key_share');
    tt.equal(hex(server.sharedSecret), RFC8448.shared, 'RFC 8448 §3 shared secret (server)');
    tt.equal(hex(client.complete(server.share)), RFC8448.shared, 'RFC 8448 §3 shared secret (client)');
  });

  t.test(`${p.name}: x25519 hostile shares`, async (tt) => {
    const g = p.group('x25519')!;
    const r = detRandom('x25519 hostile', 32);
    for (const u of X25519_LOW_ORDER) {
      throwsReason(tt, () => g.respond(fromHex(u), r), 'KeyExchangeZeroSecret', `respond to low-order ${u.slice(0, 8)}..${u.slice(-4)}`);
      const c = g.start(r);
      throwsReason(tt, () => c.complete(fromHex(u)), 'KeyExchangeZeroSecret', `complete with low-order ${u.slice(0, 8)}..${u.slice(-4)}`);
    }
    for (const n of [0, 1, 31, 33, 65]) {
      throwsReason(tt, () => g.respond(new Uint8Array(n).fill(9), r), 'InvalidPeerKeyShare', `respond to a ${n}-byte share`);
      throwsReason(tt, () => g.start(r).complete(new Uint8Array(n).fill(9)), 'InvalidPeerKeyShare', `complete with a ${n}-byte share`);
    }
    tt.throws(() => g.start(new Uint8Array(31)), TypeError, 'start with 31 bytes of randomness');
    tt.throws(() => g.respond(fromHex(X25519_ALICE.pub), new Uint8Array(33)), TypeError, 'respond with 33 bytes of randomness');
  });

  for (const name of ['secp256r1', 'secp384r1'] as const) {
    const field = name === 'secp256r1' ? 32 : 48;
    t.test(`${p.name}: ${name} (RFC 5903) and round trips`, async (tt) => {
      const g = p.group(name)!;
      tt.equal(g.name, name);
      tt.equal(g.randomLength, field + field / 2, 'randomLength is 1.5x the scalar length');
      const v = RFC5903[name];
      const i = g.start(seedForScalar(v.i, g.randomLength));
      tt.equal(hex(i.share), v.gi, 'RFC 5903 initiator public key (uncompressed)');
      const r = g.respond(i.share, seedForScalar(v.r, g.randomLength));
      tt.equal(hex(r.share), v.gr, 'RFC 5903 responder public key (uncompressed)');
      tt.equal(hex(r.sharedSecret), v.z, 'RFC 5903 shared x-coordinate (responder)');
      tt.equal(hex(i.complete(r.share)), v.z, 'RFC 5903 shared x-coordinate (initiator)');
      for (let k = 0; k < 3; k++) {
        const c = g.start(p.random(g.randomLength));
        tt.equal(c.share.length, 1 + 2 * field, 'share length');
        tt.equal(c.share[0], 0x04, 'uncompressed point');
        const s = g.respond(c.share, p.random(g.randomLength));
        tt.equal(s.sharedSecret.length, field, 'secret is the x-coordinate only');
        tt.equal(hex(c.complete(s.share)), hex(s.sharedSecret), `round trip ${k + 1}`);
        c.destroy();
        tt.throws(() => c.complete(s.share), TypeError, 'complete after destroy');
      }
      // Extreme seeds still map to valid scalars in [1, n-1].
      for (const fill of [0x00, 0xff]) {
        const c = g.start(new Uint8Array(g.randomLength).fill(fill));
        const s = g.respond(c.share, new Uint8Array(g.randomLength).fill(fill ^ 0xff));
        tt.equal(hex(c.complete(s.share)), hex(s.sharedSecret), `seed of all 0x${fill.toString(16)}`);
      }
      tt.throws(() => g.start(new Uint8Array(field)), TypeError, 'start with only fieldLength bytes of randomness');
    });

    t.test(`${p.name}: ${name} hostile shares`, async (tt) => {
      const g = p.group(name)!;
      const seed = detRandom(name, g.randomLength);
      const valid = fromHex(RFC5903[name].gr);
      for (const [what, share] of hostileNistShares(valid, field)) {
        throwsReason(tt, () => g.respond(share, seed), 'InvalidPeerKeyShare', `respond: ${what}`);
        throwsReason(tt, () => g.start(seed).complete(share), 'InvalidPeerKeyShare', `complete: ${what}`);
      }
      // The client's own valid share is accepted (sanity check of the builder above).
      tt.equal(g.respond(valid, seed).sharedSecret.length, field, 'the unmodified share is accepted');
    });
  }

  t.test(`${p.name}: group table and randomness`, async (tt) => {
    for (const g of ['X25519MLKEM768', 'SecP256r1MLKEM768', 'SecP384r1MLKEM1024', 'ffdhe2048', 'ffdhe3072', 'ffdhe4096', 'ffdhe6144', 'ffdhe8192'] as const) {
      tt.equal(p.group(g)?.name, g, `${g} is offered`);
    }
    tt.equal(p.group('x448' as GroupName), undefined, 'unknown group');
    tt.equal(p.group('constructor' as GroupName), undefined, 'an Object.prototype name is not a group');
    const a = p.random(32);
    const b = p.random(32);
    tt.equal(a.length, 32);
    tt.not(hex(a), hex(b), 'two random draws differ');
    tt.equal(p.random(0).length, 0);
  });
}

// ---------------------------------------------------------------------------------------------------
// Across providers: same randomness -> same bytes; each client completes against each server.

/** Every group, the large ffdhe ones aside (slow with BigInt; test/crypto-hybrid-ffdhe.test.ts covers them once). */
const ALL_GROUPS = ['x25519', 'secp256r1', 'secp384r1', 'X25519MLKEM768', 'SecP256r1MLKEM768', 'SecP384r1MLKEM1024', 'ffdhe2048', 'ffdhe3072'] as const;

t.test('providers agree byte for byte', async (tt) => {
  const [a, b] = PROVIDERS;
  for (const name of ALL_GROUPS) {
    const ga = a.group(name)!;
    const gb = b.group(name)!;
    tt.equal(ga.randomLength, gb.randomLength, `${name}: same randomLength`);
    for (let k = 0; k < 3; k++) {
      const rc = detRandom(`${name} client ${k}`, ga.randomLength);
      const rs = detRandom(`${name} server ${k}`, ga.randomLength);
      const ca = ga.start(rc);
      const cb = gb.start(rc);
      tt.equal(hex(ca.share), hex(cb.share), `${name}: same client share from the same randomness`);
      const sa = ga.respond(ca.share, rs);
      const sb = gb.respond(cb.share, rs);
      tt.equal(hex(sa.share), hex(sb.share), `${name}: same server share`);
      tt.equal(hex(sa.sharedSecret), hex(sb.sharedSecret), `${name}: same secret`);
    }
  }
  for (const c of HASH_CASES.slice(0, 3)) {
    tt.equal(hex(a.hash('SHA-384').digest(c.input)), hex(b.hash('SHA-384').digest(c.input)), 'SHA-384 agrees');
  }
  const prk = detRandom('prk', 48);
  for (const n of [1, 16, 48, 49, 97, 200]) {
    tt.equal(hex(a.hkdfExpand('SHA-384', prk, utf8('info'), n)), hex(b.hkdfExpand('SHA-384', prk, utf8('info'), n)), `HKDF-Expand SHA-384 L=${n}`);
  }
  for (const name of ['AES-128-GCM', 'AES-256-GCM', 'CHACHA20-POLY1305'] as const) {
    const key = detRandom(`${name} key`, name === 'AES-128-GCM' ? 16 : 32);
    const nonce = detRandom(`${name} nonce`, 12);
    const aad = detRandom(`${name} aad`, 5);
    const pt = detRandom(`${name} pt`, 16384 + 1);
    const sa = a.aead(name, key).seal(nonce, aad, pt);
    const sb = b.aead(name, key).seal(nonce, aad, pt);
    tt.equal(hex(sa), hex(sb), `${name}: same sealed record`);
    tt.equal(hex(b.aead(name, key).open(nonce, aad, sa) ?? new Uint8Array(0)), hex(pt), `${name}: ${b.name} opens ${a.name}'s record`);
  }
});

t.test('a client of one provider completes with a server of the other', async (tt) => {
  for (const client of PROVIDERS) {
    for (const server of PROVIDERS) {
      for (const name of ALL_GROUPS) {
        const gc = client.group(name)!;
        const gs = server.group(name)!;
        const c = gc.start(client.random(gc.randomLength));
        const s = gs.respond(c.share, server.random(gs.randomLength));
        tt.equal(hex(c.complete(s.share)), hex(s.sharedSecret), `${name}: ${client.name} client, ${server.name} server`);
        c.destroy();
      }
    }
  }
});
