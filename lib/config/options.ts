/**
 * Connection options. Every default is the safe one: psk_dhe_ke preferred (forward secrecy), 0-RTT off on the
 * server, all three TLS 1.3 AEADs; a client offers x25519 first, a server prefers the X25519MLKEM768 hybrid.
 */
import type { CryptoProvider, GroupName } from '../crypto/provider.js';
import type { Extension } from '../messages/extensions.js';
import type { Psk, PskResolver } from '../psk/types.js';
import type { EarlyDataReplayGuard } from './anti-replay.js';
import type { RecordTraceHook } from '../record/trace-hook.js';
import type { CallbackErrorHandler } from '../callbacks.js';
import { DEFAULT_SUITES, type SupportedSuiteName } from '../suites.js';

export type KexMode = 'psk_dhe_ke' | 'psk_ke';

export interface CommonOptions {
  /** The cryptography backend (randomness included). */
  readonly crypto: CryptoProvider;
  /** Cipher suites in preference order (IANA names). Default: AES-128-GCM, ChaCha20-Poly1305, AES-256-GCM. */
  readonly suites?: readonly SupportedSuiteName[];
  /**
   * Key-exchange groups in preference order, by IANA name (e.g. "X25519MLKEM768", "x25519", "ffdhe2048").
   * Default for a client: x25519, secp256r1, secp384r1; for a server: {@link DEFAULT_SERVER_GROUPS}.
   */
  readonly groups?: readonly GroupName[];
  /**
   * Key-exchange modes in preference order (RFC 8446 §4.2.9). psk_dhe_ke adds an (EC)DHE exchange and gives
   * forward secrecy; psk_ke relies on the PSK alone. Default: ["psk_dhe_ke"] for a client, and for a server
   * ["psk_dhe_ke", "psk_ke"] (the server follows its order among the modes the client offers).
   */
  readonly kexModes?: readonly KexMode[];
  /** ALPN protocol names (RFC 7301) in preference order, each 1 to 255 bytes in UTF-8 (§3.1), else a TypeError. */
  readonly alpn?: readonly string[];
  /**
   * record_size_limit to advertise (RFC 8449; TLS 1.3 counts the content type, so 16385 means "no limit"): an
   * integer from 64 to 16385 (§4), else a TypeError. A client sends the extension only when this is set; a server
   * answers whenever the client sent one.
   */
  readonly recordSizeLimit?: number;
  /**
   * Pads every protected record sent (RFC 8446 §5.4), so that someone watching the encrypted traffic learns the
   * length of what is sent only to this many bytes: each record's TLSInnerPlaintext (its content, the content
   * type byte and the zeros) is made a multiple of `recordPadding` bytes, or as long as the peer accepts in one
   * record if that is less (2^14 + 1 bytes, or its record_size_limit). 0 (the default): no padding; 16385: every
   * record full size. The same policy as OpenSSL's SSL_CTX_set_block_padding (`s_client -record_padding N`). Costs
   * up to `recordPadding` - 1 bytes a record on the wire; the peer needs nothing to accept it. An integer from 0 to
   * 16385, else a RangeError.
   */
  readonly recordPadding?: number;
  /**
   * Receives NSS key-log lines (`LABEL client_random secret`) for Wireshark/tshark. Only for debugging:
   * anyone with these lines can decrypt the session. An observer (lib/callbacks.ts): if it throws, the handshake
   * goes on and the error goes to {@link onCallbackError}.
   */
  readonly keyLog?: (line: string) => void;
  /**
   * Send a KeyUpdate after this many records under one write key (RFC 8446 §5.5). Default, and the most
   * allowed (a larger value is lowered to it): 2^24 for AES-GCM (whose limit is about 2^24.5 full records), 2^53
   * for ChaCha20-Poly1305. A lower value only updates keys more often (tests use it to exercise the automatic
   * KeyUpdate). Anything but a positive integer is a RangeError.
   */
  readonly keyUpdateAfterRecords?: number;
  /**
   * Called with every record sent and received, after decryption (received) or before encryption (sent):
   * header, inner content type, content, padding. `createTracer` (lib/trace) turns these calls into an
   * annotated dissection. Off by default; a connection without it does no tracing work at all. An observer
   * (lib/callbacks.ts): if it throws, the record is sent or received as usual and the error goes to
   * {@link onCallbackError}.
   */
  readonly trace?: RecordTraceHook;
  /**
   * Receives what an observer of this connection ({@link keyLog}, {@link trace}) threw, as a CallbackError naming
   * it; the connection itself goes on as if the observer had returned. Default: one line on console.error. The rule
   * for every callback of the library is in lib/callbacks.ts.
   */
  readonly onCallbackError?: CallbackErrorHandler;
  /**
   * DANGEROUS, for testing other stacks only: accept PSK secrets shorter than 16 bytes. RFC 9257 §6: "Each PSK
   * ... MUST be at least 128 bits long", because a shorter secret is found offline by trying every value
   * against one recorded binder. By default (false) a client's `psks` or a server's static `psks` list with a
   * shorter secret is a TypeError when the connection is made, and a server whose PSK lookup (a resolver or
   * {@link Connection.providePsks}) answers one for the identity it would select fails the handshake
   * (PskTooShort, handshake_failure). An RFC 9258 imported PSK is as long as its hash whatever its EPSK: the
   * importer checks the EPSK itself (ImportOptions.dangerouslyAllowShortPsks).
   */
  readonly dangerouslyAllowShortPsks?: boolean;
}

