/**
 * The RFC 9258 PSK importer: turns one external PSK (EPSK) into one TLS 1.3 PSK per target KDF, each bound to
 * that KDF, the protocol version and an optional context, with the "imp binder" label.
 *
 * Why: RFC 8446 §4.2.11 wants each PSK used with a single hash. A QKD key is just random bits, so a client that
 * offers suites with SHA-256 and with SHA-384 would otherwise have to pick one. Importing derives an
 * independent key for each ("ipskx"), names it with an ImportedIdentity that the server can map back, and
 * changes the binder label so that an imported key can never be confused with the same key used directly.
 *
 * ```ts
 * const psks = importPsk(crypto, { identity: new TextEncoder().encode('key-7'), secret, hash: 'SHA-256' }, { context: 'qkd-tls' });
 * // client: Connection.client({ crypto, psks })                     (two identities: HKDF_SHA256, HKDF_SHA384)
 * // server: Connection.server({ crypto, psks: importedResolver(crypto, [epsk], { context: 'qkd-tls' }) })
 * ```
 *
 * Runtime-neutral: no I/O, no clock, no randomness.
 */
import { copyBytes, toHex, utf8, wipe } from '../codec/bytes.js';
import { Reader } from '../codec/reader.js';
import { Writer } from '../codec/writer.js';
import type { CryptoProvider, HashName } from '../crypto/provider.js';
import { expandLabel } from '../keyschedule/hkdf-label.js';
import { Label } from '../keyschedule/labels.js';
import { hashLength } from '../suites.js';
import { TlsError } from '../errors.js';
import { shortPskProblem, type Psk, type PskRequest, type PskResolver } from './types.js';

/** RFC 9258 §5.1: ImportedIdentity.target_protocol values. Only TLS 1.3 is imported for here. */
export const TargetProtocol = {
  TLS13: 0x0304,
  /** DTLS 1.3 (RFC 9147). Recognised, so that such identities are ignored, never derived. */
  DTLS13: 0xfefc,
} as const;

/** RFC 9258 §10: the TLS KDF Identifiers registry. */
export const TargetKdf = {
  HKDF_SHA256: 0x0001,
  HKDF_SHA384: 0x0002,
} as const;

export type TargetKdfName = keyof typeof TargetKdf;

/** The hash of each target KDF: it sets the length L of ipskx and the hash of the binder and the handshake. */
export const TARGET_KDF_HASH = {
  HKDF_SHA256: 'SHA-256',
  HKDF_SHA384: 'SHA-384',
} as const satisfies Record<TargetKdfName, HashName>;

/** Both target KDFs, in the order a client offers them by default. */
export const ALL_TARGET_KDFS: readonly TargetKdfName[] = ['HKDF_SHA256', 'HKDF_SHA384'];

/** The target KDF whose hash is `hash` (each TLS 1.3 cipher suite names one, RFC 9258 §5.1). */
export function targetKdfForHash(hash: HashName): TargetKdfName {
  return hash === 'SHA-256' ? 'HKDF_SHA256' : 'HKDF_SHA384';
}

/**
 * The target KDFs needed for a list of cipher-suite hashes, without duplicates, in order (RFC 9258 §5.1:
 * "Endpoints SHOULD generate a compatible ipskx for each target ciphersuite they offer").
 */
export function targetKdfsForHashes(hashes: readonly HashName[]): TargetKdfName[] {
  const out: TargetKdfName[] = [];
  for (const h of hashes) {
    const k = targetKdfForHash(h);
    if (!out.includes(k)) out.push(k);
  }
  return out;
}

/**
 * RFC 9258 §5.1:
 * ```
 * struct {
 *    opaque external_identity<1...2^16-1>;
 *    opaque context<0..2^16-1>;
 *    uint16 target_protocol;
 *    uint16 target_kdf;
 * } ImportedIdentity;
 * ```
 */
export interface ImportedIdentity {
  readonly externalIdentity: Uint8Array;
  readonly context: Uint8Array;
  readonly targetProtocol: number;
  readonly targetKdf: number;
}

/** The most bytes a PSK identity can have on the wire (RFC 8446 §4.2.11: opaque identity<1..2^16-1>). */
export const MAX_IDENTITY_LENGTH = 0xffff;

/**
 * Serialises an ImportedIdentity (RFC 9258 §5.1). Throws a RangeError for an empty or over-long external
 * identity, and for a result longer than a PSK identity can be ("the PSK Importer interface SHOULD reject any
 * ImportedIdentity that exceeds this size").
 */
