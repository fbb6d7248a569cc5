/**
 * The sans-IO TLS 1.3 connection: bytes in, bytes out, events — no sockets, no clock, no randomness of its own.
 *
 * ```ts
 * const conn = Connection.client({ crypto, psks: [{ identity, secret, hash: 'SHA-256' }] });
 * socket.write(conn.takeOutput());            // the ClientHello
 * socket.on('data', (b) => {
 *   conn.receive(b);
 *   const out = conn.takeOutput(); if (out) socket.write(out);
 *   for (const ev of conn.takeEvents()) ...    // 'handshake', 'data', 'end', 'error', ...
 * });
 * conn.write(new TextEncoder().encode('hello'));
 * ```
 *
 * `receive` never throws for anything the peer sends: a protocol failure becomes one fatal alert (queued in the
 * output) and an `error` event. Methods called in the wrong state (writing after close) throw.
 */
import { AlertDescription, AlertLevel, ContentType, nameOf } from '../codec/enums.js';
import { concat, copyBytes, isBytes, kindOf, toHex, wipe } from '../codec/bytes.js';
import type { CryptoProvider } from '../crypto/provider.js';
import { alertName } from '../alerts.js';
import { receivedAlertHint, TlsError, TransportError } from '../errors.js';
import { exportKeyingMaterial, nextTrafficSecret, trafficKeys } from '../keyschedule/schedule.js';
import { encodeKeyUpdate } from '../messages/post-hello.js';
import { releaseResolvedPsks } from '../psk/source.js';
import type { Psk, PskRequest } from '../psk/types.js';
import { Deframer, encodePlaintextRecord, MAX_PLAINTEXT, type DeframedRecord, type RawRecord } from '../record/deframer.js';
import { HandshakeJoiner, fragments } from '../record/handshake-joiner.js';
import { checkRecordPadding, paddingLength } from '../record/padding.js';
import { RecordProtection } from '../record/protection.js';
import type { RecordTraceHook } from '../record/trace-hook.js';
import { observer } from '../callbacks.js';
import type { SuiteInfo } from '../suites.js';
import { startClient } from '../handshake/client.js';
import type { ApplicationSecrets, HandshakeIO, HandshakeState, KeyLogLabel } from '../handshake/io.js';
import { isAwaitingPsks, startServer } from '../handshake/server.js';
import { isAwaitingKeyAgreement, type KeyAgreementRequest, type KeyAgreementResult } from '../handshake/key-agreement.js';
import { checkCryptoOption, type ClientOptions, type ServerOptions } from '../config/options.js';
import type { ConnectionEvent, HandshakeInfo } from '../config/events.js';
import { LentDirection, type ReadOffload, type RecordSource, type WriteOffload } from './offload.js';

export type ConnectionPhase = 'handshaking' | 'connected' | 'failed' | 'closed';

/** Which close_notify alerts have gone which way on a connected connection (RFC 8446 §6.1); both: closed. */
type CloseNotify = 'none' | 'sent' | 'received';

/** Where the connection is, with what matters in that phase only. */
type Phase =
  /** `closeRequested`: close() was called; close_notify follows the queued data once connected. */
  | { readonly kind: 'handshaking'; readonly closeRequested: boolean }
  | { readonly kind: 'connected'; readonly closeNotify: CloseNotify }
  | { readonly kind: 'failed'; readonly error: TlsError }
  /** `peerClosed`: the peer had sent close_notify (false when we were destroyed before it did). */
  | { readonly kind: 'closed'; readonly peerClosed: boolean };

/** Server: how records around 0-RTT data are treated (RFC 8446 §4.2.10). */
type EarlyDataHandling =
  | { readonly kind: 'none' }
  /** 0-RTT accepted: application data under the early keys is early data, up to `budget` more bytes. */
  | { readonly kind: 'accepting'; readonly budget: number }
  /** 0-RTT rejected: records that fail to decrypt are dropped, up to `left` more bytes, until one decrypts. */
  | { readonly kind: 'skipping-undecryptable'; readonly left: number }
  /** After a HelloRetryRequest: protected 0-RTT records still arrive as application_data; up to `left` more bytes are dropped. */
  | { readonly kind: 'skipping-plaintext'; readonly left: number };

const NO_EARLY_DATA: EarlyDataHandling = { kind: 'none' };

export class Connection {
  /**
   * A client connection; its ClientHello is ready in {@link takeOutput} at once, unless the provider makes the key
   * shares asynchronously (`withWebCryptoKeyShares`): then once the `key-agreement` it reports
   * ({@link pendingKeyAgreement}) is answered. Options it refuses are a TypeError (a RangeError for
   * keyUpdateAfterRecords); a PSK whose lease was released (its secret wiped, lib/psk/source.ts) is a TlsError
   * PskUnavailable with no alert sent, thrown before anything is sent (see releasedPskProblem).
   */
  static client(options: ClientOptions): Connection {
    return new Connection(true, options);
  }

  /**
   * A server connection; feed it the client's bytes with {@link receive}. Options it refuses are a TypeError (a
   * RangeError for keyUpdateAfterRecords).
   */
  static server(options: ServerOptions): Connection {
    return new Connection(false, options);
  }

  readonly isClient: boolean;
  private readonly crypto: CryptoProvider;
  private readonly keyLog?: (line: string) => void;
  /** The record trace hook, if tracing was asked for (every call site tests it first: no cost otherwise). */
  private readonly trace?: RecordTraceHook;
  private readonly io: HandshakeIO;
  private state: HandshakeState;
  private phaseValue: Phase = { kind: 'handshaking', closeRequested: false };

  private readonly deframer = new Deframer();
  private readonly joiner = new HandshakeJoiner();
  private reader: RecordProtection | null = null;
  private writer: RecordProtection | null = null;

  private out: Uint8Array[] = [];
  private pendingHandshake: Uint8Array[] = [];
  private events: ConnectionEvent[] = [];

  /** Application data written before the handshake completed. */
  private queued: Uint8Array[] = [];
  /** legacy_record_version of plaintext records: 0x0301 for a client's first flight (§5.1), then 0x0303. */
  private plaintextVersion: number;

  /** Largest content we put in one record (RFC 8449: the peer's record_size_limit - 1). */
  private maxFragment = MAX_PLAINTEXT;
  /** Largest TLSInnerPlaintext we accept (our own record_size_limit, once negotiated). */
  private maxInnerPlaintext = MAX_PLAINTEXT + 1;
  /** Consecutive records without application data (see countIdleRecord). */
  private idleRecords = 0;
  private earlyData: EarlyDataHandling = NO_EARLY_DATA;

