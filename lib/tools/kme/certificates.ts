/**
 * Certificates for the key manager simulator's mutual TLS (ETSI GS QKD 014 clause 4: the KME identifies the
 * calling SAE by its client certificate).
 *
 * `ensureKmeCertificates(dir, ...)` creates, on first use, a private CA, one server certificate per KME and
 * one client certificate per SAE whose subject CN (and, when it is a valid DNS name, subjectAltName) is the
 * SAE ID; later runs reuse the files and replace only what is missing, expired, not issued by the CA, or
 * not valid for the hosts asked for. The certificates are made by lib/tools/certificates.ts (ECDSA P-256,
 * X.509 v3 per RFC 5280, built with PKI.js).
 *
 * Files (PEM; private keys are PKCS#8, mode 0600):
 *   ca.crt, ca.key                          the simulator's CA: trust this to reach the KMEs
 *   kme-<KME_ID>.crt, kme-<KME_ID>.key      a KME's server certificate
 *   sae-<SAE_ID>.crt, sae-<SAE_ID>.key      an SAE's client certificate (give it to the TLS client/server)
 * An ID with characters outside [A-Za-z0-9._-] has them replaced by '_' and a hash of the whole ID appended
 * (`sae-alice_A+<16 hex>.crt` for "alice@A"), so that two IDs never share a file.
 */
import { createHash, X509Certificate } from 'node:crypto';
import { chmod, mkdir, readFile, writeFile } from 'node:fs/promises';
import { isIP } from 'node:net';
import { join } from 'node:path';
import { issueCertificate, makeCaCertificate, type PemPair } from '../certificates.js';

export type { PemPair };

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
  if (!ca || !usable(ca.cert, undefined, undefined)) {
    ca = await makeCaCertificate('qkd-tls KME simulator CA', days);
    await writePair(caFile, caKeyFile, ca);
    created.push(caFile);
  }
  const caCert = new X509Certificate(ca.cert);

  const ensureLeaf = async (file: string, cn: string, kind: 'server' | 'client'): Promise<PemFiles> => {
    const certFile = join(dir, `${file}.crt`);
    const keyFile = join(dir, `${file}.key`);
    const have = await readPair(certFile, keyFile);
    if (have && usable(have.cert, caCert, cn, kind === 'server' ? hosts : undefined)) return { ...have, certFile, keyFile };
    const pair = await issueCertificate(ca, cn, kind, kind === 'server' ? hosts : [cn], days);
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
export async function makeKmeCertificates(req: KmeCertificateRequest): Promise<KmeCertificateSet> {
  const days = req.validityDays ?? 825;
  const hosts = [...new Set(['localhost', '127.0.0.1', '::1', ...(req.hosts ?? [])])];
  const ca = await makeCaCertificate('qkd-tls KME simulator CA', days);
  const kmes: Record<string, PemFiles> = {};
  for (const id of req.kmeIds) kmes[id] = await issueCertificate(ca, id, 'server', hosts, days);
  const saes: Record<string, PemFiles> = {};
  for (const id of req.saeIds) saes[id] = await issueCertificate(ca, id, 'client', [id], days);
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

/**
 * The file name part for an ID, one-to-one: a file-safe ID as it is, any other with its unsafe characters
 * replaced and a hash of the ID appended after '+' (a character no file-safe ID has). Replacing alone made
 * "alice@A" and "alice_A" share sae-alice_A.crt, so one SAE was handed the other's certificate (its identity,
 * ETSI GS QKD 014 clause 4) and could fetch the other's keys.
 */
function fileSafe(id: string): string {
  if (/^[A-Za-z0-9._-]+$/.test(id)) return id;
  const digest = createHash('sha256').update(id, 'utf8').digest('hex').slice(0, 16);
  return `${id.replace(/[^A-Za-z0-9._-]/g, '_')}+${digest}`;
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

/**
 * Parses, is within its validity, was issued by `ca` (if given), names `name` (if given: the CN is the KME or
 * SAE ID, ETSI GS QKD 014 clause 4, so a file that names another is never reused) and covers `hosts` (if given).
 */
function usable(pem: string, ca: X509Certificate | undefined, name: string | undefined, hosts?: string[]): boolean {
  let cert: X509Certificate;
  try {
    cert = new X509Certificate(pem);
  } catch {
    return false;
  }
  const now = Date.now();
  if (Date.parse(cert.validFrom) > now || Date.parse(cert.validTo) < now + 24 * 3600 * 1000) return false;
  if (ca && (!cert.checkIssued(ca) || !cert.verify(ca.publicKey))) return false;
  if (name !== undefined && saeIdFromCertificate(cert.toLegacyObject()) !== name) return false;
  for (const h of hosts ?? []) {
    if (isIP(h) ? cert.checkIP(h) === undefined : cert.checkHost(h) === undefined) return false;
  }
  return true;
}
