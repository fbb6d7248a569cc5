/**
 * QKD keys as TLS pre-shared keys, from ETSI GS QKD 014 key managers (model 1 of the design: the TLS
 * endpoints call their key managers themselves).
 *
 * - {@link Etsi014ClientSource} (the TLS client, the master SAE) gets new keys with `enc_keys`. It keeps a small
 *   pool filled ahead of time, so that a handshake does not wait for the key manager when keys are at hand.
 *   Each pooled key expires after a configurable lifetime (then it is wiped unused), and goes to exactly one
 *   handshake, even when many run at once; an answer that repeats a key ID this source was handed before is refused
 *   (wiped). The key ID travels in the PSK identity (lib/psk/key-id.ts).
 * - {@link Etsi014ServerSource} (the TLS server, the slave SAE) reads the key IDs from the identities it
 *   receives and fetches those keys from its own key manager with `dec_keys`. A key ID it has already seen is
 *   refused at once (a bounded replay cache; its KME would refuse it anyway, since it hands out each key once),
 *   so that a replayed ClientHello fails with unknown_psk_identity.
 *
 * Both hand out keys that the caller owns and must wipe after the handshake (see lib/psk/source.ts:
 * `takePsks`, `serverPskResolver`, `PskLease.release`; {@link releaseAfter} does it on a timer).
 *
 * Either ETSI client serves: the Node one (`Etsi014Client`, node:http/https with the SAE's client certificate) or
 * the fetch one (`Etsi014FetchClient`: Deno, Bun, Workers, pages). This file itself imports no Node built-in (it
 * keeps its timers unref'd where the runtime has unref); `qkd-tls/qkd`, which exports it, also holds the Node
 * client and the key files.
 */
import { untilAborted } from '../abort.js';
import { isBytes, wipe } from '../codec/bytes.js';
import { clip } from '../codec/text.js';
import { observer, reportCallbackError, thrownMessage, type CallbackErrorHandler } from '../callbacks.js';
import { checkTimerMs } from '../config/options.js';
import type { HashName } from '../crypto/provider.js';
import { Etsi014Error, type Etsi014Key } from './etsi014-api.js';
import { TransportError } from '../errors.js';
import type { Etsi014ClientBase } from './etsi014-calls.js';
import { decodeKeyIdIdentity, encodeKeyIdIdentity, isUuid } from '../psk/key-id.js';
import type { ClientKeySource, KeyRequest, PskLease, ServerKeySource, SourcedKey } from '../psk/source.js';
import { MIN_PSK_BYTES } from '../psk/types.js';

/** What the sources report (never key material). */
export type Etsi014SourceEvent =
  /** enc_keys delivered these keys (client) into the pool. */
  | { readonly type: 'fetched'; readonly keyIds: readonly string[]; readonly pooled: number }
  /** These keys went to one handshake (client). */
  | { readonly type: 'taken'; readonly keyIds: readonly string[]; readonly pooled: number }
  /** These pooled keys outlived their lifetime and were wiped unused (client). */
  | { readonly type: 'expired'; readonly keyIds: readonly string[] }
  /** enc_keys failed (client); waiting handshakes fail with this message. */
  | { readonly type: 'fetch-failed'; readonly message: string }
  /** dec_keys delivered the key with this ID (server). */
  | { readonly type: 'resolved'; readonly keyId: string; readonly saeId: string }
  /** A key ID named by a client was refused (server). */
  | { readonly type: 'refused'; readonly keyId: string; readonly saeId?: string; readonly reason: RefusalReason; readonly message: string }
  /** dec_keys failed (server): the handshake fails with handshake_failure. */
  | { readonly type: 'lookup-failed'; readonly keyId: string; readonly message: string };

/**
 * Why a key delivered by the KME cannot be a PSK (too short: RFC 9257 §6, MIN_PSK_BYTES; the importer does not
 * help, ipskx has no more entropy than the key it comes from), or undefined.
 */
