/**
 * Every way a TLS connection can fail, as a named reason, and the alert each one sends.
 *
 * RFC 8446 §6: "Whenever an implementation encounters a fatal error condition, it SHOULD send an
 * appropriate fatal alert". The table {@link REASON_ALERT} is checked by the compiler: adding a reason
 * without choosing its alert does not build. Each reason names one fault, so that `error.reason` tells a user
 * what went wrong; the comment beside it cites the rule (RFC 8446 sections unless another RFC is named).
 */
import { AlertDescription, alertName, type AlertName } from './alerts.js';

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
  FfdhePublicValueOutOfRange: 'illegal_parameter', // RFC 8446 §4.2.8.1, RFC 7919 §5.1: an ffdhe share Y with not 1 < Y < p-1
  MlKemEncapsulationKeyNotReduced: 'illegal_parameter', // draft-ietf-tls-ecdhe-mlkem, FIPS 203 §7.2: ML-KEM ek fails the modulus check
  // --- handshake: message order and versions ---
  UnexpectedMessage: 'unexpected_message', // a handshake message the current state does not expect (§4)
  UnsupportedVersion: 'protocol_version', // the peer does not offer / negotiate TLS 1.3 (§4.2.1)
  ServerSelectedUnofferedVersion: 'illegal_parameter', // §4.2.1: supported_versions names a version not offered
  LegacyVersionNot0303: 'illegal_parameter', // §4.1.3: ServerHello.legacy_version must be 0x0303
  ClientHelloLegacyVersionSsl3: 'protocol_version', // Appendix D.5: ClientHello.legacy_version 0x0300 (SSL 3.0) or lower
  ServerHelloLegacyVersionSsl3: 'protocol_version', // Appendix D.5: ServerHello.legacy_version 0x0300 (SSL 3.0) or lower
  CompressionMethodsInvalid: 'illegal_parameter', // §4.1.2, §4.1.3: legacy compression other than [null] / 0
  SessionIdEchoMismatch: 'illegal_parameter', // §4.1.3: legacy_session_id_echo differs from what we sent
  // --- handshake: extensions (§4.2) ---
  DuplicateExtension: 'illegal_parameter', // §4.2: two extensions of one type in a message
  ExtensionNotAllowedInMessage: 'illegal_parameter', // §4.2: a known extension in a message it is not defined for
  UnsolicitedExtension: 'unsupported_extension', // §4.2: a response to an extension we did not send
  UnsolicitedKeyShare: 'unsupported_extension', // §4.2, §4.1.4: a server key_share though we offered no (EC)DHE
  PskExtensionNotLast: 'illegal_parameter', // §4.2.11: pre_shared_key must be the last extension
  PskModesMissing: 'missing_extension', // §4.2.9: pre_shared_key without psk_key_exchange_modes
  KeyShareWithoutSupportedGroups: 'missing_extension', // §9.2: key_share requires supported_groups
  SupportedGroupsWithoutKeyShare: 'missing_extension', // §9.2: supported_groups requires key_share
  KeyShareDuplicateGroup: 'illegal_parameter', // §4.2.8: two KeyShareEntry values for one group
  KeyShareGroupNotOffered: 'illegal_parameter', // §4.2.8: a key share for a group not in supported_groups
  PskBinderCountMismatch: 'illegal_parameter', // §4.2.11: one binder per offered identity
  ServerNameDuplicateHostName: 'illegal_parameter', // RFC 6066 §3: at most one name of each type
  ServerNameNotHostName: 'illegal_parameter', // RFC 6066 §3: HostName is an ASCII DNS host name (RFC 1035 §2.3.4 lengths; a trailing dot is dropped, not refused); §6.2
  RecordSizeLimitTooSmall: 'illegal_parameter', // RFC 8449 §4: a record_size_limit below 64
  AlpnResponseNotOneProtocol: 'illegal_parameter', // RFC 7301 §3.1: the server answers exactly one protocol
  // --- handshake: negotiation (server side) ---
  NoCommonCipherSuite: 'handshake_failure', // §4.1.1
  NoCommonKeyExchangeMode: 'handshake_failure', // §4.2.9
  NoCommonGroup: 'handshake_failure', // §4.1.1
  NoPskOffered: 'handshake_failure', // §4.1.1: this stack authenticates with PSKs only
  NoPskNorCertificateExtensions: 'missing_extension', // §9.2: no pre_shared_key, and no signature_algorithms or supported_groups either
  UnknownPskIdentity: 'unknown_psk_identity', // §4.2.11: no offered identity is known
  PskUnavailable: 'handshake_failure', // the PSK lookup failed (e.g. the key manager is unreachable, or it answered a key a lease's release wiped); a client offered a key a lease's release wiped (no alert: nothing sent)
  PskTooShort: 'handshake_failure', // RFC 9257 §6: the PSK lookup answered a secret under 128 bits (as PskUnavailable, RFC 8446 §6.2)
  KeyAgreementFailed: 'internal_error', // an asynchronous key agreement failed for a reason of ours (RFC 8446 §7.4)
  PskLookupWrongCount: 'internal_error', // the application's PSK lookup answered the wrong number of entries
  PskLookupThrew: 'internal_error', // §6.2: the application's synchronous PSK lookup (the psks function) threw, a local failure
  EarlyDataReplayGuardFailed: 'internal_error', // §6.2: the server's 0-RTT replay guard (§8.2, earlyDataReplayGuard) threw or answered no boolean, a local failure
  IncorrectBinder: 'decrypt_error', // §4.2.11.2
  NoApplicationProtocol: 'no_application_protocol', // RFC 7301 §3.2
  BadCookie: 'illegal_parameter', // §4.2.2: the second ClientHello does not echo our cookie
  ClientHelloRetryMismatch: 'illegal_parameter', // §4.1.2: the second ClientHello changed more than allowed
  EarlyDataAfterHelloRetryRequest: 'illegal_parameter', // §4.2.10: early_data in the second ClientHello
  RetryKeyShareWrongGroup: 'illegal_parameter', // §4.1.2, §4.2.8: the second ClientHello's share is not the one asked for
  // --- handshake: the server's answers (client side) ---
  SecondHelloRetryRequest: 'unexpected_message', // §4.1.4
  HelloRetryRequestUseless: 'illegal_parameter', // §4.1.4: an HRR that would not change the ClientHello
  HelloRetryRequestCookieTooLong: 'illegal_parameter', // §4.2.2, §4.1.2: a cookie too long to echo in the second ClientHello's extensions<8..2^16-1>
  HelloRetryRequestBadGroup: 'illegal_parameter', // §4.2.8: a group not offered, or one already shared
  ServerHelloSuiteDiffersFromRetry: 'illegal_parameter', // §4.1.4: the suite must be the HRR's
  PskNotSelected: 'handshake_failure', // §4.2.11: no PSK selected: a certificate handshake this client cannot do
  ServerSelectedUnofferedPsk: 'illegal_parameter', // §4.2.11: selected_identity out of range
  ServerSelectedUnofferedSuite: 'illegal_parameter', // §4.1.3
  ServerSelectedUnofferedGroup: 'illegal_parameter', // §4.2.8
  PskHashMismatchesSuite: 'illegal_parameter', // §4.2.11: the selected suite's hash is not the PSK's
  ServerKeyShareMissing: 'illegal_parameter', // §4.2.11: no key_share, yet psk_ke was not offered
  ServerSelectedUnofferedAlpn: 'illegal_parameter', // RFC 7301 §3.2: a protocol the client did not offer
  EarlyDataAcceptedWrongPsk: 'illegal_parameter', // §4.2.10: 0-RTT accepted for another PSK or suite (after HRR: UnsolicitedExtension, §4.2)
  EarlyDataAcceptedWrongAlpn: 'illegal_parameter', // §4.2.10: 0-RTT accepted under another ALPN protocol than the PSK's
  IncorrectFinished: 'decrypt_error', // §4.4.4
  // --- handshake: limits and 0-RTT (§4.2.10) ---
  EarlyDataTooLong: 'unexpected_message', // §4.6.1: more 0-RTT data than max_early_data_size (or §4.2.10's skip limit)
  TooMuchDataWhileWaiting: 'unexpected_message', // a peer flooding us while its PSKs are looked up
  TooManyIdleRecords: 'unexpected_message', // a flood of records that carry no data
  // --- post-handshake (§4.6) ---
  TicketLifetimeTooLong: 'illegal_parameter', // §4.6.1: ticket_lifetime above 7 days
  KeyUpdateRequestInvalid: 'illegal_parameter', // §4.6.3: request_update neither 0 nor 1
  // --- connection ---
  ApplicationDataBeforeHandshake: 'unexpected_message', // application data before the handshake completed, no 0-RTT accepted
  PeerSentAlert: 'close_notify', // never sent: we received the alert
  // The handshake did not complete in the time the transport allows (Connection.handshakeTimedOut); its alert is
  // sent when a connection exists, while a server still fetching its PSKs has none to send it on.
  HandshakeTimeout: 'internal_error',
  InternalError: 'internal_error',
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
  /** True when we detected the error and sent its alert; false when the peer sent it or none could be sent. */
  readonly alertSent: boolean;
  /**
   * What to check, when this side can tell (a received alert whose cause only the peer saw, such as a client's
   * decrypt_error for its PSK binder; see {@link receivedAlertHint}); never key material. It ends the message when
   * there is no detail (a received alert has none), as in `tls alert: decrypt_error (51) received: HINT`; an error
   * we detected has a detail that already says what went wrong, so the hint is only this field.
   */
  readonly hint: string | undefined;

  /**
   * `remote`: the peer sent us the alert. `alertNotSent`: we detected the error but no alert could reach the
   * peer (a transport giving up on its socket, as on a handshake timeout); the message says so.
   */
  constructor(reason: Reason, detail?: string, options?: { remote?: boolean; alertCode?: number; alertNotSent?: boolean; cause?: unknown; hint?: string }) {
    const code = options?.alertCode ?? AlertDescription[REASON_ALERT[reason]];
    const alert = alertName(code) ?? (`alert_${code}` as const);
    const remote = options?.remote ?? false;
    const how = remote ? 'received' : options?.alertNotSent ? 'not sent' : 'sent';
    const hint = options?.hint;
    const text = detail ?? hint;
    super(`tls alert: ${alert} (${code}) ${how}${text ? `: ${text}` : ''}`, { cause: options?.cause });
    this.name = 'TlsError';
    this.reason = reason;
    this.alert = alert;
    this.alertCode = code;
    this.remote = remote;
    this.alertSent = !remote && !options?.alertNotSent;
    this.hint = hint;
  }
}

