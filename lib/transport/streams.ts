/**
 * WHATWG streams transport: TLS over any `{ readable, writable }` byte-stream pair — what Deno.connect,
 * Bun, Cloudflare Workers' `connect()` and Node's `Duplex.toWeb` give — returning the plaintext as another
 * `{ readable, writable }` pair. Runtime-neutral: no `node:` imports.
 *
 * ```ts
 * const tcp = await Deno.connect({ hostname: '127.0.0.1', port: 8443 });
 * const tls = tlsClientOverStreams(tcp, { crypto: nobleProvider, psks: [psk] });
 * console.log(await tls.handshake);              // { suite, kex, group, identity, ... }
 * const w = tls.writable.getWriter(); await w.write(new TextEncoder().encode('hi')); await w.close();
 * for await (const chunk of tls.readable) ...
 * ```
 *
 * A server in Deno passes `connStreams(conn)` (lib/transport/conn-streams.ts) rather than the `Deno.Conn` itself:
 * Deno closes the whole socket when its readable reads the peer's end of stream.
 */
import { Connection } from '../connection/connection.js';
import { checkCryptoOption, checkTransportOptions, type ClientOptions, type ServerOptions } from '../config/options.js';
import type { HandshakeInfo } from '../config/events.js';
import type { Psk, PskRequest } from '../psk/types.js';
import type { CryptoProvider } from '../crypto/provider.js';
import { keyShareProvider, runKeyAgreement } from './key-agreement.js';
import { WebCryptoRecords } from './webcrypto-records.js';
import { thrownMessage } from '../callbacks.js';
import { TransportError } from '../errors.js';
import { bufferSourceBytes, kindOf } from '../codec/bytes.js';

export { connStreams, type ConnLike, type ConnStreamsOptions } from './conn-streams.js';
export { TransportError, TRANSPORT_ERROR_CODES, type TransportErrorCode } from '../errors.js';

export interface ByteStreamPair {
  readonly readable: ReadableStream<Uint8Array>;
  readonly writable: WritableStream<Uint8Array>;
  /**
   * Half-close: ends our direction only (TCP FIN), keeping the readable open for what the peer still sends.
   * Deno's `Deno.Conn` has it; where a transport lacks it, closing `writable` must itself be a half-close (a
   * Worker's `connect()` socket, Node's `Duplex.toWeb`, the WebSocket transport's pair). Used when the TLS
   * writable closes, after close_notify: closing Deno's `writable` instead would close the whole socket and
   * lose the peer's close_notify and any data still in flight (RFC 8446 §6.1: each side closes its own
   * direction).
   */
  closeWrite?(): Promise<void> | void;
}

export interface TlsStreams extends ByteStreamPair {
  /**
   * Resolves with the handshake summary, or rejects with the TlsError that ended the handshake (its `reason`), or a
   * TransportError (its `code`: the transport closed or failed, the application cancelled; lib/errors.ts).
   */
  readonly handshake: Promise<HandshakeInfo>;
  /** The underlying sans-IO connection (exporters, diagnostics). */
  readonly connection: Connection;
  /** Sends a KeyUpdate (RFC 8446 §4.6.3) after what was written so far; `requestPeer` asks the peer to update too. */
  keyUpdate(requestPeer?: boolean): void;
  /** Application data records sealed and opened by WebCrypto so far (0 and 0 when not offloading). */
  readonly offloaded: { readonly sealed: number; readonly opened: number };
  /**
   * The provider the connection runs on: the one given, or (with `webCryptoKeyShares`) its WebCrypto wrapper,
   * whose `keySharePath('x25519')` and `keyShares` counts tell whether the key shares ran in WebCrypto.
   */
  readonly crypto: CryptoProvider;
}

