/**
 * The tools' certificates (lib/tools/certificates.ts): the KME simulator's CA, KME server and SAE client
 * certificates, and the benchmark's self-signed one, are accepted by `openssl verify -x509_strict` for their
 * purpose, carry the names the simulator and its clients check, and are reused from disk when still good.
 */
import { execFileSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { selfSignedCertificate } from '../lib/tools/certificates.js';
import { ensureKmeCertificates, makeKmeCertificates } from '../lib/tools/kme/certificates.js';
import { missingPrograms } from './helpers/peers.js';

const skip = missingPrograms(t, 'openssl');

/** `openssl verify -x509_strict` of `cert` against `ca`, for `purpose`; returns its output. */
function opensslVerify(caFile: string, certFile: string, purpose: 'sslserver' | 'sslclient'): string {
  return execFileSync('openssl', ['verify', '-x509_strict', '-purpose', purpose, '-CAfile', caFile, certFile], { encoding: 'utf8', timeout: 10_000 });
}

t.test('openssl verify -x509_strict accepts the KME, SAE and self-signed certificates for their purpose', { skip }, async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'qkd-tls-certs-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const set = await makeKmeCertificates({ kmeIds: ['KME-A'], saeIds: ['client-sae', 'an SAE id with spaces'], hosts: ['kme.example', '2001:db8::7'] });
  const caFile = join(dir, 'ca.crt');
  await writeFile(caFile, set.ca);
  const files: [string, string, 'sslserver' | 'sslclient'][] = [
    ['kme.crt', set.kmes['KME-A'].cert, 'sslserver'],
    ['sae.crt', set.saes['client-sae'].cert, 'sslclient'],
    ['sae2.crt', set.saes['an SAE id with spaces'].cert, 'sslclient'],
  ];
  for (const [name, pem, purpose] of files) {
    await writeFile(join(dir, name), pem);
    t.match(opensslVerify(caFile, join(dir, name), purpose), /: OK\n/, `${name} verifies for ${purpose}`);
  }
  t.throws(() => opensslVerify(caFile, join(dir, 'sae.crt'), 'sslserver'), 'an SAE client certificate is not a server certificate');

  const bench = await selfSignedCertificate('qkd-tls bench', ['localhost', '127.0.0.1'], 2);
  await writeFile(join(dir, 'self.crt'), bench.cert);
  t.match(opensslVerify(join(dir, 'self.crt'), join(dir, 'self.crt'), 'sslserver'), /: OK\n/, 'the self-signed certificate verifies as its own anchor');
});

t.test('the certificates name what the simulator and its clients check', async (t) => {
  const set = await makeKmeCertificates({ kmeIds: ['KME-A'], saeIds: ['client-sae'], hosts: ['kme.example', '2001:db8::7'] });
  const ca = new X509Certificate(set.ca);
  const kme = new X509Certificate(set.kmes['KME-A'].cert);
  const sae = new X509Certificate(set.saes['client-sae'].cert);
  t.ok(ca.ca, 'the CA is a CA');
  t.notOk(kme.ca, 'a KME certificate is not a CA');
  t.ok(kme.checkIssued(ca) && kme.verify(ca.publicKey), 'the KME certificate is issued and signed by the CA');
  t.ok(sae.checkIssued(ca) && sae.verify(ca.publicKey), 'the SAE certificate is issued and signed by the CA');
  t.equal(kme.subject, 'O=qkd-tls simulator\nCN=KME-A', 'one attribute per RDN, CN last');
  for (const host of ['localhost', 'kme.example']) t.equal(kme.checkHost(host), host, `KME certificate valid for ${host}`);
  for (const ip of ['127.0.0.1', '::1', '2001:db8::7']) t.equal(kme.checkIP(ip), ip, `KME certificate valid for ${ip}`);
  t.equal(sae.subject, 'O=qkd-tls simulator\nCN=client-sae', 'the SAE ID is the subject CN');
  t.match(sae.keyUsage ?? [], ['1.3.6.1.5.5.7.3.2'], 'clientAuth');
  t.match(kme.keyUsage ?? [], ['1.3.6.1.5.5.7.3.1'], 'serverAuth');
  t.match(set.saes['client-sae'].key, /^-----BEGIN PRIVATE KEY-----\n/, 'the private key is PKCS#8 PEM');
});

t.test('ensureKmeCertificates makes the set once and then reuses it', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'qkd-tls-certs-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const req = { kmeIds: ['KME-A'], saeIds: ['client-sae'] };
  const first = await ensureKmeCertificates(dir, req);
  t.same(first.created.map((f) => f.slice(dir.length + 1)).sort(), ['ca.crt', 'kme-KME-A.crt', 'sae-client-sae.crt'], 'CA, KME and SAE certificates made');
  const second = await ensureKmeCertificates(dir, req);
  t.same(second.created, [], 'nothing made the second time');
  t.equal(second.ca, await readFile(join(dir, 'ca.crt'), 'utf8'), 'the CA is read from disk');
  const wider = await ensureKmeCertificates(dir, { ...req, hosts: ['kme.example'] });
  t.same(wider.created.map((f) => f.slice(dir.length + 1)), ['kme-KME-A.crt'], 'a KME certificate not valid for a new host is remade, under the same CA');
  t.equal(wider.ca, first.ca, 'the CA is kept');
});
