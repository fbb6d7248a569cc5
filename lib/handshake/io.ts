/**
 * What the handshake state machines may do to their connection: send handshake messages, install traffic
 * keys, log secrets and report events. The connection implements it; the states hold no I/O of their own.
 */
import type { CryptoProvider } from '../crypto/provider.js';
import type { HandshakeMessageBytes } from '../record/handshake-joiner.js';
import type { SuiteInfo } from '../suites.js';
import type { ConnectionEvent, HandshakeInfo } from '../config/events.js';

export type KeyLogLabel =
  | 'CLIENT_EARLY_TRAFFIC_SECRET'
  | 'CLIENT_HANDSHAKE_TRAFFIC_SECRET'
  | 'SERVER_HANDSHAKE_TRAFFIC_SECRET'
  | 'CLIENT_TRAFFIC_SECRET_0'
  | 'SERVER_TRAFFIC_SECRET_0'
  | 'EXPORTER_SECRET'
  | 'EARLY_EXPORTER_SECRET';

/** Secrets the connection keeps after the handshake (KeyUpdate, exporters). */
export interface ApplicationSecrets {
  readonly suite: SuiteInfo;
  readonly clientSecret: Uint8Array;
  readonly serverSecret: Uint8Array;
  readonly exporterMasterSecret: Uint8Array;
}

export interface HandshakeIO {
  readonly crypto: CryptoProvider;
  /** Queues a handshake message under the current write keys. */
  sendHandshake(raw: Uint8Array): void;
  /** Queues a dummy change_cipher_spec record (middlebox compatibility, RFC 8446 §D.4). */
  sendChangeCipherSpec(): void;
  /** Queues 0-RTT application data under the current (early) write keys. */
  sendEarlyData(data: Uint8Array): void;
  /** Client after a HelloRetryRequest: what is sent from now on is unprotected again. */
  clearWriteKeys(): void;
  /** RFC 8449: the peer's record_size_limit (and ours, if we advertised one) now apply to protected records. */
  setPeerRecordSizeLimit(peerLimit: number, ownLimit: number | undefined): void;
  /** A KeyUpdate arrived (§4.6.3): update the read keys, and answer when `requestUpdate` is set. */
  keyUpdateReceived(requestUpdate: boolean): void;
  /** Protects what is sent from now on with `secret` (flushing what was queued under the old keys). */
  setWriteKeys(suite: SuiteInfo, secret: Uint8Array): void;
  /**
   * Removes protection from what is received from now on with `secret`. Fails with unexpected_message when a
   * handshake message is still partly received under the old keys (§5.1).
   */
  setReadKeys(suite: SuiteInfo, secret: Uint8Array): void;
  /** Server, 0-RTT rejected: drop records that fail to decrypt, up to `limit` bytes (§4.2.10). */
  skipUndecryptableRecords(limit: number): void;
  /** Server, after a HelloRetryRequest: drop application_data records, up to `limit` bytes (§4.2.10). */
  skipEarlyApplicationRecords(limit: number): void;
  /** Server, 0-RTT accepted: application data under the early keys counts against `limit` (§4.2.10). */
  acceptEarlyData(limit: number): void;
  /** Writes one NSS key-log line if key logging is on. */
  logSecret(label: KeyLogLabel, clientRandom: Uint8Array, secret: Uint8Array): void;
  emit(event: ConnectionEvent): void;
  /**
   * The handshake is complete: application keys are installed, application data may flow.
   * `resend` is rejected 0-RTT data to send again as ordinary application data.
   */
  complete(info: HandshakeInfo, secrets: ApplicationSecrets, resend?: Uint8Array): void;
}

/**
 * Every handshake state, by name (each names what it expects next). A union, so that comparing a state's name
 * with a misspelt or retired one does not compile.
 */
export type HandshakeStateName =
  // server (handshake/server.ts)
  | 'ExpectClientHello'
  | 'AwaitPsks'
  | 'ExpectSecondClientHello'
  | 'ExpectEndOfEarlyData'
  | 'ExpectClientFinished'
  // client (handshake/client.ts)
  | 'AwaitKeyShares'
  | 'ExpectServerHello'
  | 'ExpectEncryptedExtensions'
  | 'ExpectServerFinished'
  // both, while an asynchronous key agreement runs (handshake/key-agreement.ts)
  | 'AwaitSharedSecret'
  // both, once connected (handshake/common.ts)
  | 'ExpectPostHandshake';

/** One handshake state: named for the message it expects next. `handle` returns the next state. */
export interface HandshakeState {
  readonly name: HandshakeStateName;
  handle(io: HandshakeIO, message: HandshakeMessageBytes): HandshakeState;
  /** Wipes the secrets this state holds (the connection failed or was destroyed). */
  destroy?(): void;
  /**
   * Called before the connection sends a fatal alert while this state is current, whatever failed (this state's
   * handle, or the record layer): the state may change the write keys so that the peer can read the alert (a
   * client with 0-RTT data in flight, whose server may skip what is under the early keys, §4.2.10).
   */
  beforeAlert?(io: HandshakeIO): void;
}
