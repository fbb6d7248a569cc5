/**
 * The QKD-TLS proxy (model 2 of the design): applications that cannot be changed keep speaking plain TCP;
 * a pair of proxies carries their bytes over TLS 1.3 keyed by pre-shared keys (QKD keys from a Key Manager,
 * or static PSKs).
 *
 * ```
 *  app ──TCP──▶ [client proxy] ══TLS 1.3 PSK══▶ [server proxy] ──TCP──▶ backend
 *               --role client                    --role server
 *               gets a key (Get_key),            finds the key by ID
 *               names its ID in the handshake    (Get_key_with_key_IDs)
 * ```
 *
 * One process may run several services (each a listening address, a role, a target and a key source).
 * Per connection the proxy: takes a key (client role) or resolves the one the peer names (server role);
 * connects to the target; pipes bytes both ways with backpressure (a slow reader slows the writer, memory
 * stays bounded); passes a half-close through (FIN on TCP ⇄ close_notify on TLS, RFC 8446 §6.1); enforces a
 * handshake timeout, a connect timeout, an idle timeout and a connection limit; and logs one line when the
 * connection ends. A failure ends only the connection it belongs to. An abnormal end is never disguised as
 * a clean one: the plain side is reset (RST) and the TLS side is closed without close_notify, so the
 * application sees an error rather than a silently truncated stream.
 *
 * Key cost: a client service takes a key (a QKD key: one ETSI 014 enc_keys, and a dec_keys on the remote side)
 * for every connection it accepts, at once, even one that closes without a byte (a load balancer's health check).
 * With `connectOnData` it waits for the application's first byte instead (see {@link ServiceConfig.connectOnData}).
 * A server service spends nothing before a ClientHello names a key: a probe of its port costs no key (and one that
 * closes or resets before sending a byte is logged "no-data" too).
 *
 * ```ts
 * const proxy = await startProxy({ services: [{ name: 'web', role: 'client', accept: { host: '127.0.0.1',
 *   port: 8080 }, connect: { host: 'proxy-b', port: 8443 }, keys }], logger: createLogger({ json: true }) });
 * process.once('SIGTERM', () => proxy.drain(30_000));
 * ```
 */
import * as net from 'node:net';
import { performance } from 'node:perf_hooks';
import type { Duplex } from 'node:stream';
import type { HandshakeInfo } from '../config/events.js';
import { checkCount, checkHostPort, checkTimerMs, MAX_TIMER_MS } from '../config/options.js';
import { TlsError, TransportError } from '../errors.js';
import { observer, reportCallbackError, thrownMessage, type CallbackErrorHandler } from '../callbacks.js';
import { wipe } from '../codec/bytes.js';
import { hostPortText } from '../codec/text.js';
import type { Psk } from '../psk/types.js';
import {
  type AsyncPskResolver,
  type ConnectOptions,
  connect,
  createServer,
  type QkdTlsServer,
  type QkdTlsSocket,
  type ServerTransportOptions,
} from '../transport/node.js';
import { confirmNotReset, endedBeforeAByte, resetSocket } from '../transport/tcp-end.js';
import { listenWebSocket, type WebSocketListener, type WebSocketRefusal } from '../transport/ws-server.js';
import { type ConnectionEnd, type ConnectionRecord, type ProxyLogger, silentLogger } from './log.js';

export type { ConnectionEnd, ConnectionRecord, ProxyLogger } from './log.js';

export interface HostPort {
  readonly host: string;
  readonly port: number;
}

/**
 * Where a service gets its keys (the shape of the CLI's key sources). A client service calls `clientPsks()`
 * once per connection (a QKD source returns a fresh key each time); a server service uses `server`: static
 * keys, or an asynchronous lookup by the identities the client offers (a QKD source fetches them by key ID).
 */
export interface ProxyKeySource {
  clientPsks(): Promise<readonly Psk[]>;
  /**
   * A lookup is passed the TLS socket of its connection: a source that leases keys wipes them when that
   * handshake is over (see {@link AsyncPskResolver}).
   */
  readonly server: readonly Psk[] | AsyncPskResolver;
  /** One line for the logs (never key material). */
  readonly description: string;
  /** Client: the handshake that used these keys (a list `clientPsks()` returned) is over; wipe them. */
  release?(psks: readonly Psk[]): void;
}

/** TLS settings of a service: the transport's options without the per-connection ones. */
export type ProxyTlsOptions = Omit<ConnectOptions, 'host' | 'port' | 'socket' | 'psks' | 'earlyData'> & Omit<ServerTransportOptions, 'psks'>;