  private secrets: ApplicationSecrets | null = null;
  /** The application traffic keys lent to the transport, per direction (lib/connection/offload.ts). */
  private lentWrite: LentDirection | null = null;
  private lentRead: LentDirection | null = null;
  private lentGenerations = 0;
  /** Whether any record went out (a client paused before its first ClientHello has sent nothing yet). */
  private sentRecords = false;
  /** The keyUpdateAfterRecords option (§5.5), lowered to the suite's limit when the suite is known. */
  private readonly keyUpdateAfter: number;
  /** The recordPadding option (§5.4): a block size, 0 for none. */
  private readonly paddingBlock: number;
  private info: HandshakeInfo | null = null;

  private constructor(isClient: boolean, options: ClientOptions | ServerOptions) {
    checkCryptoOption(isClient ? 'client' : 'server', options?.crypto);
    this.isClient = isClient;
    this.plaintextVersion = isClient ? 0x0301 : 0x0303;
    this.crypto = options.crypto;
    // Observers: what they throw is reported to onCallbackError and changes nothing here (lib/callbacks.ts).
    this.keyLog = observer('keyLog', options.keyLog, options.onCallbackError);
    this.trace = observer('trace', options.trace, options.onCallbackError);
    const after = options.keyUpdateAfterRecords;
    if (after !== undefined && !(Number.isSafeInteger(after) && after >= 1)) throw new RangeError('keyUpdateAfterRecords must be a positive integer');
    this.keyUpdateAfter = after ?? Number.MAX_SAFE_INTEGER;
    this.paddingBlock = checkRecordPadding(isClient ? 'client' : 'server', options.recordPadding);
    this.io = this.makeIO();
    if (isClient) {
      this.state = this.entered(startClient(this.io, options as ClientOptions));
      this.flushHandshake();
    } else {
      this.state = startServer(this.io, options as ServerOptions);
    }
  }

  // ---------------------------------------------------------------------------------------------------------
  // Public API

  get phase(): ConnectionPhase {
    return this.phaseValue.kind;
  }
  /** The handshake summary, once the handshake is complete. */
  get handshake(): HandshakeInfo | null {
    return this.info;
  }
  /** The fatal error that ended this connection, if any. */
  get error(): TlsError | null {
    return this.phaseValue.kind === 'failed' ? this.phaseValue.error : null;
  }
  /** True while we may still write (we have not sent close_notify and the connection has not failed). */
  get writable(): boolean {
    const p = this.phaseValue;
    return (p.kind === 'handshaking' && !p.closeRequested) || (p.kind === 'connected' && p.closeNotify !== 'sent');
  }
  /** True once the peer sent close_notify. */
  get peerClosed(): boolean {
    const p = this.phaseValue;
    return (p.kind === 'connected' && p.closeNotify === 'received') || (p.kind === 'closed' && p.peerClosed);
  }
  /**
   * Server: the pending PSK request, while the handshake waits for {@link providePsks}; null once the connection
   * failed or was destroyed (a fatal error or destroy() leaves the state in place, but providePsks then throws).
   */
  get pskRequest(): PskRequest | null {
    return this.awaitingPsks && isAwaitingPsks(this.state) ? this.state.pskRequest : null;
  }
  /**
   * The key agreement the handshake waits for, while it waits (the provider has an asynchronous group: see
   * CryptoProvider.asyncGroup and lib/handshake/key-agreement.ts), else null. Reported once as a
   * `key-agreement` event. Run it and answer with {@link provideKeyAgreement} or {@link failKeyAgreement};
   * meanwhile nothing received is processed (what arrives is buffered, up to the same bound as during a PSK
   * lookup).
   */
  get pendingKeyAgreement(): KeyAgreementRequest | null {
    return this.phaseValue.kind === 'handshaking' && isAwaitingKeyAgreement(this.state) ? this.state.keyAgreement : null;
  }
  /** The name of the handshake state (for diagnostics). */
  get stateName(): string {
    return this.state.name;
  }

  /**
   * Feeds bytes received from the peer. Never throws for what the peer sent. The connection keeps no view of
   * `data` after the call returns, so the caller may reuse its read buffer. Anything but a Uint8Array (an
   * ArrayBuffer, a string) fails the connection with InternalError, its internal_error alert sent.
   */
  receive(data: Uint8Array): void {
    this.receiveBytes(data, false);
  }

  /**
   * Like {@link receive}, but hands `data` over: the connection may keep views of it after the call instead of
   * copying what it has not consumed yet (a record split across two reads), so the caller must never write
   * into it again. For transports that read into a fresh buffer every time, as Node's net.Socket does; a
   * caller that refills one read buffer must use {@link receive}. It saves the receiver a copy of every read's
   * tail (the bulk rows of bench/RESULTS.md).
   */
  receiveOwned(data: Uint8Array): void {
    this.receiveBytes(data, true);
  }

  private receiveBytes(data: Uint8Array, owned: boolean): void {
    if (!this.receiving) return;
    if (!isBytes(data)) {
      // The caller's mistake, not the peer's: a string was read as its characters (the peer blamed with
      // unexpected_message), an ArrayBuffer threw out of here. §6.2: a local failure is internal_error.
      this.fatal(new TlsError('InternalError', `receive: the bytes received must be a Uint8Array, got ${kindOf(data)}`));
      return;
    }
    this.deframer.push(data);
    this.guard(() => {
      this.process();
      // While a PSK lookup or a key agreement is pending nothing is processed: bound what a peer can make us hold
      // meanwhile (a ChangeCipherSpec, some 0-RTT data, the server's flight are all that may legitimately arrive).
      if (this.waiting && this.deframer.buffered > MAX_BUFFERED_WHILE_WAITING) {
        throw new TlsError('TooMuchDataWhileWaiting', `more than ${MAX_BUFFERED_WHILE_WAITING} bytes sent while the ${this.awaitingPsks ? 'PSK lookup' : 'key agreement'} was pending`);
      }
    });
    // (Records not lent yet stay here as these bytes: views of them when handed over, else our own copy.)
    if (owned) this.deframer.retainViews();
    else this.deframer.detach();
  }

  /**
   * Server: answers a `psk-request` event with one PSK (or undefined) per offered identity. The handshake copies
   * what it needs of the secrets before this returns; the caller's buffers are left alone, except for an answer of
   * serverPskResolver (lib/psk/source.ts), whose leased keys are wiped here, whether the answer was taken or
   * refused (no other owner would wipe them). An answer is therefore for one connection: a key whose lease was
   * released (that answer handed to a second connection, a lease released early) fails the handshake with
   * PskUnavailable (handshake_failure) rather than run it under the zeros it holds now.
   */
  providePsks(psks: readonly (Psk | undefined | null)[]): void {
    try {
      const s = this.state;
      if (!this.awaitingPsks || !isAwaitingPsks(s)) throw new Error(`providePsks: the connection is not waiting for PSKs (${this.phase})`);
      this.resumeHandshake(() => s.resume(this.io, psks));
    } finally {
      releaseResolvedPsks(psks);
    }
  }