function tooShort(op: 'enc_keys' | 'dec_keys', key: Uint8Array): string | undefined {
  return key.length < MIN_PSK_BYTES
    ? `the KME delivered a ${key.length * 8}-bit key with ${op}: a PSK must be at least ${MIN_PSK_BYTES * 8} bits long (RFC 9257 §6)`
    : undefined;
}

/** Why an entry of an enc_keys answer is not a key with a UUID key ID (clause 6.3), or undefined. */
function deliveredKeyProblem(k: unknown): string | undefined {
  if (typeof k !== 'object' || k === null || !isBytes((k as { key?: unknown }).key)) {
    return 'the ETSI 014 client answered enc_keys with an entry that is not a key ({ keyId, key: Uint8Array })';
  }
  return isUuid((k as { keyId?: unknown }).keyId) ? undefined : 'the KME delivered a key ID that is not a UUID with enc_keys (ETSI GS QKD 014 clause 6.3)';
}

export type RefusalReason =
  /** This server has already fetched this key ID: a key serves one handshake only. */
  | 'replayed'
  /** The KME does not know the key ID (never issued to this pair, expired, or already delivered). */
  | 'unknown-to-kme'
  /**
   * The KME answered 401 for the key ID (ETSI GS QKD 014 clause 5.4): its master SAE asked for it for another slave
   * SAE, or the key came from another master; or the KME does not accept this SAE at all (its message says which).
   */
  | 'not-addressed'
  /** The identity names an SAE that this server does not accept keys from. */
  | 'unexpected-sae'
  /** The client offered more key IDs than the server looks up for one handshake. */
  | 'too-many';

/**
 * What a source needs of an ETSI GS QKD 014 client: `Etsi014Client` (Node) and `Etsi014FetchClient` (fetch) both
 * are one. Typed as the Node client alone, the fetch client of Deno, Bun and Workers was refused by the compiler
 * ("Property 'agent' is missing"), though it works (found in a library walkthrough in Deno).
 */
export type Etsi014KeyClient = Pick<Etsi014ClientBase, 'location' | 'encKeys' | 'decKeys' | 'close'>;

export interface Etsi014ClientSourceOptions {
  /** The master SAE's ETSI 014 client, talking to its own KME (`Etsi014Client` or `Etsi014FetchClient`). */
  readonly client: Etsi014KeyClient;
  /** Close `client` when this source is closed (default false). */
  readonly ownsClient?: boolean;
  /** The slave SAE: the TLS server's SAE ID. */
  readonly peerSaeId: string;
  /** This SAE's ID, put in each identity so that a server with several clients knows whose key it is. */
  readonly saeId?: string;
  /** Key size in bits (default: the KME's default, usually 256). */
  readonly keySize?: number;
  /** Keys kept ready in the pool (default 4; 0: fetch only when a handshake asks). */
  readonly poolSize?: number;
  /** Most keys asked for in one enc_keys call (default 16; keep it within the KME's max_key_per_request). */
  readonly batchSize?: number;
  /** Most enc_keys calls in flight at once (default 2). */
  readonly maxConcurrentRequests?: number;
  /**
   * A pooled key not used within this many milliseconds is wiped (default 60000). Keep it well below the time
   * the server's KME keeps a key that nobody fetched (the simulator's pendingKeyTtlMs, 10 minutes by default).
   */
  readonly keyLifetimeMs?: number;
  /** The priority of these keys among several sources (lower is offered first; default 0). */
  readonly priority?: number;
  /** The hash the keys are bound to as external PSKs (default SHA-256). */
  readonly hash?: HashName;
  /**
   * Clock in milliseconds (default Date.now). If it throws, keys it cannot date are wiped: the answer being pooled
   * fails its waiting handshakes, and a sweep treats every pooled key as expired (reported to onCallbackError).
   */
  readonly now?: () => number;
  /**
   * What the source reports (never key material). An observer (lib/callbacks.ts): if it throws, the source goes on
   * as if it had returned (the keys taken still go to their handshake, fetched ones to the pool) and the error goes
   * to {@link onCallbackError}.
   */
  readonly onEvent?: (event: Etsi014SourceEvent) => void;
  /** Receives what `onEvent` threw, as a CallbackError (default: one line on console.error). */
  readonly onCallbackError?: CallbackErrorHandler;
}

