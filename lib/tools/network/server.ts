/**
 * The simulated QKD network over HTTP(S), on one port (Node adapter):
 *
 *   {url}/{node}/api/v1/keys/{SAE_ID}/status|enc_keys|dec_keys   ETSI GS QKD 014 at node {node}'s KME
 *   {url}/network                                                the network as JSON (links, QBER, pools, routes)
 *   {url}/network.svg                                            the same as a picture
 *
 * So an SAE at node A uses `--kme {url}/A`. Who is calling: over HTTPS (the default) every caller needs a
 * client certificate from the simulator's CA whose CN is its SAE ID (the single-link simulator's certificates,
 * {@link ensureKmeCertificates}; the server's certificate is issued to KME ID "qkd-network"); with
 * `insecureHttp` (loopback only) the caller names itself in the X-SAE-ID header. /network and /network.svg
 * need no SAE identity (they carry no key material).
 */
import { randomBytes as nodeRandomBytes } from 'node:crypto';
import { createServer as createHttpServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { checkCount } from '../../config/options.js';
import { isLoopbackHost } from '../../qkd/etsi014-api.js';
import { FileTooLargeError, MAX_OPTION_FILE_BYTES, readTextFileBounded } from '../../qkd/bounded-file.js';
import { ensureKmeCertificates, type KmeCertificateSet } from '../kme/certificates.js';
import { kmeHttpAnswer, readBody, requestLine, urlHost } from '../kme/http.js';
import type { KmeResponse } from '../kme/handler.js';
import { handleNetworkKmeRequest, nodeKmeUrl } from './kme.js';
import { type NetworkEvent, QkdNetwork } from './network.js';
import { networkSvg } from './svg.js';
import { observer, type CallbackErrorHandler } from '../../callbacks.js';
import { clip } from '../../codec/text.js';
import { parseTopology, type Topology } from './topology.js';

/** KME ID of the server certificate (one listener serves every node). */
export const NETWORK_KME_ID = 'qkd-network';

export interface QkdNetworkServerOptions {
  topology: Topology;
  host?: string;
  /** 0 (default) picks a free port. */
  port?: number;
  timeScale?: number;
  /** Plain HTTP on loopback, callers named by X-SAE-ID. For tests and demos. */
  insecureHttp?: boolean;
  /** Mutual TLS with certificates kept here (made on first start). */
  certsDir?: string;
  /** Extra host names the server certificate must be valid for. */
  serverNames?: string[];
  now?: () => number;
  randomBytes?: (n: number) => Uint8Array;
  /** Network events and one line per request (never key material). Observers (lib/callbacks.ts): what they throw goes to `onCallbackError` and changes nothing. */
  onEvent?: (event: NetworkEvent) => void;
  onRequest?: (r: { node: string | null; method: string; path: string; callerSaeId: string | undefined; status: number; keyCount: number; message?: string }) => void;
  /** Receives what an observer callback of this server threw, as a CallbackError (default: one line on console.error). */
  onCallbackError?: CallbackErrorHandler;

  /** Largest request body (default 65536 bytes; an integer from 0, else a RangeError); larger ones get 413. */
  maxBodyBytes?: number;
  blockSeconds?: number;
  samplesPerBlock?: number;
}

export interface QkdNetworkServer {
  readonly network: QkdNetwork;
  /** e.g. http://127.0.0.1:8443 */
  readonly url: string;
  readonly port: number;
  readonly insecureHttp: boolean;
  readonly credentials: KmeCertificateSet | undefined;
  readonly createdFiles: string[];
  /** The ETSI 014 base URL of a node's KME: `${url}/${node}`. */
  kmeUrl(node: string): string;
  close(): Promise<void>;
}

/**
 * A topology file that cannot be used: it cannot be read, is too large, is not JSON (JSON.parse's words, with the
 * line and column where they give a position), or does not describe a network (the field path, e.g. "links[0].km
 * must be a number"). The message is one line naming the file; a command line reports it as a usage error, as the
 * proxy reports its configuration file.
 */
export class TopologyFileError extends Error {
  override readonly name = 'TopologyFileError';
  constructor(
    readonly file: string,
    readonly detail: string,
  ) {
    super(`topology file ${file}: ${detail}`);
  }
}

/**
 * Reads and checks a topology file, at most MAX_OPTION_FILE_BYTES of it (a path to something endless, /dev/zero,
 * was read until memory ran out). Throws {@link TopologyFileError}.
 */
export async function loadTopology(file: string): Promise<Topology> {
  let text: string;
  try {
    text = readTextFileBounded(file, MAX_OPTION_FILE_BYTES);
  } catch (e) {
    if (e instanceof FileTooLargeError) throw new TopologyFileError(file, `larger than ${e.limit} bytes (${e.limit / (1024 * 1024)} MiB), the most that is read`);
    throw new TopologyFileError(file, `cannot read it: ${(e as Error).message}`);
  }
  if (text.trim() === '') throw new TopologyFileError(file, 'the file is empty');
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new TopologyFileError(file, `not JSON: ${jsonSyntaxProblem(text, e)}`);
  }
  try {
    return parseTopology(json);
  } catch (e) {
    throw new TopologyFileError(file, (e as Error).message);
  }
}

