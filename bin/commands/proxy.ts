/**
 * `qkd-tls proxy --role client|server --accept HOST:PORT --connect HOST:PORT [key source] [tls options]`
 * `qkd-tls proxy --config FILE`
 *
 * The QKD-TLS proxy (model 2): unmodified applications speak plain TCP to a local proxy, which carries their
 * bytes over TLS 1.3 with pre-shared keys to a remote proxy. One service from flags, or several from an
 * INI configuration file (lib/proxy/config-file.ts). SIGTERM or SIGINT: stop accepting, let open connections
 * finish (up to --drain-timeout), exit 0; a second signal cuts them at once.
 */
import { parseArgs } from 'node:util';
import {
  ConfigError,
  type ConfigSection,
  createLogger,
  DEFAULT_DRAIN_TIMEOUT_MS,
  type Proxy,
  type ProxyLogger,
  readConfigFile,
  type ServiceConfig,
  startProxy,
} from 'qkd-tls/proxy';
import type { Etsi014SourceEvent } from 'qkd-tls/qkd';
import { parseTime, TIME_UNITS } from '../cli/duration.js';
import { KEY_SOURCE_HELP, KEY_SOURCE_OPTION_SPEC, keyFileExposure, type KeySource, parseKeySource } from '../cli/key-source.js';
import { listenHint } from '../cli/listen-error.js';
import { Reporter } from '../cli/report.js';
import { refuseOtherRoleOptions } from '../cli/roles.js';
import { parseHostPort, parseOrigins, parseTlsOptions, TLS_OPTION_SPEC, TLS_OPTIONS_HELP, UsageError } from '../cli/tls-options.js';

const HELP = `usage: qkd-tls proxy --role client|server --accept HOST:PORT --connect HOST:PORT [key source] [options]
       qkd-tls proxy --config FILE [--json]

Protects the TCP traffic of applications you cannot change. Run one proxy next to the client application
(--role client) and one next to the server application (--role server):

  app ──TCP──▶ client proxy ══TLS 1.3 + PSK══▶ server proxy ──TCP──▶ backend

The client proxy accepts plain TCP, takes a key for each connection (a fresh QKD key from its Key Manager,
or a static pre-shared key), and opens TLS to the server proxy, naming the key's ID. The server proxy
finds the same key by its ID, checks the handshake, and passes the decrypted bytes to the backend. Both
sides must use the same keys: either the same static --psk/--identity, or two Key Managers that share keys.

Service:
  --role client|server    client: accept plain TCP, connect with TLS; server: the reverse
  --accept HOST:PORT      where to listen (port 0 picks a free port; the listening line shows it)
  --connect HOST:PORT     client role: the remote (server) proxy; server role: the backend application
  --name NAME             the service's name in log lines (default: the role)
  --max-connections N     refuse connections beyond N open ones (default 1000); with --websocket, those that
                          have not sent their upgrade request yet count too
  --idle-timeout T        cut a connection after T without a byte in either direction (default 5m; 0: never)
  --connect-timeout T     give up connecting to --connect after T (default 10s)
  --connect-on-data       (client role) take the key and connect only once the application has sent its first
                          byte: a connection closed or reset before that (a load balancer's or monitor's health
                          check) costs no key and is logged "no-data". Without it every accepted connection
                          takes a key at once (with --kme, a QKD key at each end). Not for protocols in which
                          the server speaks first (SMTP, FTP, POP3, IMAP, MySQL, SSH): their clients wait for a
                          greeting that never comes, until --idle-timeout ends the connection
  --websocket             (server role) accept TLS over WebSocket instead of TCP: a web page running
                          qkd-tls/websocket reaches the backend through this proxy
    --origin URL          only pages from this origin may connect (repeatable; default any)
  --drain-timeout T       on SIGTERM, wait up to T for open connections to finish (default 30s; 0: do not wait)
  --config FILE           run the services of an INI file instead (see below)
  Times T of these options: milliseconds, or with a unit: ${TIME_UNITS}; at most 168h.

${KEY_SOURCE_HELP}

${TLS_OPTIONS_HELP.replace(/\n {2}--early-data[^\n]*\n(?: {10,}[^\n]*\n)*/, '\n')}

What it logs (stderr): one line when each service starts listening, and exactly one line per connection
when it ends, with the peer, the service, the PSK identity and key ID (never the key), once the handshake
completed its suite, kex and group (null for psk_ke), the bytes each way (up: towards --connect, down:
back), the duration and how it ended ("end"):
  closed            both directions finished normally (half-closes are passed through)
  no-data           closed or reset before sending a byte (a health check): no key taken, nothing opened
                    (server role over TCP; client role with --connect-on-data)
  rejected          over --max-connections, or shutting down
  key-unavailable   no key: the Key Manager is down, or does not know the key ID
  connect-failed    --connect did not answer (remote proxy or backend down)
  handshake-failed  the TLS handshake failed (wrong key, timeout, ...): the alert is named
  idle-timeout      no data for --idle-timeout
  peer-aborted      the accepted side reset the connection or cut its TLS without close_notify
  target-aborted    the same, on the --connect side
  shutdown          still open when the drain deadline passed
An aborted connection is reset (RST) on its plain side, never ended cleanly, so that an application never
takes a cut stream for a complete one. With --websocket, an upgrade refused before it happened (a page from
an origin that --origin does not allow: 403) is a "refused" line of its own, with the peer, path, origin and
status: the page sees only that its WebSocket failed.

Configuration file (INI, as stunnel): global options first, then one [section] per service; the fields
are the options above without "--", one per line; ";" or "#" starts a comment line. Global service fields
are defaults for every service. Errors name the file, line and field.
  json = yes
  drain-timeout = 30s
  [web]
  role = client
  accept = 127.0.0.1:8080
  connect = proxy-b.example:8443
  psk = 0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0
  identity = web-key

Example, both proxies on one machine, with a static key:
  qkd-tls proxy --role server --accept 127.0.0.1:8443 --connect 127.0.0.1:80 --psk $KEY --identity k1
  qkd-tls proxy --role client --accept 127.0.0.1:8080 --connect 127.0.0.1:8443 --psk $KEY --identity k1
  curl http://127.0.0.1:8080/`;

