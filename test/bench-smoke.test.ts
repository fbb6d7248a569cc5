/**
 * The benchmark runs end to end in its tiny configuration (a few handshakes, a short transfer, a hundred idle
 * connections) with both providers, and its output has the promised shape: every section present, every
 * figure and ratio a finite positive number (memory: finite), the targets derived from the rows, and the table, Markdown, SVG
 * and the `qkd-tls bench --json` output well formed. No assertion here depends on how fast anything is.
 */
import t from 'tap';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { advantage, renderChart } from '../bench/chart.js';
import { machineInfo, SIZES, type BenchClock } from '../bench/common.js';
import { formatMarkdown, formatTable } from '../bench/report.js';
import { checkTargets, REPORT_SECTIONS, runBench, SECTIONS, type BenchReport } from '../bench/run.js';

const finitePositive = (x: unknown): boolean => typeof x === 'number' && Number.isFinite(x) && x > 0;

type Tap = Pick<typeof t, 'equal' | 'same' | 'ok' | 'fail'>;

function checkReport(tt: Tap, report: BenchReport, providers: readonly string[], sections: readonly string[]): void {
  tt.equal(report.version, 1);
  tt.same(report.providers, providers);
  for (const s of sections) {
    for (const p of providers) tt.ok(report.rows.some((r) => r.section === s && r.provider === p), `section ${s} has rows for ${p}`);
  }
  let bad = 0;
  for (const r of report.rows) {
    // A memory figure is a difference of RSS readings: with the tiny run's few connections the garbage
    // collector's noise can make it zero or negative, so only its finiteness is a property of the code.
    const ok = r.section === 'memory' ? [r.qkd, r.reference, r.ratio].every(Number.isFinite) : finitePositive(r.qkd) && finitePositive(r.reference) && finitePositive(r.ratio);
    if (!ok) {
      bad++;
      tt.fail(`${r.section} / ${r.metric} (${r.provider}): qkd ${r.qkd}, reference ${r.reference}, ratio ${r.ratio}`);
    }
    if (Math.abs(r.ratio - r.qkd / r.reference) > 1e-9 * Math.abs(r.ratio)) tt.fail(`${r.metric}: ratio is not qkd / reference`);
  }
  tt.equal(bad, 0, `all ${report.rows.length} rows have finite positive figures and ratios`);
  for (const c of report.targets) {
    if (!Number.isFinite(c.ratio) || !finitePositive(c.goal) || typeof c.met !== 'boolean') tt.fail(`target ${c.target}: ${JSON.stringify(c)}`);
    if (c.met !== (c.atMost ? c.ratio <= c.goal : c.ratio >= c.goal)) tt.fail(`target ${c.target}: met does not follow from ratio and goal`);
  }
  tt.same(report.targets, checkTargets(report.rows), 'targets are derived from the rows');
}

