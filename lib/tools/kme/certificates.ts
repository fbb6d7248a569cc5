/**
 * Certificates for the key manager simulator's mutual TLS (ETSI GS QKD 014 clause 4: the KME identifies the
 * calling SAE by its client certificate).
 *
 * `ensureKmeCertificates(dir, ...)` creates, on first use, a private CA, one server certificate per KME and
 * one client certificate per SAE whose subject CN (and, when it is a valid DNS name, subjectAltName) is the
 * SAE ID; later runs reuse the files and replace only what is missing, expired, not issued by the CA, or
 * not valid for the hosts asked for. Keys are ECDSA P-256 made by node:crypto; the certificates are X.509 v3
 * (RFC 5280) written by the small DER encoder below and signed with ECDSA-SHA256, so no dependency is needed.
 *
 * Files (PEM; private keys are PKCS#8, mode 0600):
 *   ca.crt, ca.key                          the simulator's CA: trust this to reach the KMEs
 *   kme-<KME_ID>.crt, kme-<KME_ID>.key      a KME's server certificate
 *   sae-<SAE_ID>.crt, sae-<SAE_ID>.key      an SAE's client certificate (give it to the TLS client/server)
 */
import { createHash, createPrivateKey, generateKeyPairSync, randomBytes, sign, X509Certificate, type KeyObject } from 'node:crypto';
import { chmod, mkdir, readFile, writeFile } from 'node:fs/promises';
import { isIP } from 'node:net';
import { join } from 'node:path';

/** A certificate and its private key, PEM. */
export interface PemPair {
  cert: string;
  key: string;
}

/** A PEM pair plus the files it lives in (when it came from a directory). */
export interface PemFiles extends PemPair {
  certFile?: string;
  keyFile?: string;
}

export interface KmeCertificateSet {
  /** The CA certificate, PEM: both the KMEs and the SAEs trust it. */
  ca: string;
  caFile?: string;
  /** Server certificate per KME ID. */
  kmes: Record<string, PemFiles>;
  /** Client certificate per SAE ID. */
  saes: Record<string, PemFiles>;
}

export interface KmeCertificateRequest {
  kmeIds: string[];
  saeIds: string[];
  /** Host names and IP addresses the KME server certificates must be valid for (loopback is always added). */
  hosts?: string[];
  /** Lifetime of newly made certificates in days (default 825). */
  validityDays?: number;
}

/** Loads the simulator's certificates from `dir`, creating whatever is missing or unusable. */
export async function ensureKmeCertificates(dir: string, req: KmeCertificateRequest): Promise<KmeCertificateSet & { created: string[] }> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const days = req.validityDays ?? 825;
  const hosts = [...new Set(['localhost', '127.0.0.1', '::1', ...(req.hosts ?? [])])];
  const created: string[] = [];

  const caFile = join(dir, 'ca.crt');
  const caKeyFile = join(dir, 'ca.key');
  let ca = await readPair(caFile, caKeyFile);
  if (!ca || !usable(ca.cert, undefined)) {
    ca = makeCa('qkd-tls KME simulator CA', days);
    await writePair(caFile, caKeyFile, ca);
    created.push(caFile);
  }
  const caCert = new X509Certificate(ca.cert);

  const ensureLeaf = async (file: string, cn: string, kind: 'server' | 'client'): Promise<PemFiles> => {
    const certFile = join(dir, `${file}.crt`);
    const keyFile = join(dir, `${file}.key`);
    const have = await readPair(certFile, keyFile);
    if (have && usable(have.cert, caCert, kind === 'server' ? hosts : undefined)) return { ...have, certFile, keyFile };
    const pair = makeLeaf(ca, cn, kind, kind === 'server' ? hosts : [cn], days);
    await writePair(certFile, keyFile, pair);
    created.push(certFile);
    return { ...pair, certFile, keyFile };
  };

  const kmes: Record<string, PemFiles> = {};
  for (const id of req.kmeIds) kmes[id] = await ensureLeaf(`kme-${fileSafe(id)}`, id, 'server');
  const saes: Record<string, PemFiles> = {};
  for (const id of req.saeIds) saes[id] = await ensureLeaf(`sae-${fileSafe(id)}`, id, 'client');
  return { ca: ca.cert, caFile, kmes, saes, created };
}