  /**
   * Answers the {@link pendingKeyAgreement} with what its `run()` resolved with: the handshake goes on (a
   * ClientHello or the server's flight is queued in the output) and what was received meanwhile is processed.
   * Ignored once the connection failed or was destroyed (the result's secrets are wiped then); throws when no key
   * agreement is pending or `result` answers another request.
   */
  provideKeyAgreement(result: KeyAgreementResult): void {
    const s = this.state;
    if (this.phaseValue.kind === 'failed' || this.phaseValue.kind === 'closed') return;
    if (this.phaseValue.kind !== 'handshaking' || !isAwaitingKeyAgreement(s)) {
      throw new Error(`provideKeyAgreement: the connection is not waiting for a key agreement (${this.phase}, ${this.state.name})`);
    }
    if (!s.accepts(result)) throw new Error('provideKeyAgreement: this result answers another key agreement request');
    this.resumeHandshake(() => s.resume(this.io, result));
  }

  /**
   * Continues a handshake that waited for an answer from outside (PSKs, a key agreement): the next state, what it
   * sends, and then what was received meanwhile.
   */
  private resumeHandshake(next: () => HandshakeState): void {
    this.guard(() => {
      this.state = this.entered(next());
      this.flushHandshake();
      this.drainHandshake();
      this.process();
    });
    this.deframer.detach();
  }

  /**
   * Fails the handshake because the {@link pendingKeyAgreement}'s `run()` rejected with `error`. A TlsError (the
   * peer's key share gave an all-zero X25519 secret: KeyExchangeZeroSecret) sends its own alert, as on the
   * synchronous path; anything else is KeyAgreementFailed (internal_error). Pass the `request` that failed, so
   * that a failure meant for another request (of another connection, or an earlier one) is refused rather than
   * ending this handshake. Ignored once the connection failed or was destroyed; throws when no key agreement is
   * pending or `request` is not the pending one.
   */
  failKeyAgreement(error: unknown, request?: KeyAgreementRequest): void {
    if (this.phaseValue.kind === 'failed' || this.phaseValue.kind === 'closed') return;
    if (this.phaseValue.kind !== 'handshaking' || !isAwaitingKeyAgreement(this.state)) {
      throw new Error(`failKeyAgreement: the connection is not waiting for a key agreement (${this.phase}, ${this.state.name})`);
    }
    if (request !== undefined && request !== this.state.keyAgreement) {
      throw new Error('failKeyAgreement: this failure answers another key agreement request');
    }
    this.fatal(
      error instanceof TlsError
        ? error
        : new TlsError('KeyAgreementFailed', `the key agreement failed: ${error instanceof Error ? error.message : String(error)}`, {
            cause: error,
            alertNotSent: this.nobodyToAlert,
          }),
    );
  }

  /** Server: fails the handshake because the PSK lookup failed (e.g. the key manager is unreachable). */
  failPskLookup(detail: string): void {
    if (!this.awaitingPsks) {
      throw new Error(`failPskLookup: the connection is not waiting for PSKs (${this.phase})`);
    }
    this.fatal(new TlsError('PskUnavailable', detail));
  }

  /**
   * The caller's handshake deadline has passed: fails the handshake with the named reason HandshakeTimeout and
   * queues its alert (take it with {@link takeOutput}; none from a client that has sent nothing yet, paused before
   * its first ClientHello). The connection has no clock of its own, so a handshake
   * time limit is off unless the transport keeps the time and calls this (the Node and streams transports do,
   * 30 s by default). Does nothing once the handshake is over.
   */
  handshakeTimedOut(detail = 'the handshake did not complete in time'): void {
    if (this.phaseValue.kind !== 'handshaking') return;
    this.fatal(new TlsError('HandshakeTimeout', detail, { alertNotSent: this.nobodyToAlert }));
  }

  /**
   * Sends application data (queued until the handshake completes). Split into records of at most 16 KiB
   * (or the peer's record_size_limit).
   */
  write(data: Uint8Array): void {
    this.writev([data]);
  }

  /**
   * Sends the concatenation of `chunks` as application data, like {@link write} but without joining them
   * first: records are filled to the fragment limit across chunk boundaries, and all of them are sealed
   * into one output buffer (one socket write).
   */
  writev(chunks: readonly Uint8Array[]): void {
    if (!this.writable) throw new Error(`write: the connection is ${this.phase === 'handshaking' || this.phase === 'connected' ? 'closed for writing' : this.phase}`);
    let total = 0;
    for (const c of chunks) total += c.length;
    if (total === 0) return;
    if (this.phaseValue.kind !== 'connected') {
      this.queued.push(chunks.length === 1 ? copyBytes(chunks[0]) : concat(...chunks));
      return;
    }
    this.sealApplicationData(chunks, total);
  }

  /**
   * Closes our direction with close_notify (RFC 8446 §6.1). Data written before is sent first, even when the
   * handshake is still running. We can still receive until the peer closes its direction.
   */
  close(): void {
    if (!this.writable) return;
    if (this.phaseValue.kind === 'handshaking') {
      this.phaseValue = { kind: 'handshaking', closeRequested: true };
      return;
    }
    this.sendCloseNotify();
  }

  /** Sends a KeyUpdate (§4.6.3) and switches our write keys; `requestPeer` asks the peer to update too. */
  keyUpdate(requestPeer = false): void {
    if (this.phaseValue.kind !== 'connected' || !this.writable || !this.secrets) throw new TransportError('ERR_TLS_INVALID_STATE', 'keyUpdate: the connection is not open');
    this.sendKeyUpdate(requestPeer);
  }

  /** §7.5 TLS-Exporter: keying material for the application, bound to this session. */
  exportKeyingMaterial(label: string, context: Uint8Array, length: number): Uint8Array {
    if (!this.secrets) {
      throw new TransportError('ERR_TLS_INVALID_STATE', `exportKeyingMaterial: ${this.info ? 'the connection is over and its secrets are wiped' : 'the handshake is not complete'}`);
    }
    const s = this.secrets;
    return exportKeyingMaterial(this.crypto, s.suite.hash, s.exporterMasterSecret, label, context, length);
  }

  /** Everything to send to the peer since the last call, as one buffer, or null. */
  takeOutput(): Uint8Array | null {
    if (this.out.length === 0) return null;
    const out = this.out.length === 1 ? this.out[0] : concat(...this.out);
    this.out = [];
    return out;
  }

