/**
 * Where pre-shared keys come from, seen the same way by the client and the server.
 *
 * - A client asks a {@link ClientKeySource} for the keys to offer on one new connection
 *   ({@link ClientKeySource.take}): one or several, each with a priority (lower is offered first) and possibly
 *   a lifetime. A one-time key (every QKD key) leaves the source when it is taken: no other handshake gets it,
 *   even when handshakes run concurrently.
 * - A server asks a {@link ServerKeySource} to resolve the identities a ClientHello names
 *   ({@link ServerKeySource.resolve}), asynchronously (e.g. from a QKD key manager); a one-time key is
 *   resolved at most once.
 *
 * {@link takePsks} and {@link serverPskResolver} turn the keys into the {@link Psk}s the handshake uses, either
 * directly (plain external PSKs) or through the RFC 9258 importer. Keys handed out belong to the caller, who
 * wipes them with {@link PskLease.release} once the handshake is over; a server's resolver answer is wiped by the
 * connection it is handed to ({@link releaseResolvedPsks}), which copies what it needs first.
 *
 * This file is runtime-neutral (no I/O, no clock of its own); {@link StaticKeySource} is the in-memory source.
 * The key-manager source is lib/qkd/etsi014-source.ts, the file source lib/qkd/file-source.ts.
 */
import { copyBytes, toHex, wipe } from '../codec/bytes.js';
import type { CryptoProvider, HashName } from '../crypto/provider.js';
import {
  acceptImportedIdentities,
  deriveAcceptedImports,
  importPsk,
  type ExternalPsk,
  type ImportAcceptOptions,
  type ImportOptions,
} from './importer.js';
import { markReleased, type Psk, type PskRequest } from './types.js';
import { thrownMessage } from '../callbacks.js';
import { TransportError } from '../errors.js';

/** A key as a source hands it out: an external PSK plus its priority and lifetime. */
export interface SourcedKey extends ExternalPsk {
  /** Lower values are offered first (default 0; a negative value comes before it), equal ones in the given order. */
  readonly priority?: number;
  /** When the key stops being usable, in milliseconds on the source's clock; absent: no expiry. */
  readonly expiresAt?: number;
}

export interface KeyRequest {
  /** The most keys to take for this handshake (default 1). At least one is always returned. */
  readonly count?: number;
  /** Gives up waiting (the promise rejects). */
  readonly signal?: AbortSignal;
}

export interface ClientKeySource {
  /** One line for logs (never key material). */
  readonly description: string;
  /**
   * Takes the keys to offer on ONE new handshake: at least one and at most `count`, best priority first, none
   * expired. The caller owns the returned keys (and their buffers) and wipes them after the handshake. Rejects
   * with a clear message when no key can be had (none left, key manager down or too slow).
   */
  take(request?: KeyRequest): Promise<SourcedKey[]>;
  /** Stops the source and wipes every key it still holds. */
  close(): void;
}

export interface ServerKeySource {
  /** One line for logs (never key material). */
  readonly description: string;
  /**
   * Resolves distinct external identities received in a ClientHello: one entry per identity, undefined when
   * the key is unknown, already used, or not looked up (a source may stop at the first key it finds). The
   * caller owns the returned keys and wipes them after the handshake. Rejects when the lookup itself fails
   * (key manager unreachable or too slow): the handshake then fails with handshake_failure.
   */
  resolve(identities: readonly Uint8Array[]): Promise<readonly (SourcedKey | undefined)[]>;
  /**
   * True when resolve() never returns a key it returned before (each key serves one handshake: a QKD key manager's
   * keys, a one-time static source): serverPskResolver marks the PSKs it answers `singleUse`, so that a server's
   * 0-RTT replay guard need not record them (Psk.singleUse).
   */
  readonly singleUse?: boolean;
  close(): void;
}

/** Keys handed out for one handshake; {@link release} wipes them (idempotent). */
export interface PskLease {
  readonly psks: readonly Psk[];
  /** Wipes every secret of this lease: call it once the handshake has completed or failed. */
  release(): void;
}

/** What the client offers on one connection. */
export interface PskOffer extends PskLease {
  /** The keys taken from the source, best priority first (their secrets are wiped already when imported). */
  readonly keys: readonly SourcedKey[];
}

export interface TakePsksOptions {
  /** How many keys to take (default 1). With the importer each key becomes one PSK per target KDF. */
  readonly count?: number;
  /** Import each key with RFC 9258 (ImportedIdentity, ipskx, "imp binder"); absent: plain external PSKs. */
  readonly importer?: ImportOptions;
  readonly signal?: AbortSignal;
}