export interface ClientOptions extends CommonOptions {
  /** The PSKs to offer, in order (the first is used for 0-RTT). The connection never reuses them. */
  readonly psks: readonly Psk[];
  /**
   * server_name (SNI, RFC 6066 §3) to send: a DNS host name; a name that {@link serverNameProblem} refuses is a
   * TypeError. A fully qualified name's trailing dot ("example.com.") is dropped before sending, as RFC 6066 §3
   * sends HostName "without a trailing dot" (Go, rustls and curl do the same); the handshake info's `serverName`
   * is the name as sent.
   */
  readonly serverName?: string;
  /**
   * DANGEROUS, for testing size bounds only: let {@link serverName} exceed the DNS length limits (a label of 63
   * bytes, a name of {@link MAX_HOST_NAME_BYTES}; RFC 1035 §2.3.4), up to {@link MAX_SERVER_NAME_BYTES}, the most
   * the extension's 16-bit length holds. No DNS name is that long, and servers refuse one (this library's and
   * rustls' with illegal_parameter, OpenSSL's above 255 bytes with unrecognized_name). The characters are
   * checked as always. Default false.
   */
  readonly dangerouslyAllowLongServerName?: boolean;
  /**
   * Groups to send a key share for in the first ClientHello (each must be among {@link groups}; the shares go
   * out in the order of {@link groups}, RFC 8446 §4.2.8). Default: the first of {@link groups}. Browsers
   * send two, e.g. ["X25519MLKEM768", "x25519"]: a server that prefers either answers without a retry.
   */
  readonly keyShareGroups?: readonly GroupName[];
  /**
   * Middlebox compatibility mode (RFC 8446 §D.4): a 32-byte legacy_session_id and a dummy ChangeCipherSpec.
   * Default true, as OpenSSL and browsers do.
   */
  readonly middleboxCompatibility?: boolean;
  /** 0-RTT data to send with the first flight, under the first PSK (RFC 8446 §4.2.10). */
  readonly earlyData?: Uint8Array;
  /**
   * When the server rejects the 0-RTT data, send it again as ordinary data after the handshake. Default false
   * (RFC 8446 §4.2.10: the application is in a better position to decide); even when set, the data is resent
   * only when the negotiated ALPN protocol is the PSK's `earlyDataAlpn`.
   */
  readonly resendRejectedEarlyData?: boolean;
  /**
   * For conformance testing only: rewrite the ClientHello extension list (all but pre_shared_key, which stays
   * last). Used to reproduce other stacks' ClientHellos byte for byte.
   */
  readonly dangerousClientHelloExtensions?: (extensions: Extension[]) => Extension[];
}