/**
 * How many key IDs delivered by enc_keys a client source remembers, to refuse one delivered again (about 100 bytes
 * each: some 10 MB at most), as the server source remembers those it looked up (replayCacheSize).
 */
const RECEIVED_KEY_IDS = 100_000;

interface Pooled {
  readonly keyId: string;
  readonly key: Uint8Array;
  readonly expiresAt: number;
}

interface Waiter {
  readonly count: number;
  resolve(keys: SourcedKey[]): void;
  reject(e: Error): void;
}

/** The TLS client's key source: QKD keys from its KME (`enc_keys`), prefetched, each for one handshake. */
export class Etsi014ClientSource implements ClientKeySource {
  readonly description: string;
  private readonly o: Required<Omit<Etsi014ClientSourceOptions, 'saeId' | 'keySize' | 'onEvent' | 'onCallbackError'>> & Etsi014ClientSourceOptions;
  /** options.onEvent as an observer: it never throws (lib/callbacks.ts). */
  private readonly emit: (event: Etsi014SourceEvent) => void;
  private pool: Pooled[] = [];
  private readonly waiters: Waiter[] = [];
  private inFlight = 0;
  private inFlightKeys = 0;
  private closed = false;
  private lastErrorValue: Error | undefined;
  private readonly sweeper: ReturnType<typeof setInterval>;
  private readonly fillWaiters: { resolve(): void; reject(e: Error): void }[] = [];
  /**
   * One per enc_keys call in flight, aborted when the source is closed: a request not yet sent (waiting for a
   * socket or a retry) is not sent, and an answer on its way is dropped and its keys wiped. (A KME that already
   * had the request has issued its keys all the same.) Not one signal for the source's lifetime: each call
   * combines it with its deadline, and on Node 20 a long-lived signal keeps a record of every signal combined with it.
   */
  private readonly calls = new Set<AbortController>();
  /** The key IDs enc_keys delivered to this source (lowercase, the last {@link RECEIVED_KEY_IDS}): one repeated is refused. */
  private readonly received = new Set<string>();

  constructor(options: Etsi014ClientSourceOptions) {
    const count = (v: number | undefined, dflt: number, name: string, min: number): number => {
      const n = v ?? dflt;
      if (!Number.isInteger(n) || n < min) throw new RangeError(`Etsi014ClientSource: ${name} must be an integer >= ${min} (got ${v})`);
      return n;
    };
    if (!options.peerSaeId) throw new TypeError('Etsi014ClientSource: peerSaeId (the TLS server SAE) is required');
    // The SAE ID travels in every PSK identity: refuse one that cannot, now rather than on each connection.
    encodeKeyIdIdentity({ keyId: '00000000-0000-0000-0000-000000000000', saeId: options.saeId });
    if (options.keySize !== undefined && !(options.keySize >= MIN_PSK_BYTES * 8)) {
      throw new RangeError(`Etsi014ClientSource: keySize must be at least ${MIN_PSK_BYTES * 8} bits (RFC 9257 §6: a PSK is at least 128 bits long; got ${options.keySize})`);
    }
    // ETSI GS QKD 014 clause 6.2: size is an integer number of bits, a multiple of 8. Refused here rather than by the
    // KME on every handshake.
    if (options.keySize !== undefined && !(Number.isSafeInteger(options.keySize) && options.keySize % 8 === 0)) {
      throw new RangeError(`Etsi014ClientSource: keySize must be a whole number of bytes, a multiple of 8 bits (ETSI GS QKD 014 clause 6.2; got ${options.keySize})`);
    }
    const lifetime = options.keyLifetimeMs ?? 60_000;
    if (!(lifetime > 0)) throw new RangeError(`Etsi014ClientSource: keyLifetimeMs must be positive (got ${lifetime})`);
    this.o = {
      ...options,
      ownsClient: options.ownsClient ?? false,
      poolSize: count(options.poolSize, 4, 'poolSize', 0),
      batchSize: count(options.batchSize, 16, 'batchSize', 1),
      maxConcurrentRequests: count(options.maxConcurrentRequests, 2, 'maxConcurrentRequests', 1),
      keyLifetimeMs: lifetime,
      priority: options.priority ?? 0,
      hash: options.hash ?? 'SHA-256',
      now: options.now ?? Date.now,
    };
    this.description = `QKD keys from ${options.client.location} (ETSI 014 enc_keys, peer SAE ${options.peerSaeId})`;
    this.emit = observer('onEvent', options.onEvent, options.onCallbackError) ?? (() => {});
    this.sweeper = setInterval(() => this.sweep(), Math.min(lifetime, 5_000));
    this.sweeper.unref?.();
  }

