/**
 * WebCrypto record offload for transports: seals and opens a connection's application_data records with
 * `crypto.subtle` AES-GCM, several at once, while the sans-IO {@link Connection} keeps everything else
 * (the design, and why no nonce is used twice, is in lib/connection/offload.ts).
 *
 * ```ts
 * const records = new WebCryptoRecords(conn, { send: (b) => writer.write(b), deliver: (d) => plain.enqueue(d),
 *                                              afterCore: pumpEvents });
 * records.receive(bytesFromTheNetwork);   // instead of conn.receive
 * await records.write(applicationData);   // instead of conn.write; resolves when there is room again
 * records.flushCore();                    // after any other call into conn: queue what it wants to send
 * ```
 *
 * Order: every record (offloaded or the connection's own) enters one output queue when its sequence number is
 * assigned, and leaves it in that order once sealed; received records are accepted in order. Backpressure:
 * {@link write} resolves once fewer than `recordsInFlight` records are being sealed and the output queue is
 * below its bound (see `full`), and {@link readRoom} once the connection has lent every record received and fewer
 * than `recordsInFlight` wait to be opened. Memory: at most twice `recordsInFlight` received records are lent to
 * this class (and being opened) at once; the connection keeps the others as the bytes they arrived in.
 * Runtime-neutral: only `globalThis.crypto.subtle`.
 *
 * ChaCha20-Poly1305 is not in WebCrypto: with that suite the connection keeps its keys and this class only
 * passes bytes through (the same queue, so nothing changes for the caller).
 */
import type { Connection } from '../connection/connection.js';
import type { OffloadedRecord, ReadOffload, WriteOffload } from '../connection/offload.js';
import type { AeadName } from '../crypto/provider.js';
import { SUITES } from '../suites.js';
import { TransportError } from '../errors.js';

export interface WebCryptoRecordsOptions {
  /**
   * Writes bytes to the network. Called in order, possibly before the previous call settled (as a
   * WritableStream writer allows); at most `recordsInFlight` calls are unsettled at once.
   */
  readonly send: (bytes: Uint8Array) => Promise<void>;
  /** Receives application data the offload opened, in order with the connection's own `data` events. */
  readonly deliver: (data: Uint8Array) => void;
  /**
   * Called after records were returned to the connection (it may have events: data, key-update, end,
   * error): take its events here. Output is queued by this class before the call. It must deal with its own
   * failures (a rejection is ignored here); records received meanwhile are opened once it settles.
   */
  readonly afterCore: () => void | Promise<void>;
  /**
   * Records sealed at once, and received records waiting to be opened before the next read (default 8); at most twice
   * this many are taken from the connection and being opened at once (the connection keeps the rest unlent).
   */
  readonly recordsInFlight?: number;
  /** Set false to keep every record on the connection's synchronous cipher (default true). */
  readonly offload?: boolean;
}

/** True when this runtime's WebCrypto can protect records of `aead` (AES-GCM; never ChaCha20-Poly1305). */
export function webCryptoHasAead(aead: AeadName): boolean {
  return (aead === 'AES-128-GCM' || aead === 'AES-256-GCM') && typeof globalThis.crypto?.subtle?.encrypt === 'function';
}

/**
 * Imports a lent traffic key (WebCrypto copies the bytes before this returns, so the caller may wipe them). Always
 * answers with a promise: a WebCrypto that throws instead (a polyfill; WebIDL turns every exception of a promise
 * method into a rejection) rejects it, so that the caller's fallback runs (writing: the connection seals; reading:
 * the records go back to the connection) instead of the exception escaping a callback.
 */
export function importRecordKey(key: Uint8Array): Promise<RecordKey> {
  try {
    return globalThis.crypto.subtle.importKey('raw', key, { name: 'AES-GCM' }, false, ['encrypt', 'decrypt']);
  } catch (e) {
    return Promise.reject(e);
  }
}

/** TLSInnerPlaintext of an application_data record without padding (RFC 8446 §5.2): content || 0x17. */
export function applicationInner(content: Uint8Array): Uint8Array {
  const inner = new Uint8Array(content.length + 1);
  inner.set(content);
  inner[content.length] = APPLICATION_DATA;
  return inner;
}

