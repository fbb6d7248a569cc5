/**
 * The post-quantum hybrid X25519MLKEM768 next to x25519: handshakes per second and CPU time per handshake,
 * for qkd-tls (this process, each provider) and for Node 24's own node:tls (OpenSSL 3.5, the test-only `node`
 * peer of test/peers, in a child process), in the same run and under the same load.
 *
 * Node 20 (which runs qkd-tls here) has no ML-KEM, so the node:tls figures for both groups come from Node 24,
 * and every row names the Node that produced its reference. Each measurement is one client at a time (a
 * whole connection: TCP connect, TLS 1.3 PSK handshake, 1-byte greeting, close) with both endpoints in one
 * process, so the CPU figure is client plus server. Without Node 24 installed (`npm ci --prefix test/peers`),
 * the qkd-tls hybrid rows are compared with qkd-tls's own x25519 and say so.
 */
import { spawn } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { GroupName } from '../lib/crypto/provider.js';
import { PSK_IDENTITY, PSK_SECRET, type ProviderName } from './common.js';
import { startQkdTarget } from './handshakes.js';

/** One measured configuration: rate and CPU per handshake (both endpoints). */
export interface HandshakeCost {
  readonly perSecond: number;
  readonly cpuUsPerHandshake: number;
}

/** What Node 24 measured, and which Node it was. */
export interface Node24Costs {
  readonly version: string;
  readonly openssl: string;
  readonly x25519: HandshakeCost;
  readonly X25519MLKEM768: HandshakeCost;
}

export const HYBRID_GROUPS = ['x25519', 'X25519MLKEM768'] as const satisfies readonly GroupName[];

/** The Node 24 binary of the test-only peer package, or null when it is not installed. */
export function node24Path(): string | null {
  const path = fileURLToPath(new URL('../../test/peers/node_modules/.bin/node', import.meta.url));
  try {
    accessSync(path, constants.X_OK);
    return path;
  } catch {
    return null;
  }
}

/** qkd-tls, one provider, one group: sequential handshakes for `durationMs` after `warmupMs`. */
export async function qkdHandshakeCost(group: GroupName, providerName: ProviderName, durationMs: number, warmupMs: number): Promise<HandshakeCost> {
  const target = await startQkdTarget({ kex: 'psk_dhe_ke', group }, providerName);
  try {
    return await measure(() => target.connectOnce(), durationMs, warmupMs);
  } finally {
    await target.close();
  }
}

/** Sequential runs of `op`: completions per wall-clock second, and this process's CPU µs per completion. */
async function measure(op: () => Promise<void>, durationMs: number, warmupMs: number): Promise<HandshakeCost> {
  const warmEnd = performance.now() + warmupMs;
  while (performance.now() < warmEnd) await op();
  const cpu = process.cpuUsage();
  const start = performance.now();
  const end = start + durationMs;
  let n = 0;
  do {
    await op();
    n++;
  } while (performance.now() < end);
  const elapsed = performance.now() - start;
  const used = process.cpuUsage(cpu);
  return { perSecond: (n / elapsed) * 1000, cpuUsPerHandshake: (used.user + used.system) / n };
}

/**
 * Node 24's node:tls, both groups, in one child process (the same loop as {@link measure}, in plain
 * JavaScript). Resolves null when Node 24 is not installed; rejects if it fails or exceeds its time bound.
 */
export async function node24HandshakeCosts(durationMs: number, warmupMs: number): Promise<Node24Costs | null> {
  const bin = node24Path();
  if (!bin) return null;
  const config = JSON.stringify({ durationMs, warmupMs, psk: Buffer.from(PSK_SECRET).toString('hex'), identity: PSK_IDENTITY, groups: HYBRID_GROUPS });
  const limitMs = 30_000 + 4 * (durationMs + warmupMs);
  return new Promise((resolve, reject) => {
    const child = spawn(bin, ['-e', NODE24_SCRIPT], { env: { ...process.env, QKD_TLS_BENCH: config }, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d));
    child.stderr.on('data', (d: Buffer) => (err += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), limitMs);
    child.once('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.once('close', (code) => {
      clearTimeout(timer);
      if (code !== 0) return reject(new Error(`the Node 24 benchmark exited with ${code}: ${err.slice(-2000)}`));
      try {
        resolve(JSON.parse(out.trim().split('\n').pop()!) as Node24Costs);
      } catch (e) {
        reject(new Error(`the Node 24 benchmark printed no result: ${out.slice(-500)} ${err.slice(-500)}`, { cause: e }));
      }
    });
  });
}

/** Run by Node 24: node:tls server and client in one process, PSK on TLS_AES_128_GCM_SHA256, one group at a time. */
const NODE24_SCRIPT = `
const tls = require('node:tls');
const cfg = JSON.parse(process.env.QKD_TLS_BENCH);
const key = Buffer.from(cfg.psk, 'hex');
const CURVE = { x25519: 'X25519', X25519MLKEM768: 'X25519MLKEM768' };
const common = { minVersion: 'TLSv1.3', ciphers: 'TLS_AES_128_GCM_SHA256' };
async function cost(group) {
  const ecdhCurve = CURVE[group];
  const server = tls.createServer({ ...common, ecdhCurve, pskCallback: () => key }, (s) => {
    s.on('error', () => {});
    s.on('end', () => s.destroy());
    s.write(Buffer.of(0x2a));
  });
  server.on('tlsClientError', () => {});
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  const port = server.address().port;
  const once = () => new Promise((resolve, reject) => {
    const c = tls.connect({ ...common, host: '127.0.0.1', port, ecdhCurve, pskCallback: () => ({ psk: key, identity: cfg.identity }), checkServerIdentity: () => undefined });
    c.once('data', () => { c.destroy(); resolve(); });
    c.once('error', reject);
  });
  const warmEnd = performance.now() + cfg.warmupMs;
  while (performance.now() < warmEnd) await once();
  const cpu = process.cpuUsage();
  const start = performance.now();
  const end = start + cfg.durationMs;
  let n = 0;
  do { await once(); n++; } while (performance.now() < end);
  const elapsed = performance.now() - start;
  const used = process.cpuUsage(cpu);
  await new Promise((r) => server.close(r));
  return { perSecond: (n / elapsed) * 1000, cpuUsPerHandshake: (used.user + used.system) / n };
}
(async () => {
  const result = { version: process.version, openssl: process.versions.openssl };
  for (const g of cfg.groups) result[g] = await cost(g);
  console.log(JSON.stringify(result));
})().catch((e) => { console.error(e); process.exit(1); });
`;