  /** Keys ready in the pool now. */
  get pooled(): number {
    this.sweep();
    return this.pool.length;
  }

  /** The last enc_keys failure, if the last call failed. */
  get lastError(): Error | undefined {
    return this.lastErrorValue;
  }

  /**
   * Fills the pool up to `poolSize` and resolves when it is full, or rejects with the key manager's error. Not
   * needed before {@link take} — it only saves the first handshake a round trip.
   */
  prefetch(): Promise<void> {
    if (this.closed) return Promise.reject(new TransportError('ERR_QKD_KEY_SOURCE_CLOSED', 'Etsi014ClientSource: closed'));
    if (this.pool.length >= this.o.poolSize) return Promise.resolve();
    return new Promise<void>((resolve, reject) => {
      this.fillWaiters.push({ resolve, reject });
      this.pump();
    });
  }

  take(request: KeyRequest = {}): Promise<SourcedKey[]> {
    const count = request.count ?? 1;
    if (!Number.isInteger(count) || count < 1) return Promise.reject(new RangeError(`take: count must be a positive integer (got ${count})`));
    if (this.closed) return Promise.reject(new TransportError('ERR_QKD_KEY_SOURCE_CLOSED', `${this.description}: the key source is closed`));
    if (request.signal?.aborted) return Promise.reject(abortError(request.signal));
    this.sweep();
    // Served in arrival order: keys go to the oldest waiter first. Everything between here and the resolve is
    // synchronous, so no two handshakes can get the same key.
    if (this.waiters.length === 0 && this.pool.length > 0) {
      const keys = this.hand(count);
      this.pump();
      return Promise.resolve(keys);
    }
    return new Promise<SourcedKey[]>((resolve, reject) => {
      const waiter: Waiter = { count, resolve, reject };
      const signal = request.signal;
      if (signal) {
        const onAbort = (): void => {
          const i = this.waiters.indexOf(waiter);
          if (i >= 0) this.waiters.splice(i, 1);
          reject(abortError(signal));
        };
        signal.addEventListener('abort', onAbort, { once: true });
        waiter.resolve = (keys) => {
          signal.removeEventListener('abort', onAbort);
          resolve(keys);
        };
        waiter.reject = (e) => {
          signal.removeEventListener('abort', onAbort);
          reject(e);
        };
      }
      this.waiters.push(waiter);
      this.pump();
    });
  }

