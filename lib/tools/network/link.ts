/**
 * One QKD link of the network: a BB84 transmitter at one node, a receiver at the other, and the pool of secret
 * key bits that both nodes' key managers hold identically.
 *
 * The link works in blocks of simulated time (`blockSeconds`). In each block it
 *  1. detects photons at the rate the physics gives ({@link bb84Rates});
 *  2. discloses a sample of its sifted bits (`samplesPerBlock` detections, simulated one by one with the
 *     injected randomness, {@link simulateDetections}) to estimate the block's QBER;
 *  3. if the estimate is above `qberThreshold` (11 % by default: above it BB84 yields no secret key), discards the
 *     block's key — it was never confirmed — and stops serving (state `compromised`) until `RECOVERY_BLOCKS`
 *     blocks in a row pass again (one lucky block under attack is not enough: the estimate is statistical);
 *  4. otherwise distils the block's secret bits (the decoy-state rate R × block length) into the pool, as real
 *     random bytes from the injected randomness, up to the pool's capacity (a full pool pauses production).
 * A link can also be cut (state `down`: no photons, no key, no serving) and restored.
 *
 * Only the most recent blocks are simulated detection by detection; a long stretch of unobserved time (an idle
 * server) is summarised by the formulas' expected values, so catching up costs little.
 *
 * Runtime-neutral: time is passed in by the network, randomness is injected.
 */
import { wipe } from '../../codec/bytes.js';
import { simulateDetections, type UniformSource } from './detection.js';
import { bb84Rates, type LinkPhysics, type LinkRates } from './physics.js';

/**
 * Why `v` cannot be a link's `capacityBits` (whole bytes, at least one) or `qberThreshold` (in (0, 0.5): at 0.5 the
 * key is noise), or undefined; the topology file's parser says the same.
 */
export function linkParameterProblem(name: 'capacityBits' | 'qberThreshold', v: number): string | undefined {
  if (name === 'capacityBits') {
    return Number.isSafeInteger(v) && v >= 8 && v % 8 === 0 && v <= MAX_CAPACITY_BITS ? undefined : `must be a positive multiple of 8 up to ${MAX_CAPACITY_BITS} (got ${v})`;
  }
  return v > 0 && v < 0.5 ? undefined : `must be a number in (0, 0.5) (got ${v})`;
}

export type LinkState = 'up' | 'down' | 'compromised';

export interface LinkOptions {
  /** "A-B": the two node names joined by '-'. */
  name: string;
  a: string;
  b: string;
  physics: LinkPhysics;
  /** Pool capacity in bits, a multiple of 8 (default 1 000 000). */
  capacityBits: number;
  /** QBER above which the link's key is discarded and the link stops serving (default 0.11). */
  qberThreshold: number;
  /** Simulated seconds per block (default 0.2 × the time scale, so one block about every 0.2 s of real time). */
  blockSeconds: number;
  /** Detections disclosed per block to estimate the QBER (default 4000; fewer if the link detects fewer). */
  samplesPerBlock: number;
}

export const DEFAULT_CAPACITY_BITS = 1_000_000;
/**
 * The most key a link's pool may hold, and all pools together (2^31 bits, 256 MiB): the pools are allocated when
 * the network starts, so a topology file asking for more (capacityBits 8e12, or many thousand links) failed with
 * "Invalid typed array length", naming neither the file nor the link, or ran the simulator out of memory.
 */
export const MAX_CAPACITY_BITS = 2 ** 31;
export const DEFAULT_QBER_THRESHOLD = 0.11;
export const DEFAULT_BLOCK_SECONDS = 0.2;
export const DEFAULT_SAMPLES_PER_BLOCK = 4000;
/** Blocks before the last this-many of a catch-up are not sampled (their expected values are used). */
const SAMPLED_BLOCKS = 25;
/** Clean blocks in a row a compromised link needs before it serves again. */
export const RECOVERY_BLOCKS = 5;
/** A catch-up longer than this many blocks is summarised as one block. */
const MAX_BLOCKS_PER_CATCH_UP = 5000;

/** Lifetime counters of a link, in bits. */
export interface LinkCounters {
  /** Secret bits added to the pool. */
  producedBits: number;
  /** Bits taken from the pool by key relay. */
  consumedBits: number;
  /** Sifted bits of blocks discarded because their QBER was above the threshold. */
  discardedSiftedBits: number;
  /** Blocks processed, and how many of them were discarded. */
  blocks: number;
  discardedBlocks: number;
}

