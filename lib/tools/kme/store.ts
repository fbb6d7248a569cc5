/**
 * The shared key store of one simulated QKD link: what two key managers (KMEs) at the two ends of a
 * quantum channel hold in common.
 *
 * A real QKD link distils secret bits at some rate into a bounded buffer that both KMEs hold identically.
 * This model keeps only a bit COUNT for that buffer (the bits themselves would be random and identical on
 * both sides, so they are drawn from the injected randomness at the moment a key leaves the buffer):
 *
 *  - production: `rateBitsPerSecond` bits per second, measured with the injected clock, up to a capacity of
 *    `maxKeyCount * keySize` bits; `initialKeyCount` keys are there from the start (so tests need not wait);
 *  - `issue()` (the master side's `enc_keys`) draws `number * size` bits, gives each key a fresh UUID and
 *    keeps a copy waiting for the slave;
 *  - `redeem()` (the slave side's `dec_keys`) hands each waiting key out once and deletes it, so a key is
 *    delivered exactly once to each SAE (ETSI GS QKD 014 clause 5.3/5.4: a second fetch fails);
 *  - keys the slave never fetches are wiped after `pendingKeyTtlMs` (0 = keep them until close).
 *
 * Runtime-neutral: the clock and the randomness are injected; there are no timers.
 */
import { copyBytes, wipe } from '../../codec/bytes.js';
import { freshUuid } from '../../psk/key-id.js';

export interface QkdLinkConfig {
  /** The default key size in bits (Status.key_size); stored_key_count counts keys of this size. */
  keySize: number;
  /** Capacity of the store in keys of `keySize` (Status.max_key_count); also caps keys awaiting the slave. */
  maxKeyCount: number;
  /** Secret-key production rate of the simulated quantum channel, in bits per second (0 = none). */
  rateBitsPerSecond: number;
  /** Keys of `keySize` present at the start. */
  initialKeyCount: number;
  /** How long a key issued to the master waits for the slave before it is wiped (0 = no expiry). */
  pendingKeyTtlMs: number;
}

export interface QkdLinkDeps {
  /** Milliseconds, non-decreasing (for example `Date.now` or `performance.now`). */
  now(): number;
  /** Cryptographically secure random bytes. */
  randomBytes(n: number): Uint8Array;
}

/** A key and its ID as handed to an SAE. The caller owns `key` and should wipe it after use. */
export interface IssuedKey {
  keyId: string;
  key: Uint8Array;
}

export type IssueResult =
  | { ok: true; keys: IssuedKey[] }
  | { ok: false; reason: 'insufficient_key_material'; neededBits: number; availableBits: number }
  | { ok: false; reason: 'too_many_pending_keys'; pending: number; limit: number };

/**
 * A refused `dec_keys`: IDs of no waiting key, and (a network's relay, where a node serves several SAEs) IDs of keys
 * that wait for another slave SAE or come from another master SAE, which the handler answers with 401.
 */
export type RedeemResult = { ok: true; keys: IssuedKey[] } | { ok: false; unknownKeyIds: string[]; notAddressedKeyIds?: string[] };

export class QkdLink {
  readonly config: Readonly<QkdLinkConfig>;
  private readonly deps: QkdLinkDeps;
  private bits: number;
  private lastMs: number;
  /** Keys issued to the master and not yet fetched by the slave, by lower-case key ID, oldest first. */
  private readonly pending = new Map<string, { key: Uint8Array; issuedAt: number }>();
  private counters = { issued: 0, redeemed: 0, expired: 0 };

  constructor(config: QkdLinkConfig, deps: QkdLinkDeps) {
    this.config = Object.freeze({ ...config });
    this.deps = deps;
    this.bits = Math.min(config.initialKeyCount, config.maxKeyCount) * config.keySize;
    this.lastMs = deps.now();
  }