export function encodeImportedIdentity(id: ImportedIdentity): Uint8Array {
  if (id.externalIdentity.length < 1 || id.externalIdentity.length > 0xffff) {
    throw new RangeError('ImportedIdentity: external_identity must be 1..65535 bytes (RFC 9258 §5.1)');
  }
  if (id.context.length > 0xffff) throw new RangeError('ImportedIdentity: context must be at most 65535 bytes (RFC 9258 §5.1)');
  for (const [name, v] of [['target_protocol', id.targetProtocol], ['target_kdf', id.targetKdf]] as const) {
    if (!Number.isInteger(v) || v < 0 || v > 0xffff) throw new RangeError(`ImportedIdentity: ${name} must be a uint16`);
  }
  const size = 2 + id.externalIdentity.length + 2 + id.context.length + 4;
  if (size > MAX_IDENTITY_LENGTH) {
    throw new RangeError(`ImportedIdentity: ${size} bytes do not fit in a PSK identity (at most ${MAX_IDENTITY_LENGTH}, RFC 9258 §5.1)`);
  }
  return new Writer(size).vec16(id.externalIdentity).vec16(id.context).u16(id.targetProtocol).u16(id.targetKdf).finish();
}

/**
 * Parses an ImportedIdentity; undefined when the bytes are not one (e.g. a plain external PSK identity that
 * sits beside imported ones). The returned fields are views into `bytes`.
 */
export function decodeImportedIdentity(bytes: Uint8Array): ImportedIdentity | undefined {
  try {
    const r = new Reader(bytes);
    const externalIdentity = r.vec16('external_identity', 1);
    const context = r.vec16('context');
    const targetProtocol = r.u16('target_protocol');
    const targetKdf = r.u16('target_kdf');
    r.expectEnd('ImportedIdentity');
    return { externalIdentity, context, targetProtocol, targetKdf };
  } catch {
    return undefined;
  }
}

/** An external PSK as the importer takes it: the base key, its external identity and its hash. */
export interface ExternalPsk {
  /** External Identity: names the EPSK (for a QKD key, its key ID). */
  readonly identity: Uint8Array;
  /** Base Key: the secret. Left untouched (the caller wipes it). */
  readonly secret: Uint8Array;
  /**
   * The hash associated with the EPSK, which drives the derivation (RFC 9258 §5.1). Default SHA-256, as the
   * RFC says for an EPSK without one.
   */
  readonly hash?: HashName;
  /** A name for logs (e.g. the QKD key ID); copied to the imported PSKs. Never the secret. */
  readonly label?: string;
}

export interface ImportOptions {
  /**
   * ImportedIdentity.context (RFC 9258 §5.1, Appendix B): bytes, or text sent as UTF-8. It travels in clear,
   * so put no secret in it; putting the roles of both peers in it defeats Selfie-style reflection. Default empty.
   */
  readonly context?: Uint8Array | string;
  /** The target KDFs to import for, in order. Default: HKDF_SHA256 and HKDF_SHA384. */
  readonly targetKdfs?: readonly TargetKdfName[];
  /**
   * DANGEROUS, for testing other stacks only: import EPSKs shorter than 16 bytes. RFC 9257 §6: "Each PSK ... MUST
   * be at least 128 bits long"; an imported PSK (ipskx) has no more entropy than its EPSK, so the connection's
   * own length check cannot see a short one. By default {@link importPsk} throws a TypeError for one, and a
   * server's derivation ({@link deriveAcceptedImports}, {@link importedResolver}) fails the handshake
   * (PskTooShort, handshake_failure).
   */
  readonly dangerouslyAllowShortPsks?: boolean;
}

/**
 * RFC 9258 §5.1, for one ImportedIdentity:
 * ```
 * epskx = HKDF-Extract(0, epsk)
 * ipskx = HKDF-Expand-Label(epskx, "derived psk", Hash(ImportedIdentity), L)
 * ```
 * The HKDF hash is the EPSK's — "It is not the hash function associated with ImportedIdentity.target_kdf" —
 * while L is the output length of the target KDF's hash. The label prefix is "tls13 " (target protocol TLS 1.3).
 * The bare derivation: it does not check the EPSK's length (RFC 9257 §6, at least 128 bits), as
 * {@link importPsk} and the server's {@link deriveAcceptedImports} do.
 */
