/**
 * `qkd-tls bench --runtimes --quick --json` runs end to end for Node (the other runtimes are the test-only peers;
 * bench/runtimes.ts runs them the same way) and prints the promised JSON lines: one runtime-bulk line per
 * runtime, suite and offload setting, with finite positive rates (the offloaded one also with the no-TLS
 * transfer's), and a runtime-handshakes line per key-share implementation (the provider's own, WebCrypto).
 * Nothing here depends on how fast anything is.
 */
import t from 'tap';
import { missingChromium } from './helpers/chromium.js';
import { runQkdTls, testPeer } from './helpers/peers.js';

const finitePositive = (x: unknown): boolean => typeof x === 'number' && Number.isFinite(x) && x > 0;

const cli = (args: string[]) => runQkdTls(args, { ms: 120_000 });

t.test('qkd-tls bench --runtimes --quick --json --only-runtimes node', { timeout: 150_000 }, async (t) => {
  const { code, stdout, stderr } = await cli(['bench', '--runtimes', '--quick', '--json', '--only-runtimes', 'node']);
  t.equal(code, 0, `exit 0 (stderr: ${stderr.slice(-300)})`);
  const lines = stdout.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
  const bulk = lines.filter((l) => l.event === 'runtime-bulk');
  t.same(
    bulk.map((l) => [l.runtime, l.suite, l.offload]),
    [
      ['node', 'TLS_AES_128_GCM_SHA256', true],
      ['node', 'TLS_AES_128_GCM_SHA256', false],
    ],
    'one runtime-bulk line per offload setting',
  );
  for (const l of bulk) {
    t.ok(finitePositive(l.mbps) && finitePositive(l.ceilingMbps), `offload ${l.offload}: mbps ${l.mbps}, ceilingMbps ${l.ceilingMbps}`);
    t.ok(finitePositive(l.recordsInFlight), 'records in flight');
    t.equal(l.setup, 'in-memory pair', 'says the connection is an in-memory pair');
  }
  t.ok(finitePositive(bulk.find((l) => l.offload === true)?.framingOnlyMbps), 'the offloaded line has the no-TLS transfer of the same run');
  t.equal(bulk.find((l) => l.offload === false)?.framingOnlyMbps, undefined, 'the line without offload has none');
  const offloaded = bulk.find((l) => l.offload === true)?.offloaded as { sealed: number; opened: number } | undefined;
  t.ok(offloaded && offloaded.sealed > 0 && offloaded.sealed === offloaded.opened, 'the offload sealed and opened every record of the transfer');
  t.equal(bulk.find((l) => l.offload === false)?.cipher, 'node', "without offload Node uses its own provider");
  const hs = lines.filter((l) => l.event === 'runtime-handshakes');
  t.same(
    hs.map((l) => [l.provider, l.keyShares]),
    [
      ['node', 'node'],
      ['node', 'webcrypto'],
    ],
    "one runtime-handshakes line per key-share implementation: the provider's own, and WebCrypto (Node 20 has X25519)",
  );
  for (const l of hs) t.ok(finitePositive(l.handshakesPerSecond), `handshakes/s (key shares: ${l.keyShares})`);
  t.equal(lines.length, 4, 'nothing else on stdout');
});

t.test('bench --runtimes refuses an unknown runtime and options of the other benchmark', async (t) => {
  const a = await cli(['bench', '--runtimes', '--only-runtimes', 'netscape']);
  t.equal(a.code, 2);
  t.match(a.stderr, /unknown runtime/);
  const b = await cli(['bench', '--runtimes', '--provider', 'noble']);
  t.equal(b.code, 2);
  const c = await cli(['bench', '--only-runtimes', 'node']);
  t.equal(c.code, 2);
});

t.test('the target line: the offload alone, then the faster of the offload and node:crypto per runtime', async (t) => {
  const { targetLine } = await import('../bench/runtimes.js');
  const bulk = (runtime: string, offload: boolean, cipher: string, mbps: number) => ({ event: 'runtime-bulk', runtime, suite: 'TLS_AES_128_GCM_SHA256', offload, cipher, mbps, ceilingMbps: 1000 });
  const line = targetLine({
    lines: [
      bulk('node', true, 'webcrypto', 500),
      bulk('node', false, 'node', 1900),
      bulk('bun', true, 'webcrypto', 600),
      bulk('bun', false, 'node', 950),
      bulk('deno', true, 'webcrypto', 850),
      bulk('deno', false, 'noble', 40),
      bulk('workerd', true, 'webcrypto', 500),
      bulk('workerd', false, 'noble', 900), // not native: never counts
      { event: 'runtime-handshakes', runtime: 'bun', handshakesPerSecond: 3000, provider: 'node' },
    ],
  });
  t.equal(
    line,
    'Target, AES-128-GCM bulk ≥ 0.8 × the ceiling. Offloaded: met in deno 0.85×; not met in node 0.50×, bun 0.60×, workerd 0.50×. ' +
      'Offloaded or on node:crypto, whichever is faster: met in node 1.90× (node), bun 0.95× (node), deno 0.85× (offload); not met in workerd 0.50× (offload).',
  );
});