  /** Everything to send, as the list of records (for vectored writes), or an empty list. */
  takeOutputChunks(): Uint8Array[] {
    const out = this.out;
    this.out = [];
    return out;
  }

  /** True when there are bytes waiting in {@link takeOutput}. */
  get hasOutput(): boolean {
    return this.out.length > 0;
  }

  /** The events since the last call, in order. */
  takeEvents(): ConnectionEvent[] {
    const e = this.events;
    this.events = [];
    return e;
  }

  /** Wipes every key this connection holds; it can no longer send or receive. */
  destroy(): void {
    const p = this.phaseValue;
    if (p.kind === 'handshaking' || p.kind === 'connected') this.phaseValue = { kind: 'closed', peerClosed: this.peerClosed };
    this.wipeKeys();
  }

  // ---------------------------------------------------------------------------------------------------------
  // Record offload (the design is in lib/connection/offload.ts)

  /**
   * Lends our application traffic key to the transport, which then seals application_data records itself
   * ({@link WriteOffload.reserve} gives each record's nonce). Returns the active handle if there is one, a new
   * one when the previous was revoked (after sending the automatic KeyUpdate if the key reached its limit), or
   * null when we cannot write application data now (handshake not complete, closed, failed) or trace records.
   */
  offloadWrite(): WriteOffload | null {
    if (this.lentWrite?.active && !this.lentWrite.atLimit) return this.lentWrite;
    // (With a trace hook every record must pass through here to be traced: nothing is lent.)
    if (this.trace || !this.writable || this.phaseValue.kind !== 'connected' || !this.secrets || !this.writer) return null;
    let handle: LentDirection | null = null;
    this.guard(() => {
      this.reclaimWrite();
      const writer = this.writer!;
      const limit = this.keyUpdateLimit(writer.suite);
      // §5.5: the automatic KeyUpdate, when the lent key (or ours) reached its limit.
      if (writer.sequence >= limit) this.sendKeyUpdate(false);
      const s = this.secrets!;
      handle = this.lend(this.isClient ? s.clientSecret : s.serverSecret, this.writer!.sequence, limit);
      this.lentWrite = handle;
    });
    return handle;
  }

  /**
   * Lends the peer's application traffic key to the transport: from now on, {@link receive} deframes the
   * records (checking their headers as they arrive) but keeps them until the transport takes them, a few at a
   * time, through {@link ReadOffload.takeRecords}, instead of opening them. Null when we do not read
   * application data now (handshake not complete, the peer closed, failed, or in the middle of a fragmented
   * post-handshake message).
   */
  offloadRead(): ReadOffload | null {
    if (this.lentRead) return this.lentRead;
    if (this.trace || !this.reading || this.phaseValue.kind !== 'connected' || !this.secrets || !this.reader || !this.joiner.isEmpty) return null;
    const s = this.secrets;
    const handle = this.lend(this.isClient ? s.serverSecret : s.clientSecret, this.reader.sequence, Number.MAX_SAFE_INTEGER);
    handle.source = this.recordsFor(handle);
    this.lentRead = handle;
    return handle;
  }

  /**
   * Takes the read direction back: `records` are the lent records, from the first one the transport did not
   * accept as application data to the last it took, in order. The connection opens and processes them itself
   * (a KeyUpdate, an alert, close_notify, a NewSessionTicket, or a record that fails — which ends in its
   * alert), then the records it had not lent yet, then continues on its own until the transport calls
   * {@link offloadRead} again (or takes records again from the same handle, when it is lent again: see below).
   */
  returnRecords(handle: ReadOffload, records: readonly Uint8Array[]): void {
    if (this.phaseValue.kind === 'failed' || this.phaseValue.kind === 'closed') return;
    if (handle !== this.lentRead) throw new Error('returnRecords: this read handle is not the one lent');
    const lent = this.lentRead;
    const accepted = lent.firstSequence;
    const next = lent.suspend(records.length);
    this.lentRead = null;
    const reader = this.reader;
    this.guard(() => {
      if (next < accepted) throw new Error('returnRecords: more records returned than were lent');
      // The transport accepted only non-empty application data records: they end a run of idle records.
      if (next > accepted) this.idleRecords = 0;
      reader!.advanceTo(next);
      for (const bytes of records) {
        if (!this.reading || this.phaseValue.kind !== 'connected') break;
        this.handleRecord(rawRecord(bytes));
        this.flushHandshake();
      }
      // The records received after them that were not lent yet, with our own cipher too (§5.3: in order, the
      // sequence numbers continuing from the last returned record).
      this.process();
    });
    // The same key, when nothing replaced it (no KeyUpdate) and we still read: lent again, nothing derived.
    if (this.reader === reader && reader && !this.lentRead && this.reading && this.phaseValue.kind === 'connected' && this.joiner.isEmpty) {
      lent.resume(reader.sequence);
      this.lentRead = lent;
    } else lent.revoke();
  }

  /** The records a read handle lends: those in the deframer, while that handle is the lent one. */
  private recordsFor(handle: LentDirection): RecordSource {
    const c = this;
    return {
      next: () => (c.lentRead === handle ? c.deframer.next() : null),
      get hasRecord() {
        return c.lentRead === handle && c.deframer.hasRecord;
      },
    };
  }

  private lend(secret: Uint8Array, sequence: number, limit: number): LentDirection {
    const suite = this.secrets!.suite;
    const { key, iv } = trafficKeys(this.crypto, suite.hash, secret, suite.keyLength, suite.ivLength);
    return new LentDirection(suite.aead, key, iv, sequence, limit, ++this.lentGenerations, this.maxFragment, this.maxInnerPlaintext, this.paddingBlock);
  }

  /** Takes our write direction back from the transport before we seal a record ourselves. */
  private reclaimWrite(): void {
    const lent = this.lentWrite;
    if (!lent) return;
    this.lentWrite = null;
    this.writer?.advanceTo(lent.revoke());
  }

  private keyUpdateLimit(suite: SuiteInfo): number {
    return Math.min(this.keyUpdateAfter, keyUpdateThreshold(suite));
  }

  // ---------------------------------------------------------------------------------------------------------
  // Receiving

  /**
   * Whether received bytes are taken in: not once failed or closed, nor after the peer's close_notify (§6.1: "Any
   * data received after a closure alert has been received MUST be ignored.").
   */
  private get receiving(): boolean {
    const p = this.phaseValue;
    return p.kind === 'handshaking' || (p.kind === 'connected' && p.closeNotify !== 'received');
  }

  /** Whether received records are processed now: while receiving, except while the handshake waits for PSKs or a key agreement. */
  private get reading(): boolean {
    return this.receiving && !this.waiting;
  }

