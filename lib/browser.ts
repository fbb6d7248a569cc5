/**
 * qkd-tls for browsers and Workers (`qkd-tls/browser`): everything a page or a Worker needs, in one entry
 * point with no Node built-ins (a test bundles it with esbuild for platform=browser and checks its inputs):
 *
 *  - the sans-IO TLS 1.3 PSK core, the pure-JavaScript crypto provider, PSK types and the RFC 9258 importer
 *    (all of `qkd-tls`);
 *  - TLS over WHATWG streams (`tlsClientOverStreams`: a Worker's `connect()`, Deno, Bun) and over WebSocket
 *    (`tlsClientOverWebSocket`: a page, through `qkd-tls server --websocket` or `qkd-tls bridge`);
 *  - the ETSI GS QKD 014 client on fetch (`Etsi014FetchClient`), to take QKD keys from a key manager that
 *    allows the page (CORS) or the Worker to call it;
 *  - the annotated handshake trace (`createTracer`, the dissectors and their plain-data `TraceEvent` trees),
 *    to show every record and handshake message, field by field, in a page.
 */
export * from './index.js';
export {
  tlsClientOverStreams,
  tlsServerOverStreams,
  type ByteStreamPair,
  type StreamServerOptions,
  type StreamTransportOptions,
  type TlsStreams,
} from './transport/streams.js';
export { runKeyAgreement } from './transport/key-agreement.js';
export {
  connectWebSocket,
  MAX_MESSAGE_BYTES,
  tlsClientOverWebSocket,
  webSocketByteStreams,
  type WebSocketByteStreams,
  type WebSocketTransportOptions,
} from './transport/websocket.js';
export { Etsi014Error, Etsi014FetchClient, type Etsi014FetchClientOptions, type Etsi014Key } from './qkd/etsi014-fetch.js';
// Named, not `export *`: the RecordTrace/RecordTraceHook types come with './index.js' already.
export {
  createTracer,
  dissectAlert,
  dissectHandshake,
  dissectRecord,
  formatTraceEvent,
  messageName,
  secretEvent,
  traceEventJson,
  type ExtensionContext,
  type TraceEvent,
  type TraceNode,
} from './trace/index.js';