/**
 * Seals one record: the header (§5.2: opaque_type 23, legacy_record_version 0x0303, length; also the
 * additional data) followed by AES-GCM(inner) and its 16-byte tag.
 */
export async function sealRecord(key: RecordKey, nonce: Uint8Array, inner: Uint8Array): Promise<Uint8Array> {
  const [header, sealed] = await sealRecordParts(key, nonce, inner);
  const out = new Uint8Array(header.length + sealed.length);
  out.set(header);
  out.set(sealed, header.length);
  return out;
}

/** {@link sealRecord} as its two parts, the header and the encrypted record (joined later, with others). */
export function sealRecordParts(key: RecordKey, nonce: Uint8Array, inner: Uint8Array): Promise<[Uint8Array, Uint8Array]> {
  const length = inner.length + TAG_LENGTH;
  const header = Uint8Array.of(APPLICATION_DATA, 0x03, 0x03, length >>> 8, length & 0xff);
  // (then() rather than an async function: one promise less per record on the hot path.)
  return globalThis.crypto.subtle
    .encrypt({ name: 'AES-GCM', iv: nonce, additionalData: header, tagLength: 128 }, key, inner)
    .then((sealed) => [header, new Uint8Array(sealed)]);
}

/**
 * Opens a lent record if it is non-empty application data within `maxInner` (§5.4, RFC 8449 §4); null for
 * anything else — a failed tag, another content type, an empty, oversize or all-zero plaintext — which the
 * caller returns to the connection, whose synchronous path decides (and names) what it is.
 */
export function openApplicationRecord(key: RecordKey, record: OffloadedRecord, maxInner: number): Promise<Uint8Array | null> {
  if (!mayBeApplicationData(record)) return Promise.resolve(null);
  return decryptRecord(key, record).then(
    (opened) => applicationContent(new Uint8Array(opened), maxInner),
    () => null,
  );
}

/** Whether a lent record can be application data we may accept at all (else it goes back unopened). */
function mayBeApplicationData(record: OffloadedRecord): boolean {
  return record.bytes[0] === APPLICATION_DATA && record.bytes.length >= 5 + 1 + TAG_LENGTH;
}

/**
 * WebCrypto's AES-GCM open of a lent record (its header is the additional data): the TLSInnerPlaintext, or a
 * rejection — also when WebCrypto throws instead of rejecting (see importRecordKey): the record then goes back to
 * the connection like any record not opened here, where an exception would have escaped the pipeline's callbacks
 * with the record lent and never opened.
 */
function decryptRecord(key: RecordKey, record: OffloadedRecord): Promise<ArrayBuffer> {
  try {
    return globalThis.crypto.subtle.decrypt({ name: 'AES-GCM', iv: record.nonce, additionalData: record.header, tagLength: 128 }, key, record.body);
  } catch (e) {
    return Promise.reject(e);
  }
}

/** The content of an opened application_data TLSInnerPlaintext (§5.4: padding stripped), or null (see above). */
function applicationContent(inner: Uint8Array, maxInner: number): Uint8Array | null {
  if (inner.length > maxInner) return null;
  let i = inner.length - 1;
  while (i >= 0 && inner[i] === 0) i--;
  if (i <= 0 || inner[i] !== APPLICATION_DATA) return null;
  return inner.subarray(0, i);
}

/** The lent read direction and its key, imported (`resolved` once WebCrypto answered). */
interface ReadKey {
  readonly handle: ReadOffload;
  readonly key: Promise<RecordKey>;
  resolved?: RecordKey;
}

/** A received record being opened; `value` is its content once `done` (null: return it to the connection). */
interface Opening {
  readonly record: OffloadedRecord;
  done: boolean;
  value: Uint8Array | null;
}

/**
 * A record in the output queue, in wire order: one being sealed (`body` null until WebCrypto answers; the
 * header is written when it is joined), or bytes the connection produced (`sealed` false: sent as they are).
 */
interface OutEntry {
  body: Uint8Array | null;
  /** Bytes on the wire: 5 + the encrypted record for a sealed one. */
  readonly size: number;
  readonly sealed: boolean;
  /** The write() a sealed record belongs to (1, 2, ...; 0 for the connection's own bytes). */
  readonly write: number;
}