  /** Status.stored_key_count: whole keys of the default size available to `enc_keys` right now. */
  storedKeyCount(): number {
    this.tick();
    return Math.floor(this.bits / this.config.keySize);
  }

  /** Bits available to `enc_keys` right now (a request for N keys of S bits needs N*S). */
  availableBits(): number {
    this.tick();
    return Math.floor(this.bits);
  }

  /** Keys delivered to the master that still wait for the slave's `dec_keys`. */
  pendingKeyCount(): number {
    this.tick();
    return this.pending.size;
  }

  /** Lifetime counters: keys issued to the master, redeemed by the slave, expired unredeemed. */
  stats(): { issued: number; redeemed: number; expired: number } {
    this.tick();
    return { ...this.counters };
  }

  /** Master side (`enc_keys`): draws `count` keys of `sizeBits` bits (a multiple of 8), all or none. */
  issue(count: number, sizeBits: number): IssueResult {
    this.tick();
    const needed = count * sizeBits;
    if (needed > this.bits) {
      return { ok: false, reason: 'insufficient_key_material', neededBits: needed, availableBits: Math.floor(this.bits) };
    }
    if (this.pending.size + count > this.config.maxKeyCount) {
      return { ok: false, reason: 'too_many_pending_keys', pending: this.pending.size, limit: this.config.maxKeyCount };
    }
    this.bits -= needed;
    const now = this.deps.now();
    const keys: IssuedKey[] = [];
    for (let i = 0; i < count; i++) {
      const keyId = this.freshKeyId();
      const key = this.deps.randomBytes(sizeBits / 8);
      // A copy of its own (copyBytes, never slice(): on a Node Buffer, as node:crypto randomBytes returns, slice() is
      // a view, and wiping the master's key once encoded would hand the slave an all-zero key).
      this.pending.set(keyId, { key: copyBytes(key), issuedAt: now });
      keys.push({ keyId, key });
    }
    this.counters.issued += count;
    return { ok: true, keys };
  }

  /**
   * Slave side (`dec_keys`): hands out the keys with these IDs and deletes them. All or none: if any ID
   * is unknown (never issued, already fetched, or expired) nothing is consumed.
   */
  redeem(keyIds: readonly string[]): RedeemResult {
    this.tick();
    const ids = keyIds.map((id) => id.toLowerCase());
    const unknownKeyIds = keyIds.filter((_, i) => !this.pending.has(ids[i]));
    if (unknownKeyIds.length > 0) return { ok: false, unknownKeyIds };
    const keys: IssuedKey[] = [];
    for (const id of ids) {
      const entry = this.pending.get(id)!;
      this.pending.delete(id);
      keys.push({ keyId: id, key: entry.key });
    }
    this.counters.redeemed += keys.length;
    return { ok: true, keys };
  }

  /** Wipes every key still waiting for the slave and empties the store. */
  destroy(): void {
    for (const entry of this.pending.values()) wipe(entry.key);
    this.pending.clear();
    this.bits = 0;
  }

  /** Brings production and expiry up to the injected clock. */
  private tick(): void {
    const now = this.deps.now();
    const elapsed = now - this.lastMs;
    if (elapsed > 0) {
      const capacity = this.config.maxKeyCount * this.config.keySize;
      this.bits = Math.min(capacity, this.bits + (elapsed * this.config.rateBitsPerSecond) / 1000);
      this.lastMs = now;
    }
    const ttl = this.config.pendingKeyTtlMs;
    if (ttl > 0) {
      // Insertion order is issue order, so the expired keys are at the front.
      for (const [id, entry] of this.pending) {
        if (now - entry.issuedAt < ttl) break;
        wipe(entry.key);
        this.pending.delete(id);
        this.counters.expired++;
      }
    }
  }

  /** A random (version 4) UUID, RFC 4122 §4.4, unique among the waiting keys. */
  private freshKeyId(): string {
    return freshUuid((n) => this.deps.randomBytes(n), (id) => this.pending.has(id), 'QkdLink');
  }
}
