/**
 * External pre-shared keys as the handshake sees them (RFC 8446 §4.2.11, RFC 9257).
 *
 * An external PSK is a secret that both endpoints already share — here, typically a key delivered by a
 * Quantum Key Distribution network — together with the identity that names it on the wire and the hash it is
 * bound to. An RFC 9258 imported PSK is turned into this same shape by the importer (binderKind "imported").
 */
import { isBytes } from '../codec/bytes.js';
import type { HashName } from '../crypto/provider.js';
import type { BinderKind } from '../keyschedule/schedule.js';
import type { SupportedSuiteName } from '../suites.js';

export interface Psk {
  /** The PSK identity sent in the ClientHello (opaque bytes, 1 to 65535 of them). */
  readonly identity: Uint8Array;
  /** The secret. The connection works on its own copy and wipes that copy when it no longer needs it. */
  readonly secret: Uint8Array;
  /** The hash the PSK is bound to (RFC 8446 §4.2.11): only cipher suites with this hash can use it. */
  readonly hash: HashName;
  /**
   * Which binder label to use: "external" ("ext binder", the default), "imported" ("imp binder", RFC 9258 §5.2),
   * or "resumption" ("res binder": only for replaying traces such as RFC 8448 §4; this stack does not resume).
   */
  readonly binderKind?: BinderKind;
  /** obfuscated_ticket_age to send (§4.2.11); 0 for external PSKs. */
  readonly obfuscatedTicketAge?: number;
  /**
   * The cipher suite provisioned with this PSK for 0-RTT (§4.2.10: early data is protected with the suite
   * associated with the first PSK; both sides must agree on it). Default: TLS_AES_128_GCM_SHA256 for a SHA-256
   * PSK, TLS_AES_256_GCM_SHA384 for a SHA-384 one (see {@link earlyDataSuiteName}).
   */
  readonly earlyDataSuite?: SupportedSuiteName;
  /**
   * The ALPN protocol provisioned with this PSK for 0-RTT (§4.2.10): a server accepts 0-RTT only when it selects
   * this protocol (or, when unset, no ALPN at all).
   */
  readonly earlyDataAlpn?: string;
  /** A name for logs, such as the QKD key ID. Never the secret. */
  readonly label?: string;
  /**
   * Server: this key serves this one handshake only, its source never gives it out again (a QKD key, which its key
   * manager delivers once and Etsi014ServerSource refuses to look up twice; a one-time StaticKeySource). A replayed
   * first flight then finds no key, as with RFC 8446 §8.1's single-use tickets, so the server's 0-RTT replay guard
   * (earlyDataReplayGuard, §8.2) is not consulted for it and does not fill up with the binders of keys that can never
   * come back. serverPskResolver sets it for a source whose `singleUse` is true. Setting it on a key that can be used
   * again lets replayed 0-RTT data through.
   */
  readonly singleUse?: boolean;
}

/**
 * The shortest PSK secret a connection accepts, in bytes: RFC 9257 §6, "Each PSK ... MUST be at least 128 bits
 * long" (a shorter one can be found offline by trying every value against a binder). Only
 * `dangerouslyAllowShortPsks` (CommonOptions) lets a shorter one through.
 */
export const MIN_PSK_BYTES = 16;

/** Why `psk` (or an RFC 9258 EPSK) may not be used (its secret is shorter than {@link MIN_PSK_BYTES}), or undefined. */
export function shortPskProblem(psk: { readonly secret: Uint8Array; readonly label?: string }): string | undefined {
  return psk.secret.length < MIN_PSK_BYTES
    ? `a PSK must be at least ${MIN_PSK_BYTES * 8} bits long (RFC 9257 §6), got ${psk.secret.length * 8} bits${psk.label ? ` (${psk.label})` : ''}; dangerouslyAllowShortPsks lets it through`
    : undefined;
}

/**
 * The secrets a lease's release wiped (lib/psk/source.ts: PskLease.release, and Connection.providePsks for an answer
 * of serverPskResolver), by buffer (a WeakSet keeps none alive); one counts as wiped while it still holds only zeros
 * (a key source may refill a recycled buffer with its next key). Such a secret is all zeros now: a server handshake
 * under it would authenticate anyone who names its identity and offers zeros, and a client would send a binder
 * computed under zeros; so both sides refuse it ({@link releasedPskProblem}).
 */
const releasedSecrets = new WeakSet<Uint8Array>();

/** Records that `secret` was wiped by a lease's release (see {@link releasedPskProblem}). */
export function markReleased(secret: Uint8Array): void {
  releasedSecrets.add(secret);
}

