/**
 * The benchmark that `qkd-tls bench --runtimes` runs inside each JavaScript runtime (Chromium, Deno, Bun,
 * workerd, Node). Runtime-neutral: no `node:` imports, only WebCrypto, WHATWG streams and a clock passed in.
 *
 * - Bulk: one TLS connection, an in-memory pair — the client and the server run in the same runtime, joined by
 *   two TransformStreams (each holding up to four chunks, as a socket's buffers would), each behind the real
 *   streams transport (lib/transport/streams.ts) — so no socket is needed inside the runtime. MB/s of
 *   application data (10^6 bytes/s) from the first write to the last byte read, with the WebCrypto record
 *   offload and without it (the connection's synchronous cipher).
 * - Warm-up: the transfers and the ceiling first take turns, unmeasured (see `warmupMs`).
 * - Ceiling: the raw WebCrypto AES-128-GCM work the same transfer needs — every 16 KiB record sealed once and
 *   opened once, the same number of records in flight — measured in the same run, right before the transfers.
 *   (In the pair both ends run on one thread, so the ceiling counts both the seal and the open of each record.)
 * - Framing only (bench/framing-only.ts): the same transfer through the same streams with the same WebCrypto calls
 *   and none of TLS — the limit of any record layer built this way in the runtime, next to which the offloaded
 *   transfer's own cost shows.
 * - Handshakes/s: sans-IO Connection pairs back to back in memory, psk_dhe_ke with x25519, one after another: with
 *   the provider's own (synchronous) x25519, and with WebCrypto key shares (lib/crypto/webcrypto.ts), this loop
 *   running each key-agreement pause itself as a transport would.
 */
import { Connection } from '../lib/connection/connection.js';
import { nobleProvider } from '../lib/crypto/noble.js';
import type { CryptoProvider } from '../lib/crypto/provider.js';
import { withWebCryptoKeyShares } from '../lib/crypto/webcrypto.js';
import { runKeyAgreement } from '../lib/transport/key-agreement.js';
import type { Psk } from '../lib/psk/types.js';
import { tlsClientOverStreams, tlsServerOverStreams } from '../lib/transport/streams.js';
import { framingOnlyTransfer } from './framing-only.js';

export interface RuntimeBenchOptions {
  /** The runtime's name in the output ("chromium", "deno", "bun", "workerd", "node"). */
  readonly runtime: string;
  /** Smaller transfers and fewer handshakes. */
  readonly quick: boolean;
  /** Records sealed/opened at once by the offload (and in the ceiling). Default 8. */
  readonly recordsInFlight?: number;
  /** The connection's own crypto (the path without offload); default @noble. */
  readonly crypto?: CryptoProvider;
  readonly cryptoName?: string;
  /** A monotonic clock in milliseconds; default performance.now. */
  readonly now?: () => number;
  /** Which parts to run (all by default). */
  readonly parts?: readonly RuntimePart[];
  /** How many times each part runs, taking turns (the best run counts). Default 3, quick 2. */
  readonly rounds?: number;
  /**
   * Before the measured rounds, the ceiling and the transfers (with and without offload) take turns, unmeasured,
   * for at least this many milliseconds (default 2000, quick 500; 0: none), so that all are measured warm: the
   * JIT has compiled their code and the allocator holds the memory they use (in Bun, the offloaded transfer ran
   * at half its speed for the first 200 MB or so).
   */
  readonly warmupMs?: number;
  /**
   * Handshakes run, unmeasured, before each handshakes part's timed ones (default 5). workerd's runner sets 0 in
   * its measured requests: there the whole request is timed from outside, so it warms them up in a request of
   * its own (bench/runtimes.ts).
   */
  readonly handshakeWarmup?: number;
  /** Check first that an offloaded transfer delivers exactly the bytes written (default true). */
  readonly verify?: boolean;
}

