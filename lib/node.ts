/**
 * qkd-tls/node: TLS 1.3 with external PSKs over Node TCP sockets — a client socket and a server that behave
 * like `node:tls`'s, the crypto provider backed by Node's own OpenSSL, and the TCP half-close helpers the
 * CLI and the proxy share.
 *
 * ```ts
 * import { connect, createServer } from 'qkd-tls/node';
 * const server = createServer({ psks: [psk] }, (socket) => socket.pipe(socket)).listen(8443);
 * const socket = connect({ port: 8443, psks: [psk] }, () => socket.end('hello'));
 * ```
 */
export * from './transport/node.js';
export { runKeyAgreement } from './transport/key-agreement.js';
export { createNodeProvider, nodeProvider, type NodeProviderOptions } from './crypto/node.js';
export { confirmNotReset, endedBeforeAByte, resetSocket } from './transport/tcp-end.js';
export { listenWebSocket, DEFAULT_MAX_MESSAGE_BYTES, type AcceptedWebSocket, type WebSocketListener, type WebSocketListenOptions, type WebSocketRefusal } from './transport/ws-server.js';
