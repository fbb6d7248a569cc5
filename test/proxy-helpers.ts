/**
 * Shared pieces of the proxy tests (test/proxy*.test.ts): static keys, a log collector, TCP backends, a
 * client that sends and checks a byte stream, and a spawned `qkd-tls proxy` process. Everything listens on
 * 127.0.0.1 with port 0, and every wait is bounded.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import * as net from 'node:net';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ConnectionRecord, ProxyLogger } from '../lib/proxy/log.js';
import { type Proxy, type ProxyKeySource, type ServiceConfig, startProxy } from '../lib/proxy/proxy.js';
import type { Psk } from '../lib/psk/types.js';

export type Teardown = { teardown(fn: () => unknown): void };

/** The CLI entry point, compiled next to this file's compiled form (dist/test → dist/bin). */
export const CLI = join(dirname(fileURLToPath(import.meta.url)), '..', 'bin', 'qkd-tls.js');

export const KEY_HEX = '00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff';
export const PSK: Psk = { identity: new TextEncoder().encode('k1'), secret: Buffer.from(KEY_HEX, 'hex'), hash: 'SHA-256' };

export function staticKeys(psks: readonly Psk[] = [PSK]): ProxyKeySource {
  return { clientPsks: async () => psks, server: psks, description: 'static test PSK' };
}

/**
 * A client service on 127.0.0.1 (accept on any port, connect to port 9) with static keys, `more` on top: for the
 * option checks that startProxy makes before anything listens or connects.
 */
export function serviceConfig(more: Record<string, unknown> = {}, psks: readonly Psk[] = [PSK]): ServiceConfig {
  return { name: 'svc', role: 'client', accept: { host: '127.0.0.1', port: 0 }, connect: { host: '127.0.0.1', port: 9 }, keys: staticKeys(psks), ...more } as ServiceConfig;
}

/**
 * Calls `onEnd` when the socket's peer ended its stream, `onError` when the connection failed — also when Node
 * reports a reset as an end: Node 20's libuv does so if the RST arrives while received data is still unread.
 * A zero-byte write, possible while our side is open, asks the kernel: ECONNRESET means a reset without a FIN
 * (EPIPE, a reset after the peer's FIN, leaves the end as it was). Like the proxy's confirmNotReset, except
 * that it also probes behind data still queued (a test client would rather wait than miss a reset).
 */
export function onEndOrError(s: net.Socket, onEnd: () => void, onError: (e: Error) => void): void {
  let ended = false;
  s.once('error', (e) => (ended ? undefined : onError(e)));
  s.once('end', () => {
    if (s.writableEnded) return onEnd();
    s.write(new Uint8Array(0), (e) => {
      if (e && (e as NodeJS.ErrnoException).code !== 'EPIPE') return; // 'error' reports it
      ended = true;
      onEnd();
    });
  });
}

