/**
 * A WebSocket has no half-close (RFC 6455 §1.4: a Close frame ends both directions), TCP has. When the server side
 * ends first — a TLS server over the Node listener that sends its last data and close_notify, or a bridge whose TCP
 * target does — the listener closed the WebSocket at once, so the page could not send its own close_notify (RFC 8446
 * §6.1: each party sends one before closing its write side): the page's `writable.close()` rejected with "WebSocket:
 * the connection is closed" after a normal end, and the server never saw the page's close_notify (found by review).
 * The listener now keeps the WebSocket open after its own end until the peer closes it (a qkd-tls page does once its
 * close_notify is sent), or until the peer has been silent for a grace period.
 */
import * as net from 'node:net';
import t from 'tap';
import { WebSocket as WsClient } from 'ws';
import { nobleProvider } from '../lib/crypto/noble.js';
import { startWebSocketBridge } from '../lib/proxy/ws-bridge.js';
import { createServer, type QkdTlsSocket } from '../lib/transport/node.js';
import { tlsClientOverStreams } from '../lib/transport/streams.js';
import { webSocketByteStreams } from '../lib/transport/websocket.js';
import { listenWebSocket, type WebSocketListener } from '../lib/transport/ws-server.js';
import { type Tap, withTimeout } from './helpers/peers.js';
import { WAIT } from './helpers/runtimes.js';

const psk = { identity: new TextEncoder().encode('client1'), secret: new Uint8Array(32).fill(1), hash: 'SHA-256' as const };

/** A `ws` WebSocket, open; `closed` resolves with the code it closed with. */
async function openWebSocket(url: string): Promise<{ ws: WsClient; closed: Promise<number> }> {
  const ws = new WsClient(url);
  ws.on('error', () => {});
  const closed = new Promise<number>((r) => ws.once('close', (c: number) => r(c)));
  await withTimeout(new Promise((r) => ws.once('open', r)), WAIT, 'the WebSocket to open');
  return { ws, closed };
}

/**
 * A qkd-tls server over the Node listener that says "bye" and ends at once; `serverClosed` resolves, for each
 * connection, with whether it had the page's close_notify when it closed (and whether it closed on an error).
 */
async function byeServer(t: Tap): Promise<{ url: string; serverClosed: Promise<{ peerClosed: boolean; hadError: boolean }>[] }> {
  const server = createServer({ crypto: nobleProvider, psks: [psk] });
  const serverClosed: Promise<{ peerClosed: boolean; hadError: boolean }>[] = [];
  const listener: WebSocketListener = await listenWebSocket({ host: '127.0.0.1', port: 0 }, ({ stream }) => {
    const s: QkdTlsSocket = server.accept(stream);
    s.on('error', () => {});
    serverClosed.push(new Promise((r) => s.once('close', (hadError: boolean) => r({ peerClosed: s.connection?.peerClosed ?? false, hadError }))));
    s.once('secure', () => s.end('bye'));
    s.resume();
  });
  t.teardown(() => listener.close());
  return { url: `ws://127.0.0.1:${listener.address().port}/`, serverClosed };
}

/** A page: a qkd-tls client over a `ws` WebSocket. It reads to the end, then closes its side; says how each went. */
async function page(url: string): Promise<{ text: string; peerClosed: boolean; close: string; code: number }> {
  const { ws, closed: code } = await openWebSocket(url);
  const tls = tlsClientOverStreams(webSocketByteStreams(ws as unknown as WebSocket), { crypto: nobleProvider, psks: [psk] });
  await withTimeout(tls.handshake, WAIT, 'the handshake');
  let text = '';
  for await (const chunk of tls.readable) text += new TextDecoder().decode(chunk);
  const peerClosed = tls.connection.peerClosed;
  const close = await withTimeout(
    tls.writable.close().then(
      () => 'closed',
      (e: Error) => `rejected: ${e.message}`,
    ),
    WAIT,
    'the page to close its side',
  );
  return { text, peerClosed, close, code: await withTimeout(code, WAIT, 'the WebSocket to close') };
}

t.test('a TLS server over the listener ends first: the page still sends its close_notify, and both sides close cleanly', async (t) => {
  const { url, serverClosed } = await byeServer(t);
  const result = await page(url);
  t.same(result, { text: 'bye', peerClosed: true, close: 'closed', code: 1000 }, "the page read all, got the server's close_notify, and closed its side");
  t.same(await withTimeout(serverClosed[0]!, WAIT, 'the server socket to close'), { peerClosed: true, hadError: false }, "the server got the page's close_notify");
});