export interface ServerOptions extends CommonOptions {
  /**
   * How to find the PSK for an offered identity. A list of PSKs is matched by identity; a function answers
   * synchronously. With neither, the connection emits a `psk-request` event and waits for
   * {@link Connection.providePsks} (an asynchronous lookup, e.g. from a QKD key manager).
   */
  readonly psks?: readonly Psk[] | PskResolver;
  /**
   * Accept 0-RTT data up to this many bytes (RFC 8446 §4.2.10). Default 0: early data is rejected, because
   * 0-RTT data can be replayed by an attacker. Enable only for idempotent requests. A value above 0 needs an
   * {@link earlyDataReplayGuard} (or {@link dangerouslyAcceptReplayedEarlyData}): without either it is a TypeError.
   */
  readonly maxEarlyDataSize?: number;
  /**
   * Remembers the ClientHellos whose 0-RTT data was accepted, so that a recorded copy sent again gets its early data
   * rejected (RFC 8446 §8, §8.2: 0-RTT accepted "at most once"); the handshake itself goes on, without 0-RTT. Give
   * every connection of one server the same guard, e.g. one `createEarlyDataReplayGuard()` (bounded; when full it
   * rejects all 0-RTT rather than forget). qkd-tls/node's createServer and the `qkd-tls server` command make one per
   * server when 0-RTT is on and none is given. Required when {@link maxEarlyDataSize} is above 0, unless
   * {@link dangerouslyAcceptReplayedEarlyData} is set.
   */
  readonly earlyDataReplayGuard?: EarlyDataReplayGuard;
  /**
   * DANGEROUS: accept 0-RTT data (up to {@link maxEarlyDataSize}) without an {@link earlyDataReplayGuard}, so that
   * an attacker who recorded a client's first flight can have its early data delivered again, as often as they
   * send it (RFC 8446 §8 requires a server to prevent this). For tests that replay a recorded handshake on purpose
   * (e.g. the RFC 8448 traces). Default false. With a guard given as well, the guard is still consulted.
   */
  readonly dangerouslyAcceptReplayedEarlyData?: boolean;
  /** Send a cookie in HelloRetryRequest and require it back (RFC 8446 §4.2.2). Default true. */
  readonly helloRetryCookie?: boolean;
  /**
   * For conformance testing only: rewrite the EncryptedExtensions list. Used to reproduce other stacks'
   * server flights byte for byte.
   */
  readonly dangerousEncryptedExtensions?: (extensions: Extension[]) => Extension[];
}

/** A client's groups by default; it sends a share for the first (see {@link ClientOptions.keyShareGroups}). */
export const DEFAULT_GROUPS: readonly GroupName[] = ['x25519', 'secp256r1', 'secp384r1'];
/**
 * A server's groups by default, in preference order: the post-quantum hybrid first (draft-ietf-tls-ecdhe-mlkem;
 * what OpenSSL 3.5, Chrome and Node 24 send), then the elliptic curves, then ffdhe2048/3072 (RFC 7919) for
 * clients that offer nothing else. A share the client already sent is taken before a HelloRetryRequest is
 * asked (lib/handshake/server.ts, selectKeyShare). ffdhe4096 and larger cost a server enough per handshake that
 * they are left to an explicit `groups` option.
 */
export const DEFAULT_SERVER_GROUPS: readonly GroupName[] = [
  'X25519MLKEM768',
  'x25519',
  'secp256r1',
  'secp384r1',
  'SecP256r1MLKEM768',
  'SecP384r1MLKEM1024',
  'ffdhe2048',
  'ffdhe3072',
];
/** RFC 7301 §3.1: ProtocolName opaque<1..2^8-1>. */
export const MAX_ALPN_NAME_BYTES = 255;
/**
 * RFC 6066 §3: the longest HostName whose server_name extension fits its 16-bit length (2 bytes of ServerNameList
 * length, 1 of name type and 2 of HostName length before the name). The wire format's bound, not a DNS name's: a
 * client's `serverName` is held to {@link MAX_HOST_NAME_BYTES} unless `dangerouslyAllowLongServerName` is set, and
 * then to this.
 */
