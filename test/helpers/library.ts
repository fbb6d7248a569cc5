/**
 * qkd-tls's own endpoints for the interoperability tests (test/interop-*.test.ts): an echo server and a
 * client past its handshake, both on 127.0.0.1 with the peers' PSK, torn down with the test, every wait
 * bounded.
 */
import { fromHex, utf8 } from '../../lib/codec/bytes.js';
import type { Psk } from '../../lib/psk/types.js';
import { connect, createServer, type ConnectOptions, type QkdTlsServer, type QkdTlsSocket, type ServerTransportOptions } from '../../lib/transport/node.js';
import { once, PSK_HEX, PSK_IDENTITY, type TestLike, withTimeout } from './peers.js';

/** The PSK the peers are started with (PSK_HEX, PSK_IDENTITY), bound to SHA-256 as OpenSSL and GnuTLS bind it. */
export const PEER_PSK: Psk = { identity: utf8(PSK_IDENTITY), secret: fromHex(PSK_HEX), hash: 'SHA-256' };

/** How long a library endpoint may take to listen or to complete its handshake. */
export const LIBRARY_WAIT = 10_000;

/** A qkd-tls echo server on a free port; `sockets` holds each connection's socket, in order. */
export async function libraryEchoServer(
  tt: TestLike,
  options: Partial<ServerTransportOptions> = {},
  wait = LIBRARY_WAIT,
): Promise<{ server: QkdTlsServer; port: number; sockets: QkdTlsSocket[] }> {
  const sockets: QkdTlsSocket[] = [];
  const server = createServer({ psks: [PEER_PSK], ...options }, (socket) => {
    sockets.push(socket);
    socket.pipe(socket);
  });
  tt.teardown(() => {
    server.destroyAll();
    server.close();
  });
  await withTimeout(new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve)), wait, 'the server to listen');
  return { server, port: server.address().port, sockets };
}

/** A qkd-tls client connected to `port` and past its handshake. */
export async function libraryClient(tt: TestLike, port: number, options: Partial<ConnectOptions> = {}, wait = LIBRARY_WAIT): Promise<QkdTlsSocket> {
  const socket = connect({ host: '127.0.0.1', port, psks: [PEER_PSK], ...options });
  tt.teardown(() => socket.destroy());
  await once(socket, 'secureConnect', wait);
  return socket;
}
