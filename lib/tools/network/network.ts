/**
 * A simulated QKD network: nodes whose key managers (KMs) share key with their neighbours over QKD links, a
 * controller that routes keys between nodes that share no link, and trusted-node key relay.
 *
 * For a newcomer: a QKD link only joins two nodes, and only over a limited distance. To give an application
 * (an SAE) at node A a key shared with an SAE at node C, the KM at A draws a fresh random key K and sends it
 * hop by hop along a route A → B → C, encrypting it on each hop with a one-time pad made of that hop's own
 * link key (K ⊕ k_AB to B; B decrypts and sends K ⊕ k_BC to C). Every hop spends exactly as many link-key bits
 * as K has, and each intermediate node sees K: the nodes must be trusted.
 *
 * The controller picks the route with the shortest total fibre (then the fewest hops) among the links that are up
 * and hold enough key; a link that is cut, compromised (QBER above threshold) or short of key is avoided.
 * With no route at all, the request is refused with a reason naming every link that stands in the way.
 *
 * Key accounting (checked by the tests): link bits consumed by relay = Σ (key bits × hops) over keys that were
 * delivered to both SAEs + over keys still waiting for the receiving SAE + over keys discarded unfetched.
 *
 * Time: the injected clock gives real milliseconds; simulated time runs `timeScale` times faster. Nothing runs
 * by itself: every query first brings the links up to the current time.
 *
 * Runtime-neutral: the clock and randomness are injected; no timers, no I/O.
 */
import { copyBytes, wipe } from '../../codec/bytes.js';
import { freshUuid } from '../../psk/key-id.js';
import { UniformSource } from './detection.js';
import { observer, type CallbackErrorHandler } from '../../callbacks.js';
import {
  DEFAULT_BLOCK_SECONDS,
  DEFAULT_CAPACITY_BITS,
  DEFAULT_QBER_THRESHOLD,
  DEFAULT_SAMPLES_PER_BLOCK,
  type LinkCounters,
  type LinkState,
  type LinkStateChange,
  QkdNetworkLink,
} from './link.js';
import { linkPhysics } from './physics.js';
import { findLink, TOPOLOGY_LIMITS, type Topology, type TopologyEavesdropper } from './topology.js';

export interface QkdNetworkOptions {
  topology: Topology;
  /** Real time in milliseconds, non-decreasing (e.g. Date.now). */
  now(): number;
  /** Cryptographically secure random bytes (seeded in tests): link keys, relayed keys, key IDs, detections. */
  randomBytes(n: number): Uint8Array;
  /** Simulated seconds per real second (default 1). */
  timeScale?: number;
  /** Simulated seconds per link block (default 0.2 × timeScale). */
  blockSeconds?: number;
  /** Detections sampled per block to estimate the QBER (default 4000). */
  samplesPerBlock?: number;
  /** A relayed key the receiving SAE does not fetch is discarded after this many real ms (default 600000; 0 = never). */
  pendingKeyTtlMs?: number;
  /** Most relayed keys waiting for one receiving SAE from one sender (default 1024). */
  maxPendingKeys?: number;
  /**
   * Told about link state changes, route changes, relays and refusals. Never carries key material. An observer (lib/callbacks.ts): what it throws goes to `onCallbackError` and changes nothing.
   */
  onEvent?: (event: NetworkEvent) => void;
  /** Receives what an observer callback of this network threw, as a CallbackError (default: one line on console.error). */
  onCallbackError?: CallbackErrorHandler;
}

export type NetworkEvent =
  | ({ type: 'link-state' } & LinkStateChange)
  | { type: 'route'; masterSaeId: string; slaveSaeId: string; path: string[]; previous: string[] | null; atS: number }
  | { type: 'relay'; masterSaeId: string; slaveSaeId: string; path: string[]; keys: number; sizeBits: number; atS: number }
  | { type: 'refused'; masterSaeId: string; slaveSaeId: string; message: string; atS: number };

/** A key as handed to an SAE; the caller owns (and wipes) `key`. */
export interface RelayedKey {
  keyId: string;
  key: Uint8Array;
}

