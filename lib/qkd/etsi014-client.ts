/**
 * A client for the ETSI GS QKD 014 V1.1.1 key delivery API: how an application endpoint (an SAE) gets
 * QKD keys from its key manager (KME).
 *
 * The TLS client is the MASTER SAE: `encKeys(serverSaeId)` asks its KME for new keys, which come back with
 * key IDs; it names those IDs to the server in-band (in the PSK identity). The TLS server is the SLAVE SAE:
 * `decKeys(clientSaeId, ids)` asks its own KME for the same keys by ID. A KME hands each key to each side
 * once. The channel is HTTPS with a client certificate that names the SAE (clause 4); plain HTTP is accepted
 * only to a loopback address (the simulator's test mode, where `saeId` travels in the X-SAE-ID header).
 *
 * Behaviour:
 *  - `timeoutMs` (default 5000) bounds the WHOLE call, retries included: it then fails with reason 'timeout'.
 *  - 503 answers and connection failures are retried `retries` times (default 3) with exponential backoff
 *    and jitter; TLS failures and 4xx answers are not retried. (A retried dec_keys whose first attempt did
 *    reach the KME may find its keys already delivered; the KME then answers 400.)
 *  - Connections are kept alive and reused; call `close()` when done.
 *  - Keys come back base64-decoded as fresh `Uint8Array`s that the caller owns and should wipe after use.
 *    Key material is never logged and never appears in error messages.
 */
import { Agent as HttpAgent, request as httpRequest, type IncomingMessage } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import { performance } from 'node:perf_hooks';
import {
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
  abortFailure,
  httpFailure,
  isLoopbackHost,
  orderDecKeys,
  SAE_ID_HEADER,
  statusProblem,
} from './etsi014-api.js';

export {
  Etsi014Error,
  type Etsi014CallOptions,
  type Etsi014EncKeysRequest,
  type Etsi014FailureReason,
  type Etsi014Key,
} from './etsi014-api.js';

export interface Etsi014ClientOptions {
  /** The KME's base URL, e.g. `https://kme-a.example:8443` (a path prefix is kept). */
  baseUrl: string | URL;
  /** CA certificate(s) that issued the KME's server certificate, PEM. Default: Node's public CAs. */
  ca?: string | Buffer | (string | Buffer)[];
  /** This SAE's client certificate and its private key, PEM: the KME reads the SAE ID from it. */
  cert?: string | Buffer;
  key?: string | Buffer;
  /** Plain HTTP (loopback) only: this SAE's ID, sent in the X-SAE-ID header the simulator reads. */
  saeId?: string;
  /** Budget of one call, retries included, in milliseconds (default 5000). */
  timeoutMs?: number;
  /** How many times a 503 or a connection failure is retried (default 3). */
  retries?: number;
  /** First backoff delay (default 100 ms); it doubles per retry up to `maxRetryDelayMs` (default 2000). */
  retryDelayMs?: number;
  maxRetryDelayMs?: number;
  /** Source of jitter in [0, 1) (default Math.random). */
  random?: () => number;
  /** Most connections kept open to the KME (default 4). */
  maxSockets?: number;
}

export class Etsi014Client {
  readonly baseUrl: URL;
  private readonly opts: Required<Pick<Etsi014ClientOptions, 'timeoutMs' | 'retries' | 'retryDelayMs' | 'maxRetryDelayMs' | 'random'>>;
  private readonly saeId: string | undefined;
  private readonly agent: HttpAgent;
  private readonly secure: boolean;

