/**
 * Dissects TLS 1.3 records and handshake messages into {@link TraceNode} trees: every field with its offset,
 * length and value, extensions by name, PSK identities with their obfuscated ticket ages, binders, key shares,
 * alerts by name (RFC 8446 §4, §5, §6). Runtime-neutral and pure: it reads only the bytes it is given, and
 * never throws for malformed input (the unparsed rest becomes a `malformed` field).
 */
import { toHex } from '../codec/bytes.js';
import {
  AlertDescription,
  AlertLevel,
  CipherSuite,
  ContentType,
  ExtensionType,
  HandshakeType,
  NamedGroup,
  ProtocolVersion,
  PskKeyExchangeMode,
} from '../codec/enums.js';
import { hex, hexAndText, named, TreeBuilder, type TraceNode } from './tree.js';

/** RFC 8446 §4.1.3: the random of a HelloRetryRequest (SHA-256 of "HelloRetryRequest"). */
const HRR_RANDOM = 'cf21ad74e59a6111be1d8c021e65b891c2a211167abb8c5e079e09e2c8a8339c';

const VERSION_NAMES: Record<string, number> = { 'TLS 1.0': ProtocolVersion.TLSv1_0, 'TLS 1.1': 0x0302, 'TLS 1.2': ProtocolVersion.TLSv1_2, 'TLS 1.3': ProtocolVersion.TLSv1_3 };
const SIGNATURE_SCHEMES: Record<string, number> = {
  rsa_pkcs1_sha256: 0x0401,
  rsa_pkcs1_sha384: 0x0501,
  rsa_pkcs1_sha512: 0x0601,
  ecdsa_secp256r1_sha256: 0x0403,
  ecdsa_secp384r1_sha384: 0x0503,
  ecdsa_secp521r1_sha512: 0x0603,
  rsa_pss_rsae_sha256: 0x0804,
  rsa_pss_rsae_sha384: 0x0805,
  rsa_pss_rsae_sha512: 0x0806,
  ed25519: 0x0807,
  ed448: 0x0808,
  rsa_pss_pss_sha256: 0x0809,
  rsa_pss_pss_sha384: 0x080a,
  rsa_pss_pss_sha512: 0x080b,
  rsa_pkcs1_sha1: 0x0201,
  ecdsa_sha1: 0x0203,
  // Obsolete DSA code points (RFC 8446 §4.2.3, reserved), still offered by some clients.
  dsa_sha1_RESERVED: 0x0202,
  dsa_sha256_RESERVED: 0x0402,
  dsa_sha384_RESERVED: 0x0502,
  dsa_sha512_RESERVED: 0x0602,
};
const KEY_UPDATE_REQUEST: Record<string, number> = { update_not_requested: 0, update_requested: 1 };

const version = named(VERSION_NAMES);
const suite = named(CipherSuite);
const group = named(NamedGroup);
const contentType = named(ContentType, 2);
const handshakeType = named(HandshakeType, 2);
const extensionType = named(ExtensionType);

/** Where an extension block appears: its fields depend on the message (RFC 8446 §4.2). */
export type ExtensionContext = 'client_hello' | 'server_hello' | 'hello_retry_request' | 'encrypted_extensions' | 'new_session_ticket' | 'certificate' | 'certificate_request';

/**
 * A record: header fields, then for a plaintext record its fragment (alerts and change_cipher_spec dissected,
 * handshake and application data by length), for a protected one the encrypted_record and its decrypted
 * TLSInnerPlaintext (content, inner content type, padding). `inner` is absent for a protected record that was
 * not decrypted.
 */