export type RelayResult =
  | { ok: true; keys: RelayedKey[]; path: string[] }
  | { ok: false; reason: 'no_route'; message: string; neededBits: number; blockers: LinkBlocker[] }
  | { ok: false; reason: 'too_many_pending_keys'; message: string; pending: number; limit: number };

/** A refused redeem: IDs of no waiting key, and IDs of keys relayed for another SAE pair (`notAddressedKeyIds`). */
export type RedeemResult = { ok: true; keys: RelayedKey[] } | { ok: false; unknownKeyIds: string[]; notAddressedKeyIds: string[] };

/** Why a link cannot carry a relay now. */
export interface LinkBlocker {
  link: string;
  state: LinkState;
  poolBits: number;
  why: string;
}

/** What GET /network reports (and the picture shows). */
export interface NetworkSnapshot {
  /** Simulated seconds since start. */
  timeS: number;
  timeScale: number;
  nodes: { name: string; saes: string[]; x?: number; y?: number }[];
  links: LinkSnapshot[];
  /** The route each SAE pair used last. */
  routes: { masterSaeId: string; slaveSaeId: string; path: string[] }[];
  ledger: RelayLedger;
}

export interface LinkSnapshot extends LinkCounters {
  name: string;
  a: string;
  b: string;
  km: number;
  /** "up" while the link serves keys; "compromised" (QBER above threshold) or "down" (cut) otherwise. */
  state: LinkState;
  /** The last measured QBER estimate (the formula's value before the first measurement). */
  qber: number;
  qberMeasured: boolean;
  /** The formula's QBER with the current eavesdropping. */
  expectedQber: number;
  qberThreshold: number;
  /** Secret bits per second into the pool (0 unless up). */
  keyRateBps: number;
  siftedRateBps: number;
  poolBits: number;
  capacityBits: number;
  /** Share of pulses an eavesdropper intercepts now. */
  eavesdropping: number;
}

/** Relay bookkeeping in link-key bits (a key of S bits over h hops counts S·h). */
export interface RelayLedger {
  consumedBits: number;
  deliveredBits: number;
  pendingBits: number;
  discardedBits: number;
  keysDelivered: number;
  keysDiscarded: number;
}

interface PendingKey {
  key: Uint8Array;
  masterSaeId: string;
  slaveSaeId: string;
  hopBits: number;
  issuedAtMs: number;
}

export class QkdNetwork {
  readonly timeScale: number;
  private readonly links: QkdNetworkLink[];
  private readonly nodes: Topology['nodes'];
  private readonly saeNode = new Map<string, string>();
  private readonly eavesdroppers: TopologyEavesdropper[];
  private readonly startMs: number;
  private readonly pending = new Map<string, PendingKey>();
  private readonly routes = new Map<string, string[]>();
  private readonly ledger: RelayLedger = { consumedBits: 0, deliveredBits: 0, pendingBits: 0, discardedBits: 0, keysDelivered: 0, keysDiscarded: 0 };
  private readonly emit: (e: NetworkEvent) => void;
  private readonly ttlMs: number;
  private readonly maxPending: number;

