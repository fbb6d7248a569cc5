/**
 * A WebSocket -> TCP bridge (as websockify): lets a page, which cannot open TCP sockets, reach a TLS-PSK
 * server. The page runs TLS itself (qkd-tls/websocket) and the bridge relays the bytes — ciphertext only —
 * between each WebSocket and a new TCP connection.
 *
 * A bridge that connects wherever a URL says is an open relay (to every host its network can reach), so the
 * targets come from an allow-list fixed when it starts, never from the request alone. The request path may
 * choose among them: `ws://bridge/HOST:PORT` for a listed HOST:PORT, or `ws://bridge/` for the first one;
 * any other path is refused with 404 before the upgrade. A page's Origin may be restricted too (`origins`).
 *
 * Ends: the TCP server's FIN closes the WebSocket (code 1000) once everything it sent has been relayed and the page
 * has closed its side too, or been silent for 2 s (ws-server.ts: closeAfterThePeer, so that the page's close_notify
 * still reaches the target). A WebSocket has no half-close, so a client closes it only when it expects nothing more
 * — qkd-tls/websocket waits for the server's close_notify and the close that follows — and its close ends the TCP write side;
 * what the target still sends then has nowhere to go, so the TCP connection is dropped once that is written. Aborts go
 * across too: a WebSocket closed with any code but 1000 or 1005 (1006: its connection dropped) resets the TCP
 * connection, and a target that fails (refused, reset, no connection in time) closes the WebSocket with 1014 and a
 * reason. Backpressure both ways (a slow TCP reader pauses the WebSocket and the reverse); messages are bounded
 * (`maxMessageBytes`).
 */
import type { IncomingMessage } from 'node:http';
import * as net from 'node:net';
import { checkHostPort, checkTimerMs } from '../config/options.js';
import { resetSocket } from '../transport/tcp-end.js';
import { listenWebSocket, type WebSocketListenOptions, type WebSocketListener } from '../transport/ws-server.js';
import { observer } from '../callbacks.js';
import { DEFAULT_IDLE_TIMEOUT_MS } from './proxy.js';
import { hostPortText } from '../codec/text.js';

export interface BridgeTarget {
  readonly host: string;
  readonly port: number;
}

export interface WebSocketBridgeOptions extends WebSocketListenOptions {
  /** The TCP servers the bridge may connect to (at least one); the first is the default. */
  readonly allow: readonly BridgeTarget[];
  /** Give up connecting to a target after this many milliseconds (default 10000; from 1 to 2^31 - 1, else a RangeError). */
  readonly connectTimeoutMs?: number;
  /**
   * Cut a connection after this many milliseconds without a byte in either direction (default 300000, five
   * minutes, as the proxy's {@link DEFAULT_IDLE_TIMEOUT_MS}; 0: never; at most 2^31 - 1, else a RangeError): the page's
   * WebSocket is closed with 1001 and the TCP connection reset. Without it a connection whose page and target both
   * stay silent (a target with no timeout of its own, such as openssl s_server) was held forever, and enough of
   * them (`maxConnections`) stopped the bridge from serving anyone else.
   */
  readonly idleTimeoutMs?: number;
  /**
   * Called once per relayed connection when it ends (never with payload bytes). An observer (lib/callbacks.ts):
   * what it throws goes to `onCallbackError` and changes nothing.
   */
  readonly onConnection?: (record: BridgeRecord) => void;
}

export interface BridgeRecord {
  readonly peer: string;
  readonly target: string;
  readonly bytesUp: number;
  readonly bytesDown: number;
  /** closed: both sides ended normally; failed: a connect failure, a reset, an error or the idle timeout (`message`). */
  readonly end: 'closed' | 'failed';
  readonly message?: string;
}

/** Starts the bridge; `address()` tells the port when 0 was asked for. */
export async function startWebSocketBridge(options: WebSocketBridgeOptions): Promise<WebSocketListener> {
  if (options.allow.length === 0) throw new TypeError('WebSocket bridge: at least one allowed target is required');
  checkTimerMs('WebSocket bridge: connectTimeoutMs', options.connectTimeoutMs, 1);
  checkTimerMs('WebSocket bridge: idleTimeoutMs', options.idleTimeoutMs, 0);
  const limits = { connectTimeoutMs: options.connectTimeoutMs ?? 10_000, idleTimeoutMs: options.idleTimeoutMs ?? DEFAULT_IDLE_TIMEOUT_MS };
  // Unchecked, a port out of range made every connection to that target fail with net.connect's throw, reported
  // as if the onConnection callback had thrown.
  options.allow.forEach((t, i) => checkHostPort(`WebSocket bridge: allow[${i}]`, t, 1));
  const byName = new Map(options.allow.map((t) => [targetName(t), t]));
  const pick = (req: IncomingMessage): BridgeTarget | undefined => {
    let path: string;
    try {
      path = decodeURIComponent((req.url ?? '/').split('?')[0]).replace(/^\/+/, '');
    } catch {
      return undefined; // a malformed %-escape names no target (404), it must not throw out of the upgrade
    }
    return path === '' ? options.allow[0] : byName.get(path.toLowerCase());
  };
  const onConnection = observer('onConnection', options.onConnection, options.onCallbackError);
  return listenWebSocket(
    options,
    ({ stream, request, peer, close }) => {
      const target = pick(request)!;
      relay(stream, close, target, peer, limits, onConnection);
    },
    (req) => (pick(req) ? undefined : 404),
  );
}