export interface ServiceConfig {
  /** Names the service in every log line. */
  readonly name: string;
  /** client: accept plain TCP, connect with TLS. server: accept TLS, connect with plain TCP. */
  readonly role: 'client' | 'server';
  readonly accept: HostPort;
  readonly connect: HostPort;
  readonly keys: ProxyKeySource;
  /**
   * TLS settings; `handshakeTimeout` (ms) bounds each handshake (default 30 s; 0: no limit). It and the numbers
   * below are checked by startProxy: a value out of range is a RangeError naming the service and the option.
   */
  readonly tls?: ProxyTlsOptions;
  /**
   * Open connections beyond this many (an integer from 1) are refused at once (default
   * {@link DEFAULT_MAX_CONNECTIONS}); with `websocket`, connections that have not sent their upgrade request yet
   * count too (lib/transport/ws-server.ts).
   */
  readonly maxConnections?: number;
  /** End a connection after this many ms without a byte in either direction; 0 = never (default 5 min). */
  readonly idleTimeoutMs?: number;
  /** Give up connecting to the target after this many ms (default 10 s). */
  readonly connectTimeoutMs?: number;
  /**
   * Server role only: accept TLS over WebSocket (binary messages, what a page using qkd-tls/websocket sends)
   * instead of TCP. `origins` limits the pages that may connect; `maxMessageBytes` bounds a message (1 MiB).
   */
  readonly websocket?: { readonly origins?: readonly string[]; readonly maxMessageBytes?: number };
  /**
   * Client role only: take the key and connect to the target only once the application has sent its first byte
   * (default false: both at once, as each connection is accepted). A connection that ends before sending anything,
   * with a FIN or a reset (a load balancer's or monitor's health check: connect, then close), then costs no key
   * and no connection to the remote proxy, and is logged with end "no-data"; after its FIN the proxy closes its
   * side cleanly too. While it waits, the idle timeout applies (ending it with "idle-timeout"), the connection
   * counts toward `maxConnections`, and drain() waits for it like any open connection (the application may still
   * send; it is cut at the deadline). The first bytes and all that follow are held, read no further than the
   * socket's buffer (TCP flow control holds the rest), until the handshake is done, then forwarded in order.
   *
   * Not for protocols in which the server speaks first (SMTP, FTP, POP3 and IMAP banners, MySQL's greeting, SSH):
   * their client waits for the server, and the proxy for the client, until the idle timeout ends the connection.
   */
  readonly connectOnData?: boolean;
}

export interface ProxyOptions {
  readonly services: readonly ServiceConfig[];
  /**
   * Receives one record per connection and lifecycle events (default: none). An observer (lib/callbacks.ts): what
   * its methods throw goes to `onCallbackError` and changes nothing (the connection is counted, the proxy runs on).
   */
  readonly logger?: ProxyLogger;
  /**
   * Receives what an observer (`logger`) or a key source's `release` threw, as a CallbackError (default: one line on
   * console.error). Keys whose `release` threw are wiped by the proxy itself.
   */
  readonly onCallbackError?: CallbackErrorHandler;
}

export interface RunningService {
  readonly name: string;
  readonly role: 'client' | 'server';
  /** The address actually bound (port 0 in the configuration picks a free port). */
  readonly address: HostPort;
  readonly target: HostPort;
}

export interface ProxyStats {
  /** Connections open now. */
  readonly active: number;
  /** Connections accepted since the start (refused ones included). */
  readonly accepted: number;
  /** Finished connections, by how they ended. */
  readonly ended: Readonly<Record<ConnectionEnd, number>>;
  /** Bytes carried towards the targets and back, over all finished connections. */
  readonly bytesUp: number;
  readonly bytesDown: number;
}

export interface Proxy {
  readonly services: readonly RunningService[];
  stats(): ProxyStats;
  /**
   * Graceful shutdown: stop accepting, let open connections finish, and after `timeoutMs` (default
   * {@link DEFAULT_DRAIN_TIMEOUT_MS}; 0 or less: at once; Infinity, or more than 2^31 - 1: never; NaN: a
   * RangeError) cut the ones still open (logged with end "shutdown").
   * Resolves when every connection has been logged; a connection cut while its key source has not answered is not
   * held for it (a key that comes later is released unused). Calling it again shortens the deadline, never extends it.
   */
  drain(timeoutMs?: number): Promise<void>;
  /** Immediate shutdown: stop accepting and cut every open connection. */
  close(): Promise<void>;
}

export const DEFAULT_MAX_CONNECTIONS = 1000;
export const DEFAULT_IDLE_TIMEOUT_MS = 300_000;
export const DEFAULT_CONNECT_TIMEOUT_MS = 10_000;
export const DEFAULT_DRAIN_TIMEOUT_MS = 30_000;