export const MAX_SERVER_NAME_BYTES = 0xffff - 5;
/**
 * The longest DNS host name, written without a trailing dot: RFC 1035 §2.3.4, "names ... 255 octets or less" in
 * their wire form, which is two octets longer than the dotted text (a length before the first label, the empty
 * root label after the last). rustls' DnsName has the same bound.
 */
export const MAX_HOST_NAME_BYTES = 253;
/** RFC 1035 §2.3.4: "labels ... 63 octets or less". */
const MAX_LABEL_BYTES = 63;

/**
 * What a server_name may be, said in every refusal of {@link serverNameProblem}: RFC 6066 §3, "HostName"
 * contains the fully qualified DNS hostname of the server ... represented as a byte string using ASCII encoding
 * without a trailing dot", and "Literal IPv4 and IPv6 addresses are not permitted". An internationalized name
 * goes in its A-label form (RFC 5890, "xn--..."; GnuTLS 3.7 answers raw UTF-8 with illegal_parameter).
 * Beside the letters, digits and hyphens of a host name (RFC 952, RFC 1123 §2.1), "_" is allowed too, as the
 * URL standard and rustls allow it: names such as "my_service.internal" are in use. A label neither starts nor ends
 * with "-" (RFC 952's <hname> grammar, kept by RFC 1123 §2.1; rustls' DnsName refuses both), and the last label is
 * not all digits: RFC 1123 §2.1, "a valid host name can never have the dotted-decimal form #.#.#.#, since at least
 * the highest-level component label will be alphabetic"; rustls refuses it too, as such a name ("127.1", "1.2.3")
 * may be read as an IPv4 address. The lengths are DNS's (RFC 1035 §2.3.4), as rustls and LibreSSL hold a client's
 * name to them.
 */
const SERVER_NAME_RULE =
  'a server name is a DNS host name (RFC 6066 §3): ASCII letters, digits, "-" and "_" in labels separated by "."; ' +
  'no label starts or ends with "-", and the last is not all digits (RFC 1123 §2.1); ' +
  `at most ${MAX_LABEL_BYTES} bytes a label and ${MAX_HOST_NAME_BYTES} in all (RFC 1035 §2.3.4); ` +
  'an internationalized name in its A-label form ("xn--..."); a trailing dot is dropped; not an IP address';

/**
 * Why `name` cannot be sent as a server_name (RFC 6066 §3), or undefined: the problem first ("contains a space",
 * "is an IP address", "is longer than 253 bytes" ...), then what a server name may contain. One trailing dot is
 * allowed (a fully qualified name): the client drops it before sending ({@link sniHostName}). With
 * `dangerouslyAllowLongServerName`, the DNS lengths give way to {@link MAX_SERVER_NAME_BYTES} (the client's check of
 * the whole ClientHello applies too).
 */
export function serverNameProblem(name: string, options: { readonly dangerouslyAllowLongServerName?: boolean } = {}): string | undefined {
  const problem = hostNameProblem(sniHostName(name), options.dangerouslyAllowLongServerName === true, name);
  return problem && `${problem}; ${SERVER_NAME_RULE}`;
}

/** The HostName a client sends for `serverName`: without the trailing dot of a fully qualified name (RFC 6066 §3). */
export function sniHostName(serverName: string): string {
  return serverName.endsWith('.') ? serverName.slice(0, -1) : serverName;
}

/**
 * Why `host` is not a HostName as RFC 6066 §3 defines it (an ASCII DNS host name without a trailing dot, not an IP
 * literal), or undefined: the problem alone ("contains a space", "has an empty label" ...). A server checks a received
 * name with it; {@link serverNameProblem} checks a client's (`written`: the name as given, before its trailing dot
 * was dropped). `long`: up to {@link MAX_SERVER_NAME_BYTES} instead of the DNS lengths.
 */
