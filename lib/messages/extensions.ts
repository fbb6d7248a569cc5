/**
 * Extension blocks (RFC 8446 §4.2): parsed once into an ordered list, with the two block-level rules —
 * no duplicates (§4.2: illegal_parameter) and only the extensions allowed in that message (§4.2 table:
 * illegal_parameter for a known extension in the wrong message) — and typed decoders for each extension body.
 */
import { ExtensionType, nameOf } from '../codec/enums.js';
import { Reader } from '../codec/reader.js';
import { Writer } from '../codec/writer.js';
import { TlsError } from '../errors.js';

export interface Extension {
  readonly type: number;
  readonly data: Uint8Array;
}

/** Where an extension block sits, for the §4.2 "which message may carry which extension" table. */
export type ExtensionContext = 'CH' | 'SH' | 'HRR' | 'EE' | 'NST';

const E = ExtensionType;
/** RFC 8446 §4.2 table (TLS 1.3 column) plus RFC 8449 and RFC 7301, for the extensions this stack knows. */
const ALLOWED: Readonly<Record<number, readonly ExtensionContext[]>> = {
  [E.server_name]: ['CH', 'EE'],
  [E.max_fragment_length]: ['CH', 'EE'],
  [E.status_request]: ['CH'],
  [E.supported_groups]: ['CH', 'EE'],
  [E.signature_algorithms]: ['CH'],
  [E.use_srtp]: ['CH', 'EE'],
  [E.heartbeat]: ['CH', 'EE'],
  [E.application_layer_protocol_negotiation]: ['CH', 'EE'],
  [E.signed_certificate_timestamp]: ['CH'],
  [E.client_certificate_type]: ['CH', 'EE'],
  [E.server_certificate_type]: ['CH', 'EE'],
  [E.padding]: ['CH'],
  [E.record_size_limit]: ['CH', 'EE'],
  [E.pre_shared_key]: ['CH', 'SH'],
  [E.early_data]: ['CH', 'EE', 'NST'],
  [E.supported_versions]: ['CH', 'SH', 'HRR'],
  [E.cookie]: ['CH', 'HRR'],
  [E.psk_key_exchange_modes]: ['CH'],
  [E.certificate_authorities]: ['CH'],
  [E.post_handshake_auth]: ['CH'],
  [E.signature_algorithms_cert]: ['CH'],
  [E.key_share]: ['CH', 'SH', 'HRR'],
};

/** An ordered extension block with lookup by type. */
export class Extensions {
  private constructor(readonly list: readonly Extension[]) {}

  static empty(): Extensions {
    return new Extensions([]);
  }

  /**
   * Parses `extensions<min..2^16-1>` from `r`, applying the duplicate and allowed-in-message rules.
   * Unknown extension types are kept (callers decide: ignored in ClientHello, unsupported_extension elsewhere).
   */
  static read(r: Reader, context: ExtensionContext): Extensions {
    const list: Extension[] = [];
    const seen = new Set<number>();
    r.scope16('extensions', (b) => {
      b.each((e) => {
        const type = e.u16('extension type');
        const data = e.vec16('extension data');
        if (seen.has(type)) {
          throw new TlsError('DuplicateExtension', `${nameOf(ExtensionType, type)} appears twice (RFC 8446 §4.2)`);
        }
        seen.add(type);
        const allowed = ALLOWED[type];
        if (allowed && !allowed.includes(context)) {
          throw new TlsError('ExtensionNotAllowedInMessage', `${nameOf(ExtensionType, type)} is not allowed in ${context} (RFC 8446 §4.2)`);
        }
        list.push({ type, data });
      });
    });
    return new Extensions(list);
  }

  get(type: number): Uint8Array | undefined {
    for (const e of this.list) if (e.type === type) return e.data;
    return undefined;
  }
  has(type: number): boolean {
    return this.get(type) !== undefined;
  }
  /** The type of the last extension, or undefined for an empty block. */
  get lastType(): number | undefined {
    return this.list.length ? this.list[this.list.length - 1].type : undefined;
  }

  /** Decodes extension `type` with `decode`, which must consume the body exactly. */
  decode<T>(type: number, decode: (r: Reader) => T): T | undefined {
    const data = this.get(type);
    if (data === undefined) return undefined;
    const r = new Reader(data);
    const v = decode(r);
    if (!r.atEnd) r.expectEnd(nameOf(ExtensionType, type));
    return v;
  }

  /**
   * §4.2: "Implementations MUST NOT send extension responses if the remote endpoint did not send the
   * corresponding extension requests" — a response we did not ask for is unsupported_extension.
   */
  requireSubsetOf(offered: ReadonlySet<number>, what: string): void {
    for (const e of this.list) {
      if (!offered.has(e.type)) {
        throw new TlsError('UnsolicitedExtension', `${what} carries ${nameOf(ExtensionType, e.type)}, which was not offered`);
      }
    }
  }
}

/** Writes an extension block from an ordered list. */
export function writeExtensions(w: Writer, list: readonly Extension[]): void {
  w.vec16((b) => {
    for (const e of list) b.u16(e.type).vec16(e.data);
  });
}