/** Starts every service. Rejects (and leaves nothing listening) if any address cannot be bound. */
export async function startProxy(options: ProxyOptions): Promise<Proxy> {
  const engine = new ProxyEngine(options);
  await engine.start();
  return engine;
}

// --- the engine --------------------------------------------------------------------------------------------

/** Every way a connection ends, in the order of {@link ConnectionEnd} (the compiler checks that none is missing). */
const END_REASONS = Object.keys({
  closed: 0,
  'no-data': 0,
  rejected: 0,
  'key-unavailable': 0,
  'connect-failed': 0,
  'handshake-failed': 0,
  'idle-timeout': 0,
  'peer-aborted': 0,
  'target-aborted': 0,
  shutdown: 0,
} satisfies Record<ConnectionEnd, 0>) as ConnectionEnd[];

class ProxyEngine implements Proxy {
  readonly logger: ProxyLogger;
  readonly onCallbackError: CallbackErrorHandler | undefined;
  private readonly listeners: Listener[];
  private readonly open = new Set<ProxiedConnection>();
  private readonly idle: (() => void)[] = [];
  private nextId = 1;
  private acceptedCount = 0;
  private bytesUp = 0;
  private bytesDown = 0;
  private readonly ended = Object.fromEntries(END_REASONS.map((r) => [r, 0])) as Record<ConnectionEnd, number>;
  private stopping = false;
  private drainTimer: NodeJS.Timeout | undefined;
  private drainDeadline = Infinity;

  constructor(options: ProxyOptions) {
    if (options.services.length === 0) throw new TypeError('startProxy: no services configured');
    const names = new Set<string>();
    for (const s of options.services) {
      if (names.has(s.name)) throw new TypeError(`startProxy: two services are named "${s.name}"`);
      names.add(s.name);
      // Checked here, not by each connection: a client service builds its TLS socket once a connection comes.
      const service = `startProxy: service "${s.name}":`;
      // Unchecked, a role or a target port out of range was only met by the first connection, where net.connect's
      // throw (or a missing TLS server) took the whole process down; a host that is not a string failed after listening.
      if (s.role !== 'client' && s.role !== 'server') throw new TypeError(`${service} role must be "client" or "server", got ${String(s.role)}`);
      checkHostPort(`${service} accept`, s.accept, 0);
      checkHostPort(`${service} connect`, s.connect, 1);
      checkTimerMs(`${service} tls.handshakeTimeout`, s.tls?.handshakeTimeout, 0);
      checkTimerMs(`${service} idleTimeoutMs`, s.idleTimeoutMs, 0);
      checkTimerMs(`${service} connectTimeoutMs`, s.connectTimeoutMs, 1);
      checkCount(`${service} maxConnections`, s.maxConnections, 1);
      if (s.connectOnData !== undefined && typeof s.connectOnData !== 'boolean') {
        throw new TypeError(`${service} connectOnData must be true or false, got ${typeof s.connectOnData}`);
      }
      if (s.connectOnData && s.role !== 'client') {
        throw new TypeError(`${service} connectOnData is for the client role (a server service takes no key before a ClientHello names one)`);
      }
    }
    const logger = options.logger ?? silentLogger;
    this.onCallbackError = options.onCallbackError;
    this.logger = {
      connection: observer('logger.connection', (r: ConnectionRecord) => logger.connection(r), options.onCallbackError)!,
      event: observer('logger.event', (name: string, fields: Record<string, unknown>) => logger.event(name, fields), options.onCallbackError)!,
    };
    this.listeners = options.services.map((s) => new Listener(this, s));
  }

  get services(): RunningService[] {
    return this.listeners.map((l) => ({ name: l.config.name, role: l.config.role, address: l.address(), target: l.config.connect }));
  }

  async start(): Promise<void> {
    try {
      for (const l of this.listeners) await l.listen();
    } catch (e) {
      for (const l of this.listeners) l.close();
      throw e;
    }
    for (const l of this.listeners) {
      const a = l.address();
      this.logger.event('listening', {
        service: l.config.name,
        role: l.config.role,
        accept: hostPortText(a.host, a.port),
        connect: hostPortText(l.config.connect.host, l.config.connect.port),
        keys: l.config.keys.description,
      });
    }
  }

  stats(): ProxyStats {
    return { active: this.open.size, accepted: this.acceptedCount, ended: { ...this.ended }, bytesUp: this.bytesUp, bytesDown: this.bytesDown };
  }

