/**
 * X.509 v3 certificates (RFC 5280) for the tools: a private CA and the server and client certificates it
 * issues (the KME simulator's mutual TLS), and a throwaway self-signed server certificate (the benchmark's one
 * certificate handshake). Keys are ECDSA P-256 made with WebCrypto; certificates are built and signed with
 * PKI.js (`pkijs`, over `asn1js`), signed with ECDSA-SHA256, and accepted by `openssl verify -x509_strict`.
 *
 * Profile: subject `O=qkd-tls simulator, CN=<name>`; a random positive 128-bit serial; valid from an hour
 * ago (clock skew) for the given number of days. A CA has basicConstraints cA (pathLen 0, critical) and
 * keyUsage keyCertSign + cRLSign + digitalSignature (critical); a leaf has basicConstraints (critical, not a
 * CA), keyUsage digitalSignature (critical), extKeyUsage serverAuth or clientAuth, subjectAltName for the
 * names that are DNS names or IP addresses, and authorityKeyIdentifier; both have subjectKeyIdentifier
 * (RFC 5280 §4.2.1.2 method 1).
 */
import * as asn1js from 'asn1js';
import type { webcrypto } from 'node:crypto';
import { isIP } from 'node:net';
import * as pkijs from 'pkijs';

/** A certificate and its private key, PEM (the key is PKCS#8). */
export interface PemPair {
  cert: string;
  key: string;
}

/** What a leaf certificate is for: a TLS server (extKeyUsage serverAuth) or a TLS client (clientAuth). */
export type CertificateUse = 'server' | 'client';

/** A CA certificate named `cn`, self-signed. */
export async function makeCaCertificate(cn: string, days: number): Promise<PemPair> {
  const keys = await newKeyPair();
  const cert = await buildCertificate({ cn, keys, days, ca: true });
  return { cert, key: await privateKeyPem(keys.privateKey) };
}

/** A certificate for `cn` issued by `ca`, valid for `names` (DNS names and IP addresses go in subjectAltName). */
export async function issueCertificate(ca: PemPair, cn: string, use: CertificateUse, names: readonly string[], days: number): Promise<PemPair> {
  const keys = await newKeyPair();
  const caCert = pkijs.Certificate.fromBER(pemBody(ca.cert));
  const caKey = await crypto.subtle.importKey('pkcs8', pemBody(ca.key), ECDSA_P256, false, ['sign']);
  const issuer = { name: caCert.subject, key: caKey, keyId: await subjectKeyId(caCert.subjectPublicKeyInfo) };
  const cert = await buildCertificate({ cn, keys, days, use, names, issuer });
  return { cert, key: await privateKeyPem(keys.privateKey) };
}

/** A self-signed server certificate for `names` (no CA): for a peer that does not verify it. */
export async function selfSignedCertificate(cn: string, names: readonly string[], days: number): Promise<PemPair> {
  const keys = await newKeyPair();
  const cert = await buildCertificate({ cn, keys, days, use: 'server', names });
  return { cert, key: await privateKeyPem(keys.privateKey) };
}

// ---------------------------------------------------------------------------------------------------------

type CryptoKey = webcrypto.CryptoKey;
type CryptoKeyPair = webcrypto.CryptoKeyPair;

const ECDSA_P256 = { name: 'ECDSA', namedCurve: 'P-256' } as const;

const OID = {
  commonName: '2.5.4.3',
  organizationName: '2.5.4.10',
  subjectKeyIdentifier: '2.5.29.14',
  keyUsage: '2.5.29.15',
  subjectAltName: '2.5.29.17',
  basicConstraints: '2.5.29.19',
  authorityKeyIdentifier: '2.5.29.35',
  extKeyUsage: '2.5.29.37',
  serverAuth: '1.3.6.1.5.5.7.3.1',
  clientAuth: '1.3.6.1.5.5.7.3.2',
};

interface CertificateSpec {
  cn: string;
  keys: CryptoKeyPair;
  days: number;
  /** A CA certificate (self-signed) rather than a leaf. */
  ca?: boolean;
  use?: CertificateUse;
  names?: readonly string[];
  /** The issuing CA; absent: self-signed. */
  issuer?: { name: pkijs.RelativeDistinguishedNames; key: CryptoKey; keyId: ArrayBuffer };
}