/**
 * The offload pipeline of one connection (see the module comment).
 *
 * Everything here runs from callbacks, without loops that await: WebCrypto's answers for the records at the
 * head of the output queue send them together (up to four full records a write), and the answer for the
 * oldest record being opened delivers every record opened behind it. In every runtime measured the main
 * thread is what limits bulk (each WebCrypto call costs it several microseconds), so each await saved per
 * record counts.
 */
export class WebCryptoRecords {
  private readonly max: number;
  private readonly enabled: boolean;
  /** Records in wire order, sealed or being sealed. */
  private out: OutEntry[] = [];
  /** Bytes of the entries in `out`. */
  private outBytes = 0;
  /** Bytes the connection has produced so far (see {@link coreOutputBytes}). */
  private coreBytes = 0;
  /** Whether the last record lent to us is shorter than a full one: see {@link mayHaveEnded}. */
  private lastLentNotFull = false;
  /** The TLSInnerPlaintext of the record being sealed (reused: see writeNow()). */
  private scratch = new Uint8Array(0);
  /** The additional data of the record being sealed (reused likewise). */
  private readonly aad = Uint8Array.of(APPLICATION_DATA, 0x03, 0x03, 0, 0);
  /** The write in progress (writes never interleave their records). */
  private writing: Promise<void> = Promise.resolve();
  /** How many writes were started (numbers the records of each: see OutEntry.write). */
  private writes = 0;
  /** Calls of `send` not settled yet. */
  private unsettled = 0;
  /** Records handed to WebCrypto to seal, not answered yet. */
  private sealing = 0;
  /** WebCrypto refused a write key: records are sealed by the connection instead. */
  private writeOffloadFailed = false;
  private sendError: unknown = null;
  private writeKey: { handle: WriteOffload; key: RecordKey | Promise<RecordKey> } | null = null;
  private readKey: ReadKey | null = null;
  /**
   * Received records lent to us, in order, until delivered or returned; the first `started` have their open started.
   * At most `maxOpens` (see openMore): the connection keeps the others until there is room.
   */
  private opening: Opening[] = [];
  private started = 0;
  /**
   * The last records taken from the connection filled the window (or it received more since): it may hold more
   * to lend. False in bulk, where a read's few records are taken at once, so answers do not ask it again.
   */
  private mayHoldMore = false;
  /** Opens handed to WebCrypto and not answered yet (those of records dropped or returned meanwhile too). */
  private decrypting = 0;
  /**
   * At most this many opens unanswered at once, and records lent to us at once: twice `recordsInFlight`.
   * {@link readRoom} lets a read in while fewer than `recordsInFlight` records wait, and a read of 64 KiB brings up
   * to four full records more, which should all be opened at once: capped at `recordsInFlight` itself, offloaded
   * bulk in Bun fell by ≈12% (five alternating runs of `bench --runtimes`, 2026-12-07: 0.46–0.50× of the ceiling
   * against 0.51–0.69× uncapped and 0.48–0.73× with this cap). Still a bound: a read of thousands of forged records
   * costs this many calls, and this many records' objects.
   */
  private readonly maxOpens: number;
  /** Records were returned to the connection and `afterCore` has not finished yet. */
  private returning = false;
  private delivering = false;
  private waiters: (() => void)[] = [];
  /** Records sealed and opened by WebCrypto so far (for tests and the benchmark). */
  offloadedWrites = 0;
  offloadedReads = 0;
  /** The most records that waited at once in the output queue (sealing or being sent). */
  peakRecordsInFlight = 0;

  constructor(
    readonly connection: Connection,
    private readonly options: WebCryptoRecordsOptions,
  ) {
    this.max = Math.max(1, options.recordsInFlight ?? 8);
    this.maxOpens = 2 * this.max;
    this.enabled = options.offload !== false && typeof globalThis.crypto?.subtle?.encrypt === 'function';
  }

