/**
 * qkd-tls for browsers and Workers (`qkd-tls/browser`): everything a page or a Worker needs, in one entry
 * point with no Node built-ins (a test bundles it with esbuild for platform=browser and checks its inputs):
 *
 *  - the sans-IO TLS 1.3 PSK core, the pure-JavaScript crypto provider, PSK types and the RFC 9258 importer
 *    (all of `qkd-tls`);
 *  - TLS over WHATWG streams (`tlsClientOverStreams`: a Worker's `connect()`, Deno, Bun; `tlsServerOverStreams`,
 *    the server side) and over WebSocket (a page, through `qkd-tls server --websocket` or `qkd-tls bridge`:
 *    `connectWebSocket`, then `tlsClientOverStreams` over it, so that a QKD key is taken only once the WebSocket
 *    is open; or `tlsClientOverWebSocket`, both in one call, for a key in hand);
 *  - the ETSI GS QKD 014 client on fetch (`Etsi014FetchClient`), to take QKD keys from a key manager that
 *    allows the page (CORS) or the Worker to call it, and the key sources over it (`Etsi014ClientSource`: a pool
 *    fetched ahead, pooled keys wiped when their lifetime ends, each key given to one handshake, the key-ID
 *    identity built by `takePsks`; `Etsi014ServerSource` and `releaseAfter` for a server over the streams
 *    transport in Deno or Bun), with no Node built-in (lib/qkd/etsi014-source.ts);
 *  - the annotated handshake trace (`createTracer`, the dissectors and their plain-data `TraceEvent` trees),
 *    to show every record and handshake message, field by field, in a page;
 *  - `parseKeyFile`, the key file's parser (lib/psk/key-file.ts), for a key file's text in hand (fetched,
 *    pasted, bundled); reading the file itself (`fileKeySource`) is Node-only, in `qkd-tls/qkd`.
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
export { connStreams, type ConnLike, type ConnStreamsOptions } from './transport/conn-streams.js';
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
export {
  Etsi014ClientSource,
  Etsi014ServerSource,
  releaseAfter,
  type Etsi014ClientSourceOptions,
  type Etsi014KeyClient,
  type Etsi014ServerSourceOptions,
  type Etsi014SourceEvent,
  type RefusalReason,
} from './qkd/etsi014-source.js';
export { parseKeyFile } from './psk/key-file.js';
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