  /** The handshake waits for an answer from outside: PSKs, or a key agreement. */
  private get waiting(): boolean {
    return this.phaseValue.kind === 'handshaking' && (isAwaitingPsks(this.state) || isAwaitingKeyAgreement(this.state));
  }

  /** `state`, after queueing the event that asks for what it waits for, if it waits. */
  private entered(state: HandshakeState): HandshakeState {
    if (isAwaitingPsks(state)) this.events.push({ type: 'psk-request', request: state.pskRequest });
    else if (isAwaitingKeyAgreement(state)) this.events.push({ type: 'key-agreement', request: state.keyAgreement });
    return state;
  }

  /** Server: the handshake waits for {@link providePsks} (or {@link failPskLookup}). */
  private get awaitingPsks(): boolean {
    return this.phaseValue.kind === 'handshaking' && isAwaitingPsks(this.state);
  }

  private process(): void {
    while (this.reading) {
      if (this.lentRead) {
        // Lent: the records stay in the deframer until the transport takes them (ReadOffload.takeRecords), a few
        // at a time, so that a read of thousands of small records costs its bytes, not thousands of objects.
        // Their headers are checked now, so that a bad one ends the connection when it arrives, as before.
        this.deframer.check();
        break;
      }
      const rec = this.trace ? this.nextTraced() : this.deframer.next();
      if (!rec) break;
      this.handleRecord(rec);
      this.flushHandshake();
    }
  }

  /**
   * The next record, as {@link Deframer.next}; a record whose header it refuses (§5: an unknown content type;
   * §5.2: a length over 2^14 + 256) is traced, as far as its header goes, before the connection fails on it.
   */
  private nextTraced(): DeframedRecord | null {
    try {
      return this.deframer.next();
    } catch (e) {
      if (e instanceof TlsError) {
        const header = this.deframer.peekHeader();
        const failure = e.message.replace(/^tls alert: /, '');
        this.trace!({ direction: 'received', header, protected: false, opened: false, type: header[0], content: new Uint8Array(0), paddingLength: 0, failure });
      }
      throw e;
    }
  }

  private handleRecord(rec: RawRecord): void {
    // §6.1: after close_notify, anything received is ignored.
    if (!this.reading) return;
    // §5.1: a TLSPlaintext record (every outer type but application_data, which protected records carry) over
    // 2^14 bytes is record_overflow, whatever its type and whether keys are set: checked before its content.
    if (rec.type !== ContentType.application_data && rec.fragment.length > MAX_PLAINTEXT) {
      if (this.trace) this.traceReceived(rec, false, rec.type, rec.fragment);
      throw new TlsError('RecordOverflow', `plaintext ${nameOf(ContentType, rec.type, 2)} record of ${rec.fragment.length} bytes exceeds 2^14`);
    }
    if (rec.type === ContentType.change_cipher_spec) {
      if (this.trace) this.traceReceived(rec, false, rec.type, rec.fragment);
      return this.handleChangeCipherSpec(rec);
    }

    let type = rec.type;
    let content = rec.fragment;
    if (this.reader) {
      if (rec.type === ContentType.application_data) {
        let opened;
        try {
          opened = this.reader.open(rec);
        } catch (e) {
          // §4.2.10: a server that rejected 0-RTT skips records it cannot decrypt, up to a limit.
          const early = this.earlyData;
          if (e instanceof TlsError && e.reason === 'RecordBadMac' && early.kind === 'skipping-undecryptable') {
            const skipped = skippedPlaintextLength(rec);
            const left = early.left - skipped;
            if (this.trace) this.traceReceived(rec, true, rec.type, null);
            if (left < 0) throw new TlsError('EarlyDataTooLong', 'more rejected 0-RTT data than the skip limit');
            // A record with no room for data costs the limit nothing: count it as the idle record it is.
            if (skipped === 0) this.countIdleRecord('a skipped 0-RTT record with no data');
            this.earlyData = { kind: 'skipping-undecryptable', left };
            return;
          }
          // The record the connection fails on is traced too: it is the one a reader of the trace looks for.
          if (this.trace && e instanceof TlsError) this.traceReceived(rec, true, rec.type, null, e.message.replace(/^tls alert: /, ''));
          throw e;
        }
        // The first record that decrypts ends the skipping: the client now uses its handshake keys.
        if (this.earlyData.kind === 'skipping-undecryptable') this.earlyData = NO_EARLY_DATA;
        type = opened.type;
        content = opened.content;
        if (this.trace) this.traceReceived(rec, true, type, content);
        if (type === ContentType.change_cipher_spec) throw new TlsError('RecordBadChangeCipherSpec', 'protected change_cipher_spec record (RFC 8446 §5)');
      } else {
        if (this.trace) this.traceReceived(rec, false, rec.type, rec.fragment);
        // A peer that failed early may send a plaintext alert during the handshake; nothing else is plaintext now.
        if (!(rec.type === ContentType.alert && this.phaseValue.kind === 'handshaking')) {
          throw new TlsError('RecordUnexpectedPlaintext', `unprotected ${nameOf(ContentType, rec.type, 2)} record after keys were set`);
        }
      }
    } else {
      // Skipped 0-RTT records are protected ones (up to 2^14 + 256 bytes), so they are skipped before the
      // plaintext length check.
      const early = this.earlyData;
      if (rec.type === ContentType.application_data && early.kind === 'skipping-plaintext') {
        if (this.trace) this.traceReceived(rec, true, rec.type, null);
        const skipped = skippedPlaintextLength(rec);
        const left = early.left - skipped;
        if (left < 0) throw new TlsError('EarlyDataTooLong', 'more 0-RTT data than the skip limit after HelloRetryRequest');
        if (skipped === 0) this.countIdleRecord('a skipped 0-RTT record with no data');
        this.earlyData = { kind: 'skipping-plaintext', left };
        return;
      }
      if (this.trace) this.traceReceived(rec, false, rec.type, rec.fragment);
      if (rec.fragment.length > MAX_PLAINTEXT) throw new TlsError('RecordOverflow', `plaintext record of ${rec.fragment.length} bytes exceeds 2^14`);
      if (rec.type === ContentType.application_data) throw new TlsError('RecordUnexpectedPlaintext', 'application data before the handshake keys');
    }
    // §5.1: handshake messages must not be interleaved with other record types.
    if (type !== ContentType.handshake && !this.joiner.isEmpty) {
      throw new TlsError('RecordInterleavedHandshake', `${nameOf(ContentType, type, 2)} record inside a fragmented handshake message`);
    }
    switch (type) {
      case ContentType.handshake:
        this.joiner.push(content);
        this.drainHandshake();
        return;
      case ContentType.alert:
        return this.handleAlert(content);
      case ContentType.application_data:
        return this.handleApplicationData(content);
      default:
        throw new TlsError('RecordUnknownContentType', `inner content type 0x${type.toString(16)}`);
    }
  }