  /**
   * Queues what the connection wants to send (after any call into it other than through this class), and drops
   * the imported key of a direction the connection took back (closed, failed, destroyed, a KeyUpdate).
   */
  flushCore(): void {
    this.dropRevokedKeys();
    for (const chunk of this.connection.takeOutputChunks()) {
      this.out.push({ body: chunk, size: chunk.length, sealed: false, write: 0 });
      this.outBytes += chunk.length;
      this.coreBytes += chunk.length;
    }
    this.sendReady();
  }

  /**
   * Sends application data: sealed here when the write direction is lent, else by the connection (which
   * throws, as `Connection.write` does, when the connection is not writable). Resolves when there is room for
   * more (see the module comment); rejects if sending failed. Writes that overlap are done one after the
   * other, in call order.
   */
  write(data: Uint8Array): Promise<void> {
    const done = this.writing.then(() => this.writeNow(data));
    this.writing = done.catch(() => {});
    return done;
  }

  private async writeNow(data: Uint8Array): Promise<void> {
    const write = ++this.writes;
    let at = 0;
    while (at < data.length) {
      if (this.sendError) throw this.sendError;
      const lent = this.writeHandle();
      if (!lent) {
        this.connection.write(at === 0 ? data : data.subarray(at));
        this.flushCore();
        break;
      }
      // The key is imported once per handle: wait for it here (the handle may be revoked meanwhile, so the
      // sequence number is reserved only after).
      if (lent.key instanceof Promise) {
        try {
          lent.key = await lent.key;
        } catch {
          // WebCrypto would not take the key: the connection seals with its own cipher from now on (its next
          // write takes the direction back).
          this.writeKey = null;
          this.writeOffloadFailed = true;
        }
        continue;
      }
      const nonce = lent.handle.reserve();
      if (!nonce) {
        this.writeKey = null; // revoked or at its limit: the next writeHandle() asks for a new one
        continue;
      }
      const n = Math.min(lent.handle.maxFragment, data.length - at);
      // §5.4: TLSInnerPlaintext = content || type || zeros (the recordPadding option; none by default).
      const padding = lent.handle.paddingFor(n);
      const inner = n + 1 + padding;
      const scratch = this.scratch.length >= inner ? this.scratch : (this.scratch = new Uint8Array(Math.max(inner, lent.handle.maxFragment + 1)));
      scratch.set(n === data.length ? data : data.subarray(at, at + n));
      scratch[n] = APPLICATION_DATA;
      if (padding > 0) scratch.fill(0, n + 1, inner);
      at += n;
      const length = inner + TAG_LENGTH;
      this.aad[3] = length >>> 8;
      this.aad[4] = length & 0xff;
      const entry: OutEntry = { body: null, size: 5 + length, sealed: true, write };
      this.out.push(entry);
      this.outBytes += entry.size;
      this.sealing++;
      this.offloadedWrites++;
      if (this.inFlight > this.peakRecordsInFlight) this.peakRecordsInFlight = this.inFlight;
      // WebCrypto copies the data and every BufferSource member of the algorithm before encrypt() returns
      // (WebCrypto §14.3.1 step 2 "a copy of the bytes held by the data parameter"; and "normalize an
      // algorithm" replaces each BufferSource member by a copy of its bytes): one inner and one
      // additional-data buffer serve every record.
      let encrypting: Promise<ArrayBuffer>;
      try {
        encrypting = globalThis.crypto.subtle.encrypt({ name: 'AES-GCM', iv: nonce, additionalData: this.aad }, lent.key, scratch.subarray(0, inner));
      } catch (e) {
        // (The API answers with a promise; a polyfill might throw instead.)
        this.sealing--;
        this.failSending(e);
        throw e;
      }
      encrypting.then(
        (sealed) => {
          this.sealing--;
          entry.body = new Uint8Array(sealed);
          // (The head may have been ready before, held back for this record to join its write: see sendReady().)
          if (this.out.length > 0 && this.out[0].body) this.sendReady();
          else this.notify(); // a cipher slot is free: a writer may go on
        },
        (e: unknown) => {
          this.sealing--;
          this.failSending(e);
        },
      );
      if (this.full) await this.sendRoom();
    }
    await this.sendRoom();
  }

