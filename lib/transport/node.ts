/**
 * Node.js transport: a qkd-tls {@link Connection} over a TCP socket, exposed as a Duplex stream that behaves
 * like a `node:tls` TLSSocket (backpressure, `secureConnect`, half-close, destroyed on a fatal alert), and a
 * server whose PSK lookup may be asynchronous (e.g. fetching a QKD key by ID from a key manager) without
 * holding up other connections.
 *
 * ```ts
 * import { connect, createServer } from 'qkd-tls/node';
 * const server = createServer({ psks: [psk] }, (socket) => socket.pipe(socket)).listen(8443);
 * const socket = connect({ port: 8443, psks: [psk] }, () => socket.end('hello'));
 * ```
 */
import { EventEmitter } from 'node:events';
import * as net from 'node:net';
import { Duplex } from 'node:stream';
import { Connection } from '../connection/connection.js';
import { checkTimerMs, MAX_TIMER_MS, type ClientOptions, type ServerOptions } from '../config/options.js';
import type { HandshakeInfo } from '../config/events.js';
import { createNodeProvider } from '../crypto/node.js';
import { nobleProvider } from '../crypto/noble.js';
import type { CryptoProvider } from '../crypto/provider.js';
import { TlsError, TransportError, TRANSPORT_ERROR_CODES, type TransportErrorCode } from '../errors.js';
import { createEarlyDataReplayGuard, type EarlyDataReplayGuard } from '../config/anti-replay.js';
import { reportCallbackError, thrownMessage } from '../callbacks.js';
import { releaseResolvedPsks } from '../psk/source.js';
import type { Psk, PskRequest } from '../psk/types.js';
import type { RecordTraceHook } from '../record/trace-hook.js';
import type { KeyAgreementRequest } from '../config/events.js';
import { keyShareProvider, runKeyAgreement } from './key-agreement.js';

/** Default time allowed for a handshake (including any asynchronous PSK lookup). */
export const DEFAULT_HANDSHAKE_TIMEOUT_MS = 30_000;

/** How long a destroyed connection's socket may take to flush what was queued (a final alert, close_notify). */
const CLOSE_GRACE_MS = 2000;

/**
 * Most bytes the socket may hold unsent before reading stops when what was just read made the connection send
 * something (a KeyUpdate answering update_requested): a peer that asks for answers and never reads them could
 * otherwise make our memory grow without bound. Reading resumes once the socket drains.
 */
const MAX_UNSENT_WHILE_READING = 256 * 1024;

export interface TransportOptions {
  /**
   * The cryptography backend. Default: Node's native crypto (fast), unless the environment variable
   * QKD_TLS_CRYPTO=noble selects the pure-JavaScript one.
   */
  readonly crypto?: CryptoProvider;
  /**
   * Fail the handshake (reason HandshakeTimeout, an internal_error alert sent) if it has not completed after
   * this many milliseconds, counted from the start (TCP connect and any PSK lookup included). Default 30 s;
   * 0 turns the limit off. Anything but a number from 0 to 2^31 - 1 (setTimeout's longest delay) is a
   * RangeError, thrown by `connect` and `createServer`.
   */
  readonly handshakeTimeout?: number;
  /**
   * Run the X25519 and P-256 key exchanges in Node's WebCrypto (`withWebCryptoKeyShares`, lib/crypto/webcrypto.ts),
   * the handshake pausing for them (same bytes on the wire). Default false: Node's own key exchange (the default
   * provider) is native and synchronous already; this is for a pure-JavaScript provider such as noble. A provider
   * that has asynchronous groups of its own (CryptoProvider.asyncGroup) pauses the handshake either way.
   */
  readonly webCryptoKeyShares?: boolean;
}

export interface ConnectOptions extends TransportOptions, Omit<ClientOptions, 'crypto' | 'psks'> {
  /** The server's host (default 127.0.0.1). */
  readonly host?: string;
  /** The server's TCP port: required unless `socket` is given (a TypeError from `connect` without either). */
  readonly port?: number;
  /** An already connected socket (or any Duplex) to run TLS over, instead of host/port. */
  readonly socket?: Duplex;
  /**
   * As net.connect's and tls.connect's `timeout`: the socket's idle timeout ({@link QkdTlsSocket.setTimeout}), set
   * before it connects: after this many milliseconds without traffic it emits 'timeout' (it is not closed). Unlike
   * `handshakeTimeout`, it applies for the whole connection and ends nothing by itself.
   */
  readonly timeout?: number;
  /**
   * The PSKs to offer, or a function that fetches them (e.g. from a QKD key manager) before the ClientHello.
   * Fetched keys are used for this one connection only.
   *
   * The caller owns these keys and wipes them: the connection copies their secrets when it starts (and wipes
   * its copies itself, once the ServerHello is processed or the handshake fails), and never wipes, keeps or
   * reuses the caller's buffers — a key source's lease is released by its taker (e.g. `takePsks(...).release`),
   * which may do so as soon as the handshake is over ('secureConnect', or 'close' after a failure). Keys that a
   * function resolves after the socket was destroyed (a TCP failure or `destroy()` while the key manager was
   * still answering) are not used at all; the socket has closed, or is closing, by then, so a caller that
   * releases its keys on 'close' must also release keys that arrive later (e.g. check `socket.destroyed` once
   * they are fetched).
   */
  readonly psks: readonly Psk[] | (() => Promise<readonly Psk[]>);
}

