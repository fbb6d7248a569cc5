/**
 * An ETSI GS QKD 014 V1.1.1 key-delivery client built on `fetch`, for where Node's http/https are not: a
 * web page, a Worker, Deno, Bun. Same methods, same checks, same errors (`Etsi014Error` with its reason) as
 * the Node client (lib/qkd/etsi014-client.ts); the request building and answer validation are shared
 * (lib/qkd/etsi014-api.ts).
 *
 * Who may call: a KME identifies the calling SAE by its TLS client certificate (clause 4). `fetch` has no
 * portable way to present one, so mutual TLS is left to the runtime: a browser uses the certificate the
 * user has installed, Deno takes `fetchInit: { client: Deno.createHttpClient({ cert, key }) }`, Bun
 * `fetchInit: { tls: { cert, key } }`, a Worker an mTLS binding (pass its `fetch` as `fetch`). Plain HTTP is
 * accepted to a loopback KME only (the simulator's test mode), where `saeId` travels in the X-SAE-ID header.
 * A page calling a KME on another origin needs that KME to allow it (CORS); the simulator does on loopback.
 *
 * Behaviour (as the Node client): `timeoutMs` (default 5000) bounds the whole call, retries included; 503
 * answers and network failures are retried `retries` times (default 3) with exponential backoff and jitter;
 * keys come back as fresh `Uint8Array`s the caller owns and should wipe; key material is never logged.
 *
 * Runtime-neutral: no `node:` imports.
 */
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

export { Etsi014Error, type Etsi014CallOptions, type Etsi014EncKeysRequest, type Etsi014Key } from './etsi014-api.js';

export interface Etsi014FetchClientOptions {
  /** The KME's base URL, e.g. `https://kme-a.example:8443` (a path prefix is kept). */
  readonly baseUrl: string | URL;
  /** Plain HTTP (loopback) only: this SAE's ID, sent in the X-SAE-ID header the simulator reads. */
  readonly saeId?: string;
  /** The fetch to use (default globalThis.fetch): e.g. a Worker's mTLS binding's fetch. */
  readonly fetch?: typeof fetch;
  /** Extra init merged into every request (runtime-specific mTLS: Deno's `client`, Bun's `tls`). */
  readonly fetchInit?: RequestInit & Record<string, unknown>;
  /** Budget of one call, retries included, in milliseconds (default 5000). */
  readonly timeoutMs?: number;
  /** How many times a 503 or a network failure is retried (default 3). */
  readonly retries?: number;
  /** First backoff delay (default 100 ms); it doubles per retry up to `maxRetryDelayMs` (default 2000). */
  readonly retryDelayMs?: number;
  readonly maxRetryDelayMs?: number;
  /** Source of jitter in [0, 1) (default Math.random). */
  readonly random?: () => number;
}

/** Largest answer read (a key container of many keys stays far below). */
const MAX_RESPONSE_BYTES = 4 * 1024 * 1024;

export class Etsi014FetchClient {
  readonly baseUrl: URL;
  private readonly fetchFn: typeof fetch;
  private readonly o: Required<Pick<Etsi014FetchClientOptions, 'timeoutMs' | 'retries' | 'retryDelayMs' | 'maxRetryDelayMs' | 'random'>>;

  constructor(private readonly options: Etsi014FetchClientOptions) {
    this.baseUrl = new URL(options.baseUrl);
    const secure = this.baseUrl.protocol === 'https:';
    if (!secure && this.baseUrl.protocol !== 'http:') throw new TypeError(`Etsi014FetchClient: baseUrl must be https: (got ${this.baseUrl.protocol})`);
    if (!secure && !isLoopbackHost(this.baseUrl.hostname)) {
      throw new TypeError(`Etsi014FetchClient: plain HTTP is only allowed to a loopback KME (keys would cross the network in clear): ${this.baseUrl.host}`);
    }
    const fetchFn = options.fetch ?? globalThis.fetch;
    if (typeof fetchFn !== 'function') throw new TypeError('Etsi014FetchClient: this runtime has no fetch; pass options.fetch');
    // Called as a plain function: a browser's fetch throws "Illegal invocation" when called as a method.
    this.fetchFn = (input, init) => fetchFn(input, init);
    const positive = (v: number | undefined, dflt: number, name: string, min: number): number => {
      const n = v ?? dflt;
      if (!Number.isFinite(n) || n < min) throw new RangeError(`Etsi014FetchClient: ${name} must be a number >= ${min} (got ${v})`);
      return n;
    };
    this.o = {
      timeoutMs: positive(options.timeoutMs, 5000, 'timeoutMs', 1),
      retries: Math.floor(positive(options.retries, 3, 'retries', 0)),
      retryDelayMs: positive(options.retryDelayMs, 100, 'retryDelayMs', 0),
      maxRetryDelayMs: positive(options.maxRetryDelayMs, 2000, 'maxRetryDelayMs', 0),
      random: options.random ?? Math.random,
    };
  }

  /** Get status (clause 5.1): the link to `peerSaeId` as this SAE's KME sees it. */
  async status(peerSaeId: string, call: Pick<Etsi014CallOptions, 'signal'> = {}): Promise<Etsi014Status> {
    const { json, attempts } = await this.exchange('status', peerSaeId, 'GET', undefined, undefined, call.signal);
    const problem = statusProblem(json);
    if (problem) throw invalid('status', `not a Status object: ${problem}`, attempts);
    return json as Etsi014Status;
  }