  /**
   * Feeds received bytes (instead of `Connection.receive`); the caller then takes the connection's events.
   * `owned`: the caller hands `bytes` over and never writes into them again (as `Connection.receiveOwned`), so
   * records can be opened in place instead of copied.
   */
  receive(bytes: Uint8Array, owned = false): void {
    this.readHandle(); // lend the read direction first if we can, so these records are opened here
    if (owned) this.connection.receiveOwned(bytes);
    else this.connection.receive(bytes);
    this.flushCore();
    this.takeLentRecords();
  }

  /** Call after the handshake completed (and after anything that may have ended a lent direction). */
  takeLentRecords(): void {
    const lent = this.readHandle();
    if (!lent) return;
    if (!lent.resolved) void lent.key.then((k) => (lent.resolved = k), () => {});
    this.mayHoldMore = true; // (what was received since: ask)
    this.openMore(lent);
  }

  /**
   * Takes records from the connection while fewer than `maxOpens` are held here (being opened, or opened and
   * waiting for the ones before them), and starts their opens. The connection keeps the rest as the bytes they
   * arrived in, so the records (and their nonces and views) alive at once are at most `maxOpens`, however many
   * a read holds; each answer makes room for the next.
   */
  private openMore(lent: ReadKey): void {
    const room = this.maxOpens - this.opening.length;
    if (room > 0 && this.mayHoldMore) {
      const taken = lent.handle.takeRecords(room);
      this.mayHoldMore = taken.length === room;
      if (taken.length > 0) {
        for (const record of taken) this.opening.push({ record, done: false, value: null });
        this.lastLentNotFull = taken[taken.length - 1].bytes.length < 5 + lent.handle.maxInnerPlaintext + TAG_LENGTH;
        this.notify();
      }
    }
    this.startOpens();
  }

  /**
   * Hands the next lent records to WebCrypto, at most `maxOpens` unanswered at once. One read may hold
   * thousands of small records, and the first that fails ends the connection (§5.2: bad_record_mac): opening
   * them all at once let 1 MiB of forged records (no key needed, an attacker on the path will do) cost 47,000
   * WebCrypto calls, 150 MB and two seconds before that, where the synchronous path stops at the first. Records
   * not started yet are returned unopened with the others when one is not accepted. (Records are also taken from
   * the connection only as there is room: see openMore.)
   */
  private startOpens(): void {
    const lent = this.readKey;
    // (A handle taken back meanwhile: deliverReady() drops what was lent under it.)
    if (!lent || !lent.handle.active) return;
    const max = lent.handle.maxInnerPlaintext;
    while (this.started < this.opening.length && this.decrypting < this.maxOpens) {
      const o = this.opening[this.started++];
      const record = o.record;
      const k = lent.resolved;
      this.decrypting++;
      if (k && mayBeApplicationData(record)) {
        // The common case: what openApplicationRecord does, with two promises a record instead of three.
        decryptRecord(k, record).then(
          (opened) => this.settle(o, applicationContent(new Uint8Array(opened), max)),
          () => this.settle(o, null),
        );
      } else {
        const opened = k ? openApplicationRecord(k, record, max) : lent.key.then((k) => openApplicationRecord(k, record, max));
        // (A key that could not be imported opens nothing: the records go back to the connection, which has the key.)
        opened.then(
          (v) => this.settle(o, v),
          () => this.settle(o, null),
        );
      }
    }
  }

  /**
   * A record being opened has its answer: its content, or null (return it to the connection; see
   * openApplicationRecord). What it delivers makes room for the next records the connection holds.
   */
  private settle(o: Opening, value: Uint8Array | null): void {
    this.decrypting--;
    o.done = true;
    o.value = value;
    if (this.opening[0] === o) this.deliverReady();
    const lent = this.readKey;
    if (this.mayHoldMore && lent && lent.handle.active) this.openMore(lent);
    else if (this.started < this.opening.length) this.startOpens();
  }

  /** Forgets every lent record (delivered, returned, or dropped with its handle). */
  private clearOpenings(): void {
    this.opening = [];
    this.started = 0;
  }