/** Makes the same set in memory (nothing written): for tests and throwaway runs. */
export function makeKmeCertificates(req: KmeCertificateRequest): KmeCertificateSet {
  const days = req.validityDays ?? 825;
  const hosts = [...new Set(['localhost', '127.0.0.1', '::1', ...(req.hosts ?? [])])];
  const ca = makeCa('qkd-tls KME simulator CA', days);
  const kmes: Record<string, PemFiles> = {};
  for (const id of req.kmeIds) kmes[id] = makeLeaf(ca, id, 'server', hosts, days);
  const saes: Record<string, PemFiles> = {};
  for (const id of req.saeIds) saes[id] = makeLeaf(ca, id, 'client', [id], days);
  return { ca: ca.cert, kmes, saes };
}

/**
 * The SAE ID a client certificate names: its subject CN, else its first DNS or URI subjectAltName.
 * `subject` and `subjectaltname` are as in Node's `tls.TLSSocket.getPeerCertificate()`.
 */
export function saeIdFromCertificate(peer: { subject?: Partial<Record<string, string | string[]>>; subjectaltname?: string }): string | undefined {
  const cn = peer.subject?.CN;
  if (typeof cn === 'string' && cn !== '') return cn;
  const san = peer.subjectaltname?.split(', ').find((s) => s.startsWith('DNS:') || s.startsWith('URI:'));
  return san ? san.slice(san.indexOf(':') + 1) : undefined;
}

// ---------------------------------------------------------------------------------------------------------
// Files

function fileSafe(id: string): string {
  return id.replace(/[^A-Za-z0-9._-]/g, '_');
}

async function readPair(certFile: string, keyFile: string): Promise<PemPair | undefined> {
  try {
    return { cert: await readFile(certFile, 'utf8'), key: await readFile(keyFile, 'utf8') };
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw e;
  }
}

async function writePair(certFile: string, keyFile: string, pair: PemPair): Promise<void> {
  await writeFile(keyFile, pair.key, { mode: 0o600 });
  await chmod(keyFile, 0o600);
  await writeFile(certFile, pair.cert, { mode: 0o644 });
}

/** Parses, is within its validity, was issued by `ca` (if given) and covers `hosts` (if given). */
function usable(pem: string, ca: X509Certificate | undefined, hosts?: string[]): boolean {
  let cert: X509Certificate;
  try {
    cert = new X509Certificate(pem);
  } catch {
    return false;
  }
  const now = Date.now();
  if (Date.parse(cert.validFrom) > now || Date.parse(cert.validTo) < now + 24 * 3600 * 1000) return false;
  if (ca && (!cert.checkIssued(ca) || !cert.verify(ca.publicKey))) return false;
  for (const h of hosts ?? []) {
    if (isIP(h) ? cert.checkIP(h) === undefined : cert.checkHost(h) === undefined) return false;
  }
  return true;
}

// ---------------------------------------------------------------------------------------------------------
// Certificates (RFC 5280 §4.1)

