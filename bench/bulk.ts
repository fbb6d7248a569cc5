/**
 * Bulk throughput of one connection over loopback: a sender in a child process writes 64 KiB chunks for a
 * fixed time, the receiver in this process counts what arrives. After a warm-up (so that the sender's code is
 * compiled by the time it is measured), MB/s = bytes received in the window / its length, from the first
 * byte after the warm-up to the last byte, with MB = 10^6 bytes. Sender and receiver run in different processes, as they would on different
 * machines, so each side's record protection has a core of its own (a worker thread was measured to cost
 * the pure-JavaScript provider a third of its throughput: the threads share V8's helper threads).
 *
 * CPU time is counted too, per 16 KiB of application data (one full record), for each side over its window:
 * user + system time of the whole process (garbage-collector threads included), from `process.cpuUsage()`.
 * That shows where a stack spends its time whatever the machine's load does to the wall-clock figures. The
 * receiver reads that clock twice: when its window opens and when the stream ends (the close that follows the
 * last chunk costs next to nothing). It read it on every chunk until 2026-12-07, and a `process.cpuUsage()` call
 * (getrusage, which sums every thread of the process) cost 5–16 µs here, once per 16 KiB chunk for both stacks:
 * part of what it measured was itself.
 *
 * Both ends are the same stack (qkd-tls to qkd-tls, node:tls to node:tls) with the same cipher suite.
 * node:tls cannot negotiate TLS_AES_256_GCM_SHA384 with a PSK: OpenSSL's PSK callbacks (the only PSK interface
 * node:tls has) always bind the key to SHA-256. For that suite its handshake uses a throwaway self-signed
 * certificate (lib/tools/certificates.ts, on loopback, verification off), which does not change the bulk path.
 */
import * as net from 'node:net';
import * as tls from 'node:tls';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { createServer } from '../lib/transport/node.js';
import { SUITES, type SupportedSuiteName } from '../lib/suites.js';
import { benchPsk, provider, PSK_SECRET, type ProviderName } from './common.js';
import type { BulkSenderConfig, BulkSenderReport } from './bulk-sender.js';
import { selfSignedCertificate, type PemPair } from '../lib/tools/certificates.js';

export type BulkStack = { readonly stack: 'qkd'; readonly provider: ProviderName } | { readonly stack: 'node' };

export interface BulkMeasurement {
  /** Throughput seen by the receiver, in MB/s (10^6 bytes per second). */
  readonly mbps: number;
  readonly bytes: number;
  readonly seconds: number;
  /** CPU time (user + system, µs) per 16 KiB of application data, of the sending and of the receiving process. */
  readonly senderCpuUsPerRecord: number;
  readonly receiverCpuUsPerRecord: number;
}

/** The unit of the CPU figures: one full TLS record of application data. */
const RECORD_BYTES = 16384;

/** Extra time allowed beyond the sending window before the measurement is declared stuck. */
const SLACK_MS = 60_000;

let certificate: PemPair | undefined;

