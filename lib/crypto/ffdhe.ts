/**
 * The finite-field Diffie-Hellman groups of RFC 7919 (ffdhe2048 ... ffdhe8192) as TLS 1.3 uses them
 * (RFC 8446 §4.2.8.1): the rules both providers share, and the BigInt exponentiation of the noble provider.
 *
 * - A share (key_exchange) is Y = g^X mod p, "encoded as a big-endian integer and padded to the left with
 *   zeros to the size of p in bytes" (RFC 8446 §4.2.8.1); so is the shared secret Z (§7.4.1: "leading bytes
 *   of Z that contain all zero bits are not stripped").
 * - "Peers MUST validate each other's public key Y by ensuring that 1 < Y < p-1" (§4.2.8.1); RFC 7919 §5.1
 *   gives the same check (with p a safe prime, that check alone rules out the small subgroups).
 * - The private exponent is short: RFC 7919 Appendix A gives, per group, the least exponent size for its
 *   estimated strength ("at least 225 bits" for ffdhe2048, 275, 325, 375, 400). We draw that many bits,
 *   rounded up to whole bytes, and set the top bit, so every exponent has the same length (the ladder below
 *   always runs the same number of steps) and X > 1.
 *
 * The primes are RFC 7919 Appendix A's, copied from OpenSSL 3.0's built-in groups; ffdhe2048, ffdhe3072 and
 * ffdhe8192 were checked byte for byte against GnuTLS 3.7's (`certtool --get-dh-params`), and the tests
 * check the structure every RFC 7919 prime has (top and bottom 64 bits set).
 */
import { TlsError } from '../errors.js';
import type { KexSpec } from './provider.js';

export type FfdheName = 'ffdhe2048' | 'ffdhe3072' | 'ffdhe4096' | 'ffdhe6144' | 'ffdhe8192';

/** An RFC 7919 group: its prime, generator 2, and the exponent size used here. */
export interface FfdheSpec extends KexSpec {
  readonly name: FfdheName;
  readonly prime: bigint;
  /** The generator, 2 for every RFC 7919 group. */
  readonly generator: 2n;
  /** Length of p in bytes: of every share and of the shared secret. */
  readonly primeLength: number;
  /** Bits of the private exponent (RFC 7919 Appendix A's minimum, rounded up to whole bytes). */
  readonly exponentBits: number;
}

export const FFDHE_SPECS: Readonly<Record<FfdheName, FfdheSpec>> = {
  ffdhe2048: ffdhe('ffdhe2048', 225, PRIME_2048()),
  ffdhe3072: ffdhe('ffdhe3072', 275, PRIME_3072()),
  ffdhe4096: ffdhe('ffdhe4096', 325, PRIME_4096()),
  ffdhe6144: ffdhe('ffdhe6144', 375, PRIME_6144()),
  ffdhe8192: ffdhe('ffdhe8192', 400, PRIME_8192()),
};

/**
 * The private exponent X from `randomLength` uniform bytes: big-endian, top bit set (so X has exactly
 * `exponentBits` bits and is > 1). Both providers derive the same X from the same bytes.
 */
export function ffdheExponent(spec: FfdheSpec, randomness: Uint8Array): bigint {
  const top = randomness[0] | 0x80;
  let x = BigInt(top);
  for (let i = 1; i < randomness.length; i++) x = (x << 8n) | BigInt(randomness[i]);
  return x;
}

/** The same exponent as {@link ffdheExponent}, as big-endian bytes (for backends that take bytes). */
export function ffdheExponentBytes(spec: FfdheSpec, randomness: Uint8Array): Uint8Array {
  const out = Uint8Array.from(randomness);
  out[0] |= 0x80;
  return out;
}

/**
 * RFC 8446 §4.2.8.1: the peer's Y, after checking 1 < Y < p-1 (the length was checked at the provider
 * boundary). Out of range: illegal_parameter ('FfdhePublicValueOutOfRange').
 */