/**
 * Looks up the PSKs for the offered identities (one entry per identity, undefined when unknown). `socket` is the
 * connection whose handshake asks (this transport always passes it; it is optional so that a resolver can also
 * be called on its own). The handshake reads the PSKs' secrets when they are handed over (keeping copies of its
 * own across a HelloRetryRequest), so a resolver that leases keys (a QKD key manager's) may wipe them as soon as
 * that handshake is over: the socket's 'secure' event, or its 'close' when it failed.
 */
export type AsyncPskResolver = (request: PskRequest, socket?: QkdTlsSocket) => Promise<readonly (Psk | undefined)[]>;

export interface ServerTransportOptions extends TransportOptions, Omit<ServerOptions, 'crypto' | 'psks'> {
  /** Static PSKs (matched by identity), a synchronous resolver, or an asynchronous one. */
  readonly psks: readonly Psk[] | AsyncPskResolver;
  /**
   * A record trace hook for each accepted connection (e.g. `() => createTracer(print)` from lib/trace: a
   * tracer keeps per-connection state, so each connection needs its own). Takes precedence over `trace`. If it
   * throws, that connection runs without a trace and the error goes to `onCallbackError` (lib/callbacks.ts).
   */
  readonly traceConnection?: (socket: QkdTlsSocket) => RecordTraceHook | undefined;
}

/**
 * Options that node:tls spells otherwise than qkd-tls, for the same thing. Code ported from node:tls passes them, and
 * unread they would be ignored without a word (no SNI sent, no ALPN offered): a TypeError naming ours instead.
 */
const NODE_TLS_NAMES = { servername: 'serverName', ALPNProtocols: 'alpn' } as const;

function refuseNodeTlsNames(who: string, options: object): void {
  for (const [theirs, ours] of Object.entries(NODE_TLS_NAMES)) {
    if (theirs in options) throw new TypeError(`${who}: node:tls's ${theirs} option is ${ours} in qkd-tls`);
  }
}

let defaultCrypto: CryptoProvider | undefined;

/** The provider used when none is given: native in Node unless QKD_TLS_CRYPTO=noble. */
export function defaultNodeCrypto(): CryptoProvider {
  if (!defaultCrypto) defaultCrypto = process.env.QKD_TLS_CRYPTO === 'noble' ? nobleProvider : createNodeProvider();
  return defaultCrypto;
}

/**
 * Opens a TLS-PSK connection. `onSecureConnect` runs once the handshake completes. Options the connection
 * refuses (an unknown suite, a PSK shorter than 16 bytes, ...) destroy the socket with their TypeError, reported
 * as its 'error' event, as is a `psks` function's failure (a TransportError, code ERR_QKD_TLS_PSK_FETCH_FAILED, its
 * error the cause) and a PSK whose lease was released (a TlsError, PskUnavailable; nothing is written); a server
 * that closes before the handshake completes is a TransportError, code ERR_QKD_TLS_CLOSED_BEFORE_HANDSHAKE (lib/errors.ts
 * lists the codes); a missing port or a `handshakeTimeout` out of range throws at once.
 */
export function connect(options: ConnectOptions, onSecureConnect?: () => void): QkdTlsSocket {
  refuseNodeTlsNames('connect', options);
  checkTimerMs('handshakeTimeout', options.handshakeTimeout, 0);
  if (options.timeout !== undefined) checkIdleMs('timeout', options.timeout);
  // As net.connect, which takes no port as an error; port 0 would be tried instead, and refused later.
  if (options.socket === undefined && options.port === undefined) throw new TypeError('connect: give the server\'s port (and host), or a socket');
  const socket = options.socket ?? net.connect({ host: options.host ?? '127.0.0.1', port: options.port!, allowHalfOpen: true });
  const tls = new QkdTlsSocket(socket, options.handshakeTimeout);
  if (options.timeout !== undefined) tls.setTimeout(options.timeout);
  if (onSecureConnect) tls.once('secureConnect', onSecureConnect);
  const start = (psks: readonly Psk[]): void => {
    if (tls.destroyed) return;
    const { socket: _s, host: _h, port: _p, handshakeTimeout: _t, timeout: _i, psks: _k, webCryptoKeyShares, ...rest } = options;
    let conn: Connection;
    try {
      const crypto = keyShareProvider(options.crypto ?? defaultNodeCrypto(), webCryptoKeyShares, false);
      conn = Connection.client({ ...rest, psks, crypto, keyLog: tls.keyLogSink(options.keyLog) });
    } catch (e) {
      tls.destroy(e as Error);
      return;
    }
    tls.attach(conn, options.earlyData?.byteLength);
  };
  if (typeof options.psks === 'function') {
    const fetchPsks = options.psks;
    // A function that throws at once fails this connection as a rejection does (lib/callbacks.ts), rather than
    // throwing out of connect() with the TCP connection already under way and left to itself.
    Promise.resolve()
      .then(() => fetchPsks())
      .then(start, (e: unknown) => tls.destroy(new TransportError('ERR_QKD_TLS_PSK_FETCH_FAILED', `could not obtain PSKs: ${thrownMessage(e)}`, { cause: e })));
  } else {
    start(options.psks);
  }
  return tls;
}

