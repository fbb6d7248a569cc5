/**
 * Findings of the adversarial review of the QKD key path (the ETSI GS QKD 014 clients, the key sources, the RFC 9258
 * import), each shown against the code before its fix:
 *  - a `ca` for the KME that holds no certificate was taken without a word: an empty one (an empty --kme-ca file)
 *    as no ca at all, so the KME was checked against Node's public CAs instead of the CA named, anything else as an
 *    empty trust store (every request then failed as "self-signed certificate in certificate chain").
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { Etsi014Client } from '../lib/qkd/etsi014-client.js';
import { makeKmeCertificates } from '../lib/tools/kme/certificates.js';
import { startKmeSimulator } from '../lib/tools/kme/simulator.js';
import { runQkdTls } from './helpers/peers.js';

t.test('Etsi014Client refuses a ca that holds no certificate, rather than trust other CAs or none', async (t) => {
  const certs = await makeKmeCertificates({ kmeIds: ['KME-A', 'KME-B'], saeIds: ['client-sae', 'server-sae'] });
  const sae = certs.saes['client-sae'];
  const make = (ca: string | Buffer | (string | Buffer)[]) => new Etsi014Client({ baseUrl: 'https://127.0.0.1:9', ca, cert: sae.cert, key: sae.key });
  // Node's own behaviour, the reason for the check: '' counts as no ca (the public CAs), the others as no CA at all.
  t.throws(() => make(''), { name: 'TypeError', message: /ca holds no PEM certificate.*it is empty.*public CAs/ }, 'an empty ca (an empty file)');
  t.throws(() => make(Buffer.alloc(0)), { name: 'TypeError', message: /ca holds no PEM certificate/ }, 'an empty Buffer');
  t.throws(() => make('not a certificate\n'), { name: 'TypeError', message: /ca holds no PEM certificate \(-----BEGIN CERTIFICATE-----\): give/ }, 'text that is no PEM');
  t.throws(() => make(sae.key), { name: 'TypeError', message: /ca holds no PEM certificate/ }, 'a private key given as the ca');
  t.throws(() => make([]), { name: 'TypeError', message: /ca is an empty list/ }, 'an empty list');
  t.throws(() => make([certs.ca, '']), { name: 'TypeError', message: /ca entry #2 holds no PEM certificate/ }, 'an empty entry in a list');
  const damaged = certs.ca.replace(/\n[A-Za-z0-9+/]{8}/, '\n!!!!!!!!');
  t.throws(() => make(damaged), { name: 'TypeError', message: /ca holds a certificate that cannot be read/ }, 'a damaged certificate');

  // The CA that issued the KME's certificate is taken, as a string, a Buffer or in a list, and works.
  const kme = await startKmeSimulator({ certificates: certs, rateBitsPerSecond: 0, initialKeyCount: 4 });
  t.teardown(() => kme.close());
  for (const ca of [certs.ca, Buffer.from(certs.ca), [certs.ca]]) {
    const c = new Etsi014Client({ baseUrl: kme.master.url, ca, cert: sae.cert, key: sae.key, retries: 0 });
    const status = await c.status('server-sae');
    c.close();
    t.equal(status.source_KME_ID, 'KME-A', `status over mutual TLS with the ca as ${Array.isArray(ca) ? 'a list' : typeof ca === 'string' ? 'a string' : 'a Buffer'}`);
  }
});

t.test('qkd-tls: an empty --kme-ca file is a usage error, not the public CAs', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'qkd-kme-ca-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const empty = join(dir, 'ca.pem');
  await writeFile(empty, '');
  const r = await runQkdTls(['client', '--connect', '127.0.0.1:9', '--kme', 'https://127.0.0.1:9', '--sae-id', 'a', '--peer-sae-id', 'b', '--kme-ca', empty], { ms: 20_000 });
  t.equal(r.code, 2, 'exit code 2');
  t.match(r.stderr, /^qkd-tls client: --kme: Etsi014Client: ca holds no PEM certificate .*it is empty/m);
  t.notMatch(r.stderr, /\n\s+at /, 'no stack trace');
});