  /**
   * Stops prefetching (enc_keys calls still in flight are aborted: one not yet sent is not sent, so the KME issues
   * no key for it; keys that arrive anyway are wiped), fails waiting handshakes, wipes the pool, and closes the
   * client if it owns it.
   */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.sweeper);
    const err = new TransportError('ERR_QKD_KEY_SOURCE_CLOSED', `${this.description}: the key source was closed`);
    for (const c of this.calls) c.abort(err);
    this.calls.clear();
    for (const p of this.pool) wipe(p.key);
    this.pool = [];
    for (const w of this.waiters.splice(0)) w.reject(err);
    for (const f of this.fillWaiters.splice(0)) f.reject(err);
    if (this.o.ownsClient) this.o.client.close();
  }

  // -------------------------------------------------------------------------------------------------------

  /** Removes up to `count` keys from the pool as sourced keys (the caller owns them now). */
  private hand(count: number): SourcedKey[] {
    const taken = this.pool.splice(0, count);
    this.emit({ type: 'taken', keyIds: taken.map((p) => p.keyId), pooled: this.pool.length });
    return taken.map((p) => ({
      identity: encodeKeyIdIdentity({ keyId: p.keyId, saeId: this.o.saeId }),
      secret: p.key,
      hash: this.o.hash,
      label: p.keyId,
      priority: this.o.priority,
      expiresAt: p.expiresAt,
    }));
  }

  /** Serves waiters from the pool, then asks the KME for what is missing. */
  private pump(): void {
    if (this.closed) return;
    this.sweep();
    while (this.waiters.length > 0 && this.pool.length > 0) {
      const w = this.waiters.shift()!;
      w.resolve(this.hand(w.count));
    }
    if (this.pool.length >= this.o.poolSize && this.waiters.length === 0) {
      for (const f of this.fillWaiters.splice(0)) f.resolve();
    }
    for (;;) {
      let wanted = this.o.poolSize - this.pool.length;
      for (const w of this.waiters) wanted += w.count;
      wanted -= this.inFlightKeys;
      if (wanted <= 0 || this.inFlight >= this.o.maxConcurrentRequests) return;
      this.fetch(Math.min(wanted, this.o.batchSize));
    }
  }

  private fetch(n: number): void {
    this.inFlight++;
    this.inFlightKeys += n;
    const size = this.o.keySize;
    const failed = (e: unknown): void => {
      // (Anything rejected, not only an Error: the client is the application's to supply.)
      const err = new TransportError('ERR_QKD_KEY_UNAVAILABLE', `could not get a QKD key: ${thrownMessage(e)}`, { cause: e });
      this.lastErrorValue = err;
      this.emit({ type: 'fetch-failed', message: err.message });
      // With another call still in flight, the waiters wait for it; else they fail now (never a retry loop
      // against a key manager that is down: the next handshake tries again).
      if (this.inFlight > 0) return;
      for (const w of this.waiters.splice(0)) w.reject(err);
      for (const f of this.fillWaiters.splice(0)) f.reject(err);
    };
    const call = new AbortController();
    this.calls.add(call);
    // The client is the application's to supply (Etsi014KeyClient): one that throws at once, or answers something other
    // than a list, fails this call as a rejection would. Called directly, a throw left the call counted as in flight for
    // good: after maxConcurrentRequests of them no enc_keys was ever sent again and every take() waited forever; a
    // non-list answer threw in the handler below, an unhandled rejection.
    new Promise<unknown>((resolve) => resolve(this.o.client.encKeys(this.o.peerSaeId, size === undefined ? { number: n } : { number: n, size }, { signal: call.signal }))).then(
      (answer) => {
        this.calls.delete(call);
        this.inFlight--;
        this.inFlightKeys -= n;
        if (!Array.isArray(answer)) {
          if (!this.closed) failed(new Error(`the ETSI 014 client answered enc_keys with ${answer === null ? 'null' : typeof answer}, not a list of keys`));
          return;
        }
        const keys = answer as Etsi014Key[];
        /** Wipes every key of the answer (skipping what is no key: an application's client is checked below). */
        const wipeAll = (): void => {
          for (const k of keys as unknown[]) if (isBytes((k as { key?: unknown } | null)?.key)) wipe((k as Etsi014Key).key);
        };
        if (this.closed) return wipeAll();
        // RFC 9257 §6: without a size asked for, the KME's default decides; a key too short to be a PSK fails the
        // whole answer (wiped), as an invalid answer would. So does a key ID this source was handed before: a KME
        // that repeats one (broken, or hostile) would have one key, or one key ID, serve two handshakes.
        // And an entry that is no key with a UUID key ID (what the ETSI clients check, clause 6.3; an application's client
        // may not): its identity could not be made, which threw in pump(), an unhandled rejection, and left its take()
        // waiting for good and its key unwiped.
        const ids = new Set<string>();
        const problem = keys
          .map((k) => deliveredKeyProblem(k) ?? tooShort('enc_keys', k.key) ?? this.repeated(k.keyId, ids))
          .find((p) => p !== undefined);
        if (problem) {
          wipeAll();
          return failed(new Error(problem));
        }
        let now: number;
        try {
          now = this.o.now();
        } catch (e) {
          // Keys whose age cannot be known are not kept (the clock is the application's: lib/callbacks.ts).
          for (const k of keys) wipe(k.key);
          return failed(new Error(`the now clock threw: ${thrownMessage(e)}`, { cause: e }));
        }
        this.lastErrorValue = undefined;
        for (const k of keys) this.remember(k.keyId);
        const expiresAt = now + this.o.keyLifetimeMs;
        for (const k of keys) this.pool.push({ keyId: k.keyId, key: k.key, expiresAt });
        this.emit({ type: 'fetched', keyIds: keys.map((k) => k.keyId), pooled: this.pool.length });
        this.pump();
      },
      (e: unknown) => {
        this.calls.delete(call);
        this.inFlight--;
        this.inFlightKeys -= n;
        if (this.closed) return;
        failed(e);
      },
    );
  }

  /**
   * Why a key ID delivered by enc_keys cannot be used (this source was handed it before, or it is in `ids`, those of
   * the same answer so far, to which it is added), or undefined.
   */
  private repeated(keyId: string, ids: Set<string>): string | undefined {
    const id = keyId.toLowerCase();
    const seen = this.received.has(id) || ids.has(id);
    ids.add(id);
    return seen
      ? `the KME delivered key ID ${keyId} with enc_keys again: a QKD key serves one handshake only (ETSI GS QKD 014 clause 5.2: Get key delivers new keys)`
      : undefined;
  }

  /** Records a key ID delivered by enc_keys; the oldest is forgotten beyond {@link RECEIVED_KEY_IDS} of them. */
  private remember(keyId: string): void {
    this.received.add(keyId.toLowerCase());
    // Sets iterate in insertion order: the first is the oldest.
    if (this.received.size > RECEIVED_KEY_IDS) this.received.delete(this.received.values().next().value!);
  }

  /** Wipes and drops pooled keys past their lifetime. */
  private sweep(): void {
    if (this.pool.length === 0) return;
    let now: number;
    try {
      now = this.o.now();
    } catch (e) {
      // A clock that fails here (called from a timer: a throw would end the process) makes every key expired.
      reportCallbackError('now', e, this.o.onCallbackError);
      now = Infinity;
    }
    const expired = this.pool.filter((p) => p.expiresAt <= now);
    if (expired.length === 0) return;
    this.pool = this.pool.filter((p) => p.expiresAt > now);
    for (const p of expired) wipe(p.key);
    this.emit({ type: 'expired', keyIds: expired.map((p) => p.keyId) });
  }
}