/**
 * A TLS-PSK server. Emits `secureConnection` (socket) for each completed handshake and `tlsClientError`
 * (error, socket) for each failed one; a failing connection never disturbs the others. Also `keylog` (line, socket;
 * as each socket's, only with the `keyLog` option), `connection` (the TCP socket, before its handshake), `listening`, `error`
 * (of the listening socket), `socketError` (error, socket: an established socket's error that has no listener of its
 * own), and `close` once closed and every connection has ended ({@link QkdTlsServer.close}). Like net.Server it has
 * `listen`, `address`, `close`, `getConnections`, `listening`, `maxConnections`, `ref` and `unref`; `server` is the
 * net.Server itself.
 */
export class QkdTlsServer extends EventEmitter {
  readonly server: net.Server;
  /**
   * The 0-RTT replay guard every connection of this server shares (RFC 8446 §8.2): the `earlyDataReplayGuard`
   * option, or, when `maxEarlyDataSize` is above 0 without one, a `createEarlyDataReplayGuard()` of its own
   * (100,000 ClientHellos, about 5.5 MB; when full, 0-RTT is rejected). Undefined when 0-RTT is off, or with
   * `dangerouslyAcceptReplayedEarlyData` and no guard.
   */
  readonly earlyDataReplayGuard: EarlyDataReplayGuard | undefined;
  private readonly sockets = new Set<QkdTlsSocket>();
  /** Run once every TLS connection has closed (close()'s callbacks, the 'close' event). */
  private drainWaiters: (() => void)[] = [];

  constructor(
    private readonly options: ServerTransportOptions,
    onSecureConnection?: (socket: QkdTlsSocket) => void,
  ) {
    super();
    refuseNodeTlsNames('createServer', options);
    checkTimerMs('handshakeTimeout', options.handshakeTimeout, 0);
    // Options every connection would refuse (a PSK shorter than RFC 9257 §6 allows, an unknown suite or group, ...)
    // are refused here, with the TypeError Connection.server throws, not by each connection once it is listening.
    // RFC 8446 §8: 0-RTT is accepted at most once per ClientHello by every connection of this server: one guard for
    // all of them (a Connection, which serves one connection, cannot make one; it refuses 0-RTT options without).
    const acceptsEarlyData = (options.maxEarlyDataSize ?? 0) > 0 && options.dangerouslyAcceptReplayedEarlyData !== true;
    this.earlyDataReplayGuard = options.earlyDataReplayGuard ?? (acceptsEarlyData ? createEarlyDataReplayGuard() : undefined);
    const { psks, handshakeTimeout: _t, crypto, keyLog: _k, traceConnection: _c, webCryptoKeyShares: _w, ...rest } = options;
    const earlyDataReplayGuard = this.earlyDataReplayGuard;
    Connection.server({ ...rest, earlyDataReplayGuard, psks: typeof psks === 'function' ? undefined : psks, crypto: crypto ?? defaultNodeCrypto() }).destroy();
    if (onSecureConnection) this.on('secureConnection', onSecureConnection);
    this.server = net.createServer({ allowHalfOpen: true }, (raw) => this.accept(raw));
    this.server.on('error', (e) => this.emit('error', e));
    this.server.on('listening', () => this.emit('listening'));
    // As tls.Server (a net.Server): the TCP socket, before the handshake begins (after this server took it on).
    this.server.on('connection', (raw: net.Socket) => this.emit('connection', raw));
    // net.Server's 'close' waits for its TCP sockets only: a TLS socket can outlive its TCP socket (its last data not
    // yet read), and accept() takes connections the net.Server never saw (the WebSocket listener's).
    this.server.on('close', () => this.whenDrained(() => this.emit('close')));
  }

  /** Runs TLS over an accepted socket (or any Duplex). */
  accept(raw: Duplex): QkdTlsSocket {
    const tls = new QkdTlsSocket(raw, this.options.handshakeTimeout);
    this.sockets.add(tls);
    tls.once('close', () => {
      this.sockets.delete(tls);
      if (this.sockets.size === 0) for (const f of this.drainWaiters.splice(0)) f();
    });
    const onEarlyError = (e: Error): void => {
      this.emit('tlsClientError', e, tls);
    };
    tls.on('error', onEarlyError);
    tls.once('secure', () => {
      tls.off('error', onEarlyError);
      // Keep the process alive even if the application forgets an error handler on an established socket.
      if (tls.listenerCount('error') === 0) tls.on('error', (e) => this.emit('socketError', e, tls));
      this.emit('secureConnection', tls);
    });
    const { psks, handshakeTimeout: _t, crypto, keyLog, traceConnection, webCryptoKeyShares, ...rest } = this.options;
    const resolver = typeof psks === 'function' ? undefined : psks;
    let conn: Connection;
    let trace = rest.trace;
    if (traceConnection) {
      // An observer's factory (lib/callbacks.ts): if it throws, this connection runs untraced, the error is reported.
      try {
        trace = traceConnection(tls);
      } catch (e) {
        trace = undefined;
        reportCallbackError('traceConnection', e, rest.onCallbackError);
      }
    }
    try {
      const provider = keyShareProvider(crypto ?? defaultNodeCrypto(), webCryptoKeyShares, false);
      conn = Connection.server({ ...rest, earlyDataReplayGuard: this.earlyDataReplayGuard, trace, psks: resolver, crypto: provider, keyLog: tls.keyLogSink(keyLog) });
    } catch (e) {
      tls.destroy(e as Error);
      return tls;
    }
    if (typeof psks === 'function') tls.asyncPskResolver = psks;
    // node:tls's server 'keylog' (line, socket): only with the keyLog option, without which no line is ever made.
    if (keyLog) tls.on('keylog', (line: Buffer) => this.listenerCount('keylog') > 0 && this.emit('keylog', line, tls));
    tls.attach(conn);
    return tls;
  }