/** Options of one service (flags, or fields of a [section]). */
const SERVICE_OPTION_SPEC = {
  role: { type: 'string' },
  accept: { type: 'string' },
  connect: { type: 'string' },
  'max-connections': { type: 'string' },
  'idle-timeout': { type: 'string' },
  'connect-timeout': { type: 'string' },
  'connect-on-data': { type: 'boolean' },
  websocket: { type: 'boolean' },
  origin: { type: 'string', multiple: true },
  ...KEY_SOURCE_OPTION_SPEC,
  ...TLS_OPTION_SPEC,
} as const;

/** Options of the whole process. */
const GLOBAL_OPTION_SPEC = {
  json: { type: 'boolean' },
  'drain-timeout': { type: 'string' },
} as const;

export async function run(argv: string[]): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      options: { ...SERVICE_OPTION_SPEC, ...GLOBAL_OPTION_SPEC, name: { type: 'string' }, config: { type: 'string' }, help: { type: 'boolean', short: 'h' } },
      strict: true,
    }));
  } catch (e) {
    process.stderr.write(`qkd-tls proxy: ${(e as Error).message}\n(run qkd-tls proxy --help for the options)\n`);
    return 2;
  }
  if (values.help) {
    process.stdout.write(HELP + '\n');
    return 0;
  }

  let services: { config: ServiceConfig; keys: KeySource }[] = [];
  let json = false;
  let logger: ProxyLogger | undefined;
  let drainMs: number;
  try {
    if (values.config !== undefined) {
      const extra = Object.keys(values).filter((k) => !['config', 'json', 'drain-timeout'].includes(k));
      if (extra.length > 0) throw new UsageError(`with --config, put --${extra[0]} in the file (only --json and --drain-timeout may be given too)`);
      // Read with the bound of every file option (a path to something endless must not be read forever).
      const file = readConfigFile(values.config, { global: GLOBAL_OPTION_SPEC, service: SERVICE_OPTION_SPEC });
      json = values.json ?? (file.global.values.json as boolean | undefined) ?? false;
      logger = createLogger({ json });
      // A file holding PSKs (`psk` lines) gives them away as a --psk-file does when others can read it.
      if ([file.global, ...file.services].some((section) => section.values.psk !== undefined)) {
        const exposed = keyFileExposure(values.config, 'the configuration file, which holds PSKs,');
        if (exposed) new Reporter(json).event('warning', { option: '--config', file: values.config, message: exposed });
      }
      const drainSetting = values['drain-timeout'] ?? file.global.values['drain-timeout'];
      drainMs = fromSection(file.global, () => durationOr('drain-timeout', drainSetting, DEFAULT_DRAIN_TIMEOUT_MS, 'do not wait'));
      for (const section of file.services) {
        // (A field set in the service's own section comes after its header; the global defaults come before.)
        const own = (field: string): boolean => section.lineOf(field) > section.line;
        services.push(fromSection(section, () => buildService(section.name!, { ...section.values, json }, logger!, own)));
      }
    } else {
      json = values.json ?? false;
      logger = createLogger({ json });
      drainMs = durationOr('drain-timeout', values['drain-timeout'], DEFAULT_DRAIN_TIMEOUT_MS, 'do not wait');
      services = [buildService(values.name ?? values.role ?? 'proxy', values, logger)];
    }
  } catch (e) {
    for (const s of services) s.keys.close();
    if (e instanceof UsageError || e instanceof ConfigError) {
      process.stderr.write(`qkd-tls proxy: ${e.message}\n`);
      return 2;
    }
    throw e;
  }

  // A log reader that goes away (EPIPE on stderr) must not take the proxy and its connections down with it.
  process.stderr.on('error', () => {});
  const closeKeys = (): void => {
    for (const s of services) s.keys.close();
  };
  let proxy: Proxy;
  try {
    proxy = await startProxy({ services: services.map((s) => s.config), logger });
  } catch (e) {
    // What to do in its own field, as the other commands' --json error events have it ("hint").
    const hint = listenHint(e);
    logger.event('error', { message: (e as Error).message, ...(hint ? { hint } : {}) });
    closeKeys();
    return 1;
  }

  return new Promise<number>((resolve) => {
    let signals = 0;
    const onSignal = (signal: NodeJS.Signals): void => {
      signals++;
      if (signals === 1) {
        logger.event('signal', { signal, action: `stop accepting, drain for up to ${drainMs} ms` });
        proxy.drain(drainMs).then(() => {
          process.off('SIGTERM', onSignal);
          process.off('SIGINT', onSignal);
          closeKeys();
          const st = proxy.stats();
          const ended = Object.fromEntries(Object.entries(st.ended).filter(([, n]) => n > 0));
          logger.event('stopped', { connections: st.accepted, bytesUp: st.bytesUp, bytesDown: st.bytesDown, ended });
          resolve(0);
          // Everything is closed, so the process ends by itself; should some handle linger, exit anyway.
          setTimeout(() => process.exit(0), 3000).unref();
        }, () => resolve(1));
      } else {
        logger.event('signal', { signal, action: 'cut the open connections now' });
        void proxy.close();
      }
    };
    process.on('SIGTERM', onSignal);
    process.on('SIGINT', onSignal);
  });
}

