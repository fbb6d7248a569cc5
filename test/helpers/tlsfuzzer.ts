/**
 * What the tlsfuzzer tests share (test/tlsfuzzer.test.ts runs tlsfuzzer's own PSK scripts, test/tlsfuzzer-psk.test.ts
 * the conversations ported to PSKs): `qkd-tls server` with one static PSK, a script run under Debian's Python with
 * the vendored tlsfuzzer and tlslite-ng on its path, and the summary the script prints at its end.
 */
import { spawn } from 'node:child_process';
import { basename, join } from 'node:path';
import { PYTHON, spawnQkdTls, type Tap, withTimeout } from './peers.js';

/** How long to wait for the server to say it listens. */
const WAIT = 15_000;

/**
 * Starts `qkd-tls server` with the static PSK on a free port (psk_ke and psk_dhe_ke both allowed), plus `extraArgs`
 * (e.g. `--groups`); resolves the port.
 */
export async function startPskServer(tt: Tap, pskHex: string, identity: string, hash: 'SHA-256' | 'SHA-384', extraArgs: readonly string[] = []): Promise<number> {
  const server = spawnQkdTls(tt, ['server', '--listen', '127.0.0.1:0', '--psk', pskHex, '--identity', identity, '--psk-hash', hash, '--kex-modes', 'psk_dhe_ke,psk_ke', ...extraArgs, '--json']);
  const text = await server.waitFor(/"event":"listening".*\n/, WAIT, 'stderr');
  const m = /"address":"127\.0\.0\.1:(\d+)"/.exec(text);
  if (!m) throw new Error(`no listening address in: ${text}`);
  return Number(m[1]);
}

export interface ScriptRun {
  readonly code: number | null;
  /** stdout and stderr, as they came. */
  readonly output: string;
}

/** Runs the Python script `script` with `args` to its end, tlsfuzzer and tlslite-ng from `vendor` (killed after `ms`). */
export async function runTlsfuzzerScript(vendor: string, script: string, args: readonly string[], ms: number): Promise<ScriptRun> {
  const child = spawn(PYTHON, [script, ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, PYTHONPATH: [join(vendor, 'tlsfuzzer'), join(vendor, 'tlslite-ng')].join(':'), PYTHONDONTWRITEBYTECODE: '1' },
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
    return { code: await withTimeout(exited, ms, () => `${basename(script)} to finish:\n${output.slice(-2000)}`), output };
  } finally {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  }
}

export interface Summary {
  readonly total: number;
  readonly skip: number;
  readonly pass: number;
  readonly xfail: number;
  readonly fail: number;
  readonly xpass: number;
  /** The names listed under "FAILED:", sorted. */
  readonly failed: string[];
}

/**
 * Reads tlsfuzzer's closing summary (`TOTAL: N` ... `XPASS: N`, then `FAILED:` and one name a line, as Python's repr
 * quotes it: in single quotes, or double ones for a name with a single quote); null if a count is missing.
 */
export function parseSummary(output: string): Summary | null {
  const count = (name: string): number | null => {
    const m = new RegExp(`^${name}: (\\d+)$`, 'm').exec(output);
    return m ? Number(m[1]) : null;
  };
  const [total, skip, pass, xfail, fail, xpass] = ['TOTAL', 'SKIP', 'PASS', 'XFAIL', 'FAIL', 'XPASS'].map(count);
  if (total === null || skip === null || pass === null || xfail === null || fail === null || xpass === null) return null;
  const failed: string[] = [];
  const at = output.lastIndexOf('\nFAILED:\n');
  if (at >= 0) {
    for (const line of output.slice(at + 9).split('\n')) {
      const m = /^\t(['"])(.*)\1$/.exec(line);
      if (!m) break;
      failed.push(m[2]);
    }
  }
  return { total, skip, pass, xfail, fail, xpass, failed: failed.sort() };
}