  constructor(private readonly options: QkdNetworkOptions) {
    const scale = options.timeScale ?? 1;
    if (!(scale > 0 && Number.isFinite(scale))) throw new RangeError(`timeScale must be a positive number (got ${scale})`);
    this.timeScale = scale;
    this.emit = observer('onEvent', options.onEvent, options.onCallbackError) ?? (() => {});
    this.ttlMs = options.pendingKeyTtlMs ?? 600_000;
    this.maxPending = options.maxPendingKeys ?? 1024;
    const t = options.topology;
    this.nodes = t.nodes.map((n) => ({ ...n, saes: [...n.saes] }));
    for (const n of t.nodes) for (const s of n.saes) this.saeNode.set(s, n.name);
    this.startMs = options.now();
    const uniform = new UniformSource(options.randomBytes);
    const blockSeconds = options.blockSeconds ?? DEFAULT_BLOCK_SECONDS * scale;
    this.links = t.links.map((l) => {
      const merged = { ...t.defaults, ...definedOnly(l) };
      const { a, b, km, capacityBits, qberThreshold, ...physics } = merged as typeof l;
      return new QkdNetworkLink(
        {
          name: `${a}-${b}`,
          a,
          b,
          physics: linkPhysics(km, physics),
          capacityBits: capacityBits ?? DEFAULT_CAPACITY_BITS,
          qberThreshold: qberThreshold ?? DEFAULT_QBER_THRESHOLD,
          blockSeconds,
          samplesPerBlock: options.samplesPerBlock ?? DEFAULT_SAMPLES_PER_BLOCK,
        },
        options.randomBytes,
        uniform,
        0,
      );
    });
    // Each named by its link's own name ("B-A" becomes "A-B"), so that attackOn compares names: looking each one
    // up among the links (findLink) for every link and every block took 50 s a block with 1000 links and 1000 eavesdroppers.
    this.eavesdroppers = t.eavesdroppers.map((e) => ({ ...e, link: this.link(e.link).name }));
  }

  /** Simulated seconds since the network started. */
  get timeS(): number {
    return ((this.options.now() - this.startMs) / 1000) * this.timeScale;
  }

  /** The node whose KM serves this SAE, if any. */
  nodeOfSae(saeId: string): string | undefined {
    return this.saeNode.get(saeId);
  }

  hasNode(name: string): boolean {
    return this.nodes.some((n) => n.name === name);
  }

  /** The SAEs a node's KM serves. */
  saesOf(node: string): string[] {
    return this.nodes.find((n) => n.name === node)?.saes.slice() ?? [];
  }

  /** Brings every link and the pending keys up to now. */
  advance(): void {
    const now = this.timeS;
    for (const l of this.links) l.advanceTo(now, (t) => this.attackOn(l.name, t), (c) => this.emit({ type: 'link-state', ...c }));
    this.expirePending();
  }

  /**
   * Puts an eavesdropper on a link from now (or `fromS`) on, until `untilS` if given (simulated seconds). At most
   * {@link TOPOLOGY_LIMITS}.eavesdroppers at once, as in a topology file: those that ended are forgotten here.
   */
  addEavesdropper(e: { link: string; fraction: number; fromS?: number; untilS?: number }): void {
    const link = this.link(e.link);
    if (!(e.fraction >= 0 && e.fraction <= 1)) throw new RangeError('fraction must be in [0, 1]');
    for (const [name, v] of [['fromS', e.fromS], ['untilS', e.untilS]] as const) {
      if (v !== undefined && !(typeof v === 'number' && Number.isFinite(v) && v >= 0)) throw new RangeError(`${name} must be a non-negative finite number of seconds`);
    }
    this.advance();
    // An eavesdropper that ended by the start of its link's next block acts on no block to come (attackOn:
    // tS < until_s). Asked of the link itself, not of the clock: read again after advance(), the clock may have
    // moved past a block boundary, and an eavesdropper still due to act on the block now running was forgotten.
    const next = new Map(this.links.map((l) => [l.name, l.nextBlockStartS]));
    for (let i = this.eavesdroppers.length - 1; i >= 0; i--) {
      const { link: name, until_s: until } = this.eavesdroppers[i];
      if (until !== undefined && until <= next.get(name)!) this.eavesdroppers.splice(i, 1);
    }
    if (this.eavesdroppers.length >= TOPOLOGY_LIMITS.eavesdroppers) {
      throw new RangeError(`at most ${TOPOLOGY_LIMITS.eavesdroppers} eavesdroppers at once (removeEavesdroppers ends those of a link)`);
    }
    this.eavesdroppers.push({ link: link.name, fraction: e.fraction, from_s: e.fromS ?? this.timeS, ...(e.untilS !== undefined ? { until_s: e.untilS } : {}) });
  }