  /**
   * True while records are being opened and the last one lent may be the peer's close_notify: a transport may wait
   * for it ({@link readDrained}) before reading on. Only a record of the largest size (2^14 + 1 bytes of
   * TLSInnerPlaintext, or the record_size_limit) is taken not to be one: a close_notify is 24 bytes, but a peer may
   * pad it to any length below that (RFC 8446 §5.4; OpenSSL's `-record_padding` does), and what a record holds is
   * known only once it is opened. So a bulk transfer of full records reads on at once, and one that ends with a
   * shorter record waits for it. (A close_notify padded to the largest size is not caught: hence connStreams,
   * lib/transport/conn-streams.ts, for a server in Deno.) The last record lent is the last one received once the
   * connection holds none unlent: ask after {@link allLent}.
   */
  get mayHaveEnded(): boolean {
    return this.lastLentNotFull && (this.opening.length > 0 || this.returning);
  }

  /**
   * True while the connection holds whole records received that it has not lent us yet: it lends them as
   * the records before them are opened (see openMore). A transport that reads on meanwhile grows the
   * connection's buffer by what it reads: {@link readRoom} waits for this to be false.
   */
  get unlentRecords(): boolean {
    const lent = this.readKey;
    return lent !== null && lent.handle.hasRecords;
  }

  /** Resolves when the connection has lent every whole record received ({@link unlentRecords} is false). */
  async allLent(): Promise<void> {
    while (this.unlentRecords) await this.changed();
  }

  /**
   * Resolves when there is room to read more: the connection has lent every whole record received, and fewer
   * than `recordsInFlight` of them wait to be opened. What one connection holds of what it read is then bounded:
   * at most `2 × recordsInFlight` records lent (see openMore), and the bytes of one read beside them.
   */
  async readRoom(): Promise<void> {
    while (this.opening.length >= this.max || this.unlentRecords) await this.changed();
  }

  /** Resolves when every whole record received was lent, and every one lent was delivered or returned. */
  async readDrained(): Promise<void> {
    while (this.opening.length > 0 || this.returning || this.unlentRecords) await this.changed();
  }

  /** True when nothing waits to be sealed, sent, lent, opened or delivered. */
  get idle(): boolean {
    return this.out.length === 0 && this.unsettled === 0 && this.opening.length === 0 && !this.returning && !this.unlentRecords;
  }

  /** Why sending failed (what `send` rejected with or threw first), or null while it has not. */
  get sendFailure(): unknown {
    return this.sendError;
  }

  /**
   * Bytes the connection has queued for sending so far, all told (a counter): a transport compares it before and
   * after a `receive` to tell whether what it read made the connection send something.
   */
  get coreOutputBytes(): number {
    return this.coreBytes;
  }

  /** Bytes waiting in the output queue (being sealed, or sealed and not yet handed to `send`). */
  get queuedOutputBytes(): number {
    return this.outBytes;
  }

  /** Resolves once at most `bytes` wait in the output queue (not yet handed to `send`); rejects if sending failed. */
  async queuedAtMost(bytes: number): Promise<void> {
    while (this.outBytes > bytes) {
      if (this.sendError) throw this.sendError;
      await this.changed();
    }
    if (this.sendError) throw this.sendError;
  }

  /** Resolves when everything queued was sent; rejects if sending failed. */
  async drained(): Promise<void> {
    while (this.out.length > 0 || this.unsettled > 0) {
      if (this.sendError) throw this.sendError;
      await this.changed();
    }
    if (this.sendError) throw this.sendError;
  }

  // -------------------------------------------------------------------------------------------------------

  /**
   * The connection wipes a lent key when it takes the direction back (lib/connection/offload.ts); the CryptoKey
   * imported from it is ours to drop, or it lives (unwipeable, inside WebCrypto) as long as this pipeline does —
   * after the connection is over, as long as the application holds its streams. Records being sealed keep their
   * key until WebCrypto answers (they hold it themselves); records being opened under a revoked handle are dropped
   * unread by deliverReady() either way.
   */
  private dropRevokedKeys(): void {
    if (this.writeKey && !this.writeKey.handle.active) this.writeKey = null;
    if (this.readKey && !this.readKey.handle.active) this.readKey = null;
  }

  private readHandle(): ReadKey | null {
    if (!this.enabled) return null;
    if (this.readKey && this.readKey.handle.active) return this.readKey;
    this.readKey = null;
    // (With records still opening, the connection took the direction back itself: deliverReady() drops them.)
    if (this.opening.length > 0 || !this.suiteOffloadable()) return null;
    const handle = this.connection.offloadRead();
    if (!handle) return null;
    this.readKey = { handle, key: importRecordKey(handle.key) };
    return this.readKey;
  }