/** Options of the transport itself, beside the connection's. */
export interface StreamTransportOptions {
  /**
   * Fail the handshake (reason HandshakeTimeout, an internal_error alert sent) if it has not completed after
   * this many milliseconds (any PSK lookup included). Default 30 s; 0 turns the limit off. Anything but a
   * number from 0 to 2^31 - 1 (setTimeout's longest delay) is a RangeError.
   */
  readonly handshakeTimeout?: number;
  /**
   * How application data is protected. By default, once the handshake is complete, AES-GCM records are
   * sealed and opened with the runtime's WebCrypto (`crypto.subtle`), several at once — native speed in
   * browsers, Deno, Bun and Workers — while the connection keeps the handshake, KeyUpdate, alerts and
   * close_notify (lib/transport/webcrypto-records.ts); ChaCha20-Poly1305 stays on the connection's cipher.
   * False keeps every record on the connection's own (synchronous) cipher. Default true, except with the
   * node provider (`crypto.name === 'node'`): its synchronous native AES-GCM is faster than Node's WebCrypto,
   * which pays a thread hand-off per record (bench/RESULTS.md, "Record offload").
   */
  readonly offload?: boolean;
  /**
   * Records sealed at once when offloading, and received records waiting to be opened before the next read (at most
   * twice as many lent by the connection and being opened; the transport reads on only once the connection has lent
   * every record it read): an integer from 1, default 8.
   */
  readonly recordsInFlight?: number;
  /**
   * Whether the X25519 and P-256 key exchanges of the handshake run in the runtime's WebCrypto
   * (`withWebCryptoKeyShares`, lib/crypto/webcrypto.ts): native code instead of JavaScript, while the handshake
   * pauses for it (the bytes on the wire are the same; a runtime whose WebCrypto lacks an algorithm uses the
   * connection's own group). Default true, except with the node provider (`crypto.name === 'node'`), whose key
   * exchange is already native and synchronous. False keeps every key exchange on the connection's provider.
   */
  readonly webCryptoKeyShares?: boolean;
}

/** Default time allowed for a handshake. */
export const DEFAULT_STREAMS_HANDSHAKE_TIMEOUT_MS = 30_000;

/** Chunks of plaintext the readable queues before the transport stops reading (backpressure). */
const PLAINTEXT_QUEUE = 4;

/** Most bytes waiting to be sent before reading stops when what was read made the connection send something. */
const MAX_UNSENT_WHILE_READING = 256 * 1024;

/** How long a connection that failed waits for the transport to take its alert before reporting the failure. */
export const ALERT_FLUSH_TIMEOUT_MS = 2_000;

export interface StreamServerOptions extends ServerOptions, StreamTransportOptions {
  /** An asynchronous PSK lookup (e.g. a key manager over fetch), used when `psks` is not given. */
  readonly lookupPsks?: (request: PskRequest) => Promise<readonly (Psk | undefined)[]>;
}

/** Runs a TLS client over `transport`. */
export function tlsClientOverStreams(transport: ByteStreamPair, options: ClientOptions & StreamTransportOptions): TlsStreams {
  const { handshakeTimeout, offload, recordsInFlight, webCryptoKeyShares, ...rest } = options;
  checkTransportOptions(options);
  checkCryptoOption('tlsClientOverStreams', options.crypto);
  checkByteStreamPair('tlsClientOverStreams', transport);
  const crypto = keyShareProvider(rest.crypto, webCryptoKeyShares, nativeByDefault(rest.crypto));
  return run(transport, Connection.client({ ...rest, crypto }), undefined, handshakeTimeout, { offload: offload ?? nativeByDefault(rest.crypto), recordsInFlight }, crypto);
}

/**
 * Runs a TLS server over `transport` (one connection). A server that accepts 0-RTT (`maxEarlyDataSize` above 0)
 * passes the same `earlyDataReplayGuard` (e.g. one `createEarlyDataReplayGuard()` made when it starts) to every call,
 * so that a recorded first flight sent again on another connection gets its early data rejected (RFC 8446 §8.2);
 * without one the options are a TypeError (or `dangerouslyAcceptReplayedEarlyData: true`).
 */
export function tlsServerOverStreams(transport: ByteStreamPair, options: StreamServerOptions): TlsStreams {
  const { lookupPsks, handshakeTimeout, offload, recordsInFlight, webCryptoKeyShares, ...rest } = options;
  if (lookupPsks && rest.psks) throw new TypeError('tlsServerOverStreams: give either psks or lookupPsks, not both');
  checkTransportOptions(options);
  checkCryptoOption('tlsServerOverStreams', options.crypto);
  checkByteStreamPair('tlsServerOverStreams', transport);
  const crypto = keyShareProvider(rest.crypto, webCryptoKeyShares, nativeByDefault(rest.crypto));
  return run(transport, Connection.server({ ...rest, crypto }), lookupPsks, handshakeTimeout, { offload: offload ?? nativeByDefault(rest.crypto), recordsInFlight }, crypto);
}

