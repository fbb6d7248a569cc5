/**
 * WebSocket transport: TLS records carried in binary WebSocket messages, for pages that cannot open a TCP
 * socket. The page runs the whole TLS 1.3 handshake itself (the keys never leave it); the WebSocket peer is
 * either a qkd-tls server that accepts TLS over WebSocket (`qkd-tls server --websocket`) or a bridge that
 * relays the bytes to a TCP TLS-PSK server from its allow-list (`qkd-tls bridge`), which sees only ciphertext.
 *
 * ```ts
 * import { nobleProvider } from 'qkd-tls';
 * import { tlsClientOverWebSocket } from 'qkd-tls/websocket';
 * const tls = await tlsClientOverWebSocket('ws://127.0.0.1:8080/', { crypto: nobleProvider, psks: [psk] });
 * console.log(await tls.handshake);              // { suite, kex, group, identity, ... }
 * ```
 *
 * With a key taken from a key manager (each QKD key is handed out once), open the WebSocket first and take the key
 * after it: `const ws = await connectWebSocket(url)`, then `tlsClientOverStreams(ws, options)` (from
 * `qkd-tls/streams` or `qkd-tls/browser`); a server that is down then costs no key (the README's page example).
 *
 * It uses `WebSocketStream` where the runtime has it (backpressure both ways) and `WebSocket` otherwise
 * (binary messages as ArrayBuffer; sending waits while more than `maxBufferedBytes` are queued). A WebSocket has
 * no half-close: when our side is done (after close_notify) the socket stays open until the peer's side ends
 * too, so the peer's close_notify and any data still in flight arrive; then it closes with code 1000.
 *
 * Runtime-neutral: no `node:` imports (browsers, Workers, Deno, Bun, Node 22+).
 */
import { clip } from '../codec/text.js';
import { TransportError } from '../errors.js';
import { checkCount, checkCryptoOption, checkTimerMs, checkTransportOptions, type ClientOptions } from '../config/options.js';
import { type ByteStreamPair, type StreamTransportOptions, type TlsStreams, tlsClientOverStreams } from './streams.js';

export { TransportError, TRANSPORT_ERROR_CODES, type TransportErrorCode } from '../errors.js';

/** Options of the WebSocket itself; a number out of its range is a RangeError. */
export interface WebSocketTransportOptions {
  /**
   * WebSocket subprotocols to offer. The qkd-tls listener and bridge ignore them (`ws` agrees to the first one
   * offered); the bridge's target is chosen by the URL path, never by a subprotocol.
   */
  readonly protocols?: string | string[];
  /** Use `WebSocketStream` when the runtime has it (default true). */
  readonly preferWebSocketStream?: boolean;
  /** With plain `WebSocket`: most bytes queued for sending before a write waits (default 1 MiB; an integer from 0). */
  readonly maxBufferedBytes?: number;
  /** Give up opening the connection after this many milliseconds (default 10000; from 1 to 2^31 - 1). */
  readonly openTimeoutMs?: number;
}

/** A WebSocket carrying bytes, as a byte-stream pair (see {@link ByteStreamPair}). */
export interface WebSocketByteStreams extends ByteStreamPair {
  /** Which API carries it. */
  readonly api: 'WebSocketStream' | 'WebSocket';
  /** Closes the WebSocket at once (both directions). */
  close(): void;
}

/**
 * Opens a WebSocket to `url` and runs a TLS client over it. `options` takes the streams transport's own too
 * (`handshakeTimeout`, `offload`, `webCryptoKeyShares`, ...: {@link StreamTransportOptions}), checked before the
 * WebSocket is opened.
 */
export async function tlsClientOverWebSocket(
  url: string | URL,
  options: ClientOptions & StreamTransportOptions,
  transport: WebSocketTransportOptions = {},
): Promise<TlsStreams & { readonly webSocket: WebSocketByteStreams }> {
  checkTransportOptions(options);
  checkCryptoOption('tlsClientOverWebSocket', options.crypto); // before a WebSocket is opened for nothing
  const ws = await connectWebSocket(url, transport);
  try {
    return { ...tlsClientOverStreams(ws, options), webSocket: ws };
  } catch (e) {
    ws.close(); // options the connection refuses (a bad serverName, no PSK ...): the WebSocket is not left open
    throw e;
  }
}