/**
 * Failures that are not TLS's to name: the transport under the connection (a TCP socket, a byte-stream pair, a
 * WebSocket), the application's own streams, or the key source that feeds the handshake failed, and no alert was
 * received (nor could one reach the peer). Each is a {@link TransportError} whose `code` names it, as Node names its
 * own errors (`ECONNRESET`, `ERR_STREAM_DESTROYED`): switch on `error.code`, not on the message, which may change.
 * Two codes are Node's own, for the case Node uses them for. The table is checked by the compiler as
 * {@link REASON_ALERT} is: a code cannot be thrown without its line here. A TLS failure is a {@link TlsError} (its
 * `reason`); an error of the socket itself is Node's (`ECONNREFUSED`, `ECONNRESET`, ... on `code`).
 */
export const TRANSPORT_ERROR_CODES = {
  /** The peer ended the connection (or it closed without an error) before the handshake completed. */
  ERR_QKD_TLS_CLOSED_BEFORE_HANDSHAKE: 'the transport closed before the TLS handshake completed',
  /** A client's `psks` function threw or rejected: nothing was sent. Its error is the `cause`. */
  ERR_QKD_TLS_PSK_FETCH_FAILED: 'the client could not obtain its PSKs',
  /** The application cancelled the plaintext readable during the handshake, or aborted the plaintext writable without a reason. */
  ERR_QKD_TLS_CANCELLED: 'the application cancelled the connection',
  /** The transport failed without an error of its own (a read or write that rejected with undefined), or a WebSocket failed or closed. */
  ERR_QKD_TLS_TRANSPORT_FAILED: 'the transport failed',
  /** A WebSocket did not open within its time limit. */
  ERR_QKD_TLS_TRANSPORT_TIMEOUT: 'the transport did not open in time',
  /** A WebSocket peer sent a text message: TLS records travel in binary messages only. */
  ERR_QKD_TLS_WEBSOCKET_TEXT: 'a WebSocket text message',
  /** A proxy service could not listen on its address; the `cause` is Node's error (its `code`: EADDRINUSE, EACCES, ...). */
  ERR_QKD_PROXY_LISTEN_FAILED: 'the proxy could not listen',
  /** A key source (ETSI GS QKD 014 pool, key file, static keys) could not answer the keys asked for (no usable key left, its key manager, clock or onLease callback failed). The failure, if any, is the `cause`. */
  ERR_QKD_KEY_UNAVAILABLE: 'the key source could not supply a key',
  /** A key file (`parseKeyFile`, `fileKeySource`, `--psk-file`) does not follow its format; the message names the line. */
  ERR_QKD_KEY_FILE_INVALID: 'the key file is not valid',
  /** A key source was used after (or was waited on when) it was closed. */
  ERR_QKD_KEY_SOURCE_CLOSED: 'the key source is closed',
  /** Node's code: a write still pending when the socket was destroyed without an error of its own. */
  ERR_STREAM_DESTROYED: 'the socket was destroyed',
  /** Node's code: exportKeyingMaterial or keyUpdate before the handshake completed, or once the connection is over. */
  ERR_TLS_INVALID_STATE: 'the TLS connection is not established',
} as const satisfies Record<`E${string}`, string>;

