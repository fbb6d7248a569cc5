/**
 * Code an application hands to qkd-tls, and what happens when it throws: one rule for the whole library.
 *
 * **Observers** only watch: key-source and network events (`onEvent`), key-log lines (`keyLog`, with the Node
 * socket's 'keylog' listeners), the record trace hook (`trace`, and the Node server's `traceConnection` factory),
 * the KME simulator's and the network server's `log`/`onRequest`, the WebSocket bridge's `onConnection` records,
 * the WebSocket listener's and bridge's `onRefused` (an upgrade refused), the proxy's `logger`. What an observer
 * does never changes the outcome: an exception it throws (or a promise it returns that rejects) is caught where it
 * is called, the protocol goes on as if it had returned, and the library's own invariants hold (a key is wiped or
 * handed to its owner, never lost and never used twice; promises settle; other connections are served; no
 * unhandled rejection). The exception is not swallowed: it is wrapped in a {@link CallbackError} naming the
 * callback and handed to the component's `onCallbackError` option, or, without that option, written to
 * `console.error` as one line (the callback's name and the error's message, clipped; never key material of the
 * library's own).
 *
 * **Callbacks the protocol depends on** (a server's PSK lookup, a client's `psks` function, a key source's
 * `take`/`resolve` and the proxy's `clientPsks`/`release`, `serverPskResolver`'s `onLease`, the WebSocket listener's
 * connection handler and `route`, a server's `earlyDataReplayGuard`): an exception or a rejection ends that one
 * handshake or connection, with the alert its failure maps to, and an error that names the callback; the keys it
 * concerned are wiped (a proxy key source whose `release` throws has its keys wiped by the proxy, and the error
 * reported as an observer's), and a server goes on serving the others. The alerts: an asynchronous PSK lookup that
 * rejects is PskUnavailable (handshake_failure, as a key manager that cannot be reached); a synchronous `psks`
 * function that throws is PskLookupThrew (internal_error, RFC 8446 §6.2: a local failure), unless it throws a
 * TlsError of its own. A replay guard that throws (or answers no boolean) is EarlyDataReplayGuardFailed
 * (internal_error, likewise).
 *
 * Node EventEmitter listeners ('secure', 'data', 'error', ...) keep Node's own rule: a listener that throws is an
 * exception in the emitter's caller, as with node:net and node:tls.
 */
import { clip } from './codec/text.js';

/** What an observer threw, wrapped: `callback` names the option, `cause` is the value thrown (or rejected with). */
export class CallbackError extends Error {
  override readonly name = 'CallbackError';
  constructor(
    readonly callback: string,
    cause: unknown,
  ) {
    super(`the ${callback} callback threw: ${thrownMessage(cause)}`, { cause });
  }
}

/** Receives each exception an observer threw (the `onCallbackError` option of a connection, source or server). */
export type CallbackErrorHandler = (error: CallbackError) => void;

/** The message of anything thrown (an Error's message, else its text), never itself a throw. */
export function thrownMessage(e: unknown): string {
  if (e instanceof Error) return e.message;
  try {
    return String(e);
  } catch {
    return Object.prototype.toString.call(e);
  }
}

/**
 * `fn` made safe to call as an observer (see the file comment), or undefined when `fn` is: a caller that builds
 * its argument only for an observer (a key-log line) can still skip the work when there is none.
 */
export function observer<A extends unknown[]>(name: string, fn: ((...args: A) => unknown) | undefined, onError: CallbackErrorHandler | undefined): ((...args: A) => void) | undefined {
  if (!fn) return undefined;
  return (...args: A): void => {
    try {
      const r = fn(...args);
      if (isThenable(r)) r.then(undefined, (e: unknown) => reportCallbackError(name, e, onError));
    } catch (e) {
      reportCallbackError(name, e, onError);
    }
  };
}

/** Hands what the callback `name` threw to `onError` as a CallbackError, or writes it to console.error without one. */
export function reportCallbackError(name: string, thrown: unknown, onError: CallbackErrorHandler | undefined): void {
  const error = new CallbackError(name, thrown);
  if (onError) {
    try {
      onError(error);
      return;
    } catch (e) {
      printCallbackError(new CallbackError('onCallbackError', e));
    }
  }
  printCallbackError(error);
}

function printCallbackError(error: CallbackError): void {
  globalThis.console?.error?.(`qkd-tls: ${clip(error.message)}`);
}

/** Whether `v` is a promise or another thenable (what an application's callback may return). */
export function isThenable(v: unknown): v is PromiseLike<unknown> {
  return (typeof v === 'object' || typeof v === 'function') && v !== null && typeof (v as { then?: unknown }).then === 'function';
}
