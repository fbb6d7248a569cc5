/**
 * tlsfuzzer (github.com/tlsfuzzer/tlsfuzzer) against `qkd-tls server`: its TLS 1.3 scripts that run with an
 * external PSK — test-tls13-psk_ke.py and test-tls13-psk_dhe_ke.py (`--psk HEX --psk-iden ID`), each once with
 * a SHA-256 PSK and once with a SHA-384 one (`--psk-sha384`). Every other TLS 1.3 script of tlsfuzzer expects
 * a certificate-authenticated server, which qkd-tls (external PSKs only) is not.
 *
 * tlsfuzzer is vendored, pinned and unmodified, outside this repository (`../shared/vendor`, or the folder in
 * the environment variable TLSFUZZER_VENDOR); it runs under Debian's /usr/bin/python3 with python3-ecdsa.
 * Each script prints `PASS: N` / `FAIL: N` and the names of the failed conversations; the test holds those.
 */
import { join } from 'node:path';
import t from 'tap';
import { findVendor, missingPython } from './helpers/peers.js';
import { parseSummary, runTlsfuzzerScript, startPskServer } from './helpers/tlsfuzzer.js';

/** Where the vendored tlsfuzzer and tlslite-ng live. */
const VENDOR = findVendor(join('tlsfuzzer', 'scripts', 'test-tls13-psk_ke.py'));
/** Bound on one script run (each takes a few seconds). */
const SCRIPT_MS = 120_000;

const PSK_SHA256 = '000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f';
const PSK_SHA384 = '000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f202122232425262728292a2b2c2d2e2f';
const IDENTITY = 'client1';

const skip = missingPython(t, 'tlsfuzzer', VENDOR ? [join(VENDOR, 'tlsfuzzer'), join(VENDOR, 'tlslite-ng')] : undefined, ['ecdsa', 'tlsfuzzer', 'tlslite']);

for (const script of ['test-tls13-psk_ke.py', 'test-tls13-psk_dhe_ke.py']) {
  for (const hash of ['SHA-256', 'SHA-384'] as const) {
    t.test(`${script} with a ${hash} PSK`, { timeout: SCRIPT_MS + 30_000, skip }, async (tt) => {
      const psk = hash === 'SHA-256' ? PSK_SHA256 : PSK_SHA384;
      const port = await startPskServer(tt, psk, IDENTITY, hash);
      const args = ['-h', '127.0.0.1', '-p', String(port), '--psk', psk, '--psk-iden', IDENTITY];
      if (hash === 'SHA-384') args.push('--psk-sha384');
      const run = await runTlsfuzzerScript(VENDOR!, join(VENDOR!, 'tlsfuzzer', 'scripts', script), args, SCRIPT_MS);
      const summary = parseSummary(run.output);
      tt.ok(summary, 'the script printed its summary', { output: run.output.slice(-3000) });
      if (!summary) return;
      tt.ok(summary.pass > 0, `${summary.pass} conversations passed`);
      // Every conversation passes, ffdhe2048's in test-tls13-psk_dhe_ke.py included (RFC 7919 groups).
      tt.same(summary.failed, [], 'no conversation failed', { output: run.output.slice(-3000) });
      tt.equal(summary.fail, 0, 'FAIL count');
      tt.equal(summary.total, summary.pass + summary.fail + summary.skip + summary.xfail + summary.xpass, 'the counts add up');
      tt.equal(run.code, 0, 'the script exits 0');
    });
  }
}
