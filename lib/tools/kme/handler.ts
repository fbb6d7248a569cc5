/**
 * The request logic of one simulated ETSI GS QKD 014 key manager (KME): routing, authorization and the
 * validation that conformance suites expect, as a pure function from a parsed HTTP request to an answer.
 * The HTTP(S) servers around it live in {@link ./simulator.ts}.
 *
 * Roles (clause 4): this simulator serves one QKD link between two KMEs. The MASTER KME serves the master
 * SAE (here the TLS client), which calls `status` and `enc_keys` with the slave's SAE ID in the path. The
 * SLAVE KME serves the slave SAE (the TLS server), which calls `dec_keys` with the master's SAE ID in the path
 * (and may call `status` with it, to learn key sizes). Any other combination is 401.
 *
 * Checks, in order: path (404), method (405), caller (401), path SAE ID (400 blank or same as caller,
 * 401 unknown), a POST body's content type (415), request fields (400), keys (400 unknown key_ID, 401 a key_ID
 * addressed to another SAE pair, 503 not enough key material).
 *
 * Runtime-neutral: no `node:` imports.
 */
import {
  type Etsi014ErrorBody,
  type Etsi014Operation,
  type Etsi014Status,
  isJsonObject,
  isUuid,
} from '../../qkd/etsi014-api.js';
import { clip } from '../../codec/text.js';
import type { IssuedKey, QkdLink } from './store.js';

/** What the handler needs of a key store: one link's {@link QkdLink}, or a network's relay for one SAE pair. */
export type KmeKeyStore = Pick<QkdLink, 'issue' | 'redeem' | 'storedKeyCount' | 'pendingKeyCount'> & {
  readonly config: Pick<QkdLink['config'], 'rateBitsPerSecond'>;
};

/** Limits reported in Status and enforced on requests (all sizes in bits). */
export interface KmeLimits {
  keySize: number;
  minKeySize: number;
  maxKeySize: number;
  maxKeysPerRequest: number;
  maxKeyCount: number;
}

/** One of the two KMEs of the link. */
export interface KmeEndpoint {
  /** 'master' serves the master SAE (enc_keys); 'slave' serves the slave SAE (dec_keys). */
  role: 'master' | 'slave';
  kmeId: string;
  peerKmeId: string;
  masterSaeId: string;
  slaveSaeId: string;
  limits: KmeLimits;
}

/** A request as the HTTP layer parsed it. */
export interface KmeRequest {
  method: string;
  /** The URL path without the query string, still percent-encoded. */
  path: string;
  query: URLSearchParams;
  /** The request body as text ('' when there is none). */
  body: string;
  /** The Content-Type header, if any (a POST body must be application/json). */
  contentType?: string;
  /** The SAE the transport authenticated (client certificate, or the loopback header); undefined if none. */
  callerSaeId: string | undefined;
}

/** The answer: JSON for status and errors, keys for enc_keys/dec_keys (the caller encodes and wipes them). */
export type KmeResponse =
  | { status: 200; op: 'status'; json: Etsi014Status }
  | { status: 200; op: 'enc_keys' | 'dec_keys'; keys: IssuedKey[] }
  | { status: 400 | 401 | 404 | 405 | 415 | 503; op: Etsi014Operation | undefined; json: Etsi014ErrorBody; allow?: string };

/** Status.max_SAE_ID_count: this simulator does not multicast keys to additional slave SAEs. */
export const MAX_SAE_ID_COUNT = 0;

export function handleKmeRequest(kme: KmeEndpoint, link: KmeKeyStore, req: KmeRequest): KmeResponse {
  let op: Etsi014Operation | undefined;
  try {
    const route = parseRoute(req.path);
    op = route.op;
    const allow = op === 'status' ? 'GET' : 'GET, POST';
    if (!allow.split(', ').includes(req.method)) {
      return { status: 405, op, json: { message: `method ${req.method} is not allowed on ${op}; use ${allow}` }, allow };
    }
    authorize(kme, req.callerSaeId, route.rawSaeId, op);
    if (req.method === 'POST') checkJsonBody(req);
    switch (op) {
      case 'status':
        return { status: 200, op, json: statusOf(kme, link) };
      case 'enc_keys': {
        const r = req.method === 'GET' ? keyRequestFromQuery(kme.limits, req.query) : keyRequestFromBody(kme, req.body);
        return { status: 200, op, keys: issue(link, r.number, r.size) };
      }
      case 'dec_keys': {
        const ids = req.method === 'GET' ? keyIdsFromQuery(req.query) : keyIdsFromBody(req.body);
        return { status: 200, op, keys: redeem(kme, link, ids) };
      }
    }
  } catch (e) {
    if (e instanceof KmeReject) return { status: e.status, op, json: e.body };
    throw e;
  }
}

