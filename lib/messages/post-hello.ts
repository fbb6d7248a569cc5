/**
 * The handshake messages after the hellos that an external-PSK handshake uses (RFC 8446 §4.3.1, §4.4.4,
 * §4.5, §4.6.1, §4.6.3), and the 4-byte handshake header.
 */
import { ExtensionType, HandshakeType } from '../codec/enums.js';
import { Reader } from '../codec/reader.js';
import { Writer } from '../codec/writer.js';
import { TlsError } from '../errors.js';
import { Extensions, readAlpnList, readGroupList, readRecordSizeLimit, writeExtensions, type Extension } from './extensions.js';

/** type || uint24 length || body (§4). */
export function encodeHandshake(type: number, body: Uint8Array): Uint8Array {
  return new Writer(4 + body.length).u8(type).vec24(body).finish();
}

export interface EncryptedExtensions {
  readonly extensions: Extensions;
  readonly serverNameAcknowledged: boolean;
  readonly alpn?: string;
  readonly earlyDataAccepted: boolean;
  readonly recordSizeLimit?: number;
  readonly supportedGroups?: readonly number[];
}

/** §4.3.1 EncryptedExtensions. */
export function decodeEncryptedExtensions(body: Uint8Array): EncryptedExtensions {
  const r = new Reader(body);
  const extensions = Extensions.read(r, 'EE');
  r.expectEnd('EncryptedExtensions');
  const E = ExtensionType;
  const sni = extensions.get(E.server_name);
  if (sni && sni.length !== 0) throw new TlsError('DecodeTrailingBytes', 'server_name in EncryptedExtensions must be empty (RFC 6066 §3)');
  const early = extensions.get(E.early_data);
  if (early && early.length !== 0) throw new TlsError('DecodeTrailingBytes', 'early_data in EncryptedExtensions must be empty');
  let alpn: string | undefined;
  const alpnList = extensions.decode(E.application_layer_protocol_negotiation, readAlpnList);
  if (alpnList) {
    // RFC 7301 §3.1: the server's list contains exactly one protocol name.
    if (alpnList.length !== 1) throw new TlsError('AlpnResponseNotOneProtocol', 'server selected more than one ALPN protocol (RFC 7301 §3.1)');
    alpn = alpnList[0];
  }
  return {
    extensions,
    serverNameAcknowledged: sni !== undefined,
    alpn,
    earlyDataAccepted: early !== undefined,
    recordSizeLimit: extensions.decode(E.record_size_limit, readRecordSizeLimit),
    supportedGroups: extensions.decode(E.supported_groups, readGroupList),
  };
}

export function encodeEncryptedExtensions(list: readonly Extension[]): Uint8Array {
  const w = new Writer(64);
  writeExtensions(w, list);
  return encodeHandshake(HandshakeType.encrypted_extensions, w.finish());
}

/** §4.4.4 Finished: verify_data of exactly Hash.length bytes. */
export function decodeFinished(body: Uint8Array, hashLength: number): Uint8Array {
  if (body.length !== hashLength) {
    throw new TlsError('DecodeBadLength', `Finished of ${body.length} bytes, expected ${hashLength}`);
  }
  return body;
}

export function encodeFinished(verifyData: Uint8Array): Uint8Array {
  return encodeHandshake(HandshakeType.finished, verifyData);
}

export interface NewSessionTicket {
  readonly lifetime: number;
  readonly ageAdd: number;
  readonly nonce: Uint8Array;
  readonly ticket: Uint8Array;
  readonly maxEarlyDataSize?: number;
}

/** §4.6.1 NewSessionTicket (parsed for validity; this stack does not resume sessions). */
export function decodeNewSessionTicket(body: Uint8Array): NewSessionTicket {
  const r = new Reader(body);
  const lifetime = r.u32('ticket_lifetime');
  const ageAdd = r.u32('ticket_age_add');
  const nonce = r.vec8('ticket_nonce');
  const ticket = r.vec16('ticket', 1);
  const extensions = Extensions.read(r, 'NST');
  r.expectEnd('NewSessionTicket');
  // §4.6.1: servers MUST NOT use any value greater than 604800 seconds (7 days).
  if (lifetime > 604800) throw new TlsError('TicketLifetimeTooLong', 'ticket_lifetime exceeds 7 days (RFC 8446 §4.6.1)');
  return { lifetime, ageAdd, nonce, ticket, maxEarlyDataSize: extensions.decode(ExtensionType.early_data, (e) => e.u32()) };
}

/** §4.6.3 KeyUpdate: request_update is update_not_requested(0) or update_requested(1). */
export function decodeKeyUpdate(body: Uint8Array): boolean {
  const r = new Reader(body);
  const v = r.u8('request_update');
  r.expectEnd('KeyUpdate');
  if (v !== 0 && v !== 1) throw new TlsError('KeyUpdateRequestInvalid', `KeyUpdate request_update ${v} (RFC 8446 §4.6.3)`);
  return v === 1;
}

export function encodeKeyUpdate(requestUpdate: boolean): Uint8Array {
  return encodeHandshake(HandshakeType.key_update, new Uint8Array([requestUpdate ? 1 : 0]));
}

/** §4.5 EndOfEarlyData: empty. */
export function decodeEndOfEarlyData(body: Uint8Array): void {
  if (body.length !== 0) throw new TlsError('DecodeTrailingBytes', 'EndOfEarlyData must be empty');
}

export function encodeEndOfEarlyData(): Uint8Array {
  return encodeHandshake(HandshakeType.end_of_early_data, new Uint8Array(0));
}