/**
 * Client: takes keys from `source` for one handshake and turns them into the PSKs to offer, best priority
 * first. With the importer, the raw keys are wiped as soon as the imported PSKs are derived (RFC 9258 §4: the
 * input keys serve the importer only).
 */
export async function takePsks(crypto: CryptoProvider, source: ClientKeySource, options: TakePsksOptions = {}): Promise<PskOffer> {
  const taken = await source.take({ count: options.count ?? 1, signal: options.signal });
  if (taken.length === 0) throw new TransportError('ERR_QKD_KEY_UNAVAILABLE', `${source.description}: the key source returned no key`);
  const keys = byPriority(taken);
  const psks: Psk[] = [];
  try {
    for (const k of keys) psks.push(...(options.importer ? importPsk(crypto, k, options.importer) : [plainPsk(k)]));
  } catch (e) {
    // The keys, and what was imported from them before the failure (ipskx of the keys before it).
    for (const p of psks) wipe(p.secret);
    for (const k of keys) wipe(k.secret);
    throw e;
  }
  if (options.importer) for (const k of keys) wipe(k.secret);
  return { psks, keys, release: releaser(psks, keys) };
}

export interface ServerResolverOptions {
  /** Accept RFC 9258 imported identities (with this context and these target KDFs). */
  readonly importer?: ImportAcceptOptions;
  /**
   * Also accept plain external identities. Default: true without the importer, false with it (RFC 9258 §4: a
   * key fed to the importer must not also be used directly; with one-time keys both may safely be enabled).
   */
  readonly plain?: boolean;
  /**
   * Receives each lease of resolved keys, to wipe them on a schedule of its own (`releaseAfter(ms)` from
   * qkd-tls/qkd or qkd-tls/browser: on a timer). The connection that is handed the resolver's answer wipes the
   * lease anyway (see {@link serverPskResolver}); this is for answers that never reach one (code of yours that drops
   * or rebuilds an answer). If it throws, the lease's keys are wiped at once and the lookup rejects with an error
   * naming onLease (that handshake fails).
   */
  readonly onLease?: (lease: PskLease) => void;
}

/**
 * Server: an asynchronous PSK resolver (tlsServerOverStreams's `lookupPsks`, qkd-tls/node's `createServer({ psks })`,
 * or an answer to a connection's `psk-request` event) that asks `source` for the keys the ClientHello names.
 * Imported identities naming the same key (one per target KDF) cause one lookup; the handshake then picks the
 * imported PSK whose hash fits the cipher suite it chose. Identities for another target protocol or KDF are ignored.
 *
 * The keys it resolves are copies leased to this one handshake (the source keeps, and never loses, its own), and
 * the array it answers carries that lease: {@link Connection.providePsks}, which every transport calls with the
 * answer as it is, wipes them as soon as the handshake has copied what it needs (so does qkd-tls/node when the
 * connection ended during the lookup). Pass the answer on unchanged: an array you build from it (`.map(...)`)
 * carries no lease, and its keys then stay in memory until garbage collection unless `onLease` wipes them (e.g.
 * `onLease: releaseAfter(35_000)`, or a lease you release when the handshake ends). An answer is for one
 * connection: one kept and handed to a second connection holds keys the first wiped, and a server refuses a key
 * whose lease was released (PskUnavailable, handshake_failure) rather than run a handshake under its zeros.
 */