  listen(port?: number, host?: string, callback?: () => void): this;
  listen(options: net.ListenOptions, callback?: () => void): this;
  listen(...args: unknown[]): this {
    (this.server.listen as (...a: unknown[]) => void)(...args);
    return this;
  }

  /** The address the server listens on, as net.Server's (null before it listens, though typed as listening). */
  address(): net.AddressInfo {
    return this.server.address() as net.AddressInfo;
  }

  /**
   * Stops accepting new connections; existing ones go on (as net.Server.close). `callback` and the 'close' event come
   * once the listening socket is closed and every TLS connection of this server has closed: those accepted on its
   * port, and those handed to {@link accept} (a WebSocket listener's). A server that was not listening gets Node's
   * ERR_SERVER_NOT_RUNNING in `callback`, as net.Server gives it, once its connections have closed.
   */
  close(callback?: (err?: Error) => void): this {
    this.server.close(callback && ((err?: Error) => this.whenDrained(() => callback(err))));
    return this;
  }

  /** The number of open TLS connections (those handed to {@link accept} included). */
  get connections(): number {
    return this.sockets.size;
  }

  /** As net.Server.getConnections: the number of open TLS connections, to `callback(null, count)`. */
  getConnections(callback: (err: Error | null, count: number) => void): this {
    const count = this.sockets.size;
    process.nextTick(() => callback(null, count));
    return this;
  }

  /** Whether the server is listening for connections (net.Server.listening). */
  get listening(): boolean {
    return this.server.listening;
  }

  /** net.Server.maxConnections: TCP connections beyond it are refused (those handed to {@link accept} are not counted). */
  get maxConnections(): number {
    return this.server.maxConnections;
  }
  set maxConnections(n: number) {
    this.server.maxConnections = n;
  }

  /** net.Server.ref: the listening socket keeps the process alive (the default). */
  ref(): this {
    this.server.ref();
    return this;
  }

  /** net.Server.unref: the listening socket alone does not keep the process alive. */
  unref(): this {
    this.server.unref();
    return this;
  }

  /** Runs `f` now if no TLS connection is open, else once the last one closes. */
  private whenDrained(f: () => void): void {
    if (this.sockets.size === 0) f();
    else this.drainWaiters.push(f);
  }

  /** Destroys every open connection. */
  destroyAll(): void {
    for (const s of this.sockets) s.destroy();
  }
}

export function createServer(options: ServerTransportOptions, onSecureConnection?: (socket: QkdTlsSocket) => void): QkdTlsServer {
  return new QkdTlsServer(options, onSecureConnection);
}

/**
 * One TLS connection as a Duplex: write plaintext, read plaintext. Events: `secureConnect` (client) and
 * `secure` (both sides) when the handshake completes, `earlyData` ('accepted' | 'rejected'), `keylog`
 * (a Buffer line, as node:tls, but only when the `keyLog` option is set: without it no key-log line is ever
 * made, since secrets rendered as text cannot be wiped; its listeners run as part of the keyLog observer, so what
 * they throw goes to `onCallbackError`, lib/callbacks.ts), `keyUpdate` (direction), `timeout` (see setTimeout), `close`
 * (hadError, as net.Socket's).
 *
 * What a node:tls TLSSocket user calls is here with its semantics: setTimeout, setKeepAlive, setNoDelay, ref/unref, address(),
 * remote/local address, port and family, bytesRead/bytesWritten (plaintext), encrypted, getProtocol(), getCipher(),
 * servername, alpnProtocol, exportKeyingMaterial. What belongs to certificates (getPeerCertificate, authorized, ...)
 * does not apply to external PSKs, and session resumption (getSession, 'session', isSessionReused) is not
 * implemented: both are absent.
 */
export class QkdTlsSocket extends Duplex {
  private conn: Connection | null = null;
  private readonly timer: NodeJS.Timeout | undefined;
  private secureDone = false;
  private pendingWrite: { chunks: Uint8Array[]; callback: (e?: Error | null) => void } | null = null;
  private finalCallback: ((e?: Error | null) => void) | null = null;
  /** Reading stopped until 'drain': what the peer made us send is not being read (see MAX_UNSENT_WHILE_READING). */
  private pausedForOutput = false;
  /** The readable side has been ended (close_notify, or the socket's end without it): nothing more is pushed. */
  private endPushed = false;
  /** Set by the server when PSKs are looked up asynchronously. */
  asyncPskResolver: AsyncPskResolver | undefined;
  /**
   * Whether each chunk the socket emits is a buffer of its own that nothing writes into again (true of a
   * net.Socket: every read gets a fresh buffer of exactly the bytes read), so the connection may keep views
   * of it (Connection.receiveOwned). Any other Duplex gets the copying Connection.receive.
   */
  private readonly freshReads: boolean;
  /** Plaintext bytes handed to the connection, and delivered to the application (node:tls counts plaintext). */
  private plainWritten = 0;
  private earlyDataBytes = 0;
  private plainRead = 0;
  /** The idle timer of setTimeout() over a Duplex that has none of its own (a WebSocket stream), re-armed by traffic. */
  private idleTimer: NodeJS.Timeout | undefined;
  /** The idle time of that timer, as setTimeout() last set it. */
  private idleMs: number | undefined;