export function checkFfdheShare(spec: FfdheSpec, share: Uint8Array): bigint {
  const y = bytesToBigInt(share);
  if (y <= 1n || y >= spec.prime - 1n) {
    throw new TlsError('FfdhePublicValueOutOfRange', `${spec.name} key_exchange Y must satisfy 1 < Y < p-1 (RFC 8446 §4.2.8.1)`);
  }
  return y;
}

/** A shared secret Z of 1 cannot come from a valid exchange (with 1 < Y < p-1 and p safe, it never does); refused anyway. */
export function checkFfdheSecret(spec: FfdheSpec, z: Uint8Array): void {
  let high = 0;
  for (let i = 0; i < z.length - 1; i++) high |= z[i];
  if (high === 0 && z[z.length - 1] <= 1) {
    throw new TlsError('FfdhePublicValueOutOfRange', `${spec.name} shared secret is ${z[z.length - 1]} (invalid peer value)`);
  }
}

/**
 * base^exp mod p by a Montgomery ladder over exactly `bits` bits of `exp`: every step does one multiplication
 * and one squaring, whatever the bit, and the bit selects operands by masking rather than branching.
 * "Constant-time-minded" only: JavaScript BigInt arithmetic itself takes time that depends on the values, so
 * this removes the gross leak (the exponent's bit pattern in the sequence of operations), not every leak.
 * The native `node` provider uses OpenSSL's constant-time exponentiation instead.
 */
export function modPowLadder(base: bigint, exp: bigint, p: bigint, bits: number): bigint {
  let r0 = 1n;
  let r1 = base % p;
  for (let i = bits - 1; i >= 0; i--) {
    const mask = -((exp >> BigInt(i)) & 1n); // 0n or -1n (all ones)
    // Conditional swap: when the bit is 1, (r0, r1) = (r1, r0).
    let d = (r0 ^ r1) & mask;
    r0 ^= d;
    r1 ^= d;
    r1 = (r0 * r1) % p;
    r0 = (r0 * r0) % p;
    d = (r0 ^ r1) & mask;
    r0 ^= d;
    r1 ^= d;
  }
  return r0;
}

/** Big-endian bytes to a non-negative BigInt. */
export function bytesToBigInt(b: Uint8Array): bigint {
  let hex = '';
  for (let i = 0; i < b.length; i++) hex += HEX[b[i]];
  return hex.length === 0 ? 0n : BigInt('0x' + hex);
}

/** A non-negative BigInt as exactly `length` big-endian bytes, left-padded with zeros (RFC 8446 §4.2.8.1). */
export function bigIntToBytes(n: bigint, length: number): Uint8Array {
  const hex = n.toString(16);
  if (hex.length > length * 2) throw new RangeError(`value does not fit in ${length} bytes`);
  const padded = hex.padStart(length * 2, '0');
  const out = new Uint8Array(length);
  for (let i = 0; i < length; i++) out[i] = parseInt(padded.slice(2 * i, 2 * i + 2), 16);
  return out;
}

/** Left-pads `b` with zeros to `length` bytes (a backend may drop leading zero bytes of Y or Z). */
export function leftPad(b: Uint8Array, length: number): Uint8Array {
  if (b.length === length) return b;
  if (b.length > length) throw new RangeError(`value of ${b.length} bytes does not fit in ${length}`);
  const out = new Uint8Array(length);
  out.set(b, length - b.length);
  return out;
}

const HEX = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, '0'));

function ffdhe(name: FfdheName, minExponentBits: number, primeHex: string): FfdheSpec {
  const primeLength = primeHex.length / 2;
  const randomLength = Math.ceil(minExponentBits / 8);
  return {
    name,
    prime: BigInt('0x' + primeHex),
    generator: 2n,
    primeLength,
    exponentBits: randomLength * 8,
    randomLength,
    clientShareLength: primeLength,
    serverShareLength: primeLength,
    secretLength: primeLength,
  };
}