export type RuntimePart = 'ceiling' | 'bulk-offload' | 'framing-only' | 'bulk-sync' | 'handshakes' | 'handshakes-webcrypto';
export const RUNTIME_PARTS: readonly RuntimePart[] = ['ceiling', 'bulk-offload', 'framing-only', 'bulk-sync', 'handshakes', 'handshakes-webcrypto'];
/** The parts that move bulk data (warmed up together before they are measured). */
export const BULK_PARTS: readonly RuntimePart[] = ['ceiling', 'bulk-offload', 'framing-only', 'bulk-sync'];

export const RUNTIME_SUITE = 'TLS_AES_128_GCM_SHA256';
/** How the connection in the runtime is set up (printed with the results). */
export const RUNTIME_SETUP =
  'one connection as an in-memory pair: client and server in the same runtime, joined by TransformStreams (four chunks buffered each way) through the streams transport (no sockets)';

/** One measurement, as raw counts: the caller divides by the time it measured. */
export interface RuntimeMeasurement {
  readonly part: RuntimePart;
  /** Bytes of application data moved (bulk, ceiling) or handshakes completed. */
  readonly amount: number;
  /** Milliseconds, measured inside the runtime (workerd: measured by the caller). */
  readonly ms: number;
  /** Bulk: records WebCrypto sealed and opened (every record of the transfer with offload, none without; checked). */
  readonly offloaded?: { sealed: number; opened: number };
  /** Handshakes with WebCrypto key shares: the path x25519 took ('webcrypto', or 'fallback' without X25519 in WebCrypto). */
  readonly keySharePath?: string;
}

/** Runs the chosen parts; each returns how much it did in how long. */
export async function runRuntimeParts(options: RuntimeBenchOptions): Promise<RuntimeMeasurement[]> {
  const now = options.now ?? (() => performance.now());
  const inFlight = options.recordsInFlight ?? 8;
  const crypto = options.crypto ?? nobleProvider;
  const bytes = (options.quick ? 8 : 48) * 1e6;
  // First, in this runtime, the offload must deliver exactly the bytes written (varied content, odd sizes).
  if (options.verify !== false) await verifyTransfer(inFlight, crypto);
  const parts = options.parts ?? RUNTIME_PARTS;
  const warmupMs = options.warmupMs ?? (options.quick ? 500 : 2000);
  const handshakeWarmup = options.handshakeWarmup ?? 5;
  if (warmupMs > 0 && parts.some((p) => BULK_PARTS.includes(p))) {
    for (const t0 = now(); now() - t0 < warmupMs; ) {
      if (parts.includes('ceiling')) await rawCeiling(bytes / 4, inFlight, now);
      if (parts.includes('bulk-offload')) await bulk(bytes / 4, true, inFlight, crypto, now);
      if (parts.includes('framing-only')) await framingOnlyTransfer(bytes / 4, inFlight, now);
      if (parts.includes('bulk-sync')) await bulk(bytes / 16, false, inFlight, crypto, now);
    }
  }
  const best = new Map<RuntimePart, RuntimeMeasurement>();
  // The parts take turns, several times, and each keeps its best run: on a shared machine the other load
  // comes and goes, and interleaving gives the ceiling and the transfers the same chances.
  for (let round = 0; round < (options.rounds ?? (options.quick ? 2 : 3)); round++) {
    for (const part of parts) {
      let m: RuntimeMeasurement;
      if (part === 'ceiling') m = await rawCeiling(bytes, inFlight, now);
      else if (part === 'bulk-offload') m = await bulk(bytes, true, inFlight, crypto, now);
      else if (part === 'framing-only') m = { part, ...(await framingOnlyTransfer(bytes, inFlight, now)) };
      else if (part === 'bulk-sync') m = await bulk(options.quick ? bytes / 2 : bytes / 3, false, inFlight, crypto, now);
      else if (part === 'handshakes') m = await handshakes(options.quick ? 40 : 200, handshakeWarmup, crypto, now);
      else m = await webCryptoHandshakes(options.quick ? 40 : 200, handshakeWarmup, crypto, now);
      const prev = best.get(part);
      if (!prev || m.amount / m.ms > prev.amount / prev.ms) best.set(part, m);
    }
  }
  return [...best.values()];
}

