/**
 * Test helpers for the interoperability tests: run another TLS stack (openssl, gnutls-serv/gnutls-cli,
 * tshark, the vendored Python tools tlsfuzzer and tlslite-ng) or the `qkd-tls` command line as a child process, wait for what it prints, talk to it over its
 * stdin, and make sure it is gone when the test ends. Every wait is bounded in time; every child is killed
 * (by its own pid) in the test's teardown.
 */
import { spawn, spawnSync, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import * as net from 'node:net';
import { delimiter, join } from 'node:path';
import type { Readable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import type tap from 'tap';

/** The type of a tap subtest's `t`. */
export type Tap = Parameters<Parameters<typeof tap.test>[0]>[0];

/** True under continuous integration, where a missing peer program is a failure, never a skip. */
export const UNDER_CI = Boolean(process.env.CI);

/** The compiled command-line entry point (dist/bin/qkd-tls.js). */
export const QKD_TLS_BIN = fileURLToPath(new URL('../../bin/qkd-tls.js', import.meta.url));

/** A 32-byte SHA-256 PSK and its identity, shared by the interop tests (hex, as the other tools take it). */
export const PSK_HEX = '6b3a1f0e9d8c7b6a5948372615f4e3d2c1b0a9f8e7d6c5b4a3928170f6e5d4c3';
export const PSK_IDENTITY = 'client1';
/** The same key with its last byte changed: a wrong key whose binder cannot verify. */
export const WRONG_PSK_HEX = PSK_HEX.slice(0, -2) + '00';

/**
 * The alert an OpenSSL server of `version` (as in "3.0.13", or `openssl version`'s "OpenSSL 3.0.13 ...") sends for
 * a PSK binder it cannot verify: illegal_parameter up to 3.3, decrypt_error (RFC 8446 §4.2.11.2, via §6.2) from 3.4
 * on (openssl/openssl#25176). The interop tests pin it: Node 20 and the openssl command (3.0), Node 24 (3.5).
 */
export function opensslBinderAlert(version: string): 'illegal_parameter' | 'decrypt_error' {
  const m = /(\d+)\.(\d+)\.\d+/.exec(version);
  if (!m) throw new Error(`not an OpenSSL version: ${version}`);
  const [major, minor] = [Number(m[1]), Number(m[2])];
  return major > 3 || (major === 3 && minor >= 4) ? 'decrypt_error' : 'illegal_parameter';
}

/** What a test needs to register clean-up and to record a failure. */
export interface TestLike {
  teardown(fn: () => unknown): void;
  fail(message: string): unknown;
  comment(...message: unknown[]): unknown;
}

/** The full path of an executable on PATH, or null. */
export function findExecutable(name: string): string | null {
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    if (!dir) continue;
    const candidate = join(dir, name);
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // not here
    }
  }
  return null;
}

/**
 * Checks that the peer programs are installed. Returns false when they all are, else a skip reason for the
 * subtests. Under CI a missing program is also recorded as a failure, so the suite cannot pass without it.
 */
export function missingPrograms(t: TestLike, ...names: string[]): string | false {
  const missing = names.filter((n) => findExecutable(n) === null);
  if (missing.length === 0) return false;
  const reason = `${missing.join(', ')} not installed (Debian: apt-get install openssl gnutls-bin tshark)`;
  if (UNDER_CI) t.fail(`${reason}: the interop tests must run under CI`);
  else t.comment(`skipping: ${reason}`);
  return reason;
}

/** The folder of the test-only peer package (test/peers: other runtimes, a browser driver, a bundler, Node 24). */
export const TEST_PEERS_DIR = fileURLToPath(new URL('../../../test/peers/', import.meta.url));

/**
 * The path of an executable from the test-only peer package (`test/peers/node_modules/.bin/NAME`: bun, deno,
 * workerd, esbuild, node — Node 24), or a skip reason. `.ci/run` installs that package (`npm ci --prefix
 * test/peers`); a user's `npm ci` does not. Under CI a missing peer is also recorded as a failure, never a skip.
 */
export function testPeer(t: TestLike, name: string): { path: string; skip: false } | { path: null; skip: string } {
  const path = join(TEST_PEERS_DIR, 'node_modules', '.bin', name);
  try {
    accessSync(path, constants.X_OK);
    return { path, skip: false };
  } catch {
    const reason = `${name} not installed (npm ci --prefix test/peers installs the test-only runtimes)`;
    if (UNDER_CI) t.fail(`${reason}: this test must run under CI`);
    else t.comment(`skipping: ${reason}`);
    return { path: null, skip: reason };
  }
}