// RFC 7919 Appendix A primes (p = 2^b - 2^{b-64} + {[2^{b-130} e] + X} * 2^64 - 1), hexadecimal, big-endian.

function PRIME_2048(): string {
  return (
    'FFFFFFFFFFFFFFFFADF85458A2BB4A9AAFDC5620273D3CF1D8B9C583CE2D3695A9E13641146433FBCC939DCE249B3EF9' +
    '7D2FE363630C75D8F681B202AEC4617AD3DF1ED5D5FD65612433F51F5F066ED0856365553DED1AF3B557135E7F57C935' +
    '984F0C70E0E68B77E2A689DAF3EFE8721DF158A136ADE73530ACCA4F483A797ABC0AB182B324FB61D108A94BB2C8E3FB' +
    'B96ADAB760D7F4681D4F42A3DE394DF4AE56EDE76372BB190B07A7C8EE0A6D709E02FCE1CDF7E2ECC03404CD28342F61' +
    '9172FE9CE98583FF8E4F1232EEF28183C3FE3B1B4C6FAD733BB5FCBC2EC22005C58EF1837D1683B2C6F34A26C1B2EFFA' +
    '886B423861285C97FFFFFFFFFFFFFFFF'
  );
}

function PRIME_3072(): string {
  return (
    'FFFFFFFFFFFFFFFFADF85458A2BB4A9AAFDC5620273D3CF1D8B9C583CE2D3695A9E13641146433FBCC939DCE249B3EF9' +
    '7D2FE363630C75D8F681B202AEC4617AD3DF1ED5D5FD65612433F51F5F066ED0856365553DED1AF3B557135E7F57C935' +
    '984F0C70E0E68B77E2A689DAF3EFE8721DF158A136ADE73530ACCA4F483A797ABC0AB182B324FB61D108A94BB2C8E3FB' +
    'B96ADAB760D7F4681D4F42A3DE394DF4AE56EDE76372BB190B07A7C8EE0A6D709E02FCE1CDF7E2ECC03404CD28342F61' +
    '9172FE9CE98583FF8E4F1232EEF28183C3FE3B1B4C6FAD733BB5FCBC2EC22005C58EF1837D1683B2C6F34A26C1B2EFFA' +
    '886B4238611FCFDCDE355B3B6519035BBC34F4DEF99C023861B46FC9D6E6C9077AD91D2691F7F7EE598CB0FAC186D91C' +
    'AEFE130985139270B4130C93BC437944F4FD4452E2D74DD364F2E21E71F54BFF5CAE82AB9C9DF69EE86D2BC522363A0D' +
    'ABC521979B0DEADA1DBF9A42D5C4484E0ABCD06BFA53DDEF3C1B20EE3FD59D7C25E41D2B66C62E37FFFFFFFFFFFFFFFF'
  );
}

function PRIME_4096(): string {
  return (
    'FFFFFFFFFFFFFFFFADF85458A2BB4A9AAFDC5620273D3CF1D8B9C583CE2D3695A9E13641146433FBCC939DCE249B3EF9' +
    '7D2FE363630C75D8F681B202AEC4617AD3DF1ED5D5FD65612433F51F5F066ED0856365553DED1AF3B557135E7F57C935' +
    '984F0C70E0E68B77E2A689DAF3EFE8721DF158A136ADE73530ACCA4F483A797ABC0AB182B324FB61D108A94BB2C8E3FB' +
    'B96ADAB760D7F4681D4F42A3DE394DF4AE56EDE76372BB190B07A7C8EE0A6D709E02FCE1CDF7E2ECC03404CD28342F61' +
    '9172FE9CE98583FF8E4F1232EEF28183C3FE3B1B4C6FAD733BB5FCBC2EC22005C58EF1837D1683B2C6F34A26C1B2EFFA' +
    '886B4238611FCFDCDE355B3B6519035BBC34F4DEF99C023861B46FC9D6E6C9077AD91D2691F7F7EE598CB0FAC186D91C' +
    'AEFE130985139270B4130C93BC437944F4FD4452E2D74DD364F2E21E71F54BFF5CAE82AB9C9DF69EE86D2BC522363A0D' +
    'ABC521979B0DEADA1DBF9A42D5C4484E0ABCD06BFA53DDEF3C1B20EE3FD59D7C25E41D2B669E1EF16E6F52C3164DF4FB' +
    '7930E9E4E58857B6AC7D5F42D69F6D187763CF1D5503400487F55BA57E31CC7A7135C886EFB4318AED6A1E012D9E6832' +
    'A907600A918130C46DC778F971AD0038092999A333CB8B7A1A1DB93D7140003C2A4ECEA9F98D0ACC0A8291CDCEC97DCF' +
    '8EC9B55A7F88A46B4DB5A851F44182E1C68A007E5E655F6AFFFFFFFFFFFFFFFF'
  );
}