  /** Removes every eavesdropper of a link from now on. */
  removeEavesdroppers(linkName: string): void {
    const link = this.link(linkName);
    this.advance();
    const now = this.timeS;
    for (const e of this.eavesdroppers) {
      if (e.link === link.name && (e.until_s === undefined || e.until_s > now)) e.until_s = now;
    }
  }

  /** Cuts a link's fibre (state "down") or restores it. */
  setLinkCut(linkName: string, cut: boolean): void {
    const link = this.link(linkName);
    this.advance();
    link.setCut(cut, this.timeS, (c) => this.emit({ type: 'link-state', ...c }));
  }

  /**
   * The master SAE's KM (`enc_keys`): relays `count` fresh keys of `sizeBits` bits (a multiple of 8) to the
   * slave SAE's node on one route, all or none, and keeps them there for `redeem`.
   */
  relay(masterSaeId: string, slaveSaeId: string, count: number, sizeBits: number): RelayResult {
    this.advance();
    const src = this.saeNode.get(masterSaeId);
    const dst = this.saeNode.get(slaveSaeId);
    if (src === undefined || dst === undefined) throw new Error(`unknown SAE '${src === undefined ? masterSaeId : slaveSaeId}'`);
    if (sizeBits % 8 !== 0 || sizeBits <= 0 || !Number.isSafeInteger(count) || count < 1) throw new RangeError('relay: bad count or size');
    const waiting = this.pendingCount(masterSaeId, slaveSaeId);
    if (waiting + count > this.maxPending) {
      return { ok: false, reason: 'too_many_pending_keys', pending: waiting, limit: this.maxPending, message: `too many relayed keys wait for SAE '${slaveSaeId}' (${waiting} of at most ${this.maxPending})` };
    }
    const needed = count * sizeBits;
    const path = this.route(src, dst, needed);
    if (!path) {
      const blockers = this.blockers(needed);
      const message = noRouteMessage(src, dst, needed, blockers);
      this.emit({ type: 'refused', masterSaeId, slaveSaeId, message, atS: this.timeS });
      return { ok: false, reason: 'no_route', message, neededBits: needed, blockers };
    }
    const hops = this.hopsOf(path);
    const keys: RelayedKey[] = [];
    const now = this.options.now();
    for (let i = 0; i < count; i++) {
      const key = this.options.randomBytes(sizeBits / 8);
      // One-time-pad relay: on each hop the sender encrypts K with S bits of the hop's link key and the next
      // node decrypts with its own copy of the same bits (the pool holds both ends' identical copies).
      // copyBytes, never slice(): on a Node Buffer slice() is a view, and wiping it per hop would wipe the master's key.
      let carried: Uint8Array = copyBytes(key);
      for (const link of hops) {
        const pad = link.take(sizeBits);
        const onWire = xor(carried, pad);
        wipe(carried);
        carried = xor(onWire, pad);
        wipe(pad, onWire);
      }
      const keyId = this.freshKeyId();
      this.pending.set(keyId, { key: carried, masterSaeId, slaveSaeId, hopBits: sizeBits * hops.length, issuedAtMs: now });
      keys.push({ keyId, key });
    }
    const hopBits = needed * hops.length;
    this.ledger.consumedBits += hopBits;
    this.ledger.pendingBits += hopBits;
    const pairKey = `${masterSaeId}\u0000${slaveSaeId}`;
    const previous = this.routes.get(pairKey) ?? null;
    if (!previous || previous.join() !== path.join()) {
      this.routes.set(pairKey, path);
      this.emit({ type: 'route', masterSaeId, slaveSaeId, path, previous, atS: this.timeS });
    }
    this.emit({ type: 'relay', masterSaeId, slaveSaeId, path, keys: count, sizeBits, atS: this.timeS });
    return { ok: true, keys, path };
  }

