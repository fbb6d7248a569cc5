/**
 * The data formats of ETSI GS QKD 014 V1.1.1 (clause 6), shared by the key-delivery client
 * ({@link ./etsi014-client.ts}) and the key manager simulator (lib/tools/kme/simulator.ts).
 *
 * Background for a newcomer: a Quantum Key Distribution (QKD) link gives two key managers (KMEs) the same
 * random bits. Each application endpoint (an SAE) asks its own KME for keys over this REST API:
 * the "master" SAE asks for new keys (`enc_keys`) and receives them with key IDs; it tells the "slave" SAE
 * those IDs in-band (for TLS: inside the PSK identity); the slave asks its own KME for the same keys by ID
 * (`dec_keys`). Field names below are the spec's own (snake_case), because they are the wire format.
 *
 * Runtime-neutral: no `node:` imports.
 */
import { clip } from '../codec/text.js';
import { isUuid } from '../psk/key-id.js';

/** Status (clause 6.1). All sizes in bits. `max_SAE_ID_count` 0 means no key multicast. */
export interface Etsi014Status {
  source_KME_ID: string;
  target_KME_ID: string;
  master_SAE_ID: string;
  slave_SAE_ID: string;
  key_size: number;
  stored_key_count: number;
  max_key_count: number;
  max_key_per_request: number;
  max_key_size: number;
  min_key_size: number;
  max_SAE_ID_count: number;
  status_extension?: Record<string, unknown>;
}

/** Key request (clause 6.2), body of a POST to `enc_keys`. Every field is optional. */
export interface Etsi014KeyRequest {
  /** How many keys (default 1). */
  number?: number;
  /** Key size in bits, a multiple of 8 (default: Status.key_size). */
  size?: number;
  additional_slave_SAE_IDs?: string[];
  extension_mandatory?: Record<string, unknown>[];
  extension_optional?: Record<string, unknown>[];
}

/** One key of a key container: `key` is base64 (RFC 4648 §4). */
export interface Etsi014WireKey {
  key_ID: string;
  key_ID_extension?: Record<string, unknown>;
  key: string;
  key_extension?: Record<string, unknown>;
}

/** Key container (clause 6.3): the answer of `enc_keys` and `dec_keys`. */
export interface Etsi014KeyContainer {
  keys: Etsi014WireKey[];
  key_container_extension?: Record<string, unknown>;
}

/** Key IDs (clause 6.4): the body of a POST to `dec_keys`. */
export interface Etsi014KeyIds {
  key_IDs: { key_ID: string; key_ID_extension?: Record<string, unknown> }[];
  key_IDs_extension?: Record<string, unknown>;
}

/** Error (clause 6.5): the body of a 400 or 503 answer. */
export interface Etsi014ErrorBody {
  message: string;
  details?: Record<string, unknown>[];
}

/** The three methods of clause 5, and the URL path of each below a KME's base URL. */
export type Etsi014Operation = 'status' | 'enc_keys' | 'dec_keys';

/**
 * `/api/v1/keys/{SAE_ID}/{operation}` (clause 5.1): `{SAE_ID}` is the slave SAE for `status` and
 * `enc_keys`, and the master SAE for `dec_keys`. The ID is percent-encoded.
 */
export function etsi014Path(saeId: string, op: Etsi014Operation): string {
  return `/api/v1/keys/${encodeURIComponent(saeId)}/${op}`;
}

/**
 * The header that names the calling SAE when the simulator runs over plain HTTP on loopback (tests and
 * demos only). Over HTTPS the KME identifies the SAE by its client certificate and ignores this header.
 */
export const SAE_ID_HEADER = 'x-sae-id';

/** key_IDs are UUIDs (clause 6.3): the check lives with the key-ID identity format (lib/psk/key-id.ts). */
export { isUuid };

const BASE64_RE = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

/** Strict base64 (RFC 4648 §4, padded), as the key container carries keys. */
export function isBase64(s: unknown): s is string {
  return typeof s === 'string' && BASE64_RE.test(s);
}

/** True for a plain JSON object (not null, not an array). */
export function isJsonObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

// ---------------------------------------------------------------------------------------------------------
// Shared by the Node client (etsi014-client.ts) and the fetch client (lib/qkd/etsi014-fetch.ts): what a call
// returns, how it fails, how requests are built and how answers are checked.

/** A key as delivered: `key` is the decoded key material, owned by the caller. */
export interface Etsi014Key {
  keyId: string;
  key: Uint8Array;
  keyIdExtension?: Record<string, unknown>;
  keyExtension?: Record<string, unknown>;
}