/** Collects what a proxy logs; `waitFor` resolves once a record matches (or rejects after `ms`). */
export function collector() {
  const records: ConnectionRecord[] = [];
  const events: { name: string; fields: Record<string, unknown> }[] = [];
  const waiters: { pred: (r: ConnectionRecord) => boolean; resolve: (r: ConnectionRecord) => void }[] = [];
  const logger: ProxyLogger = {
    connection(r) {
      records.push(r);
      for (const w of [...waiters]) {
        if (w.pred(r)) {
          waiters.splice(waiters.indexOf(w), 1);
          w.resolve(r);
        }
      }
    },
    event(name, fields) {
      events.push({ name, fields });
    },
  };
  const waitFor = (pred: (r: ConnectionRecord) => boolean, ms = 10_000): Promise<ConnectionRecord> => {
    const found = records.find(pred);
    if (found) return Promise.resolve(found);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no matching log record within ${ms} ms; have: ${JSON.stringify(records)}`)), ms);
      waiters.push({
        pred,
        resolve: (r) => {
          clearTimeout(timer);
          resolve(r);
        },
      });
    });
  };
  return { logger, records, events, waitFor };
}

export async function listen(server: net.Server): Promise<number> {
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  return (server.address() as net.AddressInfo).port;
}

/** A TCP backend. `handler` gets each connection (allowHalfOpen: the test decides when to end). */
export async function backend(tt: Teardown, handler: (s: net.Socket) => void) {
  const sockets = new Set<net.Socket>();
  const server = net.createServer({ allowHalfOpen: true }, (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    s.on('error', () => {});
    handler(s);
  });
  const port = await listen(server);
  tt.teardown(() => {
    for (const s of sockets) s.destroy();
    return new Promise<void>((r) => server.close(() => r()));
  });
  return { port, server, sockets };
}

/** Echoes every byte, and ends its side when the client ends its own (half-close passed through). */
export function echo(s: net.Socket): void {
  s.pipe(s);
}

/** Reads everything until the client ends, then answers with the SHA-256 of it (hex) and ends. */
export function hashBack(s: net.Socket): void {
  const h = createHash('sha256');
  let n = 0;
  s.on('data', (d: Buffer) => {
    h.update(d);
    n += d.length;
  });
  s.on('end', () => s.end(`${n} ${h.digest('hex')}`));
}

/** A client proxy and a server proxy in this process, wired to a backend port. */
export async function proxyPair(
  tt: Teardown,
  backendPort: number,
  opts: { client?: Partial<ServiceConfig>; server?: Partial<ServiceConfig> } = {},
) {
  const serverLog = collector();
  const server = await startProxy({
    services: [
      {
        name: 'srv',
        role: 'server',
        accept: { host: '127.0.0.1', port: 0 },
        connect: { host: '127.0.0.1', port: backendPort },
        keys: staticKeys(),
        ...opts.server,
      },
    ],
    logger: serverLog.logger,
  });
  tt.teardown(() => server.close());
  const clientLog = collector();
  const client = await startProxy({
    services: [
      {
        name: 'cli',
        role: 'client',
        accept: { host: '127.0.0.1', port: 0 },
        connect: { host: '127.0.0.1', port: server.services[0].address.port },
        keys: staticKeys(),
        ...opts.client,
      },
    ],
    logger: clientLog.logger,
  });
  tt.teardown(() => client.close());
  return { client, server, clientLog, serverLog, port: client.services[0].address.port, serverPort: server.services[0].address.port };
}

export interface ExchangeResult {
  /** Bytes received, their SHA-256, and the SHA-256 of what was sent. */
  received: number;
  receivedHash: string;
  sentHash: string;
  /** The response itself when `keep` was set. */
  data?: Buffer;
  /** Set when the connection failed (reset, ...) rather than ending cleanly. */
  error?: string;
}

/**
 * Connects to `port`, sends `size` random bytes (in chunks, honouring backpressure), half-closes, and reads
 * until the other side ends. Resolves in every case (an error is part of the result); rejects only after `ms`.
 */
export function exchange(port: number, size: number, opts: { keep?: boolean; ms?: number; chunk?: number } = {}): Promise<ExchangeResult> {
  return new Promise((resolve, reject) => {
    const sentHash = createHash('sha256');
    const recvHash = createHash('sha256');
    const kept: Buffer[] = [];
    let received = 0;
    let sentDigest = '';
    const s = net.connect({ host: '127.0.0.1', port, allowHalfOpen: true });
    const timer = setTimeout(() => {
      s.destroy();
      reject(new Error(`exchange on port ${port} did not finish within ${opts.ms ?? 30_000} ms (received ${received})`));
    }, opts.ms ?? 30_000);
    const finish = (error?: string): void => {
      clearTimeout(timer);
      if (!sentDigest) sentDigest = sentHash.digest('hex');
      resolve({ received, receivedHash: recvHash.digest('hex'), sentHash: sentDigest, ...(opts.keep ? { data: Buffer.concat(kept) } : {}), ...(error ? { error } : {}) });
    };
    s.on('data', (d: Buffer) => {
      received += d.length;
      recvHash.update(d);
      if (opts.keep) kept.push(d);
    });
    onEndOrError(
      s,
      () => {
        s.end();
        finish();
      },
      (e) => finish(e.message),
    );
    s.once('connect', async () => {
      const chunk = opts.chunk ?? 256 * 1024;
      let sent = 0;
      while (sent < size && !s.destroyed) {
        const c = randomBytes(Math.min(chunk, size - sent));
        sentHash.update(c);
        sent += c.length;
        if (!s.write(c)) {
          // Wait for drain (or close), and leave no listener behind for the next round.
          await new Promise<void>((resolve) => {
            const done = (): void => {
              s.off('drain', done);
              s.off('close', done);
              resolve();
            };
            s.once('drain', done);
            s.once('close', done);
          });
        }
      }
      sentDigest = sentHash.digest('hex');
      if (!s.destroyed) s.end();
    });
  });
}

/** A `qkd-tls` child process (`proxy`, `server`, ...) whose stderr lines (JSON with --json) are collected. */
export interface SpawnedProxy {
  readonly child: ChildProcess;
  readonly lines: string[];
  /** Resolves with the first line (parsed JSON) that matches; rejects after `ms` or if the process exits. */
  waitFor(pred: (o: Record<string, unknown>) => boolean, ms?: number): Promise<Record<string, unknown>>;
  /** Resolves with the exit code. */
  readonly exited: Promise<number | null>;
  /** The port each service listens on, from its `listening` line. */
  ports: Record<string, number>;
}

export function spawnProxy(tt: Teardown, args: string[], opts: { env?: NodeJS.ProcessEnv; nodeArgs?: string[] } = {}): Promise<SpawnedProxy> {
  return spawnCli(tt, 'proxy', args, opts);
}

/** Runs `qkd-tls COMMAND ...args` and follows what it reports on stderr (JSON lines, or `{ text }`). */
export async function spawnCli(tt: Teardown, command: string, args: string[], opts: { env?: NodeJS.ProcessEnv; nodeArgs?: string[] } = {}): Promise<SpawnedProxy> {
  const child = spawn(process.execPath, [...(opts.nodeArgs ?? []), CLI, command, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...opts.env } });
  const lines: string[] = [];
  const parsed: Record<string, unknown>[] = [];
  const waiters = new Set<{ pred: (o: Record<string, unknown>) => boolean; resolve: (o: Record<string, unknown>) => void }>();
  let buffered = '';
  child.stdout.resume();
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (d: string) => {
    buffered += d;
    let nl;
    while ((nl = buffered.indexOf('\n')) >= 0) {
      const line = buffered.slice(0, nl);
      buffered = buffered.slice(nl + 1);
      lines.push(line);
      let o: Record<string, unknown>;
      try {
        o = JSON.parse(line) as Record<string, unknown>;
      } catch {
        o = { text: line };
      }
      parsed.push(o);
      for (const w of waiters) if (w.pred(o)) (waiters.delete(w), w.resolve(o));
    }
  });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  tt.teardown(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    return exited;
  });
  // The default bound only catches a hang: a child's start scales with the machine's load (with a start slowed to
  // 21 s, 10 s failed cli-roles' proxy config test before the proxy could print its first line).
  const waitFor = (pred: (o: Record<string, unknown>) => boolean, ms = 60_000): Promise<Record<string, unknown>> => {
    const found = parsed.find(pred);
    if (found) return Promise.resolve(found);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no matching line within ${ms} ms; stderr:\n${lines.join('\n')}`)), ms);
      const w = {
        pred,
        resolve: (o: Record<string, unknown>) => {
          clearTimeout(timer);
          resolve(o);
        },
      };
      waiters.add(w);
      void exited.then((code) => {
        if (!waiters.has(w)) return;
        waiters.delete(w);
        clearTimeout(timer);
        reject(new Error(`qkd-tls ${command} exited (code ${code}) before a matching line; stderr:\n${lines.join('\n')}`));
      });
    });
  };
  const sp: SpawnedProxy = { child, lines, waitFor, exited, ports: {} };
  return sp;
}