async function buildCertificate(spec: CertificateSpec): Promise<string> {
  const cert = new pkijs.Certificate();
  cert.version = 2; // v3
  const serial = crypto.getRandomValues(new Uint8Array(16));
  serial[0] &= 0x7f; // positive (RFC 5280 §4.1.2.2)
  serial[0] |= 0x40; // and no leading zero byte
  cert.serialNumber = new asn1js.Integer({ valueHex: serial });
  const subject = distinguishedName(spec.cn);
  cert.subject = subject;
  cert.issuer = spec.issuer?.name ?? subject;
  const notBefore = new Date(Date.now() - 3600 * 1000); // an hour of slack for clock skew
  cert.notBefore = time(notBefore);
  cert.notAfter = time(new Date(notBefore.getTime() + spec.days * 24 * 3600 * 1000));
  await cert.subjectPublicKeyInfo.importKey(spec.keys.publicKey);
  const keyId = await subjectKeyId(cert.subjectPublicKeyInfo);

  const extensions: pkijs.Extension[] = [];
  if (spec.ca) {
    extensions.push(
      extension(OID.basicConstraints, true, new pkijs.BasicConstraints({ cA: true, pathLenConstraint: 0 })),
      extension(OID.keyUsage, true, new asn1js.BitString({ valueHex: Uint8Array.of(0x86), unusedBits: 1 })), // digitalSignature, keyCertSign, cRLSign
    );
  } else {
    const altNames = (spec.names ?? []).flatMap(generalName);
    extensions.push(
      extension(OID.basicConstraints, true, new pkijs.BasicConstraints({})),
      extension(OID.keyUsage, true, new asn1js.BitString({ valueHex: Uint8Array.of(0x80), unusedBits: 7 })), // digitalSignature
      extension(OID.extKeyUsage, false, new pkijs.ExtKeyUsage({ keyPurposes: [spec.use === 'client' ? OID.clientAuth : OID.serverAuth] })),
    );
    if (altNames.length > 0) extensions.push(extension(OID.subjectAltName, false, new pkijs.GeneralNames({ names: altNames })));
  }
  extensions.push(extension(OID.subjectKeyIdentifier, false, new asn1js.OctetString({ valueHex: keyId })));
  if (spec.issuer) {
    const aki = new pkijs.AuthorityKeyIdentifier({ keyIdentifier: new asn1js.OctetString({ valueHex: spec.issuer.keyId }) });
    extensions.push(extension(OID.authorityKeyIdentifier, false, aki));
  }
  cert.extensions = extensions;

  await cert.sign(spec.issuer?.key ?? spec.keys.privateKey, 'SHA-256');
  return pem('CERTIFICATE', cert.toSchema(true).toBER(false));
}

async function newKeyPair(): Promise<CryptoKeyPair> {
  return (await crypto.subtle.generateKey(ECDSA_P256, true, ['sign', 'verify'])) as CryptoKeyPair;
}

async function privateKeyPem(key: CryptoKey): Promise<string> {
  return pem('PRIVATE KEY', await crypto.subtle.exportKey('pkcs8', key));
}

/**
 * Name: O=qkd-tls simulator, CN=<cn> (UTF8String), one attribute per RDN. Built as DER and parsed, because PKI.js
 * puts the attributes of a name it builds in a single (multi-valued) RDN.
 */
function distinguishedName(cn: string): pkijs.RelativeDistinguishedNames {
  const rdn = (type: string, value: string) => new asn1js.Set({ value: [new pkijs.AttributeTypeAndValue({ type, value: new asn1js.Utf8String({ value }) }).toSchema()] });
  const name = new asn1js.Sequence({ value: [rdn(OID.organizationName, 'qkd-tls simulator'), rdn(OID.commonName, cn)] });
  return pkijs.RelativeDistinguishedNames.fromBER(name.toBER(false));
}

/** UTCTime through 2049, GeneralizedTime after (RFC 5280 §4.1.2.5). */
function time(d: Date): pkijs.Time {
  return new pkijs.Time({ type: d.getUTCFullYear() < 2050 ? pkijs.TimeType.UTCTime : pkijs.TimeType.GeneralizedTime, value: d });
}

function extension(extnID: string, critical: boolean, value: { toSchema(): asn1js.BaseBlock } | asn1js.BaseBlock): pkijs.Extension {
  const schema = value instanceof asn1js.BaseBlock ? value : value.toSchema();
  return new pkijs.Extension({ extnID, critical, extnValue: schema.toBER(false) });
}

/** GeneralName: iPAddress [7] or dNSName [2]; names that are neither are left out (they stay in the CN). */
function generalName(name: string): pkijs.GeneralName[] {
  const family = isIP(name);
  if (family === 4) return [new pkijs.GeneralName({ type: 7, value: new asn1js.OctetString({ valueHex: Uint8Array.from(name.split('.').map(Number)) }) })];
  if (family === 6) return [new pkijs.GeneralName({ type: 7, value: new asn1js.OctetString({ valueHex: ipv6Bytes(name) }) })];
  if (/^[A-Za-z0-9]([A-Za-z0-9_-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9_-]*[A-Za-z0-9])?)*$/.test(name) && name.length <= 253) {
    return [new pkijs.GeneralName({ type: 2, value: name })];
  }
  return [];
}

function ipv6Bytes(addr: string): Uint8Array {
  const [head, tail = ''] = addr.includes('::') ? addr.split('::') : [addr, undefined];
  const h = head ? head.split(':') : [];
  const t = addr.includes('::') && tail ? tail.split(':') : [];
  const groups = [...h, ...Array(8 - h.length - t.length).fill('0'), ...t];
  const out = new Uint8Array(16);
  groups.forEach((g, i) => {
    const v = parseInt(g, 16);
    out[i * 2] = v >> 8;
    out[i * 2 + 1] = v & 0xff;
  });
  return out;
}

/** RFC 5280 §4.2.1.2 method 1: SHA-1 of the subjectPublicKey BIT STRING's contents. */
async function subjectKeyId(spki: pkijs.PublicKeyInfo): Promise<ArrayBuffer> {
  return crypto.subtle.digest('SHA-1', spki.subjectPublicKey.valueBlock.valueHexView);
}

function pemBody(text: string): Uint8Array {
  return new Uint8Array(Buffer.from(text.replace(/-----[^-]+-----/g, '').replace(/\s+/g, ''), 'base64'));
}

function pem(label: string, der: ArrayBuffer): string {
  const b64 = Buffer.from(der).toString('base64').replace(/(.{64})/g, '$1\n');
  return `-----BEGIN ${label}-----\n${b64.trimEnd()}\n-----END ${label}-----\n`;
}
