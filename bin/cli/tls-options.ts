/**
 * The TLS options shared by `qkd-tls server`, `client` and `proxy` (the command-line contract in
 * shared/design.md), parsed into connection options.
 */
import { appendFileSync } from 'node:fs';
import {
  type CryptoProvider,
  DEFAULT_GROUPS,
  GROUP_SPECS,
  type GroupName,
  groupByName,
  type KexMode,
  MAX_ALPN_NAME_BYTES,
  MAX_PADDING_BLOCK,
  serverNameProblem,
  nobleProvider,
  SUITES,
  type SupportedSuiteName,
} from 'qkd-tls';
import { createNodeProvider } from 'qkd-tls/node';
import { MAX_OPTION_FILE_BYTES, readFileBounded } from 'qkd-tls/qkd';
import { parseTime, TIME_UNITS } from './duration.js';
import { UsageError } from './usage-error.js';

/** util.parseArgs option definitions for the TLS options. */
export const TLS_OPTION_SPEC = {
  'kex-modes': { type: 'string' },
  suites: { type: 'string' },
  groups: { type: 'string' },
  'key-shares': { type: 'string' },
  alpn: { type: 'string' },
  'early-data': { type: 'string' },
  'max-early-data': { type: 'string' },
  'record-size-limit': { type: 'string' },
  'record-padding': { type: 'string' },
  'server-name': { type: 'string' },
  'no-middlebox-compat': { type: 'boolean' },
  keylog: { type: 'string' },
  provider: { type: 'string' },
  'handshake-timeout': { type: 'string' },
  json: { type: 'boolean' },
} as const;

export const TLS_OPTIONS_HELP = `TLS options:
  --kex-modes LIST        key-exchange modes in preference order: psk_dhe_ke (forward secrecy) and/or
                          psk_ke (the PSK alone). Default: a client offers psk_dhe_ke only; a server takes
                          psk_dhe_ke,psk_ke (the client's offer decides)
  --suites LIST           cipher suites in preference order (IANA names), default
                          TLS_AES_128_GCM_SHA256,TLS_CHACHA20_POLY1305_SHA256,TLS_AES_256_GCM_SHA384
  --groups LIST           key-exchange groups in preference order (IANA names, any case):
                          X25519MLKEM768, SecP256r1MLKEM768, SecP384r1MLKEM1024 (post-quantum hybrids),
                          x25519, secp256r1, secp384r1, ffdhe2048, ffdhe3072, ffdhe4096, ffdhe6144,
                          ffdhe8192. Client default x25519,secp256r1,secp384r1; server default
                          X25519MLKEM768,x25519,secp256r1,secp384r1,SecP256r1MLKEM768,
                          SecP384r1MLKEM1024,ffdhe2048,ffdhe3072
  --key-shares LIST       (client) groups to send a key share for at once, e.g. X25519MLKEM768,x25519
                          as browsers do (default: the first of --groups; others cost a HelloRetryRequest);
                          without --groups, these groups are offered first, then the default ones
  --alpn LIST             ALPN protocol names
  --early-data FILE       (client) send FILE's content as 0-RTT data with the first flight (sent again
                          after the handshake if the server rejects it)
  --max-early-data N      (server) accept up to N bytes of 0-RTT data (default 0: reject; replayable!).
                          Each ClientHello's 0-RTT is accepted once: a replayed copy is answered without
                          0-RTT (RFC 8446 §8; 100,000 remembered, about 5.5 MB, then all 0-RTT is rejected;
                          keys from --kme serve one handshake each and are not recorded)
  --record-size-limit N   advertise a record_size_limit (RFC 8449)
  --record-padding N      pad every encrypted record we send to a multiple of N bytes (RFC 8446 §5.4:
                          hides lengths to N bytes; 16385 = every record full size; default 0: none)
  --server-name NAME      (client) send server_name (SNI), a DNS host name (RFC 6066 §3): ASCII letters,
                          digits, "-" and "_" in labels separated by "."; no label starts or ends with
                          "-", and the last is not all digits (RFC 1123 §2.1); at most 63 bytes a label
                          and 253 in all (RFC 1035 §2.3.4); an internationalized name as its A-labels
                          ("xn--..."); not an IP address. A trailing dot ("example.com.") is dropped
  --no-middlebox-compat   (client) no legacy session ID or dummy ChangeCipherSpec
  --keylog FILE           append NSS key-log lines to FILE (Wireshark can then decrypt; keep it secret).
                          The SSLKEYLOGFILE environment variable does the same.
  --provider NAME         crypto backend: node (native, default) or noble (pure JavaScript)
  --handshake-timeout T   give up on a handshake that has not completed after T: seconds, or with a unit:
                          ${TIME_UNITS} (default 30s; 0: no limit; at most 1h); the failure is
                          named HandshakeTimeout
  --json                  report events as one JSON object per line on stderr`;

