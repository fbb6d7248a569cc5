/**
 * The sending half of the bulk benchmark (bulk.ts), run as a child process
 * (`node dist/bench/bulk-sender.js '<json BulkSenderConfig>'`): connects to the receiver, writes 64 KiB
 * chunks for the configured time (respecting backpressure), ends the stream and prints one JSON
 * {@link BulkSenderReport} line with the number of bytes it wrote and the CPU time it spent writing them
 * once the warm-up was over.
 */
import * as tls from 'node:tls';
import type { Duplex } from 'node:stream';
import { connect } from '../lib/transport/node.js';
import { SUITES, type SupportedSuiteName } from '../lib/suites.js';
import { benchPsk, provider, PSK_IDENTITY, PSK_SECRET, type ProviderName } from './common.js';

export type BulkSenderConfig = ({ readonly stack: 'qkd'; readonly provider: ProviderName } | { readonly stack: 'node' }) & {
  readonly suite: SupportedSuiteName;
  readonly port: number;
  /** How long to write in all, warm-up included. */
  readonly durationMs: number;
  /** The first part of durationMs, whose CPU time and bytes are left out of the report's window figures. */
  readonly warmupMs: number;
};

export interface BulkSenderReport {
  /** Bytes written in all. */
  readonly bytes: number;
  /** Bytes written after the warm-up, until the stream had ended, and this process's CPU time meanwhile (µs). */
  readonly windowBytes: number;
  readonly windowUserUs: number;
  readonly windowSystemUs: number;
  readonly error?: string;
}

type Sent = Omit<BulkSenderReport, 'error'>;

export const CHUNK_SIZE = 64 * 1024;

async function send(config: BulkSenderConfig): Promise<Sent> {
  const socket = await open(config);
  const chunk = new Uint8Array(CHUNK_SIZE).map((_, i) => (i * 131) & 0xff);
  let bytes = 0;
  const start = performance.now();
  const end = start + config.durationMs;
  const windowStart = start + Math.min(config.warmupMs, config.durationMs);
  let window: { bytes: number; cpu: NodeJS.CpuUsage } | undefined;
  await new Promise<void>((resolve, reject) => {
    socket.on('error', reject);
    const pump = (): void => {
      for (let now = performance.now(); now < end; now = performance.now()) {
        if (!window && now >= windowStart) window = { bytes, cpu: process.cpuUsage() };
        bytes += chunk.length;
        if (!socket.write(chunk)) {
          socket.once('drain', pump);
          return;
        }
      }
      // A run no longer than its warm-up opens the window only now, empty (bulk.ts refuses such a run).
      window ??= { bytes, cpu: process.cpuUsage() };
      socket.end(() => resolve());
    };
    pump();
  });
  // The window closes at the end callback, once everything written has been handed to the kernel.
  const cpu = process.cpuUsage(window!.cpu);
  return { bytes, windowBytes: bytes - window!.bytes, windowUserUs: cpu.user, windowSystemUs: cpu.system };
}

function open(config: BulkSenderConfig): Promise<Duplex> {
  return new Promise((resolve, reject) => {
    const suite = SUITES[config.suite];
    if (config.stack === 'qkd') {
      const s = connect({ host: '127.0.0.1', port: config.port, crypto: provider(config.provider), suites: [config.suite], psks: [benchPsk(suite.hash)] }, () =>
        resolve(s),
      );
      s.once('error', reject);
    } else {
      const key = Buffer.from(PSK_SECRET);
      const viaPsk = suite.hash === 'SHA-256';
      const s = tls.connect(
        {
          host: '127.0.0.1',
          port: config.port,
          ciphers: config.suite,
          minVersion: 'TLSv1.3',
          ...(viaPsk ? { pskCallback: () => ({ psk: key, identity: PSK_IDENTITY }), checkServerIdentity: () => undefined } : { rejectUnauthorized: false }),
        },
        () => resolve(s),
      );
      s.once('error', reject);
    }
  });
}

const arg = process.argv[2];
if (arg) {
  send(JSON.parse(arg) as BulkSenderConfig).then(
    (sent) => {
      process.stdout.write(JSON.stringify(sent satisfies BulkSenderReport) + '\n');
      process.exit(0);
    },
    (e: Error) => {
      process.stdout.write(JSON.stringify({ bytes: 0, windowBytes: 0, windowUserUs: 0, windowSystemUs: 0, error: e.message } satisfies BulkSenderReport) + '\n');
      process.exit(1);
    },
  );
}