  /** The slave SAE's KM (`dec_keys`): hands out relayed keys once, all or none. */
  redeem(masterSaeId: string, slaveSaeId: string, keyIds: readonly string[]): RedeemResult {
    this.advance();
    const ids = keyIds.map((id) => id.toLowerCase());
    const unknownKeyIds = keyIds.filter((_, i) => !this.pending.has(ids[i]));
    const notAddressedKeyIds = keyIds.filter((_, i) => {
      const p = this.pending.get(ids[i]);
      return p !== undefined && (p.masterSaeId !== masterSaeId || p.slaveSaeId !== slaveSaeId);
    });
    if (unknownKeyIds.length > 0 || notAddressedKeyIds.length > 0) return { ok: false, unknownKeyIds, notAddressedKeyIds };
    const keys = ids.map((id) => {
      const p = this.pending.get(id)!;
      this.pending.delete(id);
      this.ledger.pendingBits -= p.hopBits;
      this.ledger.deliveredBits += p.hopBits;
      this.ledger.keysDelivered++;
      return { keyId: id, key: p.key };
    });
    return { ok: true, keys };
  }

  /** Keys relayed from `masterSaeId` that wait for `slaveSaeId`. */
  pendingCount(masterSaeId: string, slaveSaeId: string): number {
    let n = 0;
    for (const p of this.pending.values()) if (p.masterSaeId === masterSaeId && p.slaveSaeId === slaveSaeId) n++;
    return n;
  }

  /** The route a relay of `bits` would take now, or undefined; and the bits its poorest link holds. */
  currentRoute(masterSaeId: string, slaveSaeId: string, bits: number): { path: string[]; bottleneckBits: number; bottleneckRateBps: number } | undefined {
    this.advance();
    const src = this.saeNode.get(masterSaeId);
    const dst = this.saeNode.get(slaveSaeId);
    if (src === undefined || dst === undefined) return undefined;
    const path = this.route(src, dst, bits);
    if (!path) return undefined;
    const hops = this.hopsOf(path);
    return {
      path,
      bottleneckBits: hops.length ? Math.min(...hops.map((l) => l.poolBits)) : Number.MAX_SAFE_INTEGER,
      bottleneckRateBps: hops.length ? Math.min(...hops.map((l) => l.keyRateBps)) : Number.POSITIVE_INFINITY,
    };
  }

  snapshot(): NetworkSnapshot {
    this.advance();
    return {
      timeS: this.timeS,
      timeScale: this.timeScale,
      nodes: this.nodes.map((n) => ({ ...n, saes: [...n.saes] })),
      links: this.links.map((l) => linkSnapshot(l)),
      routes: [...this.routes].map(([k, path]) => {
        const [masterSaeId, slaveSaeId] = k.split('\u0000');
        return { masterSaeId, slaveSaeId, path: [...path] };
      }),
      ledger: { ...this.ledger },
    };
  }

  /** Wipes every pool and every waiting key. */
  destroy(): void {
    for (const l of this.links) l.destroy();
    for (const p of this.pending.values()) wipe(p.key);
    this.pending.clear();
  }

  // ---------------------------------------------------------------------------------------------------------

  private link(name: string): QkdNetworkLink {
    const l = findLink(this.links, name);
    if (!l) throw new Error(`no link '${name}' (links: ${this.links.map((x) => x.name).join(', ')})`);
    return l;
  }

  private attackOn(linkName: string, tS: number): number {
    let p = 0;
    for (const e of this.eavesdroppers) {
      if (e.link === linkName && e.from_s <= tS && (e.until_s === undefined || tS < e.until_s)) p += e.fraction;
    }
    return Math.min(1, p);
  }

  /** Shortest fibre, then fewest hops, over links that serve and hold `bits` (Dijkstra; networks are small). */
  private route(src: string, dst: string, bits: number): string[] | undefined {
    const usable = this.links.filter((l) => l.serving && l.poolBits >= bits);
    const dist = new Map<string, [number, number]>([[src, [0, 0]]]);
    const prev = new Map<string, string>();
    const done = new Set<string>();
    for (;;) {
      let at: string | undefined;
      for (const [n, d] of dist) if (!done.has(n) && (at === undefined || less(d, dist.get(at)!))) at = n;
      if (at === undefined) return undefined;
      if (at === dst) break;
      done.add(at);
      const [km, hops] = dist.get(at)!;
      for (const l of usable) {
        const next = l.a === at ? l.b : l.b === at ? l.a : undefined;
        if (next === undefined || done.has(next)) continue;
        const d: [number, number] = [km + l.options.physics.km, hops + 1];
        const old = dist.get(next);
        if (!old || less(d, old)) {
          dist.set(next, d);
          prev.set(next, at);
        }
      }
    }
    const path = [dst];
    while (path[0] !== src) path.unshift(prev.get(path[0])!);
    return path;
  }