/** Debian's Python, which runs the vendored Python peers (tlsfuzzer, tlslite-ng) with python3-ecdsa. */
export const PYTHON = '/usr/bin/python3';

/**
 * The folder of the vendored, pinned, unmodified test tools (tlsfuzzer/ and tlslite-ng/, see its README.md):
 * the environment variable TLSFUZZER_VENDOR, else `../shared/vendor` beside the repository (or beside the
 * worktree's parent) holding `marker` (a path inside it). Undefined when it is not there.
 */
export function findVendor(marker: string): string | undefined {
  if (process.env.TLSFUZZER_VENDOR) return process.env.TLSFUZZER_VENDOR;
  const repo = fileURLToPath(new URL('../../../', import.meta.url));
  for (const dir of [join(repo, '..', 'shared', 'vendor'), join(repo, '..', '..', 'shared', 'vendor')]) {
    try {
      accessSync(join(dir, marker), constants.R_OK);
      return dir;
    } catch {
      // not here
    }
  }
  return undefined;
}

/**
 * Checks that PYTHON imports `modules` with `pythonPath` (the vendored folders). Returns false when it does,
 * else a skip reason; under CI a missing tool is also recorded as a failure, never a skip.
 */
export function missingPython(t: TestLike, what: string, pythonPath: readonly string[] | undefined, modules: readonly string[]): string | false {
  let reason: string | undefined;
  if (!pythonPath) reason = `${what} is not vendored at ../shared/vendor (or TLSFUZZER_VENDOR)`;
  else {
    const r = spawnSync(PYTHON, ['-c', `import ${modules.join(', ')}`], {
      env: { ...process.env, PYTHONPATH: pythonPath.join(delimiter), PYTHONDONTWRITEBYTECODE: '1' },
      encoding: 'utf8',
      timeout: 30_000,
    });
    if (r.error) reason = `${PYTHON} cannot run (${r.error.message}; Debian: apt-get install python3 python3-ecdsa)`;
    else if (r.status !== 0) {
      const why = r.stderr.trim().split('\n').pop();
      reason = `${PYTHON} with PYTHONPATH=${pythonPath.join(delimiter)} cannot import ${modules.join(', ')} (Debian: apt-get install python3-ecdsa): ${why}`;
    }
  }
  if (!reason) return false;
  if (UNDER_CI) t.fail(`${reason}: ${what} must run under CI`);
  else t.comment(`skipping: ${reason}`);
  return reason;
}

/** A free TCP port on 127.0.0.1 (for peers that cannot listen on port 0 and report the port they got). */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as net.AddressInfo;
      s.close(() => resolve(port));
    });
  });
}

/**
 * Starts `openssl s_server -accept 127.0.0.1:0 ARGS...` and returns it with the port it reports ("ACCEPT
 * 127.0.0.1:PORT"). The kernel picks the port as s_server listens, so no other process (tap runs two test files
 * at once) can take it in between, as it can a port found free beforehand. Its stdin stays open (s_server
 * shuts down at the end of stdin); killed in `t`'s teardown.
 */
export async function opensslServer(t: TestLike, args: readonly string[], ms: number): Promise<{ peer: Peer; port: number }> {
  const peer = spawnPeer(t, 'openssl', ['s_server', '-accept', '127.0.0.1:0', ...args]);
  const accept = /^ACCEPT 127\.0\.0\.1:(\d+)$/m;
  const text = await peer.waitFor(accept, ms, 'stdout');
  return { peer, port: Number(accept.exec(text)![1]) };
}

/**
 * Starts `gnutls-serv --port PORT ARGS...` on a free port and returns it once it listens on IPv4. gnutls-serv
 * cannot report a port the kernel picked (it prints "port 0"), so a port found free beforehand can be taken by
 * another process in between; gnutls-serv then says "bind() failed" for IPv4 (and listens on IPv6 only), and
 * this tries again on another port, up to three times. Killed in `t`'s teardown.
 */
export async function gnutlsServer(t: TestLike, args: readonly string[], ms: number): Promise<{ peer: Peer; port: number }> {
  for (let attempt = 1; ; attempt++) {
    const port = await freePort();
    const peer = spawnPeer(t, 'gnutls-serv', ['--port', String(port), ...args]);
    const text = await peer.waitFor(/listening on IPv4 .*\.\.\.(done|bind\(\) failed)/, ms);
    if (/listening on IPv4 .*\.\.\.done/.test(text)) return { peer, port };
    await peer.kill();
    if (attempt === 3) throw new Error(`gnutls-serv could not listen on IPv4 three times:\n${peer.transcript()}`);
    t.comment(`gnutls-serv: port ${port} was taken in the meantime; another one`);
  }
}

