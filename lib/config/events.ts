/**
 * What a {@link Connection} reports to its owner, in order, through `takeEvents()`.
 */
import type { GroupName } from '../crypto/provider.js';
import type { TlsError } from '../errors.js';
import type { SupportedSuiteName } from '../suites.js';
import type { PskRequest } from '../psk/types.js';
import type { KexMode } from './options.js';

export type EarlyDataStatus = 'none' | 'accepted' | 'rejected';

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
  readonly alpn?: string;
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
  /** The peer sent close_notify: it will send no more data (we may still write). */
  | { readonly type: 'end' }
  /** A KeyUpdate took effect in one direction. */
  | { readonly type: 'key-update'; readonly direction: 'read' | 'write' }
  /** A fatal error: the alert was sent (error.remote false) or received (error.remote true). */
  | { readonly type: 'error'; readonly error: TlsError };