export interface LinkStateChange {
  link: string;
  from: LinkState;
  to: LinkState;
  /** The block's QBER estimate when the change came from one. */
  qber: number | null;
  atS: number;
}

export class QkdNetworkLink {
  readonly name: string;
  readonly a: string;
  readonly b: string;
  readonly options: Readonly<LinkOptions>;
  private stateNow: LinkState = 'up';
  private cut = false;
  private readonly pool: Uint8Array;
  private poolStart = 0;
  private poolBytes = 0;
  private carryBits = 0;
  private blockEnd: number;
  private lastEstimate: number | null = null;
  private lastRates: LinkRates;
  private attackNow = 0;
  private cleanBlocks = 0;
  /** The link was compromised when its fibre was cut: restoring it brings that state back, not `up`. */
  private compromisedWhenCut = false;
  private readonly counters: LinkCounters = { producedBits: 0, consumedBits: 0, discardedSiftedBits: 0, blocks: 0, discardedBlocks: 0 };
  private readonly rateCache = new Map<number, LinkRates>();

  constructor(
    options: LinkOptions,
    private readonly randomBytes: (n: number) => Uint8Array,
    private readonly uniform: UniformSource,
    startS: number,
  ) {
    for (const name of ['capacityBits', 'qberThreshold'] as const) {
      const problem = linkParameterProblem(name, options[name]);
      if (problem) throw new RangeError(`link ${options.name}: ${name} ${problem}`);
    }
    if (!(options.blockSeconds > 0)) throw new RangeError(`link ${options.name}: blockSeconds must be positive`);
    if (!Number.isSafeInteger(options.samplesPerBlock) || options.samplesPerBlock < 1) throw new RangeError(`link ${options.name}: samplesPerBlock must be a positive integer`);
    this.options = Object.freeze({ ...options });
    this.name = options.name;
    this.a = options.a;
    this.b = options.b;
    this.pool = new Uint8Array(options.capacityBits / 8);
    this.blockEnd = startS + options.blockSeconds;
    this.lastRates = this.rates(0);
  }

  get state(): LinkState {
    return this.stateNow;
  }

  /** True while the link hands out key for relay. */
  get serving(): boolean {
    return this.stateNow === 'up';
  }

  /** Bits in the pool right now. */
  get poolBits(): number {
    return this.poolBytes * 8;
  }

  /** The last block's QBER estimate (null before the first block with detections). */
  get measuredQber(): number | null {
    return this.lastEstimate;
  }

  /** The formulas' values with the current eavesdropping. */
  get expected(): LinkRates {
    return this.lastRates;
  }

  /** Simulated second at which the next block to run starts (every block before it has run). */
  get nextBlockStartS(): number {
    return this.blockEnd - this.options.blockSeconds; // (as advanceTo computes each block's start)
  }

  /** The share of pulses the eavesdropper measured in the last block. */
  get attackFraction(): number {
    return this.attackNow;
  }

  /** Secret bits per second going into the pool now (0 when down or compromised). */
  get keyRateBps(): number {
    return this.stateNow === 'up' ? this.lastRates.secretKeyRateBps : 0;
  }

  stats(): LinkCounters {
    return { ...this.counters };
  }

  /** Processes every block that ends by `nowS`; `attackAt(t)` is the eavesdropped share at time t. */
  advanceTo(nowS: number, attackAt: (tS: number) => number, onChange: (c: LinkStateChange) => void): void {
    const dt = this.options.blockSeconds;
    const pending = Math.floor((nowS - this.blockEnd) / dt) + 1;
    if (pending <= 0) return;
    let i = 0;
    if (pending > MAX_BLOCKS_PER_CATCH_UP) {
      // A long unobserved stretch: one summary block with the expected values (the pool is full by then anyway).
      const skip = pending - SAMPLED_BLOCKS;
      const start = this.blockEnd - dt;
      this.block(start, dt * skip, attackAt(start), false, onChange);
      this.blockEnd += dt * skip;
      i = skip;
    }
    // At most `pending` blocks: with blocks so short that blockEnd + dt rounds back to blockEnd (a tiny
    // blockSeconds after a long run), `blockEnd <= nowS` alone never turns false and the server hangs.
    while (i < pending && this.blockEnd <= nowS) {
      const start = this.blockEnd - dt;
      this.block(start, dt, attackAt(start), pending - i <= SAMPLED_BLOCKS, onChange);
      this.blockEnd += dt;
      i++;
    }
  }