export function dissectRecord(
  header: Uint8Array,
  inner: { readonly protected: boolean; readonly opened: boolean; readonly type: number; readonly content: Uint8Array; readonly paddingLength: number; readonly failure?: string },
): TraceNode {
  const t = TreeBuilder.start(inner.protected ? 'TLSCiphertext' : 'TLSPlaintext', header);
  t.guarded((t) => {
    t.u8(inner.protected ? 'opaque_type' : 'type', contentType);
    t.u16('legacy_record_version', version);
    t.u16('length');
  });
  const root = t.root as { name: string; offset: number; children: TraceNode[]; length: number; value?: string };
  const length = header.length >= 5 ? (header[3] << 8) | header[4] : 0;
  root.length = header.length >= 5 ? 5 + length : header.length;
  if (inner.failure !== undefined && !inner.opened && !inner.protected) {
    // Refused on its header: nothing of its fragment was read.
    if (header.length >= 5) root.children.push({ name: 'fragment', offset: 5, length, value: `not read: ${inner.failure}` });
    root.value = `refused: ${inner.failure}`;
    return root;
  }
  if (!inner.protected) {
    root.children.push(contentNode('fragment', 5, inner.type, inner.content));
    root.value = describeContent(inner.type, inner.content);
    return root;
  }
  if (!inner.opened) {
    const failure = inner.failure;
    root.children.push({ name: 'encrypted_record', offset: 5, length, value: failure !== undefined ? `not decrypted: ${failure}` : 'not decrypted (skipped)' });
    root.value = failure !== undefined ? 'protected, could not be opened' : 'protected, not decrypted';
    return root;
  }
  const contentLength = inner.content.length;
  root.children.push({
    name: 'encrypted_record',
    offset: 5,
    length,
    value: `${length} bytes (AEAD tag ${length - contentLength - 1 - inner.paddingLength})`,
    children: [
      {
        name: 'TLSInnerPlaintext',
        offset: 5,
        length: contentLength + 1 + inner.paddingLength,
        children: [
          contentNode('content', 5, inner.type, inner.content),
          { name: 'type', offset: 5 + contentLength, length: 1, value: contentType(inner.type) },
          { name: 'zeros (padding)', offset: 6 + contentLength, length: inner.paddingLength, value: String(inner.paddingLength) },
        ],
      },
    ],
  });
  root.value = describeContent(inner.type, inner.content);
  return root;
}

/** A handshake message (type, uint24 length, body), its body dissected by type. */
export function dissectHandshake(raw: Uint8Array): TraceNode {
  const type = raw[0];
  const isHrr = isHelloRetryRequest(raw);
  const name = raw.length === 0 ? 'handshake message' : isHrr ? 'HelloRetryRequest' : messageName(type);
  const t = TreeBuilder.start(name, raw);
  t.guarded((t) => {
    t.u8('msg_type', handshakeType);
    t.vector('body', 3, (b) => b.guarded((b) => body(b, type, isHrr)));
    // Bytes after the message (a caller's buffer longer than the length says) are shown, not dropped.
    t.r.expectEnd('after the handshake message');
  });
  (t.root as { value?: string }).value = `${raw.length} bytes`;
  return t.root;
}

/** An alert's two bytes (RFC 8446 §6). */
export function dissectAlert(content: Uint8Array, base = 0): TraceNode[] {
  const out: TraceNode[] = [];
  if (content.length >= 1) out.push({ name: 'level', offset: base, length: 1, value: named(AlertLevel, 2)(content[0]) });
  if (content.length >= 2) out.push({ name: 'description', offset: base + 1, length: 1, value: named(AlertDescription, 2)(content[1]) });
  if (content.length !== 2) out.push({ name: 'malformed', offset: base, length: content.length, value: `an alert is 2 bytes, this one ${content.length}` });
  return out;
}

/** RFC 8446 §4.1.3: a ServerHello whose random is the HelloRetryRequest value (`raw` from its type byte on). */
function isHelloRetryRequest(raw: Uint8Array): boolean {
  return raw[0] === HandshakeType.server_hello && raw.length >= 4 + 2 + 32 && toHex(raw.subarray(6, 38)) === HRR_RANDOM;
}

/** The name of a handshake message type: "ClientHello", "Finished", ... */
export function messageName(type: number): string {
  switch (type) {
    case HandshakeType.client_hello:
      return 'ClientHello';
    case HandshakeType.server_hello:
      return 'ServerHello';
    case HandshakeType.new_session_ticket:
      return 'NewSessionTicket';
    case HandshakeType.end_of_early_data:
      return 'EndOfEarlyData';
    case HandshakeType.encrypted_extensions:
      return 'EncryptedExtensions';
    case HandshakeType.certificate:
      return 'Certificate';
    case HandshakeType.certificate_request:
      return 'CertificateRequest';
    case HandshakeType.certificate_verify:
      return 'CertificateVerify';
    case HandshakeType.finished:
      return 'Finished';
    case HandshakeType.key_update:
      return 'KeyUpdate';
    case HandshakeType.message_hash:
      return 'message_hash';
    default:
      return `handshake message ${hex(type, 2)}`;
  }
}

// ---------------------------------------------------------------------------------------------------------

function contentNode(name: string, offset: number, type: number, content: Uint8Array): TraceNode {
  if (type === ContentType.alert) return { name: 'Alert', offset, length: content.length, children: dissectAlert(content, offset) };
  if (type === ContentType.change_cipher_spec) {
    return { name: 'ChangeCipherSpec', offset, length: content.length, value: toHex(content) };
  }
  if (type === ContentType.handshake) {
    return { name, offset, length: content.length, value: `handshake data, ${content.length} bytes (${listMessages(content)})` };
  }
  if (type === ContentType.application_data) return { name, offset, length: content.length, value: `application data, ${content.length} bytes` };
  return { name, offset, length: content.length, value: toHex(content) };
}