  private writeHandle(): { handle: WriteOffload; key: RecordKey | Promise<RecordKey> } | null {
    if (!this.enabled || this.writeOffloadFailed) return null;
    if (this.writeKey && this.writeKey.handle.active) return this.writeKey;
    this.writeKey = null;
    if (!this.suiteOffloadable()) return null;
    const handle = this.connection.offloadWrite();
    this.flushCore(); // the automatic KeyUpdate, if the key reached its limit
    if (!handle) return null;
    this.writeKey = { handle, key: importRecordKey(handle.key) };
    return this.writeKey;
  }

  /** Whether the negotiated suite's AEAD is in WebCrypto (false before the handshake completes). */
  private suiteOffloadable(): boolean {
    const info = this.connection.handshake;
    return info !== null && webCryptoHasAead(SUITES[info.suite].aead);
  }

  private async sendRoom(): Promise<void> {
    while (this.full) {
      if (this.sendError) throw this.sendError;
      await this.changed();
    }
    if (this.sendError) throw this.sendError;
  }

  /**
   * No room for another record: `recordsInFlight` are being sealed, or the records in the output queue (being
   * sealed, or sealed and not sent yet) and the unsettled calls of `send` (each up to BATCH_BYTES of records)
   * add up to three times as many — the sink is slower than the cipher. (Records sealed ahead of a slower one
   * at the head of the queue wait there without holding a cipher slot.)
   */
  private get full(): boolean {
    return this.sealing >= this.max || this.inFlight >= 3 * this.max;
  }

  /** Records in the output queue (being sealed, or sealed and waiting) or handed to `send` and not settled. */
  private get inFlight(): number {
    return this.out.length + this.unsettled;
  }

  /**
   * Hands the records that are ready at the head of the queue to `send`, joined into writes of up to
   * BATCH_BYTES, without waiting for the previous call to settle (the sink queues them in order, as a
   * WritableStream does; waiting would leave the cipher idle), at most `recordsInFlight` calls unsettled.
   */
  private sendReady(): void {
    while (this.out.length > 0 && this.out[0].body && this.unsettled < this.max && !this.sendError) {
      // Records that are ready together leave as one write (one copy): each trip through the sink's stream
      // (and the peer's read loop) costs more than copying a record.
      let n = 1;
      let size = this.out[0].size;
      while (n < this.out.length && this.out[n].body && size + this.out[n].size <= BATCH_BYTES) size += this.out[n++].size;
      // The next record, of the same write(), is still being sealed and would fit in this write: wait for it (its
      // answer sends both). It is already in WebCrypto, so this only holds back what leaves a moment later anyway
      // (unless WebCrypto never answers it: then nothing behind it could leave either). Records of separate
      // write() calls never wait for each other: small writes one after another are not delayed.
      const next = this.out[n];
      if (next && !next.body && next.write === this.out[n - 1].write && size + next.size <= BATCH_BYTES) break;
      let bytes: Uint8Array;
      this.outBytes -= size;
      if (n === 1 && !this.out[0].sealed) bytes = this.out.shift()!.body!;
      else {
        // The first record's encrypted part lands JOIN_SKEW + 5 bytes into the allocation: copying 16 KiB to an
        // address a few bytes past the source's modulo 4096 (as offset 5 from one page-aligned buffer to another
        // is) is the CPU's "4K aliasing" case, where the copy runs about 15x slower (measured in Bun: 5.5 us
        // instead of 0.35 us a record; bench/README.md, "Record offload").
        bytes = new Uint8Array(size + JOIN_SKEW).subarray(JOIN_SKEW);
        let at = 0;
        for (let i = 0; i < n; i++) {
          const e = this.out[i];
          const body = e.body!;
          if (e.sealed) {
            // §5.2: opaque_type 23, legacy_record_version 0x0303, length (also the additional data).
            bytes[at] = APPLICATION_DATA;
            bytes[at + 1] = 0x03;
            bytes[at + 2] = 0x03;
            bytes[at + 3] = body.length >>> 8;
            bytes[at + 4] = body.length & 0xff;
            at += 5;
          }
          bytes.set(body, at);
          at += body.length;
        }
        this.out.splice(0, n);
      }
      this.unsettled++;
      let sent: Promise<void>;
      try {
        sent = this.options.send(bytes);
      } catch (e) {
        // (A sink that throws instead of rejecting: the same failure.)
        this.unsettled--;
        this.failSending(e);
        return;
      }
      sent.then(
        () => {
          this.unsettled--;
          this.sendReady();
          this.notify();
        },
        (e: unknown) => {
          this.unsettled--;
          this.failSending(e);
        },
      );
    }
    this.notify();
  }