/** The JSON lines of one runtime's results (`qkd-tls bench --runtimes --json`). */
export function runtimeLines(options: RuntimeBenchOptions, m: readonly RuntimeMeasurement[]): Record<string, unknown>[] {
  const rate = (x: RuntimeMeasurement | undefined) => (x && x.ms > 0 ? x.amount / 1e6 / (x.ms / 1000) : NaN);
  const ceiling = rate(m.find((x) => x.part === 'ceiling'));
  const framingOnly = m.find((x) => x.part === 'framing-only');
  const lines: Record<string, unknown>[] = [];
  for (const part of ['bulk-offload', 'bulk-sync'] as const) {
    const x = m.find((y) => y.part === part);
    if (!x) continue;
    const offload = part === 'bulk-offload';
    lines.push({
      event: 'runtime-bulk',
      runtime: options.runtime,
      suite: RUNTIME_SUITE,
      offload,
      mbps: round(rate(x)),
      ceilingMbps: round(ceiling),
      // Offloaded: the same transfer with none of TLS (bench/framing-only.ts), where measured.
      ...(offload && framingOnly ? { framingOnlyMbps: round(rate(framingOnly)) } : {}),
      recordsInFlight: offload ? (options.recordsInFlight ?? 8) : 1,
      cipher: offload ? 'webcrypto' : (options.cryptoName ?? 'noble'),
      megabytes: round(x.amount / 1e6),
      offloaded: x.offloaded,
      setup: 'in-memory pair',
    });
  }
  const provider = options.cryptoName ?? 'noble';
  for (const part of ['handshakes', 'handshakes-webcrypto'] as const) {
    const h = m.find((y) => y.part === part);
    if (!h) continue;
    lines.push({
      event: 'runtime-handshakes',
      runtime: options.runtime,
      kex: 'psk_dhe_ke',
      group: 'x25519',
      provider,
      // Which implementation made the x25519 key shares: the provider's own, or WebCrypto (where the runtime's
      // WebCrypto lacks X25519, the provider's own after all: "<provider> (fallback)").
      keyShares: part === 'handshakes' ? provider : h.keySharePath === 'webcrypto' ? 'webcrypto' : `${provider} (fallback)`,
      handshakesPerSecond: round(h.amount / (h.ms / 1000)),
      setup: 'in-memory pair',
    });
  }
  return lines;
}

function round(x: number): number {
  return Number.isFinite(x) ? Math.round(x * 10) / 10 : x;
}

const RECORD = 16_384;
/**
 * The in-memory pair's streams hold up to four chunks each way, as a TCP socket's send and receive buffers hold
 * what the peer has not read yet; without a buffer every write would wait until the peer's read (a default
 * TransformStream's readable side has a high-water mark of 0), which no socket does.
 */
const SOCKET_BUFFER: QueuingStrategy<Uint8Array> = { highWaterMark: 4 };

/** Raw WebCrypto AES-128-GCM: seal and then open 16 KiB records, `inFlight` at once. */
async function rawCeiling(bytes: number, inFlight: number, now: () => number): Promise<RuntimeMeasurement> {
  const subtle = globalThis.crypto.subtle;
  const key = await subtle.importKey('raw', new Uint8Array(16).fill(7), { name: 'AES-GCM' }, false, ['encrypt', 'decrypt']);
  const aad = Uint8Array.of(23, 3, 3, 0x40, 0x11);
  const plain = new Uint8Array(RECORD + 1).fill(0x61);
  const records = Math.ceil(bytes / RECORD);
  let started = 0;
  const one = async (): Promise<void> => {
    while (started < records) {
      const iv = new Uint8Array(12);
      new DataView(iv.buffer).setUint32(8, started++);
      const sealed = await subtle.encrypt({ name: 'AES-GCM', iv, additionalData: aad, tagLength: 128 }, key, plain);
      await subtle.decrypt({ name: 'AES-GCM', iv, additionalData: aad, tagLength: 128 }, key, sealed);
    }
  };
  // Warm up, then measure.
  started = records - Math.min(records, 32);
  await Promise.all(Array.from({ length: inFlight }, one));
  started = 0;
  const t0 = now();
  await Promise.all(Array.from({ length: inFlight }, one));
  return { part: 'ceiling', amount: records * RECORD, ms: now() - t0 };
}