export interface ParsedTlsOptions {
  readonly crypto: CryptoProvider;
  readonly kexModes?: KexMode[];
  readonly suites?: SupportedSuiteName[];
  readonly groups?: GroupName[];
  readonly keyShareGroups?: GroupName[];
  readonly alpn?: string[];
  readonly earlyData?: Uint8Array;
  readonly maxEarlyDataSize?: number;
  readonly recordSizeLimit?: number;
  readonly recordPadding?: number;
  readonly serverName?: string;
  readonly middleboxCompatibility?: boolean;
  readonly keyLog?: (line: string) => void;
  readonly handshakeTimeout?: number;
  readonly json: boolean;
}

export { UsageError };

function list(v: string | undefined): string[] | undefined {
  return v === undefined ? undefined : v.split(',').map((s) => s.trim()).filter(Boolean);
}

/** A comma-separated list of group names, case-insensitive, as their IANA spelling. */
function groupList(option: string, v: string | undefined): GroupName[] | undefined {
  const groups = list(v)?.map((name) => {
    const g = groupByName(name);
    if (!g) throw new UsageError(`--${option}: unknown group "${name}" (known: ${Object.keys(GROUP_SPECS).join(', ')})`);
    return g;
  });
  onceEach(option, groups);
  return groups;
}

/** Refuses a name given twice in a list option (the library refuses it too, but only when a connection is made). */
function onceEach(option: string, names: readonly string[] | undefined): void {
  const twice = names?.find((x, i) => names.indexOf(x) !== i);
  if (twice !== undefined) throw new UsageError(`--${option}: ${twice} is listed twice`);
}

/** `--max-message N` of the WebSocket listeners (server --websocket, bridge): 1 KiB to 2^31 - 1 bytes (what `ws` bounds). */
export function parseMaxMessage(v: string | undefined): number | undefined {
  return int('max-message', v, 1024, 2 ** 31 - 1);
}

/**
 * `--origin URL` of the WebSocket listeners (repeatable): each a page's origin, scheme and host. One without its
 * scheme (`localhost:8000`) was taken as it is, matched no browser's Origin header (`http://localhost:8000`), and
 * every page was refused with 403 (found in a README walkthrough).
 */
export function parseOrigins(values: readonly string[] | undefined): string[] | undefined {
  if (values === undefined) return undefined;
  for (const v of values) {
    let origin = 'null';
    try {
      origin = new URL(v).origin;
    } catch {
      // not a URL: refused below
    }
    if (origin === 'null' || !/^https?:/i.test(v)) throw new UsageError(`--origin: expected a page's origin, such as http://localhost:8000, got "${v}"`);
  }
  return [...values];
}

function int(name: string, v: string | undefined, min: number, max: number): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isInteger(n) || n < min || n > max) throw new UsageError(`--${name} must be an integer from ${min} to ${max}`);
  return n;
}