export function serverPskResolver(
  crypto: CryptoProvider,
  source: ServerKeySource,
  options: ServerResolverOptions = {},
): (request: PskRequest) => Promise<(Psk | undefined)[]> {
  const importer = options.importer;
  const allowPlain = options.plain ?? importer === undefined;
  return async (request) => {
    const ids = request.identities;
    const { accepted, externalIdentities } = importer ? acceptImportedIdentities(ids, importer) : { accepted: [], externalIdentities: [] };
    const importedAt = new Map(accepted.map((a) => [a.index, a]));
    const externalHex = new Set(externalIdentities.map(toHex));
    // One list of distinct identities to resolve, in the client's order (the client's preference).
    const wanted: Uint8Array[] = [];
    const position = new Map<string, number>();
    const want = (id: Uint8Array): void => {
      const h = toHex(id);
      if (!position.has(h)) {
        position.set(h, wanted.length);
        wanted.push(id);
      }
    };
    ids.forEach((id, i) => {
      const a = importedAt.get(i);
      if (a) want(a.imported.externalIdentity);
      // RFC 9258 §4: a key named by an imported identity is never also used directly.
      else if (allowPlain && !externalHex.has(toHex(id))) want(id);
    });
    if (wanted.length === 0) return ids.map(() => undefined);
    const keys = await source.resolve(wanted);
    if (keys.length !== wanted.length) {
      for (const k of keys) if (k) wipe(k.secret);
      throw new TransportError('ERR_QKD_KEY_UNAVAILABLE', `${source.description}: resolved ${keys.length} keys for ${wanted.length} identities`);
    }
    const keyFor = (id: Uint8Array): SourcedKey | undefined => {
      const at = position.get(toHex(id));
      return at === undefined ? undefined : keys[at];
    };
    let psks: (Psk | undefined)[];
    try {
      psks = importer
        ? deriveAcceptedImports(crypto, ids.length, accepted, externalIdentities, externalIdentities.map(keyFor), importer)
        : ids.map(() => undefined as Psk | undefined);
    } catch (e) {
      // Only EPSKs shorter than 128 bits were found (RFC 9257 §6): the lookup fails, the keys it resolved are wiped.
      for (const k of keys) if (k) wipe(k.secret);
      throw e;
    }
    if (allowPlain) {
      ids.forEach((id, i) => {
        if (psks[i] === undefined && !importedAt.has(i) && !externalHex.has(toHex(id))) {
          const k = keyFor(id);
          if (k) psks[i] = plainPsk({ ...k, identity: id });
        }
      });
    }
    // Keys this source gives out once: a replayed ClientHello finds none, so no replay record is needed (§8.1).
    if (source.singleUse === true) psks = psks.map((p) => (p ? { ...p, singleUse: true } : p));
    // Imported PSKs are derived: the raw keys can go now. Plain ones are the keys themselves (wiped on release).
    const used = psks.filter((p): p is Psk => p !== undefined);
    for (const k of keys) if (k && !used.some((p) => p.secret === k.secret)) wipe(k.secret);
    const lease = { psks: used, release: releaser(used, []) };
    try {
      options.onLease?.(lease);
    } catch (e) {
      // Whoever was to wipe these keys did not take them: wipe them here, and fail this lookup (lib/callbacks.ts).
      lease.release();
      throw new TransportError('ERR_QKD_KEY_UNAVAILABLE', `${source.description}: the onLease callback threw: ${thrownMessage(e)}`, { cause: e });
    }
    if (used.length > 0) answerLeases.set(psks, lease);
    return psks;
  };
}

/** The lease behind each answer of a {@link serverPskResolver}, by the answer's array (no clock: no timer here). */
const answerLeases = new WeakMap<object, PskLease>();

/**
 * Wipes the keys leased with `answer` when it is the array a {@link serverPskResolver} answered, once the
 * handshake has taken copies of them or no handshake will (Connection.providePsks, a transport dropping an answer
 * that came too late); does nothing for any other array, so that keys the caller still uses (its own static PSKs)
 * are never wiped.
 */
export function releaseResolvedPsks(answer: unknown): void {
  if (typeof answer !== 'object' || answer === null) return;
  const lease = answerLeases.get(answer);
  if (!lease) return;
  answerLeases.delete(answer);
  lease.release();
}

/** The plain external PSK for a key (RFC 8446 §4.2.11: bound to the key's hash, SHA-256 by default). */
export function plainPsk(k: SourcedKey): Psk {
  return { identity: k.identity, secret: k.secret, hash: k.hash ?? 'SHA-256', ...(k.label !== undefined ? { label: k.label } : {}) };
}

export interface StaticKeySourceOptions {
  /**
   * Each key serves one handshake only: a client takes it once, a server resolves it once. Default false: a
   * configured static key is a long-term key, reused like OpenSSL's or GnuTLS's external PSKs.
   */
  readonly oneTime?: boolean;
  /**
   * The clock that `expiresAt` refers to (milliseconds). Required when a key has an expiry. If it throws, that
   * take() or resolve() rejects, naming it, and no key is used up (lib/callbacks.ts).
   */
  readonly now?: () => number;
  readonly description?: string;
}

/**
 * Keys held in memory (from the command line, a file, or the application). Serves both sides. It copies the
 * keys it is given and hands out copies (the caller owns those); {@link close} wipes its own.
 */
export class StaticKeySource implements ClientKeySource, ServerKeySource {
  readonly description: string;
  /** With `oneTime`: each key is resolved once (ServerKeySource.singleUse). */
  readonly singleUse: boolean;
  private readonly keys: { key: SourcedKey; used: boolean; hex: string }[];
  private readonly oneTime: boolean;
  private readonly now: (() => number) | undefined;