/**
 * JSON.parse's complaint about `text` on one line, and where V8 gives the place ("... in JSON at position 24") as a
 * line and column too. V8 gives a position for some errors only; for the others its message quotes the text around
 * the fault ("Unexpected token 'B', ...\"{"name": B}]}\" is not valid JSON") or says the text ends too soon.
 */
function jsonSyntaxProblem(text: string, e: unknown): string {
  // Newer V8 (Node 24) adds its own "(line 2 column 1)": dropped, so that the place is said once, the same way.
  const message = clip((e instanceof Error ? e.message : String(e)).replace(/\s+/g, ' ').replace(/ \(line \d+ column \d+\)/, ''));
  const at = /\bat position (\d+)/.exec(message);
  if (!at) return message;
  const before = text.slice(0, Number(at[1]));
  const line = before.split('\n').length;
  return `${message} (line ${line}, column ${before.length - before.lastIndexOf('\n')})`;
}

export async function startQkdNetworkServer(options: QkdNetworkServerOptions): Promise<QkdNetworkServer> {
  const host = options.host ?? '127.0.0.1';
  const insecureHttp = options.insecureHttp ?? false;
  if (insecureHttp && !isLoopbackHost(host)) throw new Error(`qkd network: plain HTTP is only allowed on loopback, not on ${host}; use mutual TLS`);
  if (!insecureHttp && !options.certsDir) throw new Error('qkd network: choose mutual TLS (certsDir) or insecureHttp');
  // Unchecked, NaN would lift the limit (no size is larger than NaN).
  checkCount('qkd network: maxBodyBytes', options.maxBodyBytes, 0);
  const saes = options.topology.nodes.flatMap((n) => n.saes);
  let credentials: KmeCertificateSet | undefined;
  let createdFiles: string[] = [];
  if (!insecureHttp) {
    const wildcard = host === '0.0.0.0' || host === '::';
    const made = await ensureKmeCertificates(options.certsDir!, { kmeIds: [NETWORK_KME_ID], saeIds: saes, hosts: [...(options.serverNames ?? []), ...(wildcard ? [] : [host])] });
    credentials = made;
    createdFiles = made.created;
  }
  const network = new QkdNetwork({
    topology: options.topology,
    now: options.now ?? Date.now,
    randomBytes: options.randomBytes ?? ((n) => new Uint8Array(nodeRandomBytes(n))),
    timeScale: options.timeScale,
    blockSeconds: options.blockSeconds,
    samplesPerBlock: options.samplesPerBlock,
    onEvent: options.onEvent,
    onCallbackError: options.onCallbackError,
  });
  const maxBodyBytes = options.maxBodyBytes ?? 65_536;
  const handler = (req: IncomingMessage, res: ServerResponse) => serve(network, req, res, { insecureHttp, maxBodyBytes, log: observer('onRequest', options.onRequest, options.onCallbackError) ?? (() => {}) });
  let server: Server;
  if (insecureHttp) {
    server = createHttpServer(handler);
  } else {
    const own = credentials!.kmes[NETWORK_KME_ID];
    server = createHttpsServer({ cert: own.cert, key: own.key, ca: credentials!.ca, requestCert: true, rejectUnauthorized: true, minVersion: 'TLSv1.2' }, handler);
    server.on('tlsClientError', () => {});
  }
  server.headersTimeout = 10_000;
  server.requestTimeout = 15_000;
  server.keepAliveTimeout = 5_000;
  server.maxConnections = 512;
  await new Promise<void>((resolve, reject) => {
    const onError = (e: Error) => reject(new Error(`qkd network: cannot listen on ${host}:${options.port ?? 0}: ${e.message}`));
    server.once('error', onError);
    server.listen(options.port ?? 0, host, () => {
      server.off('error', onError);
      resolve();
    });
  });
  const port = (server.address() as { port: number }).port;
  const url = `${insecureHttp ? 'http' : 'https'}://${urlHost(host)}:${port}`;
  return {
    network,
    url,
    port,
    insecureHttp,
    credentials,
    createdFiles,
    kmeUrl: (node) => nodeKmeUrl(url, node),
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
        network.destroy();
      }),
  };
}

