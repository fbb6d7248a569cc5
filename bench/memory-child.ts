/**
 * The child process of the memory benchmark (memory.ts): opens N idle TLS connections to itself (client and
 * server in this process) with one stack, and reports its resident set size before and after.
 *
 * Run as `node --expose-gc dist/bench/memory-child.js '<json MemoryChildConfig>'`; prints one JSON
 * {@link MemoryChildReport} line on stdout.
 */
import * as net from 'node:net';
import * as tls from 'node:tls';
import type { Duplex } from 'node:stream';
import { connect, createServer } from '../lib/transport/node.js';
import { benchPsk, provider, PSK_IDENTITY, PSK_SECRET, type ProviderName } from './common.js';

export type MemoryChildConfig = ({ readonly stack: 'qkd'; readonly provider: ProviderName } | { readonly stack: 'node' }) & {
  readonly connections: number;
};

export interface MemoryChildReport {
  readonly connections: number;
  readonly rssBefore: number;
  readonly rssAfter: number;
  readonly heapBefore: number;
  readonly heapAfter: number;
}

/** Connections opened (and closed) before the baseline, so that one-time costs are not counted. */
const WARMUP_CONNECTIONS = 32;
const CONCURRENCY = 16;

interface Endpoints {
  open(): Promise<Duplex>;
  /** Server-side sockets currently open. */
  serverSockets(): number;
}

async function endpoints(config: MemoryChildConfig): Promise<Endpoints> {
  if (config.stack === 'qkd') {
    const crypto = provider(config.provider);
    const server = createServer({ crypto, psks: [benchPsk()] }, (s) => s.on('error', () => {}));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const port = server.address().port;
    return {
      open: () =>
        new Promise((resolve, reject) => {
          const c = connect({ host: '127.0.0.1', port, crypto, psks: [benchPsk()] }, () => resolve(c));
          c.once('error', reject);
        }),
      serverSockets: () => server.connections,
    };
  }
  const key = Buffer.from(PSK_SECRET);
  let open = 0;
  const server = tls.createServer({ pskCallback: () => key, minVersion: 'TLSv1.3' }, (s) => {
    open++;
    s.on('error', () => {});
    s.once('close', () => open--);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as net.AddressInfo).port;
  return {
    open: () =>
      new Promise((resolve, reject) => {
        const c = tls.connect({ host: '127.0.0.1', port, minVersion: 'TLSv1.3', pskCallback: () => ({ psk: key, identity: PSK_IDENTITY }), checkServerIdentity: () => undefined }, () =>
          resolve(c),
        );
        c.once('error', reject);
      }),
    serverSockets: () => open,
  };
}

async function openMany(ep: Endpoints, n: number): Promise<Duplex[]> {
  const out: Duplex[] = [];
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(CONCURRENCY, n) }, async () => {
      while (next < n) {
        next++;
        out.push(await ep.open());
      }
    }),
  );
  return out;
}

/** Waits until the server side has seen `n` connections (its handshake completes after the client's). */
async function serverCaughtUp(ep: Endpoints, n: number): Promise<void> {
  for (let i = 0; i < 500 && ep.serverSockets() < n; i++) await pause(10);
}

function pause(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

async function quiesce(): Promise<void> {
  const gc = (globalThis as { gc?: () => void }).gc;
  for (let i = 0; i < 3; i++) {
    gc?.();
    await pause(100);
  }
}

async function main(config: MemoryChildConfig): Promise<MemoryChildReport> {
  const ep = await endpoints(config);
  const warm = await openMany(ep, WARMUP_CONNECTIONS);
  await serverCaughtUp(ep, WARMUP_CONNECTIONS);
  for (const s of warm) s.destroy();
  for (let i = 0; i < 300 && ep.serverSockets() > 0; i++) await pause(10);
  await quiesce();
  const before = process.memoryUsage();
  const held = await openMany(ep, config.connections);
  await serverCaughtUp(ep, config.connections);
  await quiesce();
  const after = process.memoryUsage();
  if (held.length !== config.connections) throw new Error(`opened ${held.length} of ${config.connections} connections`);
  return { connections: held.length, rssBefore: before.rss, rssAfter: after.rss, heapBefore: before.heapUsed, heapAfter: after.heapUsed };
}

const arg = process.argv[2];
if (arg) {
  main(JSON.parse(arg) as MemoryChildConfig).then(
    (report) => {
      process.stdout.write(JSON.stringify(report) + '\n');
      process.exit(0);
    },
    (e: Error) => {
      process.stderr.write(`memory child: ${e.message}\n`);
      process.exit(1);
    },
  );
}