/** A rejected request: thrown by the checks below, turned into an Error body (clause 6.5). */
class KmeReject extends Error {
  readonly body: Etsi014ErrorBody;
  constructor(
    readonly status: 400 | 401 | 404 | 415 | 503,
    message: string,
    details?: Record<string, unknown>[],
  ) {
    super(message);
    this.body = details ? { message, details } : { message };
  }
}

const ROUTE_RE = /^\/api\/v1\/keys\/([^/]*)\/(status|enc_keys|dec_keys)$/;

/** Clause 5.1: `/api/v1/keys/{SAE_ID}/{status|enc_keys|dec_keys}`. */
function parseRoute(path: string): { op: Etsi014Operation; rawSaeId: string } {
  const m = ROUTE_RE.exec(path);
  if (!m) {
    throw new KmeReject(404, `unknown path ${clip(path, 64)}; this KME serves /api/v1/keys/{SAE_ID}/status, /enc_keys and /dec_keys`);
  }
  return { op: m[2] as Etsi014Operation, rawSaeId: m[1] };
}

/** Checks the caller and the SAE ID in the path (clause 4: each KME serves its own SAE). */
function authorize(kme: KmeEndpoint, caller: string | undefined, rawSaeId: string, op: Etsi014Operation): void {
  const served = kme.role === 'master' ? kme.masterSaeId : kme.slaveSaeId;
  const peer = kme.role === 'master' ? kme.slaveSaeId : kme.masterSaeId;
  if (caller === undefined) {
    throw new KmeReject(401, 'the calling SAE is not identified: no client certificate naming it (or, over plain HTTP, no X-SAE-ID header)');
  }
  if (caller !== served) {
    throw new KmeReject(401, `SAE '${clip(caller, 64)}' is not served by ${kme.kmeId} (it serves SAE '${served}')`);
  }
  let saeId: string;
  try {
    saeId = decodeURIComponent(rawSaeId);
  } catch {
    throw new KmeReject(400, 'the SAE ID in the path is not valid percent-encoding');
  }
  if (saeId.trim() === '') throw new KmeReject(400, 'the SAE ID in the path is blank');
  if (saeId === caller) {
    throw new KmeReject(400, `master and slave SAE IDs must differ (the path names the caller '${clip(caller, 64)}')`);
  }
  if (op === 'enc_keys' && kme.role !== 'master') {
    throw new KmeReject(401, `SAE '${caller}' is the slave of this link: it fetches keys with dec_keys, not enc_keys`);
  }
  if (op === 'dec_keys' && kme.role !== 'slave') {
    throw new KmeReject(401, `SAE '${caller}' is the master of this link: it gets keys with enc_keys, not dec_keys`);
  }
  if (saeId !== peer) {
    throw new KmeReject(401, `no QKD link from SAE '${caller}' to SAE '${clip(saeId, 64)}' at ${kme.kmeId}`);
  }
}

/** Clause 6.1. Counts are live; status_extension adds what this simulator knows beyond the spec. */
function statusOf(kme: KmeEndpoint, link: KmeKeyStore): Etsi014Status {
  const l = kme.limits;
  return {
    source_KME_ID: kme.kmeId,
    target_KME_ID: kme.peerKmeId,
    master_SAE_ID: kme.masterSaeId,
    slave_SAE_ID: kme.slaveSaeId,
    key_size: l.keySize,
    stored_key_count: link.storedKeyCount(),
    max_key_count: l.maxKeyCount,
    max_key_per_request: l.maxKeysPerRequest,
    max_key_size: l.maxKeySize,
    min_key_size: l.minKeySize,
    max_SAE_ID_count: MAX_SAE_ID_COUNT,
    status_extension: {
      pending_key_count: link.pendingKeyCount(),
      key_rate_bps: link.config.rateBitsPerSecond,
    },
  };
}

interface KeyRequestFields {
  number: number;
  size: number;
}

/** Clause 5.2, GET form: `?number=N&size=BITS`, both optional. */
function keyRequestFromQuery(limits: KmeLimits, q: URLSearchParams): KeyRequestFields {
  return {
    number: checkNumber(limits, queryInteger(q, 'number') ?? 1),
    size: checkSize(limits, queryInteger(q, 'size') ?? limits.keySize),
  };
}