/**
 * Checks that `transport` is a byte-stream pair, else a TypeError saying what is one. Without it, a socket of
 * another kind (Bun.connect's, a node:net Socket) failed with "Cannot read properties of undefined (reading
 * 'getWriter')" (found in a library walkthrough in Bun).
 */
function checkByteStreamPair(who: string, transport: unknown): void {
  const pair = transport as { readable?: { getReader?: unknown }; writable?: { getWriter?: unknown } } | null | undefined;
  if (typeof pair?.readable?.getReader === 'function' && typeof pair?.writable?.getWriter === 'function') return;
  const kind = typeof transport === 'object' && transport !== null ? transport.constructor?.name : undefined;
  const got = typeof transport !== 'object' || transport === null ? String(transport === undefined ? 'nothing' : typeof transport) : `${kind && kind !== 'Object' ? `a ${kind}` : 'an object'} without both`;
  throw new TypeError(
    `${who}: the transport must be a byte-stream pair { readable: ReadableStream, writable: WritableStream }, such as a Deno.Conn, ` +
      `a Worker's connect() socket or Node's Duplex.toWeb(socket) (a Bun or node:net socket is not one: in Bun use qkd-tls/node); got ${got}`,
  );
}

function run(
  transport: ByteStreamPair,
  conn: Connection,
  resolver: ((r: PskRequest) => Promise<readonly (Psk | undefined)[]>) | undefined,
  handshakeTimeout = DEFAULT_STREAMS_HANDSHAKE_TIMEOUT_MS,
  recordOptions: Pick<StreamTransportOptions, 'offload' | 'recordsInFlight'>,
  crypto: CryptoProvider,
): TlsStreams {
  const writer = transport.writable.getWriter();
  const reader = transport.readable.getReader();
  let settle: { resolve: (i: HandshakeInfo) => void; reject: (e: unknown) => void };
  const handshake = new Promise<HandshakeInfo>((resolve, reject) => (settle = { resolve, reject }));
  handshake.catch(() => {}); // the caller may only watch the plaintext streams
  let plain!: ReadableStreamDefaultController<Uint8Array>;
  let plainWritable: WritableStreamDefaultController | undefined;
  /** What ended the connection (an alert sent or received, the transport failed, the application gave up), once it did. */
  let failure: unknown;
  let wantMore: (() => void) | null = null;
  let done = false;
  /** The peer's close_notify arrived (we read no further); our close_notify was sent and our direction ended. */
  let peerDone = false;
  let ourDirectionClosed = false;
  /**
   * Our direction is over: closed after our close_notify, or sending failed (a record WebCrypto would not seal, a
   * write the transport rejected), after which nothing more can be sent — no alert, no close_notify, no answer to a
   * KeyUpdate request. Once reading is over too, nothing needs the keys any more.
   */
  const ourDirectionOver = (): boolean => ourDirectionClosed || records.sendFailure !== null;

  // The connection has no clock: the deadline is kept here (setTimeout exists in every runtime).
  const timer =
    handshakeTimeout > 0
      ? setTimeout(() => {
          conn.handshakeTimedOut(`the TLS handshake timed out after ${handshakeTimeout} ms`);
          void pump().catch(finish);
        }, handshakeTimeout)
      : undefined;
  /** The failure the plaintext readable ends with once what was queued before it has been read (see failPlaintext). */
  let plaintextError: { error: unknown } | null = null;
  /**
   * Errors the plaintext readable after the plaintext queued in it: controller.error() discards the queue, so data the
   * peer sent before its alert, or before the transport failed (authenticated, and received in the same read), never
   * reached an application that was not reading at that moment, where node:tls emits it before the error. (As the
   * WebSocket transport holds a failure back behind the messages that came before it.) Nothing is enqueued once the
   * connection is over (`done`), so nothing is delivered after the failure.
   */
  const failPlaintext = (err: unknown): void => {
    try {
      if (plain.desiredSize === PLAINTEXT_QUEUE) plain.error(err);
      else if (plain.desiredSize !== null) plaintextError = { error: err }; // (the next pull, once the queue is empty)
    } catch {
      /* already closed */
    }
  };
  const finish = (err?: unknown): void => {
    clearTimeout(timer);
    if (done) return;
    done = true;
    if (err) {
      failure = err;
      settle.reject(err);
      failPlaintext(err);
      // The writable fails with it too: a write or close() after the connection failed rejected with "write: the
      // connection is failed" (an Error with no reason or code), or close() resolved as if our direction had closed
      // cleanly (no close_notify was sent). (Nothing happens to a writable closed or aborted already.)
      plainWritable?.error(err);
      void writer.abort(err).catch(() => {});
    }
    void reader.cancel().catch(() => {});
    // A failure, or nothing more to read after our direction closed: the connection is over, so are its keys.
    if (err || ourDirectionOver()) destroy();
  };

  /** Ends the connection (its keys wiped) and lets the record pipeline drop the CryptoKeys it imported from them. */
  const destroy = (): void => {
    conn.destroy();
    records.flushCore();
  };

  // Every record leaves through this queue, in sequence order (offloaded or not).
  const records = new WebCryptoRecords(conn, {
    send: (bytes) => writer.write(bytes),
    // (Records still being opened when the application cancelled its readable, or the transport failed, are
    // dropped: the plaintext stream is closed.)
    deliver: (data) => {
      if (!done) plain.enqueue(data);
    },
    afterCore: () => pump().catch(finish),
    ...recordOptions,
  });

  /** Queues pending output and dispatches events. */
  const pump = async (): Promise<void> => {
    records.flushCore();
    for (const ev of conn.takeEvents()) {
      switch (ev.type) {
        case 'handshake':
          clearTimeout(timer);
          settle.resolve(ev.info);
          break;
        case 'data':
          if (!done) plain.enqueue(ev.data);
          break;
        case 'end':
          try {
            plain.close();
          } catch {
            /* already closed */
          }
          break;
        case 'psk-request':
          if (!resolver) conn.failPskLookup('no PSK lookup configured');
          else {
            try {
              conn.providePsks(await resolver(ev.request));
            } catch (e) {
              // (Anything thrown, not only an Error: `throw undefined` must fail this handshake too, with its alert.)
              conn.failPskLookup(`PSK lookup failed: ${thrownMessage(e)}`);
            }
          }
          await pump();
          break;
        case 'key-agreement':
          // The handshake pauses (and this transport reads nothing more) until the key agreement is answered.
          await runKeyAgreement(conn, ev.request);
          await pump();
          break;
        case 'error':
          await flushQuietly();
          finish(ev.error);
          return;
        default:
          break;
      }
    }
  };

  /** After close_notify: half-close the transport, never the whole of it (see ByteStreamPair.closeWrite). */
  const closeOurDirection = async (): Promise<void> => {
    if (typeof transport.closeWrite !== 'function') {
      await writer.close().catch(() => {});
      return;
    }
    await writer.ready.catch(() => {}); // every record written so far has been handed to the transport
    try {
      await transport.closeWrite();
    } catch {
      /* the peer is gone already: nothing left to end */
    }
  };

  /** A failing connection's last records (its alert) go out if the transport takes them within a bound. */
  const flushQuietly = async (): Promise<void> => {
    records.flushCore();
    let timer: ReturnType<typeof setTimeout> | undefined;
    // (A peer that stopped reading would otherwise keep the failure from ever reaching the application.)
    const bound = new Promise<void>((r) => (timer = setTimeout(r, ALERT_FLUSH_TIMEOUT_MS)));
    await Promise.race([records.drained().catch(() => {}), bound]);
    clearTimeout(timer);
  };

  const readLoop = async (): Promise<void> => {
    try {
      await pump(); // a client's ClientHello
      while (!done) {
        if (plain.desiredSize !== null && plain.desiredSize <= 0) await new Promise<void>((r) => (wantMore = r));
        // Not while records read before wait in the connection to be lent (it lends them a window at a time):
        // reading on would grow its buffer by whatever a fast peer sends.
        await records.readRoom();
        const { value, done: eof } = await reader.read();
        // The connection ended while we waited (a failure, the application's abort): finish() cancelled the reader,
        // whose read then answers "done". That is no end of stream: closing the plaintext readable here would end
        // it cleanly, as a close_notify does (RFC 8446 §6.1), before the failure held behind its data errors it.
        if (done) return;
        if (eof) await records.readDrained();
        if (done) return; // (likewise a record still being opened at the end of stream that failed the connection)
        if (eof) {
          if (conn.phase === 'handshaking') finish(new TransportError('ERR_QKD_TLS_CLOSED_BEFORE_HANDSHAKE', 'the transport closed before the TLS handshake completed'));
          else {
            try {
              plain.close();
            } catch {
              /* already closed */
            }
            done = true;
            if (ourDirectionOver()) destroy(); // both directions are over: wipe the session keys
          }
          return;
        }
        // A chunk a reader got from its stream is the reader's: the connection may keep views of it. Bytes in
        // another BufferSource (an ArrayBuffer, as a WebSocketStream yields, a DataView) are taken as they are;
        // anything else (a string) fails the connection with internal_error (Connection.receive).
        const sentBefore = records.coreOutputBytes;
        records.receive(bufferSourceBytes(value) ?? value, true);
        const answered = records.coreOutputBytes > sentBefore;
        await pump();
        // What the peer's records made us send (a KeyUpdate answering update_requested) waits while the peer does
        // not read it: stop reading until it leaves, or a peer that asks and never reads grows our memory.
        // (A failed send is the writing side's to report: reading goes on as before.)
        if (answered) await records.queuedAtMost(MAX_UNSENT_WHILE_READING).catch(() => {});
        // A last record shorter than a full one may be the peer's close_notify (padded, perhaps), still being
        // opened by the offload: let it be opened before reading on. (Which record is last is known once the
        // connection has lent them all: it lends a window at a time.)
        if (records.unlentRecords) await records.allLent();
        if (records.mayHaveEnded) await records.readDrained();
        if (conn.peerClosed) {
          // §6.1: nothing the peer sends after its close_notify counts, so stop reading here. Reading on to the
          // transport's end of stream would also be harmful: Deno closes the whole socket when its readable
          // ends, which would cut off what we still write (the rest of an echo, our own close_notify). The
          // reader is released once our direction is closed too.
          peerDone = true;
          if (ourDirectionOver()) releaseReader();
          return;
        }
      }
    } catch (e) {
      // A transport that could not connect may fail its reads with less than its writes say: a Worker's connect()
      // socket rejects the write with "proxy request failed, cannot connect to the specified address" and then the
      // read with "Stream was cancelled." (found in a library walkthrough, the README's Worker without `await
      // socket.opened`). What sending failed with, if it did, is the cause. A read that rejects with nothing (a
      // readable errored with undefined) fails the handshake too: finish(undefined) is a clean end, which left the
      // handshake pending for good, its deadline cleared.
      // Records read before the failure and still being opened by the offload (full ones: the loop reads on without
      // waiting for them, see mayHaveEnded) are delivered first, as without the offload: finish() ends the connection,
      // after which deliver() drops what they carry. (As at the end of stream above; nothing waits once it is over.)
      if (!done) await records.readDrained();
      const failure = records.sendFailure ?? e;
      finish(failure || new TransportError('ERR_QKD_TLS_TRANSPORT_FAILED', `the transport failed: reading it rejected with ${String(failure)}`));
    }
  };

  /** Both directions are closed: let the transport go (on Deno this closes the socket, now that nothing is left to write). */
  const releaseReader = (): void => {
    clearTimeout(timer);
    done = true;
    void reader.cancel().catch(() => {});
    destroy(); // the traffic and exporter secrets are no longer needed (the Node transport does the same)
  };

  const readable = new ReadableStream<Uint8Array>(
    {
      start(c) {
        plain = c;
      },
      pull() {
        if (plaintextError && plain.desiredSize === PLAINTEXT_QUEUE) {
          plain.error(plaintextError.error); // what came before the failure has been read
          return;
        }
        const w = wantMore;
        wantMore = null;
        w?.();
      },
      cancel() {
        if (conn.phase === 'handshaking') {
          // Nothing more is read, so the handshake cannot complete: fail it (its promise and any write waiting for
          // it) rather than leave it pending for good (finish() clears the handshake deadline too).
          destroy();
          finish(new TransportError('ERR_QKD_TLS_CANCELLED', 'the plaintext readable was cancelled before the TLS handshake completed'));
        } else finish();
      },
    },
    { highWaterMark: PLAINTEXT_QUEUE },
  );

  /**
   * Sending failed (the write or close that saw it rejects with the failure): if reading is over already, so is the
   * connection, and its keys are wiped now — before, a connection whose sending failed kept them (and the lent write
   * key) for as long as the application held its streams, as nothing closed our direction.
   */
  const sendingFailed = (e: unknown): never => {
    if (records.sendFailure !== null) {
      if (peerDone) releaseReader();
      else if (done) destroy();
    }
    throw e;
  };

  /** The writable is given up (aborted, or errored by a chunk that is not bytes): so is the connection. */
  const giveUp = (reason: unknown): void => {
    destroy();
    finish(reason ?? new TransportError('ERR_QKD_TLS_CANCELLED', 'aborted'));
    // Our direction is given up: so is the transport's, also when reading was over already (end of stream, or the
    // plaintext readable cancelled), where finish() did nothing — else a socket left open for writing (connStreams)
    // was never closed.
    void writer.abort(reason).catch(() => {});
  };

  /**
   * The writable's abort signal (WritableStreamDefaultController.signal), which fires as soon as the application aborts
   * it (writable.abort()). The streams spec calls the sink's abort() only after the write or close in progress has
   * settled, and those wait while the peer does not read (backpressure) or the handshake is pending: an abort waited
   * with them, for good with a peer that never reads again, the connection and its keys kept. The write or close in
   * progress now gives up when the signal fires, and abort() below ends the connection with the reason given.
   */
  let abortSignal: AbortSignal | undefined;
  /** Rejects what the sink waits for now (its write and close run one at a time): set by untilAborted. */
  let abortWaiting: ((reason: unknown) => void) | null = null;
  /** `p`, or a rejection with the abort's reason if the writable is aborted first. */
  const untilAborted = <T>(p: Promise<T>): Promise<T> => {
    if (!abortSignal) return p;
    if (abortSignal.aborted) return Promise.reject(abortSignal.reason);
    return new Promise<T>((resolve, reject) => {
      abortWaiting = reject; // (rejecting a promise that has settled already does nothing)
      p.then(resolve, reject);
    });
  };

  const writable = new WritableStream<Uint8Array>({
    start(controller) {
      plainWritable = controller;
      const signal = (controller as { signal?: AbortSignal }).signal; // (WHATWG streams; every runtime we run in has it)
      abortSignal = signal;
      signal?.addEventListener('abort', () => abortWaiting?.(signal.reason), { once: true });
    },
    async write(chunk) {
      // Bytes in any BufferSource, as a WritableStream of fetch or a socket takes them. Anything else was written as
      // nothing (an ArrayBuffer, a DataView: their length is undefined) or as zeros (a string's characters, offloaded),
      // and the write resolved as if sent. The rejection errors this writable (the streams spec), which then can
      // never close our direction: the connection is given up, as by abort().
      const bytes = bufferSourceBytes(chunk);
      if (!bytes) {
        const e = new TypeError(`the TLS writable takes bytes (a Uint8Array or another BufferSource; a string goes through a TextEncoderStream), got ${kindOf(chunk)}`);
        giveUp(e);
        throw e;
      }
      try {
        // A write waits for the handshake (the connection could queue it), which keeps backpressure meaningful.
        if (conn.phase === 'handshaking') await untilAborted(handshake);
        await untilAborted(records.write(bytes).catch(sendingFailed));
        await pump();
      } catch (e) {
        throw failure ?? e; // (a write in progress when the connection failed: the connection's own error says why)
      }
    },
    async close() {
      if (conn.phase === 'handshaking') await untilAborted(handshake);
      conn.close();
      await pump();
      await untilAborted(records.drained().catch(sendingFailed)); // every record, offloaded ones included, handed to the transport
      await untilAborted(closeOurDirection());
      // A close in progress when the connection failed would otherwise close the errored writable (the streams spec
      // lets a sink's close that succeeds win): no close_notify went out, so it did not close cleanly.
      if (failure) throw failure;
      ourDirectionClosed = true;
      if (peerDone) releaseReader();
      else if (done) destroy(); // reading was over already (end of stream, cancelled): so is the connection
    },
    abort(reason) {
      giveUp(reason);
    },
  });

  void readLoop();
  return {
    readable,
    writable,
    handshake,
    connection: conn,
    keyUpdate(requestPeer = false) {
      conn.keyUpdate(requestPeer);
      void pump();
    },
    get offloaded() {
      return { sealed: records.offloadedWrites, opened: records.offloadedReads };
    },
    crypto,
  };
}

/**
 * The default of `offload` and `webCryptoKeyShares`: WebCrypto's native code, except over the node provider, whose
 * own AES-GCM and key exchange are native and synchronous already (and faster than Node's WebCrypto, which pays a
 * thread hand-off per call: bench/RESULTS.md).
 */
function nativeByDefault(crypto: { readonly name: string }): boolean {
  return crypto.name !== 'node';
}

