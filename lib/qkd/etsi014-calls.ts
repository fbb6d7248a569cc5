/**
 * What both ETSI GS QKD 014 V1.1.1 key-delivery clients do, whatever carries their requests: the three calls
 * (Get status, Get key, Get key with key IDs, clause 5), checking what comes back, one deadline per call with
 * its retries, and the exponential backoff. The Node client (lib/qkd/etsi014-client.ts, node:http/https with a
 * client certificate) and the fetch client (lib/qkd/etsi014-fetch.ts: pages, Workers, Deno, Bun) only say how
 * one request is sent and how a failure to send it is named.
 *
 * Behaviour:
 *  - `timeoutMs` (default 5000) bounds the WHOLE call, retries included: it then fails with reason 'timeout'.
 *  - 503 answers and connection failures are retried `retries` times (default 3) with exponential backoff
 *    and jitter; TLS failures, 4xx answers and invalid answers (an oversized one, one that is not HTTP included) are
 *    not retried, nor is a dec_keys whose answer was cut off (AnswerCutOffError). (A retried dec_keys whose first
 *    attempt did reach the KME unseen may still find its keys already delivered; the KME then answers 400.)
 *  - Keys come back base64-decoded as fresh `Uint8Array`s that the caller owns and should wipe after use.
 *    Key material is never logged and never appears in error messages.
 *  - Plain HTTP only to a loopback KME (the simulator's test mode), where `saeId` travels in the X-SAE-ID header.
 *
 * Runtime-neutral: no `node:` imports.
 */
import { untilAborted } from '../abort.js';
import { thrownMessage } from '../callbacks.js';
import { clip } from '../codec/text.js';
import { MAX_TIMER_MS } from '../config/options.js';
import {
  abortFailure,
  decKeysRequest,
  decodeKeyContainer,
  encKeysProblem,
  encKeysRequest,
  type Etsi014CallOptions,
  type Etsi014EncKeysRequest,
  Etsi014Error,
  type Etsi014Key,
  type Etsi014Operation,
  type Etsi014Status,
  etsi014Path,
  httpFailure,
  isLoopbackHost,
  orderDecKeys,
  SAE_ID_HEADER,
  statusProblem,
} from './etsi014-api.js';

/** The options every client takes. */
export interface Etsi014CommonOptions {
  /** The KME's base URL, e.g. `https://kme-a.example:8443` (a path prefix is kept). */
  readonly baseUrl: string | URL;
  /** Plain HTTP (loopback) only: this SAE's ID, sent in the X-SAE-ID header the simulator reads. */
  readonly saeId?: string;
  /** Budget of one call, retries included, in milliseconds (default 5000; from 1 to 2^31 - 1, else a RangeError). */
  readonly timeoutMs?: number;
  /** How many times a 503 or a connection failure is retried (default 3). */
  readonly retries?: number;
  /** First backoff delay (default 100 ms); it doubles per retry up to `maxRetryDelayMs` (default 2000). */
  readonly retryDelayMs?: number;
  readonly maxRetryDelayMs?: number;
  /** Source of jitter in [0, 1) (default Math.random). */
  readonly random?: () => number;
}

/** One request as the carrier sends it: headers already include content-type and X-SAE-ID where they apply. */
export interface Etsi014Request {
  readonly url: URL;
  readonly method: 'GET' | 'POST';
  readonly headers: Record<string, string>;
  /** The JSON body, for POST. */
  readonly body: string | undefined;
  readonly signal: AbortSignal;
}

/** The whole answer (its bytes, which may carry keys, already wiped by the carrier). */
export interface Etsi014Answer {
  readonly status: number;
  readonly text: string;
}

/** Largest answer a carrier reads (a key container of many keys stays far below). */
export const MAX_RESPONSE_BYTES = 4 * 1024 * 1024;

/**
 * What a carrier rejects with when an answer outgrows {@link MAX_RESPONSE_BYTES}. The KME did answer, so this is
 * an invalid answer, not a connection failure, and it is not retried: a dec_keys whose answer arrived has
 * delivered its keys, which the KME hands out once (clause 5.3); asking again would get a 400 that hides the
 * real failure.
 */
export class AnswerTooLargeError extends Error {
  constructor(
    /** The HTTP status of the oversized answer. */
    readonly status: number,
  ) {
    super(`the answer is larger than ${MAX_RESPONSE_BYTES} bytes`);
  }
}

/**
 * What a carrier rejects with when the connection fails after the answer's status line arrived: the KME took the
 * request and was answering. A connection failure all the same (reason 'connection'), but a dec_keys cut off this way
 * is not sent again: its keys left with the lost answer and the KME hands a key out once (clause 5.3), so asking again
 * only got a 400 ("already delivered") that hid the real failure (the server key source then took the client's key ID
 * for one its KME does not know, unknown_psk_identity, instead of a KME failure, handshake_failure).
 */