  /** §5: a dummy change_cipher_spec (one byte 0x01) is dropped during the handshake; anything else is fatal. */
  private handleChangeCipherSpec(rec: RawRecord): void {
    const afterFirstClientHello = this.isClient || this.state.name !== 'ExpectClientHello';
    if (this.phaseValue.kind !== 'handshaking' || !afterFirstClientHello) {
      throw new TlsError('RecordUnexpectedChangeCipherSpec', 'change_cipher_spec outside the handshake (RFC 8446 §5)');
    }
    if (rec.fragment.length !== 1 || rec.fragment[0] !== 0x01) {
      throw new TlsError('RecordBadChangeCipherSpec', 'change_cipher_spec must be the single byte 0x01 (RFC 8446 §5)');
    }
    if (!this.joiner.isEmpty) throw new TlsError('RecordInterleavedHandshake', 'change_cipher_spec inside a fragmented handshake message');
    this.countIdleRecord('a change_cipher_spec record');
  }

  /**
   * Records that carry no data and move no handshake forward (empty application data, dummy
   * ChangeCipherSpec, KeyUpdate, NewSessionTicket) cost us work for nothing: a peer may send a few, not a flood.
   */
  private countIdleRecord(what: string): void {
    if (++this.idleRecords > MAX_IDLE_RECORDS) {
      throw new TlsError('TooManyIdleRecords', `more than ${MAX_IDLE_RECORDS} records in a row without application data (the last: ${what})`);
    }
  }

  private drainHandshake(): void {
    while (this.reading) {
      const m = this.joiner.next();
      if (!m) return;
      // §5.1: refused before the message is acted on, so nothing is answered and no key changes.
      this.joiner.checkKeyChangeBoundary(m);
      if (this.phaseValue.kind === 'connected') this.countIdleRecord('a post-handshake message');
      this.state = this.entered(this.state.handle(this.io, m));
    }
  }

  /** §6: two bytes, level and description. close_notify ends the peer's direction; user_canceled is a warning. */
  private handleAlert(content: Uint8Array): void {
    // §5.4: an alert record with no content is unexpected_message; §6: otherwise exactly one 2-byte alert.
    if (content.length === 0) throw new TlsError('RecordEmptyFragment', 'zero-length alert record');
    if (content.length !== 2) throw new TlsError('DecodeBadLength', `alert of ${content.length} bytes`);
    const level = content[0];
    const code = content[1];
    if (code === AlertDescription.close_notify) {
      // A close_notify before the handshake completed means the peer gave up: report it as an error.
      const p = this.phaseValue;
      if (p.kind !== 'connected') {
        return this.fatal(new TlsError('PeerSentAlert', 'the peer closed the connection during the handshake', { remote: true, alertCode: code }));
      }
      this.phaseValue = p.closeNotify === 'sent' ? { kind: 'closed', peerClosed: true } : { kind: 'connected', closeNotify: 'received' };
      this.events.push({ type: 'end' });
      return;
    }
    if (code === AlertDescription.user_canceled && level === AlertLevel.warning) {
      // A warning carries no data and moves nothing forward: a flood of them is a flood of idle records (the
      // "SSL Death Alert" of CVE-2016-8610), bounded as the others are.
      return this.countIdleRecord('a user_canceled warning alert');
    }
    // §6.2: every other alert is an error alert and ends the connection, whatever its level says. Its cause is in the
    // peer's log; where this side can tell what to check (a client's decrypt_error before any ServerHello: its binder,
    // §4.2.11.2), the error says so, for the library user as for the command line.
    const hint = receivedAlertHint(alertName(code) ?? `alert_${code}`, this.isClient ? 'client' : 'server', {
      handshaking: this.phaseValue.kind !== 'connected',
      beforeServerHello: this.state.name === 'ExpectServerHello',
    });
    this.fatal(new TlsError('PeerSentAlert', undefined, { remote: true, alertCode: code, ...(hint ? { hint } : {}) }));
  }

  private handleApplicationData(content: Uint8Array): void {
    if (content.length === 0) this.countIdleRecord('an empty application_data record');
    else this.idleRecords = 0;
    if (this.phaseValue.kind === 'connected') {
      if (content.length > 0) this.events.push({ type: 'data', data: content, early: false });
      return;
    }
    const early = this.earlyData;
    if (early.kind === 'accepting') {
      // §4.6.1: more 0-RTT data than max_early_data_size is unexpected_message (the limit of §4.2.10).
      const budget = early.budget - content.length;
      if (budget < 0) throw new TlsError('EarlyDataTooLong', 'the client sent more 0-RTT data than max_early_data_size');
      this.earlyData = { kind: 'accepting', budget };
      if (content.length > 0) this.events.push({ type: 'data', data: content, early: true });
      return;
    }
    throw new TlsError('ApplicationDataBeforeHandshake', 'application data before the handshake completed');
  }

  // ---------------------------------------------------------------------------------------------------------
  // Sending

  private emitRecord(type: number, content: Uint8Array): void {
    this.sentRecords = true;
    this.reclaimWrite();
    if (this.writer) {
      const padding = this.paddingFor(content.length);
      const record = this.writer.seal(type, content, padding);
      if (this.trace) this.traceSent(record, true, type, content, padding);
      this.out.push(record);
    } else {
      // §5.1: the first ClientHello record may carry legacy_record_version 0x0301, as most clients send.
      const record = encodePlaintextRecord(type, content, this.plaintextVersion);
      if (this.trace) this.traceSent(record, false, type, content);
      this.out.push(record);
    }
  }

  /** Calls the trace hook for a record we send (`record` as on the wire, `content` before protection). */
  private traceSent(record: Uint8Array, isProtected: boolean, type: number, content: Uint8Array, paddingLength = 0): void {
    this.trace!({ direction: 'sent', header: record.subarray(0, 5), protected: isProtected, opened: true, type, content, paddingLength });
  }

  /** The zeros after the content type of a protected record of `contentLength` bytes we send (§5.4, recordPadding). */
  private paddingFor(contentLength: number): number {
    // (maxFragment + 1: the most the peer accepts, the content type included; RFC 8449 §4 counts the padding too.)
    return this.paddingBlock === 0 ? 0 : paddingLength(this.paddingBlock, contentLength, this.maxFragment + 1);
  }

  /**
   * Calls the trace hook for a record received; `content` null for a protected record that was not decrypted,
   * `failure` why, when it could not be.
   */
  private traceReceived(rec: RawRecord, isProtected: boolean, type: number, content: Uint8Array | null, failure?: string): void {
    // The AEAD tag is the record overhead less the header and the inner content type.
    const padding = isProtected && content && this.reader ? rec.fragment.length - content.length - 1 - (this.reader.overhead - 6) : 0;
    this.trace!({
      direction: 'received',
      header: rec.header,
      protected: isProtected,
      opened: content !== null,
      type,
      content: content ?? new Uint8Array(0),
      paddingLength: padding,
      ...(failure !== undefined ? { failure } : {}),
    });
  }