  async drain(timeoutMs = DEFAULT_DRAIN_TIMEOUT_MS): Promise<void> {
    if (Number.isNaN(timeoutMs)) throw new RangeError('drain: timeoutMs must be a number of milliseconds, got NaN');
    // Beyond setTimeout's longest delay a timer fires after 1 ms: such a deadline is none.
    if (timeoutMs > MAX_TIMER_MS) timeoutMs = Infinity;
    const firstCall = !this.stopping;
    this.stopping = true;
    if (firstCall) {
      for (const l of this.listeners) l.close();
      this.logger.event('draining', { active: this.open.size, timeoutMs });
    }
    const deadline = performance.now() + timeoutMs;
    if (deadline < this.drainDeadline && this.open.size > 0) {
      this.drainDeadline = deadline;
      if (this.drainTimer) clearTimeout(this.drainTimer);
      this.drainTimer = setTimeout(() => this.cutAll(), Math.max(0, timeoutMs));
    }
    await this.whenIdle();
    if (this.drainTimer) clearTimeout(this.drainTimer);
    for (const l of this.listeners) l.release();
  }

  close(): Promise<void> {
    return this.drain(0);
  }

  // --- used by listeners and connections ---

  get isStopping(): boolean {
    return this.stopping;
  }

  newId(): number {
    this.acceptedCount++;
    return this.nextId++;
  }

  opened(c: ProxiedConnection): void {
    this.open.add(c);
  }

  finished(c: ProxiedConnection, record: ConnectionRecord): void {
    this.open.delete(c);
    this.ended[record.end]++;
    this.bytesUp += record.bytesUp;
    this.bytesDown += record.bytesDown;
    try {
      this.logger.connection(record);
    } finally {
      if (this.open.size === 0) for (const f of this.idle.splice(0)) f();
    }
  }

  /** Logs a refused connection (no connection object is created for it). */
  refused(record: ConnectionRecord): void {
    this.ended.rejected++;
    this.logger.connection(record);
  }

  private cutAll(): void {
    for (const c of [...this.open]) c.fail('shutdown', 'the proxy is shutting down and the drain deadline passed');
  }

  private whenIdle(): Promise<void> {
    if (this.open.size === 0) return Promise.resolve();
    return new Promise((resolve) => this.idle.push(resolve));
  }
}

/** One service: a listening socket and, for the server role, the TLS server that runs the handshakes. */
class Listener {
  private readonly server: net.Server;
  /** With `websocket` (server role): the WebSocket listener, used instead of `server`. */
  private ws: WebSocketListener | undefined;
  private readonly tlsServer: QkdTlsServer | undefined;
  private active = 0;
  private closed = false;
  private released = false;

  constructor(
    readonly engine: ProxyEngine,
    readonly config: ServiceConfig,
  ) {
    this.server = net.createServer({ allowHalfOpen: true, pauseOnConnect: true }, (raw) => this.onConnection(raw));
    // accept() can fail at runtime (EMFILE: out of file descriptors); Node keeps listening. Say so, do not crash.
    this.server.on('error', (e) => {
      if (this.server.listening) engine.logger.event('error', { service: config.name, message: `accept: ${e.message}` });
    });
    if (config.role === 'server') {
      this.tlsServer = createServer({ ...config.tls, psks: config.keys.server });
    }
  }

  listen(): Promise<void> {
    const ws = this.config.websocket;
    if (ws) {
      if (this.config.role !== 'server') return Promise.reject(new TypeError(`service "${this.config.name}": websocket is for the server role only`));
      const { host, port } = this.config.accept;
      // A refused upgrade (an origin not allowed) is logged: the page sees only that its WebSocket failed.
      const onRefused = (r: WebSocketRefusal): void => this.engine.logger.event('refused', { service: this.config.name, ...r });
      return listenWebSocket({ host, port, ...ws, maxConnections: this.config.maxConnections ?? DEFAULT_MAX_CONNECTIONS, onRefused }, ({ stream, peer }) => this.onConnection(stream, peer)).then(
        (l) => {
          this.ws = l;
          // Beyond maxConnections the HTTP server closes a connection before its upgrade request, without a word
          // ('drop'): logged as the TCP listener's rejections are.
          l.server.on('drop', (d?: { remoteAddress?: string; remotePort?: number }) =>
            this.rejected(this.engine.newId(), hostPortText(d?.remoteAddress ?? '?', d?.remotePort ?? 0), `connection limit reached (${this.config.maxConnections ?? DEFAULT_MAX_CONNECTIONS} open)`),
          );
        },
        (e: Error) => {
          throw new TransportError('ERR_QKD_PROXY_LISTEN_FAILED', `service "${this.config.name}": cannot listen on ${hostPortText(host, port)}: ${e.message}`, { cause: e });
        },
      );
    }
    return new Promise((resolve, reject) => {
      const onError = (e: Error): void => {
        reject(new TransportError('ERR_QKD_PROXY_LISTEN_FAILED', `service "${this.config.name}": cannot listen on ${hostPortText(this.config.accept.host, this.config.accept.port)}: ${e.message}`, { cause: e }));
      };
      this.server.once('error', onError);
      this.server.listen(this.config.accept.port, this.config.accept.host, () => {
        this.server.off('error', onError);
        resolve();
      });
    });
  }

