/**
 * A simulated pair of QKD key managers (KMEs) speaking ETSI GS QKD 014 V1.1.1, for tests, demos and
 * interoperability checks when no QKD hardware is at hand.
 *
 * What it simulates: one QKD link between KME-A and KME-B. KME-A serves the MASTER SAE (the TLS client):
 * it calls `enc_keys` and receives fresh keys with UUID key IDs. KME-B serves the SLAVE SAE (the TLS server):
 * it calls `dec_keys` with those IDs and receives the same keys. Each key goes once to each side and is then
 * deleted; key material is produced at `rateBitsPerSecond` into a bounded store (see {@link QkdLink}).
 *
 * The two KMEs listen on two ports, as two KMEs would on two hosts, each with its own server certificate:
 *
 *   master KME (KME-A):  {master.url}/api/v1/keys/{slaveSaeId}/status     GET
 *                        {master.url}/api/v1/keys/{slaveSaeId}/enc_keys   GET ?number=&size=, or POST Key request
 *   slave KME (KME-B):   {slave.url}/api/v1/keys/{masterSaeId}/dec_keys   GET ?key_ID=, or POST Key IDs
 *                        {slave.url}/api/v1/keys/{masterSaeId}/status     GET (the slave may ask too)
 *
 * Who is calling: over HTTPS (the default) both KMEs require a client certificate issued by the simulator's
 * CA, and the SAE ID is the certificate's subject CN (clause 4: the KME identifies the SAE by its
 * certificate). With `insecureHttp` (loopback only, for tests and demos) the caller names itself in the
 * `X-SAE-ID` request header instead. A caller that is not the SAE a KME serves gets 401.
 *
 * Robustness: request bodies are capped (`maxBodyBytes`, 413 beyond), malformed requests get a 400 Error
 * body and never change the key store; unknown paths get 404, wrong methods 405, a POST body not sent as
 * application/json 415. Keys are never logged.
 */
