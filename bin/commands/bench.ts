/**
 * `qkd-tls bench [--quick] [--json] [--provider node|noble|both] [--only SECTIONS] [--out DIR]`
 * `qkd-tls bench --runtimes [--quick] [--json] [--only-runtimes LIST]`
 *
 * Measures qkd-tls and Node's own node:tls side by side in one run (handshakes/s, the post-quantum hybrid against
 * Node 24's, bulk MB/s, memory per idle connection over loopback; bare state machines and the record layer without
 * sockets) and prints a table with the ratios and the project's performance targets.
 */
import { accessSync, constants, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { renderChart } from '../../bench/chart.js';
import { SIZES, type BenchSizes, type ProviderName } from '../../bench/common.js';
import { formatMarkdown, formatTable } from '../../bench/report.js';
import { runBench, SECTIONS, type Section } from '../../bench/run.js';
import { formatRuntimes, formatRuntimesMarkdown, replaceRuntimesSection, RUNTIMES, runRuntimes, runtimesSection, type RuntimeName } from '../../bench/runtimes.js';
import { usageError } from '../cli/command.js';

export const HELP = `usage: qkd-tls bench [--quick] [--json] [--provider node|noble|both] [--only LIST] [--out DIR]
       qkd-tls bench --runtimes [--quick] [--json] [--only-runtimes LIST] [--out DIR]

Benchmarks qkd-tls against Node's own TLS (node:tls, OpenSSL) in the same run, on loopback:
  handshakes      connections/s, sequential and with 16 concurrent clients, for psk_ke and for
                  psk_dhe_ke over x25519 and secp256r1
  hybrid          handshakes/s and CPU per handshake over X25519MLKEM768 and x25519, against Node 24's
                  node:tls (from test/peers; without it, qkd-tls's hybrid against its own x25519)
  bulk            MB/s over one connection, for each cipher suite
  memory          RSS per idle connection with 1,000 open (a child process per stack)
  state machines  handshakes/s of the bare client and server state machines, without sockets
  records         record seal/open MB/s next to the raw AEAD of the same crypto provider
and prints each figure with its ratio (qkd-tls / reference) and which performance targets this run met.

options:
  --quick             a shorter run (about a minute)
  --size NAME         full (default), quick or tiny (a smoke test; figures are meaningless)
  --provider NAME     qkd-tls crypto provider: node (native), noble (pure JavaScript) or both (default)
  --only LIST         only these sections, comma-separated: ${SECTIONS.join(', ')}
  --json              print the whole report as one JSON object instead of the table
  --out DIR           also write DIR/RESULTS.md and DIR/results.svg (e.g. --out bench)
  --runtimes          instead: inside Chromium, Deno, Bun, workerd and Node, one connection's bulk MB/s
                      with and without the WebCrypto record offload, next to the raw WebCrypto AES-128-GCM
                      ceiling of the same run, and handshakes/s (the runtimes come from test/peers:
                      npm ci --prefix test/peers; Chromium from /usr/bin/chromium). --json prints one line
                      per runtime and offload setting: {"event":"runtime-bulk","runtime":...,"offload":...,
                      "mbps":...}, one per runtime and key-share path ("runtime-handshakes"), and one for
                      each runtime skipped or failed ("runtime-skipped", "runtime-failed": exit code 1)
  --only-runtimes L   with --runtimes: only these, comma-separated: ${RUNTIMES.join(', ')}
                      (--out DIR: the runtimes section of DIR/RESULTS.md is replaced, the rest kept)
  -h, --help          this help

Progress goes to stderr. Exit code: 0 when the benchmark ran (whether or not the targets were met),
1 when a measurement failed, 2 for a usage error.`;

export async function run(argv: string[]): Promise<number> {
  let values: {
    quick?: boolean;
    size?: string;
    provider?: string;
    only?: string;
    json?: boolean;
    out?: string;
    help?: boolean;
    runtimes?: boolean;
    'only-runtimes'?: string;
  };
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        quick: { type: 'boolean' },
        size: { type: 'string' },
        provider: { type: 'string' },
        only: { type: 'string' },
        json: { type: 'boolean' },
        out: { type: 'string' },
        help: { type: 'boolean', short: 'h' },
        runtimes: { type: 'boolean' },
        'only-runtimes': { type: 'string' },
      },
      strict: true,
      allowPositionals: false,
    }));
  } catch (e) {
    return usage((e as Error).message);
  }
  if (values.help) {
    process.stdout.write(HELP + '\n');
    return 0;
  }
  if (values.out !== undefined) {
    // Found now rather than after the whole run (minutes), which then ended in an exception (exit 1).
    try {
      mkdirSync(values.out, { recursive: true });
      accessSync(values.out, constants.W_OK);
    } catch (e) {
      return usage(`--out: cannot write to ${values.out}: ${(e as Error).message}`);
    }
  }
  if (values.runtimes) return runtimesCommand(values);
  if (values['only-runtimes'] !== undefined) return usage('--only-runtimes goes with --runtimes');
  const sizeName = values.size ?? (values.quick ? 'quick' : 'full');
  if (!Object.hasOwn(SIZES, sizeName)) return usage(`--size must be full, quick or tiny, not '${sizeName}'`);
  if (values.quick && values.size && values.size !== 'quick') return usage('--quick and --size disagree');
  const sizes: BenchSizes = SIZES[sizeName as BenchSizes['name']];
  const providerName = values.provider ?? 'both';
  const providers: ProviderName[] = providerName === 'both' ? ['node', 'noble'] : providerName === 'node' || providerName === 'noble' ? [providerName] : [];
  if (providers.length === 0) return usage(`--provider must be node, noble or both, not '${providerName}'`);
  let sections: Section[] | undefined;
  if (values.only !== undefined) {
    sections = values.only.split(',').map((s) => s.trim()) as Section[];
    const unknown = sections.filter((s) => !SECTIONS.includes(s));
    if (unknown.length > 0 || sections.length === 0) return usage(`--only: unknown section(s) ${unknown.join(', ')}; use ${SECTIONS.join(', ')}`);
  }

  let report;
  try {
    report = await runBench({ sizes, providers, sections, onProgress: (line) => process.stderr.write(`bench: ${line}\n`) });
  } catch (e) {
    process.stderr.write(`qkd-tls bench: ${(e as Error).message}\n`);
    return 1;
  }
  if (values.json) process.stdout.write(JSON.stringify(report) + '\n');
  else process.stdout.write(formatTable(report).join('\n') + '\n');
  if (values.out) {
    mkdirSync(values.out, { recursive: true });
    writeFileSync(join(values.out, 'results.svg'), renderChart(report));
    const file = join(values.out, 'RESULTS.md');
    const kept = existsSync(file) ? runtimesSection(readFileSync(file, 'utf8')) : null;
    writeFileSync(file, formatMarkdown(report, 'results.svg') + (kept ? '\n' + kept : ''));
    process.stderr.write(`bench: wrote ${join(values.out, 'RESULTS.md')} and ${join(values.out, 'results.svg')}\n`);
  }
  return 0;
}