export interface Etsi014ServerSourceOptions {
  /** The slave SAE's ETSI 014 client, talking to its own KME (`Etsi014Client` or `Etsi014FetchClient`). */
  readonly client: Etsi014KeyClient;
  /** Close `client` when this source is closed (default false). */
  readonly ownsClient?: boolean;
  /**
   * The master SAEs (TLS clients) whose keys this server accepts. An identity that names no SAE is looked up
   * for the first one.
   */
  readonly peerSaeIds: readonly string[];
  /** Most key IDs looked up for one handshake (default 4): the first one the KME delivers is used. */
  readonly maxLookups?: number;
  /** How many used key IDs are remembered to refuse replays (default 100000, oldest forgotten first). */
  readonly replayCacheSize?: number;
  /** The hash the keys are bound to as external PSKs (default SHA-256; must match the client's). */
  readonly hash?: HashName;
  /**
   * What the source reports (never key material). An observer (lib/callbacks.ts): if it throws, the source goes on
   * as if it had returned (a key it resolved still goes to its handshake) and the error goes
   * to {@link onCallbackError}.
   */
  readonly onEvent?: (event: Etsi014SourceEvent) => void;
  /** Receives what `onEvent` threw, as a CallbackError (default: one line on console.error). */
  readonly onCallbackError?: CallbackErrorHandler;
}