const PSK: Psk = { identity: new TextEncoder().encode('bench'), secret: new Uint8Array(32).fill(0x42), hash: 'SHA-256' };

/** One connection's bulk transfer, client to server, through the streams transport joined in memory. */
async function bulk(bytes: number, offload: boolean, inFlight: number, crypto: CryptoProvider, now: () => number): Promise<RuntimeMeasurement> {
  const c2s = new TransformStream<Uint8Array, Uint8Array>(undefined, SOCKET_BUFFER, SOCKET_BUFFER);
  const s2c = new TransformStream<Uint8Array, Uint8Array>(undefined, SOCKET_BUFFER, SOCKET_BUFFER);
  const common = { crypto, psks: [PSK], suites: [RUNTIME_SUITE] as const, offload, recordsInFlight: inFlight };
  const client = tlsClientOverStreams({ readable: s2c.readable, writable: c2s.writable }, { ...common, suites: [RUNTIME_SUITE] });
  const server = tlsServerOverStreams({ readable: c2s.readable, writable: s2c.writable }, { ...common, suites: [RUNTIME_SUITE] });
  await Promise.all([client.handshake, server.handshake]);
  const chunk = new Uint8Array(4 * RECORD).fill(0x62);
  const writes = Math.ceil(bytes / chunk.length);
  const total = writes * chunk.length;
  const reader = server.readable.getReader();
  const writer = client.writable.getWriter();
  const t0 = now();
  const reading = (async () => {
    let got = 0;
    while (got < total) {
      const { value, done } = await reader.read();
      if (done) throw new Error(`the stream ended after ${got} of ${total} bytes`);
      got += value.length;
    }
  })();
  for (let i = 0; i < writes; i++) await writer.write(chunk);
  await reading;
  const ms = now() - t0;
  const offloaded = { sealed: client.offloaded.sealed, opened: server.offloaded.opened };
  await writer.close();
  reader.releaseLock();
  await server.writable.close().catch(() => {});
  // The figure is labelled with its path (runtimeLines: offload, cipher), and the pipeline falls back to the
  // connection's own cipher without a word (a key WebCrypto would not import, a record it would not open): every
  // record of the transfer (each write is four full records) must have taken the labelled path, else there is no figure.
  const records = total / RECORD;
  const expected = offload ? records : 0;
  if (offloaded.sealed !== expected || offloaded.opened !== expected) {
    throw new Error(
      `bulk ${offload ? 'with' : 'without'} offload: WebCrypto sealed ${offloaded.sealed} and opened ${offloaded.opened} of the ${records} records, not ${expected} each (the transfer did not take the path it would be labelled with)`,
    );
  }
  return { part: offload ? 'bulk-offload' : 'bulk-sync', amount: total, ms, offloaded };
}