/** What `encKeys` may ask for (clause 6.2); every field is optional. */
export interface Etsi014EncKeysRequest {
  /** How many keys (KME default 1). */
  number?: number;
  /** Key size in bits, a multiple of 8 (KME default: Status.key_size). */
  size?: number;
  additionalSlaveSaeIds?: string[];
  extensionMandatory?: Record<string, unknown>[];
  extensionOptional?: Record<string, unknown>[];
}

export interface Etsi014CallOptions {
  /** POST (default) sends a JSON body; GET sends query parameters (number and size, or key_ID). */
  method?: 'POST' | 'GET';
  /** Cancels the call (reason 'aborted'). */
  signal?: AbortSignal;
}

/** Why a call failed. */
export type Etsi014FailureReason =
  | 'bad_request' // HTTP 400: the KME found the request invalid (or a key_ID unknown / already delivered)
  | 'unauthorized' // HTTP 401: the KME does not accept this SAE for this peer
  | 'unavailable' // HTTP 503: not enough key material, or a KME-side error, after the retries
  | 'http_status' // any other HTTP status
  | 'timeout' // no complete answer within timeoutMs
  | 'aborted' // the caller's signal fired
  | 'connection' // could not connect, or the connection broke, after the retries
  | 'tls' // the TLS handshake with the KME failed (certificates)
  | 'invalid_response'; // a 200 answer that does not follow the spec or does not match the request, or an answer over the size bound

export class Etsi014Error extends Error {
  override readonly name = 'Etsi014Error';
  /** The KME's Error body (clause 6.5) when it sent one. */
  readonly body: Etsi014ErrorBody | undefined;
  constructor(
    readonly reason: Etsi014FailureReason,
    message: string,
    readonly operation: Etsi014Operation,
    /** The HTTP status, when an answer arrived. */
    readonly status: number | undefined,
    body: Etsi014ErrorBody | undefined,
    /** How many requests were sent. */
    readonly attempts: number,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.body = body;
  }
  /** The spec's Error.message from the KME. */
  get kmeMessage(): string | undefined {
    return this.body?.message;
  }
  /** The spec's Error.details from the KME. */
  get details(): Record<string, unknown>[] | undefined {
    return this.body?.details;
  }
}

/** Key request (clause 6.2) for `enc_keys`: query parameters for GET, a JSON body for POST. */
export function encKeysRequest(request: Etsi014EncKeysRequest, method: 'GET' | 'POST'): { query?: URLSearchParams; body?: Etsi014KeyRequest } {
  if (method === 'GET') {
    if (request.additionalSlaveSaeIds || request.extensionMandatory || request.extensionOptional) {
      throw new TypeError('encKeys: GET carries only number and size; use POST for the other fields');
    }
    const query = new URLSearchParams();
    if (request.number !== undefined) query.set('number', String(request.number));
    if (request.size !== undefined) query.set('size', String(request.size));
    return { query };
  }
  const body: Etsi014KeyRequest = {};
  if (request.number !== undefined) body.number = request.number;
  if (request.size !== undefined) body.size = request.size;
  if (request.additionalSlaveSaeIds !== undefined) body.additional_slave_SAE_IDs = request.additionalSlaveSaeIds;
  if (request.extensionMandatory !== undefined) body.extension_mandatory = request.extensionMandatory;
  if (request.extensionOptional !== undefined) body.extension_optional = request.extensionOptional;
  return { body };
}

/** Key IDs (clause 6.4) for `dec_keys`: one `key_ID` query parameter each for GET, a JSON body for POST. */
export function decKeysRequest(keyIds: readonly string[], method: 'GET' | 'POST'): { query?: URLSearchParams; body?: Etsi014KeyIds } {
  if (!Array.isArray(keyIds) || !keyIds.every((id) => typeof id === 'string')) {
    throw new TypeError('decKeys: keyIds must be an array of strings');
  }
  if (method === 'GET') {
    const query = new URLSearchParams();
    for (const id of keyIds) query.append('key_ID', id);
    return { query };
  }
  return { body: { key_IDs: keyIds.map((key_ID) => ({ key_ID })) } };
}

/**
 * Key container (clause 6.3) -> decoded keys (fresh arrays the caller owns), or the reason it is invalid.
 * On failure every key decoded so far is wiped.
 */
export function decodeKeyContainer(json: unknown): Etsi014Key[] | string {
  if (!isJsonObject(json) || !Array.isArray(json.keys)) return 'not a Key container (no keys array)';
  const out: Etsi014Key[] = [];
  for (const item of json.keys as unknown[]) {
    if (!isJsonObject(item) || !isUuid(item.key_ID) || !isBase64(item.key) || item.key === '') {
      for (const k of out) k.key.fill(0);
      return 'a key entry lacks a UUID key_ID or a base64 key';
    }
    const key: Etsi014Key = { keyId: item.key_ID, key: fromBase64(item.key) };
    if (isJsonObject(item.key_ID_extension)) key.keyIdExtension = item.key_ID_extension;
    if (isJsonObject(item.key_extension)) key.keyExtension = item.key_extension;
    out.push(key);
  }
  return out;
}