/**
 * Validates one service's options (flags or a config section) and builds its key source. `own`: which values
 * were set for this service itself (default: all, as flags are; a config section's own fields, not the global
 * section's defaults).
 */
function buildService(name: string, values: Record<string, unknown>, logger: ProxyLogger, own?: (field: string) => boolean): { config: ServiceConfig; keys: KeySource } {
  const role = values.role as string | undefined;
  if (role === undefined) throw new FieldError('role', 'missing: client (accept plain TCP, connect with TLS) or server (the reverse)');
  if (role !== 'client' && role !== 'server') throw new FieldError('role', `must be client or server, got "${role}"`);
  for (const f of ['accept', 'connect']) if (values[f] === undefined) throw new FieldError(f, 'missing: give the address as HOST:PORT');
  const accept = parseHostPort('accept', values.accept as string, 'listen');
  const connect = parseHostPort('connect', values.connect as string, 'connect');
  if (values['early-data'] !== undefined) throw new FieldError('early-data', 'not supported by the proxy (it forwards what applications send)');
  // An option of the other role (bin/cli/roles.ts) given for this service, on the command line or in its own
  // config section, is a usage error. The config's global section holds defaults for every service, of both
  // roles: each service ignores those of the other role.
  refuseOtherRoleOptions(role, values, own);
  const maxConnections = integer('max-connections', values['max-connections'], 1, 1_000_000);
  const idleTimeoutMs = values['idle-timeout'] === undefined ? undefined : duration('idle-timeout', values['idle-timeout'], 'never');
  const connectTimeoutMs = values['connect-timeout'] === undefined ? undefined : duration('connect-timeout', values['connect-timeout']);
  // A global default of the config file serves the client services; set for a server service itself, it is a mistake.
  if (values['connect-on-data'] === true && role !== 'client' && (own?.('connect-on-data') ?? true)) {
    throw new FieldError('connect-on-data', 'for the client role (a server proxy takes no key before a ClientHello names one)');
  }
  const connectOnData = role === 'client' && values['connect-on-data'] === true ? true : undefined;
  // Likewise a global websocket (and origin) serves the server services over WebSocket; the others ignore it.
  if (values.websocket && role !== 'server' && (own?.('websocket') ?? true)) throw new FieldError('websocket', 'only the server role accepts TLS over WebSocket');
  const overWebSocket = role === 'server' && values.websocket === true;
  if (values.origin !== undefined && !overWebSocket && (own?.('origin') ?? true)) throw new FieldError('origin', 'goes with websocket');
  const origins = overWebSocket ? parseOrigins(values.origin as string[] | undefined) : undefined;
  const websocket = overWebSocket ? { ...(origins ? { origins } : {}) } : undefined;
  const { json: _json, crypto, ...tlsOptions } = parseTlsOptions(values);
  // Key manager events worth an operator's attention go to the proxy's log, in its format.
  const onKmeEvent = (e: Etsi014SourceEvent): void => {
    if (e.type === 'refused') logger.event('key-refused', { service: name, keyId: e.keyId, reason: e.reason, message: e.message });
    else if (e.type === 'expired') logger.event('keys-expired', { service: name, keyIds: e.keyIds.join(',') });
  };
  const keys = parseKeySource(values, { onKmeEvent, role, given: own });
  return { config: { name, role, accept, connect, keys, tls: { crypto, ...tlsOptions }, maxConnections, idleTimeoutMs, connectTimeoutMs, websocket, connectOnData }, keys };
}

