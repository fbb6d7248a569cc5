/**
 * TLS 1.3 wire enumerations (RFC 8446 §4, §5, §6, B.3) with their registry names.
 * Use {@link nameOf} to print a value: unknown values come out as hex (`0x1234`).
 */
export { AlertDescription, AlertLevel, alertName, type AlertName } from '../alerts.js';

/** RFC 8446 §5.1 ContentType. */
export const ContentType = {
  invalid: 0,
  change_cipher_spec: 0x14,
  alert: 0x15,
  handshake: 0x16,
  application_data: 0x17,
} as const;

/** RFC 8446 §4 HandshakeType. */
export const HandshakeType = {
  client_hello: 1,
  server_hello: 2,
  new_session_ticket: 4,
  end_of_early_data: 5,
  encrypted_extensions: 8,
  certificate: 11,
  certificate_request: 13,
  certificate_verify: 15,
  finished: 20,
  key_update: 24,
  message_hash: 254,
} as const;

/** RFC 8446 §4.2 ExtensionType (those this stack knows, and a few it only names in traces and messages). */
export const ExtensionType = {
  server_name: 0,
  max_fragment_length: 1,
  status_request: 5,
  supported_groups: 10,
  /** RFC 8422 §5.1.2 (TLS 1.2 and earlier; sent by many clients that offer both): named so that traces show it. */
  ec_point_formats: 11,
  signature_algorithms: 13,
  use_srtp: 14,
  heartbeat: 15,
  application_layer_protocol_negotiation: 16,
  signed_certificate_timestamp: 18,
  client_certificate_type: 19,
  server_certificate_type: 20,
  padding: 21,
  encrypt_then_mac: 22,
  extended_master_secret: 23,
  /** RFC 8879 certificate compression (certificate handshakes only): named so that traces show it. */
  compress_certificate: 27,
  record_size_limit: 28,
  session_ticket: 35,
  pre_shared_key: 41,
  early_data: 42,
  supported_versions: 43,
  cookie: 44,
  psk_key_exchange_modes: 45,
  certificate_authorities: 47,
  oid_filters: 48,
  post_handshake_auth: 49,
  signature_algorithms_cert: 50,
  key_share: 51,
  /** draft-ietf-tls-esni (Encrypted Client Hello), not implemented here: named so that traces show it. */
  encrypted_client_hello: 0xfe0d,
  renegotiation_info: 0xff01,
} as const;

/** RFC 8446 B.4 cipher suites. */
export const CipherSuite = {
  TLS_AES_128_GCM_SHA256: 0x1301,
  TLS_AES_256_GCM_SHA384: 0x1302,
  TLS_CHACHA20_POLY1305_SHA256: 0x1303,
  TLS_AES_128_CCM_SHA256: 0x1304,
  TLS_AES_128_CCM_8_SHA256: 0x1305,
} as const;

/**
 * RFC 8446 §4.2.7 NamedGroup (with RFC 7919's ffdhe groups), plus the post-quantum hybrids of
 * draft-ietf-tls-ecdhe-mlkem (IANA: SecP256r1MLKEM768 0x11EB, X25519MLKEM768 0x11EC, SecP384r1MLKEM1024 0x11ED).
 */
export const NamedGroup = {
  secp256r1: 0x0017,
  secp384r1: 0x0018,
  secp521r1: 0x0019,
  x25519: 0x001d,
  x448: 0x001e,
  ffdhe2048: 0x0100,
  ffdhe3072: 0x0101,
  ffdhe4096: 0x0102,
  ffdhe6144: 0x0103,
  ffdhe8192: 0x0104,
  SecP256r1MLKEM768: 0x11eb,
  X25519MLKEM768: 0x11ec,
  SecP384r1MLKEM1024: 0x11ed,
} as const;

/** RFC 8446 §4.2.9 PskKeyExchangeMode. */
export const PskKeyExchangeMode = {
  psk_ke: 0,
  psk_dhe_ke: 1,
} as const;

/** RFC 8446 §4.1.2 / §4.2.1 protocol versions. */
export const ProtocolVersion = {
  TLSv1_0: 0x0301,
  TLSv1_2: 0x0303,
  TLSv1_3: 0x0304,
} as const;

export type CipherSuiteName = keyof typeof CipherSuite;
export type NamedGroupName = keyof typeof NamedGroup;
export type PskKeyExchangeModeName = keyof typeof PskKeyExchangeMode;

/** The registry name of `value` in `table`, or its hex form (`0x002a`) when unknown. */
export function nameOf(table: Readonly<Record<string, number>>, value: number, width = 4): string {
  for (const [k, v] of Object.entries(table)) if (v === value) return k;
  return `0x${value.toString(16).padStart(width, '0')}`;
}