export function parseTlsOptions(values: Record<string, unknown>): ParsedTlsOptions {
  const str = (k: string): string | undefined => values[k] as string | undefined;
  // A list option given with nothing in it ("--suites ,") is a usage error, not an empty list for the library to refuse.
  for (const k of ['kex-modes', 'suites', 'groups', 'key-shares', 'alpn']) {
    if (str(k) !== undefined && list(str(k))!.length === 0) throw new UsageError(`--${k}: the list is empty`);
  }
  // RFC 7301 §3.1: ProtocolName<1..2^8-1>; RFC 6066 §3: a DNS host name (serverNameProblem, the library's own check).
  for (const name of list(str('alpn')) ?? []) {
    if (utf8Length(name) > MAX_ALPN_NAME_BYTES) throw new UsageError(`--alpn: a protocol name is at most ${MAX_ALPN_NAME_BYTES} bytes ("${name.slice(0, 20)}..." has ${utf8Length(name)})`);
  }
  const serverName = str('server-name');
  const nameProblem = serverName === undefined ? undefined : serverNameProblem(serverName);
  if (nameProblem) throw new UsageError(`--server-name: ${nameProblem}`);
  const kexModes = list(str('kex-modes'));
  for (const m of kexModes ?? []) if (m !== 'psk_dhe_ke' && m !== 'psk_ke') throw new UsageError(`--kex-modes: unknown mode "${m}" (known: psk_dhe_ke, psk_ke)`);
  onceEach('kex-modes', kexModes);
  const suites = list(str('suites'));
  for (const s of suites ?? []) if (!Object.hasOwn(SUITES, s)) throw new UsageError(`--suites: unknown suite "${s}" (known: ${Object.keys(SUITES).join(', ')})`);
  onceEach('suites', suites);
  const keyShareGroups = groupList('key-shares', str('key-shares'));
  // Without --groups, the key-share groups are offered first, then the default ones: `--key-shares
  // X25519MLKEM768,x25519` alone, the help's example, was refused (the client's defaults have no hybrid).
  const groups =
    groupList('groups', str('groups')) ??
    (keyShareGroups && [...keyShareGroups, ...DEFAULT_GROUPS.filter((g) => !keyShareGroups.includes(g))]);
  for (const g of keyShareGroups ?? []) {
    if (!(groups ?? DEFAULT_GROUPS).includes(g)) throw new UsageError(`--key-shares: ${g} is not among the groups offered (--groups)`);
  }
  const providerName = str('provider') ?? (process.env.QKD_TLS_CRYPTO === 'noble' ? 'noble' : 'node');
  if (providerName !== 'node' && providerName !== 'noble') throw new UsageError('--provider must be node or noble');
  const keylogFile = str('keylog') ?? process.env.SSLKEYLOGFILE;
  if (keylogFile) {
    // Found now rather than at the first handshake, which would fail (internal_error) as every later one would.
    try {
      appendFileSync(keylogFile, '', { mode: 0o600 });
    } catch (e) {
      throw new UsageError(`${str('keylog') !== undefined ? '--keylog' : 'SSLKEYLOGFILE'}: cannot write ${keylogFile}: ${(e as Error).message}`);
    }
  }
  let earlyData: Uint8Array | undefined;
  if (str('early-data') !== undefined) {
    try {
      earlyData = readFileBounded(str('early-data')!, MAX_OPTION_FILE_BYTES);
    } catch (e) {
      throw new UsageError(`--early-data: cannot read ${str('early-data')}: ${(e as Error).message}`);
    }
  }
  return {
    crypto: providerName === 'noble' ? nobleProvider : createNodeProvider(),
    kexModes: kexModes as KexMode[] | undefined,
    suites: suites as SupportedSuiteName[] | undefined,
    groups,
    keyShareGroups,
    alpn: list(str('alpn')),
    earlyData,
    maxEarlyDataSize: int('max-early-data', str('max-early-data'), 0, 0xffffffff),
    recordSizeLimit: int('record-size-limit', str('record-size-limit'), 64, 16385),
    recordPadding: int('record-padding', str('record-padding'), 0, MAX_PADDING_BLOCK),
    serverName,
    middleboxCompatibility: values['no-middlebox-compat'] ? false : undefined,
    keyLog: keylogFile ? (line) => appendFileSync(keylogFile, line + '\n', { mode: 0o600 }) : undefined,
    handshakeTimeout: handshakeTimeoutMs(values),
    json: values.json === true,
  };
}

function utf8Length(s: string): number {
  return new TextEncoder().encode(s).length;
}

/**
 * `--handshake-timeout T` in milliseconds (0: no limit), or undefined when not given. A bare number is seconds, as
 * it always was; 500ms, 30s, 5m or 1h as every time option takes (bin/cli/duration.ts).
 */
export function handshakeTimeoutMs(values: Record<string, unknown>): number | undefined {
  const v = values['handshake-timeout'] as string | undefined;
  return v === undefined ? undefined : parseTime('handshake-timeout', v, { bareUnit: 's', minMs: 0, maxMs: 3_600_000, zero: 'no limit' });
}

/**
 * Parses HOST:PORT (IPv6 as [::1]:PORT) for an address qkd-tls will `listen` on (port 0: any free port) or
 * `connect` to (port 0 is no one's port, so it is refused here, not after a failed connection).
 */
export function parseHostPort(name: string, v: string | undefined, use: 'listen' | 'connect'): { host: string; port: number } {
  if (!v) throw new UsageError(`--${name} HOST:PORT is required`);
  const m = /^(?:\[([^\]]+)\]|([^:]*)):(\d+)$/.exec(v);
  if (!m) throw new UsageError(`--${name}: expected HOST:PORT, got "${v}"`);
  const port = Number(m[3]);
  if (port > 65535) throw new UsageError(`--${name}: port ${port} out of range`);
  if (port === 0 && use === 'connect') throw new UsageError(`--${name}: port 0 cannot be connected to (0 means "any free port" only where qkd-tls listens)`);
  return { host: m[1] ?? (m[2] || '127.0.0.1'), port };
}
