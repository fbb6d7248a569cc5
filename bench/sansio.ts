/**
 * Benchmarks without sockets: what the sans-IO core costs by itself.
 *
 * - Handshakes/s of the bare state machines: a client and a server {@link Connection} handing each other
 *   bytes in memory until both are connected (the whole handshake of both endpoints, as one unit).
 * - Record protection MB/s next to the raw AEAD of the same provider (the ceiling the record layer can reach):
 *   raw seal/open of a 16 KiB + 1 byte TLSInnerPlaintext versus RecordProtection.sealInto/open of 16 KiB of
 *   application data, and a whole connection (write on one side, receive on the other) versus raw seal+open.
 *   Both sides of a seal comparison write into a buffer they keep (Aead.sealInto when the provider has it),
 *   as the connection does: a fresh 16 KiB output per record would put an allocation into the ceiling.
 */
import { ContentType } from '../lib/codec/enums.js';
import { Connection } from '../lib/connection/connection.js';
import type { Aead, CryptoProvider } from '../lib/crypto/provider.js';
import { RecordProtection } from '../lib/record/protection.js';
import { Deframer, MAX_PLAINTEXT, type RawRecord } from '../lib/record/deframer.js';
import { SUITES, type SupportedSuiteName } from '../lib/suites.js';
import { benchPsk, syncRate, wallRate, type BenchClock, type KexConfig } from './common.js';

/** Client and server connections taken through a whole handshake in memory. */
export function handshakePair(crypto: CryptoProvider, cfg: KexConfig, suite: SupportedSuiteName = 'TLS_AES_128_GCM_SHA256'): { client: Connection; server: Connection } {
  const psk = benchPsk(SUITES[suite].hash);
  const common = { crypto, suites: [suite], kexModes: [cfg.kex], ...(cfg.group ? { groups: [cfg.group] } : {}) };
  const client = Connection.client({ ...common, psks: [psk] });
  const server = Connection.server({ ...common, psks: [psk] });
  for (let i = 0; i < 8 && (client.hasOutput || server.hasOutput); i++) {
    const c = client.takeOutput();
    if (c) server.receive(c);
    const s = server.takeOutput();
    if (s) client.receive(s);
  }
  if (client.phase !== 'connected' || server.phase !== 'connected') {
    throw new Error(`in-memory handshake did not complete: ${client.error?.message ?? server.error?.message ?? `${client.phase}/${server.phase}`}`);
  }
  client.takeEvents();
  server.takeEvents();
  return { client, server };
}

/** Handshakes per CPU-second of the bare state machines (client and server together). */
export function sansioHandshakeRate(crypto: CryptoProvider, cfg: KexConfig, durationMs: number, clock?: BenchClock): number {
  return syncRate(
    () => {
      const { client, server } = handshakePair(crypto, cfg);
      client.destroy();
      server.destroy();
    },
    durationMs,
    clock,
  );
}

export interface RecordRates {
  /** Raw AEAD MB/s on a TLSInnerPlaintext of `size` + 1 bytes. */
  readonly rawSeal: number;
  readonly rawOpen: number;
  /** RecordProtection MB/s on `size` bytes of application data per record. */
  readonly recordSeal: number;
  readonly recordOpen: number;
  /** Connection.write on one side + Connection.receive on the other, MB/s of application data. */
  readonly connection: number;
  /** 1 / (1/rawSeal + 1/rawOpen): the raw ceiling of sealing and opening the same bytes in one thread. */
  readonly rawSealOpen: number;
}

/**
 * The raw AEAD ceiling of a provider and suite, as wall-clock MB/s: the slower of seal and open of a 16 KiB
 * + 1 byte inner plaintext. Measured next to a bulk transfer, under the same machine load, to judge it.
 */
export function rawAeadCeiling(crypto: CryptoProvider, suiteName: SupportedSuiteName, durationMs: number): number {
  const suite = SUITES[suiteName];
  const aead = crypto.aead(suite.aead, new Uint8Array(suite.keyLength).fill(0x5a));
  const nonce = new Uint8Array(suite.ivLength).fill(7);
  const inner = new Uint8Array(MAX_PLAINTEXT + 1).fill(0x61);
  const aad = Uint8Array.of(ContentType.application_data, 0x03, 0x03, (inner.length + 16) >>> 8, (inner.length + 16) & 0xff);
  const sealed = aead.seal(nonce, aad, inner);
  const seal = wallRate(rawSealer(aead, nonce, aad, inner), durationMs);
  const open = wallRate(() => {
    if (aead.open(nonce, aad, sealed) === null) throw new Error('raw AEAD open failed');
  }, durationMs);
  aead.destroy();
  return (Math.min(seal, open) * MAX_PLAINTEXT) / 1e6;
}

