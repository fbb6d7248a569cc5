/**
 * How a QKD key's ID travels in a PSK identity, so that the server can ask its own key manager for the same
 * key (ETSI GS QKD 014 `dec_keys`).
 *
 * The external identity is ASCII text: the key_ID (a UUID, clause 6.3), optionally preceded by the master
 * SAE's ID — the TLS client's — and a slash, which tells a server serving several clients whose keys to ask for:
 *
 * ```
 * 550e8400-e29b-41d4-a716-446655440000              key ID only (the server uses its configured peer SAE)
 * client-sae/550e8400-e29b-41d4-a716-446655440000   SAE ID and key ID (split at the last slash)
 * ```
 *
 * With the RFC 9258 importer this text is ImportedIdentity.external_identity; without it, the PSK identity
 * itself. The identity is sent in clear: it names the key but reveals nothing of it (the KME hands a key to
 * each side once, to authenticated SAEs only).
 *
 * Runtime-neutral.
 */
import { fromUtf8, utf8 } from '../codec/bytes.js';

export interface KeyIdIdentity {
  /** The ETSI key_ID (UUID text). */
  readonly keyId: string;
  /** The master SAE (the TLS client) that received the key with enc_keys, when the identity names it. */
  readonly saeId?: string;
}

/** The longest key ID identity {@link decodeKeyIdIdentity} reads, in bytes (an SAE ID of up to 987 characters). */
const MAX_KEY_ID_IDENTITY_BYTES = 1024;

/**
 * The external identity for a key ID (and optionally the client's SAE ID). A TypeError for what
 * {@link decodeKeyIdIdentity} would not read back: a key ID that is not a UUID, an SAE ID that is empty, not
 * printable ASCII or so long that the identity exceeds 1024 bytes.
 */
export function encodeKeyIdIdentity(id: KeyIdIdentity): Uint8Array {
  if (!isUuid(id.keyId)) throw new TypeError(`key ID identity: '${id.keyId}' is not a UUID`);
  if (id.saeId !== undefined && (id.saeId === '' || !printable(id.saeId))) {
    throw new TypeError('key ID identity: the SAE ID must be non-empty printable ASCII');
  }
  const identity = utf8(id.saeId === undefined ? id.keyId : `${id.saeId}/${id.keyId}`);
  if (identity.length > MAX_KEY_ID_IDENTITY_BYTES) {
    throw new TypeError(`key ID identity: the SAE ID is too long (the identity would be ${identity.length} bytes, at most ${MAX_KEY_ID_IDENTITY_BYTES})`);
  }
  return identity;
}

/** Reads an external identity as a key ID identity; undefined when it is not one. */
export function decodeKeyIdIdentity(identity: Uint8Array): KeyIdIdentity | undefined {
  if (identity.length < 36 || identity.length > MAX_KEY_ID_IDENTITY_BYTES) return undefined;
  for (const b of identity) if (b < 0x20 || b > 0x7e) return undefined;
  const text = fromUtf8(identity);
  const slash = text.lastIndexOf('/');
  const keyId = slash < 0 ? text : text.slice(slash + 1);
  if (!isUuid(keyId)) return undefined;
  if (slash < 0) return { keyId };
  const saeId = text.slice(0, slash);
  return saeId === '' ? undefined : { keyId, saeId };
}

function printable(s: string): boolean {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x20 || c > 0x7e) return false;
  }
  return true;
}

const UUID_RE = /^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$/;

/** key_IDs are UUIDs (clause 6.3, RFC 4122 text form). */
export function isUuid(s: unknown): s is string {
  return typeof s === 'string' && UUID_RE.test(s);
}

/**
 * A random (version 4) UUID, RFC 4122 §4.4, for a new key ID: drawn from `randomBytes` until `taken` says it is
 * free (a few tries; a source that keeps repeating itself is not random, and `owner` says whose it is).
 */
export function freshUuid(randomBytes: (length: number) => Uint8Array, taken: (id: string) => boolean, owner: string): string {
  for (let attempt = 0; attempt < 8; attempt++) {
    const b = randomBytes(16);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = '';
    for (let i = 0; i < 16; i++) h += b[i].toString(16).padStart(2, '0');
    const id = `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
    if (!taken(id)) return id;
  }
  throw new Error(`${owner}: the random source keeps repeating key IDs; it is not random`);
}