/** Measures one connection's throughput with `suite`: `warmupMs` of sending not counted, then `durationMs` counted. */
export async function bulkTransfer(which: BulkStack, suite: SupportedSuiteName, durationMs: number, warmupMs = 0): Promise<BulkMeasurement> {
  let bytes = 0;
  let first = 0;
  let last = 0;
  /** Bytes and time when the measured window began (the first chunk after the warm-up). */
  let windowBytes = -1;
  let windowStart = 0;
  /** This process's CPU time when the window opened, and how much it had used by the end of the stream. */
  let windowCpu: NodeJS.CpuUsage | undefined;
  let receiverCpu: NodeJS.CpuUsage | undefined;
  let resolveEnd!: () => void;
  let rejectEnd!: (e: Error) => void;
  const ended = new Promise<void>((resolve, reject) => {
    resolveEnd = resolve;
    rejectEnd = reject;
  });
  const receive = (s: net.Socket | import('node:stream').Duplex): void => {
    s.on('data', (b: Buffer) => {
      const now = performance.now();
      if (bytes === 0) first = now;
      bytes += b.length;
      last = now;
      // The window opens with the first chunk after the warm-up; that chunk's bytes travelled before it.
      if (windowBytes < 0 && now - first >= warmupMs) {
        windowBytes = bytes;
        windowStart = now;
        windowCpu = process.cpuUsage();
      }
    });
    s.on('end', () => {
      if (windowCpu) receiverCpu = process.cpuUsage(windowCpu);
      resolveEnd();
      s.destroy();
    });
    s.on('error', (e: Error) => rejectEnd(e));
  };

  let port: number;
  let closeServer: () => Promise<void>;
  if (which.stack === 'qkd') {
    const server = createServer({ crypto: provider(which.provider), suites: [suite], psks: [benchPsk(SUITES[suite].hash)] }, receive);
    server.on('tlsClientError', (e: Error) => rejectEnd(e));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    port = server.address().port;
    closeServer = () => new Promise<void>((resolve) => (server.destroyAll(), server.close(() => resolve())));
  } else {
    const viaPsk = SUITES[suite].hash === 'SHA-256';
    if (!viaPsk) certificate ??= await selfSignedCertificate('qkd-tls bench', ['localhost', '127.0.0.1'], 2);
    const key = Buffer.from(PSK_SECRET);
    const options: tls.TlsOptions = viaPsk
      ? { pskCallback: () => key, ciphers: suite, minVersion: 'TLSv1.3' }
      : { key: certificate!.key, cert: certificate!.cert, ciphers: suite, minVersion: 'TLSv1.3' };
    const server = tls.createServer(options, receive);
    server.on('tlsClientError', (e: Error) => rejectEnd(e));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    port = (server.address() as net.AddressInfo).port;
    closeServer = () => new Promise<void>((resolve) => server.close(() => resolve()));
  }

  const config: BulkSenderConfig = { ...which, suite, port, durationMs: warmupMs + durationMs, warmupMs };
  const child = spawn(process.execPath, [fileURLToPath(new URL('./bulk-sender.js', import.meta.url)), JSON.stringify(config)], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  child.stdout.on('data', (b: Buffer) => (out += b.toString()));
  child.stderr.on('data', (b: Buffer) => (err += b.toString()));
  const report = new Promise<BulkSenderReport>((resolve, reject) => {
    child.once('error', reject);
    child.once('close', (code) => {
      try {
        const m = JSON.parse(out.trim().split('\n').pop() ?? '') as BulkSenderReport;
        if (m.error) reject(new Error(`bulk sender: ${m.error}`));
        else resolve(m);
      } catch {
        reject(new Error(`bulk sender exited with code ${code} without a report: ${err.trim()}`));
      }
    });
  });
  let timer: NodeJS.Timeout | undefined;
  const stuck = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`bulk transfer did not finish within ${durationMs + SLACK_MS} ms`)), durationMs + SLACK_MS);
  });
  let sent: BulkSenderReport;
  try {
    [sent] = await Promise.race([Promise.all([report, ended]), stuck]);
    if (sent.bytes !== bytes) throw new Error(`bulk transfer lost data: sent ${sent.bytes} bytes, received ${bytes}`);
  } finally {
    clearTimeout(timer);
    if (child.exitCode === null) child.kill();
    await closeServer();
  }
  // The window must have opened and seen chunks after its first: the sender writes for longer than the warm-up,
  // so anything else means the transfer was cut short, and there would be no figures of the window's own.
  if (!receiverCpu || last <= windowStart) throw new Error(`bulk transfer too short to measure (${bytes} bytes received)`);
  if (sent.windowBytes <= 0) throw new Error('bulk sender wrote nothing after its warm-up');
  // What arrived after the window opened, over the time it took.
  const counted = bytes - windowBytes;
  const seconds = (last - windowStart) / 1000;
  return {
    mbps: counted / seconds / 1e6,
    bytes,
    seconds,
    senderCpuUsPerRecord: ((sent.windowUserUs + sent.windowSystemUs) * RECORD_BYTES) / sent.windowBytes,
    receiverCpuUsPerRecord: ((receiverCpu.user + receiverCpu.system) * RECORD_BYTES) / counted,
  };
}