/** Opens a WebSocket to `url` (ws: or wss:) and resolves once it is open. */
export async function connectWebSocket(url: string | URL, options: WebSocketTransportOptions = {}): Promise<WebSocketByteStreams> {
  const target = String(url);
  if (!/^wss?:\/\//i.test(target)) throw new TypeError(`connectWebSocket: the URL must start with ws:// or wss:// (got ${target.slice(0, 80)})`);
  checkTimerMs('connectWebSocket: openTimeoutMs', options.openTimeoutMs, 1);
  checkCount('connectWebSocket: maxBufferedBytes', options.maxBufferedBytes, 0);
  const timeoutMs = options.openTimeoutMs ?? 10_000;
  const Stream = (globalThis as { WebSocketStream?: WebSocketStreamConstructor }).WebSocketStream;
  if (Stream && options.preferWebSocketStream !== false) return openWebSocketStream(Stream, target, options.protocols, timeoutMs);
  // Node has a global WebSocket from version 22; Node 20 and 21 only with --experimental-websocket (found in a README
  // walkthrough: the message did not say what to do).
  if (typeof WebSocket !== 'function') {
    throw new Error('connectWebSocket: this runtime has neither WebSocketStream nor WebSocket (Node has WebSocket from version 22; on Node 20 run node --experimental-websocket)');
  }
  const ws = options.protocols === undefined ? new WebSocket(target) : new WebSocket(target, options.protocols);
  ws.binaryType = 'arraybuffer';
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => {
      ws.close();
      reject(new TransportError('ERR_QKD_TLS_TRANSPORT_TIMEOUT', `WebSocket ${target}: not open after ${timeoutMs} ms`));
    }, timeoutMs);
    ws.addEventListener('open', () => {
      clearTimeout(timer);
      resolve();
    });
    ws.addEventListener('error', () => {
      clearTimeout(timer);
      reject(new TransportError('ERR_QKD_TLS_TRANSPORT_FAILED', `WebSocket ${target}: the connection failed (${NOT_OPENED_HINT})`));
    });
    ws.addEventListener('close', (e) => {
      clearTimeout(timer);
      reject(new TransportError('ERR_QKD_TLS_TRANSPORT_FAILED', `WebSocket ${target}: closed before it opened (code ${e.code}${e.reason ? `, ${clip(e.reason)}` : ''})`));
    });
  });
  return webSocketByteStreams(ws, options);
}

/**
 * Wraps an open `WebSocket` (its `binaryType` is set to 'arraybuffer') as a byte-stream pair. Each chunk
 * written is sent as one binary message; each binary message received is one chunk. A text message is a
 * protocol error (TLS records are binary) and errors the readable.
 */
