/**
 * `qkd-tls bench --runtimes`: runs bench/runtime-bench.ts inside Chromium, Deno, Bun and workerd (and in this
 * Node process), and collects one JSON line per runtime and suite. The runtimes are the project's test-only
 * peers (test/peers: `npm ci --prefix test/peers`; Chromium from /usr/bin/chromium, driven by playwright-core);
 * a runtime that is not installed is reported as skipped.
 *
 * The benchmark is bundled once with esbuild (test/peers) into one ESM file that every runtime loads: Deno and
 * Bun run a small driver, workerd serves it as a module worker on 127.0.0.1 (one request per part), Chromium
 * imports it into a page served from 127.0.0.1 (a secure context, so WebCrypto is there).
 *
 * workerd advances its clock only on I/O (a Spectre mitigation; WebCrypto there completes without any), so
 * there each part is one HTTP request timed from here, the request and the part's own setup (a handshake, a key
 * import) included — a slight underestimate; the other runtimes time themselves with performance.now().
 */
import { spawn } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { untilAborted } from '../lib/abort.js';
import { nodeProvider } from '../lib/crypto/node.js';
import { BULK_PARTS, RUNTIME_PARTS, runRuntimeParts, runtimeLines, RUNTIME_SETUP, type RuntimeBenchOptions, type RuntimeMeasurement } from './runtime-bench.js';

export type RuntimeName = 'node' | 'chromium' | 'deno' | 'bun' | 'workerd';
export const RUNTIMES: readonly RuntimeName[] = ['node', 'chromium', 'deno', 'bun', 'workerd'];

export interface RuntimesRun {
  /** The JSON lines (runtime-bulk and runtime-handshakes events, and runtime-skipped for the missing ones). */
  readonly lines: Record<string, unknown>[];
}

/** The project root (this file runs as dist/bench/runtimes.js). */
const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const PEERS_BIN = join(ROOT, 'test', 'peers', 'node_modules', '.bin');
const CHROMIUM = '/usr/bin/chromium';
/** How long one runtime may take, start to end, before it is stopped and reported as failed. */
const TIMEOUT_MS = 10 * 60_000;