/**
 * Why `side` must not use `psk`: its secret was wiped by a lease's release. Undefined otherwise; the message names
 * no key material (a label, such as a QKD key ID, at most).
 *
 * - server: a serverPskResolver answer kept and handed to a second connection, after the first wiped it; a lease
 *   released before its handshake.
 * - client: a key taken from a key source (takePsks) offered on a second connection after the first one's lease
 *   was released, or a lease released (e.g. by a `releaseAfter` timer) before its connection was made. The
 *   ClientHello would carry a binder computed under zeros (RFC 8446 §4.2.11.2), which the server refuses with
 *   decrypt_error a round trip later.
 */
export function releasedPskProblem(psk: { readonly secret: unknown; readonly label?: unknown }, side: 'client' | 'server' = 'server'): string | undefined {
  if (typeof psk.secret !== 'object' || psk.secret === null || !releasedSecrets.has(psk.secret as Uint8Array)) return undefined;
  // Refused while it holds only zeros: a buffer that a key source recycles (a fixed pool) and has refilled with its
  // next key since the release holds a fresh key, not a wiped one.
  if (!(psk.secret as Uint8Array).every((b) => b === 0)) return undefined;
  if (side === 'client') {
    const which = typeof psk.label === 'string' && psk.label !== '' ? ` (${psk.label})` : '';
    return (
      `a PSK offered${which} was already wiped: its lease was released (PskLease.release, as takePsks(...).release or ` +
      'a releaseAfter timer does), so its secret is all zeros now; a key taken from a key source is for one ' +
      'connection: take a fresh one (takePsks) for each connection, and release its lease only once that ' +
      "connection's handshake is over"
    );
  }
  return (
    'the PSK lookup answered a key already wiped: a serverPskResolver answer is for one connection, and the connection ' +
    'it was handed to wiped its keys (Connection.providePsks), as a released lease wipes its keys; ask the resolver ' +
    'again for each connection'
  );
}

/**
 * Why `psk` is not a PSK's shape (`identity` and `secret` Uint8Arrays, `hash` 'SHA-256' or 'SHA-384'), or undefined.
 * A newcomer's `identity: 'alice'` failed deep in the handshake with "body is not a function", a `hash: 'SHA256'` with
 * "no PSK usable with the configured cipher suites" (found in a README walkthrough).
 */
export function pskShapeProblem(psk: unknown): string | undefined {
  // No string but the hash is quoted: a whole PSK, its secret, or an identity with the fields swapped may be the key
  // itself (a hex string), in a message that reaches logs.
  if (typeof psk !== 'object' || psk === null) return `a PSK is an object { identity, secret, hash }, got ${describe(psk, false)}`;
  const { identity, secret, hash } = psk as { identity?: unknown; secret?: unknown; hash?: unknown };
  if (!isBytes(identity)) return `a PSK's identity is a Uint8Array (such as new TextEncoder().encode('alice')), got ${describe(identity, false)}`;
  if (!isBytes(secret)) return `a PSK's secret is a Uint8Array, got ${describe(secret, false)}`;
  if (hash !== 'SHA-256' && hash !== 'SHA-384') return `a PSK's hash is 'SHA-256' or 'SHA-384', got ${describe(hash)}`;
  return undefined;
}

/** What `v` is; a string is quoted only when `quote` (never for what may be a key: a value that reaches a log). */
function describe(v: unknown, quote = true): string {
  if (typeof v === 'string' && !quote) return `a string of ${v.length} characters`;
  if (typeof v === 'string') return `the string ${JSON.stringify(v.length > 40 ? v.slice(0, 40) + '...' : v)}`;
  if (v === null || v === undefined) return String(v);
  return typeof v === 'object' ? (Object.getPrototypeOf(v)?.constructor?.name ?? 'an object') : typeof v;
}

/** A synchronous PSK lookup: for each offered identity, the PSK or undefined. */
export type PskResolver = (request: PskRequest) => readonly (Psk | undefined)[];

export interface PskRequest {
  /**
   * The identities the client offered, in its order: the first 16 of them (a server looks up no more; any
   * further ones count as unknown). A lookup answers one entry per identity of this list.
   */
  readonly identities: readonly Uint8Array[];
  /**
   * The server_name the client sent, if any, checked (RFC 6066 §3): an ASCII DNS host name, lowercased (RFC 4343
   * §3), a trailing dot dropped, of labels of at most 63 bytes and at most 253 bytes in all (any other name fails
   * the handshake with illegal_parameter, ServerNameNotHostName). A client's IP literal is taken as no name
   * (undefined).
   */
  readonly serverName?: string;
}

/** The suite that protects 0-RTT data under `psk` (§4.2.10): the provisioned one, or the default for its hash. */
export function earlyDataSuiteName(psk: Psk): SupportedSuiteName {
  return psk.earlyDataSuite ?? (psk.hash === 'SHA-256' ? 'TLS_AES_128_GCM_SHA256' : 'TLS_AES_256_GCM_SHA384');
}