  /** Get key (clause 5.2), as the master SAE: new keys shared with the slave SAE `peerSaeId`. */
  async encKeys(peerSaeId: string, request: Etsi014EncKeysRequest = {}, call: Etsi014CallOptions = {}): Promise<Etsi014Key[]> {
    const method = call.method ?? 'POST';
    const { query, body } = encKeysRequest(request, method);
    const { json, attempts } = await this.exchange('enc_keys', peerSaeId, method, query, body, call.signal);
    const keys = decodeKeyContainer(json);
    if (typeof keys === 'string') throw invalid('enc_keys', keys, attempts);
    const problem = encKeysProblem(keys, request);
    if (problem) {
      for (const k of keys) k.key.fill(0);
      throw invalid('enc_keys', problem, attempts);
    }
    return keys;
  }

  /** Get key with key IDs (clause 5.3), as the slave SAE: the keys the master SAE `peerSaeId` received, in order. */
  async decKeys(peerSaeId: string, keyIds: readonly string[], call: Etsi014CallOptions = {}): Promise<Etsi014Key[]> {
    const method = call.method ?? 'POST';
    const { query, body } = decKeysRequest(keyIds, method);
    const { json, attempts } = await this.exchange('dec_keys', peerSaeId, method, query, body, call.signal);
    const keys = decodeKeyContainer(json);
    if (typeof keys === 'string') throw invalid('dec_keys', keys, attempts);
    const ordered = orderDecKeys(keys, keyIds);
    if (!ordered) {
      for (const k of keys) k.key.fill(0);
      throw invalid('dec_keys', 'the key_IDs returned are not the ones asked for', attempts);
    }
    return ordered;
  }

  /** Nothing to release (fetch pools its own connections); here for the same shape as the Node client. */
  close(): void {}

  // -------------------------------------------------------------------------------------------------------

  private async exchange(
    op: Etsi014Operation,
    peerSaeId: string,
    method: 'GET' | 'POST',
    query: URLSearchParams | undefined,
    body: object | undefined,
    userSignal: AbortSignal | undefined,
  ): Promise<{ json: unknown; attempts: number }> {
    if (typeof peerSaeId !== 'string' || peerSaeId === '') throw new TypeError('Etsi014FetchClient: the peer SAE ID must be a non-empty string');
    const path = this.baseUrl.pathname.replace(/\/+$/, '') + etsi014Path(peerSaeId, op);
    const url = new URL(path + (query && [...query].length > 0 ? `?${query}` : ''), this.baseUrl);
    const where = `${this.baseUrl.origin}${path}`;
    const headers: Record<string, string> = { accept: 'application/json' };
    if (body !== undefined) headers['content-type'] = 'application/json';
    if (this.baseUrl.protocol === 'http:' && this.options.saeId !== undefined) headers[SAE_ID_HEADER] = this.options.saeId;
    const deadline = new AbortController();
    const timer = setTimeout(() => deadline.abort(new Error('timeout')), this.o.timeoutMs);
    const signal = userSignal ? anySignal(deadline.signal, userSignal) : deadline.signal;
    const endAt = Date.now() + this.o.timeoutMs;
    let attempts = 0;
    try {
      for (;;) {
        attempts++;
        let failure: Etsi014Error;
        try {
          const res = await this.fetchFn(url, {
            ...this.options.fetchInit,
            method,
            headers: { ...(this.options.fetchInit?.headers as Record<string, string> | undefined), ...headers },
            body: body === undefined ? null : JSON.stringify(body),
            signal,
            credentials: 'omit', // no cookies to a KME; a client certificate is the runtime's business
          });
          const text = await readCapped(res);
          if (res.status === 200) {
            try {
              return { json: JSON.parse(text), attempts };
            } catch {
              throw invalid(op, 'the 200 answer is not JSON', attempts);
            }
          }
          failure = httpFailure(op, where, peerSaeId, res.status, text, attempts);
        } catch (e) {
          if (e instanceof Etsi014Error) throw e;
          if (signal.aborted) throw abortFailure(op, where, deadline.signal.aborted, this.o.timeoutMs, attempts, e);
          // fetch reports a refused connection, a DNS failure, a TLS failure and a CORS refusal alike.
          failure = new Etsi014Error('connection', `cannot reach the KME at ${this.baseUrl.origin} for ${op} (${attempts} attempt(s)): ${(e as Error).message}`, op, undefined, undefined, attempts, { cause: e });
        }
        const retryable = failure.reason === 'unavailable' || failure.reason === 'connection';
        const full = Math.min(this.o.maxRetryDelayMs, this.o.retryDelayMs * 2 ** (attempts - 1));
        const delay = full / 2 + (full / 2) * this.o.random();
        if (!retryable || attempts > this.o.retries || Date.now() + delay >= endAt) throw failure;
        try {
          await sleep(delay, signal);
        } catch (e) {
          throw abortFailure(op, where, deadline.signal.aborted, this.o.timeoutMs, attempts, e);
        }
      }
    } finally {
      clearTimeout(timer);
    }
  }
}

function invalid(op: Etsi014Operation, why: string, attempts: number): Etsi014Error {
  return new Etsi014Error('invalid_response', `the KME's answer to ${op} is invalid: ${why}`, op, 200, undefined, attempts);
}

/** Reads the body as text, refusing more than MAX_RESPONSE_BYTES; the bytes (which may hold keys) are wiped. */
async function readCapped(res: Response): Promise<string> {
  if (!res.body) return '';
  const reader = res.body.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    size += value.length;
    if (size > MAX_RESPONSE_BYTES) {
      await reader.cancel();
      for (const c of chunks) c.fill(0);
      throw new Error(`answer larger than ${MAX_RESPONSE_BYTES} bytes`);
    }
    chunks.push(value);
  }
  const all = new Uint8Array(size);
  let at = 0;
  for (const c of chunks) {
    all.set(c, at);
    at += c.length;
    c.fill(0);
  }
  const text = new TextDecoder().decode(all);
  all.fill(0);
  return text;
}

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