async function runtimesCommand(values: { quick?: boolean; json?: boolean; size?: string; provider?: string; only?: string; out?: string; 'only-runtimes'?: string }): Promise<number> {
  if (values.size || values.provider || values.only) return usage('--runtimes takes only --quick, --json, --only-runtimes and --out');
  let runtimes: RuntimeName[] | undefined;
  if (values['only-runtimes'] !== undefined) {
    runtimes = values['only-runtimes'].split(',').map((s) => s.trim()) as RuntimeName[];
    const unknown = runtimes.filter((r) => !RUNTIMES.includes(r));
    if (unknown.length > 0) return usage(`--only-runtimes: unknown runtime(s) ${unknown.map((r) => JSON.stringify(r)).join(', ')}; use ${RUNTIMES.join(', ')}`);
    const twice = runtimes.find((r, i) => runtimes!.indexOf(r) !== i);
    if (twice) return usage(`--only-runtimes: ${twice} is listed twice`);
  }
  const run = await runRuntimes({ quick: Boolean(values.quick), runtimes, onProgress: (line) => process.stderr.write(`bench: ${line}\n`) });
  if (values.json) for (const line of run.lines) process.stdout.write(JSON.stringify(line) + '\n');
  else process.stdout.write(formatRuntimes(run).join('\n') + '\n');
  if (values.out) {
    mkdirSync(values.out, { recursive: true });
    const file = join(values.out, 'RESULTS.md');
    const machine = `${cpus().length} × ${cpus()[0]?.model.trim() ?? 'CPU'}, Node ${process.versions.node}`;
    const section = formatRuntimesMarkdown(run, { date: new Date().toISOString().slice(0, 10), quick: Boolean(values.quick), machine });
    writeFileSync(file, replaceRuntimesSection(existsSync(file) ? readFileSync(file, 'utf8') : '# qkd-tls benchmark results\n', section));
    process.stderr.write(`bench: wrote the runtimes section of ${file}\n`);
  }
  return run.lines.some((l) => l.event === 'runtime-failed') ? 1 : 0;
}

function usage(message: string): number {
  return usageError('bench', message);
}