/** Checks that `enc_keys` delivered what was asked for; the reason when not (the caller wipes the keys). */
export function encKeysProblem(keys: readonly Etsi014Key[], request: Etsi014EncKeysRequest): string | undefined {
  const expected = request.number ?? 1;
  if (keys.length !== expected) return `asked for ${expected} keys, got ${keys.length}`;
  if (request.size !== undefined && keys.some((k) => k.key.length * 8 !== request.size)) return `a key is not ${request.size} bits long`;
  // Clause 6.2: a request has one size for all its keys (when omitted, Status.key_size), so the keys of one
  // answer are all of one size, even when the client left the size to the KME.
  if (keys.some((k) => k.key.length !== keys[0].key.length)) return 'keys of different sizes in one answer';
  if (new Set(keys.map((k) => k.keyId.toLowerCase())).size !== keys.length) return 'duplicate key_IDs';
  return undefined;
}

/** The `dec_keys` answer in the order of `keyIds`, or undefined when it does not hold exactly those keys. */
export function orderDecKeys(keys: readonly Etsi014Key[], keyIds: readonly string[]): Etsi014Key[] | undefined {
  const byId = new Map(keys.map((k) => [k.keyId.toLowerCase(), k]));
  const ordered = keyIds.map((id) => byId.get(id.toLowerCase()));
  if (byId.size !== keys.length || keys.length !== keyIds.length || ordered.some((k) => k === undefined)) return undefined;
  return ordered as Etsi014Key[];
}

/** The error for a non-200 answer, with the KME's Error body (clause 6.5) when it sent one. */
export function httpFailure(op: Etsi014Operation, where: string, peer: string, status: number, text: string, attempts: number): Etsi014Error {
  let body: Etsi014ErrorBody | undefined;
  try {
    const v: unknown = JSON.parse(text);
    if (isJsonObject(v) && typeof v.message === 'string') {
      body = { message: v.message };
      if (Array.isArray(v.details)) body.details = v.details.filter(isJsonObject);
    }
  } catch {
    // not an Error body: the status says enough
  }
  const said = body ? `: ${clip(body.message)}` : '';
  switch (status) {
    case 400:
      return new Etsi014Error('bad_request', `KME rejected the ${op} request as invalid (HTTP 400 Bad Request)${said}`, op, status, body, attempts);
    case 401:
      return new Etsi014Error(
        'unauthorized',
        `KME refused the ${op} request (HTTP 401 Unauthorized)${said}; check that this SAE's client certificate is the one the KME expects and that '${clip(peer)}' is the right peer SAE ID`,
        op,
        status,
        body,
        attempts,
      );
    case 503:
      return new Etsi014Error('unavailable', `KME cannot serve ${op} now (HTTP 503, ${attempts} attempt(s))${said}`, op, status, body, attempts);
    default:
      return new Etsi014Error('http_status', `unexpected HTTP ${status} from the KME for ${op} (${where})${said}`, op, status, body, attempts);
  }
}

/** The error for a call cut short: by its deadline (`timeout`) or by the caller's signal (`aborted`). */
export function abortFailure(op: Etsi014Operation, where: string, timedOut: boolean, timeoutMs: number, attempts: number, cause: unknown): Etsi014Error {
  return timedOut
    ? new Etsi014Error('timeout', `no answer from the KME for ${op} within ${timeoutMs} ms (${where})`, op, undefined, undefined, attempts, { cause })
    : new Etsi014Error('aborted', `the ${op} call to the KME was aborted`, op, undefined, undefined, attempts, { cause });
}

/** Why a 200 answer to `status` is not a Status object (clause 6.1), or undefined when it is one. */
export function statusProblem(v: unknown): string | undefined {
  if (!isJsonObject(v)) return 'not an object';
  for (const f of ['source_KME_ID', 'target_KME_ID', 'master_SAE_ID', 'slave_SAE_ID'] as const) {
    if (typeof v[f] !== 'string') return `${f} is not a string`;
  }
  for (const f of ['key_size', 'stored_key_count', 'max_key_count', 'max_key_per_request', 'max_key_size', 'min_key_size', 'max_SAE_ID_count'] as const) {
    if (!Number.isSafeInteger(v[f])) return `${f} is not an integer`;
  }
  return undefined;
}

/** True for a loopback host name (where plain HTTP to a simulator is tolerated). */
export function isLoopbackHost(h: string): boolean {
  return h === 'localhost' || h === '[::1]' || h === '::1' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(h);
}

/** Decodes strict base64 (checked by isBase64) into a fresh array, without Node's Buffer. */
function fromBase64(s: string): Uint8Array {
  const bin = atob(s);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}
