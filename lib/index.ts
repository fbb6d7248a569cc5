/**
 * qkd-tls: TLS 1.3 for external pre-shared keys (RFC 8446, RFC 9258), in pure TypeScript.
 *
 * This entry point is runtime-neutral (browsers, Deno, Bun, Workers, Node): a sans-IO {@link Connection},
 * the pure-JavaScript crypto provider, PSK types and errors. Node sockets and servers are in `qkd-tls/node`;
 * WHATWG streams (Deno, Bun, Workers, browsers with a byte stream) in `qkd-tls/streams`; Node-only key
 * sources (key files, ETSI GS QKD 014 key managers, the key manager simulator) in `qkd-tls/qkd`.
 */
export { Connection, type ConnectionPhase } from './connection/connection.js';
export type { ClientOptions, ServerOptions, CommonOptions, KexMode, PskRequest, PskResolver } from './connection/config.js';
export type { ConnectionEvent, HandshakeInfo, EarlyDataStatus } from './connection/events.js';
export { TlsError, REASON_ALERT, type Reason } from './errors.js';
export * from './psk/index.js';
export type { CryptoProvider, HashName, AeadName, GroupName, RandomSource } from './crypto/provider.js';
export { nobleProvider, createNobleProvider } from './crypto/noble.js';
export { groupByName } from './crypto/groups.js';
export { SUITES, DEFAULT_SUITES, type SupportedSuiteName } from './suites.js';
export { AlertDescription, CipherSuite, NamedGroup } from './codec/enums.js';