  /** Packs the queued handshake messages into as few records as the fragment limit allows. */
  private flushHandshake(): void {
    if (this.pendingHandshake.length === 0) return;
    const all = this.pendingHandshake.length === 1 ? this.pendingHandshake[0] : concat(...this.pendingHandshake);
    this.pendingHandshake = [];
    for (const f of fragments(all, this.maxFragment)) this.emitRecord(ContentType.handshake, f);
    this.plaintextVersion = 0x0303;
  }

  /**
   * Seals application data into records of `maxFragment` bytes (the last one shorter), all written into a
   * single buffer sized up front: one allocation and one copy of the data per write, however many records.
   */
  private sealApplicationData(chunks: readonly Uint8Array[], total: number): void {
    this.reclaimWrite();
    // §5.5: AES-GCM keys must not protect more than about 2^24.5 full records; update well before that —
    // exactly at the limit, also in the middle of a write (the record offload does the same, record by record).
    let rest = chunks;
    for (let left = total; this.secrets && this.writer; ) {
      if (this.writer.sequence >= this.keyUpdateLimit(this.writer.suite)) this.sendKeyUpdate(false);
      const room = (this.keyUpdateLimit(this.writer.suite) - this.writer.sequence) * this.maxFragment;
      if (left <= room) break;
      const [head, tail] = splitChunks(rest, room);
      this.sealRecords(head, room);
      rest = tail;
      left -= room;
      total = left;
    }
    this.sealRecords(rest, total);
  }

  private sealRecords(chunks: readonly Uint8Array[], total: number): void {
    const writer = this.writer;
    // §5.2: application data is always protected; there is no plaintext path for it.
    if (!writer) throw new TlsError('InternalError', 'application data with no write keys');
    const max = this.maxFragment;
    const records = Math.ceil(total / max);
    // Every record but the last is full; only the padding (§5.4) of the full ones and the last one may differ.
    const padding = this.paddingBlock === 0 ? 0 : (records - 1) * this.paddingFor(max) + this.paddingFor(total - (records - 1) * max);
    const out = new Uint8Array(total + records * writer.overhead + padding);
    let at = 0;
    let chunk = 0;
    let pos = 0;
    const parts: Uint8Array[] = [];
    for (let left = total; left > 0; ) {
      // Gather the next record's content as views of the caller's chunks.
      parts.length = 0;
      const size = Math.min(max, left);
      let want = size;
      left -= want;
      while (want > 0) {
        const c = chunks[chunk];
        const take = Math.min(want, c.length - pos);
        if (take > 0) parts.push(pos === 0 && take === c.length ? c : c.subarray(pos, pos + take));
        want -= take;
        pos += take;
        if (pos === c.length) {
          chunk++;
          pos = 0;
        }
      }
      const pad = this.paddingFor(size);
      const length = writer.sealInto(ContentType.application_data, parts, out, at, pad);
      if (this.trace) this.traceSent(out.subarray(at, at + length), true, ContentType.application_data, concat(...parts), pad);
      at += length;
    }
    this.out.push(at === out.length ? out : out.subarray(0, at));
  }

  private sendAlert(code: number): void {
    this.flushHandshake();
    this.emitRecord(ContentType.alert, new Uint8Array([code === AlertDescription.close_notify ? AlertLevel.warning : AlertLevel.fatal, code]));
  }

  private sendCloseNotify(): void {
    this.sendAlert(AlertDescription.close_notify);
    this.phaseValue = this.peerClosed ? { kind: 'closed', peerClosed: true } : { kind: 'connected', closeNotify: 'sent' };
  }

  private sendKeyUpdate(requestPeer: boolean): void {
    const s = this.secrets!;
    this.emitRecord(ContentType.handshake, encodeKeyUpdate(requestPeer));
    const next = this.isClient ? nextTrafficSecret(this.crypto, s.suite.hash, s.clientSecret) : nextTrafficSecret(this.crypto, s.suite.hash, s.serverSecret);
    this.replaceSecret(this.isClient ? 'client' : 'server', next);
    this.installWrite(s.suite, next);
    this.events.push({ type: 'key-update', direction: 'write' });
  }

  private replaceSecret(side: 'client' | 'server', next: Uint8Array): void {
    const s = this.secrets!;
    if (side === 'client') {
      wipe(s.clientSecret);
      this.secrets = { ...s, clientSecret: next };
    } else {
      wipe(s.serverSecret);
      this.secrets = { ...s, serverSecret: next };
    }
  }

  // ---------------------------------------------------------------------------------------------------------
  // Keys

  private installWrite(suite: SuiteInfo, secret: Uint8Array): void {
    const { key, iv } = trafficKeys(this.crypto, suite.hash, secret, suite.keyLength, suite.ivLength);
    this.writer?.destroy();
    this.writer = new RecordProtection(this.crypto, suite, key, iv);
    wipe(key, iv);
  }

  private installRead(suite: SuiteInfo, secret: Uint8Array): void {
    // §5.1: handshake messages must not span a key change.
    if (!this.joiner.isEmpty) throw new TlsError('RecordHandshakeSpansKeyChange', 'a handshake message spans a key change (RFC 8446 §5.1)');
    const { key, iv } = trafficKeys(this.crypto, suite.hash, secret, suite.keyLength, suite.ivLength);
    this.reader?.destroy();
    this.reader = new RecordProtection(this.crypto, suite, key, iv);
    this.reader.maxInnerPlaintext = this.maxInnerPlaintext;
    wipe(key, iv);
    // §4.2.10: early data ends with the early keys (EndOfEarlyData switches to the handshake keys).
    if (this.earlyData.kind === 'accepting') this.earlyData = NO_EARLY_DATA;
  }

  private wipeKeys(): void {
    this.lentWrite?.revoke();
    this.lentRead?.revoke();
    this.lentWrite = this.lentRead = null;
    this.reader?.destroy();
    this.writer?.destroy();
    this.state.destroy?.();
    if (this.secrets) wipe(this.secrets.clientSecret, this.secrets.serverSecret, this.secrets.exporterMasterSecret);
    this.secrets = null;
  }

  // ---------------------------------------------------------------------------------------------------------
  // Failure and closure

  /** Runs `fn`; any error becomes a fatal alert (TlsError) or internal_error (anything else). */
  private guard(fn: () => void): void {
    try {
      fn();
    } catch (e) {
      const err = e instanceof TlsError ? e : new TlsError('InternalError', e instanceof Error ? e.message : String(e), { cause: e });
      this.fatal(err);
    }
  }