t.test('the bridge: a TLS target that ends first still gets the close_notify of the page', async (t) => {
  // The target: a qkd-tls server over TCP that says bye and ends.
  const server = createServer({ crypto: nobleProvider, psks: [psk] }, (s) => {
    s.on('error', () => {});
    s.end('bye');
    s.resume();
  });
  const outcome: Promise<{ peerClosed: boolean }> = new Promise((r) =>
    server.on('secureConnection', (s: QkdTlsSocket) => {
      let peerClosed = false;
      s.on('end', () => (peerClosed = s.connection?.peerClosed ?? false));
      s.once('close', () => r({ peerClosed }));
    }),
  );
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => new Promise<void>((r) => server.close(() => r())));
  const bridge = await startWebSocketBridge({ host: '127.0.0.1', port: 0, allow: [{ host: '127.0.0.1', port: (server.address() as net.AddressInfo).port }] });
  t.teardown(() => bridge.close());
  const result = await page(`ws://127.0.0.1:${bridge.address().port}/`);
  t.same(result, { text: 'bye', peerClosed: true, close: 'closed', code: 1000 }, 'the page closed its side cleanly');
  t.same(await withTimeout(outcome, WAIT, 'the target socket to close'), { peerClosed: true }, "the target got the page's close_notify");
});

t.test('a page that never closes its side: the WebSocket is closed normally (1000) once the page has been silent for the grace period', async (t) => {
  const { HALF_CLOSED_GRACE_MS } = await import('../lib/transport/ws-server.js');
  const { ws, closed } = await openWebSocket((await byeServer(t)).url);
  const tls = tlsClientOverStreams(webSocketByteStreams(ws as unknown as WebSocket), { crypto: nobleProvider, psks: [psk] });
  let text = '';
  for await (const chunk of tls.readable) text += new TextDecoder().decode(chunk);
  t.equal(text, 'bye');
  // The listener must not wait for good, nor drop the page without a Close frame (1006). (The bound is a hang
  // catcher: the grace period and then some.)
  t.equal(await withTimeout(closed, HALF_CLOSED_GRACE_MS + WAIT, 'the listener to close the WebSocket'), 1000, 'closed with 1000, a Close frame');
});

t.test("a page that sends its close_notify but keeps the WebSocket open: the server's TLS socket lets its transport go, and the page still gets a Close frame (1000)", async (t) => {
  const { url, serverClosed } = await byeServer(t);
  const { ws, closed } = await openWebSocket(url);
  // The page's byte streams never close the WebSocket themselves (a page of another library may not).
  const streams = webSocketByteStreams(ws as unknown as WebSocket);
  const reader = streams.readable.getReader();
  const readable = new ReadableStream<Uint8Array>({
    async pull(c) {
      const { value, done } = await reader.read();
      if (done) c.close();
      else c.enqueue(value);
    },
    cancel() {}, // (the WebSocket's own readable closes the WebSocket when cancelled)
  });
  const keepOpen = { ...streams, readable, close: () => {} };
  const tls = tlsClientOverStreams(keepOpen, { crypto: nobleProvider, psks: [psk] });
  let text = '';
  for await (const chunk of tls.readable) text += new TextDecoder().decode(chunk);
  await withTimeout(tls.writable.close(), WAIT, 'the page to close its side');
  // A message after it (ignored by TLS, RFC 8446 §6.1) keeps the listener's grace period going past the moment the
  // server's TLS socket, both directions over, destroys its transport (2 s after the close_notify, lib/transport/node.ts):
  // that destroy is what closes the WebSocket here, and it sent no Close frame (1006) while our end waited.
  await new Promise((r) => setTimeout(r, 500));
  ws.send(Buffer.of(0));
  t.equal(text, 'bye');
  t.same(await withTimeout(serverClosed[0]!, WAIT, 'the server socket to close'), { peerClosed: true, hadError: false }, "the server got the page's close_notify");
  t.equal(await withTimeout(closed, WAIT, 'the WebSocket to close'), 1000, 'closed with a Close frame (1000), not dropped (1006)');
});