export function hostNameProblem(host: string, long = false, written = host): string | undefined {
  if (written.length === 0) return 'is empty';
  const max = long ? MAX_SERVER_NAME_BYTES : MAX_HOST_NAME_BYTES;
  // (A UTF-16 unit is at least one UTF-8 byte: a name longer in units is longer in bytes.)
  if (host.length > max) return `is longer than ${max} bytes`;
  if (isHostAndPort(host)) return 'contains ":" (a port does not go in a server name)';
  // IPv4 dotted quads, and IPv6 (hex digits and colons, perhaps with a dotted quad at the end, perhaps in brackets).
  if (isIpLiteral(host)) return 'is an IP address';
  const bad = /[^A-Za-z0-9._-]/.exec(host);
  if (bad) return `contains ${describeCharacter(bad[0].codePointAt(0)!)}`;
  // (`host` has lost one trailing dot already: a dot left at its end is an empty last label.)
  if (host.length === 0 || host.startsWith('.') || host.includes('..') || host.endsWith('.')) {
    return 'has an empty label (a "." at the start or two in a row)';
  }
  if (!long) {
    const label = host.split('.').find((l) => l.length > MAX_LABEL_BYTES);
    if (label !== undefined) return `has a label of ${label.length} bytes ("${label.slice(0, 16)}..."), longer than ${MAX_LABEL_BYTES}`;
  }
  // RFC 952 <hname>, RFC 1123 §2.1: a label starts and ends with a letter or digit ("xn--" A-labels have theirs inside).
  const labels = host.split('.');
  const hyphenFirst = labels.find((l) => l.startsWith('-'));
  if (hyphenFirst !== undefined) return `has a label that starts with "-" (${labelText(hyphenFirst)})`;
  const hyphenLast = labels.find((l) => l.endsWith('-'));
  if (hyphenLast !== undefined) return `has a label that ends with "-" (${labelText(hyphenLast)})`;
  // RFC 1123 §2.1: the highest-level label is alphabetic; one of digits only may be read as an IPv4 address ("127.1").
  const last = labels[labels.length - 1];
  if (/^\d+$/.test(last)) return `has a last label of digits only (${labelText(last)}), which could be read as an IP address`;
  return undefined;
}

/**
 * A host and a port ("example.com:443", "beef:443"): the port does not go in a server name. Never an IP literal,
 * though {@link isIpLiteral} takes "beef:443" for one (no IPv6 address has two groups without "::").
 */
export function isHostAndPort(host: string): boolean {
  return /^[^:]+:\d+$/.test(host);
}

/** An IPv4 dotted quad, or an IPv6 address (hex digits and colons, perhaps a dotted quad at the end, perhaps in brackets). */
export function isIpLiteral(host: string): boolean {
  return /^\d{1,3}(\.\d{1,3}){3}$/.test(host) || /^\[?[0-9A-Fa-f:.]*:[0-9A-Fa-f:.]*\]?$/.test(host);
}

/** A label for a message, quoted (checked: letters, digits, "-" and "_" only), its first 16 bytes if longer. */
function labelText(label: string): string {
  return label.length > 16 ? `"${label.slice(0, 16)}..."` : `"${label}"`;
}

/** A character for a message: a space, a control character, one outside ASCII, or the printable character quoted. */
function describeCharacter(code: number): string {
  const hex = `U+${code.toString(16).toUpperCase().padStart(4, '0')}`;
  if (code === 0x20) return 'a space';
  if (code < 0x20 || code === 0x7f) return `a control character (${hex})`;
  if (code > 0x7f) return `"${String.fromCodePoint(code)}" (${hex}), which is not ASCII`;
  return `"${String.fromCodePoint(code)}"`;
}

/**
 * The longest delay a timer keeps: setTimeout takes a 32-bit signed number of milliseconds (about 24.8 days)
 * and runs one that is longer, Infinity included, after 1 ms.
 */
export const MAX_TIMER_MS = 2 ** 31 - 1;

/**
 * Checks a transport's time option in milliseconds (undefined: its default), else a RangeError naming it: a
 * number from `min` to {@link MAX_TIMER_MS}. Unchecked, NaN or a negative number would silently turn a limit off,
 * and Infinity or anything above MAX_TIMER_MS would make it expire after 1 ms.
 */