t.test('the runtimes section of RESULTS.md is replaced in place, and kept by the other benchmark', async (t) => {
  const { formatRuntimesMarkdown, replaceRuntimesSection, runtimesSection, RUNTIMES_BEGIN, RUNTIMES_END } = await import('../bench/runtimes.js');
  const run = {
    lines: [
      { event: 'runtime-bulk', runtime: 'deno', suite: 'TLS_AES_128_GCM_SHA256', offload: true, cipher: 'webcrypto', recordsInFlight: 8, mbps: 200, ceilingMbps: 250, framingOnlyMbps: 225 },
      { event: 'runtime-bulk', runtime: 'deno', suite: 'TLS_AES_128_GCM_SHA256', offload: false, cipher: 'noble', recordsInFlight: 1, mbps: 30, ceilingMbps: 250 },
      { event: 'runtime-handshakes', runtime: 'deno', handshakesPerSecond: 300, provider: 'noble' },
      { event: 'runtime-skipped', runtime: 'bun', reason: 'not installed' },
    ],
  };
  const section = formatRuntimesMarkdown(run, { date: '2026-12-06', quick: true, machine: 'test' });
  t.ok(section.startsWith(RUNTIMES_BEGIN) && section.trimEnd().endsWith(RUNTIMES_END), 'between its markers');
  t.match(section, '| deno | TLS_AES_128_GCM_SHA256 | yes | webcrypto | 8 | 200 | 250 | 0.80 | 225 (0.90) |');
  t.match(section, '| deno | TLS_AES_128_GCM_SHA256 | no | noble | 1 | 30 | 250 | 0.12 | - |');
  t.match(section, '| deno | 300 | noble |');
  t.match(section, 'Target, AES-128-GCM bulk ≥ 0.8 × the ceiling. Offloaded: met in deno 0.80×; not met in none.', 'the target, checked');
  t.notMatch(section, 'whichever is faster', "@noble's synchronous cipher is not a native path: no second verdict");
  t.match(section, '- bun: runtime-skipped (not installed)');
  const doc = '# results\n\nbefore\n';
  const once = replaceRuntimesSection(doc, section);
  t.ok(once.startsWith(doc), 'appended after the rest');
  const again = replaceRuntimesSection(once + 'after\n', section.replace('| 200 |', '| 210 |'));
  t.equal(again.split(RUNTIMES_BEGIN).length, 2, 'replaced, not added twice');
  t.match(again, '| 210 |');
  t.match(again, /after\n$/, 'what follows the section is kept');
  t.equal(runtimesSection(again)?.includes('| 210 |'), true, 'the section can be taken out to be kept');
  t.equal(runtimesSection(doc), null);
});

t.test('a bulk figure is labelled with the path its records took: offload means every record went through WebCrypto', async (t) => {
  const { runRuntimeParts, runtimeLines } = await import('../bench/runtime-bench.js');
  const { nodeProvider } = await import('../lib/crypto/node.js');
  const options = { runtime: 'node', quick: true, crypto: nodeProvider, cryptoName: 'node', verify: false, warmupMs: 0, rounds: 1 } as const;
  const measured = await runRuntimeParts({ ...options, parts: ['bulk-offload', 'bulk-sync'] });
  for (const m of measured) {
    const records = m.amount / 16_384;
    t.same(m.offloaded, m.part === 'bulk-offload' ? { sealed: records, opened: records } : { sealed: 0, opened: 0 }, `${m.part}: ${records} records, the path of each counted`);
  }
  // The pipeline falls back to the connection's own cipher when WebCrypto refuses (lib/transport/webcrypto-records.ts):
  // here it opens no record, so every record is opened by node:crypto. That transfer was reported as
  // {"offload":true,"cipher":"webcrypto"} with node:crypto's figure; now it is a failure naming the path.
  const subtle = globalThis.crypto.subtle;
  const decrypt = Object.getOwnPropertyDescriptor(subtle, 'decrypt');
  subtle.decrypt = () => Promise.reject(new DOMException('refused for this test', 'OperationError'));
  try {
    const run = runRuntimeParts({ ...options, parts: ['bulk-offload'] }).then((m) => runtimeLines(options, m));
    await t.rejects(run, /bulk with offload: WebCrypto sealed \d+ and opened 0 of the \d+ records/, 'no figure labelled offload for records opened elsewhere');
  } finally {
    if (decrypt) Object.defineProperty(subtle, 'decrypt', decrypt);
    else delete (subtle as { decrypt?: unknown }).decrypt;
  }
  t.notOk(Object.hasOwn(subtle, 'decrypt'), 'WebCrypto restored');
});