export class AnswerCutOffError extends Error {
  constructor(
    /** The HTTP status of the answer cut off. */
    readonly status: number,
    cause: unknown,
  ) {
    super(`the connection broke while the answer (HTTP ${status}) arrived: ${thrownMessage(cause)}`, { cause });
  }
}

/**
 * What a carrier rejects with when the KME's answer is not HTTP it can read: its parser refused it (node:http's and
 * undici's HPE_* errors: a malformed status line, two Content-Length headers, a bad chunk) or its header section is over
 * the parser's bound. The KME took the request and answered, so this is an invalid answer, as an oversized one is, and it
 * is not retried: a dec_keys whose answer came has delivered its keys, which the KME hands out once (clause 5.3); asked
 * again, the KME answered 400 ("already delivered"), and the server key source took the client's key ID for one its KME
 * does not know (unknown_psk_identity) instead of a KME failure (handshake_failure). The message quotes the parser's
 * reason, never the bytes it refused (they may hold keys).
 */
export class AnswerNotHttpError extends Error {
  constructor(detail: string, cause: unknown) {
    super(`it is not HTTP/1.1 that can be read (${detail})`, { cause });
  }
}

/**
 * The parser's reason when `e` or one of its causes is an HTTP parser failure (an answer that is not HTTP: see
 * {@link AnswerNotHttpError}), else undefined. Only the code and the message are read: node:http's error keeps the
 * refused bytes in `rawPacket`, undici's in `data`.
 */
export function httpParserFailure(e: unknown): string | undefined {
  let at = e;
  for (let depth = 0; depth < 4 && typeof at === 'object' && at !== null; depth++) {
    const { code, message, cause } = at as { code?: unknown; message?: unknown; cause?: unknown };
    if (typeof code === 'string' && (code.startsWith('HPE_') || code === 'UND_ERR_HEADERS_OVERFLOW')) {
      return `${code}: ${clip(typeof message === 'string' ? message : '', 200)}`;
    }
    at = cause;
  }
  return undefined;
}

/**
 * `baseUrl` as a URL; one that does not parse is a TypeError naming the client (URL's own says only "Invalid URL"),
 * quoting it without what stands between its scheme and its last "@" (a user name and password, as in
 * "https://sae:pw@kme:99999", quoted "https://kme:99999"). The last "@", not the first after "//": a password with
 * "/", "?" or "#" in it ("https://sae:p/w@kme:99999") is one reason such a URL does not parse, and all of it goes.
 */
function parseBaseUrl(name: string, baseUrl: string | URL): URL {
  try {
    return new URL(baseUrl);
  } catch {
    throw new TypeError(`${name}: baseUrl is not a URL: ${withoutUserInfo(String(baseUrl)).slice(0, 200)} (expected https://HOST:PORT)`);
  }
}

