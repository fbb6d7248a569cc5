/**
 * Resident memory per idle connection: a fresh child process per stack opens N connections to itself and
 * holds them idle after the handshake; RSS per connection = (RSS with N open - RSS before) / N, each
 * reading taken after garbage collection. Both endpoints of each connection live in the child, so the figure
 * reported is per endpoint: the delta over 2N, the mean of a client and a server endpoint. One child per
 * measurement keeps the stacks from polluting each other's heaps.
 */
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { MemoryChildConfig, MemoryChildReport } from './memory-child.js';

export interface MemoryMeasurement {
  /** KiB of RSS per idle connection endpoint: the mean of a client and a server endpoint. */
  readonly kibPerEndpoint: number;
  /** KiB of JavaScript heap per idle connection endpoint. */
  readonly heapKibPerEndpoint: number;
  readonly report: MemoryChildReport;
}

const CHILD_TIMEOUT_MS = 180_000;

export async function idleMemory(config: MemoryChildConfig): Promise<MemoryMeasurement> {
  const child = spawn(process.execPath, ['--expose-gc', fileURLToPath(new URL('./memory-child.js', import.meta.url)), JSON.stringify(config)], {
    stdio: ['ignore', 'pipe', 'pipe'],
    // The child must not inherit a provider override meant for the parent.
    env: { ...process.env, QKD_TLS_CRYPTO: undefined },
  });
  let out = '';
  let err = '';
  child.stdout.on('data', (b: Buffer) => (out += b.toString()));
  child.stderr.on('data', (b: Buffer) => (err += b.toString()));
  const timer = setTimeout(() => child.kill(), CHILD_TIMEOUT_MS);
  const code = await new Promise<number | null>((resolve) => child.once('close', resolve));
  clearTimeout(timer);
  if (code !== 0) throw new Error(`memory child (${JSON.stringify(config)}) failed with code ${code}: ${err.trim()}`);
  const report = JSON.parse(out.trim().split('\n').pop()!) as MemoryChildReport;
  return {
    kibPerEndpoint: (report.rssAfter - report.rssBefore) / (2 * report.connections) / 1024,
    heapKibPerEndpoint: (report.heapAfter - report.heapBefore) / (2 * report.connections) / 1024,
    report,
  };
}