export function webSocketByteStreams(ws: WebSocket, options: Pick<WebSocketTransportOptions, 'maxBufferedBytes'> = {}): WebSocketByteStreams {
  checkCount('webSocketByteStreams: maxBufferedBytes', options.maxBufferedBytes, 0);
  const maxBuffered = options.maxBufferedBytes ?? 1024 * 1024;
  ws.binaryType = 'arraybuffer';
  let readEnded = false;
  /** The error that ends the byte stream once the messages that came before it have been read. */
  let failure: Error | undefined;
  const closeSocket = (): void => {
    if (ws.readyState === CONNECTING || ws.readyState === OPEN) ws.close(1000);
  };
  /**
   * Fails the byte stream after what is queued: controller.error() would discard the messages received but not
   * read yet (the peer's last records, e.g. the TLS alert that says why it closed, RFC 8446 §6.2), so the error
   * waits until the queue is empty (pull is called then).
   */
  const fail = (c: ReadableStreamDefaultController<Uint8Array>, e: Error): void => {
    readEnded = true;
    if ((c.desiredSize ?? 0) > 0) c.error(e);
    else failure = e;
  };
  const readable = new ReadableStream<Uint8Array>({
    start(c) {
      ws.addEventListener('message', (e) => {
        if (readEnded) return;
        if (typeof e.data === 'string') {
          fail(c, new TransportError('ERR_QKD_TLS_WEBSOCKET_TEXT', `WebSocket: ${TEXT_MESSAGE_REFUSED.message}`));
          closeRefusingText((code, reason) => ws.close(code, reason));
          return;
        }
        c.enqueue(new Uint8Array(e.data as ArrayBuffer));
      });
      ws.addEventListener('close', (e) => {
        if (readEnded) return;
        // 1000 (normal) and 1005 (no code) end the byte stream; TLS itself tells a complete stream from a cut one.
        // Any other code (RFC 6455 §7.4.1: 1001 going away, 1006 abnormal, 1011 ...) fails it, after the
        // messages that came before it.
        if (e.code === 1000 || e.code === 1005) {
          readEnded = true;
          c.close();
        } else fail(c, new TransportError('ERR_QKD_TLS_TRANSPORT_FAILED', `WebSocket closed (code ${e.code}${e.reason ? `, ${clip(e.reason)}` : ''})`));
      });
    },
    pull(c) {
      if (failure && (c.desiredSize ?? 0) > 0) c.error(failure);
    },
    cancel() {
      readEnded = true;
      closeSocket();
    },
  });
  const writable = new WritableStream<Uint8Array>({
    async write(chunk) {
      if (ws.readyState !== OPEN) throw new TransportError('ERR_QKD_TLS_TRANSPORT_FAILED', 'WebSocket: the connection is closed');
      // Plain WebSocket has no drain event: wait (bounded) until the queue is below the mark.
      for (let waited = 0; ws.bufferedAmount > maxBuffered; waited++) {
        if (ws.readyState !== OPEN) throw new TransportError('ERR_QKD_TLS_TRANSPORT_FAILED', 'WebSocket: the connection closed while sending');
        await new Promise((r) => setTimeout(r, waited < 10 ? 1 : 20));
      }
      for (let at = 0; at < chunk.length; at += MAX_MESSAGE_BYTES) ws.send(chunk.subarray(at, at + MAX_MESSAGE_BYTES));
    },
    close() {
      // No half-close in WebSocket: our direction is done, but the socket stays open for what the peer still
      // sends; the peer closes it when its direction is done too (the read side then ends).
    },
    abort() {
      closeSocket();
    },
  });
  return {
    readable,
    writable,
    api: 'WebSocket',
    close: () => ws.close(1000),
  };
}

// ---------------------------------------------------------------------------------------------------------

/**
 * Largest message sent: a big write is split, so that a server or bridge may bound its message size (a TLS
 * record is at most 16 KiB + 256 bytes, RFC 8446 §5.2; a message carries several).
 */
export const MAX_MESSAGE_BYTES = 64 * 1024;

/**
 * How a text message is refused, by this transport and by the Node listener (lib/transport/ws-server.ts) alike:
 * TLS records travel in binary messages only, so text is data the endpoint cannot accept; the WebSocket is
 * closed with 1003 (RFC 6455 §7.4.1, unsupported data), or 1000 with this reason where the WHATWG API refuses
 * 1003 (see closeRefusingText), and none of the message is passed to TLS.
 */
export const TEXT_MESSAGE_REFUSED = {
  code: 1003,
  reason: 'binary messages only',
  message: 'a text message arrived where TLS records (binary) were expected',
} as const;

/**
 * Closes a WebSocket that sent text with TEXT_MESSAGE_REFUSED's code (1003) where the API lets us (the `ws`
 * package, Bun). The WHATWG WebSocket and WebSocketStream (browsers, Deno, Node 22+) let a page send only 1000
 * and 3000-4999 (1003 is the browser's own to send) and throw InvalidAccessError on 1003: a throw inside the
 * message listener (an uncaught exception, which ends a Node or Deno process) that left the socket open. There the
 * close is 1000 with the same reason; the byte stream's error says what happened.
 */
function closeRefusingText(close: (code: number, reason: string) => void): void {
  try {
    close(TEXT_MESSAGE_REFUSED.code, TEXT_MESSAGE_REFUSED.reason);
  } catch {
    try {
      close(1000, TEXT_MESSAGE_REFUSED.reason);
    } catch {
      /* closed already */
    }
  }
}

/** WebSocket.readyState values (HTML standard), spelled out: a WebSocket from a library (e.g. `ws` in Node 20) works without a global. */
const CONNECTING = 0;
const OPEN = 1;

/**
 * Why a WebSocket may not open, which neither WebSocket API tells a page (the HTTP status of a refused upgrade is
 * not visible to it): a page's error said only "the connection failed", or in Chromium "WebSocket closed before
 * handshake complete." (found in a library walkthrough: a page through `qkd-tls bridge` to a target it does not allow).
 */