  private failSending(e: unknown): void {
    // (null is "nothing failed": a send that rejects with undefined or another falsy value fails all the same.)
    this.sendError ??= e || new TransportError('ERR_QKD_TLS_TRANSPORT_FAILED', `the transport failed: sending rejected with ${String(e)}`);
    this.out = [];
    this.outBytes = 0;
    this.notify();
  }

  /**
   * Delivers, in order, every record opened at the head of the queue; the first one it may not accept goes
   * back to the connection, with every record after it.
   */
  private deliverReady(): void {
    if (this.delivering || this.returning) return;
    this.delivering = true;
    try {
      while (this.opening.length > 0 && this.opening[0].done) {
        const lent = this.readKey;
        if (!lent || !lent.handle.active) {
          // The connection took the direction back itself (it failed or was destroyed): nothing more to read.
          this.clearOpenings();
          break;
        }
        const content = this.opening[0].value;
        if (content) {
          // Each record's plaintext is handed on as WebCrypto returned it, a view and no copy: joining the
          // records opened together would allocate and fill a buffer per batch, which costs more than the
          // reads it saves (bench/README.md, "Record offload").
          this.opening.shift();
          this.started--;
          this.offloadedReads++;
          try {
            this.options.deliver(content);
          } catch {
            // The application's side is gone (a closed stream): nothing more can be delivered.
            this.clearOpenings();
            break;
          }
          continue;
        }
        // Not application data we may accept: this record and all after it go back to the connection.
        const back = this.opening.map((o) => o.record.bytes);
        this.clearOpenings();
        this.readKey = null;
        this.connection.returnRecords(lent.handle, back);
        // Still active: the connection lent the same key again (the records changed no key): keep its import.
        if (lent.handle.active) this.readKey = lent;
        this.flushCore();
        this.returning = true;
        void Promise.resolve()
          .then(() => this.options.afterCore())
          .catch(() => {}) // (afterCore handles its own failures: see WebCryptoRecordsOptions)
          .finally(() => {
            this.returning = false;
            // Deliver what was opened meanwhile first, then take more records into the room that makes: records
            // received meanwhile may have filled the window and all been opened, and the answers that could have
            // taken the ones behind them came while delivering was held (taking first found no room, and nothing
            // would take the rest: unlentRecords true with nothing being opened, readRoom() waiting for good).
            this.deliverReady();
            this.takeLentRecords();
          });
        break;
      }
    } finally {
      this.delivering = false;
      this.notify();
    }
  }

  private changed(): Promise<void> {
    return new Promise((r) => this.waiters.push(r));
  }

  private notify(): void {
    if (this.waiters.length === 0) return;
    const w = this.waiters;
    this.waiters = [];
    for (const r of w) r();
  }
}

/** A WebCrypto AES-GCM key (spelled without the DOM library's global type, which Node's types lack). */
export type RecordKey = Awaited<ReturnType<typeof globalThis.crypto.subtle.importKey>>;

const APPLICATION_DATA = 23;
/**
 * Sealed records that are ready at once are joined into writes of up to this many bytes: four records of the
 * largest size (§5.2: a TLSCiphertext's length is at most 2^14 + 256), so a 64 KiB application write, four full
 * records, leaves as one write.
 */
const BATCH_BYTES = 4 * (5 + 16_384 + 256);
const TAG_LENGTH = 16;
/** Where a joined write starts in its allocation, so that its first record's body starts 64 bytes in. */
const JOIN_SKEW = 64 - 5;
