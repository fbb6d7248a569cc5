/**
 * Node: accepting WebSocket connections whose binary messages carry TLS records (what a page using
 * `qkd-tls/websocket` sends), for a qkd-tls TLS server (`qkd-tls server --websocket`) or for the WebSocket ->
 * TCP bridge (lib/proxy/ws-bridge.ts). The WebSocket protocol itself is the `ws` package's.
 *
 * Limits, all on by default: the largest message (`maxMessageBytes`, 1 MiB: the peer is closed with 1009
 * beyond), the pages that may connect (`origins`: a browser always sends its page's Origin; a request with an
 * Origin not in the list is refused with 403 before the upgrade), the number of open connections, upgraded
 * or not (`maxConnections`), the time a connection may take to send its upgrade request (10 s for the
 * headers, 15 s for the request), and backpressure (a WebSocket is paused while what it delivered has not
 * been consumed). A text message is refused (closed with 1003, as the client transport does), never passed on.
 */
import { createServer as createHttpServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import { createWebSocketStream, WebSocketServer, type WebSocket } from 'ws';
import { checkCount } from '../config/options.js';
import { TEXT_MESSAGE_REFUSED } from './websocket.js';
import { observer, reportCallbackError, type CallbackErrorHandler } from '../callbacks.js';
import { clip, hostPortText } from '../codec/text.js';
import { TransportError } from '../errors.js';

export interface WebSocketListenOptions {
  readonly host: string;
  readonly port: number;
  /**
   * Origins (scheme://host:port) of the pages allowed to connect. A request whose Origin is not listed gets
   * 403; a request without Origin (not from a browser) is accepted. Default: any origin.
   */
  readonly origins?: readonly string[];
  /**
   * Largest WebSocket message accepted, in bytes: an integer from 1 to 2^31 - 1 (default 1 MiB). Anything else
   * is a RangeError: the `ws` package would take 0, NaN or 2^32 as no limit at all.
   */
  readonly maxMessageBytes?: number;
  /**
   * Most connections open at once (default 1000, as for the TCP listeners), counting every accepted TCP
   * connection: upgraded WebSockets and connections whose upgrade request has not (yet) come alike, so that
   * connections that never send one cannot pile up. It is what `maxConnections` means for the TCP listeners
   * (`qkd-tls server` sets net.Server.maxConnections; a proxy service counts its connections from accept,
   * handshakes included). A connection beyond it is closed at once, before a byte is read (the HTTP server,
   * `server`, emits 'drop'); the connections already open are not disturbed. An integer from 1, else a
   * RangeError (net.Server would take 0 or NaN as no limit).
   */
  readonly maxConnections?: number;
  /**
   * Receives what the connection handler (`onConnection`) or `route` threw, as a CallbackError: that connection is
   * closed (a request `route` threw on is refused with 400), the others are served (lib/callbacks.ts). Default: one
   * line on console.error. A WebSocket bridge also reports its `onConnection` observer's exceptions here.
   */
  readonly onCallbackError?: CallbackErrorHandler;
  /**
   * Told of each upgrade refused before it happened (403 for an Origin not allowed, the status `route` answered,
   * such as a bridge's 404 for a path that names no target): a page cannot see that status (its WebSocket only
   * fails), so a log of these is where the reason shows. An observer (lib/callbacks.ts): what it throws goes to
   * {@link onCallbackError} and changes nothing.
   */
  readonly onRefused?: (refusal: WebSocketRefusal) => void;
}

/** An upgrade request refused (see {@link WebSocketListenOptions.onRefused}); the path and origin are the peer's text, clipped. */
export interface WebSocketRefusal {
  readonly peer: string;
  readonly path: string;
  readonly origin?: string;
  readonly status: number;
  readonly reason: string;
}

/**
 * One accepted WebSocket: its bytes as a Duplex, and where it came from. The stream ends when the peer closes with
 * 1000 (normal) or 1005 (no code), and fails with a TransportError naming the code (after the messages that came
 * before it) on any other close: 1001 (going away), 1006 (the connection dropped without a Close frame), 1011 ...
 */
export interface AcceptedWebSocket {
  readonly stream: Duplex;
  readonly request: IncomingMessage;
  readonly peer: string;
  /**
   * Closes the WebSocket with a Close frame carrying `code` and `reason` (RFC 6455 §5.5.1, §7.4; a code `ws` may
   * send, a reason of at most 123 bytes), so that the peer learns why: what `stream.destroy()` cannot (it drops
   * the connection, which the peer sees as 1006 without a reason). Unless the code is 1000, the stream then fails.
   */
  close(code: number, reason: string): void;
}

export interface WebSocketListener {
  readonly server: Server;
  address(): AddressInfo;
  /** Stops accepting and closes every open WebSocket. */
  close(): Promise<void>;
}

/**
 * How long a listener that stops (`close()`) waits for its WebSockets to answer its Close frame (1001, going away)
 * before it drops them.
 */
export const CLOSE_GRACE_MS = 2000;

/** Default largest message: enough for the 64 KiB messages qkd-tls/websocket sends, and then some. */
export const DEFAULT_MAX_MESSAGE_BYTES = 1024 * 1024;

/**
 * How often the HTTP server looks for requests past their time (headersTimeout, requestTimeout). Node's
 * default, 30 s, would let a connection that sends nothing hold its place for up to 40 s instead of 10.
 */
const TIMEOUT_CHECK_MS = 1000;

/**
 * Listens for WebSocket connections on host:port and hands each one, as a byte Duplex (binary messages as
 * chunks, those that arrive together joined; ending it closes the WebSocket with 1000), to `onConnection`. `route` may refuse a request path
 * (returning an HTTP status) before the upgrade.
 */
export async function listenWebSocket(
  options: WebSocketListenOptions,
  onConnection: (ws: AcceptedWebSocket) => void,
  route: (request: IncomingMessage) => number | undefined = () => undefined,
): Promise<WebSocketListener> {
  // `ws` takes a maxPayload of 0 (or anything not above 0, NaN included) as "no limit", and net.Server a
  // maxConnections of 0 likewise: a bound given as 0, negative or not a number would silently be no bound at all.
  checkCount('listenWebSocket: maxMessageBytes', options.maxMessageBytes, 1, 2 ** 31 - 1);
  checkCount('listenWebSocket: maxConnections', options.maxConnections, 1);
  const maxMessageBytes = options.maxMessageBytes ?? DEFAULT_MAX_MESSAGE_BYTES;
  const maxConnections = options.maxConnections ?? 1000;
  const origins = options.origins ? new Set(options.origins.map(originOf)) : undefined;
  const onRefused = observer('onRefused', options.onRefused, options.onCallbackError);
  const http = createHttpServer({ connectionsCheckingInterval: TIMEOUT_CHECK_MS }, (_req, res) => {
    res.writeHead(426, { 'content-type': 'text/plain; charset=utf-8', upgrade: 'websocket', connection: 'close' });
    res.end('this endpoint speaks TLS over WebSocket only\n');
  });
  http.headersTimeout = 10_000;
  http.requestTimeout = 15_000;
  // Counted by the TCP server, from accept: a connection that has not sent its upgrade request takes a place too.
  http.maxConnections = maxConnections;
  const wss = new WebSocketServer({
    server: http,
    maxPayload: maxMessageBytes,
    perMessageDeflate: false, // TLS records do not compress; and no compression oracle
    clientTracking: true,
    verifyClient: (info: { origin: string; req: IncomingMessage }, done: (ok: boolean, code?: number, message?: string) => void) => {
      const origin = info.req.headers.origin;
      const refuse = (status: number, reason: string): void => {
        const { remoteAddress, remotePort } = info.req.socket;
        onRefused?.({ peer: hostPortText(remoteAddress, remotePort), path: clip(info.req.url ?? '', 200), ...(origin === undefined ? {} : { origin: clip(origin, 200) }), status, reason });
        done(false, status, reason);
      };
      if (origins && origin !== undefined && !origins.has(originOf(origin))) return refuse(403, 'origin not allowed');
      let status: number | undefined;
      try {
        status = route(info.req);
      } catch (e) {
        status = 400; // verifyClient runs inside the HTTP server's 'upgrade' event: a throw would end the process
        reportCallbackError('route', e, options.onCallbackError);
      }
      if (status !== undefined) return refuse(status, status === 404 ? 'no such target' : 'refused');
      done(true);
    },
  });
  // The WebSocketServer re-emits the HTTP server's 'error' events (e.g. EADDRINUSE from listen below), which the
  // listen promise reports: without a listener of its own, each would also be an uncaught exception.
  wss.on('error', () => {});
  wss.on('connection', (ws: WebSocket, request: IncomingMessage) => {
    ws.binaryType = 'nodebuffer';
    // Ending the stream closes the WebSocket; say why (1000, normal closure: RFC 6455 §7.4.1) rather than
    // sending a Close frame without a code (which the peer sees as 1005).
    const close = ws.close.bind(ws);
    ws.close = (code?: number, reason?: string | Buffer) => close(code ?? 1000, reason);
    const stream = createWebSocketStream(ws, { allowHalfOpen: true });
    filterMessages(ws);
    failOnAbnormalClose(ws, stream);
    closeAfterThePeer(ws, stream);
    // A failing WebSocket must not take the process down: the consumer sees 'close' (and its own errors).
    stream.on('error', () => stream.destroy());
    const peer = hostPortText(request.socket.remoteAddress, request.socket.remotePort);
    try {
      onConnection({ stream, request, peer, close: (code, reason) => ws.close(code, reason) });
    } catch (e) {
      // Thrown inside the HTTP server's 'upgrade' event, it would end the process: it ends this connection only.
      stream.destroy();
      reportCallbackError('onConnection', e, options.onCallbackError);
    }
  });
  await new Promise<void>((resolve, reject) => {
    http.once('error', reject);
    http.listen(options.port, options.host, () => {
      http.off('error', reject);
      resolve();
    });
  });
  return {
    server: http,
    address: () => http.address() as AddressInfo,
    close: () =>
      new Promise<void>((resolve) => {
        // RFC 6455 §7.4.1: 1001, the server is going away; terminate() sent no Close frame, and each page saw only
        // 1006 (abnormal closure) with no reason. The WebSockets that do not answer within CLOSE_GRACE_MS are dropped.
        for (const c of wss.clients) c.close(1001, 'server stopping');
        const cut = setTimeout(() => {
          for (const c of wss.clients) c.terminate();
        }, CLOSE_GRACE_MS);
        wss.close();
        http.close(() => {
          clearTimeout(cut);
          resolve();
        });
        http.closeAllConnections(); // the connections not upgraded (upgraded sockets are no longer the HTTP server's)
      }),
  };
}

/**
 * TLS records travel in binary messages: a text message is refused as the client transport refuses it
 * (TEXT_MESSAGE_REFUSED: close with 1003, RFC 6455 §7.4.1), and neither it nor anything after it reaches the
 * stream. `createWebSocketStream` pushes every message, text or binary, so its 'message' listener is put behind
 * a filter. The refusal takes the path `ws` takes for its own protocol errors (e.g. 1009): close with the code,
 * then 'error' on the WebSocket, on which the stream is destroyed with that error once the close handshake is
 * done (not at once, which would cut the Close frame off).
 *
 * The binary messages that arrive together (`ws` emits every message of one socket read at once) are joined
 * into one chunk, and empty ones dropped: the stream's highWaterMark counts bytes, so while TLS does not read
 * (a PSK lookup, an application that does not read) a peer sending 1-byte messages (7 bytes each on the wire)
 * had 16384 of them buffered, each a Buffer object of its own, plus every message still in the socket read that
 * crossed the mark (9362 in 64 KiB): about 2.7 MB of memory per connection for 16 KiB of data. Joined, a read is
 * one chunk, and the mark is reached after a read or two.
 */
function filterMessages(ws: WebSocket): void {
  const deliver = ws.listeners('message') as ((data: Buffer, isBinary: boolean) => void)[];
  ws.removeAllListeners('message');
  // createWebSocketStream listens for one 'error' only; a later one (say from the peer's next frame) must not
  // be an uncaught exception.
  ws.on('error', () => {});
  let refused = false;
  let pending: Buffer[] = [];
  const flush = (): void => {
    if (pending.length === 0) return;
    const data = pending.length === 1 ? pending[0] : Buffer.concat(pending);
    pending = [];
    for (const f of deliver) f.call(ws, data, true);
  };
  // What arrived before a protocol error (1009, 1002: 'error', on which createWebSocketStream destroys the stream
  // at once) or the close is delivered before it, as when each message was pushed on arrival.
  ws.prependListener('error', flush);
  ws.prependListener('close', flush);
  ws.on('message', (data: Buffer, isBinary: boolean) => {
    if (refused) return;
    if (isBinary) {
      if (data.length === 0) return;
      // After the messages of this read (they are emitted synchronously), before anything that follows them.
      if (pending.length === 0) queueMicrotask(flush);
      pending.push(data);
      return;
    }
    flush(); // what came before the text message, in order
    refused = true;
    ws.close(TEXT_MESSAGE_REFUSED.code, TEXT_MESSAGE_REFUSED.reason);
    ws.emit('error', new TransportError('ERR_QKD_TLS_WEBSOCKET_TEXT', `WebSocket: ${TEXT_MESSAGE_REFUSED.message}`));
  });
}

/**
 * How long a WebSocket whose stream has ended on our side stays open for the peer, counted from our end and again
 * from each message the peer sends: see {@link closeAfterThePeer}.
 */
export const HALF_CLOSED_GRACE_MS = 2000;

/**
 * A WebSocket has no half-close (RFC 6455 §1.4: a Close frame ends both directions), TCP has, and TLS relies on it:
 * each party sends close_notify before closing its write side (RFC 8446 §6.1), the side that ends first included.
 * createWebSocketStream closes the WebSocket as soon as our side of the stream ends, so a peer that had not ended
 * yet could send nothing more, its close_notify included: a qkd-tls page's `writable.close()` then rejected ("the
 * connection is closed") after a normal end, and the server (or the bridge's target) never saw the page's
 * close_notify (found by review). Now our end waits: the WebSocket is closed when the peer closes it (a qkd-tls
 * client closes it once both directions are over, lib/transport/streams.ts), or once it has sent nothing for
 * HALF_CLOSED_GRACE_MS. Our last messages are sent at once, as before; only the Close frame waits.
 */
function closeAfterThePeer(ws: WebSocket, stream: Duplex): void {
  /** Closes the WebSocket now (createWebSocketStream's own end of our side), while our end waits. */
  let closeNow: (() => void) | null = null;
  const final = stream._final.bind(stream);
  stream._final = (callback: (error?: Error | null) => void): void => {
    if (ws.readyState !== ws.OPEN) return final(callback);
    let timer: ReturnType<typeof setTimeout> | undefined;
    const go = (): void => {
      closeNow = null;
      clearTimeout(timer);
      ws.off('message', wait);
      ws.off('close', go);
      final(callback);
    };
    const wait = (): void => {
      clearTimeout(timer);
      timer = setTimeout(go, HALF_CLOSED_GRACE_MS);
    };
    closeNow = go;
    ws.on('message', wait);
    ws.once('close', go);
    wait();
  };
  // Destroyed without an error while our end waits (a TLS socket whose both directions are over lets its transport go):
  // the WebSocket gets its Close frame (1000) rather than createWebSocketStream's terminate() (1006, no frame), and the
  // stream is destroyed once the close handshake is over (ws bounds it: 30 s).
  const destroy = stream._destroy.bind(stream);
  stream._destroy = (error: Error | null, callback: (error?: Error | null) => void): void => {
    const close = closeNow;
    if (!close || error) return destroy(error, callback);
    ws.once('close', () => destroy(error, callback));
    close();
  };
}

/**
 * RFC 6455 §7.4.1: a close with 1000 (normal closure) or 1005 (no code) ends the stream; any other code fails it
 * with a TransportError that names the code, as the client transport fails its byte stream (websocket.ts), so that
 * a WebSocket that dropped (1006), went away (1001) or failed (1011) is not taken for one that finished: the
 * bridge passed each on to its TCP target as a clean FIN and logged it "closed" (found by review).
 * createWebSocketStream ends the stream on every close alike (push(null) in its 'close' listener, which runs after
 * this one): that end is replaced by the error, raised once the messages that came before it have been read.
 */
function failOnAbnormalClose(ws: WebSocket, stream: Duplex): void {
  ws.prependListener('close', (code: number, reason: Buffer) => {
    if (code === 1000 || code === 1005 || stream.destroyed) return;
    const text = reason.toString();
    const error = new TransportError('ERR_QKD_TLS_TRANSPORT_FAILED', `WebSocket closed (code ${code}${text ? `, ${clip(text)}` : ''})`);
    const fail = (): void => {
      if (!stream.destroyed) stream.destroy(error);
    };
    const push = stream.push.bind(stream);
    stream.push = (chunk: unknown, encoding?: BufferEncoding): boolean => {
      if (chunk !== null) return push(chunk, encoding);
      if (stream.readableLength === 0) fail();
      else {
        // What the stream still holds is read (flowing or not) through read(): fail once it is all out. As at a real
        // end, a read of more bytes than are left returns what is left (Readable answers null until more come, and no
        // more will: a reader of whole records, read(5) for a header, held its last bytes and the connection for good),
        // and a consumer waiting on 'readable' is woken (push(null) emits it; the replaced end did not).
        const read = stream.read.bind(stream);
        stream.read = (size?: number): unknown => {
          const data = read(size !== undefined && size > stream.readableLength ? undefined : size);
          if (stream.readableLength === 0) process.nextTick(fail);
          return data;
        };
        process.nextTick(() => {
          if (!stream.destroyed) stream.emit('readable');
        });
      }
      return false;
    };
  });
}

/**
 * An origin as a browser serializes it (RFC 6454 §6.1): scheme://host[:port], lower case, no path, no default
 * port; so `--origin http://127.0.0.1:8080/` or `HTTP://LOCALHOST:80` match what a page sends. Text that is not
 * a URL (e.g. "null") is compared as it is, in lower case.
 */
function originOf(text: string): string {
  try {
    const o = new URL(text).origin;
    return o === 'null' ? text.toLowerCase() : o;
  } catch {
    return text.toLowerCase();
  }
}
