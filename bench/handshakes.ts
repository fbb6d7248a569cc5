/**
 * Handshakes per second over loopback TCP, qkd-tls against Node's own `node:tls`, both ends in this process.
 *
 * One "handshake" is a whole connection as an application sees it: TCP connect, the TLS 1.3 PSK handshake,
 * the server greeting the client with one byte of application data (so the server has finished its side
 * too), and the client closing. Measured sequentially (one client at a time: latency-bound) and with N
 * concurrent clients (throughput-bound). Both stacks use TLS_AES_128_GCM_SHA256 and the same 32-byte PSK.
 *
 * Node's side: OpenSSL always chooses psk_dhe_ke when the client offers it and cannot be told to offer
 * psk_ke alone through node:tls, so qkd-tls's psk_ke is compared with Node's psk_dhe_ke over x25519.
 */
import * as net from 'node:net';
import * as tls from 'node:tls';
import { connect, createServer } from '../lib/transport/node.js';
import type { GroupName } from '../lib/crypto/provider.js';
import { asyncRate, benchPsk, type AsyncRate, type BenchClock, opensslCurve, provider, PSK_IDENTITY, PSK_SECRET, type KexConfig, type ProviderName } from './common.js';

/** A running server and a way to make one connection to it. */
export interface HandshakeTarget {
  /** One connection: resolves once the client has the server's greeting and has closed. */
  connectOnce(): Promise<void>;
  close(): Promise<void>;
}

const GREETING = Uint8Array.of(0x2a);
const SUITE = 'TLS_AES_128_GCM_SHA256';
/** A handshake that takes longer than this fails the benchmark (keeps every loop bounded in time). */
const CONNECTION_TIMEOUT_MS = 15_000;

/** Measures handshakes/s against `target` for `durationMs`, with `concurrency` clients (per second and per CPU-second). */
export function handshakeRate(target: HandshakeTarget, durationMs: number, warmupMs: number, concurrency: number, clock?: BenchClock): Promise<AsyncRate> {
  return asyncRate(() => target.connectOnce(), durationMs, warmupMs, concurrency, clock);
}

/** A qkd-tls server and client on 127.0.0.1 with one key-exchange configuration and provider. */
export async function startQkdTarget(cfg: KexConfig, providerName: ProviderName): Promise<HandshakeTarget> {
  const crypto = provider(providerName);
  const psk = benchPsk();
  const common = {
    crypto,
    suites: [SUITE] as const,
    kexModes: [cfg.kex],
    ...(cfg.group ? { groups: [cfg.group] } : {}),
  };
  const server = createServer({ ...common, psks: [psk] }, (s) => {
    s.on('error', ignore);
    s.on('end', () => s.destroy());
    s.write(GREETING);
  });
  server.on('tlsClientError', ignore);
  server.on('socketError', ignore);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = server.address().port;
  return {
    connectOnce: () =>
      bounded(
        new Promise<void>((resolve, reject) => {
          const c = connect({ host: '127.0.0.1', port, psks: [psk], ...common, handshakeTimeout: CONNECTION_TIMEOUT_MS });
          c.once('data', () => {
            c.destroy();
            resolve();
          });
          c.once('error', reject);
        }),
      ),
    close: () => closeServer(server.server, () => server.destroyAll()),
  };
}

/** A node:tls server and client on 127.0.0.1 using the same PSK (TLS 1.3, psk_dhe_ke over `group`). */
export async function startNodeTarget(group: GroupName, opts: { suite?: string } = {}): Promise<HandshakeTarget> {
  const key = Buffer.from(PSK_SECRET);
  const ciphers = opts.suite ?? SUITE;
  const ecdhCurve = opensslCurve(group);
  const sockets = new Set<net.Socket>();
  const server = tls.createServer({ pskCallback: () => key, ciphers, minVersion: 'TLSv1.3', ecdhCurve }, (s) => {
    s.on('error', ignore);
    s.on('end', () => s.destroy());
    s.write(GREETING);
  });
  server.on('tlsClientError', ignore);
  server.on('connection', (s: net.Socket) => {
    sockets.add(s);
    s.once('close', () => sockets.delete(s));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as net.AddressInfo).port;
  return {
    connectOnce: () =>
      bounded(
        new Promise<void>((resolve, reject) => {
          const c = tls.connect({
            host: '127.0.0.1',
            port,
            pskCallback: () => ({ psk: key, identity: PSK_IDENTITY }),
            ciphers,
            minVersion: 'TLSv1.3',
            ecdhCurve,
            checkServerIdentity: () => undefined,
          });
          c.once('data', () => {
            c.destroy();
            resolve();
          });
          c.once('error', reject);
        }),
      ),
    close: () =>
      closeServer(server, () => {
        for (const s of sockets) s.destroy();
      }),
  };
}

function ignore(): void {}

function bounded(p: Promise<void>): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`a benchmark connection took more than ${CONNECTION_TIMEOUT_MS} ms`)), CONNECTION_TIMEOUT_MS);
  });
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
}

function closeServer(server: net.Server, destroyAll: () => void): Promise<void> {
  return new Promise((resolve) => {
    server.close(() => resolve());
    destroyAll();
  });
}