const OID = {
  ecdsaWithSHA256: '1.2.840.10045.4.3.2',
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

interface Issuer {
  name: Uint8Array;
  key: KeyObject;
  keyId: Uint8Array;
}

function makeCa(cn: string, days: number): PemPair {
  const { publicKey, privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const spki = publicKey.export({ type: 'spki', format: 'der' });
  const name = x509Name(cn);
  const keyId = subjectKeyId(spki);
  const extensions = [
    extension(OID.basicConstraints, true, seq(boolean(true), integer(Uint8Array.of(0)))), // CA, pathLen 0
    extension(OID.keyUsage, true, keyUsageBits(0x86, 1)), // digitalSignature, keyCertSign, cRLSign
    extension(OID.subjectKeyIdentifier, false, octetString(keyId)),
  ];
  const cert = buildCertificate({ name, key: privateKey, keyId }, name, spki, extensions, days);
  return { cert, key: privateKey.export({ type: 'pkcs8', format: 'pem' }) as string };
}

function makeLeaf(caPair: PemPair, cn: string, kind: 'server' | 'client', names: string[], days: number): PemFiles {
  const caCert = new X509Certificate(caPair.cert);
  const caKey = caCert.publicKey.export({ type: 'spki', format: 'der' });
  const issuer: Issuer = { name: new Uint8Array(caCert.raw.subarray(...subjectRange(caCert.raw))), key: createPrivateKey(caPair.key), keyId: subjectKeyId(caKey) };
  const { publicKey, privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const spki = publicKey.export({ type: 'spki', format: 'der' });
  const altNames = names.flatMap((n) => generalName(n));
  const extensions = [
    extension(OID.basicConstraints, true, seq()),
    extension(OID.keyUsage, true, keyUsageBits(0x80, 7)), // digitalSignature
    extension(OID.extKeyUsage, false, seq(oid(kind === 'server' ? OID.serverAuth : OID.clientAuth))),
    extension(OID.subjectKeyIdentifier, false, octetString(subjectKeyId(spki))),
    extension(OID.authorityKeyIdentifier, false, seq(tlv(0x80, issuer.keyId))),
  ];
  if (altNames.length > 0) extensions.push(extension(OID.subjectAltName, false, seq(...altNames)));
  const cert = buildCertificate(issuer, x509Name(cn), spki, extensions, days);
  return { cert, key: privateKey.export({ type: 'pkcs8', format: 'pem' }) as string };
}

function buildCertificate(issuer: Issuer, subject: Uint8Array, spki: Uint8Array, extensions: Uint8Array[], days: number): string {
  const notBefore = new Date(Date.now() - 3600 * 1000); // an hour of slack for clock skew
  const notAfter = new Date(notBefore.getTime() + days * 24 * 3600 * 1000);
  const serial = randomBytes(16);
  serial[0] &= 0x7f; // positive (RFC 5280 §4.1.2.2)
  serial[0] |= 0x40; // and no leading zero byte
  const algorithm = seq(oid(OID.ecdsaWithSHA256)); // parameters absent (RFC 5758 §3.2)
  const tbs = seq(
    tlv(0xa0, integer(Uint8Array.of(2))), // version v3
    integer(serial),
    algorithm,
    issuer.name,
    seq(time(notBefore), time(notAfter)),
    subject,
    spki,
    tlv(0xa3, seq(...extensions)),
  );
  const signature = sign('sha256', tbs, { key: issuer.key, dsaEncoding: 'der' });
  const der = seq(tbs, algorithm, bitString(signature));
  const b64 = Buffer.from(der).toString('base64').replace(/(.{64})/g, '$1\n');
  return `-----BEGIN CERTIFICATE-----\n${b64.trimEnd()}\n-----END CERTIFICATE-----\n`;
}

/** Name ::= SEQUENCE OF RDN; here O=qkd-tls simulator, CN=<cn>. */
function x509Name(cn: string): Uint8Array {
  const rdn = (type: string, value: string) => tlv(0x31, seq(oid(type), tlv(0x0c, new TextEncoder().encode(value))));
  return seq(rdn(OID.organizationName, 'qkd-tls simulator'), rdn(OID.commonName, cn));
}

/** GeneralName: iPAddress [7] or dNSName [2]; names that are neither get only the CN. */
function generalName(name: string): Uint8Array[] {
  const family = isIP(name);
  if (family === 4) return [tlv(0x87, Uint8Array.from(name.split('.').map(Number)))];
  if (family === 6) return [tlv(0x87, ipv6Bytes(name))];
  if (/^[A-Za-z0-9]([A-Za-z0-9_-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9_-]*[A-Za-z0-9])?)*$/.test(name) && name.length <= 253) {
    return [tlv(0x82, new TextEncoder().encode(name))];
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

/** RFC 5280 §4.2.1.2 method 1: SHA-1 of the subjectPublicKey BIT STRING contents. */
function subjectKeyId(spki: Uint8Array): Uint8Array {
  // SubjectPublicKeyInfo ::= SEQUENCE { algorithm, BIT STRING }: the BIT STRING is the last element.
  const inner = contents(spki, 0);
  const algoEnd = inner.start + elementLength(spki, inner.start);
  const bits = contents(spki, algoEnd);
  return new Uint8Array(createHash('sha1').update(spki.subarray(bits.start + 1, bits.end)).digest());
}

/** The byte range of the subject Name inside a DER certificate (the 6th field of the TBSCertificate). */
function subjectRange(der: Uint8Array): [number, number] {
  const tbs = contents(der, 0);
  let at = contents(der, tbs.start).start; // first TBS field
  // version [0], serialNumber, signature, issuer, validity, subject
  for (let i = 0; i < 5; i++) at += elementLength(der, at);
  return [at, at + elementLength(der, at)];
}

// ---------------------------------------------------------------------------------------------------------
// DER (X.690) encoding and the little decoding needed to find fields

function tlv(tag: number, value: Uint8Array): Uint8Array {
  const n = value.length;
  let len: number[];
  if (n < 0x80) len = [n];
  else if (n < 0x100) len = [0x81, n];
  else if (n < 0x10000) len = [0x82, n >> 8, n & 0xff];
  else len = [0x83, n >> 16, (n >> 8) & 0xff, n & 0xff];
  const out = new Uint8Array(1 + len.length + n);
  out[0] = tag;
  out.set(len, 1);
  out.set(value, 1 + len.length);
  return out;
}

function seq(...items: Uint8Array[]): Uint8Array {
  return tlv(0x30, Buffer.concat(items));
}

function integer(bytes: Uint8Array): Uint8Array {
  return tlv(0x02, bytes);
}

function boolean(v: boolean): Uint8Array {
  return tlv(0x01, Uint8Array.of(v ? 0xff : 0));
}

function octetString(v: Uint8Array): Uint8Array {
  return tlv(0x04, v);
}

function bitString(v: Uint8Array, unusedBits = 0): Uint8Array {
  return tlv(0x03, Buffer.concat([Uint8Array.of(unusedBits), v]));
}

/** KeyUsage BIT STRING of one byte (bit 0 is the most significant), DER: trailing zero bits unused. */
function keyUsageBits(byte: number, unusedBits: number): Uint8Array {
  return bitString(Uint8Array.of(byte), unusedBits);
}

function oid(dotted: string): Uint8Array {
  const parts = dotted.split('.').map(Number);
  const out = [40 * parts[0] + parts[1]];
  for (const p of parts.slice(2)) {
    const chunk = [p & 0x7f];
    for (let v = p >>> 7; v > 0; v >>>= 7) chunk.unshift((v & 0x7f) | 0x80);
    out.push(...chunk);
  }
  return tlv(0x06, Uint8Array.from(out));
}

/** UTCTime through 2049, GeneralizedTime after (RFC 5280 §4.1.2.5). */
function time(d: Date): Uint8Array {
  const iso = d.toISOString().replace(/[-:T]/g, '').slice(0, 14) + 'Z'; // YYYYMMDDHHMMSSZ
  return d.getUTCFullYear() < 2050 ? tlv(0x17, new TextEncoder().encode(iso.slice(2))) : tlv(0x18, new TextEncoder().encode(iso));
}

function extension(id: string, critical: boolean, value: Uint8Array): Uint8Array {
  return critical ? seq(oid(id), boolean(true), octetString(value)) : seq(oid(id), octetString(value));
}

/** Where the contents of the DER element at `at` start and end. */
function contents(der: Uint8Array, at: number): { start: number; end: number } {
  const first = der[at + 1];
  if (first < 0x80) return { start: at + 2, end: at + 2 + first };
  const n = first & 0x7f;
  let len = 0;
  for (let i = 0; i < n; i++) len = len * 256 + der[at + 2 + i];
  return { start: at + 2 + n, end: at + 2 + n + len };
}

function elementLength(der: Uint8Array, at: number): number {
  return contents(der, at).end - at;
}