  /** The links joining consecutive nodes of `path`, found by their ends (a name "a-b" can be ambiguous when node names hold '-'). */
  private hopsOf(path: string[]): QkdNetworkLink[] {
    return path.slice(1).map((n, i) => {
      const l = this.links.find((x) => (x.a === path[i] && x.b === n) || (x.b === path[i] && x.a === n));
      if (!l) throw new Error(`no link joins '${path[i]}' and '${n}'`);
      return l;
    });
  }

  private blockers(bits: number): LinkBlocker[] {
    return this.links.flatMap((l): LinkBlocker[] => {
      const base = { link: l.name, state: l.state, poolBits: l.poolBits };
      if (l.state === 'compromised') {
        const q = l.measuredQber ?? l.expected.qber;
        return [{ ...base, why: `compromised: QBER ${pct(q)} is above the ${pct(l.options.qberThreshold)} threshold (eavesdropping suspected), its unconfirmed key was discarded` }];
      }
      if (l.state === 'down') return [{ ...base, why: 'down: the link is cut' }];
      if (l.poolBits < bits) return [{ ...base, why: `exhausted: ${l.poolBits} bits of key, ${bits} needed` }];
      return [];
    });
  }

  private expirePending(): void {
    if (this.ttlMs <= 0) return;
    const now = this.options.now();
    for (const [id, p] of this.pending) {
      if (now - p.issuedAtMs < this.ttlMs) break; // insertion order is issue order
      this.discard(id, p);
    }
  }

  private discard(id: string, p: PendingKey): void {
    wipe(p.key);
    this.pending.delete(id);
    this.ledger.pendingBits -= p.hopBits;
    this.ledger.discardedBits += p.hopBits;
    this.ledger.keysDiscarded++;
  }

  /** A random (version 4) UUID, RFC 4122 §4.4. */
  private freshKeyId(): string {
    return freshUuid((n) => this.options.randomBytes(n), (id) => this.pending.has(id), 'QkdNetwork');
  }
}

function linkSnapshot(l: QkdNetworkLink): LinkSnapshot {
  const measured = l.measuredQber;
  return {
    name: l.name,
    a: l.a,
    b: l.b,
    km: l.options.physics.km,
    state: l.state,
    qber: measured ?? l.expected.qber,
    qberMeasured: measured !== null,
    expectedQber: l.expected.qber,
    qberThreshold: l.options.qberThreshold,
    keyRateBps: l.keyRateBps,
    siftedRateBps: l.state === 'down' ? 0 : l.expected.siftedRateBps,
    poolBits: l.poolBits,
    capacityBits: l.options.capacityBits,
    eavesdropping: l.attackFraction,
    ...l.stats(),
  };
}

function noRouteMessage(src: string, dst: string, bits: number, blockers: LinkBlocker[]): string {
  const why = blockers.length ? blockers.map((b) => `link ${b.link} is ${b.why}`).join('; ') : 'the nodes are not connected';
  return `no route from node ${src} to node ${dst} with ${bits} bits of key on every link: ${why}`;
}

function less(x: [number, number], y: [number, number]): boolean {
  return x[0] < y[0] || (x[0] === y[0] && x[1] < y[1]);
}

function xor(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length);
  for (let i = 0; i < a.length; i++) out[i] = a[i] ^ b[i];
  return out;
}

function pct(x: number): string {
  return `${(x * 100).toFixed(1)}%`;
}

function definedOnly<T extends object>(o: T): T {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as T;
}