  constructor(
    readonly socket: Duplex,
    handshakeTimeout = DEFAULT_HANDSHAKE_TIMEOUT_MS,
  ) {
    super({ allowHalfOpen: true });
    this.freshReads = socket instanceof net.Socket;
    if (handshakeTimeout > 0) {
      this.timer = setTimeout(() => this.onHandshakeTimeout(handshakeTimeout), handshakeTimeout);
      this.timer.unref?.();
    }
    // No 'data' listener until attach(): a client still fetching its PSKs leaves what the peer sends first (an SSH
    // or SMTP banner: a server that is not TLS) in the socket, for the connection to read and refuse once it starts
    // (RFC 8446 §5: unexpected_message), instead of dropping it and waiting for the handshake timeout. Until then
    // the socket reads at most its high-water mark; TCP flow control holds the rest.
    socket.on('end', () => this.onSocketEnd());
    socket.on('error', (e) => this.destroy(e));
    socket.on('close', () => {
      if (this.destroyed) return;
      // The peer's stream ended and our own side is done, but the application has not read all of it yet:
      // keep what is buffered, as a net.Socket does; 'end' follows once it is read, then autoDestroy.
      // Destroyed now, the tail would be dropped and the stream would close without its 'end'. The connection,
      // though, has nothing left to decrypt or send: its keys are wiped now, not whenever (if ever) it is read.
      if (this.secureDone && this.endPushed && this.readableLength > 0 && this.writableFinished) {
        this.conn?.destroy();
        return;
      }
      this.destroy(this.secureDone ? undefined : new TransportError('ERR_QKD_TLS_CLOSED_BEFORE_HANDSHAKE', 'connection closed before the TLS handshake completed'));
    });
    socket.on('drain', () => this.onDrain());
    // setTimeout() over a net.Socket is the socket's own idle timeout: its 'timeout' is this socket's (node:tls).
    // (Not once destroyed: the TCP socket may outlive it a little, flushing its last records.)
    socket.on('timeout', () => {
      if (!this.destroyed) this.emit('timeout');
    });
  }

  /** 'close' says whether the socket closed on an error (`hadError`), as net.Socket's and TLSSocket's do; a Duplex's says nothing. */
  override emit(event: string | symbol, ...args: unknown[]): boolean {
    if (event === 'close' && args.length === 0) return super.emit('close', this.errored !== null);
    return super.emit(event, ...args);
  }

  /** The handshake summary once secure, else null. */
  get handshake(): HandshakeInfo | null {
    return this.conn?.handshake ?? null;
  }
  /** The negotiated ALPN protocol, or false (as node:tls). */
  get alpnProtocol(): string | false {
    return this.conn?.handshake?.alpn ?? false;
  }
  /** True, as node:tls's TLSSocket.encrypted. */
  readonly encrypted = true;
  /**
   * 'TLSv1.3' once the handshake completed, 'unknown' while it runs, null before the connection starts or once
   * destroyed (node:tls getProtocol, which answers null once its socket is destroyed, the handshake done or not).
   */
  getProtocol(): string | null {
    if (!this.conn || this.destroyed) return null;
    return this.conn.handshake?.version ?? 'unknown';
  }
  /**
   * The cipher suite once secure, as node:tls getCipher() names a TLS 1.3 suite (IANA name, RFC 8446 §B.4); null
   * before that and once destroyed (as node:tls).
   */
  getCipher(): { name: string; standardName: string; version: string } | null {
    const info = this.destroyed ? undefined : this.conn?.handshake;
    return info ? { name: info.suite, standardName: info.suite, version: info.version } : null;
  }
  /** The server name (SNI) of the handshake, or false (node:tls): on a server the one the client sent, checked; on a client the one the server acknowledged. */
  get servername(): string | false {
    return this.conn?.handshake?.serverName ?? false;
  }
  get remoteAddress(): string | undefined {
    return (this.socket as net.Socket).remoteAddress;
  }
  get remotePort(): number | undefined {
    return (this.socket as net.Socket).remotePort;
  }
  get remoteFamily(): string | undefined {
    return (this.socket as net.Socket).remoteFamily;
  }
  get localAddress(): string | undefined {
    return (this.socket as net.Socket).localAddress;
  }
  get localPort(): number | undefined {
    return (this.socket as net.Socket).localPort;
  }
  get localFamily(): string | undefined {
    return (this.socket as net.Socket).localFamily;
  }
  /** The local address of the TCP socket (net.Socket.address()); `{}` over a Duplex that is not a net.Socket. */
  address(): net.AddressInfo | Record<string, never> {
    const s = this.socket as Partial<net.Socket>;
    return typeof s.address === 'function' ? (s.address() as net.AddressInfo | Record<string, never>) : {};
  }
  /**
   * Plaintext bytes the application wrote that were handed to TLS (as node:tls counts plaintext; `socket.bytesWritten`
   * counts the records sent), a client's `earlyData` included once the server accepted it or it was resent.
   */
  get bytesWritten(): number {
    return this.plainWritten;
  }
  /** Plaintext bytes received from the peer (0-RTT data included); `socket.bytesRead` counts the records. */
  get bytesRead(): number {
    return this.plainRead;
  }