export function deriveImportedPsk(
  crypto: CryptoProvider,
  epsk: { readonly secret: Uint8Array; readonly hash?: HashName },
  importedIdentity: Uint8Array,
  targetHash: HashName,
): Uint8Array {
  const epskHash = epsk.hash ?? 'SHA-256';
  const base = copyBytes(epsk.secret);
  const epskx = crypto.hkdfExtract(epskHash, new Uint8Array(hashLength(epskHash)), base);
  wipe(base);
  const ipskx = expandLabel(crypto, epskHash, epskx, Label.derivedPsk, crypto.hash(epskHash).digest(importedIdentity), hashLength(targetHash));
  wipe(epskx);
  return ipskx;
}

/**
 * Imports one EPSK for each target KDF (RFC 9258 §5.1): one {@link Psk} per KDF, whose identity is the
 * serialised ImportedIdentity, whose secret is ipskx, whose hash is the target KDF's, and whose binder uses
 * "imp binder" (§5.2). The EPSK's secret is not modified; the caller wipes it when it is no longer needed.
 */
export function importPsk(crypto: CryptoProvider, epsk: ExternalPsk, options: ImportOptions = {}): Psk[] {
  const context = contextBytes(options.context);
  const kdfs = options.targetKdfs ?? ALL_TARGET_KDFS;
  if (kdfs.length === 0) throw new TypeError('importPsk: at least one target KDF is required');
  const problem = options.dangerouslyAllowShortPsks ? undefined : shortPskProblem(epsk);
  if (problem) throw new TypeError(`importPsk: the EPSK: ${problem}`);
  return kdfs.map((kdf) => importFor(crypto, epsk, context, kdf));
}

function importFor(crypto: CryptoProvider, epsk: ExternalPsk, context: Uint8Array, kdf: TargetKdfName): Psk {
  const identity = encodeImportedIdentity({
    externalIdentity: epsk.identity,
    context,
    targetProtocol: TargetProtocol.TLS13,
    targetKdf: TargetKdf[kdf],
  });
  const hash = TARGET_KDF_HASH[kdf];
  const secret = deriveImportedPsk(crypto, epsk, identity, hash);
  return { identity, secret, hash, binderKind: 'imported', ...(epsk.label !== undefined ? { label: epsk.label } : {}) };
}

/** What the server accepts among received imported identities. */
export interface ImportAcceptOptions {
  /** The context the server expects (must equal the received ImportedIdentity.context). Default empty. */
  readonly context?: Uint8Array | string;
  /** Target KDFs the server accepts. Default: both. */
  readonly targetKdfs?: readonly TargetKdfName[];
  /** As {@link ImportOptions.dangerouslyAllowShortPsks}. */
  readonly dangerouslyAllowShortPsks?: boolean;
}

/** One received identity, read as an ImportedIdentity that this server accepts. */
export interface AcceptedImport {
  /** Index of the identity in the ClientHello. */
  readonly index: number;
  readonly imported: ImportedIdentity;
  readonly targetKdf: TargetKdfName;
}

/**
 * Reads the received identities as ImportedIdentities and keeps those for TLS 1.3, an accepted target KDF and
 * the expected context; any other identity — another target protocol or KDF, another context, or not an
 * ImportedIdentity at all — is ignored (it may be a plain external PSK, handled elsewhere).
 *
 * Returns the accepted entries and the distinct external identities they name, in order of first appearance:
 * two identities naming the same EPSK (one per target KDF) need it looked up only once.
 */
export function acceptImportedIdentities(
  identities: readonly Uint8Array[],
  options: ImportAcceptOptions = {},
): { accepted: AcceptedImport[]; externalIdentities: Uint8Array[] } {
  const context = contextBytes(options.context);
  const kdfs = options.targetKdfs ?? ALL_TARGET_KDFS;
  const accepted: AcceptedImport[] = [];
  const externalIdentities: Uint8Array[] = [];
  const seen = new Set<string>();
  identities.forEach((bytes, index) => {
    const imported = decodeImportedIdentity(bytes);
    if (!imported || imported.targetProtocol !== TargetProtocol.TLS13) return;
    const targetKdf = kdfs.find((k) => TargetKdf[k] === imported.targetKdf);
    if (!targetKdf || !bytesEqual(imported.context, context)) return;
    accepted.push({ index, imported, targetKdf });
    const key = toHex(imported.externalIdentity);
    if (!seen.has(key)) {
      seen.add(key);
      externalIdentities.push(imported.externalIdentity);
    }
  });
  return { accepted, externalIdentities };
}