function PRIME_6144(): string {
  return (
    'FFFFFFFFFFFFFFFFADF85458A2BB4A9AAFDC5620273D3CF1D8B9C583CE2D3695A9E13641146433FBCC939DCE249B3EF9' +
    '7D2FE363630C75D8F681B202AEC4617AD3DF1ED5D5FD65612433F51F5F066ED0856365553DED1AF3B557135E7F57C935' +
    '984F0C70E0E68B77E2A689DAF3EFE8721DF158A136ADE73530ACCA4F483A797ABC0AB182B324FB61D108A94BB2C8E3FB' +
    'B96ADAB760D7F4681D4F42A3DE394DF4AE56EDE76372BB190B07A7C8EE0A6D709E02FCE1CDF7E2ECC03404CD28342F61' +
    '9172FE9CE98583FF8E4F1232EEF28183C3FE3B1B4C6FAD733BB5FCBC2EC22005C58EF1837D1683B2C6F34A26C1B2EFFA' +
    '886B4238611FCFDCDE355B3B6519035BBC34F4DEF99C023861B46FC9D6E6C9077AD91D2691F7F7EE598CB0FAC186D91C' +
    'AEFE130985139270B4130C93BC437944F4FD4452E2D74DD364F2E21E71F54BFF5CAE82AB9C9DF69EE86D2BC522363A0D' +
    'ABC521979B0DEADA1DBF9A42D5C4484E0ABCD06BFA53DDEF3C1B20EE3FD59D7C25E41D2B669E1EF16E6F52C3164DF4FB' +
    '7930E9E4E58857B6AC7D5F42D69F6D187763CF1D5503400487F55BA57E31CC7A7135C886EFB4318AED6A1E012D9E6832' +
    'A907600A918130C46DC778F971AD0038092999A333CB8B7A1A1DB93D7140003C2A4ECEA9F98D0ACC0A8291CDCEC97DCF' +
    '8EC9B55A7F88A46B4DB5A851F44182E1C68A007E5E0DD9020BFD64B645036C7A4E677D2C38532A3A23BA4442CAF53EA6' +
    '3BB454329B7624C8917BDD64B1C0FD4CB38E8C334C701C3ACDAD0657FCCFEC719B1F5C3E4E46041F388147FB4CFDB477' +
    'A52471F7A9A96910B855322EDB6340D8A00EF092350511E30ABEC1FFF9E3A26E7FB29F8C183023C3587E38DA0077D9B4' +
    '763E4E4B94B2BBC194C6651E77CAF992EEAAC0232A281BF6B3A739C1226116820AE8DB5847A67CBEF9C9091B462D538C' +
    'D72B03746AE77F5E62292C311562A846505DC82DB854338AE49F5235C95B91178CCF2DD5CACEF403EC9D1810C6272B04' +
    '5B3B71F9DC6B80D63FDD4A8E9ADB1E6962A69526D43161C1A41D570D7938DAD4A40E329CD0E40E65FFFFFFFFFFFFFFFF'
  );
}