  /**
   * A client that fails while it makes the key shares of its first ClientHello (the key agreement failed or timed
   * out) has sent nothing: no peer to alert yet, as on the synchronous path, where the constructor throws.
   */
  private get nobodyToAlert(): boolean {
    return this.isClient && !this.sentRecords;
  }

  private fatal(err: TlsError): void {
    if (this.phaseValue.kind === 'failed') return;
    this.pendingHandshake = [];
    if (err.alertSent) {
      try {
        this.state.beforeAlert?.(this.io);
        this.sendAlert(err.alertCode);
      } catch {
        // Sealing the alert failed (e.g. sequence exhausted): the peer learns of it from the closed transport.
      }
    }
    this.phaseValue = { kind: 'failed', error: err };
    this.events.push({ type: 'error', error: err });
    this.wipeKeys();
  }

  // ---------------------------------------------------------------------------------------------------------
  // The handshake's view of this connection

  private makeIO(): HandshakeIO {
    const c = this;
    return {
      get crypto() {
        return c.crypto;
      },
      sendHandshake(raw) {
        c.pendingHandshake.push(raw);
      },
      sendChangeCipherSpec() {
        c.flushHandshake();
        const record = encodePlaintextRecord(ContentType.change_cipher_spec, new Uint8Array([1]));
        if (c.trace) c.traceSent(record, false, ContentType.change_cipher_spec, record.subarray(5));
        c.out.push(record);
      },
      sendEarlyData(data) {
        c.flushHandshake();
        if (data.length > 0) c.sealApplicationData([data], data.length);
      },
      setWriteKeys(suite, secret) {
        c.flushHandshake();
        c.installWrite(suite, secret);
      },
      clearWriteKeys() {
        c.flushHandshake();
        c.writer?.destroy();
        c.writer = null;
      },
      setReadKeys(suite, secret) {
        c.installRead(suite, secret);
      },
      setPeerRecordSizeLimit(peerLimit, ownLimit) {
        // RFC 8449 §4: in TLS 1.3 the limit counts the content type byte (and padding).
        c.maxFragment = Math.min(MAX_PLAINTEXT, peerLimit - 1);
        if (ownLimit !== undefined) {
          c.maxInnerPlaintext = Math.min(MAX_PLAINTEXT + 1, ownLimit);
          if (c.reader) c.reader.maxInnerPlaintext = c.maxInnerPlaintext;
        }
      },
      skipUndecryptableRecords(limit) {
        c.earlyData = { kind: 'skipping-undecryptable', left: limit };
      },
      skipEarlyApplicationRecords(limit) {
        c.earlyData = { kind: 'skipping-plaintext', left: limit };
      },
      acceptEarlyData(limit) {
        c.earlyData = { kind: 'accepting', budget: limit };
        // RFC 8449 §4: 0-RTT records were protected before any record_size_limit was agreed.
        if (c.reader) c.reader.maxInnerPlaintext = MAX_PLAINTEXT + 1;
      },
      keyUpdateReceived(requestUpdate) {
        const s = c.secrets!;
        const peer = c.isClient ? 'server' : 'client';
        const next = nextTrafficSecret(c.crypto, s.suite.hash, peer === 'client' ? s.clientSecret : s.serverSecret);
        c.replaceSecret(peer, next);
        c.installRead(s.suite, next);
        c.events.push({ type: 'key-update', direction: 'read' });
        // §4.6.3: answer update_requested with our own KeyUpdate before any more application data.
        if (requestUpdate && c.writable) c.sendKeyUpdate(false);
      },
      logSecret(label: KeyLogLabel, clientRandom, secret) {
        c.keyLog?.(`${label} ${toHex(clientRandom)} ${toHex(secret)}`);
      },
      emit(event) {
        c.events.push(event);
      },
      complete(info, secrets, resend) {
        c.flushHandshake();
        c.secrets = {
          suite: secrets.suite,
          clientSecret: secrets.clientSecret,
          serverSecret: secrets.serverSecret,
          exporterMasterSecret: secrets.exporterMasterSecret,
        };
        c.info = info;
        const closeRequested = c.phaseValue.kind === 'handshaking' && c.phaseValue.closeRequested;
        c.phaseValue = { kind: 'connected', closeNotify: 'none' };
        c.events.push({ type: 'handshake', info });
        if (resend && resend.length > 0) c.sealApplicationData([resend], resend.length);
        for (const q of c.queued) c.sealApplicationData([q], q.length);
        c.queued = [];
        if (closeRequested) c.sendCloseNotify();
      },
    };
  }
}

/** How many records in a row may carry no application data (Go's crypto/tls allows 16 useless records). */
export const MAX_IDLE_RECORDS = 64;

/** What a peer may make us buffer while we look its PSKs up or run a key agreement (0-RTT data plus headroom). */
export const MAX_BUFFERED_WHILE_WAITING = 256 * 1024;

/**
 * The application data a skipped (rejected) 0-RTT record can hold: its ciphertext less the inner content
 * type and the 16-byte tag of every TLS 1.3 AEAD. max_early_data_size counts plaintext (§4.2.10, §4.6.1).
 */
function skippedPlaintextLength(rec: RawRecord): number {
  return Math.max(0, rec.fragment.length - 17);
}

/** `chunks` cut after `n` bytes (views, no copies). */
function splitChunks(chunks: readonly Uint8Array[], n: number): [Uint8Array[], Uint8Array[]] {
  const head: Uint8Array[] = [];
  let i = 0;
  for (; i < chunks.length && n > 0; i++) {
    const c = chunks[i];
    if (c.length <= n) {
      head.push(c);
      n -= c.length;
    } else {
      head.push(c.subarray(0, n));
      return [head, [c.subarray(n), ...chunks.slice(i + 1)]];
    }
  }
  return [head, chunks.slice(i)];
}

/** The record in `bytes` (one whole record, as the offload hands it back). */
function rawRecord(bytes: Uint8Array): RawRecord {
  return { type: bytes[0], version: (bytes[1] << 8) | bytes[2], header: bytes.subarray(0, 5), fragment: bytes.subarray(5) };
}

/**
 * After how many records we update our write keys (RFC 8446 §5.5): AES-GCM may protect about 2^24.5 full-size
 * records per key, so we update at 2^24; ChaCha20-Poly1305's limit is beyond the 64-bit sequence number, so we
 * update only before the sequence number runs out.
 */
function keyUpdateThreshold(suite: SuiteInfo): number {
  return suite.aead === 'CHACHA20-POLY1305' ? 2 ** 53 : 2 ** 24;
}