/** A problem with one option, which a config file reports at that field's line. */
class FieldError extends UsageError {
  constructor(
    readonly field: string,
    readonly detail: string,
  ) {
    super(`--${field}: ${detail}`);
  }
}

/**
 * Runs `f`, turning a UsageError (which names a flag, e.g. "--psk #2: not hex") into a ConfigError at the
 * line of that field in `section`.
 */
function fromSection<T>(section: ConfigSection, f: () => T): T {
  try {
    return f();
  } catch (e) {
    if (!(e instanceof UsageError)) throw e;
    if (e instanceof FieldError) throw section.error(e.field, e.detail);
    const lead = /^--([a-z][a-z0-9-]*)(?: #(\d+))?:? /.exec(e.message);
    if (lead && lead[1] in section.values) {
      throw section.error(lead[1], e.message.slice(lead[0].length), lead[2] !== undefined ? Number(lead[2]) : undefined);
    }
    const named = [...e.message.matchAll(/--([a-z][a-z0-9-]*)/g)].map((m) => m[1]).find((f) => f in section.values);
    throw section.error(named, e.message.replace(/--([a-z][a-z0-9-]*)/g, '"$1"'));
  }
}

function integer(name: string, v: unknown, min: number, max: number): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (typeof v !== 'string' || !/^\d+$/.test(v) || n < min || n > max) throw new FieldError(name, `must be an integer from ${min} to ${max}, got "${String(v)}"`);
  return n;
}

/** `--NAME T` of the proxy in milliseconds: a bare number is milliseconds, as it always was (bin/cli/duration.ts). */
function duration(name: string, v: unknown, zero?: string): number {
  return parseTime(name, String(v), { bareUnit: 'ms', minMs: 1, maxMs: MAX_PROXY_TIME_MS, zero });
}

/** The longest proxy time (idle, connect, drain): a week. */
const MAX_PROXY_TIME_MS = 7 * 24 * 3_600_000;

function durationOr(name: string, v: unknown, fallback: number, zero: string): number {
  return v === undefined ? fallback : duration(name, v, zero);
}
