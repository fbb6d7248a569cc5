/**
 * tlsfuzzer's TLS 1.3 record-layer and handshake-robustness conversations, ported to external-PSK handshakes
 * (test/peers/tlsfuzzer-psk-conversations.py), against `qkd-tls server`: zero-length and padded records,
 * oversize records and messages, fragmented and coalesced handshake messages, KeyUpdate, change_cipher_spec
 * rules, empty alerts, all-zero inner plaintexts, corrupted tags, legacy and supported versions, cipher suites,
 * HelloRetryRequest and what a second ClientHello may change, unknown groups, many extensions, malformed or
 * plaintext Finished, aborted connections, fresh ServerHello randoms. tlsfuzzer's own scripts for these expect a certificate-authenticated
 * server; the port keeps their conversations and expected alerts and uses tlsfuzzer's framework, vendored,
 * pinned and unmodified (`../shared/vendor`, or TLSFUZZER_VENDOR), under Debian's /usr/bin/python3.
 *
 * Run once with a SHA-256 PSK and once with a SHA-384 one, the server allowing psk_ke and psk_dhe_ke. The
 * script prints tlsfuzzer's summary; the test holds PASS > 0 and no FAIL, naming the failed conversations.
 */
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import t from 'tap';
import { findVendor, missingPython, PYTHON, spawnQkdTls, type Tap, TEST_PEERS_DIR, withTimeout } from './helpers/peers.js';

const VENDOR = findVendor(join('tlsfuzzer', 'tlsfuzzer', 'runner.py'));
const SCRIPT = join(TEST_PEERS_DIR, 'tlsfuzzer-psk-conversations.py');
/** Bound on one script run (about 2 s when every conversation goes as expected; a hang costs a timeout). */
const SCRIPT_MS = 90_000;
const WAIT = 15_000;

const PSK_SHA256 = '000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f';
const PSK_SHA384 = '000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f202122232425262728292a2b2c2d2e2f';
const IDENTITY = 'client1';

const skip = missingPython(t, 'tlsfuzzer', VENDOR ? [join(VENDOR, 'tlsfuzzer'), join(VENDOR, 'tlslite-ng')] : undefined, ['ecdsa', 'tlsfuzzer', 'tlslite']);

for (const hash of ['SHA-256', 'SHA-384'] as const) {
  t.test(`tlsfuzzer conversations ported to a ${hash} PSK`, { timeout: SCRIPT_MS + 30_000, skip }, async (tt) => {
    const psk = hash === 'SHA-256' ? PSK_SHA256 : PSK_SHA384;
    const port = await startServer(tt, psk, hash);
    const args = ['-h', '127.0.0.1', '-p', String(port), '--psk', psk, '--psk-iden', IDENTITY];
    if (hash === 'SHA-384') args.push('--psk-sha384');
    const run = await runScript(args);
    const summary = parseSummary(run.output);
    tt.ok(summary, 'the script printed its summary', { output: run.output.slice(-3000) });
    if (!summary) return;
    tt.ok(summary.pass > 0, `${summary.pass} conversations passed`);
    tt.same(summary.failed, [], 'no conversation failed', { failed: summary.failed, output: run.output.slice(-3000) });
    tt.equal(summary.fail, 0, 'FAIL count');
    tt.equal(summary.total, summary.pass + summary.fail, 'the counts add up (every conversation ran)');
    // Each family of the port ran (a conversation dropped by mistake from the script would show here).
    for (const family of ['zero-length-data', 'record-padding', 'keyupdate', 'record-layer-limits', 'ccs', 'multiple-ccs-messages', 'empty-alert', 'legacy-version', 'version-negotiation', 'invalid-ciphers', 'nociphers', 'hrr', 'unrecognised-groups', 'large-number-of-extensions', 'finished', 'zero-content-type', 'finished-plaintext', 'unencrypted-alert', 'symetric-ciphers', 'lengths', 'keyshare-omitted', 'shuffled-extentions', 'connection-abort', 'serverhello-random', 'obsolete-curves']) {
      tt.ok(run.output.includes(`\n${family}: `), `conversations from test-tls13-${family} ran`);
    }
    tt.ok(run.output.includes('\nframing (PSK port): '), 'the framing conversations modelled on them ran');
    tt.equal(run.code, 0, 'the script exits 0');
  });
}

/** Starts `qkd-tls server` with the static PSK on a free port (psk_ke and psk_dhe_ke both allowed). */
async function startServer(tt: Tap, pskHex: string, hash: 'SHA-256' | 'SHA-384'): Promise<number> {
  const server = spawnQkdTls(tt, ['server', '--listen', '127.0.0.1:0', '--psk', pskHex, '--identity', IDENTITY, '--psk-hash', hash, '--kex-modes', 'psk_dhe_ke,psk_ke', '--json']);
  const text = await server.waitFor(/"event":"listening".*\n/, WAIT, 'stderr');
  const m = /"address":"127\.0\.0\.1:(\d+)"/.exec(text);
  if (!m) throw new Error(`no listening address in: ${text}`);
  return Number(m[1]);
}

interface ScriptRun {
  readonly code: number | null;
  readonly output: string;
}

/** Runs the conversation script to its end (killed after SCRIPT_MS). */
async function runScript(args: string[]): Promise<ScriptRun> {
  const child = spawn(PYTHON, [SCRIPT, ...args], {
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
    return { code: await withTimeout(exited, SCRIPT_MS, () => `the conversation script to finish:\n${output.slice(-2000)}`), output };
  } finally {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  }
}

interface Summary {
  readonly total: number;
  readonly pass: number;
  readonly fail: number;
  /** The names listed under "FAILED:", sorted. */
  readonly failed: string[];
}

/** Reads tlsfuzzer's closing summary (`TOTAL: N` ... `XPASS: N`, then `FAILED:` and one quoted name a line). */
function parseSummary(output: string): Summary | null {
  const count = (name: string): number | null => {
    const m = new RegExp(`^${name}: (\\d+)$`, 'm').exec(output);
    return m ? Number(m[1]) : null;
  };
  const [total, pass, fail] = ['TOTAL', 'PASS', 'FAIL'].map(count);
  if (total === null || pass === null || fail === null) return null;
  const failed: string[] = [];
  const at = output.lastIndexOf('\nFAILED:\n');
  if (at >= 0) {
    for (const line of output.slice(at + 9).split('\n')) {
      const m = /^\t(['"])(.*)\1$/.exec(line);
      if (!m) break;
      failed.push(m[2]);
    }
  }
  return { total, pass, fail, failed: failed.sort() };
}