/** Clause 6.2, POST form: the Key request object; an empty body means all defaults. */
function keyRequestFromBody(kme: KmeEndpoint, text: string): KeyRequestFields {
  const body = text.trim() === '' ? {} : parseJsonObject(text);
  const limits = kme.limits;
  const number = checkNumber(limits, bodyInteger(body, 'number') ?? 1);
  const size = checkSize(limits, bodyInteger(body, 'size') ?? limits.keySize);

  const extra = body.additional_slave_SAE_IDs;
  if (extra !== undefined) {
    if (!Array.isArray(extra) || !extra.every((s) => typeof s === 'string')) {
      throw new KmeReject(400, 'additional_slave_SAE_IDs must be an array of strings');
    }
    if (extra.some((s) => s.trim() === '')) throw new KmeReject(400, 'additional_slave_SAE_IDs contains an empty SAE ID');
    if (new Set(extra).size !== extra.length) throw new KmeReject(400, 'additional_slave_SAE_IDs contains duplicates');
    for (const own of [kme.masterSaeId, kme.slaveSaeId]) {
      if (extra.includes(own)) {
        throw new KmeReject(400, `additional_slave_SAE_IDs must not contain the master or slave SAE ('${own}')`);
      }
    }
    if (extra.length > MAX_SAE_ID_COUNT) {
      throw new KmeReject(400, `key multicast is not supported: ${extra.length} additional slave SAE IDs, max_SAE_ID_count is ${MAX_SAE_ID_COUNT}`);
    }
  }
  checkExtensions(body, 'extension_optional');
  const mandatory = checkExtensions(body, 'extension_mandatory');
  if (mandatory.length > 0) {
    // Clause 6.2: a KME that does not support a mandatory extension must answer with an error.
    const names = mandatory.flatMap((ext) => Object.keys(ext));
    throw new KmeReject(400, 'unsupported mandatory extension(s): this KME supports none', names.map((n) => ({ extension: n })));
  }
  return { number, size };
}

/** Clause 5.3, GET form: one or more `key_ID=UUID`. */
function keyIdsFromQuery(q: URLSearchParams): string[] {
  const ids = q.getAll('key_ID');
  if (ids.length === 0) throw new KmeReject(400, 'the key_ID query parameter is required');
  return ids;
}

/** Clause 6.4: the Key IDs object. */
function keyIdsFromBody(text: string): string[] {
  const body = parseJsonObject(text);
  const list = body.key_IDs;
  if (!Array.isArray(list)) throw new KmeReject(400, 'key_IDs (an array of {key_ID}) is required');
  return list.map((item, i) => {
    if (!isJsonObject(item) || typeof item.key_ID !== 'string') {
      throw new KmeReject(400, `key_IDs[${i}] must be an object with a string key_ID`);
    }
    return item.key_ID;
  });
}

function issue(link: KmeKeyStore, number: number, size: number): IssuedKey[] {
  const r = link.issue(number, size);
  if (r.ok) return r.keys;
  if (r.reason === 'insufficient_key_material') {
    throw new KmeReject(503, `not enough key material: ${number} keys of ${size} bits need ${r.neededBits} bits, ${r.availableBits} are stored`, [
      { needed_bits: r.neededBits, available_bits: r.availableBits },
    ]);
  }
  throw new KmeReject(503, `too many keys wait for the slave SAE's dec_keys (${r.pending} of at most ${r.limit})`);
}

function redeem(kme: KmeEndpoint, link: KmeKeyStore, ids: string[]): IssuedKey[] {
  const { limits, masterSaeId, slaveSaeId } = kme;
  if (ids.length === 0) throw new KmeReject(400, 'key_IDs is empty');
  if (ids.length > limits.maxKeysPerRequest) {
    throw new KmeReject(400, `too many key_IDs: ${ids.length}, max_key_per_request is ${limits.maxKeysPerRequest}`);
  }
  const bad = ids.filter((id) => !isUuid(id));
  if (bad.length > 0) {
    throw new KmeReject(400, 'key_ID must be a UUID', bad.slice(0, 8).map((id) => ({ key_ID: clip(id, 64) })));
  }
  if (new Set(ids.map((id) => id.toLowerCase())).size !== ids.length) throw new KmeReject(400, 'key_IDs contains duplicates');
  const r = link.redeem(ids);
  if (r.ok) return r.keys;
  // ETSI GS QKD 014, Get key with key IDs (clause 5.4): 401 when the caller is not the slave SAE that the master's
  // Get key named for these key IDs. Only that: who the key is for is not told.
  if (r.notAddressedKeyIds?.length) {
    throw new KmeReject(401, `key_ID not addressed to SAE '${clip(slaveSaeId, 64)}' by SAE '${clip(masterSaeId, 64)}'`, r.notAddressedKeyIds.slice(0, 8).map((id) => ({ key_ID: id })));
  }
  throw new KmeReject(400, 'key not found: never issued, already delivered, or expired', r.unknownKeyIds.map((id) => ({ key_ID: id })));
}

