/**
 * qkd-tls: TLS 1.3 for external pre-shared keys (RFC 8446, RFC 9258), in pure TypeScript.
 *
 * This entry point is the runtime-neutral core (browsers, Deno, Bun, Workers, Node): a sans-IO {@link Connection},
 * its options and events, the pure-JavaScript crypto provider, PSKs (the RFC 9258 importer, key-source interfaces,
 * the static source) and errors. Node sockets, servers and the node:crypto provider are in `qkd-tls/node`; WHATWG
 * streams (Deno, Bun, Workers, browsers with a byte stream) in `qkd-tls/streams`; TLS over WebSocket in
 * `qkd-tls/websocket`; key sources that do I/O (key files, ETSI GS QKD 014 key managers) in `qkd-tls/qkd`;
 * everything a page or a Worker needs (this core, both transports, the ETSI 014 client on fetch and its key
 * sources) in `qkd-tls/browser`; the proxy (model 2) in `qkd-tls/proxy`; the annotated handshake trace in
 * `qkd-tls/trace`; the key manager simulator in `qkd-tls/kme` and the QKD network simulator in `qkd-tls/network`.
 */
export { Connection, type ConnectionPhase } from './connection/connection.js';
export { DEFAULT_GROUPS, MAX_ALPN_NAME_BYTES, MAX_HOST_NAME_BYTES, MAX_SERVER_NAME_BYTES, serverNameProblem, type ClientOptions, type ServerOptions, type CommonOptions, type KexMode } from './config/options.js';
export type { ConnectionEvent, HandshakeInfo, EarlyDataStatus, EarlyDataRejection, KeyAgreementRequest, KeyAgreementResult, KeyAgreementStep } from './config/events.js';
export {
  createEarlyDataReplayGuard,
  DEFAULT_REPLAY_GUARD_ENTRIES,
  REPLAY_GUARD_KEY_BYTES,
  type EarlyDataReplayGuard,
  type BoundedEarlyDataReplayGuard,
  type EarlyDataReplayGuardOptions,
} from './config/anti-replay.js';
export { TlsError, REASON_ALERT, type Reason, TransportError, TRANSPORT_ERROR_CODES, type TransportErrorCode } from './errors.js';
export * from './psk/index.js';
export type { CryptoProvider, HashName, AeadName, GroupName, RandomSource, AsyncKeyExchangeGroup, AsyncClientKeyShare } from './crypto/provider.js';
export { nobleProvider, createNobleProvider } from './crypto/noble.js';
export {
  withWebCryptoKeyShares,
  isWebCryptoKeyShareProvider,
  type WebCryptoKeyShareProvider,
  type WebCryptoKeySharesOptions,
  type WebCryptoGroupName,
  type KeySharePath,
} from './crypto/webcrypto.js';
export { GROUP_SPECS, groupByName } from './crypto/groups.js';
export { SUITES, DEFAULT_SUITES, type SupportedSuiteName } from './suites.js';
export { AlertDescription, CipherSuite, NamedGroup } from './codec/enums.js';
export { clip, fieldText, jsonText } from './codec/text.js';
export type { RecordTrace, RecordTraceHook } from './record/trace-hook.js';
export { MAX_PADDING_BLOCK } from './record/padding.js';
export { CallbackError, type CallbackErrorHandler } from './callbacks.js';