  /**
   * As net.Socket.setTimeout: after `ms` milliseconds without traffic the socket emits 'timeout' (`callback` is a
   * one-time listener for it); nothing is closed: end() or destroy() it in the listener if it should be. 0 turns the
   * timer off (and removes `callback`). Traffic is what the underlying socket reads and writes, records of any kind.
   */
  setTimeout(ms: number, callback?: () => void): this {
    checkIdleMs('setTimeout', ms);
    if (callback) {
      if (ms === 0) this.off('timeout', callback);
      else this.once('timeout', callback);
    }
    const s = this.socket as Partial<net.Socket>;
    if (typeof s.setTimeout === 'function') {
      s.setTimeout(ms);
      return this;
    }
    this.idleMs = ms;
    if (this.idleTimer) clearTimeout(this.idleTimer);
    // Past MAX_TIMER_MS, Node's setTimeout would fire after 1 ms: truncated instead, as net.Socket's idle timeout is.
    this.idleTimer = ms > 0 && !this.destroyed ? setTimeout(() => this.emit('timeout'), Math.min(ms, MAX_TIMER_MS)).unref() : undefined;
    return this;
  }
  /**
   * As net.Socket.timeout: the idle time set by {@link setTimeout} (0 once turned off), undefined if none was set.
   * http.Agent reads it to carry a request's timeout over to a reused socket.
   */
  get timeout(): number | undefined {
    const s = this.socket as Partial<net.Socket>;
    return typeof s.setTimeout === 'function' ? s.timeout : this.idleMs;
  }
  /** net.Socket.setKeepAlive on the TCP socket (nothing over another Duplex). */
  setKeepAlive(enable?: boolean, initialDelay?: number): this {
    (this.socket as Partial<net.Socket>).setKeepAlive?.(enable, initialDelay);
    return this;
  }
  /** net.Socket.setNoDelay on the TCP socket (nothing over another Duplex). */
  setNoDelay(noDelay?: boolean): this {
    (this.socket as Partial<net.Socket>).setNoDelay?.(noDelay);
    return this;
  }
  /**
   * net.Socket.ref on the TCP socket: it keeps the process alive again (the default); nothing over another Duplex,
   * whose timers here never keep it alive. http.Agent calls it on a kept-alive socket it reuses.
   */
  ref(): this {
    (this.socket as Partial<net.Socket>).ref?.();
    return this;
  }
  /**
   * net.Socket.unref on the TCP socket: it alone does not keep the process alive. http.Agent with `keepAlive` calls it
   * on every socket it keeps for reuse (keepSocketAlive): without it, the first answer threw out of the agent.
   */
  unref(): this {
    (this.socket as Partial<net.Socket>).unref?.();
    return this;
  }
  /** The underlying sans-IO connection (for diagnostics). */
  get connection(): Connection | null {
    return this.conn;
  }

  /** RFC 5705 / RFC 8446 §7.5 keying material, with node:tls's argument order. */
  exportKeyingMaterial(length: number, label: string, context?: Buffer): Buffer {
    if (!this.conn) throw new TransportError('ERR_TLS_INVALID_STATE', 'exportKeyingMaterial: not connected');
    return Buffer.from(this.conn.exportKeyingMaterial(label, context ?? new Uint8Array(0), length));
  }

  /** Sends a KeyUpdate (RFC 8446 §4.6.3); `requestPeer` asks the peer to update its keys too. */
  keyUpdate(requestPeer = false): void {
    if (!this.conn) throw new TransportError('ERR_TLS_INVALID_STATE', 'keyUpdate: not connected');
    this.conn.keyUpdate(requestPeer);
    this.pump();
  }

  /** @internal Wraps the keyLog option's callback so that `keylog` events fire too (only when a key log is configured). */
  keyLogSink(user: ((line: string) => void) | undefined): ((line: string) => void) | undefined {
    // No key log asked for: no line is ever built (secrets rendered as strings cannot be wiped).
    if (!user) return undefined;
    return (line) => {
      user(line);
      if (this.listenerCount('keylog') > 0) this.emit('keylog', Buffer.from(line + '\n'));
    };
  }

  /**
   * @internal Starts running `conn` over the socket. `earlyDataBytes`: a client's 0-RTT data (its `earlyData`
   * option), counted in {@link bytesWritten} once the handshake tells it reached the server (accepted, or resent).
   */
  attach(conn: Connection, earlyDataBytes = 0): void {
    this.conn = conn;
    this.earlyDataBytes = earlyDataBytes;
    this.socket.on('data', (b: Buffer) => this.onSocketData(b));
    this.pump();
  }