/** The TLS server's key source: fetches the keys the client names by ID from its KME (`dec_keys`). */
export class Etsi014ServerSource implements ServerKeySource {
  readonly description: string;
  /** Each key ID is looked up once here, and its KME delivers it once: a replayed ClientHello finds no key. */
  readonly singleUse = true;
  private readonly used = new Map<string, true>();
  /** The dec_keys calls in flight, aborted by close(). */
  private readonly calls = new Set<AbortController>();
  private readonly maxLookups: number;
  private readonly cacheSize: number;
  private closed = false;

  constructor(private readonly options: Etsi014ServerSourceOptions) {
    if (options.peerSaeIds.length === 0 || options.peerSaeIds.some((s) => !s)) {
      throw new TypeError('Etsi014ServerSource: at least one peer SAE ID (the TLS client SAE) is required');
    }
    this.maxLookups = options.maxLookups ?? 4;
    this.cacheSize = options.replayCacheSize ?? 100_000;
    if (!Number.isInteger(this.maxLookups) || this.maxLookups < 1) throw new RangeError('Etsi014ServerSource: maxLookups must be a positive integer');
    if (!Number.isInteger(this.cacheSize) || this.cacheSize < 1) throw new RangeError('Etsi014ServerSource: replayCacheSize must be a positive integer');
    this.description = `QKD keys from ${options.client.location} (ETSI 014 dec_keys, peer SAE ${options.peerSaeIds.join(', ')})`;
  }

  /** How many used key IDs are remembered. */
  get rememberedKeyIds(): number {
    return this.used.size;
  }

  /** Whether this key ID was already used here (and is still remembered). */
  hasUsed(keyId: string): boolean {
    return this.used.has(keyId.toLowerCase());
  }

  /**
   * Looks up the key IDs in the client's order and stops at the first key its KME delivers: one QKD key per
   * handshake. A replayed or unknown key ID, or one the KME refuses to this SAE (401), is skipped (and reported); a
   * KME failure rejects.
   */
  async resolve(identities: readonly Uint8Array[]): Promise<(SourcedKey | undefined)[]> {
    if (this.closed) throw new TransportError('ERR_QKD_KEY_SOURCE_CLOSED', `${this.description}: the key source is closed`);
    const out: (SourcedKey | undefined)[] = identities.map(() => undefined);
    const emit = observer('onEvent', this.options.onEvent, this.options.onCallbackError);
    let lookups = 0;
    for (let i = 0; i < identities.length; i++) {
      const parsed = decodeKeyIdIdentity(identities[i]);
      if (!parsed) continue;
      const keyId = parsed.keyId.toLowerCase();
      const saeId = parsed.saeId ?? this.options.peerSaeIds[0];
      const refuse = (reason: RefusalReason, message: string): void => emit?.({ type: 'refused', keyId, saeId, reason, message });
      if (!this.options.peerSaeIds.includes(saeId)) {
        refuse('unexpected-sae', `key ID ${keyId} names SAE '${clip(saeId, 100)}', which this server does not take keys from`);
        continue;
      }
      // Checked and recorded before the first await: two concurrent handshakes cannot both get this key.
      if (this.used.has(keyId)) {
        refuse('replayed', `key ID ${keyId} was already used: a QKD key serves one handshake only (replay?)`);
        continue;
      }
      if (lookups >= this.maxLookups) {
        refuse('too-many', `key ID ${keyId} not looked up: at most ${this.maxLookups} per handshake`);
        break;
      }
      lookups++;
      this.remember(keyId);
      let key: Uint8Array;
      const call = new AbortController();
      this.calls.add(call);
      try {
        // Raced with the signal: an application's client may not pass it on. What it answers after close() is wiped.
        const answer = Promise.resolve(this.options.client.decKeys(saeId, [parsed.keyId], { signal: call.signal }));
        answer.then(
          (keys) => {
            if (call.signal.aborted) for (const k of keys) if (isBytes(k?.key)) wipe(k.key);
          },
          () => {},
        );
        [{ key }] = await untilAborted(answer, call.signal);
      } catch (e) {
        if (this.closed) throw new TransportError('ERR_QKD_KEY_SOURCE_CLOSED', `${this.description}: the key source was closed`, { cause: e });
        if (e instanceof Etsi014Error && e.reason === 'bad_request') {
          refuse('unknown-to-kme', `the key manager does not know key ID ${keyId} (expired, or already delivered): ${e.kmeMessage !== undefined ? clip(e.kmeMessage) : e.message}`);
          continue;
        }
        // Clause 5.4: 401 for a key ID addressed to another SAE pair. The key is not ours, as an unknown one is not: the
        // client's next key ID is tried (a client's fault is no KME failure, which would end the handshake).
        if (e instanceof Etsi014Error && e.reason === 'unauthorized') {
          refuse('not-addressed', `the key manager refused key ID ${keyId} to this SAE (HTTP 401): ${e.kmeMessage !== undefined ? clip(e.kmeMessage) : e.message}`);
          continue;
        }
        const message = `key manager failed for key ID ${keyId}: ${thrownMessage(e)}`;
        emit?.({ type: 'lookup-failed', keyId, message });
        throw new TransportError('ERR_QKD_KEY_UNAVAILABLE', message, { cause: e });
      } finally {
        this.calls.delete(call);
      }
      if (this.closed) {
        wipe(key);
        throw new TransportError('ERR_QKD_KEY_SOURCE_CLOSED', `${this.description}: the key source is closed`);
      }
      const problem = tooShort('dec_keys', key);
      if (problem) {
        wipe(key);
        const message = `key manager failed for key ID ${keyId}: ${problem}`;
        emit?.({ type: 'lookup-failed', keyId, message });
        throw new TransportError('ERR_QKD_KEY_UNAVAILABLE', message);
      }
      emit?.({ type: 'resolved', keyId, saeId });
      out[i] = { identity: identities[i], secret: key, hash: this.options.hash ?? 'SHA-256', label: keyId };
      break;
    }
    return out;
  }