export async function runRuntimes(options: {
  quick: boolean;
  runtimes?: readonly RuntimeName[];
  recordsInFlight?: number;
  /** The Chromium binary (default /usr/bin/chromium). */
  chromium?: string;
  /**
   * How long each runtime may take (default 10 minutes): then its process, browser or worker is stopped and it is
   * reported as `runtime-failed` ("timed out"), and the run goes on with the next. Node runs in this process: its
   * run is given up (it cannot be stopped), not waited for.
   */
  timeoutMs?: number;
  onProgress?: (line: string) => void;
}): Promise<RuntimesRun> {
  const progress = options.onProgress ?? (() => {});
  const chromium = options.chromium ?? CHROMIUM;
  const lines: Record<string, unknown>[] = [];
  const dir = await mkdtemp(join(tmpdir(), 'qkd-tls-runtimes-'));
  try {
    let bundle: string | null = null;
    for (const runtime of options.runtimes ?? RUNTIMES) {
      const base: RuntimeBenchOptions = { runtime, quick: options.quick, recordsInFlight: options.recordsInFlight };
      const timeoutMs = options.timeoutMs ?? TIMEOUT_MS;
      const limit = new AbortController();
      const timer = setTimeout(() => limit.abort(new Error(`timed out after ${timeoutMs} ms`)), timeoutMs);
      const { signal } = limit;
      try {
        let measured: RuntimeMeasurement[];
        let opts = base;
        if (runtime === 'node') {
          // Node: the connection's own cipher is node:crypto, what a Node user gets.
          opts = { ...base, crypto: nodeProvider, cryptoName: NODE_CRYPTO };
          progress('node (in this process)');
          measured = await untilAborted(runRuntimeParts(opts), signal);
        } else {
          const missing = runtime === 'chromium' ? missingFile(chromium) ?? missingFile(join(ROOT, 'test', 'peers', 'node_modules', 'playwright-core')) : missingFile(join(PEERS_BIN, runtime));
          if (missing) {
            lines.push({ event: 'runtime-skipped', runtime, reason: `${missing} is not installed (npm ci --prefix test/peers; Debian chromium)` });
            progress(`${runtime}: skipped (${missing} not installed)`);
            continue;
          }
          progress(`${runtime}`);
          if (runtime === 'bun') {
            // Bun has node:crypto too (BoringSSL, synchronous, faster than Bun's WebCrypto: bench/README.md), so the
            // connection's own cipher there is the node provider, what a Bun user gets from qkd-tls/node (README, "Bun").
            opts = { ...base, cryptoName: NODE_CRYPTO };
            const work = async () => runDriver(join(PEERS_BIN, 'bun'), ['run'], dir, await makeNodeProviderBundle(dir, signal), base, signal);
            measured = await untilAborted(work(), signal);
          } else {
            const work = async () => {
              bundle ??= await makeBundle(dir, signal);
              return runtime === 'chromium' ? runChromium(dir, bundle, base, chromium, signal) : RUNNERS[runtime](dir, bundle, base, signal);
            };
            measured = await untilAborted(work(), signal);
          }
        }
        lines.push(...runtimeLines(opts, measured));
      } catch (e) {
        lines.push({ event: 'runtime-failed', runtime, error: (e as Error).message });
        progress(`${runtime}: failed: ${(e as Error).message}`);
      } finally {
        clearTimeout(timer);
        limit.abort(new Error('done')); // stops whatever the runtime left running (a browser, a worker, a process)
      }
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
  return { lines };
}

/** How the numbers were made, for the human-readable output. */
export const RUNTIMES_NOTE =
  `${RUNTIME_SETUP}; ceiling = raw WebCrypto AES-128-GCM, every 16 KiB record sealed and opened once, same records in flight, same run; ` +
  'no-TLS = the same transfer with no TLS at all (bench/framing-only.ts)';

/** `framingOnlyMbps` of a line, or "-" (measured for the offloaded transfer only). */
const framingOnly = (l: Record<string, unknown>): string => (typeof l.framingOnlyMbps === 'number' ? String(l.framingOnlyMbps) : '-');

/** The human-readable table of a run. */
export function formatRuntimes(run: RuntimesRun): string[] {
  const out = [`runtimes: ${RUNTIMES_NOTE}`, 'runtime    offload  cipher     MB/s    ceiling  ratio  in flight   no-TLS'];
  const target = targetLine(run);
  for (const l of run.lines) {
    if (l.event === 'runtime-bulk') {
      const ratio = (l.mbps as number) / (l.ceilingMbps as number);
      out.push(
        `${String(l.runtime).padEnd(10)} ${String(l.offload).padEnd(8)} ${String(l.cipher).padEnd(10)} ${String(l.mbps).padStart(7)} ${String(l.ceilingMbps).padStart(9)}  ${ratio.toFixed(2).padStart(5)}  ${String(l.recordsInFlight).padEnd(9)} ${framingOnly(l).padStart(7)}`,
      );
    } else if (l.event === 'runtime-handshakes') {
      out.push(`${String(l.runtime).padEnd(10)} handshakes/s (psk_dhe_ke x25519, ${l.provider}, key shares: ${l.keyShares ?? l.provider}): ${l.handshakesPerSecond}`);
    } else out.push(`${String(l.runtime).padEnd(10)} ${l.event}: ${String(l.reason ?? l.error)}`);
  }
  out.push(target);
  return out;
}

export const RUNTIMES_BEGIN = '<!-- qkd-tls bench --runtimes: begin -->';
export const RUNTIMES_END = '<!-- qkd-tls bench --runtimes: end -->';

/** The bench/RESULTS.md section of a run, between markers (so that either benchmark can rewrite its part). */
export function formatRuntimesMarkdown(run: RuntimesRun, meta: { date: string; quick: boolean; machine: string }): string {
  const rows = run.lines.filter((l) => l.event === 'runtime-bulk');
  const hs = run.lines.filter((l) => l.event === 'runtime-handshakes');
  const other = run.lines.filter((l) => l.event !== 'runtime-bulk' && l.event !== 'runtime-handshakes');
  const out = [
    RUNTIMES_BEGIN,
    '## Record offload in other runtimes (`qkd-tls bench --runtimes`)',
    '',
    `${meta.date}, ${meta.machine}, \`qkd-tls bench --runtimes${meta.quick ? ' --quick' : ''}\`. In each runtime: ${RUNTIME_SETUP}. ` +
      'MB/s of application data (10^6 bytes/s), the best of the rounds, after the ceiling and the transfers took turns unmeasured ' +
      `for ${meta.quick ? '0.5' : '2'} s (warm-up). The ceiling is the raw WebCrypto AES-128-GCM work the same transfer ` +
      'needs (each 16 KiB record sealed and opened once, `recordsInFlight` seal-then-open chains at once; twice as many measured no ' +
      'higher), measured in the same run, taking turns with the transfers. ' +
      '"offload" = AES-GCM records sealed and opened through WebCrypto by lib/transport/webcrypto-records.ts; without it the connection ' +
      'uses its own synchronous cipher (@noble/ciphers, or node:crypto in Node and Bun). "no TLS" = the offloaded transfer with none of TLS ' +
      '(bench/framing-only.ts: the same streams, the same WebCrypto calls and the same per-record copies, headers and nonces, ' +
      "no key schedule, state machine or checks): the limit of any record layer built this way in that runtime, measured in the same run.",
    '',
    '| runtime | suite | offload | cipher | records in flight | MB/s | ceiling MB/s | ratio | no TLS MB/s (ratio) |',
    '|---|---|---|---|---|---|---|---|---|',
    ...rows.map((l) => {
      const ratio = (l.mbps as number) / (l.ceilingMbps as number);
      const noTls = typeof l.framingOnlyMbps === 'number' ? `${l.framingOnlyMbps} (${((l.framingOnlyMbps as number) / (l.ceilingMbps as number)).toFixed(2)})` : '-';
      return `| ${l.runtime} | ${l.suite} | ${l.offload ? 'yes' : 'no'} | ${l.cipher} | ${l.recordsInFlight} | ${l.mbps} | ${l.ceilingMbps} | ${ratio.toFixed(2)} | ${noTls} |`;
    }),
    '',
    targetLine(run),
    '',
    'workerd advances its clock only on I/O, so its parts are timed from outside, one HTTP request each (the request and the ' +
      "part's setup included). Node and Bun run the connection on the node provider (node:crypto: OpenSSL in Node, BoringSSL in Bun), " +
      'over which the streams transport leaves the offload off by default: its synchronous AES-GCM (the "no" row) is native and faster; so it ' +
      'leaves WebCrypto key shares off over the node provider (the node rows below).',
    '',
    'Handshakes: "key shares" says what made the x25519 key shares: the provider itself (synchronous), or WebCrypto ' +
      '(`withWebCryptoKeyShares`, lib/crypto/webcrypto.ts), the handshake pausing for it while the bench loop runs the pause.',
    '',
    '| runtime | handshakes/s (psk_dhe_ke, x25519, sans-IO pair) | provider | key shares |',
    '|---|---|---|---|',
    ...hs.map((l) => `| ${l.runtime} | ${l.handshakesPerSecond} | ${l.provider} | ${l.keyShares ?? l.provider} |`),
    ...(other.length ? ['', ...other.map((l) => `- ${l.runtime}: ${l.event} (${String(l.reason ?? l.error)})`)] : []),
    RUNTIMES_END,
  ];
  return out.join('\n') + '\n';
}

/**
 * The target of issue 16, checked on a run: AES-128-GCM bulk at least 0.8 × the ceiling, first through the WebCrypto
 * offload alone, then through the faster of the offload and the runtime's synchronous native cipher (node:crypto, in
 * Node and Bun), which is how a user there gets the most out of it. @noble's cipher is not native and never counts.
 */
export function targetLine(run: RuntimesRun): string {
  const bulk = run.lines.filter((l) => l.event === 'runtime-bulk');
  const ratio = (l: Record<string, unknown>): number => (l.mbps as number) / (l.ceilingMbps as number);
  const verdict = (rows: Record<string, unknown>[], label: (l: Record<string, unknown>) => string): string => {
    const met = rows.filter((l) => ratio(l) >= 0.8);
    const missed = rows.filter((l) => ratio(l) < 0.8);
    const list = (ls: Record<string, unknown>[]) => (ls.length ? ls.map(label).join(', ') : 'none');
    return `met in ${list(met)}; not met in ${list(missed)}`;
  };
  const offloaded = bulk.filter((l) => l.offload === true);
  // Per runtime, its fastest native path: the offloaded row, or the row on node:crypto where there is one.
  const best = new Map<string, Record<string, unknown>>();
  for (const l of bulk.filter((x) => x.offload === true || x.cipher === NODE_CRYPTO)) {
    const prev = best.get(String(l.runtime));
    if (!prev || ratio(l) > ratio(prev)) best.set(String(l.runtime), l);
  }
  const hasNative = [...best.values()].some((l) => l.offload !== true);
  return (
    `Target, AES-128-GCM bulk ≥ 0.8 × the ceiling. Offloaded: ${verdict(offloaded, (l) => `${l.runtime} ${ratio(l).toFixed(2)}×`)}.` +
    (hasNative ? ` Offloaded or on node:crypto, whichever is faster: ${verdict([...best.values()], (l) => `${l.runtime} ${ratio(l).toFixed(2)}× (${l.offload === true ? 'offload' : l.cipher})`)}.` : '')
  );
}

/** `text` with its runtimes section replaced by `section` (or `section` appended when there is none). */
export function replaceRuntimesSection(text: string, section: string): string {
  const a = text.indexOf(RUNTIMES_BEGIN);
  const b = text.indexOf(RUNTIMES_END);
  if (a >= 0 && b > a) return text.slice(0, a) + section + text.slice(b + RUNTIMES_END.length).replace(/^\n/, '');
  return text + (text.endsWith('\n') ? '\n' : '\n\n') + section;
}

/** The runtimes section of `text`, if it has one (kept when the other benchmark rewrites the file). */
export function runtimesSection(text: string): string | null {
  const a = text.indexOf(RUNTIMES_BEGIN);
  const b = text.indexOf(RUNTIMES_END);
  return a >= 0 && b > a ? text.slice(a, b + RUNTIMES_END.length) + '\n' : null;
}

// ---------------------------------------------------------------------------------------------------------

function missingFile(path: string): string | null {
  try {
    accessSync(path, constants.R_OK);
    return null;
  } catch {
    return path;
  }
}

/** Bundles bench/runtime-bench.js (and the library it uses) into one ESM file for the other runtimes. */
async function makeBundle(dir: string, signal: AbortSignal): Promise<string> {
  const out = join(dir, 'bench.mjs');
  const entry = fileURLToPath(new URL('./runtime-bench.js', import.meta.url));
  await execFile(join(PEERS_BIN, 'esbuild'), [entry, '--bundle', '--format=esm', '--platform=browser', '--target=es2022', `--outfile=${out}`, '--log-level=warning'], { signal });
  return out;
}

/**
 * What every measured workerd request runs with: one round of one part and nothing else (no check, no warm-up),
 * since the whole request is timed (bench/runtimes.ts's module comment).
 */
export const WORKERD_MEASURED = { rounds: 1, verify: false, warmupMs: 0, handshakeWarmup: 0 } as const satisfies Partial<RuntimeBenchOptions>;

/** The `cryptoName` of the node provider (node:crypto) in the results. */
const NODE_CRYPTO = 'node';

/**
 * The benchmark and the node provider (lib/crypto/node.ts, on node:crypto) in one ESM file for a runtime that has
 * node:crypto (Bun), so that the connection's own cipher there is the native one; exports both.
 */
async function makeNodeProviderBundle(dir: string, signal: AbortSignal): Promise<string> {
  const entry = join(dir, 'bench-node-entry.mjs');
  const dist = (path: string) => JSON.stringify(fileURLToPath(new URL(path, import.meta.url)));
  await writeFile(entry, `export { runRuntimeParts } from ${dist('./runtime-bench.js')};\nexport { nodeProvider } from ${dist('../lib/crypto/node.js')};\n`);
  const out = join(dir, 'bench-node.mjs');
  await execFile(join(PEERS_BIN, 'esbuild'), [entry, '--bundle', '--format=esm', '--platform=node', '--target=es2022', `--outfile=${out}`, '--log-level=warning'], { signal });
  return out;
}

type Runner = (dir: string, bundle: string, options: RuntimeBenchOptions, signal: AbortSignal) => Promise<RuntimeMeasurement[]>;

/** The driver Deno and Bun run: the bundle's benchmark, over the bundle's node provider when it exports one. */
const driver = (bundle: string) => `import * as bench from './${bundle.split('/').pop()}';
const args = globalThis.Deno ? Deno.args : process.argv.slice(2);
const options = JSON.parse(args[0]);
const result = await bench.runRuntimeParts(bench.nodeProvider ? { ...options, crypto: bench.nodeProvider } : options);
console.log('RESULT ' + JSON.stringify(result));
`;

async function runDriver(command: string, args: string[], dir: string, bundle: string, options: RuntimeBenchOptions, signal: AbortSignal, env: NodeJS.ProcessEnv = {}): Promise<RuntimeMeasurement[]> {
  await writeFile(join(dir, 'driver.mjs'), driver(bundle));
  const stdout = await execFile(command, [...args, join(dir, 'driver.mjs'), JSON.stringify(options)], { cwd: dir, env, signal });
  const line = stdout.split('\n').find((l) => l.startsWith('RESULT '));
  if (!line) throw new Error(`no result from ${command}: ${stdout.slice(-500)}`);
  return JSON.parse(line.slice(7)) as RuntimeMeasurement[];
}

// Deno has node:crypto too, but its AES-GCM there ran at ≈90 MB/s sealing and opening 16 KiB records against
// ≈450 for its WebCrypto (workerd's: ≈300 against ≈900), so those two keep @noble for the path without offload.
const RUNNERS: Record<Exclude<RuntimeName, 'node' | 'bun' | 'chromium'>, Runner> = {
  deno: (dir, bundle, options, signal) =>
    runDriver(join(PEERS_BIN, 'deno'), ['run', '--no-config', '--no-lock', '--no-prompt'], dir, bundle, options, signal, { DENO_DIR: join(dir, 'deno-dir'), DENO_NO_UPDATE_CHECK: '1', NO_COLOR: '1' }),
  workerd: runWorkerd,
};

async function runWorkerd(dir: string, bundle: string, options: RuntimeBenchOptions, signal: AbortSignal): Promise<RuntimeMeasurement[]> {
  const port = await freePort();
  await writeFile(
    join(dir, 'worker.mjs'),
    `import { runRuntimeParts } from './bench.mjs';
export default {
  async fetch(request) {
    const options = JSON.parse(new URL(request.url).searchParams.get('o'));
    try { return Response.json(await runRuntimeParts(options)); }
    catch (e) { return new Response(String(e && e.stack || e), { status: 500 }); }
  },
};
`,
  );
  await writeFile(
    join(dir, 'config.capnp'),
    `using Workerd = import "/workerd/workerd.capnp";
const config :Workerd.Config = (
  services = [(name = "main", worker = .bench)],
  sockets = [(name = "http", address = "127.0.0.1:${port}", http = (), service = "main")],
);
const bench :Workerd.Worker = (
  modules = [(name = "worker.mjs", esModule = embed "worker.mjs"), (name = "bench.mjs", esModule = embed "${bundle.split('/').pop()}")],
  compatibilityDate = "2024-09-23",
);
`,
  );
  const child = spawn(join(PEERS_BIN, 'workerd'), ['serve', join(dir, 'config.capnp')], { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
  let log = '';
  child.stdout.on('data', (b: Buffer) => (log += b));
  child.stderr.on('data', (b: Buffer) => (log += b));
  try {
    await waitForPort(port, 20_000, () => log);
    // One request per part, timed from here (request included): see the module comment. The worker's clock
    // stands still while it computes, so the checks and the warm-ups that runRuntimeParts does by itself
    // elsewhere (the bulk parts' for warmupMs, each handshakes part's first few handshakes) are requests of
    // their own here: a measured request runs only what it measures.
    const request = async (o: Partial<RuntimeBenchOptions>): Promise<{ m: RuntimeMeasurement[]; ms: number }> => {
      const url = `http://127.0.0.1:${port}/?o=${encodeURIComponent(JSON.stringify({ ...options, ...WORKERD_MEASURED, ...o }))}`;
      const t0 = performance.now();
      const res = await fetch(url, { signal });
      const body = await res.text();
      const ms = performance.now() - t0;
      if (!res.ok) throw new Error(`workerd: ${res.status} ${body}`);
      return { m: JSON.parse(body) as RuntimeMeasurement[], ms };
    };
    await request({ parts: [], verify: true });
    for (const t0 = performance.now(); performance.now() - t0 < (options.warmupMs ?? (options.quick ? 500 : 2000)); ) {
      for (const part of BULK_PARTS) await request({ parts: [part] });
    }
    for (const part of RUNTIME_PARTS) if (!BULK_PARTS.includes(part)) await request({ parts: [part] });
    const best = new Map<string, RuntimeMeasurement>();
    for (let round = 0; round < (options.rounds ?? (options.quick ? 2 : 3)); round++) {
      for (const part of RUNTIME_PARTS) {
        const { m: [m], ms } = await request({ parts: [part] });
        const prev = best.get(part);
        if (!prev || m.amount / ms > prev.amount / prev.ms) best.set(part, { ...m, ms });
      }
    }
    return [...best.values()];
  } finally {
    child.kill('SIGTERM');
  }
}

async function runChromium(dir: string, bundle: string, options: RuntimeBenchOptions, executablePath: string, signal: AbortSignal): Promise<RuntimeMeasurement[]> {
  const code = await readFile(bundle);
  const server: Server = createServer((req, res) => {
    if (req.url === '/bench.mjs') res.writeHead(200, { 'content-type': 'text/javascript' }).end(code);
    else res.writeHead(200, { 'content-type': 'text/html' }).end('<!doctype html><title>qkd-tls bench</title>');
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  // The server is closed whatever fails, a Chromium that does not start included: left listening, it kept the
  // process alive after the run had printed its results (the command never exited).
  try {
    const { port } = server.address() as AddressInfo;
    const playwright = (await import(pathToFileURL(join(ROOT, 'test', 'peers', 'node_modules', 'playwright-core', 'index.mjs')).href)) as {
      chromium: { launch(o: object): Promise<{ newPage(): Promise<ChromiumPage>; close(): Promise<void> }> };
    };
    const browser = await playwright.chromium.launch({
      executablePath,
      headless: true,
      args: ['--no-sandbox', '--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1'],
    });
    // At the time limit the browser is closed, which ends a page that does not answer.
    const stop = () => void browser.close().catch(() => {});
    signal.addEventListener('abort', stop, { once: true });
    if (signal.aborted) stop();
    try {
      const page = await browser.newPage();
      await page.goto(`http://127.0.0.1:${port}/`);
      return await page.evaluate(async (o: RuntimeBenchOptions) => {
        const mod = (await import('/bench.mjs' as string)) as typeof import('./runtime-bench.js');
        return mod.runRuntimeParts(o);
      }, options);
    } finally {
      signal.removeEventListener('abort', stop);
      await browser.close();
    }
  } finally {
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
  }
}

interface ChromiumPage {
  goto(url: string): Promise<unknown>;
  evaluate<T, A>(fn: (arg: A) => Promise<T>, arg: A): Promise<T>;
}

/** Runs a command to its end and returns its stdout; killed (and rejected) when `signal` aborts first. */
async function execFile(command: string, args: string[], options: { cwd?: string; env?: NodeJS.ProcessEnv; signal: AbortSignal }): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { cwd: options.cwd, env: { ...process.env, ...options.env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (b: Buffer) => (out += b));
    child.stderr.on('data', (b: Buffer) => (err += b));
    const kill = () => child.kill('SIGKILL');
    options.signal.addEventListener('abort', kill, { once: true });
    if (options.signal.aborted) kill();
    child.on('error', reject);
    child.on('close', (code) => {
      options.signal.removeEventListener('abort', kill);
      if (code === 0) resolve(out);
      else reject(new Error(`${command.split('/').pop()} exited ${code}: ${err.slice(-800)}`));
    });
  });
}

async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const { port } = s.address() as AddressInfo;
  await new Promise((r) => s.close(r));
  return port;
}

async function waitForPort(port: number, ms: number, log: () => string): Promise<void> {
  const until = Date.now() + ms;
  for (;;) {
    try {
      await fetch(`http://127.0.0.1:${port}/?o=${encodeURIComponent(JSON.stringify({ runtime: 'probe', quick: true, parts: [] }))}`);
      return;
    } catch {
      if (Date.now() > until) throw new Error(`workerd did not listen on ${port}: ${log().slice(-500)}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}