  address(): HostPort {
    const a = (this.ws ? this.ws.address() : this.server.address()) as net.AddressInfo | null;
    return a ? { host: a.address, port: a.port } : this.config.accept;
  }

  /** Stops accepting; open connections go on (net.Server.close's callback would wait for them: not used). */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.server.listening) this.server.close();
    this.ws?.server.close(); // stop accepting; open WebSockets go on
  }

  /**
   * Every proxied connection is over: with `websocket`, also drop the HTTP connections that never sent their
   * upgrade request (close() above leaves them open; the HTTP server would keep them for its header timeout).
   */
  release(): void {
    if (this.released) return;
    this.released = true;
    void this.ws?.close();
  }

  /** The log line of a connection turned away before anything was relayed. */
  private rejected(id: number, peer: string, error: string): void {
    this.engine.refused({
      event: 'connection',
      time: new Date().toISOString(),
      service: this.config.name,
      role: this.config.role,
      id,
      peer,
      target: hostPortText(this.config.connect.host, this.config.connect.port),
      bytesUp: 0,
      bytesDown: 0,
      durationMs: 0,
      end: 'rejected',
      error,
    });
  }

  /** `raw`: an accepted TCP socket, or (websocket) the bytes of an accepted WebSocket and its peer address. */
  private onConnection(raw: net.Socket | Duplex, wsPeer?: string): void {
    const id = this.engine.newId();
    const limit = this.config.maxConnections ?? DEFAULT_MAX_CONNECTIONS;
    if (this.engine.isStopping || this.active >= limit) {
      const peer = wsPeer ?? hostPortText((raw as net.Socket).remoteAddress ?? '?', (raw as net.Socket).remotePort ?? 0);
      raw.on('error', () => {});
      if (raw instanceof net.Socket) resetSocket(raw);
      else raw.destroy();
      this.rejected(id, peer, this.engine.isStopping ? 'the proxy is shutting down' : `connection limit reached (${limit} open)`);
      return;
    }
    this.active++;
    // A WebSocket's bytes reach only the server role's TLS socket (accept, 'error', resume): no TCP call is made on them.
    const c = new ProxiedConnection(this.engine, this.config, id, raw as net.Socket, () => this.active--, wsPeer);
    this.engine.opened(c);
    if (this.config.role === 'client') c.startClient();
    else c.startServer(this.tlsServer!);
  }
}

/**
 * One proxied connection, from accept to its log line. "Peer" is the accepted side, "target" the side we
 * connect to. Exactly one of the failure paths (or the clean end) decides `end`: the first one wins.
 */
class ProxiedConnection {
  private readonly started = performance.now();
  private readonly peerAddr: string;
  private readonly targetAddr: string;
  /** Plaintext stream of each side: the accepted TCP socket or the TLS socket over it, and likewise. */
  private peer: Duplex | null = null;
  private target: Duplex | null = null;
  private tls: QkdTlsSocket | null = null;
  /** The TCP connection to the target (under the TLS socket in the client role, the backend in the server role). */
  private targetRaw: net.Socket | null = null;
  private handshake: HandshakeInfo | null = null;
  private bytesUp = 0;
  private bytesDown = 0;
  private upEnded = false;
  private downEnded = false;
  private outcome: { end: ConnectionEnd; error?: string; alert?: string; alertDirection?: 'sent' | 'received' } | null = null;
  /** Streams whose 'close' we still wait for. */
  private openStreams = 0;
  /**
   * Client role: the key source has not answered yet. A connection cut meanwhile (the drain deadline, close()) is
   * logged without waiting for it: a Key Manager that hangs holds its request up to its own timeout. (The accepted
   * socket is not read until the pipe starts, so an application's reset in this phase shows only then.)
   */
  private awaitingKey = false;
  private idleTimer: NodeJS.Timeout | undefined;
  private connectTimer: NodeJS.Timeout | undefined;
  /** The server role's key source failure, as a message: what it rejected with may be anything (undefined, a string). */
  private keyFailure: string | null = null;
  /** Client role: the keys taken for this connection, until handed back to the key source. */
  private keysInUse: readonly Psk[] | null = null;
  /** Client role with `connectOnData`: no byte from the application yet, so no key taken and nothing opened. */
  private waitingForData = false;
  private done = false;

