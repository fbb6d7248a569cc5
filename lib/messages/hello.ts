/**
 * ClientHello, ServerHello and HelloRetryRequest (RFC 8446 §4.1.2–§4.1.4), decoded into typed fields with
 * their original bytes kept for the transcript.
 */
import { ExtensionType, HandshakeType, ProtocolVersion } from '../codec/enums.js';
import { Reader } from '../codec/reader.js';
import { Writer } from '../codec/writer.js';
import { equalConstantTime } from '../codec/bytes.js';
import { TlsError } from '../errors.js';
import {
  Extensions,
  readAlpnList,
  readClientKeyShares,
  readGroupList,
  readHrrKeyShare,
  readOfferedPsks,
  readPskModes,
  readRecordSizeLimit,
  readServerKeyShare,
  readServerName,
  readVersionList,
  writeExtensions,
  type Extension,
  type KeyShareEntry,
  type OfferedPsks,
} from './extensions.js';

/** §4.1.3: the ServerHello.random that marks a HelloRetryRequest (SHA-256 of "HelloRetryRequest"). */
export const HELLO_RETRY_REQUEST_RANDOM = new Uint8Array([
  0xcf, 0x21, 0xad, 0x74, 0xe5, 0x9a, 0x61, 0x11, 0xbe, 0x1d, 0x8c, 0x02, 0x1e, 0x65, 0xb8, 0x91, 0xc2, 0xa2, 0x11, 0x16, 0x7a,
  0xbb, 0x8c, 0x5e, 0x07, 0x9e, 0x09, 0xe2, 0xc8, 0xa8, 0x33, 0x9c,
]);

export interface ClientHello {
  /** The whole encoded message (type, length, body). */
  readonly raw: Uint8Array;
  readonly legacyVersion: number;
  readonly random: Uint8Array;
  readonly sessionId: Uint8Array;
  readonly cipherSuites: readonly number[];
  readonly extensions: Extensions;
  readonly supportedVersions?: readonly number[];
  readonly supportedGroups?: readonly number[];
  readonly keyShares?: readonly KeyShareEntry[];
  readonly pskModes?: readonly number[];
  readonly psks?: OfferedPsks;
  readonly earlyData: boolean;
  readonly cookie?: Uint8Array;
  readonly serverName?: string;
  readonly alpn?: readonly string[];
  readonly recordSizeLimit?: number;
  /** Length of the truncated ClientHello (§4.2.11.2): everything before the binders list. */
  readonly truncatedLength: number;
}

/** Decodes a ClientHello body. `raw` is the whole message including its 4-byte header. */
export function decodeClientHello(raw: Uint8Array): ClientHello {
  const r = new Reader(raw, 4);
  const legacyVersion = r.u16('legacy_version');
  const random = r.bytes(32, 'random');
  const sessionId = r.vec8('legacy_session_id');
  if (sessionId.length > 32) throw new TlsError('DecodeBadLength', 'legacy_session_id longer than 32 bytes');
  const cipherSuites: number[] = [];
  r.scope16('cipher_suites', (s) => s.each((c) => void cipherSuites.push(c.u16())), 2);
  const compression = r.vec8('legacy_compression_methods', 1);
  // §4.1.2: for TLS 1.3 this vector MUST contain exactly one byte, set to zero.
  if (compression.length !== 1 || compression[0] !== 0) {
    throw new TlsError('CompressionMethodsInvalid', 'legacy_compression_methods must be [null] (RFC 8446 §4.1.2)');
  }
  // A ClientHello without extensions is a pre-TLS-1.3 client: no supported_versions, so protocol_version below.
  const extensions = r.atEnd ? Extensions.empty() : Extensions.read(r, 'CH');
  r.expectEnd('ClientHello');

  // §4.2.11: pre_shared_key MUST be the last extension in the ClientHello.
  if (extensions.has(ExtensionType.pre_shared_key) && extensions.lastType !== ExtensionType.pre_shared_key) {
    throw new TlsError('PskExtensionNotLast', 'pre_shared_key is not the last extension (RFC 8446 §4.2.11)');
  }
  const E = ExtensionType;
  const psks = extensions.decode(E.pre_shared_key, readOfferedPsks);
  let truncatedLength = raw.length;
  if (psks) {
    let bindersLength = 2;
    for (const b of psks.binders) bindersLength += 1 + b.length;
    truncatedLength = raw.length - bindersLength;
  }
  const earlyDataBody = extensions.get(E.early_data);
  if (earlyDataBody && earlyDataBody.length !== 0) throw new TlsError('DecodeTrailingBytes', 'early_data in ClientHello must be empty');
  return {
    raw,
    legacyVersion,
    random,
    sessionId,
    cipherSuites,
    extensions,
    supportedVersions: extensions.decode(E.supported_versions, readVersionList),
    supportedGroups: extensions.decode(E.supported_groups, readGroupList),
    keyShares: extensions.decode(E.key_share, readClientKeyShares),
    pskModes: extensions.decode(E.psk_key_exchange_modes, readPskModes),
    psks,
    earlyData: earlyDataBody !== undefined,
    cookie: extensions.decode(E.cookie, (c) => c.vec16('cookie', 1)),
    serverName: extensions.decode(E.server_name, readServerName),
    alpn: extensions.decode(E.application_layer_protocol_negotiation, readAlpnList),
    recordSizeLimit: extensions.decode(E.record_size_limit, readRecordSizeLimit),
    truncatedLength,
  };
}

