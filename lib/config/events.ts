/**
 * What a {@link Connection} reports to its owner, in order, through `takeEvents()`.
 */
import type { GroupName } from '../crypto/provider.js';
import type { TlsError } from '../errors.js';
import type { SupportedSuiteName } from '../suites.js';
import type { PskRequest } from '../psk/types.js';
import type { KexMode } from './options.js';

export type EarlyDataStatus = 'none' | 'accepted' | 'rejected';

/**
 * Why a server rejected the 0-RTT data a client sent (RFC 8446 §4.2.10, §8):
 * - `disabled`: the server accepts none (maxEarlyDataSize 0, the default);
 * - `not-first-psk`: the server selected another PSK than the client's first, the one its early data is under;
 * - `hello-retry`: the server asked for another ClientHello (HelloRetryRequest), and 0-RTT goes only with the first;
 * - `not-provisioned`: the negotiated cipher suite or ALPN protocol is not the one provisioned with the PSK for
 *   early data (Psk.earlyDataSuite, Psk.earlyDataAlpn);
 * - `replay`: everything else allowed it, but the server's replay guard has seen this ClientHello's 0-RTT
 *   accepted before (a recorded first flight sent again), or can record no more ClientHellos (its register is
 *   full): §8, §8.2. The handshake goes on without 0-RTT either way.
 */
export type EarlyDataRejection = 'disabled' | 'not-first-psk' | 'hello-retry' | 'not-provisioned' | 'replay';

/** A summary of a completed handshake (the CLI prints it as JSON). */
export interface HandshakeInfo {
  readonly version: 'TLSv1.3';
  readonly suite: SupportedSuiteName;
  readonly kex: KexMode;
  /** The (EC)DHE group, or null for psk_ke. */
  readonly group: GroupName | null;
  /** The selected PSK identity, as text when printable (else hex). */
  readonly identity: string;
  /** The selected PSK identity's bytes and its index among those offered. */
  readonly identityBytes: Uint8Array;
  readonly identityIndex: number;
  /** The PSK's label (e.g. a QKD key ID), if it had one. */
  readonly pskLabel?: string;
  readonly earlyData: EarlyDataStatus;
  /**
   * On a server whose `earlyData` is 'rejected': why ({@link EarlyDataRejection}; 'replay' for a ClientHello whose
   * 0-RTT was accepted before, RFC 8446 §8). Absent otherwise, and always on a client (a server does not say why).
   */
  readonly earlyDataRejection?: EarlyDataRejection;
  /**
   * On a client whose `earlyData` is 'rejected': whether its 0-RTT data was sent again as ordinary data after the
   * handshake (`resendRejectedEarlyData` and the PSK's `earlyDataAlpn` agreed, RFC 8446 §4.2.10). When false, the
   * data never reached the server: send it again yourself if it should. Absent otherwise, and always on a server.
   */
  readonly earlyDataResent?: boolean;
  /** The ALPN protocol agreed: one of this endpoint's own `alpn` list (a server's) or offered list (a client's). */
  readonly alpn?: string;
  /**
   * The client's server_name (SNI) host name. On a server it is the name the client sent, checked (RFC 6066 §3):
   * an ASCII DNS host name of at most 253 bytes, lowercased (RFC 4343 §3), without the trailing dot a client may
   * send (any other name fails the handshake with illegal_parameter, ServerNameNotHostName; an IP literal is taken
   * as no name). On a client it is the name as sent, when the server acknowledged it: the `serverName` option
   * without the trailing dot of a fully qualified name (RFC 6066 §3).
   */
  readonly serverName?: string;
  /** True when a HelloRetryRequest was part of the handshake. */
  readonly helloRetry: boolean;
}

export type ConnectionEvent =
  /** The handshake completed: application data may flow. */
  | { readonly type: 'handshake'; readonly info: HandshakeInfo }
  /** Application data from the peer (early is true for accepted 0-RTT data on a server). */
  | { readonly type: 'data'; readonly data: Uint8Array; readonly early: boolean }
  /** Client: the server's answer to our 0-RTT data. */
  | { readonly type: 'early-data'; readonly status: 'accepted' | 'rejected' }
  /** Server: the PSKs for these identities are needed; answer with `providePsks`. */
  | { readonly type: 'psk-request'; readonly request: PskRequest }
  /**
   * The handshake waits for an asynchronous key agreement (Connection.pendingKeyAgreement): run `request` and
   * answer with `provideKeyAgreement` or `failKeyAgreement`.
   */
  | { readonly type: 'key-agreement'; readonly request: KeyAgreementRequest }
  /** The peer sent close_notify: it will send no more data (we may still write). */
  | { readonly type: 'end' }
  /** A KeyUpdate took effect in one direction. */
  | { readonly type: 'key-update'; readonly direction: 'read' | 'write' }
  /** A fatal error: the alert was sent (error.remote false) or received (error.remote true). */
  | { readonly type: 'error'; readonly error: TlsError };

/** Which key-exchange step a handshake waits for. */
export type KeyAgreementStep =
  /** Client: its key share(s), before a ClientHello (KeyExchangeGroup.start). */
  | 'start'
  /** Server: its key share and the shared secret, from the client's share (KeyExchangeGroup.respond). */
  | 'respond'
  /** Client: the shared secret, from the server's share (ClientKeyShare.complete). */
  | 'complete';

/**
 * A key agreement the handshake waits for (Connection.pendingKeyAgreement; lib/handshake/key-agreement.ts). The
 * transport calls {@link run} and
 * hands what it resolves with to Connection.provideKeyAgreement, or what it rejects with, and this request, to
 * Connection.failKeyAgreement(error, request). The work has already started when the request appears (the
 * private key was made from the randomness, which the handshake has wiped since; WebCrypto key shares keep a copy
 * only for their first use, in case the runtime lacks the algorithm); run() only gives its outcome, the same
 * promise on every call.
 */
export interface KeyAgreementRequest {
  readonly step: KeyAgreementStep;
  /** The groups concerned: several only for a first ClientHello that carries shares for several groups. */
  readonly groups: readonly GroupName[];
  run(): Promise<KeyAgreementResult>;
}

/** What {@link KeyAgreementRequest.run} resolves with: opaque, for Connection.provideKeyAgreement only. */
export interface KeyAgreementResult {
  /** The request this answers (an answer to any other request is refused). */
  readonly request: KeyAgreementRequest;
}