/** One raw seal of `plaintext`, into a kept buffer when the provider can (as RecordProtection.sealInto does). */
function rawSealer(aead: Aead, nonce: Uint8Array, aad: Uint8Array, plaintext: Uint8Array): () => void {
  const sealInto = aead.sealInto?.bind(aead);
  if (!sealInto) return () => aead.seal(nonce, aad, plaintext);
  const out = new Uint8Array(plaintext.length + aead.tagLength);
  const parts = [plaintext];
  return () => sealInto(nonce, aad, parts, out, 0);
}

/** Records of this many bytes are pre-sealed for the open measurements (sequence numbers then restart). */
const OPEN_RING = 32;

/** Record-layer throughput for one provider, suite and record size (MB = 10^6 bytes). */
export function recordRates(crypto: CryptoProvider, suiteName: SupportedSuiteName, size: number, durationMs: number, withConnection: boolean): RecordRates {
  const suite = SUITES[suiteName];
  const key = new Uint8Array(suite.keyLength).fill(0x5a);
  const iv = new Uint8Array(suite.ivLength).fill(0xa5);
  const mb = (opsPerSecond: number) => (opsPerSecond * size) / 1e6;

  // Raw AEAD: what the record layer calls per record, with nothing around it.
  const aead = crypto.aead(suite.aead, key);
  const nonce = new Uint8Array(suite.ivLength).fill(7);
  const inner = new Uint8Array(size + 1).fill(0x61);
  inner[size] = ContentType.application_data;
  const aad = Uint8Array.of(ContentType.application_data, 0x03, 0x03, (size + 17) >>> 8, (size + 17) & 0xff);
  const sealed = aead.seal(nonce, aad, inner);
  const rawSeal = mb(syncRate(rawSealer(aead, nonce, aad, inner), durationMs));
  const rawOpen = mb(
    syncRate(() => {
      if (aead.open(nonce, aad, sealed) === null) throw new Error('raw AEAD open failed');
    }, durationMs),
  );
  aead.destroy();

  // Record protection.
  const content = inner.subarray(0, size);
  const writer = new RecordProtection(crypto, suite, key, iv);
  const record = new Uint8Array(size + writer.overhead);
  const recordSeal = mb(syncRate(() => writer.sealInto(ContentType.application_data, [content], record, 0), durationMs));
  writer.destroy();
  const ringWriter = new RecordProtection(crypto, suite, key, iv);
  const deframer = new Deframer();
  const ring: RawRecord[] = [];
  for (let i = 0; i < OPEN_RING; i++) {
    deframer.push(ringWriter.seal(ContentType.application_data, content));
    ring.push(deframer.next()!);
  }
  ringWriter.destroy();
  const reader = new RecordProtection(crypto, suite, key, iv);
  let at = 0;
  const recordOpen = mb(
    syncRate(() => {
      if (at === OPEN_RING) {
        at = 0;
        reader.dangerousSetSequence(0, 0);
      }
      reader.open(ring[at++]);
    }, durationMs),
  );
  reader.destroy();

  let connection = 0;
  if (withConnection) {
    // A connected pair; each call moves 8 records' worth of data from the client to the server.
    const { client, server } = handshakePair(crypto, { kex: 'psk_ke', group: null }, suiteName);
    const data = new Uint8Array(8 * size).fill(0x62);
    let received = 0;
    const perCall = syncRate(() => {
      client.write(data);
      for (const chunk of client.takeOutputChunks()) server.receive(chunk);
      for (const ev of server.takeEvents()) if (ev.type === 'data') received += ev.data.length;
    }, durationMs);
    if (server.phase !== 'connected' || received === 0) throw new Error(`connection benchmark failed: ${server.error?.message ?? 'no data arrived'}`);
    connection = (perCall * data.length) / 1e6;
    client.destroy();
    server.destroy();
  }
  return { rawSeal, rawOpen, recordSeal, recordOpen, connection, rawSealOpen: 1 / (1 / rawSeal + 1 / rawOpen) };
}

export { MAX_PLAINTEXT };