const NOT_OPENED_HINT =
  'nothing listens there, or the server refused the upgrade: a qkd-tls bridge refuses a path that names none of its --allow ' +
  'targets (404), a listener or bridge with --origin a page from another origin (403); a browser console shows the HTTP status';

interface WebSocketStreamConstructor {
  new (
    url: string,
    options?: { protocols?: string[] },
  ): {
    opened: Promise<{ readable: ReadableStream<ArrayBuffer | string>; writable: WritableStream<ArrayBuffer | Uint8Array> }>;
    closed: Promise<{ closeCode: number; reason: string }>;
    close(info?: { closeCode?: number; reason?: string }): void;
  };
}

async function openWebSocketStream(
  Stream: WebSocketStreamConstructor,
  url: string,
  protocols: string | string[] | undefined,
  timeoutMs: number,
): Promise<WebSocketByteStreams> {
  const wss = new Stream(url, protocols === undefined ? {} : { protocols: typeof protocols === 'string' ? [protocols] : protocols });
  wss.closed.catch(() => {});
  let timer: ReturnType<typeof setTimeout> | undefined;
  const opened = await Promise.race([
    wss.opened.catch((e: unknown) => {
      // Chromium's WebSocketError says only "WebSocket closed before handshake complete.", without the URL.
      throw new TransportError('ERR_QKD_TLS_TRANSPORT_FAILED', `WebSocketStream ${url}: ${e instanceof Error ? e.message : String(e)} (${NOT_OPENED_HINT})`, { cause: e });
    }),
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        // Give the attempt up too: a WebSocket that opens after we stopped waiting would stay open, unused.
        try {
          wss.close({ closeCode: 1000 });
        } catch {
          /* not open yet in some runtimes: closing then aborts the opening handshake or throws */
        }
        reject(new TransportError('ERR_QKD_TLS_TRANSPORT_TIMEOUT', `WebSocketStream ${url}: not open after ${timeoutMs} ms`));
      }, timeoutMs);
    }),
  ]).finally(() => clearTimeout(timer));
  let readEnded = false;
  let writeEnded = false;
  const closeSocket = (): void => {
    try {
      wss.close({ closeCode: 1000 });
    } catch {
      /* closed already */
    }
  };
  const bytes = opened.readable.pipeThrough(
    new TransformStream<ArrayBuffer | string, Uint8Array>({
      transform(chunk, c) {
        if (typeof chunk === 'string') {
          c.error(new TransportError('ERR_QKD_TLS_WEBSOCKET_TEXT', `WebSocketStream: ${TEXT_MESSAGE_REFUSED.message}`));
          closeRefusingText((closeCode, reason) => wss.close({ closeCode, reason }));
        } else c.enqueue(new Uint8Array(chunk));
      },
    }),
  );
  const writer = opened.writable.getWriter();
  const writable = new WritableStream<Uint8Array>({
    async write(chunk) {
      for (let at = 0; at < chunk.length; at += MAX_MESSAGE_BYTES) await writer.write(chunk.subarray(at, at + MAX_MESSAGE_BYTES));
    },
    close() {
      // Not writer.close(): that would close the whole WebSocket and lose what the peer still sends.
      writeEnded = true;
      if (readEnded) closeSocket();
    },
    abort() {
      closeSocket();
    },
  });
  return {
    readable: whenReadEnds(bytes, () => {
      readEnded = true;
      if (writeEnded) closeSocket();
    }),
    writable,
    api: 'WebSocketStream',
    close: closeSocket,
  };
}

/** The same stream, calling `onEnd` once it has ended (closed, errored or cancelled). */
function whenReadEnds(source: ReadableStream<Uint8Array>, onEnd: () => void): ReadableStream<Uint8Array> {
  const reader = source.getReader();
  let ended = false;
  const end = (): void => {
    if (ended) return;
    ended = true;
    onEnd();
  };
  return new ReadableStream<Uint8Array>(
    {
      async pull(c) {
        try {
          const { value, done } = await reader.read();
          if (done) {
            end();
            c.close();
          } else c.enqueue(value);
        } catch (e) {
          end();
          c.error(e);
        }
      },
      async cancel(reason) {
        end();
        await reader.cancel(reason);
      },
    },
    { highWaterMark: 0 },
  );
}
