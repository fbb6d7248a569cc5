/**
 * RFC 8446 §6 alert levels and descriptions with their registry names: the bottom of the stack, beside
 * {@link TlsError} (lib/errors.ts), so that the codec can report failures without the errors importing the codec.
 */

/** RFC 8446 §6 AlertLevel. */
export const AlertLevel = {
  warning: 1,
  fatal: 2,
} as const;

/** RFC 8446 §6 AlertDescription. */
export const AlertDescription = {
  close_notify: 0,
  unexpected_message: 10,
  bad_record_mac: 20,
  record_overflow: 22,
  handshake_failure: 40,
  bad_certificate: 42,
  unsupported_certificate: 43,
  certificate_revoked: 44,
  certificate_expired: 45,
  certificate_unknown: 46,
  illegal_parameter: 47,
  unknown_ca: 48,
  access_denied: 49,
  decode_error: 50,
  decrypt_error: 51,
  protocol_version: 70,
  insufficient_security: 71,
  internal_error: 80,
  inappropriate_fallback: 86,
  user_canceled: 90,
  missing_extension: 109,
  unsupported_extension: 110,
  unrecognized_name: 112,
  bad_certificate_status_response: 113,
  unknown_psk_identity: 115,
  certificate_required: 116,
  no_application_protocol: 120,
} as const;

export type AlertName = keyof typeof AlertDescription;

/** Reverse lookup: the name of an alert code, or undefined. */
export function alertName(code: number): AlertName | undefined {
  for (const [k, v] of Object.entries(AlertDescription)) if (v === code) return k as AlertName;
  return undefined;
}