export function checkTimerMs(option: string, value: number | undefined, min: number): void {
  if (value === undefined) return;
  if (!(typeof value === 'number' && value >= min && value <= MAX_TIMER_MS)) {
    throw new RangeError(`${option} must be a number of milliseconds from ${min}${min === 0 ? ' (no limit)' : ''} to ${MAX_TIMER_MS}, got ${String(value)}`);
  }
}

/** Checks a count option (undefined: its default), else a RangeError naming it: an integer from `min` to `max`. */
export function checkCount(option: string, value: number | undefined, min: number, max = Number.MAX_SAFE_INTEGER): void {
  if (value === undefined) return;
  if (!(Number.isSafeInteger(value) && value >= min && value <= max)) {
    throw new RangeError(`${option} must be an integer from ${min} to ${max}, got ${String(value)}`);
  }
}

/**
 * Checks an address a server connects to or listens on, else an error naming it: a TypeError when it is missing or
 * its host is not a non-empty string, a RangeError when its port is not an integer from `minPort` to 65535.
 * Unchecked, net.connect threw ERR_SOCKET_BAD_PORT for each connection, long after the options were taken.
 */
export function checkHostPort(option: string, address: { readonly host: string; readonly port: number } | undefined, minPort: number): void {
  const a = address as { host?: unknown; port?: unknown } | null | undefined;
  if (typeof a !== 'object' || a === null) throw new TypeError(`${option} must be { host, port }, got ${String(a)}`);
  if (typeof a.host !== 'string' || a.host === '') throw new TypeError(`${option}.host must be a host name or address, got ${JSON.stringify(a.host) ?? String(a.host)}`);
  if (!(Number.isInteger(a.port) && (a.port as number) >= minPort && (a.port as number) <= 65535)) {
    throw new RangeError(`${option}.port must be an integer from ${minPort} to 65535, got ${typeof a.port === 'string' ? JSON.stringify(a.port) : String(a.port)}`);
  }
}

/**
 * The streams and WebSocket transports' own numbers, checked before anything starts (a RangeError naming the
 * option): `handshakeTimeout` in milliseconds, 0 (no limit) to {@link MAX_TIMER_MS}, and `recordsInFlight` from 1.
 */
export function checkTransportOptions(options: { readonly handshakeTimeout?: number; readonly recordsInFlight?: number }): void {
  checkTimerMs('handshakeTimeout', options.handshakeTimeout, 0);
  checkCount('recordsInFlight', options.recordsInFlight, 1);
}

/**
 * Checks the `crypto` option, else a TypeError saying what to pass. A connection has no cryptography of its own
 * (primitives and randomness are injected); without this check a missing provider surfaced as "Cannot read
 * properties of undefined (reading 'group')" (found in a walkthrough of the library in Deno and Workers, whose
 * snippets pass `crypto: nobleProvider`).
 */
export function checkCryptoOption(who: string, crypto: unknown): void {
  const c = crypto as Partial<Record<keyof CryptoProvider, unknown>> | null | undefined;
  if (typeof c === 'object' && c !== null && (['hash', 'hmac', 'hkdfExtract', 'hkdfExpand', 'aead', 'group', 'random'] as const).every((m) => typeof c[m] === 'function')) return;
  const got = crypto === undefined ? 'none' : crypto === null ? 'null' : typeof crypto === 'object' ? 'an object that is not one' : typeof crypto;
  throw new TypeError(`${who}: the crypto option is required: a CryptoProvider, such as nobleProvider (from 'qkd-tls', any runtime) or nodeProvider (from 'qkd-tls/node'); got ${got}`);
}

export const DEFAULT_CLIENT_KEX_MODES: readonly KexMode[] = ['psk_dhe_ke'];
export const DEFAULT_SERVER_KEX_MODES: readonly KexMode[] = ['psk_dhe_ke', 'psk_ke'];
export { DEFAULT_SUITES };