function describeContent(type: number, content: Uint8Array): string {
  if (type === ContentType.alert && content.length === 2) {
    return `Alert: ${named(AlertLevel, 2)(content[0]).replace(/ \(.*/, '')} ${named(AlertDescription, 2)(content[1]).replace(/ \(.*/, '')}`;
  }
  if (type === ContentType.handshake) return `handshake: ${listMessages(content)}`;
  if (type === ContentType.application_data) return `application data, ${content.length} bytes`;
  if (type === ContentType.change_cipher_spec) return 'ChangeCipherSpec';
  return `${contentType(type)}, ${content.length} bytes`;
}

/** At most this many message names in a record's summary (each message has its own event anyway). */
const LISTED_MESSAGES = 8;

/**
 * The messages that start in a handshake fragment, by name (a fragment may also continue an earlier one). At most
 * {@link LISTED_MESSAGES} names, then how many more: a 16 KiB record of empty messages holds 4,096 of them, and
 * the summary, printed twice per record, must not grow with the record.
 */
function listMessages(content: Uint8Array): string {
  const names: string[] = [];
  let count = 0;
  let at = 0;
  while (at + 4 <= content.length) {
    if (count++ < LISTED_MESSAGES) names.push(isHelloRetryRequest(content.subarray(at)) ? 'HelloRetryRequest' : messageName(content[at]));
    at += 4 + ((content[at + 1] << 16) | (content[at + 2] << 8) | content[at + 3]);
  }
  if (count > LISTED_MESSAGES) names.push(`and ${count - LISTED_MESSAGES} more`);
  if (at < content.length || at > content.length) names.push('(fragment)');
  return names.join(', ') || '(fragment)';
}

function body(t: TreeBuilder, type: number, isHrr: boolean): void {
  switch (type) {
    case HandshakeType.client_hello:
      t.u16('legacy_version', version);
      t.bytes('random', 32);
      t.vector('legacy_session_id', 1, (v) => v.each((v) => v.rest('id')));
      t.vector(
        'cipher_suites',
        2,
        (v) => v.each((v) => v.u16('CipherSuite', suite)),
        (n) => `${elements(n)} suites`,
      );
      t.vector('legacy_compression_methods', 1, (v) => v.each((v) => v.u8('method', (m) => hex(m, 2))));
      extensions(t, 'client_hello');
      return;
    case HandshakeType.server_hello:
      t.u16('legacy_version', version);
      t.bytes('random', 32, (b) => (isHrr ? `${toHex(b)} (HelloRetryRequest)` : toHex(b)));
      t.vector('legacy_session_id_echo', 1, (v) => v.each((v) => v.rest('id')));
      t.u16('cipher_suite', suite);
      t.u8('legacy_compression_method', (m) => hex(m, 2));
      extensions(t, isHrr ? 'hello_retry_request' : 'server_hello');
      return;
    case HandshakeType.new_session_ticket:
      t.u32('ticket_lifetime', (v) => `${v} s`);
      t.u32('ticket_age_add', (v) => hex(v, 8));
      t.vector('ticket_nonce', 1, (v) => v.each((v) => v.rest('nonce')));
      t.vector('ticket', 2, (v) => v.each((v) => v.rest('ticket')));
      extensions(t, 'new_session_ticket');
      return;
    case HandshakeType.end_of_early_data:
      return;
    case HandshakeType.encrypted_extensions:
      extensions(t, 'encrypted_extensions');
      return;
    case HandshakeType.certificate_request:
      t.vector('certificate_request_context', 1, (v) => v.each((v) => v.rest('context')));
      extensions(t, 'certificate_request');
      return;
    case HandshakeType.certificate:
      t.vector('certificate_request_context', 1, (v) => v.each((v) => v.rest('context')));
      t.vector('certificate_list', 3, (v) =>
        v.each((v) =>
          v.group('CertificateEntry', (e) => {
            e.vector('cert_data', 3, (c) => c.each((c) => c.rest('data')));
            extensions(e, 'certificate');
          }),
        ),
      );
      return;
    case HandshakeType.certificate_verify:
      t.u16('algorithm', named(SIGNATURE_SCHEMES));
      t.vector('signature', 2, (v) => v.each((v) => v.rest('signature')));
      return;
    case HandshakeType.finished:
      t.rest('verify_data');
      return;
    case HandshakeType.key_update:
      t.u8('request_update', named(KEY_UPDATE_REQUEST, 2));
      return;
    default:
      if (!t.r.atEnd) t.rest('data');
  }
}