/** `text` (a URL that did not parse) without what stands between its scheme ("https://") and its last "@". */
function withoutUserInfo(text: string): string {
  const at = text.lastIndexOf('@');
  if (at < 0) return text;
  const scheme = /^[A-Za-z][A-Za-z0-9+.-]*:\/*/.exec(text)?.[0] ?? '';
  return scheme + text.slice(at + 1);
}

export abstract class Etsi014ClientBase {
  readonly baseUrl: URL;
  /** The KME as its base URL names it, path included (a KME of the network simulator is `http://H:P/NODE`): for messages. */
  readonly location: string;
  protected readonly secure: boolean;
  private readonly saeId: string | undefined;
  private readonly opts: Required<Pick<Etsi014CommonOptions, 'timeoutMs' | 'retries' | 'retryDelayMs' | 'maxRetryDelayMs' | 'random'>>;

  /** `name` starts the messages of the errors the constructor and the calls throw for misuse. */
  protected constructor(
    private readonly name: string,
    options: Etsi014CommonOptions,
  ) {
    this.baseUrl = parseBaseUrl(name, options.baseUrl);
    this.location = this.baseUrl.origin + this.baseUrl.pathname.replace(/\/+$/, '');
    this.secure = this.baseUrl.protocol === 'https:';
    if (!this.secure && this.baseUrl.protocol !== 'http:') throw new TypeError(`${name}: baseUrl must be an https: URL, or http: to a loopback KME (got ${this.baseUrl.protocol})`);
    if (!this.secure && !isLoopbackHost(this.baseUrl.hostname)) {
      throw new TypeError(`${name}: plain HTTP is only allowed to a loopback KME (keys would cross the network in clear): ${this.baseUrl.host}`);
    }
    this.opts = {
      timeoutMs: this.positive(options.timeoutMs, 5000, 'timeoutMs', 1, MAX_TIMER_MS),
      retries: Math.floor(this.positive(options.retries, 3, 'retries', 0)),
      retryDelayMs: this.positive(options.retryDelayMs, 100, 'retryDelayMs', 0),
      maxRetryDelayMs: this.positive(options.maxRetryDelayMs, 2000, 'maxRetryDelayMs', 0),
      random: options.random ?? Math.random,
    };
    this.saeId = options.saeId;
  }

  /** Get status (clause 5.1): the link to `peerSaeId` as this SAE's KME sees it. */
  async status(peerSaeId: string, call: Pick<Etsi014CallOptions, 'signal'> = {}): Promise<Etsi014Status> {
    const { json, attempts } = await this.exchange('status', peerSaeId, 'GET', undefined, undefined, call.signal);
    const problem = statusProblem(json);
    if (problem) throw invalid('status', `not a Status object: ${problem}`, attempts);
    return json as Etsi014Status;
  }

  /**
   * Get key (clause 5.2), as the master SAE: new keys shared with the slave SAE `peerSaeId`.
   * Resolves to exactly `request.number` keys (default 1) of `request.size` bits when given.
   */
  async encKeys(peerSaeId: string, request: Etsi014EncKeysRequest = {}, call: Etsi014CallOptions = {}): Promise<Etsi014Key[]> {
    const method = call.method ?? 'POST';
    const { query, body } = encKeysRequest(request, method);
    const { json, attempts } = await this.exchange('enc_keys', peerSaeId, method, query, body, call.signal);
    const keys = decodeContainer('enc_keys', json, attempts);
    const problem = encKeysProblem(keys, request);
    if (problem) {
      for (const k of keys) k.key.fill(0);
      throw invalid('enc_keys', problem, attempts);
    }
    return keys;
  }

  /**
   * Get key with key IDs (clause 5.3), as the slave SAE: the keys that the master SAE `peerSaeId` received.
   * Resolves in the order of `keyIds`. With GET, each ID is sent as its own `key_ID` query parameter.
   */
  async decKeys(peerSaeId: string, keyIds: readonly string[], call: Etsi014CallOptions = {}): Promise<Etsi014Key[]> {
    const method = call.method ?? 'POST';
    const { query, body } = decKeysRequest(keyIds, method);
    const { json, attempts } = await this.exchange('dec_keys', peerSaeId, method, query, body, call.signal);
    const keys = decodeContainer('dec_keys', json, attempts);
    const ordered = orderDecKeys(keys, keyIds);
    if (!ordered) {
      for (const k of keys) k.key.fill(0);
      throw invalid('dec_keys', 'the key_IDs returned are not the ones asked for', attempts);
    }
    return ordered;
  }

  /** Releases what the carrier keeps between calls (kept-alive connections). */
  abstract close(): void;

  /** Sends one request and reads its whole answer (at most {@link MAX_RESPONSE_BYTES}); rejects when it cannot. */
  protected abstract send(request: Etsi014Request): Promise<Etsi014Answer>;

  /** Names a failure to send a request (connection refused, TLS, ...): reason 'connection' is retried. */
  protected abstract transportFailure(op: Etsi014Operation, e: unknown, attempts: number): Etsi014Error;

  /** A number option (or its default) from `min` to `max`, else a RangeError naming it. */
  protected positive(v: number | undefined, dflt: number, option: string, min: number, max = Number.MAX_VALUE): number {
    const n = v ?? dflt;
    if (!Number.isFinite(n) || n < min || n > max) {
      throw new RangeError(`${this.name}: ${option} must be a number ${max === Number.MAX_VALUE ? `>= ${min}` : `from ${min} to ${max}`} (got ${v})`);
    }
    return n;
  }

  /** One API call with its deadline and retries; resolves with the parsed 200 body. */
  private async exchange(
    op: Etsi014Operation,
    peerSaeId: string,
    method: 'GET' | 'POST',
    query: URLSearchParams | undefined,
    body: object | undefined,
    userSignal: AbortSignal | undefined,
  ): Promise<{ json: unknown; attempts: number }> {
    if (typeof peerSaeId !== 'string' || peerSaeId === '') throw new TypeError(`${this.name}: the peer SAE ID must be a non-empty string`);
    // Clause 5.1: the SAE ID is one path segment of /api/v1/keys/{SAE_ID}/{op}. URL resolution removes the segments
    // '.' and '..' (RFC 3986 §5.2.4; percent-encoding them does not help), so the request would go to another path.
    if (peerSaeId === '.' || peerSaeId === '..') {
      throw new TypeError(`${this.name}: the peer SAE ID '${peerSaeId}' cannot be sent as a URL path segment (clause 5.1)`);
    }
    const path = this.baseUrl.pathname.replace(/\/+$/, '') + etsi014Path(peerSaeId, op);
    const url = new URL(path + (query && [...query].length > 0 ? `?${query}` : ''), this.baseUrl);
    const where = `${this.baseUrl.origin}${path}`;
    const headers: Record<string, string> = { accept: 'application/json' };
    if (body !== undefined) headers['content-type'] = 'application/json';
    if (!this.secure && this.saeId !== undefined) headers[SAE_ID_HEADER] = this.saeId;
    const json = body === undefined ? undefined : JSON.stringify(body);

    const deadline = new AbortController();
    const timer = setTimeout(() => deadline.abort(new Error('timeout')), this.opts.timeoutMs);
    const signal = userSignal ? anySignal(deadline.signal, userSignal) : deadline.signal;
    const endAt = performance.now() + this.opts.timeoutMs;
    let attempts = 0;
    try {
      for (;;) {
        attempts++;
        let failure: Etsi014Error;
        try {
          // Raced with the signal: the deadline bounds the call whatever the carrier does (an application's fetch
          // that does not pass the signal on, a Response body that does not end with it, waited for without end). An
          // answer that comes later is dropped; the carrier wipes its bytes (etsi014-fetch.ts's readCapped, once the
          // signal has fired).
          const res = await untilAborted(this.send({ url, method, headers, body: json, signal }), signal);
          if (res.status === 200) {
            try {
              return { json: JSON.parse(res.text), attempts };
            } catch {
              throw invalid(op, 'the 200 answer is not JSON', attempts);
            }
          }
          failure = httpFailure(op, where, peerSaeId, res.status, res.text, attempts);
        } catch (e) {
          if (e instanceof Etsi014Error) throw e;
          if (e instanceof AnswerTooLargeError) throw invalid(op, e.message, attempts, e.status);
          if (e instanceof AnswerNotHttpError) throw invalid(op, e.message, attempts, undefined);
          if (signal.aborted) throw abortFailure(op, where, deadline.signal.aborted, this.opts.timeoutMs, attempts, e);
          failure = this.transportFailure(op, e, attempts);
          if (e instanceof AnswerCutOffError && op === 'dec_keys') throw failure;
        }
        const retryable = failure.reason === 'unavailable' || failure.reason === 'connection';
        const delay = this.backoff(attempts);
        if (!retryable || attempts > this.opts.retries || performance.now() + delay >= endAt) throw failure;
        try {
          await sleep(delay, signal);
        } catch (e) {
          throw abortFailure(op, where, deadline.signal.aborted, this.opts.timeoutMs, attempts, e);
        }
      }
    } finally {
      clearTimeout(timer);
    }
  }

  /** Exponential backoff with jitter: half the doubled delay, plus a random part of the other half. */
  private backoff(attempt: number): number {
    const full = Math.min(this.opts.maxRetryDelayMs, this.opts.retryDelayMs * 2 ** (attempt - 1));
    return full / 2 + (full / 2) * this.opts.random();
  }
}