  constructor(options: Etsi014ClientOptions) {
    this.baseUrl = new URL(options.baseUrl);
    this.secure = this.baseUrl.protocol === 'https:';
    if (!this.secure && this.baseUrl.protocol !== 'http:') {
      throw new TypeError(`Etsi014Client: baseUrl must be https: (got ${this.baseUrl.protocol})`);
    }
    if (!this.secure && !isLoopbackHost(this.baseUrl.hostname)) {
      throw new TypeError(`Etsi014Client: plain HTTP is only allowed to a loopback KME (keys would cross the network in clear): ${this.baseUrl.host}`);
    }
    if ((options.cert === undefined) !== (options.key === undefined)) {
      throw new TypeError('Etsi014Client: cert and key go together (the SAE client certificate and its private key)');
    }
    const positive = (v: number | undefined, dflt: number, name: string, min: number) => {
      const n = v ?? dflt;
      if (!Number.isFinite(n) || n < min) throw new RangeError(`Etsi014Client: ${name} must be a number >= ${min} (got ${v})`);
      return n;
    };
    this.opts = {
      timeoutMs: positive(options.timeoutMs, 5000, 'timeoutMs', 1),
      retries: Math.floor(positive(options.retries, 3, 'retries', 0)),
      retryDelayMs: positive(options.retryDelayMs, 100, 'retryDelayMs', 0),
      maxRetryDelayMs: positive(options.maxRetryDelayMs, 2000, 'maxRetryDelayMs', 0),
      random: options.random ?? Math.random,
    };
    this.saeId = options.saeId;
    const maxSockets = Math.floor(positive(options.maxSockets, 4, 'maxSockets', 1));
    this.agent = this.secure
      ? new HttpsAgent({ keepAlive: true, maxSockets, ca: options.ca, cert: options.cert, key: options.key, minVersion: 'TLSv1.2' })
      : new HttpAgent({ keepAlive: true, maxSockets });
  }

  /** Get status (clause 5.1): the link to `peerSaeId` as this SAE's KME sees it. */
  async status(peerSaeId: string, call: Pick<Etsi014CallOptions, 'signal'> = {}): Promise<Etsi014Status> {
    const { json, attempts } = await this.exchange('status', peerSaeId, 'GET', undefined, undefined, call.signal);
    const problem = statusProblem(json);
    if (problem) throw this.invalid('status', `not a Status object: ${problem}`, attempts);
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
    const keys = this.decodeContainer('enc_keys', json, attempts);
    const problem = encKeysProblem(keys, request);
    if (problem) {
      for (const k of keys) k.key.fill(0);
      throw this.invalid('enc_keys', problem, attempts);
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
    const keys = this.decodeContainer('dec_keys', json, attempts);
    const ordered = orderDecKeys(keys, keyIds);
    if (!ordered) {
      for (const k of keys) k.key.fill(0);
      throw this.invalid('dec_keys', 'the key_IDs returned are not the ones asked for', attempts);
    }
    return ordered;
  }

  /** Closes the kept-alive connections. */
  close(): void {
    this.agent.destroy();
  }

  // -------------------------------------------------------------------------------------------------------

  /** One API call with its deadline and retries; resolves with the parsed 200 body. */
  private async exchange(
    op: Etsi014Operation,
    peerSaeId: string,
    method: 'GET' | 'POST',
    query: URLSearchParams | undefined,
    body: object | undefined,
    userSignal: AbortSignal | undefined,
  ): Promise<{ json: unknown; attempts: number }> {
    if (typeof peerSaeId !== 'string' || peerSaeId === '') throw new TypeError(`Etsi014Client: the peer SAE ID must be a non-empty string`);
    const prefix = this.baseUrl.pathname.replace(/\/+$/, '');
    const path = prefix + etsi014Path(peerSaeId, op);
    const url = new URL(path + (query && [...query].length > 0 ? `?${query}` : ''), this.baseUrl);
    const where = `${this.baseUrl.origin}${path}`;
    const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));