  // --- Duplex implementation -------------------------------------------------------------------------------

  override _read(): void {
    if (this.pausedForOutput) return; // onDrain resumes
    if ((this.socket as net.Socket).isPaused?.()) this.socket.resume();
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, callback: (e?: Error | null) => void): void {
    this.writeChunks([chunk], callback);
  }

  override _writev(chunks: { chunk: Buffer }[], callback: (e?: Error | null) => void): void {
    this.writeChunks(
      chunks.map((c) => c.chunk),
      callback,
    );
  }

  private writeChunks(chunks: Uint8Array[], callback: (e?: Error | null) => void): void {
    if (!this.conn || this.conn.phase === 'handshaking') {
      // Client still fetching its PSKs, or the handshake still running: hold the data (and the callback, so
      // that the Writable's buffer applies backpressure) until the connection can send it; afterConnected
      // writes it. Handed to the connection now, it would be queued there without bound.
      this.pendingWrite = { chunks, callback };
      return;
    }
    try {
      // Records are filled across the chunks without joining them first (Connection.writev).
      this.conn.writev(chunks);
    } catch (e) {
      callback(e as Error);
      return;
    }
    for (const c of chunks) this.plainWritten += c.byteLength;
    const flushed = this.pump();
    if (flushed) callback();
    else this.pendingWrite = { chunks: [], callback };
  }

  override _final(callback: (e?: Error | null) => void): void {
    // close_notify can only follow the handshake: hold the end until then (written data is sent first).
    if (!this.conn || this.conn.phase === 'handshaking') {
      this.finalCallback = callback;
      return;
    }
    this.conn.close();
    this.pump();
    // Half-close (RFC 8446 §6.1): our direction is done; we keep reading until the peer's close_notify.
    (this.socket as net.Socket).end();
    callback();
  }

  override _destroy(err: Error | null, callback: (e?: Error | null) => void): void {
    if (this.timer) clearTimeout(this.timer);
    if (this.idleTimer) clearTimeout(this.idleTimer);
    this.conn?.destroy();
    const s = this.socket as net.Socket;
    if (!s.destroyed) {
      if (s.writable || !s.writableFinished) {
        // Let what is queued (the last data, a final alert, close_notify) reach the peer, also when our side
        // was already ended but is still flushing; a peer that never closes its side must not keep the
        // socket around, though.
        if (s.writable) s.end();
        // Read (and drop) whatever still comes, so that the peer's FIN is seen and closes the socket: reading may
        // have stopped (an application that did not read, a PSK lookup), or never started (no connection yet).
        s.resume();
        // Cleared as soon as the socket closes: a pending timer would keep the socket, this TLS socket and
        // its connection reachable for the whole grace period (thousands of them under load).
        const timer = setTimeout(() => s.destroy(), CLOSE_GRACE_MS).unref();
        s.once('close', () => clearTimeout(timer));
      } else s.destroy();
    }
    const pending = this.pendingWrite;
    this.pendingWrite = null;
    pending?.callback(err ?? new TransportError('ERR_STREAM_DESTROYED', 'socket destroyed'));
    callback(err);
  }

  // --- plumbing ---------------------------------------------------------------------------------------------

  private onSocketData(b: Buffer): void {
    this.idleTimer?.refresh();
    if (!this.conn) return;
    if (this.freshReads) this.conn.receiveOwned(b);
    else this.conn.receive(b);
    if (!this.pump() && this.socket.writableLength > MAX_UNSENT_WHILE_READING && !this.destroyed) {
      this.pausedForOutput = true;
      this.socket.pause();
    }
  }

  /** The handshake deadline: the connection fails with HandshakeTimeout and sends its alert. */
  private onHandshakeTimeout(ms: number): void {
    if (this.secureDone || this.destroyed) return;
    const detail = `the TLS handshake timed out after ${ms} ms`;
    if (!this.conn) {
      // Still fetching the client's PSKs: nothing was sent, so there is no one to alert.
      this.destroy(new TlsError('HandshakeTimeout', detail, { alertNotSent: true }));
      return;
    }
    this.conn.handshakeTimedOut(detail);
    this.pump();
  }

  private onSocketEnd(): void {
    if (!this.conn || this.destroyed) return;
    if (!this.secureDone) {
      this.destroy(new TransportError('ERR_QKD_TLS_CLOSED_BEFORE_HANDSHAKE', 'connection closed by the peer before the TLS handshake completed'));
      return;
    }
    // EOF without close_notify: end the readable side as node:tls does. (When our side has ended too, the
    // socket closes by itself once what we queued — our last records, close_notify — has been sent.)
    if (!this.conn.peerClosed) this.endReadable();
  }

  private onDrain(): void {
    if (this.pausedForOutput) {
      this.pausedForOutput = false;
      this.resumeUnlessWaiting();
    }
    const p = this.pendingWrite;
    if (p && p.chunks.length === 0) {
      this.pendingWrite = null;
      p.callback();
    }
  }