export interface ClientHelloFields {
  readonly random: Uint8Array;
  readonly sessionId: Uint8Array;
  readonly cipherSuites: readonly number[];
  /** Every extension but pre_shared_key, in order. */
  readonly extensions: readonly Extension[];
  /** The PSK identities; binders are filled in later with {@link patchBinders}. */
  readonly psks?: { readonly identities: readonly { identity: Uint8Array; obfuscatedTicketAge: number }[]; readonly binderLengths: readonly number[] };
}

/** Encodes a ClientHello with zeroed binders; returns the message and the truncated length (§4.2.11.2). */
export function encodeClientHello(f: ClientHelloFields): { raw: Uint8Array; truncatedLength: number } {
  const w = new Writer(512);
  w.u8(HandshakeType.client_hello).vec24((b) => {
    b.u16(ProtocolVersion.TLSv1_2).bytes(f.random).vec8(f.sessionId);
    b.vec16((s) => {
      for (const c of f.cipherSuites) s.u16(c);
    });
    b.vec8(new Uint8Array([0]));
    const list: Extension[] = [...f.extensions];
    if (f.psks) {
      const pw = new Writer(128);
      pw.vec16((i) => {
        for (const id of f.psks!.identities) i.vec16(id.identity).u32(id.obfuscatedTicketAge);
      });
      pw.vec16((bs) => {
        for (const n of f.psks!.binderLengths) bs.vec8(new Uint8Array(n));
      });
      list.push({ type: ExtensionType.pre_shared_key, data: pw.finish() });
    }
    writeExtensions(b, list);
  });
  const raw = w.finish();
  let bindersLength = 0;
  if (f.psks) {
    bindersLength = 2;
    for (const n of f.psks.binderLengths) bindersLength += 1 + n;
  }
  return { raw, truncatedLength: raw.length - bindersLength };
}

/** Writes `binders` into the binders list at the end of an encoded ClientHello (in place). */
export function patchBinders(raw: Uint8Array, truncatedLength: number, binders: readonly Uint8Array[]): void {
  let at = truncatedLength + 2;
  for (const b of binders) {
    if (raw[at] !== b.length) throw new RangeError('binder length differs from the placeholder');
    raw.set(b, at + 1);
    at += 1 + b.length;
  }
  if (at !== raw.length) throw new RangeError('binders do not fill the binders list');
}

export interface ServerHello {
  readonly raw: Uint8Array;
  readonly isHelloRetryRequest: boolean;
  readonly legacyVersion: number;
  readonly random: Uint8Array;
  readonly sessionIdEcho: Uint8Array;
  readonly cipherSuite: number;
  readonly extensions: Extensions;
  readonly supportedVersion?: number;
  /** ServerHello: the server's key share. */
  readonly keyShare?: KeyShareEntry;
  /** HelloRetryRequest: the group the server asks for. */
  readonly selectedGroup?: number;
  readonly selectedIdentity?: number;
  readonly cookie?: Uint8Array;
}

/** Decodes a ServerHello or HelloRetryRequest (told apart by the random, §4.1.3). */
export function decodeServerHello(raw: Uint8Array): ServerHello {
  const r = new Reader(raw, 4);
  const legacyVersion = r.u16('legacy_version');
  const random = r.bytes(32, 'random');
  const sessionIdEcho = r.vec8('legacy_session_id_echo');
  if (sessionIdEcho.length > 32) throw new TlsError('DecodeBadLength', 'legacy_session_id_echo longer than 32 bytes');
  const cipherSuite = r.u16('cipher_suite');
  const compression = r.u8('legacy_compression_method');
  const isHelloRetryRequest = equalConstantTime(random, HELLO_RETRY_REQUEST_RANDOM);
  // A TLS 1.2 ServerHello may have no extensions at all: leave it to the version check.
  const extensions = r.atEnd ? Extensions.empty() : Extensions.read(r, isHelloRetryRequest ? 'HRR' : 'SH');
  r.expectEnd('ServerHello');
  if (compression !== 0) throw new TlsError('CompressionMethodsInvalid', 'legacy_compression_method must be 0 (RFC 8446 §4.1.3)');
  const E = ExtensionType;
  return {
    raw,
    isHelloRetryRequest,
    legacyVersion,
    random,
    sessionIdEcho,
    cipherSuite,
    extensions,
    supportedVersion: extensions.decode(E.supported_versions, (v) => v.u16('selected_version')),
    keyShare: isHelloRetryRequest ? undefined : extensions.decode(E.key_share, readServerKeyShare),
    selectedGroup: isHelloRetryRequest ? extensions.decode(E.key_share, readHrrKeyShare) : undefined,
    selectedIdentity: extensions.decode(E.pre_shared_key, (p) => p.u16('selected_identity')),
    cookie: extensions.decode(E.cookie, (c) => c.vec16('cookie', 1)),
  };
}

export interface ServerHelloFields {
  readonly random: Uint8Array;
  readonly sessionIdEcho: Uint8Array;
  readonly cipherSuite: number;
  readonly extensions: readonly Extension[];
}

export function encodeServerHello(f: ServerHelloFields): Uint8Array {
  const w = new Writer(160);
  w.u8(HandshakeType.server_hello).vec24((b) => {
    b.u16(ProtocolVersion.TLSv1_2).bytes(f.random).vec8(f.sessionIdEcho).u16(f.cipherSuite).u8(0);
    writeExtensions(b, f.extensions);
  });
  return w.finish();
}
