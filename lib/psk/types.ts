/**
 * External pre-shared keys as the handshake sees them (RFC 8446 §4.2.11, RFC 9257).
 *
 * An external PSK is a secret that both endpoints already share — here, typically a key delivered by a
 * Quantum Key Distribution network — together with the identity that names it on the wire and the hash it is
 * bound to. An RFC 9258 imported PSK is turned into this same shape by the importer (binderKind "imported").
 */
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
   * associated with the first PSK). Defaults to the first configured suite whose hash matches {@link hash}.
   */
  readonly earlyDataSuite?: SupportedSuiteName;
  /** A name for logs, such as the QKD key ID. Never the secret. */
  readonly label?: string;
}

/** Prints an identity for logs: as text when it is printable ASCII, else as hex. */
export function identityText(identity: Uint8Array): string {
  let printable = identity.length > 0;
  for (const b of identity) if (b < 0x20 || b > 0x7e) printable = false;
  if (printable) return String.fromCharCode(...identity);
  let s = '';
  for (const b of identity) s += b.toString(16).padStart(2, '0');
  return s;
}
