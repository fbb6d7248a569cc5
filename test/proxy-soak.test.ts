/**
 * Soak: 10,000 connections through one `qkd-tls proxy` process that runs both ends of the tunnel (a client
 * service chained to a server service, from a config file), 50 at a time, each echoing a few random bytes.
 * Afterwards the process must hold no more file descriptors and no more memory than after the first hundred
 * connections (with a tolerance for the allocator and the JIT), every connection must have been logged as
 * closed, and every byte must have come back intact.
 *
 * How fast it goes is reported, never asserted, nor bounded: a run took 26–42 s on an idle machine and 188 s on a
 * loaded one (2 cores, three CPU hogs and a second test suite). What ends a stalled proxy's run is each exchange's
 * own bound ({@link EXCHANGE_MS}): a connection that makes no progress for that long fails the test, naming it.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { backend, echo, exchange, KEY_HEX, processUsage, sleep, spawnChainedProxy, type SpawnedProxy } from './proxy-helpers.js';

const TOTAL = 10_000;
const BATCH = 50;
const WARMUP = 100;
const HEAP_MIB = 48;
/** The liveness bound of one exchange (connect, handshake, echo, close): ~1 s each under load, 50 at a time. */
const EXCHANGE_MS = 20_000;

// The whole run scales with the machine's load (188 s measured under load, 12 s short of the total time bound this
// file had, and 2/3 of tap's 300 s per file): a safety net only, since a stall fails within EXCHANGE_MS. Told to the runner.
t.setTimeout(900_000);

/** Waits until the proxy has logged `n` connection lines (each connection logs one per service: in, out). */
async function logged(p: SpawnedProxy, n: number): Promise<void> {
  for (let i = 0; i < 500; i++) {
    if (p.lines.filter((l) => l.includes('"event":"connection"')).length >= n) return;
    await sleep(20);
  }
  throw new Error(`only ${p.lines.filter((l) => l.includes('"event":"connection"')).length} of ${n} connection lines after 10 s`);
}

/** Samples fds and RSS once the process has settled (the transport lets closing sockets linger up to 2 s). */
async function settledUsage(pid: number): Promise<{ fds: number; rssKiB: number }> {
  let u = processUsage(pid);
  for (let i = 0; i < 25; i++) {
    await sleep(100);
    const v = processUsage(pid);
    if (v.fds === u.fds && i >= 3) return v;
    u = v;
  }
  return u;
}

t.test(`${TOTAL} connections: no file descriptor or memory growth`, async (t) => {
  const b = await backend(t, echo);
  const dir = mkdtempSync(join(tmpdir(), 'qkd-soak-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'soak.conf');
  // The server service's port, found free beforehand, so that the client service can name it.
  const config = (outPort: number): string => {
    writeFileSync(
      file,
      [
        'json = yes',
        `psk = ${KEY_HEX}`,
        'identity = soak',
        'kex-modes = psk_ke', // the soak is about resources, not about (EC)DHE: keep the handshakes cheap
        '[in]',
        'role = client',
        'accept = 127.0.0.1:0',
        `connect = 127.0.0.1:${outPort}`,
        '[out]',
        'role = server',
        `accept = 127.0.0.1:${outPort}`,
        `connect = 127.0.0.1:${b.port}`,
      ].join('\n'),
    );
    return file;
  };
  // A bounded V8 heap makes the RSS comparison meaningful: without it V8 may grow its heap lazily (RSS goes
  // up with no leak at all); with it, a leak shows as growth or ends the process out of memory.
  const { proxy: p, ports } = await spawnChainedProxy(t, config, ['in', 'out'], { nodeArgs: [`--max-old-space-size=${HEAP_MIB}`, '--max-semi-space-size=4'] });
  const port = ports.in;
  const pid = p.child.pid!;

  let intact = 0;
  let done = 0;
  const errors: string[] = [];
  const started = performance.now();
  let warm: { fds: number; rssKiB: number } | undefined;
  let half: { fds: number; rssKiB: number } | undefined;
  while (done < TOTAL) {
    const batch = Array.from({ length: BATCH }, (_, i) => exchange(port, 64 + ((done + i) % 16) * 128, { ms: EXCHANGE_MS }));
    for (const r of await Promise.all(batch)) {
      if (r.error) errors.push(r.error);
      else if (r.receivedHash === r.sentHash) intact++;
    }
    done += BATCH;
    if (done === WARMUP) {
      await logged(p, 2 * WARMUP);
      warm = await settledUsage(pid);
    }
    if (done === TOTAL / 2) {
      await logged(p, 2 * done);
      half = await settledUsage(pid);
    }
  }
  const seconds = (performance.now() - started) / 1000;
  t.same(errors.slice(0, 3), [], `no connection failed (${errors.length} did)`);
  t.equal(intact, TOTAL, `every one of the ${TOTAL} connections echoed its bytes intact`);
  await logged(p, 2 * done);
  const end = await settledUsage(pid);
  const lines = p.lines.filter((l) => l.includes('"event":"connection"'));
  t.equal(lines.filter((l) => l.includes('"end":"closed"')).length, 2 * done, 'one "closed" line per connection and service');
  t.comment(`${done} connections in ${seconds.toFixed(1)} s (${(done / seconds).toFixed(0)} conn/s, each a TLS handshake and three TCP connections)`);
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  const cpu = (Number(stat[11]) + Number(stat[12])) / 100; // utime + stime, in clock ticks (USER_HZ = 100)
  t.comment(`CPU: proxy process ${cpu.toFixed(1)} s, test process ${(process.cpuUsage().user / 1e6 + process.cpuUsage().system / 1e6).toFixed(1)} s`);
  const mib = (kib: number): string => (kib / 1024).toFixed(1);
  t.comment(`after ${WARMUP}: ${warm!.fds} fds, ${mib(warm!.rssKiB)} MiB RSS; after ${TOTAL / 2}: ${half!.fds} fds, ${mib(half!.rssKiB)} MiB; after ${done}: ${end.fds} fds, ${mib(end.rssKiB)} MiB`);
  t.ok(end.fds <= warm!.fds + 2, `file descriptors: ${end.fds} after ${done}, ${warm!.fds} after ${WARMUP}`);
  // Memory: the heap is bounded (see above), but V8 and the JIT still grow to their working size during the
  // first thousand connections or so, hence a tolerance against the first hundred; after that it must stay
  // flat: a leak of a few KiB per connection would show between the middle and the end.
  t.ok(end.rssKiB <= warm!.rssKiB + 48 * 1024, `memory: ${mib(end.rssKiB)} MiB RSS after ${done}, ${mib(warm!.rssKiB)} MiB after ${WARMUP} (+48 MiB allowed)`);
  t.ok(end.rssKiB <= half!.rssKiB + 16 * 1024, `memory: ${mib(end.rssKiB)} MiB RSS after ${done}, ${mib(half!.rssKiB)} MiB after ${TOTAL / 2} (+16 MiB allowed)`);
  p.child.kill('SIGTERM');
  t.equal(await p.exited, 0);
});