// playwright-core and esbuild from test/peers (Chromium itself is not started: /bin/false stands in for it).
const chromiumSkip = missingChromium(t) || testPeer(t, 'esbuild').skip;

t.test('a Chromium that does not start is a failed runtime, and the run leaves no server listening', { skip: chromiumSkip }, async (t) => {
  const { runRuntimes } = await import('../bench/runtimes.js');
  const servers = () => process.getActiveResourcesInfo().filter((r) => r === 'TCPServerWrap').length;
  const before = servers();
  // /bin/false: a Chromium binary that is there but does not start (a broken install, a snap stub in a container).
  const run = await runRuntimes({ quick: true, runtimes: ['chromium'], chromium: '/bin/false' });
  t.same(
    run.lines.map((l) => [l.event, l.runtime]),
    [['runtime-failed', 'chromium']],
    'reported as failed (the command exits 1)',
  );
  // The page's HTTP server stayed listening on 127.0.0.1, and the command, its results printed, never exited.
  t.equal(servers(), before, 'no server left listening');
});

t.test('--only-runtimes names each runtime once', async (t) => {
  const a = await cli(['bench', '--runtimes', '--only-runtimes', 'node,node']);
  t.equal(a.code, 2, 'a runtime listed twice is a usage error (it ran twice)');
  t.match(a.stderr, '--only-runtimes: node is listed twice');
  const b = await cli(['bench', '--runtimes', '--only-runtimes', 'node,']);
  t.equal(b.code, 2);
  t.match(b.stderr, 'unknown runtime(s) ""', 'an empty name is shown as one');
});

t.test('the handshakes parts run exactly the warm-up asked for, before the timed handshakes', async (t) => {
  // workerd times a whole request from outside, so its measured requests ask for no warm-up (WORKERD_MEASURED);
  // its 5 warm-up handshakes per request were counted in its handshakes/s.
  const { runRuntimeParts } = await import('../bench/runtime-bench.js');
  const { WORKERD_MEASURED } = await import('../bench/runtimes.js');
  const { nobleProvider } = await import('../lib/crypto/noble.js');
  let clientShares = 0; // one per handshake: the client's x25519 key share
  const x25519 = nobleProvider.group('x25519')!;
  const counting = { ...nobleProvider, group: (name: Parameters<typeof nobleProvider.group>[0]) => (name === 'x25519' ? { ...x25519, start: (r: Uint8Array) => (clientShares++, x25519.start(r)) } : nobleProvider.group(name)) };
  for (const handshakeWarmup of [undefined, 0, 3]) {
    clientShares = 0;
    const [m] = await runRuntimeParts({ runtime: 'node', quick: true, crypto: counting, verify: false, warmupMs: 0, rounds: 1, parts: ['handshakes'], handshakeWarmup });
    t.equal(m!.amount, 40, 'the quick run times 40 handshakes');
    t.equal(clientShares, 40 + (handshakeWarmup ?? 5), `handshakeWarmup ${handshakeWarmup}: ${handshakeWarmup ?? 5} more before them`);
  }
  t.equal(WORKERD_MEASURED.handshakeWarmup, 0, "workerd's measured requests run only what they measure");
});

t.test('a runtime that takes longer than its time limit is stopped and reported, and the run goes on', { skip: chromiumSkip || testPeer(t, 'deno').skip || testPeer(t, 'workerd').skip }, async (t) => {
  // A stalled page or process kept the command waiting forever (Chromium's, workerd's) or for 10 minutes.
  // Not quick: the warm-up alone lasts 2 s inside the runtime, so each one is still running at 1.5 s.
  const { runRuntimes } = await import('../bench/runtimes.js');
  const { execFileSync } = await import('node:child_process');
  const run = await runRuntimes({ quick: false, runtimes: ['deno', 'chromium', 'workerd'], timeoutMs: 1500 });
  t.same(
    run.lines.map((l) => [l.event, l.runtime, l.error]),
    [
      ['runtime-failed', 'deno', 'timed out after 1500 ms'],
      ['runtime-failed', 'chromium', 'timed out after 1500 ms'],
      ['runtime-failed', 'workerd', 'timed out after 1500 ms'],
    ],
    'each one failed at its limit',
  );
  // What each one ran is stopped: no child of this process is left, Deno, Chromium or workerd (bounded wait:
  // SIGKILL and the browser's close land a moment later; `ps` itself is the one child expected).
  const left = () =>
    execFileSync('ps', ['-o', 'pid=,args=', '--ppid', String(process.pid)], { encoding: 'utf8' })
      .split('\n')
      .map((l) => l.trim())
      .filter((l) => l !== '' && !/^\d+ ps /.test(l));
  for (let i = 0; i < 100 && left().length > 0; i++) await new Promise((r) => setTimeout(r, 50));
  t.same(left(), [], 'no runtime left running');
});