function extensions(t: TreeBuilder, context: ExtensionContext): void {
  t.vector(
    'extensions',
    2,
    (v) =>
      v.each((v) =>
        v.group(
          'Extension',
          (e) => {
            const type = e.u16('extension_type', extensionType);
            e.vector('extension_data', 2, (d) => d.guarded((d) => extension(d, type, context)));
          },
          (n) => extensionName(n),
        ),
      ),
    (n) => `${elements(n)} extensions`,
  );
}

/** How many elements a vector node shows: its fields but its length and a `malformed` rest. */
function elements(n: TraceNode): number {
  return (n.children ?? []).filter((c) => c.name !== 'length' && c.name !== 'malformed').length;
}

/** "key_share" from an Extension node's type field. */
function extensionName(n: TraceNode): string {
  const type = n.children?.[0]?.value ?? '';
  return type.replace(/ \(0x[0-9a-f]+\)$/, '');
}

function extension(t: TreeBuilder, type: number, context: ExtensionContext): void {
  const E = ExtensionType;
  switch (type) {
    case E.server_name:
      if (t.r.atEnd) return; // the server's empty acknowledgement
      t.vector('server_name_list', 2, (v) =>
        v.each((v) =>
          v.group('ServerName', (s) => {
            s.u8('name_type', (x) => (x === 0 ? 'host_name (0x00)' : `unknown (${hex(x, 2)})`));
            s.vector('host_name', 2, (h) => h.each((h) => h.rest('name', hexAndText)));
          }),
        ),
      );
      return;
    case E.supported_groups:
      t.vector('named_group_list', 2, (v) => v.each((v) => v.u16('NamedGroup', group)));
      return;
    case E.signature_algorithms:
    case E.signature_algorithms_cert:
      t.vector('supported_signature_algorithms', 2, (v) => v.each((v) => v.u16('SignatureScheme', named(SIGNATURE_SCHEMES))));
      return;
    case E.application_layer_protocol_negotiation:
      t.vector('protocol_name_list', 2, (v) => v.each((v) => v.vector('ProtocolName', 1, (p) => p.each((p) => p.rest('name', hexAndText)))));
      return;
    case E.record_size_limit:
      t.u16('record_size_limit');
      return;
    case E.max_fragment_length:
      t.u8('max_fragment_length');
      return;
    case E.pre_shared_key:
      if (context === 'server_hello') {
        t.u16('selected_identity');
        return;
      }
      t.vector(
        'identities',
        2,
        (v) =>
          v.each((v) =>
            v.group('PskIdentity', (p) => {
              p.vector('identity', 2, (i) => i.each((i) => i.rest('identity', hexAndText)));
              p.u32('obfuscated_ticket_age', (v) => `${v} (${hex(v, 8)})`);
            }),
          ),
        (n) => `${elements(n)} identities`,
      );
      t.vector(
        'binders',
        2,
        (v) => v.each((v) => v.vector('PskBinderEntry', 1, (b) => b.each((b) => b.rest('binder')))),
        (n) => `${elements(n)} binders`,
      );
      return;
    case E.early_data:
      if (context === 'new_session_ticket') t.u32('max_early_data_size');
      return;
    case E.supported_versions:
      if (context === 'client_hello') t.vector('versions', 1, (v) => v.each((v) => v.u16('ProtocolVersion', version)));
      else t.u16('selected_version', version);
      return;
    case E.cookie:
      t.vector('cookie', 2, (v) => v.each((v) => v.rest('cookie')));
      return;
    case E.psk_key_exchange_modes:
      t.vector('ke_modes', 1, (v) => v.each((v) => v.u8('PskKeyExchangeMode', named(PskKeyExchangeMode, 2))));
      return;
    case E.key_share:
      if (context === 'hello_retry_request') {
        t.u16('selected_group', group);
        return;
      }
      if (context === 'client_hello') {
        t.vector('client_shares', 2, (v) => v.each((v) => keyShareEntry(v)));
        return;
      }
      keyShareEntry(t);
      return;
    case E.padding:
      // RFC 7685 §3: the padding must be all zeros. Bytes that are not are shown, not summarised as zeros.
      if (!t.r.atEnd) t.rest('zeros', (b) => (b.every((x) => x === 0) ? `${b.length} bytes` : `${b.length} bytes, not all zero: ${toHex(b)}`));
      return;
    default:
      if (!t.r.atEnd) t.rest('data');
  }
}

function keyShareEntry(t: TreeBuilder): void {
  t.group(
    'KeyShareEntry',
    (k) => {
      k.u16('group', group);
      k.vector('key_exchange', 2, (x) => x.each((x) => x.rest('key_exchange')));
    },
    (n) => (n.children?.[0]?.value ?? '').replace(/ \(0x[0-9a-f]+\)$/, ''),
  );
}