    const deadline = new AbortController();
    const timer = setTimeout(() => deadline.abort(new Error('timeout')), this.opts.timeoutMs);
    const signal = userSignal ? AbortSignal.any([deadline.signal, userSignal]) : deadline.signal;
    const endAt = performance.now() + this.opts.timeoutMs;
    let attempts = 0;
    try {
      for (;;) {
        attempts++;
        let failure: Etsi014Error;
        try {
          const res = await this.send(url, method, payload, signal);
          if (res.status === 200) {
            try {
              return { json: JSON.parse(res.text), attempts };
            } catch {
              throw this.invalid(op, 'the 200 answer is not JSON', attempts);
            }
          }
          failure = httpFailure(op, where, peerSaeId, res.status, res.text, attempts);
        } catch (e) {
          if (e instanceof Etsi014Error) throw e;
          if (signal.aborted) throw abortFailure(op, where, deadline.signal.aborted, this.opts.timeoutMs, attempts, e);
          failure = transportFailure(op, this.baseUrl.origin, e, attempts);
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

  /** Sends one request and reads the whole answer (capped at 4 MiB). */
  private send(url: URL, method: string, payload: Buffer | undefined, signal: AbortSignal): Promise<{ status: number; text: string }> {
    const headers: Record<string, string | number> = { accept: 'application/json', 'user-agent': 'qkd-tls' };
    if (payload) {
      headers['content-type'] = 'application/json';
      headers['content-length'] = payload.length;
    }
    if (!this.secure && this.saeId !== undefined) headers[SAE_ID_HEADER] = this.saeId;
    const request = this.secure ? httpsRequest : httpRequest;
    return new Promise((resolve, reject) => {
      const req = request(url, { method, headers, agent: this.agent, signal }, (res: IncomingMessage) => {
        const chunks: Buffer[] = [];
        let size = 0;
        res.on('data', (c: Buffer) => {
          size += c.length;
          if (size > MAX_RESPONSE_BYTES) {
            res.destroy(new Error(`answer larger than ${MAX_RESPONSE_BYTES} bytes`));
            return;
          }
          chunks.push(c);
        });
        res.on('error', reject);
        res.on('end', () => {
          const buf = Buffer.concat(chunks);
          const text = buf.toString('utf8');
          buf.fill(0); // the answer may carry keys (base64)
          for (const c of chunks) c.fill(0);
          resolve({ status: res.statusCode ?? 0, text });
        });
        res.on('close', () => {
          if (!res.complete) reject(new Error('the connection closed before the whole answer arrived'));
        });
      });
      req.on('error', reject);
      req.end(payload);
    });
  }

  /** Key container (clause 6.3) -> decoded keys. */
  private decodeContainer(op: Etsi014Operation, json: unknown, attempts: number): Etsi014Key[] {
    const keys = decodeKeyContainer(json);
    if (typeof keys === 'string') throw this.invalid(op, keys, attempts);
    return keys;
  }

  private invalid(op: Etsi014Operation, why: string, attempts: number): Etsi014Error {
    return new Etsi014Error('invalid_response', `the KME's answer to ${op} is invalid: ${why}`, op, 200, undefined, attempts);
  }
}

const MAX_RESPONSE_BYTES = 4 * 1024 * 1024;


const TLS_CODES = /^(ERR_SSL_|ERR_TLS_|UNABLE_TO_|CERT_|DEPTH_ZERO_SELF_SIGNED_CERT|SELF_SIGNED_CERT_IN_CHAIN|HOSTNAME_MISMATCH)/;

function transportFailure(op: Etsi014Operation, origin: string, e: unknown, attempts: number): Etsi014Error {
  const err = e as NodeJS.ErrnoException & { reason?: unknown };
  const code = typeof err?.code === 'string' ? err.code : '';
  if (TLS_CODES.test(code)) {
    // OpenSSL errors carry a short `reason` ("tlsv13 alert certificate required"); the message is a dump.
    const why = typeof err.reason === 'string' ? err.reason : err.message;
    return new Etsi014Error('tls', `TLS with the KME at ${origin} failed: ${why} (${code}); check ca, cert and key`, op, undefined, undefined, attempts, { cause: e });
  }
  const what = code ? `${code}: ${err.message}` : String(err?.message ?? e);
  return new Etsi014Error('connection', `cannot reach the KME at ${origin} for ${op} (${attempts} attempt(s)): ${what}`, op, undefined, undefined, attempts, { cause: e });
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) return reject(signal.reason);
    const onAbort = () => {
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