/**
 * Server side: derives the imported PSK of each accepted identity from the EPSKs found for the external
 * identities (`epsks[i]` for `externalIdentities[i]` of {@link acceptImportedIdentities}). Entries of the result
 * follow the received identities; identities not accepted, or whose EPSK was not found or is shorter than RFC
 * 9257 §6 allows (unless `dangerouslyAllowShortPsks`), stay undefined; PskTooShort when only short ones were found.
 */
export function deriveAcceptedImports(
  crypto: CryptoProvider,
  identityCount: number,
  accepted: readonly AcceptedImport[],
  externalIdentities: readonly Uint8Array[],
  epsks: readonly (ExternalPsk | undefined)[],
  options: { readonly dangerouslyAllowShortPsks?: boolean } = {},
): (Psk | undefined)[] {
  const out: (Psk | undefined)[] = new Array(identityCount).fill(undefined);
  const byExternal = new Map(externalIdentities.map((e, i) => [toHex(e), epsks[i]]));
  let short: string | undefined;
  for (const a of accepted) {
    const epsk = byExternal.get(toHex(a.imported.externalIdentity));
    if (!epsk) continue;
    // RFC 9257 §6: the EPSK is at least 128 bits long (ipskx would hide a shorter one from the connection's
    // check). A short one is passed over, as the server passes over a short PSK (lib/handshake/server.ts,
    // selectSuiteAndPsk); when only short ones were found: PskTooShort, handshake_failure.
    const problem = options.dangerouslyAllowShortPsks ? undefined : shortPskProblem(epsk);
    if (problem) {
      short ??= `the EPSK of imported identity #${a.index}: ${problem}`;
      continue;
    }
    // RFC 9258 §5.1: ipskx = HKDF-Expand-Label(epskx, "derived psk", Hash(ImportedIdentity), L), of the ImportedIdentity
    // received. Its external identity is the one the client sent, not the identity of the EPSK found: a lookup function
    // may match external identities loosely (key IDs are UUIDs, whose hex digits have two cases), and deriving under
    // its EPSK's own spelling gave another ipskx, a binder that never verified (decrypt_error).
    out[a.index] = importFor(crypto, { ...epsk, identity: a.imported.externalIdentity }, a.imported.context, a.targetKdf);
  }
  if (short !== undefined && out.every((p) => p === undefined)) throw new TlsError('PskTooShort', short);
  return out;
}

/**
 * A synchronous server resolver for imported PSKs (for `Connection.server({ psks })`): maps each received
 * ImportedIdentity back to its EPSK (by external identity, from a list or a lookup function) and derives the
 * PSK for its target KDF; the handshake then picks the one whose hash fits the suite it chose. Identities that
 * are not acceptable imported identities fall back to `plain` (plain external PSKs offered side by side), if given.
 */
export function importedResolver(
  crypto: CryptoProvider,
  epsks: readonly ExternalPsk[] | ((externalIdentity: Uint8Array) => ExternalPsk | undefined),
  options: ImportAcceptOptions & { readonly plain?: readonly Psk[] } = {},
): PskResolver {
  const lookup =
    typeof epsks === 'function' ? epsks : (id: Uint8Array) => epsks.find((e) => bytesEqual(e.identity, id));
  return (request: PskRequest) => {
    const { accepted, externalIdentities } = acceptImportedIdentities(request.identities, options);
    const found = deriveAcceptedImports(crypto, request.identities.length, accepted, externalIdentities, externalIdentities.map(lookup), options);
    const plain = options.plain;
    if (plain) {
      request.identities.forEach((id, i) => {
        // RFC 9258 §4: "Endpoints which import external keys MUST NOT use the keys that are input to the import
        // process for any purpose other than the importer": a key this resolver imports is never used directly.
        if (found[i] === undefined && !lookup(id)) found[i] = plain.find((p) => bytesEqual(p.identity, id));
      });
    }
    return found;
  };
}

/** Context as bytes (a string is UTF-8). */
export function contextBytes(context: Uint8Array | string | undefined): Uint8Array {
  if (context === undefined) return new Uint8Array(0);
  return typeof context === 'string' ? utf8(context) : context;
}

/** Identities are public: an ordinary comparison will do. */
function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}