function checkNumber(limits: KmeLimits, n: number): number {
  if (n < 1) throw new KmeReject(400, `number must be at least 1 (got ${n})`);
  if (n > limits.maxKeysPerRequest) {
    throw new KmeReject(400, `number ${n} exceeds max_key_per_request ${limits.maxKeysPerRequest}`);
  }
  return n;
}

function checkSize(limits: KmeLimits, size: number): number {
  if (size < 1) throw new KmeReject(400, `size must be positive (got ${size})`);
  if (size % 8 !== 0) throw new KmeReject(400, `size must be a multiple of 8 bits (got ${size})`);
  if (size < limits.minKeySize || size > limits.maxKeySize) {
    throw new KmeReject(400, `size ${size} is outside min_key_size ${limits.minKeySize} .. max_key_size ${limits.maxKeySize}`);
  }
  return size;
}

/** An optional integer query parameter given at most once, digits only. */
function queryInteger(q: URLSearchParams, name: string): number | undefined {
  const all = q.getAll(name);
  if (all.length === 0) return undefined;
  if (all.length > 1) throw new KmeReject(400, `${name} is given more than once`);
  if (!/^[0-9]{1,15}$/.test(all[0])) throw new KmeReject(400, `${name} must be a positive integer (got '${clip(all[0], 64)}')`);
  return Number(all[0]);
}

/**
 * A POST body is JSON: the OpenAPI definition of ETSI GS QKD 014 gives each requestBody as application/json only.
 * Anything else (curl -d's form encoding, text/plain, no type) is 415, so that a client that would be refused by a
 * strict KME is refused here too. An empty body (enc_keys' defaults) needs no type.
 */
function checkJsonBody(req: KmeRequest): void {
  if (req.body.trim() === '') return;
  const type = req.contentType?.split(';')[0].trim().toLowerCase();
  if (type !== 'application/json') {
    throw new KmeReject(415, `a request body must be sent as Content-Type: application/json, got ${type === undefined || type === '' ? 'none' : `'${clip(type, 100)}'`}`);
  }
}

/** An optional integer member of a JSON body. */
function bodyInteger(body: Record<string, unknown>, name: string): number | undefined {
  const v = body[name];
  if (v === undefined) return undefined;
  if (typeof v !== 'number' || !Number.isSafeInteger(v)) throw new KmeReject(400, `${name} must be an integer (got ${clip(JSON.stringify(v), 64)})`);
  return v;
}

function checkExtensions(body: Record<string, unknown>, name: string): Record<string, unknown>[] {
  const v = body[name];
  if (v === undefined) return [];
  if (!Array.isArray(v) || !v.every(isJsonObject)) throw new KmeReject(400, `${name} must be an array of objects`);
  return v;
}

function parseJsonObject(text: string): Record<string, unknown> {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    throw new KmeReject(400, 'the request body is not valid JSON');
  }
  if (!isJsonObject(v)) throw new KmeReject(400, 'the request body must be a JSON object');
  return v;
}


/**
 * CORS (Fetch standard, "CORS protocol") for a page calling the simulator from the browser, as the web demo
 * does: allowed only when the page's own origin is on loopback (http(s)://127.x.x.x, localhost, [::1], any
 * port), echoing that origin. The browser then sends the X-SAE-ID header and a JSON body after a preflight.
 * No credentials (cookies) are involved. Undefined: no CORS headers (the browser blocks the page).
 */
export function loopbackCorsHeaders(origin: string | undefined): Record<string, string> | undefined {
  if (origin === undefined || !/^https?:\/\/(?:127\.\d{1,3}\.\d{1,3}\.\d{1,3}|localhost|\[::1\])(?::\d{1,5})?$/i.test(origin)) return undefined;
  return {
    'access-control-allow-origin': origin,
    'access-control-allow-methods': 'GET, POST',
    'access-control-allow-headers': 'content-type, x-sae-id',
    'access-control-max-age': '600',
    vary: 'Origin',
  };
}