t.test('a tiny benchmark run with both providers has every section, finite ratios and all renderings', async (tt) => {
  const progress: string[] = [];
  const report = await runBench({ sizes: SIZES.tiny, providers: ['node', 'noble'], onProgress: (l) => progress.push(l) });
  checkReport(tt, report, ['node', 'noble'], REPORT_SECTIONS);
  tt.ok(progress.length >= SECTIONS.length, 'progress was reported');
  // The bulk transfers also report each side's CPU time per record, for every suite and provider, against node:tls.
  for (const p of ['node', 'noble']) {
    for (const side of ['sender', 'receiver']) {
      const cpu = report.rows.filter((r) => r.section === 'bulk CPU' && r.provider === p && r.metric.endsWith(`, ${side}`));
      tt.equal(cpu.length, 3, `bulk CPU: one ${side} row per suite (${p})`);
      tt.ok(cpu.every((r) => !r.higherIsBetter && r.unit === 'CPU µs per 16 KiB record'), `bulk CPU ${side} rows: lower is better (${p})`);
    }
  }
  // Targets: the native provider's handshake, bulk and memory goals, and noble's bulk-versus-ceiling goal.
  tt.ok(report.targets.some((c) => c.provider === 'node' && c.target.includes('psk_ke')), 'psk_ke target present');
  tt.ok(report.targets.some((c) => c.provider === 'node' && c.target.includes('psk_dhe_ke x25519')), 'psk_dhe_ke x25519 target present');
  tt.equal(report.targets.filter((c) => c.target.startsWith('bulk') && c.provider === 'node').length, 3, 'one bulk target per suite (native)');
  tt.equal(report.targets.filter((c) => c.target.startsWith('bulk') && c.provider === 'noble').length, 3, 'one bulk-versus-ceiling target per suite (noble)');
  tt.ok(report.targets.some((c) => c.atMost && c.target.includes('RSS')), 'memory target present');

  const table = formatTable(report);
  for (const s of REPORT_SECTIONS) tt.ok(table.some((l) => l.startsWith(`${s} (`)), `table has a ${s} block`);
  tt.ok(table.some((l) => /^\s+(MET|NOT MET)\s/.test(l)), 'table lists the targets');
  const md = formatMarkdown(report, 'results.svg');
  tt.match(md, /^# qkd-tls benchmark results/);
  tt.match(md, /\| CPU \| .+ \(\d+ cores\) \|/);
  tt.match(md, /!\[qkd-tls \/ node:tls\]\(results\.svg\)/);
  tt.equal((md.match(/^\| .+ \| (node|noble) \| /gm) ?? []).length, report.rows.length, 'one Markdown row per result');
  const svg = renderChart(report);
  tt.match(svg, /^<svg xmlns="http:\/\/www\.w3\.org\/2000\/svg"/);
  tt.match(svg, /<\/svg>\n$/);
  tt.equal((svg.match(/<rect x=/g) ?? []).length, report.rows.length, 'one bar per row');
  tt.notMatch(svg, /NaN|Infinity|undefined/, 'no non-numbers in the chart');
  for (const r of report.rows) tt.ok(Number.isFinite(advantage(r)), `${r.metric}: finite bar`);
});

t.test('state-machine rows compare rates of one unit: their node:tls reference is per CPU-second too', async (tt) => {
  // A process whose CPU time runs slower than its wall clock, as a loaded machine makes node:tls's (its wall-clock
  // rate falls with the load while the state machines' rate per CPU-second does not).
  // CPU time at a twentieth of the wall clock, and windows of 400 ms (at least 20 ms of this CPU time, over the 10 ms
  // under which a window gives its wall-clock rate): a per-CPU-second figure is about 20 times the wall-clock one.
  // The factor is not exactly 20: the CPU figure counts operations that end after the window, over the time until they
  // end, and that tail grows with the machine's load. With a factor 2 and 150 ms windows, a loaded run measured 0.89x
  // (secp256r1) and another 2.97x against bounds of 1.4 and 2.9; the bounds are now 4.5 and 90, a factor of sqrt(20)
  // from 20 either way, far from 1 (the wall-clock figure itself, the bug this guards).
  const clock: BenchClock = { now: () => performance.now(), cpuMicros: () => performance.now() * 50 };
  const sizes = { ...SIZES.tiny, handshakeMs: 400 };
  const report = await runBench({ sizes, providers: ['node'], sections: ['handshakes', 'state machines'], clock });
  for (const group of ['x25519', 'secp256r1']) {
    const loopback = report.rows.find((r) => r.section === 'handshakes' && r.metric === `psk_dhe_ke ${group}, ${sizes.concurrency} concurrent`);
    const machines = report.rows.find((r) => r.section === 'state machines' && r.metric.startsWith(`psk_dhe_ke ${group},`));
    if (!loopback || !machines) return tt.fail(`rows for ${group}`);
    // The same node:tls windows, counted per CPU-second: about 20 times the wall-clock figure (operations still running
    // when a window closes count here, over the time until they end). It was the wall-clock figure itself.
    const k = machines.reference / loopback.reference;
    tt.ok(k > 4.5 && k < 90, `${group}: the reference is node:tls per CPU-second (${machines.reference.toFixed(0)} against ${loopback.reference.toFixed(0)} per second: ${k.toFixed(2)}x)`);
    tt.match(machines.referenceLabel, /per CPU-second/);
  }
});

t.test('RESULTS.md names the command that made it: size, providers and sections as the flags are spelled', async (tt) => {
  const { HELP } = await import('../bin/commands/bench.js');
  const report = (over: Partial<BenchReport>): BenchReport =>
    ({ version: 1, mode: 'full', machine: machineInfo(), providers: ['node', 'noble'], sections: SECTIONS, sizes: SIZES.full, rows: [], targets: [], notes: [], seconds: 1, ...over }) as BenchReport;
  const generatedBy = (r: BenchReport) => /^Generated by `qkd-tls bench ([^`]*)` on /m.exec(formatMarkdown(r, 'results.svg'))?.[1];
  tt.equal(generatedBy(report({})), '--out bench', 'a full run of everything');
  tt.equal(generatedBy(report({ mode: 'quick', sizes: SIZES.quick })), '--quick --out bench');
  // There is no --tiny: it read `qkd-tls bench --tiny --out bench`, a usage error.
  tt.equal(generatedBy(report({ mode: 'tiny', sizes: SIZES.tiny })), '--size tiny --out bench');
  // A partial run said `qkd-tls bench --out bench` too, as if everything had been measured with both providers.
  const partial = report({ mode: 'quick', sizes: SIZES.quick, providers: ['node'], sections: ['bulk', 'state machines'] });
  tt.equal(generatedBy(partial), "--quick --provider node --only 'bulk,state machines' --out bench");
  tt.match(formatMarkdown(partial, 'results.svg'), "Regenerate with `npm run bench -- --quick --provider node --only 'bulk,state machines' --out bench`");
  for (const flag of generatedBy(partial)!.match(/--[a-z-]+/g)!) tt.match(HELP, new RegExp(`^\\s+${flag}\\b`, 'm'), `${flag} is an option of qkd-tls bench`);
  tt.match(formatMarkdown(report({ mode: 'quick', sizes: SIZES.quick }), 'results.svg'), '1000 idle connections (500 with noble)', 'the noble memory row held fewer');
});

t.test('`qkd-tls bench --size tiny --json` prints one JSON report', async (tt) => {
  const cli = fileURLToPath(new URL('../bin/qkd-tls.js', import.meta.url));
  const child = spawn(process.execPath, [cli, 'bench', '--size', 'tiny', '--json', '--provider', 'node', '--only', 'state machines,records'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout.on('data', (b: Buffer) => (out += b.toString()));
  child.stderr.on('data', (b: Buffer) => (err += b.toString()));
  const code = await new Promise<number | null>((resolve) => child.once('close', resolve));
  tt.equal(code, 0, `exit code 0 (stderr: ${err.slice(-500)})`);
  const report = JSON.parse(out) as BenchReport;
  checkReport(tt, report, ['node'], ['state machines', 'records']);
  tt.notOk(report.rows.some((r) => r.section === 'bulk' || r.section === 'memory'), '--only limits the sections');
  tt.same(report.sections, ['state machines', 'records'], 'the report says which sections it measured');
  tt.match(err, /bench: records/, 'progress on stderr');
});

t.test('`qkd-tls bench` refuses bad options with exit code 2', async (tt) => {
  const cli = fileURLToPath(new URL('../bin/qkd-tls.js', import.meta.url));
  for (const args of [['--provider', 'openssl'], ['--only', 'nonsense'], ['--size', 'huge'], ['--bogus']]) {
    const child = spawn(process.execPath, [cli, 'bench', ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    child.stderr.on('data', (b: Buffer) => (err += b.toString()));
    const code = await new Promise<number | null>((resolve) => child.once('close', resolve));
    tt.equal(code, 2, `${args.join(' ')}: usage error`);
    tt.match(err, /^qkd-tls bench: .*\n\(run qkd-tls bench --help for the options\)\n$/, `${args.join(' ')}: one line, and where the options are`);
  }
});
