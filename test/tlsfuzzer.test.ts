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
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import t from 'tap';
import { findVendor, missingPython, PYTHON, spawnQkdTls, type Tap, withTimeout } from './helpers/peers.js';

/** Where the vendored tlsfuzzer and tlslite-ng live. */
const VENDOR = findVendor(join('tlsfuzzer', 'scripts', 'test-tls13-psk_ke.py'));
/** Bound on one script run (each takes a few seconds). */
const SCRIPT_MS = 120_000;
const WAIT = 15_000;

const PSK_SHA256 = '000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f';
const PSK_SHA384 = '000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f202122232425262728292a2b2c2d2e2f';
const IDENTITY = 'client1';

const skip = missingPython(t, 'tlsfuzzer', VENDOR ? [join(VENDOR, 'tlsfuzzer'), join(VENDOR, 'tlslite-ng')] : undefined, ['ecdsa', 'tlsfuzzer', 'tlslite']);

for (const script of ['test-tls13-psk_ke.py', 'test-tls13-psk_dhe_ke.py']) {
  for (const hash of ['SHA-256', 'SHA-384'] as const) {
    t.test(`${script} with a ${hash} PSK`, { timeout: SCRIPT_MS + 30_000, skip }, async (tt) => {
      const psk = hash === 'SHA-256' ? PSK_SHA256 : PSK_SHA384;
      const port = await startServer(tt, psk, hash);
      const args = ['-h', '127.0.0.1', '-p', String(port), '--psk', psk, '--psk-iden', IDENTITY];
      if (hash === 'SHA-384') args.push('--psk-sha384');
      const run = await runScript(script, args);
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

/** Starts `qkd-tls server` with the static PSK on a free port (psk_ke and psk_dhe_ke both allowed). */
async function startServer(tt: Tap, pskHex: string, hash: 'SHA-256' | 'SHA-384'): Promise<number> {
  const server = spawnQkdTls(tt, [
    'server',
    '--listen',
    '127.0.0.1:0',
    '--psk',
    pskHex,
    '--identity',
    IDENTITY,
    '--psk-hash',
    hash,
    '--kex-modes',
    'psk_dhe_ke,psk_ke',
    '--json',
  ]);
  const text = await server.waitFor(/"event":"listening".*\n/, WAIT, 'stderr');
  const m = /"address":"127\.0\.0\.1:(\d+)"/.exec(text);
  if (!m) throw new Error(`no listening address in: ${text}`);
  return Number(m[1]);
}

interface ScriptRun {
  readonly code: number | null;
  readonly output: string;
}

/** Runs one tlsfuzzer script to its end (killed after SCRIPT_MS). */
async function runScript(script: string, args: string[]): Promise<ScriptRun> {
  const child = spawn(PYTHON, [join(VENDOR!, 'tlsfuzzer', 'scripts', script), ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, PYTHONPATH: [join(VENDOR!, 'tlsfuzzer'), join(VENDOR!, 'tlslite-ng')].join(':'), PYTHONDONTWRITEBYTECODE: '1' },
  });
  let output = '';
  child.stdout.on('data', (b: Buffer) => (output += b.toString('utf8')));
  child.stderr.on('data', (b: Buffer) => (output += b.toString('utf8')));
  const exited = new Promise<number | null>((resolve) => {
    child.once('close', (code) => resolve(code));
    child.once('error', (e) => {
      output += `\n[spawn error: ${e.message}]`;
      resolve(null);
    });
  });
  try {
    return { code: await withTimeout(exited, SCRIPT_MS, () => `${script} to finish:\n${output.slice(-2000)}`), output };
  } finally {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  }
}

interface Summary {
  readonly total: number;
  readonly skip: number;
  readonly pass: number;
  readonly xfail: number;
  readonly fail: number;
  readonly xpass: number;
  /** The names listed under "FAILED:", sorted. */
  readonly failed: string[];
}

/** Reads tlsfuzzer's closing summary (`TOTAL: N` ... `XPASS: N`, then `FAILED:` and one quoted name a line). */
function parseSummary(output: string): Summary | null {
  const count = (name: string): number | null => {
    const m = new RegExp(`^${name}: (\\d+)$`, 'm').exec(output);
    return m ? Number(m[1]) : null;
  };
  const [total, skipN, pass, xfail, fail, xpass] = ['TOTAL', 'SKIP', 'PASS', 'XFAIL', 'FAIL', 'XPASS'].map(count);
  if (total === null || skipN === null || pass === null || xfail === null || fail === null || xpass === null) return null;
  const failed: string[] = [];
  const at = output.lastIndexOf('\nFAILED:\n');
  if (at >= 0) {
    for (const line of output.slice(at + 9).split('\n')) {
      const m = /^\t'(.*)'$/.exec(line);
      if (!m) break;
      failed.push(m[1]);
    }
  }
  return { total, skip: skipN, pass, xfail, fail, xpass, failed: failed.sort() };
}