  constructor(
    private readonly engine: ProxyEngine,
    private readonly config: ServiceConfig,
    private readonly id: number,
    /** A TCP socket; in the server role with `websocket`, the bytes of a WebSocket (only read, resumed, passed to TLS). */
    private readonly accepted: net.Socket,
    private readonly onDone: () => void,
    peer?: string,
  ) {
    this.peerAddr = peer ?? hostPortText(accepted.remoteAddress ?? '?', accepted.remotePort ?? 0);
    this.targetAddr = hostPortText(config.connect.host, config.connect.port);
    this.track(accepted);
  }

  // --- client role: plain TCP in, TLS out ---

  startClient(): void {
    this.accepted.on('error', (e) => {
      if (this.waitingForData) this.endBeforeData(`the application reset the connection before sending any data (${e.message})`);
      else this.fail('peer-aborted', `accepted connection: ${e.message}`);
    });
    if (this.config.connectOnData) this.awaitFirstData();
    else this.takeKeyAndConnect();
  }

  /**
   * `connectOnData`: reads until the application's first bytes (then takes the key and connects) or its end (then
   * ends without a key). The first chunk goes back to the front of the socket's buffer, and the socket is paused:
   * what follows waits there up to its high-water mark, then in TCP's window, until the pipe resumes it.
   */
  private awaitFirstData(): void {
    const accepted = this.accepted;
    this.waitingForData = true;
    const idleMs = this.config.idleTimeoutMs ?? DEFAULT_IDLE_TIMEOUT_MS;
    if (idleMs > 0) {
      this.idleTimer = setTimeout(() => this.fail('idle-timeout', `no data from the application for ${idleMs} ms (no key was taken)`), idleMs);
    }
    const onData = (chunk: Buffer): void => {
      accepted.off('end', onEnd);
      this.waitingForData = false;
      clearTimeout(this.idleTimer);
      accepted.pause();
      accepted.unshift(chunk);
      this.takeKeyAndConnect();
    };
    const onEnd = (): void => {
      accepted.off('data', onData);
      this.endBeforeData();
    };
    accepted.once('data', onData);
    accepted.once('end', onEnd);
    accepted.resume();
  }

  /**
   * The peer ended (FIN: `error` unset) or reset the connection before its first byte: a client service with
   * `connectOnData`, or a server service over TCP (see {@link peerLeftWithoutAByte}). Nothing was taken or opened.
   */
  private endBeforeData(error?: string): void {
    if (this.outcome || this.done) return;
    this.waitingForData = false;
    this.outcome = { end: 'no-data', ...(error !== undefined ? { error } : {}) };
    clearTimeout(this.idleTimer);
    // Its FIN is answered with ours (a reset socket is destroyed already; in the server role the TLS socket has
    // ended it already); the socket closes once both have ended.
    this.accepted.end();
  }

  /** Takes this connection's key (a QKD key: enc_keys), connects to the remote proxy and starts the handshake. */
  private takeKeyAndConnect(): void {
    this.awaitingKey = true;
    Promise.resolve()
      .then(() => this.config.keys.clientPsks())
      .then(
      (psks) => {
        this.awaitingKey = false;
        this.keysInUse = psks;
        if (this.outcome) {
          // Cut while the key source answered (perhaps logged already): the keys go back unused, wiped.
          this.releaseKeys();
          return this.maybeFinish();
        }
        this.connectTarget((raw) => this.startClientTls(raw, psks));
      },
      (e: unknown) => {
        this.awaitingKey = false;
        // (Anything rejected, not only an Error: reading .message of undefined would leave the connection open.)
        this.fail('key-unavailable', `key source: ${thrownMessage(e)}`);
        this.maybeFinish();
      },
    );
  }

  private startClientTls(raw: net.Socket, psks: readonly Psk[]): void {
    const { earlyData: _e, maxEarlyDataSize: _m, ...tlsOptions } = (this.config.tls ?? {}) as ProxyTlsOptions & { earlyData?: unknown };
    const tls = connect({ ...tlsOptions, socket: raw, psks });
    this.tls = tls;
    this.target = tls;
    this.track(tls);
    tls.on('error', (e) => this.tlsFailed(e, 'target-aborted'));
    tls.once('secure', (info: HandshakeInfo) => {
      this.handshake = info;
      this.releaseKeys();
      this.peer = this.accepted;
      this.startPiping();
    });
  }