function PRIME_8192(): string {
  return (
    'FFFFFFFFFFFFFFFFADF85458A2BB4A9AAFDC5620273D3CF1D8B9C583CE2D3695A9E13641146433FBCC939DCE249B3EF9' +
    '7D2FE363630C75D8F681B202AEC4617AD3DF1ED5D5FD65612433F51F5F066ED0856365553DED1AF3B557135E7F57C935' +
    '984F0C70E0E68B77E2A689DAF3EFE8721DF158A136ADE73530ACCA4F483A797ABC0AB182B324FB61D108A94BB2C8E3FB' +
    'B96ADAB760D7F4681D4F42A3DE394DF4AE56EDE76372BB190B07A7C8EE0A6D709E02FCE1CDF7E2ECC03404CD28342F61' +
    '9172FE9CE98583FF8E4F1232EEF28183C3FE3B1B4C6FAD733BB5FCBC2EC22005C58EF1837D1683B2C6F34A26C1B2EFFA' +
    '886B4238611FCFDCDE355B3B6519035BBC34F4DEF99C023861B46FC9D6E6C9077AD91D2691F7F7EE598CB0FAC186D91C' +
    'AEFE130985139270B4130C93BC437944F4FD4452E2D74DD364F2E21E71F54BFF5CAE82AB9C9DF69EE86D2BC522363A0D' +
    'ABC521979B0DEADA1DBF9A42D5C4484E0ABCD06BFA53DDEF3C1B20EE3FD59D7C25E41D2B669E1EF16E6F52C3164DF4FB' +
    '7930E9E4E58857B6AC7D5F42D69F6D187763CF1D5503400487F55BA57E31CC7A7135C886EFB4318AED6A1E012D9E6832' +
    'A907600A918130C46DC778F971AD0038092999A333CB8B7A1A1DB93D7140003C2A4ECEA9F98D0ACC0A8291CDCEC97DCF' +
    '8EC9B55A7F88A46B4DB5A851F44182E1C68A007E5E0DD9020BFD64B645036C7A4E677D2C38532A3A23BA4442CAF53EA6' +
    '3BB454329B7624C8917BDD64B1C0FD4CB38E8C334C701C3ACDAD0657FCCFEC719B1F5C3E4E46041F388147FB4CFDB477' +
    'A52471F7A9A96910B855322EDB6340D8A00EF092350511E30ABEC1FFF9E3A26E7FB29F8C183023C3587E38DA0077D9B4' +
    '763E4E4B94B2BBC194C6651E77CAF992EEAAC0232A281BF6B3A739C1226116820AE8DB5847A67CBEF9C9091B462D538C' +
    'D72B03746AE77F5E62292C311562A846505DC82DB854338AE49F5235C95B91178CCF2DD5CACEF403EC9D1810C6272B04' +
    '5B3B71F9DC6B80D63FDD4A8E9ADB1E6962A69526D43161C1A41D570D7938DAD4A40E329CCFF46AAA36AD004CF600C838' +
    '1E425A31D951AE64FDB23FCEC9509D43687FEB69EDD1CC5E0B8CC3BDF64B10EF86B63142A3AB8829555B2F747C932665' +
    'CB2C0F1CC01BD70229388839D2AF05E454504AC78B7582822846C0BA35C35F5C59160CC046FD8251541FC68C9C86B022' +
    'BB7099876A460E7451A8A93109703FEE1C217E6C3826E52C51AA691E0E423CFC99E9E31650C1217B624816CDAD9A95F9' +
    'D5B8019488D9C0A0A1FE3075A577E23183F81D4A3F2FA4571EFC8CE0BA8A4FE8B6855DFE72B0A66EDED2FBABFBE58A30' +
    'FAFABE1C5D71A87E2F741EF8C1FE86FEA6BBFDE530677F0D97D11D49F7A8443D0822E506A9F4614E011E2A94838FF88C' +
    'D68C8BB7C5C6424CFFFFFFFFFFFFFFFF'
  );
}