/** Key container (clause 6.3) -> decoded keys, or the invalid_response failure. */
function decodeContainer(op: Etsi014Operation, json: unknown, attempts: number): Etsi014Key[] {
  const keys = decodeKeyContainer(json);
  if (typeof keys === 'string') throw invalid(op, keys, attempts);
  return keys;
}

function invalid(op: Etsi014Operation, why: string, attempts: number, status: number | undefined = 200): Etsi014Error {
  return new Etsi014Error('invalid_response', `the KME's answer to ${op} is invalid: ${why}`, op, status, undefined, attempts);
}

/** AbortSignal.any where the runtime has it, else the same by hand. */
function anySignal(a: AbortSignal, b: AbortSignal): AbortSignal {
  const any = (AbortSignal as { any?: (s: AbortSignal[]) => AbortSignal }).any;
  if (any) return any([a, b]);
  const c = new AbortController();
  const forward = (s: AbortSignal) => () => c.abort(s.reason);
  if (a.aborted || b.aborted) c.abort((a.aborted ? a : b).reason);
  a.addEventListener('abort', forward(a), { once: true });
  b.addEventListener('abort', forward(b), { once: true });
  return c.signal;
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) return reject(signal.reason);
    const onAbort = (): void => {
      clearTimeout(t);
      reject(signal.reason);
    };
    const t = setTimeout(() => {
      signal.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal.addEventListener('abort', onAbort, { once: true });
  });
}