export type TransportErrorCode = keyof typeof TRANSPORT_ERROR_CODES;

/**
 * A failure below or beside TLS (see {@link TRANSPORT_ERROR_CODES}): `code` says which; the message says what
 * happened and the `cause`, when there is one, why. Its `name` stays `Error`, as Node's coded errors keep theirs.
 */
export class TransportError extends Error {
  readonly code: TransportErrorCode;
  constructor(code: TransportErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
  }
}

/**
 * What a side can say about an error alert the peer sent, whose cause only the peer saw (the peer's own log names
 * it). `beforeServerHello`: a client that has not yet received a ServerHello, so the server has not accepted any of
 * its PSKs. Undefined when this side knows nothing to add. Hints name what to check, never key material.
 */
export function receivedAlertHint(alert: AlertName | `alert_${number}`, side: 'client' | 'server', stage: { handshaking: boolean; beforeServerHello: boolean }): string | undefined {
  if (side !== 'client' || !stage.handshaking) return undefined;
  // RFC 8446 §4.2.11.2: a server that cannot verify a binder aborts with decrypt_error. Before its ServerHello that is
  // the only decrypt_error it can send (it has selected no PSK): its key for the identity is not ours, or it binds
  // the key to another hash (the binder is an HMAC under the PSK's hash).
  if (alert === 'decrypt_error' && stage.beforeServerHello) {
    return 'the server could not verify the key we offered: the two sides hold different keys for this identity, or bind it to different hashes (RFC 8446 §4.2.11.2)';
  }
  // Many servers answer a binder they cannot verify with illegal_parameter, not §4.2.11.2's decrypt_error: OpenSSL 1.1.1
  // to 3.3 (so Node 20's node:tls, OpenSSL 3.0; 3.4 and later send decrypt_error, openssl/openssl#25176, as Node 24's
  // OpenSSL 3.5 does in test/interop-node24-psk-alerts), GnuTLS 3.7 (an unknown identity too) and tlslite-ng, as the
  // interop tests see. A qkd-tls client's ClientHello is well formed, so before the ServerHello that is the likely
  // cause; said as a guess, the likely cause first.
  if (alert === 'illegal_parameter' && stage.beforeServerHello) {
    return 'the server refused our ClientHello, most likely because it holds another key for this identity (or none), or binds it to another hash: OpenSSL before 3.4 (Node 20), GnuTLS and tlslite-ng send illegal_parameter, not decrypt_error (RFC 8446 §4.2.11.2), for a key they cannot verify, GnuTLS for an unknown identity too; its log says which';
  }
  // A binder is as long as its PSK's hash (RFC 8446 §4.2.11: 32 bytes for SHA-256, 48 for SHA-384). A server that binds
  // the identity's key to the other hash reads ours as the wrong length: OpenSSL (Node 20's node:tls, whose external
  // PSKs are SHA-256) aborts with decode_error ("bad extension" in tls_parse_ctos_psk), as the interop tests see. A
  // qkd-tls client's ClientHello is well formed, so before the ServerHello that is the likely cause; said as a guess.
  if (alert === 'decode_error' && stage.beforeServerHello) {
    return 'the server could not parse our ClientHello, most likely our PSK binder: the two sides bind this identity\'s key to different hashes, so the binder has the wrong length for it (OpenSSL and Node bind an external PSK to SHA-256; RFC 8446 §4.2.11); its log says which';
  }
  // An OpenSSL server (Node's node:tls too: 3.0 and 3.5 alike, as the interop tests see) that accepts none of the
  // offered PSKs (no key for the identity, or a key bound to a hash none of the offered suites use) goes on to
  // certificate authentication, and aborts with missing_extension because the ClientHello has no
  // signature_algorithms (RFC 8446 §4.2.3, §9.2). A qkd-tls client sends every extension a PSK handshake needs, so
  // before the ServerHello that is the likely cause; said as a guess.
  if (alert === 'missing_extension' && stage.beforeServerHello) {
    return 'the server accepted none of the PSKs we offered and wanted a certificate handshake instead (OpenSSL, so Node too, then asks for signature_algorithms, which a PSK-only client does not send, RFC 8446 §4.2.3): most likely it has no key for this identity, or binds it to another hash; its log says which';
  }
  // RFC 8446 §4.2.11: a server that knows none of the offered identities may abort with unknown_psk_identity.
  if (alert === 'unknown_psk_identity') {
    return 'the server has no key for any PSK identity we offered: check the identities on both sides, and that both or neither import the key with RFC 9258; its log says which it was offered (RFC 8446 §4.2.11)';
  }
  // RFC 8446 §6.2: handshake_failure, "unable to negotiate an acceptable set of security parameters". tlslite-ng sends
  // it for an unknown identity too ("Could not find acceptable PSK identity", as the interop tests see).
  if (alert === 'handshake_failure') {
    return 'the server found no acceptable cipher suite, key exchange mode or group, knew none of the PSK identities we offered, or could not get its key; its log says which (RFC 8446 §6.2)';
  }
  return undefined;
}