  /** Sends pending output and handles events; returns whether the socket accepted everything without buffering. */
  private pump(): boolean {
    const conn = this.conn!;
    let flushed = true;
    const out = conn.takeOutputChunks();
    if (out.length > 0 && !(this.socket as net.Socket).destroyed) {
      const data = out.length === 1 ? out[0] : Buffer.concat(out);
      this.idleTimer?.refresh();
      flushed = this.socket.write(data);
    }
    for (const ev of conn.takeEvents()) {
      switch (ev.type) {
        case 'handshake':
          this.secureDone = true;
          if (ev.info.earlyData === 'accepted' || ev.info.earlyDataResent === true) this.plainWritten += this.earlyDataBytes;
          if (this.timer) clearTimeout(this.timer);
          if (conn.isClient) this.emit('secureConnect');
          this.emit('secure', ev.info);
          this.afterConnected();
          break;
        case 'data':
          // 0-RTT data is not a reason to stop reading: the client's Finished comes after it, and an application
          // that reads once the handshake is over (the proxy does) would wait for it forever. Bounded by
          // maxEarlyDataSize; the first data after the handshake pauses reading if it is still unread.
          this.plainRead += ev.data.byteLength;
          if (!this.push(Buffer.from(ev.data.buffer, ev.data.byteOffset, ev.data.byteLength)) && !ev.early) this.socket.pause();
          break;
        case 'early-data':
          this.emit('earlyData', ev.status);
          break;
        case 'psk-request':
          this.resolvePsks(ev.request);
          break;
        case 'key-agreement':
          this.runKeyAgreement(ev.request);
          break;
        case 'end':
          this.endReadable();
          break;
        case 'key-update':
          this.emit('keyUpdate', ev.direction);
          break;
        case 'error':
          this.destroy(ev.error);
          return flushed;
      }
    }
    return flushed;
  }

  /**
   * Ends the readable side. Like net.Socket, 'end' is emitted even when the application never reads: with
   * nothing buffered, read(0) completes the end at once (push(null) alone waits for a reader, and a server
   * that only writes would keep every closed connection forever).
   */
  private endReadable(): void {
    this.endPushed = true;
    this.push(null);
    this.read(0);
  }

  private afterConnected(): void {
    if (this.pendingWrite && this.pendingWrite.chunks.length > 0) {
      const p = this.pendingWrite;
      this.pendingWrite = null;
      this.writeChunks(p.chunks, p.callback);
    }
    if (this.finalCallback) {
      const cb = this.finalCallback;
      this.finalCallback = null;
      this._final(cb);
    }
  }

  /**
   * Reads from the socket again, unless the handshake now waits for something else (a key agreement after the
   * PSKs) or the application has not taken what we pushed (then _read resumes it). Not `readableFlowing`: it is
   * false for an application that reads in paused mode (a 'readable' listener, an async iterator), whose pending
   * read would never call _read again, and the socket would stay paused for good.
   */
  private resumeUnlessWaiting(): void {
    const conn = this.conn!;
    if (this.destroyed || this.pausedForOutput || this.readableLength >= this.readableHighWaterMark || conn.pendingKeyAgreement || conn.pskRequest) return;
    this.socket.resume();
  }

  /** Runs the key agreement the handshake paused for, reading nothing meanwhile (as during a PSK lookup). */
  private runKeyAgreement(request: KeyAgreementRequest): void {
    const conn = this.conn!;
    this.socket.pause();
    void runKeyAgreement(conn, request).then(() => {
      if (this.destroyed) return;
      this.pump();
      this.resumeUnlessWaiting();
    });
  }

  private resolvePsks(request: PskRequest): void {
    const resolver = this.asyncPskResolver;
    const conn = this.conn!;
    if (!resolver) {
      conn.failPskLookup('no PSK lookup configured');
      this.pump();
      return;
    }
    // Stop reading while the lookup runs: TCP flow control, not our memory, holds what the peer sends.
    this.socket.pause();
    const settle = (): void => {
      this.pump();
      this.resumeUnlessWaiting();
    };
    // A resolver that throws synchronously fails this handshake, nothing else; a synchronous one's answer (no
    // promise) is taken as it is.
    Promise.resolve()
      .then(() => resolver(request, this))
      .then(
        (psks) => {
          // Too late (the connection ended during the lookup): a serverPskResolver's leased keys go now.
          if (this.destroyed || conn.phase !== 'handshaking') return releaseResolvedPsks(psks);
          conn.providePsks(psks);
          settle();
        },
        (e: unknown) => {
          if (this.destroyed || conn.phase !== 'handshaking') return;
          conn.failPskLookup(`PSK lookup failed: ${thrownMessage(e)}`);
          settle();
        },
      );
  }
}

export { TlsError, TransportError, TRANSPORT_ERROR_CODES, type TransportErrorCode };

/**
 * An idle time as net.Socket.setTimeout takes it: any non-negative finite number of milliseconds, a fraction or one
 * past MAX_TIMER_MS included (that one is truncated to it, as Node truncates); not a number is a TypeError, a
 * negative or infinite one a RangeError (as net.Socket's ERR_INVALID_ARG_TYPE and ERR_OUT_OF_RANGE).
 */
function checkIdleMs(option: string, ms: number): void {
  if (typeof ms !== 'number') throw new TypeError(`${option} must be a number of milliseconds, got ${typeof ms}`);
  if (!(ms >= 0 && Number.isFinite(ms))) {
    throw new RangeError(`${option} must be a non-negative finite number of milliseconds (0: off), got ${String(ms)}`);
  }
}