/** Builds one extension body with a writer callback. */
export function ext(type: number, body: (w: Writer) => void = () => {}): Extension {
  const w = new Writer(64);
  body(w);
  return { type, data: w.finish() };
}

// ---------------------------------------------------------------------------------------------------------
// Typed bodies (each decoder reads a Reader positioned on the extension body).

export interface KeyShareEntry {
  readonly group: number;
  readonly keyExchange: Uint8Array;
}

/**
 * §4.2.8 KeyShareClientHello: client_shares<0..2^16-1>; duplicates of a group are illegal_parameter. The groups
 * seen are kept in a Set: a hostile ClientHello may carry some 13,000 one-byte shares, and comparing each with
 * every one before it cost the server ~0.15 s of CPU per ClientHello, before any PSK binder was checked.
 */
export function readClientKeyShares(r: Reader): KeyShareEntry[] {
  const out: KeyShareEntry[] = [];
  const seen = new Set<number>();
  r.scope16('client_shares', (s) =>
    s.each((e) => {
      const group = e.u16('key share group');
      const keyExchange = e.vec16('key_exchange', 1);
      if (seen.has(group)) throw new TlsError('KeyShareDuplicateGroup', 'two key shares for one group (RFC 8446 §4.2.8)');
      seen.add(group);
      out.push({ group, keyExchange });
    }),
  );
  return out;
}

/** §4.2.8 KeyShareServerHello: one entry. */
export function readServerKeyShare(r: Reader): KeyShareEntry {
  const group = r.u16('key share group');
  const keyExchange = r.vec16('key_exchange', 1);
  return { group, keyExchange };
}

/** §4.2.8 KeyShareHelloRetryRequest: selected_group. */
export function readHrrKeyShare(r: Reader): number {
  return r.u16('selected_group');
}

/** §4.2.1 supported_versions in ClientHello: versions<2..254>. */
export function readVersionList(r: Reader): number[] {
  const out: number[] = [];
  r.scope8('supported_versions', (s) => s.each((v) => void out.push(v.u16())), 2);
  return out;
}

/** §4.2.7 supported_groups: named_group_list<2..2^16-1>. */
export function readGroupList(r: Reader): number[] {
  const out: number[] = [];
  r.scope16('named_group_list', (s) => s.each((v) => void out.push(v.u16())), 2);
  return out;
}

/** §4.2.9 psk_key_exchange_modes: ke_modes<1..255>. */
export function readPskModes(r: Reader): number[] {
  const out: number[] = [];
  r.scope8('ke_modes', (s) => s.each((v) => void out.push(v.u8())), 1);
  return out;
}

export interface PskIdentity {
  readonly identity: Uint8Array;
  readonly obfuscatedTicketAge: number;
}

export interface OfferedPsks {
  readonly identities: readonly PskIdentity[];
  readonly binders: readonly Uint8Array[];
}

/** §4.2.11 OfferedPsks: identities<7..2^16-1>, binders<33..2^16-1>; the two lists must have the same length. */
export function readOfferedPsks(r: Reader): OfferedPsks {
  const identities: PskIdentity[] = [];
  const binders: Uint8Array[] = [];
  r.scope16(
    'identities',
    (s) =>
      s.each((i) => {
        const identity = i.vec16('identity', 1);
        const obfuscatedTicketAge = i.u32('obfuscated_ticket_age');
        identities.push({ identity, obfuscatedTicketAge });
      }),
    7,
  );
  r.scope16('binders', (s) => s.each((b) => void binders.push(b.vec8('PskBinderEntry', 32))), 33);
  if (identities.length !== binders.length) {
    throw new TlsError('PskBinderCountMismatch', `${identities.length} PSK identities but ${binders.length} binders (RFC 8446 §4.2.11)`);
  }
  return { identities, binders };
}

/** RFC 7301 §3.1 ProtocolNameList: protocol_name_list<2..2^16-1>, each ProtocolName<1..2^8-1>. */
export function readAlpnList(r: Reader): string[] {
  const out: string[] = [];
  r.scope16('protocol_name_list', (s) => s.each((p) => void out.push(new TextDecoder().decode(p.vec8('ProtocolName', 1)))), 2);
  return out;
}

/**
 * RFC 6066 §3 ServerNameList: the host_name entry (type 0), if any, read as UTF-8 as it is (a server checks that
 * it is a DNS host name: withCheckedServerName in lib/handshake/server.ts). An empty body is the server's
 * acknowledgement.
 */
export function readServerName(r: Reader): string | undefined {
  let host: string | undefined;
  r.scope16(
    'server_name_list',
    (s) =>
      s.each((n) => {
        const type = n.u8('name_type');
        const name = n.vec16('HostName', 1);
        if (type === 0) {
          if (host !== undefined) throw new TlsError('ServerNameDuplicateHostName', 'two host_name entries (RFC 6066 §3)');
          host = new TextDecoder().decode(name);
        }
      }),
    1,
  );
  return host;
}

/** RFC 8449 §4 record_size_limit: uint16 >= 64 (smaller is illegal_parameter). */
export function readRecordSizeLimit(r: Reader): number {
  const v = r.u16('record_size_limit');
  if (v < 64) throw new TlsError('RecordSizeLimitTooSmall', `record_size_limit ${v} < 64 (RFC 8449 §4)`);
  return v;
}
