/**
 * Every way a TLS connection can fail, as a named reason, and the alert each one sends.
 *
 * RFC 8446 §6: "Whenever an implementation encounters a fatal error condition, it SHOULD send an
 * appropriate fatal alert". The table {@link REASON_ALERT} is checked by the compiler: adding a reason
 * without choosing its alert does not build.
 */
import { AlertDescription, alertName, type AlertName } from './codec/enums.js';

export const REASON_ALERT = {
  // --- codec (RFC 8446 §6.2: decode_error for messages that cannot be parsed) ---
  DecodeTruncated: 'decode_error',
  DecodeTrailingBytes: 'decode_error',
  DecodeBadLength: 'decode_error',
  DecodeEmptyVector: 'decode_error',
  // --- record layer (RFC 8446 §5) ---
  RecordOverflow: 'record_overflow',
  RecordUnknownContentType: 'unexpected_message',
  RecordEmptyFragment: 'unexpected_message',
  RecordBadMac: 'bad_record_mac',
  RecordAllZeroPlaintext: 'unexpected_message',
  RecordSequenceExhausted: 'internal_error',
  RecordUnexpectedPlaintext: 'unexpected_message',
  RecordInterleavedHandshake: 'unexpected_message',
  RecordHandshakeSpansKeyChange: 'unexpected_message',
  RecordUnexpectedChangeCipherSpec: 'unexpected_message',
  RecordBadChangeCipherSpec: 'unexpected_message',
  // --- crypto ---
  InvalidPeerKeyShare: 'illegal_parameter',
  KeyExchangeZeroSecret: 'illegal_parameter',
  FfdhePublicValueOutOfRange: 'illegal_parameter',
  MlKemEncapsulationKeyNotReduced: 'illegal_parameter',
  // --- handshake ---
  UnexpectedMessage: 'unexpected_message',
  UnsupportedVersion: 'protocol_version',
  IllegalParameter: 'illegal_parameter',
  MissingExtension: 'missing_extension',
  UnsupportedExtension: 'unsupported_extension',
  DuplicateExtension: 'illegal_parameter',
  PskExtensionNotLast: 'illegal_parameter',
  IncorrectBinder: 'decrypt_error',
  IncorrectFinished: 'decrypt_error',
  NoCommonCipherSuite: 'handshake_failure',
  NoCommonKeyExchangeMode: 'handshake_failure',
  NoCommonGroup: 'handshake_failure',
  NoPskOffered: 'handshake_failure',
  PskNotSelected: 'handshake_failure',
  PskModesMissing: 'missing_extension',
  BadCookie: 'illegal_parameter',
  ClientHelloRetryMismatch: 'illegal_parameter',
  EarlyDataTooLong: 'unexpected_message',
  TooMuchDataWhileWaiting: 'unexpected_message',
  TooManyIdleRecords: 'unexpected_message',
  UnknownPskIdentity: 'unknown_psk_identity',
  PskUnavailable: 'handshake_failure',
  SecondHelloRetryRequest: 'unexpected_message',
  HelloRetryRequestUseless: 'illegal_parameter',
  HelloRetryRequestBadGroup: 'illegal_parameter',
  ServerSelectedUnofferedPsk: 'illegal_parameter',
  ServerSelectedUnofferedSuite: 'illegal_parameter',
  ServerSelectedUnofferedGroup: 'illegal_parameter',
  DowngradeDetected: 'illegal_parameter',
  NoApplicationProtocol: 'no_application_protocol',
  CertificateRequired: 'certificate_required',
  UnexpectedEarlyData: 'unexpected_message',
  // --- connection ---
  PeerSentAlert: 'close_notify', // never sent: we received the alert
  ApplicationDataAfterClose: 'unexpected_message',
  HandshakeTimeout: 'internal_error',
  InternalError: 'internal_error',
  UserCanceled: 'user_canceled',
} as const satisfies Record<string, AlertName>;

export type Reason = keyof typeof REASON_ALERT;

/** A TLS failure: a named reason, the alert it maps to, and a human-readable detail. */
export class TlsError extends Error {
  readonly reason: Reason;
  /** The alert's name; for a received alert of a code this stack does not know, `alert_<code>`. */
  readonly alert: AlertName | `alert_${number}`;
  /** The alert's wire value (RFC 8446 §6). */
  readonly alertCode: number;
  /** True when the peer sent us this alert, false when we detected the error (and sent the alert). */
  readonly remote: boolean;

  constructor(reason: Reason, detail?: string, options?: { remote?: boolean; alertCode?: number; cause?: unknown }) {
    const code = options?.alertCode ?? AlertDescription[REASON_ALERT[reason]];
    const alert = alertName(code) ?? (`alert_${code}` as const);
    const remote = options?.remote ?? false;
    super(`tls alert: ${alert} (${code}) ${remote ? 'received' : 'sent'}${detail ? `: ${detail}` : ''}`, { cause: options?.cause });
    this.name = 'TlsError';
    this.reason = reason;
    this.alert = alert;
    this.alertCode = code;
    this.remote = remote;
  }
}

/** Throws a {@link TlsError} for `reason` with `detail`. Handy in expressions. */
export function fail(reason: Reason, detail?: string): never {
  throw new TlsError(reason, detail);
}
