/**
 * Builds the file that OpenSSL's `s_server -psk_session FILE` and `s_client -psk_session FILE` read: a PEM
 * "SSL SESSION PARAMETERS" block holding a DER SSL_SESSION whose master key is the external PSK. This is the
 * only way to give the OpenSSL command-line tools an external PSK bound to SHA-384, or one that allows
 * 0-RTT data (the session's max_early_data), since `-psk HEX` always means SHA-256 and no early data.
 *
 * The structure is OpenSSL's SSL_SESSION_ASN1 (ssl/ssl_asn1.c), of which we fill in:
 *
 * ```
 * SSL_SESSION ::= SEQUENCE {
 *   version          INTEGER (1),
 *   sslVersion       INTEGER (0x0304, TLS 1.3),
 *   cipher           OCTET STRING (the 2-byte suite id),
 *   sessionId        OCTET STRING (empty),
 *   masterKey        OCTET STRING (the PSK),
 *   time         [1] EXPLICIT INTEGER (seconds since 1970),
 *   timeout      [2] EXPLICIT INTEGER (seconds),
 *   maxEarlyData [15] EXPLICIT INTEGER OPTIONAL   -- omitted when 0
 * }
 * ```
 * The PSK identity is not part of it: both tools take it from `-psk_identity`.
 */
import type { SupportedSuiteName } from '../../lib/suites.js';
import { SUITES } from '../../lib/suites.js';

export interface PskSessionOptions {
  /** The external PSK (its length is the hash length of the suite's hash for OpenSSL to accept it). */
  readonly secret: Uint8Array;
  /** The suite the PSK is provisioned with (its hash is the PSK's hash). */
  readonly suite: SupportedSuiteName;
  /** 0-RTT bytes the session allows (0: no early data). */
  readonly maxEarlyData?: number;
  /** The session's start time in seconds (default: now). */
  readonly time?: number;
}

/** The PEM text of an OpenSSL SSL_SESSION carrying an external PSK. */
export function opensslPskSessionPem(options: PskSessionOptions): string {
  const suiteId = SUITES[options.suite].id;
  const fields = [
    derInteger(1),
    derInteger(0x0304),
    derOctets(new Uint8Array([suiteId >> 8, suiteId & 0xff])),
    derOctets(new Uint8Array(0)),
    derOctets(options.secret),
    derExplicit(1, derInteger(options.time ?? Math.floor(Date.now() / 1000))),
    derExplicit(2, derInteger(86_400)),
  ];
  if (options.maxEarlyData) fields.push(derExplicit(15, derInteger(options.maxEarlyData)));
  const der = derTlv(0x30, Buffer.concat(fields));
  const base64 = der.toString('base64').replace(/.{1,64}/g, '$&\n');
  return `-----BEGIN SSL SESSION PARAMETERS-----\n${base64}-----END SSL SESSION PARAMETERS-----\n`;
}

function derLength(n: number): number[] {
  if (n < 0x80) return [n];
  const bytes: number[] = [];
  for (let v = n; v > 0; v = Math.floor(v / 256)) bytes.unshift(v & 0xff);
  return [0x80 | bytes.length, ...bytes];
}

function derTlv(tag: number, body: Uint8Array): Buffer {
  return Buffer.concat([Buffer.from([tag, ...derLength(body.length)]), body]);
}

/** A non-negative INTEGER, minimal two's-complement encoding. */
function derInteger(n: number): Buffer {
  if (!Number.isSafeInteger(n) || n < 0) throw new RangeError(`derInteger: ${n} is not a non-negative safe integer`);
  const bytes: number[] = [];
  for (let v = n; v > 0; v = Math.floor(v / 256)) bytes.unshift(v & 0xff);
  if (bytes.length === 0 || bytes[0] & 0x80) bytes.unshift(0);
  return derTlv(0x02, new Uint8Array(bytes));
}

function derOctets(b: Uint8Array): Buffer {
  return derTlv(0x04, b);
}

/** [n] EXPLICIT (constructed, context-specific). */
function derExplicit(n: number, inner: Uint8Array): Buffer {
  return derTlv(0xa0 | n, inner);
}