  /**
   * Stops the source: lookups in flight are aborted (their handshakes fail; a dec_keys not yet sent is not sent, and
   * a key that arrives anyway is wiped), later ones refused, and the client closed if the source owns it.
   */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    const err = new TransportError('ERR_QKD_KEY_SOURCE_CLOSED', `${this.description}: the key source was closed`);
    for (const c of this.calls) c.abort(err);
    this.calls.clear();
    if (this.options.ownsClient) this.options.client.close();
  }

  private remember(keyId: string): void {
    this.used.set(keyId, true);
    if (this.used.size > this.cacheSize) {
      // Maps iterate in insertion order: the first key is the oldest. Forgetting it is safe — its KME hands a
      // key out once, so a late replay still fails (as unknown-to-kme).
      this.used.delete(this.used.keys().next().value!);
    }
  }
}

/**
 * A lease handler that wipes each lease after `ms` milliseconds (with an unref'd timer), for use as
 * `serverPskResolver(..., { onLease: releaseAfter(35_000) })`: a backstop for a lease whose handshake ends
 * unseen, beside releasing each lease once its handshake is over. A handshake copies the PSKs when they are
 * handed over (and keeps its copies across a HelloRetryRequest), so `ms` only bounds how long the leased keys
 * stay in memory; the command line takes the handshake timeout plus a second. `ms` from 0 to 2^31 - 1, else a
 * RangeError. Returns the handler and a function that releases every pending lease at once (for shutdown).
 */
export function releaseAfter(ms: number): ((lease: PskLease) => void) & { releaseAll(): void } {
  checkTimerMs('releaseAfter: ms', ms, 0);
  const pending = new Set<{ lease: PskLease; timer: ReturnType<typeof setTimeout> }>();
  const handler = (lease: PskLease): void => {
    const entry = {
      lease,
      timer: setTimeout(() => {
        pending.delete(entry);
        lease.release();
      }, ms),
    };
    entry.timer.unref?.();
    pending.add(entry);
  };
  return Object.assign(handler, {
    releaseAll(): void {
      for (const e of pending) {
        clearTimeout(e.timer);
        e.lease.release();
      }
      pending.clear();
    },
  });
}

function abortError(signal: AbortSignal): Error {
  const r: unknown = signal.reason;
  return r instanceof Error ? r : new Error('the key request was aborted');
}
