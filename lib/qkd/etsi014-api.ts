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
export { isUuid } from '../psk/key-id.js';

const BASE64_RE = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

/** Strict base64 (RFC 4648 §4, padded), as the key container carries keys. */
export function isBase64(s: unknown): s is string {
  return typeof s === 'string' && BASE64_RE.test(s);
}

/** True for a plain JSON object (not null, not an array). */
export function isJsonObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