/** `host:port` as the allow-list and the URL path name a target (IPv6 in brackets). */
export function targetName(t: BridgeTarget): string {
  return hostPortText(t.host, t.port).toLowerCase();
}

/**
 * The close code for a page whose target failed (no connection, a reset, an error): 1014, Bad Gateway, from the IANA
 * WebSocket Close Code Number registry (RFC 6455 §11.7), as an HTTP proxy answers 502. The bridge dropped the
 * WebSocket instead, and the page saw 1006 with no reason.
 */
export const TARGET_FAILED_CLOSE = { code: 1014, reason: 'bridge: the TCP target failed' } as const;

/** The close for a connection past its idle timeout: 1001, the bridge going away from it (RFC 6455 §7.4.1). */
export const IDLE_CLOSE = { code: 1001, reason: 'bridge: idle timeout' } as const;

function relay(
  ws: import('node:stream').Duplex,
  closeWebSocket: (code: number, reason: string) => void,
  target: BridgeTarget,
  peer: string,
  { connectTimeoutMs, idleTimeoutMs }: { readonly connectTimeoutMs: number; readonly idleTimeoutMs: number },
  onConnection: ((r: BridgeRecord) => void) | undefined,
): void {
  const tcp = net.connect({ host: target.host, port: target.port, allowHalfOpen: true });
  let up = 0;
  let down = 0;
  let finished = false;
  /**
   * On a failure the TCP target is reset, and the page told why with a Close frame (`tell`: its answer, or ws's close
   * timeout, then ends the stream); without `tell` (the WebSocket failed itself, and is closed already) it is dropped.
   */
  const finish = (end: 'closed' | 'failed', message?: string, tell?: { readonly code: number; readonly reason: string }): void => {
    if (finished) return;
    finished = true;
    clearTimeout(timer);
    clearTimeout(idle);
    if (end === 'failed') {
      // Not resetAndDestroy() alone: while still connecting it waits for the connection (the connect timeout
      // would not stop the attempt, and a late connection would be made only to be reset).
      resetSocket(tcp);
      if (tell) closeWebSocket(tell.code, tell.reason);
      else ws.destroy();
    }
    onConnection?.({ peer, target: targetName(target), bytesUp: up, bytesDown: down, end, ...(message ? { message } : {}) });
  };
  const timer = setTimeout(() => finish('failed', `no TCP connection to ${targetName(target)} within ${connectTimeoutMs} ms`, TARGET_FAILED_CLOSE), connectTimeoutMs);
  tcp.once('connect', () => clearTimeout(timer));
  // No byte either way for idleTimeoutMs (counted from the upgrade, the connect included): cut.
  const idle = idleTimeoutMs > 0 ? setTimeout(() => finish('failed', `idle: no data in either direction for ${idleTimeoutMs} ms`, IDLE_CLOSE), idleTimeoutMs) : undefined;
  ws.on('data', (b: Buffer) => {
    up += b.length;
    idle?.refresh();
  });
  tcp.on('data', (b: Buffer) => {
    down += b.length;
    idle?.refresh();
  });
  // pipe() handles backpressure and passes each end across (WebSocket close -> FIN; FIN -> WebSocket close).
  ws.pipe(tcp);
  tcp.pipe(ws);
  tcp.on('error', (e) => finish('failed', `${targetName(target)}: ${e.message}`, TARGET_FAILED_CLOSE));
  // (The listener's errors name the WebSocket already: "WebSocket closed (code 1006)"; it said "WebSocket: WebSocket: ...".)
  ws.on('error', (e) => finish('failed', /^WebSocket\b/.test(e.message) ? e.message : `WebSocket: ${e.message}`));
  let closed = 0;
  const onClose = (): void => {
    if (++closed === 2) finish('closed');
  };
  tcp.once('close', (hadError) => (hadError ? finish('failed', `${targetName(target)}: closed with an error`, TARGET_FAILED_CLOSE) : onClose()));
  ws.once('close', onClose);
  // A WebSocket has no half-close: its end means it is closed, and nothing the target still sends can reach the
  // page. Once what the page sent is written out (pipe ends the TCP write side), drop the TCP connection, or a
  // target that keeps its side open would hold it (and this relay) forever, outside the connection cap.
  ws.once('end', () => {
    const drop = (): void => {
      tcp.destroy();
      ws.destroy();
    };
    if (tcp.writableFinished || tcp.destroyed) drop();
    else tcp.once('finish', drop);
  });
}
