/**
 * What every benchmark shares: the PSK both stacks use, the two crypto providers, timing loops bounded in
 * count and time, the size presets (full, quick, tiny) and a description of the machine.
 *
 * Methodology in one breath: every figure is measured in the same run for qkd-tls and for Node's own
 * `node:tls` on loopback (127.0.0.1), with the same PSK, suite and group on both sides, after a warm-up;
 * rates are time-bounded (count what completes in a window) so that slow configurations cannot stall the run.
 */
import * as os from 'node:os';
import { createNodeProvider } from '../lib/crypto/node.js';
import { nobleProvider } from '../lib/crypto/noble.js';
import type { CryptoProvider, GroupName, HashName } from '../lib/crypto/provider.js';
import type { KexMode } from '../lib/config/options.js';
import type { Psk } from '../lib/psk/types.js';
import type { SupportedSuiteName } from '../lib/suites.js';

export type ProviderName = 'node' | 'noble';
export const PROVIDER_NAMES: readonly ProviderName[] = ['node', 'noble'];

/** The provider object for a name (the node provider is built once per process). */
export function provider(name: ProviderName): CryptoProvider {
  if (name === 'noble') return nobleProvider;
  nodeProviderInstance ??= createNodeProvider();
  return nodeProviderInstance;
}
let nodeProviderInstance: CryptoProvider | undefined;

/** The benchmark PSK: 32 fixed bytes (a stand-in for a QKD key; loopback only). */
export const PSK_SECRET = new Uint8Array(32).map((_, i) => (i * 37 + 11) & 0xff);
export const PSK_IDENTITY = 'qkd-bench';

/** The benchmark PSK, bound to `hash` (TLS_AES_256_GCM_SHA384 needs a SHA-384 PSK). */
export function benchPsk(hash: HashName = 'SHA-256'): Psk {
  return { identity: new TextEncoder().encode(PSK_IDENTITY), secret: PSK_SECRET, hash };
}

/** A handshake configuration: the key-exchange mode and, for psk_dhe_ke, the group. */
export interface KexConfig {
  readonly kex: KexMode;
  readonly group: GroupName | null;
}

export const KEX_CONFIGS: readonly KexConfig[] = [
  { kex: 'psk_ke', group: null },
  { kex: 'psk_dhe_ke', group: 'x25519' },
  { kex: 'psk_dhe_ke', group: 'secp256r1' },
];

export function kexLabel(k: KexConfig): string {
  return k.group ? `${k.kex} ${k.group}` : k.kex;
}

/** OpenSSL's name for a group, as node:tls's `ecdhCurve` option wants it. */
export function opensslCurve(group: GroupName): string {
  switch (group) {
    case 'x25519':
      return 'X25519';
    case 'secp256r1':
      return 'P-256';
    case 'secp384r1':
      return 'P-384';
    default:
      throw new Error(`node:tls has no group ${group}`);
  }
}

export const BULK_SUITES: readonly SupportedSuiteName[] = ['TLS_AES_128_GCM_SHA256', 'TLS_CHACHA20_POLY1305_SHA256', 'TLS_AES_256_GCM_SHA384'];

/** Sizes of one run. All loops are bounded by these counts and times. */
export interface BenchSizes {
  readonly name: 'full' | 'quick' | 'tiny';
  /** Time window of one handshake-rate measurement, and its warm-up. */
  readonly handshakeMs: number;
  readonly handshakeWarmupMs: number;
  /** Concurrent clients of the concurrent handshake measurement. */
  readonly concurrency: number;
  /** Time window of one bulk-transfer measurement, after a warm-up (the sender writes for both). */
  readonly bulkMs: number;
  readonly bulkWarmupMs: number;
  /** Idle connections held open for the memory measurement. */
  readonly idleConnections: number;
  /** The same with the noble provider, whose psk_dhe_ke handshakes are ~20x slower to set up. */
  readonly idleConnectionsNoble: number;
  /** Time window of one sans-IO measurement. */
  readonly sansioMs: number;
  /** How many times each socket measurement is repeated (the median is reported). */
  readonly rounds: number;
}

export const SIZES: Readonly<Record<BenchSizes['name'], BenchSizes>> = {
  full: { name: 'full', handshakeMs: 2500, handshakeWarmupMs: 400, concurrency: 16, bulkMs: 2500, bulkWarmupMs: 500, idleConnections: 1000, idleConnectionsNoble: 1000, sansioMs: 1000, rounds: 3 },
  quick: { name: 'quick', handshakeMs: 500, handshakeWarmupMs: 100, concurrency: 16, bulkMs: 500, bulkWarmupMs: 300, idleConnections: 1000, idleConnectionsNoble: 500, sansioMs: 150, rounds: 1 },
  tiny: { name: 'tiny', handshakeMs: 60, handshakeWarmupMs: 0, concurrency: 4, bulkMs: 80, bulkWarmupMs: 0, idleConnections: 100, idleConnectionsNoble: 100, sansioMs: 20, rounds: 1 },
};

/**
 * The clocks a measurement reads: wall time, and the CPU time this process has used. The bench reads the process's
 * own; a test injects others, to check which clock a figure is counted in without timing anything.
 */
export interface BenchClock {
  /** Monotonic wall-clock time, in milliseconds. */
  now(): number;
  /** CPU time (user + system, every thread) this process has used so far, in microseconds. */
  cpuMicros(): number;
}