/** Rejects with a message naming `what` (computed when the time is up) unless `promise` settles within `ms`. */
export async function withTimeout<T>(promise: Promise<T>, ms: number, what: string | (() => string)): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${typeof what === 'string' ? what : what()}`)), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

export interface PeerExit {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
}

/** A running child process with its output collected. */
export class Peer {
  private out = '';
  private err = '';
  private exit: PeerExit | null = null;
  private readonly waiters = new Set<() => void>();
  /** Settles when the process has exited (never rejects). */
  readonly exited: Promise<PeerExit>;

  constructor(
    readonly name: string,
    readonly child: ChildProcessWithoutNullStreams,
  ) {
    child.stdout.on('data', (b: Buffer) => {
      this.out += b.toString('latin1');
      this.notify();
    });
    child.stderr.on('data', (b: Buffer) => {
      this.err += b.toString('latin1');
      this.notify();
    });
    // A peer that exits while we write to it must not crash the test with EPIPE.
    child.stdin.on('error', () => {});
    this.exited = new Promise((resolve) => {
      child.once('close', (code, signal) => {
        this.exit = { code, signal };
        this.notify();
        resolve(this.exit);
      });
      child.once('error', (e) => {
        this.err += `\n[spawn error: ${e.message}]`;
        this.exit = { code: null, signal: null };
        this.notify();
        resolve(this.exit);
      });
    });
  }

  get stdout(): string {
    return this.out;
  }
  get stderr(): string {
    return this.err;
  }
  /** stdout and stderr together (for assertions on a tool that mixes them). */
  get output(): string {
    return this.out + this.err;
  }
  get hasExited(): boolean {
    return this.exit !== null;
  }

  /** Writes to the peer's stdin. */
  write(text: string | Uint8Array): void {
    this.child.stdin.write(text);
  }

  /** Closes the peer's stdin. */
  end(): void {
    this.child.stdin.end();
  }

  /**
   * Waits until `test` holds for the collected output of `stream` (default: stdout and stderr), and returns
   * that output. Fails if the peer exits first or after `ms` milliseconds, quoting what it printed.
   */
  async waitFor(test: RegExp | string | ((text: string) => boolean), ms: number, stream: 'stdout' | 'stderr' | 'output' = 'output'): Promise<string> {
    const pred = typeof test === 'function' ? test : typeof test === 'string' ? (s: string) => s.includes(test) : (s: string) => test.test(s);
    const text = (): string => (stream === 'stdout' ? this.out : stream === 'stderr' ? this.err : this.output);
    if (pred(text())) return text();
    let check: () => void = () => {};
    const printed = new Promise<string>((resolve, reject) => {
      check = (): void => {
        if (pred(text())) resolve(text());
        else if (this.exit) reject(new Error(`${this.name} exited (${this.describeExit()}) before printing ${String(test)}:\n${this.transcript()}`));
      };
      this.waiters.add(check);
      check();
    });
    try {
      return await withTimeout(printed, ms, () => `${this.name} to print ${String(test)}\n${this.transcript()}`);
    } finally {
      this.waiters.delete(check);
    }
  }

  /** Waits (bounded) for the process to exit and returns its exit status. */
  async waitExit(ms: number): Promise<PeerExit> {
    return withTimeout(this.exited, ms, () => `${this.name} to exit\n${this.transcript()}`);
  }

  /** Stops the process: SIGTERM, then SIGKILL if it is still there after `graceMs`. */
  async kill(signal: NodeJS.Signals = 'SIGTERM', graceMs = 2000): Promise<PeerExit> {
    if (this.exit) return this.exit;
    this.child.kill(signal);
    const timer = setTimeout(() => {
      if (!this.exit) this.child.kill('SIGKILL');
    }, graceMs);
    const result = await this.exited;
    clearTimeout(timer);
    return result;
  }

  /** What the peer printed, for failure messages. */
  transcript(): string {
    return `--- ${this.name} stdout ---\n${this.out.slice(-4000)}\n--- ${this.name} stderr ---\n${this.err.slice(-4000)}`;
  }

  private describeExit(): string {
    return this.exit?.signal ? `signal ${this.exit.signal}` : `code ${this.exit?.code}`;
  }

  private notify(): void {
    for (const w of [...this.waiters]) w();
  }
}

/**
 * Spawns a peer program with piped stdio. Its stdin stays open until the test closes it (OpenSSL's s_server
 * shuts down when its stdin ends), and the process is killed in `t`'s teardown if it is still running.
 */
export function spawnPeer(t: TestLike, command: string, args: readonly string[], options: { env?: NodeJS.ProcessEnv; cwd?: string } = {}): Peer {
  const child = spawn(command, args, {
    stdio: ['pipe', 'pipe', 'pipe'],
    env: { ...process.env, ...options.env },
    cwd: options.cwd,
  });
  const peer = new Peer(`${command.split('/').pop()} ${args.slice(0, 2).join(' ')}`, child);
  t.teardown(() => peer.kill());
  return peer;
}

/** Runs `node dist/bin/qkd-tls.js ARGS...` (the command line as users run it). */
export function spawnQkdTls(t: TestLike, args: readonly string[], options: { env?: NodeJS.ProcessEnv; cwd?: string } = {}): Peer {
  return spawnPeer(t, process.execPath, [QKD_TLS_BIN, ...args], options);
}

/**
 * The guard for a qkd-tls command that ends on its own (a usage error, --help, a refused configuration): only a
 * hang catcher, since a killed command fails on its exit code. Generous because a command's start scales with the
 * machine's load: on 2 cores at a load of ~20, 15 s and 20 s guards killed commands that were only slow to start
 * (cli-roles: 16 at once; cli-key-source-usage), and they failed with exit code null.
 */
export const EXITS_WITHIN_MS = 120_000;

/**
 * Runs `node dist/bin/qkd-tls.js ARGS...` to its end, with `input` (default nothing) on its stdin, and returns
 * its exit code and output. Killed after `ms` (a guard against a hang, not a timing assertion: a killed command
 * fails on its exit code).
 */
export function runQkdTls(args: readonly string[], options: { ms?: number; input?: string } = {}): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const { ms = 60_000, input = '' } = options;
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [QKD_TLS_BIN, ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
    child.stdin.on('error', () => {}); // a command that exits without reading its input
    child.stdin.end(input);
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (b: Buffer) => (stdout += b.toString()));
    child.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
    const guard = setTimeout(() => child.kill('SIGKILL'), ms);
    child.once('error', (e) => {
      clearTimeout(guard);
      reject(e);
    });
    child.once('close', (code) => {
      clearTimeout(guard);
      resolve({ code, stdout, stderr });
    });
  });
}

/** Parses the JSON lines a `--json` qkd-tls command printed, ignoring anything else. */
export function jsonEvents(text: string): Record<string, unknown>[] {
  const events: Record<string, unknown>[] = [];
  for (const line of text.split('\n')) {
    const s = line.trim();
    if (!s.startsWith('{')) continue;
    try {
      events.push(JSON.parse(s) as Record<string, unknown>);
    } catch {
      // not one of ours
    }
  }
  return events;
}

/** The first event named `name` among the JSON lines in `text`. */
export function jsonEvent(text: string, name: string): Record<string, unknown> | undefined {
  return jsonEvents(text).find((e) => e.event === name);
}

/**
 * Reads from a stream until at least `expected` bytes have arrived (fails if it ends, errors, or `ms` pass
 * first), then pauses it so that later data waits for the next reader.
 */
export async function readBytes(stream: Readable, expected: number, ms: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let total = 0;
  return withTimeout(
    new Promise<Buffer>((resolve, reject) => {
      const done = (e?: Error): void => {
        stream.off('data', onData);
        stream.off('end', onEnd);
        stream.off('error', onError);
        // Hold later data in the stream's buffer for the next reader.
        stream.pause();
        if (e) reject(e);
        else resolve(Buffer.concat(chunks));
      };
      const onData = (b: Buffer): void => {
        chunks.push(b);
        total += b.length;
        if (total >= expected) done();
      };
      const onEnd = (): void => done(new Error(`stream ended after ${total} of ${expected} bytes: ${JSON.stringify(Buffer.concat(chunks).toString('latin1'))}`));
      const onError = (e: Error): void => done(e);
      stream.on('data', onData);
      stream.once('end', onEnd);
      stream.once('error', onError);
      stream.resume();
    }),
    ms,
    `${expected} bytes`,
  );
}

/** Waits (bounded) for an event on an emitter; rejects on `error` first. */
export async function once<T = unknown>(emitter: NodeJS.EventEmitter, event: string, ms: number): Promise<T> {
  return withTimeout(
    new Promise<T>((resolve, reject) => {
      const onEvent = (value: T): void => {
        emitter.off('error', onError);
        resolve(value);
      };
      const onError = (e: Error): void => {
        emitter.off(event, onEvent);
        reject(e);
      };
      emitter.once(event, onEvent);
      if (event !== 'error') emitter.once('error', onError);
    }),
    ms,
    `event "${event}"`,
  );
}

/** Reverses each line as OpenSSL's `s_server -rev` does. */
export function reversedLine(line: string): string {
  return [...line].reverse().join('');
}