interface ServeContext {
  insecureHttp: boolean;
  maxBodyBytes: number;
  log: NonNullable<QkdNetworkServerOptions['onRequest']>;
}

const NODE_PATH_RE = /^\/([^/]+)(\/.*)?$/;

function serve(network: QkdNetwork, req: IncomingMessage, res: ServerResponse, ctx: ServeContext): void {
  const { method, path, query, callerSaeId, contentType } = requestLine(req, ctx.insecureHttp);
  let node: string | null = null;
  const finish = (status: number, type: string, body: string, keyCount = 0, message?: string, extra: Record<string, string> = {}) => {
    if (!res.headersSent) res.writeHead(status, { 'content-type': type, 'cache-control': 'no-store', 'content-length': Buffer.byteLength(body), ...extra });
    res.end(body);
    ctx.log({ node, method, path: path.slice(0, 200), callerSaeId, status, keyCount, ...(message ? { message } : {}) });
  };
  const json = (status: number, v: unknown, message?: string, extra?: Record<string, string>) => finish(status, 'application/json; charset=utf-8', JSON.stringify(v), 0, message, extra);

  if (path === '/network' || path === '/network.svg') {
    if (method !== 'GET') return json(405, { message: `use GET on ${path}` }, 'method not allowed', { allow: 'GET' });
    const snap = network.snapshot();
    return path === '/network' ? json(200, snap) : finish(200, 'image/svg+xml; charset=utf-8', networkSvg(snap));
  }
  const m = NODE_PATH_RE.exec(path);
  let decoded: string | undefined;
  try {
    decoded = m ? decodeURIComponent(m[1]) : undefined;
  } catch {
    decoded = undefined;
  }
  if (!m || decoded === undefined || !network.hasNode(decoded)) {
    const message = `unknown path ${path.slice(0, 64)}; this server has /network, /network.svg and /{node}/api/v1/keys/... for the nodes of the network`;
    return json(404, { message }, message);
  }
  node = decoded;
  const tooLarge = (message: string) => json(413, { message }, 'body too large', { connection: 'close' });
  readBody(req, ctx.maxBodyBytes, tooLarge, (body) => {
    let answer: KmeResponse;
    try {
      answer = handleNetworkKmeRequest(network, node!, { method, path: m[2] ?? '/', query, body, callerSaeId, contentType });
    } catch (e) {
      const message = `internal error: ${(e as Error).message}`;
      return json(503, { message }, message);
    }
    const http = kmeHttpAnswer(answer, ctx.insecureHttp);
    return finish(http.status, 'application/json; charset=utf-8', http.body, http.keyCount, http.message, http.headers);
  });
}