  // --- server role: TLS in, plain TCP out ---

  startServer(tlsServer: QkdTlsServer): void {
    const tls = tlsServer.accept(this.accepted);
    this.tls = tls;
    this.peer = tls;
    this.track(tls);
    const resolver = this.config.keys.server;
    if (typeof resolver === 'function') {
      // Remember a key source failure, so that the log says "key-unavailable" rather than only the alert.
      tls.asyncPskResolver = (request, socket) =>
        Promise.resolve()
          .then(() => resolver(request, socket))
          .catch((e: unknown) => {
            this.keyFailure = thrownMessage(e);
            throw e;
          });
    }
    this.accepted.on('error', () => {}); // reported through the TLS socket
    tls.on('error', (e) => this.tlsFailed(e, 'peer-aborted'));
    tls.once('secure', (info: HandshakeInfo) => {
      this.handshake = info;
      this.connectTarget((backend) => {
        this.target = backend;
        this.startPiping();
      });
    });
    this.accepted.resume();
  }

  // --- shared steps ---

  /** Opens the TCP connection to the target, bounded by the connect timeout. */
  private connectTarget(then: (socket: net.Socket) => void): void {
    const socket = net.connect({ host: this.config.connect.host, port: this.config.connect.port, allowHalfOpen: true });
    this.track(socket);
    this.targetRaw = socket;
    const timeout = this.config.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS;
    this.connectTimer = setTimeout(() => this.fail('connect-failed', `connect to ${this.targetAddr}: timed out after ${timeout} ms`), timeout);
    const onConnectError = (e: Error): void => this.fail('connect-failed', `connect to ${this.targetAddr}: ${e.message}`);
    socket.once('error', onConnectError);
    socket.once('connect', () => {
      clearTimeout(this.connectTimer);
      socket.off('error', onConnectError);
      if (this.outcome) return;
      socket.setNoDelay(true);
      if (this.config.role === 'server') socket.on('error', (e) => this.fail('target-aborted', `backend: ${e.message}`));
      else socket.on('error', () => {}); // the TLS socket over it reports the error
      then(socket);
    });
  }

  /** Both sides are ready: copy bytes each way until each direction has ended. */
  private startPiping(): void {
    if (this.outcome) return;
    const peer = this.peer!;
    const target = this.target!;
    if (peer === this.accepted) this.accepted.setNoDelay(true);
    const idleMs = this.config.idleTimeoutMs ?? DEFAULT_IDLE_TIMEOUT_MS;
    if (idleMs > 0) {
      this.idleTimer = setTimeout(() => this.fail('idle-timeout', `no data in either direction for ${idleMs} ms`), idleMs);
    }
    this.pipe(peer, target, 'up');
    this.pipe(target, peer, 'down');
    if (peer === this.accepted) this.accepted.resume();
  }

  /**
   * Copies `src` to `dst` with backpressure (pause the source while the destination's buffer is full) and
   * passes the end of `src` on as the end of `dst`'s writable side: FIN ⇄ close_notify (half-close).
   */
  private pipe(src: Duplex, dst: Duplex, dir: 'up' | 'down'): void {
    const srcSide = dir === 'up' ? 'peer-aborted' : 'target-aborted';
    src.on('data', (chunk: Buffer) => {
      if (dir === 'up') this.bytesUp += chunk.length;
      else this.bytesDown += chunk.length;
      this.idleTimer?.refresh();
      if (!dst.write(chunk)) src.pause();
    });
    dst.on('drain', () => src.resume());
    const passEndOn = (): void => {
      if (dir === 'up') this.upEnded = true;
      else this.downEnded = true;
      dst.end();
    };
    const onEnd = (): void => {
      if (src === this.tls) {
        // A TLS stream that ends without close_notify was cut (RFC 8446 §6.1: truncation), not closed.
        if (!this.tls.connection?.peerClosed) this.fail(srcSide, 'the TLS connection ended without close_notify (truncated)');
        else passEndOn();
      } else confirmNotReset(src as net.Socket, passEndOn, (e) => this.fail(srcSide, `the connection was reset (${e.message})`));
    };
    // Like a net.Socket, the TLS socket emits 'end' as soon as the peer has closed and nothing is buffered,
    // even before anyone reads: a client that closes right after its Finished has ended before the backend
    // connection (and this pipe) exists.
    if (src.readableEnded) onEnd();
    else src.once('end', onEnd);
    const onClose = (): void => {
      const ended = dir === 'up' ? this.upEnded : this.downEnded;
      if (!ended) this.fail(srcSide, 'the connection closed unexpectedly');
    };
    // The same for a source already torn down: its 'close' may be behind us too.
    if (src.destroyed) onClose();
    else src.once('close', onClose);
  }