import { randomBytes as nodeRandomBytes } from 'node:crypto';
import { createServer as createHttpServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { hostname } from 'node:os';
import { isLoopbackHost } from '../../qkd/etsi014-api.js';
import { ensureKmeCertificates, type KmeCertificateSet } from './certificates.js';
import { handleKmeRequest, type KmeEndpoint, type KmeLimits, type KmeResponse, loopbackCorsHeaders } from './handler.js';
import { kmeHttpAnswer, readBody, requestLine, urlHost } from './http.js';
import { QkdLink } from './store.js';
import { observer, type CallbackErrorHandler } from '../../callbacks.js';

export interface KmeSimulatorOptions {
  /** Address both KMEs listen on (default 127.0.0.1). Plain HTTP is refused unless it is loopback. */
  host?: string;
  /** Port of the master KME (KME-A); 0 (default) picks a free one. */
  masterPort?: number;
  /** Port of the slave KME (KME-B); 0 (default) picks a free one. */
  slavePort?: number;
  /** SAE ID of the master SAE, the TLS client (default 'client-sae'). */
  masterSaeId?: string;
  /** SAE ID of the slave SAE, the TLS server (default 'server-sae'). */
  slaveSaeId?: string;
  /** KME IDs reported in Status (defaults 'KME-A' and 'KME-B'). */
  masterKmeId?: string;
  slaveKmeId?: string;
  /** Default key size in bits, a multiple of 8 (default 256). */
  keySize?: number;
  /** Smallest and largest key size a request may ask for, in bits (defaults 64 and 1024). */
  minKeySize?: number;
  maxKeySize?: number;
  /** Capacity of the key store in keys of `keySize` (default 100000). */
  maxKeyCount?: number;
  /** Most keys one enc_keys/dec_keys request may carry (default 128; at most 65536, and at most 2^27 bits with maxKeySize). */
  maxKeysPerRequest?: number;
  /** Secret-key rate of the simulated quantum channel, bits per second (default 100000; 0 = none). */
  rateBitsPerSecond?: number;
  /** Keys of `keySize` in the store at start (default 1000), so callers need not wait. */
  initialKeyCount?: number;
  /** A key the slave never fetches is wiped after this long (default 600000 ms; 0 = never). */
  pendingKeyTtlMs?: number;
  /** Largest request body accepted (default 65536 bytes); larger ones get 413. */
  maxBodyBytes?: number;
  /** Mutual TLS with certificates kept in this directory, made on first start (see certificates.ts). */
  certsDir?: string;
  /** Mutual TLS with these certificates (must hold a server certificate for each KME ID). */
  certificates?: KmeCertificateSet;
  /** Extra host names or addresses the generated KME server certificates must be valid for. */
  serverNames?: string[];
  /** Plain HTTP on loopback; the caller's SAE ID comes from the X-SAE-ID header. For tests and demos. */
  insecureHttp?: boolean;
  /** Clock in milliseconds (default Date.now); drives key production and expiry. */
  now?: () => number;
  /** Randomness for keys and key IDs (default node:crypto randomBytes). */
  randomBytes?: (n: number) => Uint8Array;
  /**
   * Called once per finished request and per failed TLS handshake. Never carries key material. An observer (lib/callbacks.ts): what it throws goes to `onCallbackError` and changes nothing.
   */
  log?: (event: KmeLogEvent) => void;
  /** Receives what an observer callback of this simulator threw, as a CallbackError (default: one line on console.error). */
  onCallbackError?: CallbackErrorHandler;
}

export interface KmeSimulator {
  /** KME-A, serving the master SAE (enc_keys). */
  readonly master: KmeEndpointInfo;
  /** KME-B, serving the slave SAE (dec_keys). */
  readonly slave: KmeEndpointInfo;
  /** True when serving plain HTTP (callers identify with the X-SAE-ID header). */
  readonly insecureHttp: boolean;
  /** The CA and the SAE client certificates to hand to the SAEs (undefined with insecureHttp). */
  readonly credentials: KmeCertificateSet | undefined;
  /** Files created in certsDir during this start (empty when all were reused). */
  readonly createdFiles: string[];
  /** Live counts of the key store and of the requests served. */
  stats(): KmeSimulatorStats;
  /** Stops both KMEs, drops open connections and wipes every key still held. */
  close(): Promise<void>;
}

export interface KmeEndpointInfo {
  role: 'master' | 'slave';
  kmeId: string;
  /** The SAE this KME serves, and the SAE ID that goes in its request paths. */
  saeId: string;
  peerSaeId: string;
  /** Base URL, e.g. https://127.0.0.1:8443 (the ETSI paths go below it). */
  url: string;
  port: number;
}

export interface KmeSimulatorStats {
  /** Status.stored_key_count: keys of the default size ready for enc_keys. */
  storedKeyCount: number;
  /** Keys delivered to the master that wait for the slave. */
  pendingKeyCount: number;
  issued: number;
  redeemed: number;
  expired: number;
  /** Requests answered, by HTTP status. */
  responses: Record<number, number>;
  tlsErrors: number;
}

export type KmeLogEvent =
  | {
      type: 'request';
      kmeId: string;
      method: string;
      /** Path only: the query is left out. */
      path: string;
      callerSaeId: string | undefined;
      status: number;
      /** Keys delivered by this request. */
      keyCount: number;
      /** The Error body's message for a failed request. */
      message?: string;
    }
  | { type: 'tls_error'; kmeId: string; message: string };

export async function startKmeSimulator(options: KmeSimulatorOptions = {}): Promise<KmeSimulator> {
  const host = options.host ?? '127.0.0.1';
  const insecureHttp = options.insecureHttp ?? false;
  if (insecureHttp && !isLoopbackHost(host)) {
    throw new RangeError(`kme simulator: plain HTTP is only allowed on loopback, not on ${host}; use mutual TLS (certsDir)`);
  }
  if (!insecureHttp && !options.certsDir && !options.certificates) {
    throw new RangeError('kme simulator: choose mutual TLS (certsDir or certificates) or insecureHttp');
  }
  const ids = {
    masterSae: nonBlank(options.masterSaeId ?? 'client-sae', 'masterSaeId'),
    slaveSae: nonBlank(options.slaveSaeId ?? 'server-sae', 'slaveSaeId'),
    masterKme: nonBlank(options.masterKmeId ?? 'KME-A', 'masterKmeId'),
    slaveKme: nonBlank(options.slaveKmeId ?? 'KME-B', 'slaveKmeId'),
  };
  if (ids.masterSae === ids.slaveSae) throw new RangeError('kme simulator: the master and slave SAE IDs must differ');
  if (ids.masterKme === ids.slaveKme) throw new RangeError('kme simulator: the two KME IDs must differ');
  const limits = checkLimits({
    keySize: options.keySize ?? 256,
    minKeySize: options.minKeySize ?? 64,
    maxKeySize: options.maxKeySize ?? 1024,
    maxKeyCount: options.maxKeyCount ?? 100_000,
    maxKeysPerRequest: options.maxKeysPerRequest ?? 128,
  });
  const rate = nonNegative(options.rateBitsPerSecond ?? 100_000, 'rateBitsPerSecond');
  const maxBodyBytes = nonNegative(options.maxBodyBytes ?? 65_536, 'maxBodyBytes');

  let credentials: KmeCertificateSet | undefined;
  let createdFiles: string[] = [];
  if (!insecureHttp) {
    if (options.certificates) {
      credentials = options.certificates;
    } else {
      const wildcard = host === '0.0.0.0' || host === '::';
      const names = [...(options.serverNames ?? []), ...(wildcard ? [hostname()] : [host])];
      const made = await ensureKmeCertificates(options.certsDir!, {
        kmeIds: [ids.masterKme, ids.slaveKme],
        saeIds: [ids.masterSae, ids.slaveSae],
        hosts: names,
      });
      createdFiles = made.created;
      credentials = made;
    }
    for (const id of [ids.masterKme, ids.slaveKme]) {
      if (!credentials.kmes[id]) throw new Error(`kme simulator: no server certificate for KME '${id}'`);
    }
  }

  const link = new QkdLink(
    {
      keySize: limits.keySize,
      maxKeyCount: limits.maxKeyCount,
      rateBitsPerSecond: rate,
      initialKeyCount: nonNegative(options.initialKeyCount ?? 1000, 'initialKeyCount'),
      pendingKeyTtlMs: nonNegative(options.pendingKeyTtlMs ?? 600_000, 'pendingKeyTtlMs'),
    },
    { now: options.now ?? Date.now, randomBytes: options.randomBytes ?? ((n) => new Uint8Array(nodeRandomBytes(n))) },
  );
  const counts = { responses: {} as Record<number, number>, tlsErrors: 0 };
  const log = observer('log', options.log, options.onCallbackError) ?? (() => {});

  const endpoint = (role: 'master' | 'slave'): KmeEndpoint => ({
    role,
    kmeId: role === 'master' ? ids.masterKme : ids.slaveKme,
    peerKmeId: role === 'master' ? ids.slaveKme : ids.masterKme,
    masterSaeId: ids.masterSae,
    slaveSaeId: ids.slaveSae,
    limits,
  });
  const kmes = [endpoint('master'), endpoint('slave')] as const;
  const servers = kmes.map((kme) => {
    const handler = (req: IncomingMessage, res: ServerResponse) =>
      serve(kme, link, req, res, { insecureHttp, maxBodyBytes, counts, log });
    let server: Server;
    if (insecureHttp) {
      server = createHttpServer(handler);
    } else {
      const own = credentials!.kmes[kme.kmeId];
      server = createHttpsServer(
        { cert: own.cert, key: own.key, ca: credentials!.ca, requestCert: true, rejectUnauthorized: true, minVersion: 'TLSv1.2' },
        handler,
      );
      server.on('tlsClientError', (err: Error & { reason?: string; code?: string }) => {
        counts.tlsErrors++;
        const message = err.reason ? `${err.reason}${err.code ? ` (${err.code})` : ''}` : err.message.trim();
        log({ type: 'tls_error', kmeId: kme.kmeId, message });
      });
    }
    server.headersTimeout = 10_000;
    server.requestTimeout = 15_000;
    server.keepAliveTimeout = 5_000;
    server.maxConnections = 512;
    return server;
  });

  const close = async () => {
    await Promise.all(
      servers.map(
        (s) =>
          new Promise<void>((resolve) => {
            if (!s.listening) return resolve();
            s.close(() => resolve());
            s.closeAllConnections();
          }),
      ),
    );
    link.destroy();
  };

  const ports = [options.masterPort ?? 0, options.slavePort ?? 0];
  try {
    for (let i = 0; i < servers.length; i++) await listen(servers[i], host, ports[i]);
  } catch (e) {
    await close();
    throw e;
  }

  const scheme = insecureHttp ? 'http' : 'https';
  const info = (i: 0 | 1): KmeEndpointInfo => {
    const kme = kmes[i];
    const port = (servers[i].address() as { port: number }).port;
    return {
      role: kme.role,
      kmeId: kme.kmeId,
      saeId: kme.role === 'master' ? ids.masterSae : ids.slaveSae,
      peerSaeId: kme.role === 'master' ? ids.slaveSae : ids.masterSae,
      url: `${scheme}://${urlHost(host)}:${port}`,
      port,
    };
  };
  return {
    master: info(0),
    slave: info(1),
    insecureHttp,
    credentials,
    createdFiles,
    stats: () => ({
      storedKeyCount: link.storedKeyCount(),
      pendingKeyCount: link.pendingKeyCount(),
      ...link.stats(),
      responses: { ...counts.responses },
      tlsErrors: counts.tlsErrors,
    }),
    close,
  };
}

// ---------------------------------------------------------------------------------------------------------

interface ServeContext {
  insecureHttp: boolean;
  maxBodyBytes: number;
  counts: { responses: Record<number, number>; tlsErrors: number };
  log: (event: KmeLogEvent) => void;
}

/** One HTTP exchange: identify the caller, read the (bounded) body, answer. */
function serve(kme: KmeEndpoint, link: QkdLink, req: IncomingMessage, res: ServerResponse, ctx: ServeContext): void {
  const { method, path, query, callerSaeId, contentType } = requestLine(req, ctx.insecureHttp);
  const cors = loopbackCorsHeaders(req.headers.origin) ?? {};

  const finish = (status: number, body: string, extraHeaders: Record<string, string>, keyCount: number, message?: string) => {
    ctx.counts.responses[status] = (ctx.counts.responses[status] ?? 0) + 1;
    if (!res.headersSent) {
      res.writeHead(status, {
        'content-type': 'application/json; charset=utf-8',
        'cache-control': 'no-store',
        'content-length': Buffer.byteLength(body),
        ...cors,
        ...extraHeaders,
      });
    }
    res.end(body);
    ctx.log({ type: 'request', kmeId: kme.kmeId, method, path: path.slice(0, 200), callerSaeId, status, keyCount, ...(message ? { message } : {}) });
  };

  // A browser's CORS preflight (a loopback page only): answered without touching the key store.
  if (method === 'OPTIONS' && req.headers['access-control-request-method'] !== undefined) {
    res.writeHead(cors['access-control-allow-origin'] ? 204 : 403, { ...cors, 'content-length': 0 });
    res.end();
    return;
  }
  const tooLarge = (message: string) => finish(413, JSON.stringify({ message }), { connection: 'close' }, 0, message);
  readBody(req, ctx.maxBodyBytes, tooLarge, (body) => {
    let answer: KmeResponse;
    try {
      answer = handleKmeRequest(kme, link, { method, path, query, body, callerSaeId, contentType });
    } catch (e) {
      // Clause 5: 503 is the spec's "error on the server side".
      const message = `internal error: ${(e as Error).message}`;
      finish(503, JSON.stringify({ message }), {}, 0, message);
      return;
    }
    const http = kmeHttpAnswer(answer, ctx.insecureHttp);
    finish(http.status, http.body, http.headers, http.keyCount, http.message);
  });
}

function listen(server: Server, host: string, port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (e: Error) => reject(new Error(`kme simulator: cannot listen on ${host}:${port}: ${e.message}`));
    server.once('error', onError);
    server.listen(port, host, () => {
      server.off('error', onError);
      resolve();
    });
  });
}