export const PROCESS_CLOCK: BenchClock = {
  now: () => performance.now(),
  cpuMicros: () => {
    const u = process.cpuUsage();
    return u.user + u.system;
  },
};

/** Completions per second of wall time, and per CPU-second of this process. */
export interface AsyncRate {
  readonly perSecond: number;
  /**
   * Every operation started in the window (those that end after it too) over the CPU time from its opening until
   * the last of them ended: what each costs this process, comparable with {@link syncRate}'s figures. A window
   * that used less than 10 ms of CPU (a clock too coarse for it) gives its wall-clock rate.
   */
  readonly perCpuSecond: number;
}

/**
 * Counts how many times `op` completes in `durationMs` (after `warmupMs` of the same), with `concurrency`
 * chains running at once. Returns completions per second of wall time (and per CPU-second). Each chain stops
 * starting new operations once the window closes; operations still running then are awaited but not counted
 * in the wall-clock rate.
 */
export async function asyncRate(op: () => Promise<void>, durationMs: number, warmupMs: number, concurrency = 1, clock: BenchClock = PROCESS_CLOCK): Promise<AsyncRate> {
  const window = async (ms: number): Promise<AsyncRate> => {
    let n = 0;
    let late = 0;
    const cpu = clock.cpuMicros();
    const start = clock.now();
    const end = start + ms;
    let last = start;
    let firstLate = Infinity;
    await Promise.all(
      Array.from({ length: concurrency }, async () => {
        while (clock.now() < end) {
          await op();
          const now = clock.now();
          if (now <= end) {
            n++;
            last = now;
          } else {
            late++;
            firstLate = Math.min(firstLate, now);
          }
        }
      }),
    );
    const cpuSeconds = (clock.cpuMicros() - cpu) / 1e6;
    const allSeconds = (clock.now() - start) / 1000;
    const perCpuSecond = cpuSeconds >= 0.01 ? (n + late) / cpuSeconds : (n + late) / allSeconds;
    // A window too short to complete anything counts the first operation to finish, over its own time.
    if (n === 0) return { perSecond: 1000 / (firstLate - start), perCpuSecond };
    return { perSecond: (n / Math.max(last - start, 1e-3)) * 1000, perCpuSecond };
  };
  if (warmupMs > 0) await window(warmupMs);
  return window(durationMs);
}

/**
 * Runs `op` repeatedly for `durationMs` of wall time (after a short warm-up) and returns operations per
 * CPU-second of this process: for synchronous work that is the true cost, and it stays put when other
 * processes compete for the cores (the benchmark machines are shared).
 */
export function syncRate(op: () => void, durationMs: number, clock: BenchClock = PROCESS_CLOCK): number {
  warmUp(op, durationMs);
  const cpu = clock.cpuMicros();
  const { n, elapsed } = timedLoop(op, durationMs, clock);
  const seconds = (clock.cpuMicros() - cpu) / 1e6;
  // The clock of cpuUsage is coarse; a very short run falls back to wall time.
  return seconds >= 0.01 ? n / seconds : (n / elapsed) * 1000;
}

/** Runs `op` repeatedly for `durationMs` (after a short warm-up); returns operations per second of wall time. */
export function wallRate(op: () => void, durationMs: number): number {
  warmUp(op, durationMs);
  const { n, elapsed } = timedLoop(op, durationMs);
  return (n / elapsed) * 1000;
}

/** Runs `op` for a quarter of `durationMs` (at most 100 ms), so that the timed runs are of warm code. */
function warmUp(op: () => void, durationMs: number): void {
  const warm = performance.now() + Math.min(100, durationMs / 4);
  while (performance.now() < warm) op();
}

/** Runs `op` as often as fits in `durationMs` of wall time: how many runs, in how many ms. */
function timedLoop(op: () => void, durationMs: number, clock: BenchClock = PROCESS_CLOCK): { n: number; elapsed: number } {
  let n = 0;
  const start = clock.now();
  const end = start + durationMs;
  let now = start;
  do {
    op();
    n++;
    now = clock.now();
  } while (now < end);
  return { n, elapsed: now - start };
}

export function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/** Runs `measure` `rounds` times and returns the median. */
export async function medianOf(rounds: number, measure: () => Promise<number>): Promise<number> {
  const xs: number[] = [];
  for (let i = 0; i < rounds; i++) xs.push(await measure());
  return median(xs);
}

export interface MachineInfo {
  readonly cpu: string;
  readonly cores: number;
  readonly memoryGiB: number;
  readonly os: string;
  readonly node: string;
  readonly openssl: string;
  readonly loadAverage: readonly number[];
  readonly date: string;
}

export function machineInfo(): MachineInfo {
  const cpus = os.cpus();
  return {
    cpu: cpus[0]?.model.trim() ?? 'unknown',
    cores: cpus.length,
    memoryGiB: Math.round((os.totalmem() / 2 ** 30) * 10) / 10,
    os: `${os.type()} ${os.release()} ${os.arch()}`,
    node: process.version,
    openssl: process.versions.openssl ?? 'none',
    loadAverage: os.loadavg().map((x) => Math.round(x * 100) / 100),
    date: new Date().toISOString(),
  };
}

/** Resolves after the event loop has had a turn (lets sockets close between measurements). */
export function settle(ms = 20): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