  /** A TLS socket error: during the handshake it is a handshake (or key) failure, after it an abort. */
  private tlsFailed(e: Error, afterHandshake: ConnectionEnd): void {
    const left = this.peerLeftWithoutAByte();
    if (left === 'reset') return this.endBeforeData(`the peer reset the connection before sending any data (${this.accepted.errored?.message})`);
    if (left === 'closed') return this.endBeforeData();
    let end: ConnectionEnd = this.handshake ? afterHandshake : 'handshake-failed';
    let message = e.message;
    if (!this.handshake && this.keyFailure !== null) {
      end = 'key-unavailable';
      message = `key source: ${this.keyFailure}`;
    }
    const alert = e instanceof TlsError && (e.remote || e.alertSent) ? { alert: e.alert, alertDirection: e.remote ? ('received' as const) : ('sent' as const) } : {};
    this.fail(end, message, alert);
  }

  /**
   * Server role over TCP: the peer ended (FIN) or reset the connection before the proxy received a byte from it, as
   * a load balancer's or monitor's health check does. No key was looked up (that takes a ClientHello) and no
   * backend connection opened: logged "no-data", as a client service's probe with `connectOnData`. (The handshake
   * timeout is not the peer leaving: it stays "handshake-failed".) A WebSocket service is left out: its peer has
   * sent an HTTP upgrade, and a TCP probe of its port that sends none never becomes a proxied connection.
   */
  private peerLeftWithoutAByte(): 'closed' | 'reset' | undefined {
    if (this.config.role !== 'server' || this.config.websocket || this.handshake) return undefined;
    return endedBeforeAByte(this.accepted);
  }

  /** Ends the connection abnormally (the first reason wins) and tears both sides down. */
  fail(end: ConnectionEnd, error: string, alert: { alert?: string; alertDirection?: 'sent' | 'received' } = {}): void {
    if (this.outcome || this.done) return;
    this.outcome = { end, error, ...alert };
    clearTimeout(this.idleTimer);
    clearTimeout(this.connectTimer);
    // The plain sides get a reset, so that an application never takes a cut stream for a complete one; the
    // TLS side is closed without close_notify, which the remote proxy treats the same way.
    // (A TLS socket sends its pending alert first, so its TCP connection is left to it, once it exists.)
    this.tls?.destroy();
    if (this.config.role === 'client') {
      resetSocket(this.accepted);
      if (!this.tls && this.targetRaw) resetSocket(this.targetRaw);
    } else if (this.targetRaw) resetSocket(this.targetRaw);
  }

  /** A QKD key serves one handshake: once it is over (or never happened), the source may wipe the keys. */
  private releaseKeys(): void {
    const psks = this.keysInUse;
    this.keysInUse = null;
    if (!psks) return;
    try {
      this.config.keys.release?.(psks);
    } catch (e) {
      // The source did not wipe them: the proxy does (a QKD key serves one handshake), and says so (lib/callbacks.ts).
      for (const p of psks) wipe(p.secret);
      reportCallbackError('keys.release', e, this.engine.onCallbackError);
    }
  }

  private track(s: Duplex): void {
    this.openStreams++;
    s.once('close', () => {
      this.openStreams--;
      this.maybeFinish();
    });
  }

  private maybeFinish(): void {
    if (this.done || this.openStreams > 0 || (this.awaitingKey && !this.outcome)) return;
    this.done = true;
    clearTimeout(this.idleTimer);
    clearTimeout(this.connectTimer);
    this.releaseKeys();
    this.onDone();
    const outcome = this.outcome ?? (this.upEnded && this.downEnded ? { end: 'closed' as const } : { end: 'peer-aborted' as const, error: 'closed unexpectedly' });
    const h = this.handshake;
    this.engine.finished(this, {
      event: 'connection',
      time: new Date().toISOString(),
      service: this.config.name,
      role: this.config.role,
      id: this.id,
      peer: this.peerAddr,
      target: this.targetAddr,
      ...(h ? { identity: h.identity, ...(h.pskLabel !== undefined ? { keyId: h.pskLabel } : {}), suite: h.suite, kex: h.kex, group: h.group } : {}),
      bytesUp: this.bytesUp,
      bytesDown: this.bytesDown,
      durationMs: Math.round(performance.now() - this.started),
      ...outcome,
    });
  }
}
