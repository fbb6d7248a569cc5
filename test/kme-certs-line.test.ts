/**
 * `qkd-tls kme` without --insecure-http makes its certificates on first start and says how many: it said
 * "5 file(s) created" for five certificates and their five keys, ten files (found in a README walkthrough).
 */
import { readdirSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { spawnQkdTls } from './helpers/peers.js';
import { WAIT } from './helpers/runtimes.js';

t.test('the kme names the certificates it made, and each has its key', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'qkd-tls-kme-certs-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const kme = spawnQkdTls(t, ['kme', '--listen', '127.0.0.1:0', '--certs', dir]);
  const out = await kme.waitFor(/mutual TLS: certificates in .*\n/, WAIT, 'stdout');
  const files = readdirSync(dir);
  const certs = files.filter((f) => f.endsWith('.crt'));
  t.equal(files.filter((f) => f.endsWith('.key')).length, certs.length, 'a key for each certificate');
  t.match(out, new RegExp(`mutual TLS: certificates in .* \\(${certs.length} certificate\\(s\\) created, each with its key\\)`));
});