  constructor(keys: readonly SourcedKey[], options: StaticKeySourceOptions = {}) {
    if (keys.length === 0) throw new TypeError('StaticKeySource: at least one key is required');
    for (const k of keys) {
      if (k.identity.length === 0 || k.identity.length > 0xffff) throw new TypeError('StaticKeySource: a key identity must be 1..65535 bytes');
      if (k.secret.length === 0) throw new TypeError('StaticKeySource: a key must not be empty');
      if (k.expiresAt !== undefined && !options.now) throw new TypeError('StaticKeySource: keys with an expiry need a clock (options.now)');
    }
    this.keys = byPriority(keys).map((k) => ({ key: { ...k, identity: copyBytes(k.identity), secret: copyBytes(k.secret) }, used: false, hex: toHex(k.identity) }));
    this.oneTime = options.oneTime ?? false;
    this.singleUse = this.oneTime;
    this.now = options.now;
    this.description = options.description ?? `${keys.length} static key${keys.length > 1 ? 's' : ''}${this.oneTime ? ' (one-time)' : ''}`;
  }

  /** Keys not yet used (one-time) and not expired. */
  get available(): number {
    return this.keys.filter((e) => this.usable(e)).length;
  }

  async take(request: KeyRequest = {}): Promise<SourcedKey[]> {
    const count = checkCount(request.count);
    // The keys are chosen before any is marked used or copied: a clock that throws (the application's, lib/callbacks.ts)
    // then fails this take with no one-time key burned and no copy left unwiped.
    const chosen: (typeof this.keys)[number][] = [];
    for (const e of this.keys) {
      if (chosen.length >= count) break;
      if (this.usable(e)) chosen.push(e);
    }
    const out = chosen.map((e) => {
      if (this.oneTime) e.used = true;
      return copyKey(e.key);
    });
    if (out.length === 0) throw new TransportError('ERR_QKD_KEY_UNAVAILABLE', `${this.description}: no usable key left${this.oneTime ? ' (each key serves one handshake)' : ' (all expired)'}`);
    return out;
  }

  async resolve(identities: readonly Uint8Array[]): Promise<(SourcedKey | undefined)[]> {
    // As in take: every key is checked (the clock read) before any is marked used or copied.
    const found = identities.map((id) => {
      const e = this.keys.find((x) => x.hex === toHex(id));
      return e && this.usable(e) ? e : undefined;
    });
    return found.map((e) => {
      // (An identity offered twice gets its one-time key once.)
      if (!e || (this.oneTime && e.used)) return undefined;
      if (this.oneTime) e.used = true;
      return copyKey(e.key);
    });
  }

  close(): void {
    for (const e of this.keys) {
      wipe(e.key.secret);
      e.used = true;
    }
  }

  private usable(e: { key: SourcedKey; used: boolean }): boolean {
    if (e.used) return false;
    if (e.key.expiresAt === undefined) return true;
    let now: number;
    try {
      now = this.now!();
    } catch (err) {
      throw new TransportError('ERR_QKD_KEY_UNAVAILABLE', `${this.description}: the now clock threw: ${thrownMessage(err)}`, { cause: err });
    }
    return e.key.expiresAt > now;
  }
}

/** Sorts keys by priority, lower first, keeping the given order among equals. */
export function byPriority<T extends { readonly priority?: number }>(keys: readonly T[]): T[] {
  return keys
    .map((k, i) => ({ k, i }))
    .sort((a, b) => (a.k.priority ?? 0) - (b.k.priority ?? 0) || a.i - b.i)
    .map((x) => x.k);
}

function checkCount(count: number | undefined): number {
  const n = count ?? 1;
  if (!Number.isInteger(n) || n < 1) throw new RangeError(`key request: count must be a positive integer (got ${count})`);
  return n;
}

function copyKey(k: SourcedKey): SourcedKey {
  return { ...k, identity: copyBytes(k.identity), secret: copyBytes(k.secret) };
}

function releaser(psks: readonly Psk[], keys: readonly SourcedKey[]): () => void {
  let done = false;
  return () => {
    if (done) return;
    done = true;
    // (Marked as well: either side refuses a wiped key rather than run a handshake under zeros, releasedPskProblem.)
    for (const p of psks) {
      wipe(p.secret);
      markReleased(p.secret);
    }
    for (const k of keys) {
      wipe(k.secret);
      markReleased(k.secret);
    }
  };
}