/** Moves 1 MB of varied data through the offloaded pair in writes of odd sizes; throws unless it arrives intact. */
async function verifyTransfer(inFlight: number, crypto: CryptoProvider): Promise<void> {
  const c2s = new TransformStream<Uint8Array, Uint8Array>(undefined, SOCKET_BUFFER, SOCKET_BUFFER);
  const s2c = new TransformStream<Uint8Array, Uint8Array>(undefined, SOCKET_BUFFER, SOCKET_BUFFER);
  const common = { crypto, psks: [PSK], suites: [RUNTIME_SUITE] as const, offload: true, recordsInFlight: inFlight };
  const client = tlsClientOverStreams({ readable: s2c.readable, writable: c2s.writable }, common);
  const server = tlsServerOverStreams({ readable: c2s.readable, writable: s2c.writable }, common);
  await Promise.all([client.handshake, server.handshake]);
  const total = 1_000_003;
  const data = new Uint8Array(total);
  for (let i = 0; i < total; i++) data[i] = (i * 131 + (i >>> 9)) & 0xff;
  const reader = server.readable.getReader();
  const got = new Uint8Array(total);
  const reading = (async () => {
    let at = 0;
    while (at < total) {
      const { value, done } = await reader.read();
      if (done || at + value.length > total) throw new Error('verify: the stream ended early or ran over');
      got.set(value, at);
      at += value.length;
    }
  })();
  const writer = client.writable.getWriter();
  for (let at = 0, n = 1; at < total; at += n, n = (n * 3 + 7) % 70_001) await writer.write(data.subarray(at, Math.min(total, at + n)));
  await reading;
  for (let i = 0; i < total; i++) if (got[i] !== data[i]) throw new Error(`verify: byte ${i} differs after the offloaded transfer`);
  if (client.offloaded.sealed === 0 || server.offloaded.opened === 0) throw new Error('verify: nothing went through the offload');
  await writer.close();
  reader.releaseLock();
  await server.writable.close().catch(() => {});
}

/** psk_dhe_ke x25519 handshakes between two sans-IO connections in memory, one after another. */
async function handshakes(count: number, warmup: number, crypto: CryptoProvider, now: () => number): Promise<RuntimeMeasurement> {
  const once = () => {
    const c = Connection.client({ crypto, psks: [PSK], kexModes: ['psk_dhe_ke'], groups: ['x25519'] });
    const s = Connection.server({ crypto, psks: [PSK] });
    for (let round = 0; round < 8 && !(c.phase === 'connected' && s.phase === 'connected'); round++) {
      const a = c.takeOutput();
      if (a) s.receive(a);
      const b = s.takeOutput();
      if (b) c.receive(b);
    }
    if (c.phase !== 'connected' || s.phase !== 'connected') throw new Error(`handshake did not complete: ${c.error?.message ?? s.error?.message ?? c.stateName}`);
    c.destroy();
    s.destroy();
  };
  for (let i = 0; i < warmup; i++) once();
  const t0 = now();
  for (let i = 0; i < count; i++) once();
  return { part: 'handshakes', amount: count, ms: now() - t0 };
}

/**
 * The same handshakes with WebCrypto key shares (`withWebCryptoKeyShares(crypto)`): each side's pending key
 * agreement is run and answered here, as the transports do (lib/transport/key-agreement.ts).
 */
async function webCryptoHandshakes(count: number, warmup: number, base: CryptoProvider, now: () => number): Promise<RuntimeMeasurement> {
  const crypto = withWebCryptoKeyShares(base);
  const once = async (): Promise<void> => {
    const c = Connection.client({ crypto, psks: [PSK], kexModes: ['psk_dhe_ke'], groups: ['x25519'] });
    const s = Connection.server({ crypto, psks: [PSK] });
    for (let round = 0; round < 8 && !(c.phase === 'connected' && s.phase === 'connected'); round++) {
      const cr = c.pendingKeyAgreement;
      if (cr) await runKeyAgreement(c, cr);
      const a = c.takeOutput();
      if (a) s.receive(a);
      const sr = s.pendingKeyAgreement;
      if (sr) await runKeyAgreement(s, sr);
      const b = s.takeOutput();
      if (b) c.receive(b);
    }
    if (c.phase !== 'connected' || s.phase !== 'connected') throw new Error(`handshake did not complete: ${c.error?.message ?? s.error?.message ?? c.stateName}`);
    c.destroy();
    s.destroy();
  };
  for (let i = 0; i < warmup; i++) await once();
  const t0 = now();
  for (let i = 0; i < count; i++) await once();
  return { part: 'handshakes-webcrypto', amount: count, ms: now() - t0, keySharePath: crypto.keySharePath('x25519') };
}