  /** Cuts the fibre (state `down`) or restores it (`up`, or `compromised` again if it was when cut). */
  setCut(cut: boolean, atS: number, onChange: (c: LinkStateChange) => void): void {
    if (cut === this.cut) return;
    this.cut = cut;
    const from = this.stateNow;
    if (cut) this.compromisedWhenCut = from === 'compromised' || (from === 'down' && this.compromisedWhenCut);
    // Restoring the fibre does not clear a compromise: the link still needs RECOVERY_BLOCKS clean blocks in a row.
    this.stateNow = cut ? 'down' : this.compromisedWhenCut ? 'compromised' : 'up';
    this.lastEstimate = cut ? null : this.lastEstimate;
    onChange({ link: this.name, from, to: this.stateNow, qber: null, atS });
  }

  /**
   * Takes `bits` (a multiple of 8) from the pool: the same bits at both ends of the link. The caller must have
   * checked `serving` and `poolBits`; the caller owns (and wipes) the result.
   */
  take(bits: number): Uint8Array {
    const n = bits / 8;
    if (!Number.isInteger(n) || n < 0 || n > this.poolBytes) throw new RangeError(`link ${this.name}: cannot take ${bits} bits from ${this.poolBits}`);
    const out = new Uint8Array(n);
    for (let i = 0; i < n; i++) {
      const at = (this.poolStart + i) % this.pool.length;
      out[i] = this.pool[at];
      this.pool[at] = 0;
    }
    this.poolStart = (this.poolStart + n) % this.pool.length;
    this.poolBytes -= n;
    this.counters.consumedBits += bits;
    return out;
  }

  /** Wipes the pool. */
  destroy(): void {
    wipe(this.pool);
    this.poolBytes = 0;
  }

  private block(start: number, dt: number, attack: number, sampled: boolean, onChange: (c: LinkStateChange) => void): void {
    this.counters.blocks++;
    this.attackNow = attack;
    const rates = this.rates(attack);
    this.lastRates = rates;
    if (this.cut) return;
    const expectedDetections = rates.detectionRateHz * dt;
    let estimate: number | null;
    if (sampled) {
      const n = Math.min(this.options.samplesPerBlock, Math.floor(expectedDetections));
      const s = simulateDetections(n, { darkShare: rates.darkShare, misalignment: this.options.physics.misalignment, attackFraction: attack }, this.uniform);
      estimate = s.sifted > 0 ? s.errors / s.sifted : null;
    } else {
      estimate = expectedDetections >= 1 ? rates.qber : null;
    }
    if (estimate !== null) this.lastEstimate = estimate;
    const from = this.stateNow;
    if (estimate !== null && estimate > this.options.qberThreshold) {
      // The block's key was never confirmed: discard it all, serve nothing until a block passes again.
      this.counters.discardedSiftedBits += Math.floor(rates.siftedRateBps * dt);
      this.counters.discardedBlocks++;
      this.carryBits = 0;
      this.cleanBlocks = 0;
      this.stateNow = 'compromised';
    } else if (this.stateNow === 'compromised') {
      // Still not trusted: this block's key is discarded too, until enough clean blocks in a row.
      if (estimate !== null) this.cleanBlocks++;
      this.counters.discardedSiftedBits += Math.floor(rates.siftedRateBps * dt);
      this.counters.discardedBlocks++;
      if (this.cleanBlocks >= RECOVERY_BLOCKS) this.stateNow = 'up';
    } else {
      this.distil(rates.secretKeyRateBps * dt);
    }
    if (this.stateNow !== from) onChange({ link: this.name, from, to: this.stateNow, qber: estimate, atS: start + dt });
  }

  /** Adds `bits` secret bits (fractions carry over) to the pool as random bytes, up to the capacity. */
  private distil(bits: number): void {
    const total = this.carryBits + bits;
    const room = this.pool.length - this.poolBytes;
    const n = Math.min(room, Math.floor(total / 8));
    this.carryBits = n === room ? 0 : total - n * 8;
    if (n === 0) return;
    const fresh = this.randomBytes(n);
    if (fresh.length !== n) throw new Error('randomBytes returned the wrong length');
    for (let i = 0; i < n; i++) this.pool[(this.poolStart + this.poolBytes + i) % this.pool.length] = fresh[i];
    wipe(fresh);
    this.poolBytes += n;
    this.counters.producedBits += n * 8;
  }

  private rates(attack: number): LinkRates {
    let r = this.rateCache.get(attack);
    if (!r) {
      r = bb84Rates(this.options.physics, attack);
      if (this.rateCache.size > 64) this.rateCache.clear();
      this.rateCache.set(attack, r);
    }
    return r;
  }
}