/**
 * The most keys, and key bits, one enc_keys/dec_keys answer may carry: 65536 keys, 2^27 bits (16 MiB). The answer is
 * built as one JSON string, and V8 strings end at 2^29 characters: with --max-key-size 2147483648, `?number=2&size=
 * 2147483648` threw "Invalid string length" out of the request handler and the whole simulator exited.
 */
export const MAX_KEYS_PER_ANSWER = 65_536;
export const MAX_KEY_BITS_PER_ANSWER = 2 ** 27;

function checkLimits(l: KmeLimits): KmeLimits {
  for (const [name, v] of Object.entries(l)) {
    if (!Number.isSafeInteger(v) || v < 1) throw new RangeError(`kme simulator: ${name} must be a positive integer (got ${v})`);
  }
  if (l.maxKeysPerRequest > MAX_KEYS_PER_ANSWER) {
    throw new RangeError(`kme simulator: maxKeysPerRequest must be at most ${MAX_KEYS_PER_ANSWER} (got ${l.maxKeysPerRequest})`);
  }
  if (l.maxKeysPerRequest * l.maxKeySize > MAX_KEY_BITS_PER_ANSWER) {
    throw new RangeError(
      `kme simulator: maxKeysPerRequest × maxKeySize must be at most ${MAX_KEY_BITS_PER_ANSWER} bits, 16 MiB of keys in one answer (got ${l.maxKeysPerRequest} × ${l.maxKeySize})`,
    );
  }
  for (const name of ['keySize', 'minKeySize', 'maxKeySize'] as const) {
    if (l[name] % 8 !== 0) throw new RangeError(`kme simulator: ${name} must be a multiple of 8 bits (got ${l[name]})`);
  }
  if (!(l.minKeySize <= l.keySize && l.keySize <= l.maxKeySize)) {
    throw new RangeError(`kme simulator: need minKeySize <= keySize <= maxKeySize (got ${l.minKeySize}, ${l.keySize}, ${l.maxKeySize})`);
  }
  return l;
}

function nonNegative(v: number, name: string): number {
  if (!Number.isFinite(v) || v < 0) throw new RangeError(`kme simulator: ${name} must be a non-negative number (got ${v})`);
  return v;
}

function nonBlank(v: string, name: string): string {
  if (v.trim() === '') throw new RangeError(`kme simulator: ${name} must not be blank`);
  return v;
}