/** A TCP port free on 127.0.0.1 a moment ago (for a config that must name a port before it is listened on). */
export async function freePort(): Promise<number> {
  const s = net.createServer();
  const port = await listen(s);
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

/**
 * Runs `qkd-tls proxy --config FILE` for a config in which a client service connects to a server service of the
 * same process, so must name its port before it listens: `writeConfig(port)` writes the file for a server
 * service on `port` and returns its path. The port is found free beforehand, and another process (tap runs two
 * test files at once, each making connections from ephemeral ports) can take it in between: the proxy then exits
 * with EADDRINUSE, and this tries again on another port, up to three times. Resolves once `services` listen.
 */
export async function spawnChainedProxy(
  tt: Teardown & { comment(...message: unknown[]): unknown },
  writeConfig: (port: number) => string,
  services: string[],
  opts: { env?: NodeJS.ProcessEnv; nodeArgs?: string[] } = {},
): Promise<{ proxy: SpawnedProxy; ports: Record<string, number>; port: number }> {
  for (let attempt = 1; ; attempt++) {
    const port = await freePort();
    const proxy = await spawnProxy(tt, ['--config', writeConfig(port)], opts);
    try {
      return { proxy, ports: await servicePorts(proxy, services), port };
    } catch (e) {
      if (attempt === 3 || !proxy.lines.some((l) => l.includes('EADDRINUSE'))) throw e;
      tt.comment(`port ${port} was taken in the meantime; another one`);
    }
  }
}

/** Waits for the `listening` line of each named service and records its port. */
export async function servicePorts(p: SpawnedProxy, names: string[]): Promise<Record<string, number>> {
  for (const name of names) {
    const o = await p.waitFor((l) => l.event === 'listening' && l.service === name);
    p.ports[name] = Number(String(o.accept).split(':').pop());
  }
  return p.ports;
}

/** Open file descriptors and resident memory of a Linux process (from /proc). */
export function processUsage(pid: number): { fds: number; rssKiB: number } {
  const fds = readdirSync(`/proc/${pid}/fd`).length;
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return { fds, rssKiB: m ? Number(m[1]) : NaN };
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/**
 * Polls `cond` every 10 ms until it holds; rejects naming `what` after `ms` (a guard against a hang, generous
 * enough for a loaded machine: a state the test needs is waited for, never assumed after a fixed time).
 */
export async function waitUntil(cond: () => boolean, what: string | (() => string), ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting until ${typeof what === 'string' ? what : what()}`);
    await sleep(10);
  }
}

/** Starts a proxy with one service and registers its shutdown. */
export async function oneService(tt: Teardown, service: ServiceConfig, logger: ProxyLogger): Promise<Proxy> {
  const p = await startProxy({ services: [service], logger });
  tt.teardown(() => p.close());
  return p;
}
