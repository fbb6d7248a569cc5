/**
 * `qkd-tls bridge --listen HOST:PORT --allow HOST:PORT[,HOST:PORT...] [--origin URL] [--json]`
 *
 * A WebSocket -> TCP bridge (lib/proxy/ws-bridge.ts): a page running TLS in JavaScript (qkd-tls/websocket)
 * reaches a TCP TLS-PSK server through it. Only the --allow targets can be reached.
 */
import { startWebSocketBridge, targetName, type BridgeTarget } from 'qkd-tls/proxy';
import { hostPortText } from '../cli/address.js';
import { parseTime } from '../cli/duration.js';
import { parseCommandLine, untilStopSignal } from '../cli/command.js';
import { isListenError, listenFailure } from '../cli/listen-error.js';
import { Reporter } from '../cli/report.js';
import { parseHostPort, parseMaxMessage, parseOrigins, UsageError } from '../cli/tls-options.js';

const HELP = `usage: qkd-tls bridge --listen HOST:PORT --allow HOST:PORT[,HOST:PORT...] [options]

Relays WebSocket connections to TCP servers, byte for byte, so that a web page (which cannot open TCP
sockets) can run TLS itself, with qkd-tls/websocket, to any TLS-PSK server, e.g. openssl s_server. The
bridge sees only ciphertext. It connects only to the --allow targets: ws://BRIDGE/HOST:PORT picks one of
them, ws://BRIDGE/ the first; any other path is refused (404).

  --listen HOST:PORT     where to accept WebSocket connections (port 0 picks a free one; the address is printed)
  --allow HOST:PORT,...  the TCP servers that may be reached (repeatable)
  --origin URL           only pages from this origin may connect (repeatable; default any)
  --max-message N        largest WebSocket message accepted, in bytes, 1024 to 2^31-1 (default 1048576)
  --max-connections N    refuse connections beyond N open ones, upgraded or not (default 1000)
  --idle-timeout T       cut a connection after T without a byte in either direction (default 5m; 0: never;
                         500ms, 30s, 5m, 1h; a bare number is milliseconds)
  --json                 one JSON object per line on stderr instead of text lines

What it reports (stderr): a "listening" line, one line per relayed connection, and a "refused" line per
upgrade request it refuses (a path that names no target: 404; an origin not allowed: 403), which the page
cannot see: its WebSocket only fails.`;

/** The longest --idle-timeout: a week, as the proxy's. */
const MAX_IDLE_MS = 7 * 24 * 3_600_000;

export async function run(argv: string[]): Promise<number> {
  const options = {
    listen: { type: 'string' },
    allow: { type: 'string', multiple: true },
    origin: { type: 'string', multiple: true },
    'max-message': { type: 'string' },
    'max-connections': { type: 'string' },
    'idle-timeout': { type: 'string' },
    json: { type: 'boolean' },
  } as const;
  const cli = parseCommandLine('bridge', argv, options, HELP, (values) => {
    const allow: BridgeTarget[] = (values.allow ?? []).flatMap((v) => v.split(',')).filter((v) => v !== '').map((v) => parseHostPort('allow', v, 'connect'));
    if (allow.length === 0) throw new UsageError('--allow HOST:PORT is required (the bridge relays to listed targets only)');
    const count = (name: string, v: string | undefined, min: number): number | undefined => {
      if (v === undefined) return undefined;
      const n = Number(v);
      if (!Number.isSafeInteger(n) || n < min) throw new UsageError(`--${name} must be an integer >= ${min} (got ${v})`);
      return n;
    };
    return {
      listen: parseHostPort('listen', values.listen, 'listen'),
      allow,
      maxMessageBytes: parseMaxMessage(values['max-message']),
      origins: parseOrigins(values.origin),
      maxConnections: count('max-connections', values['max-connections'], 1),
      idleTimeoutMs: values['idle-timeout'] === undefined ? undefined : parseTime('idle-timeout', values['idle-timeout'], { bareUnit: 'ms', minMs: 1, maxMs: MAX_IDLE_MS, zero: 'never' }),
    };
  });
  if ('exit' in cli) return cli.exit;
  const { values, plan } = cli;
  const report = new Reporter(Boolean(values.json));
  let bridge;
  try {
    bridge = await startWebSocketBridge({
      host: plan.listen.host,
      port: plan.listen.port,
      allow: plan.allow,
      ...(plan.origins ? { origins: plan.origins } : {}),
      ...(plan.maxMessageBytes ? { maxMessageBytes: plan.maxMessageBytes } : {}),
      ...(plan.maxConnections ? { maxConnections: plan.maxConnections } : {}),
      ...(plan.idleTimeoutMs !== undefined ? { idleTimeoutMs: plan.idleTimeoutMs } : {}),
      onConnection: (r) => report.event('connection', { ...r }),
      // The page sees only that its WebSocket failed: the reason is said here.
      onRefused: (r) => report.event('refused', { ...r }),
    });
  } catch (e) {
    if (isListenError(e)) report.fatal('bridge', listenFailure(plan.listen.host, plan.listen.port, e));
    else report.failure(e as Error);
    return 1;
  }
  // A connection beyond --max-connections is closed at once by the HTTP server ('drop'): said, as a refusal.
  bridge.server.on('drop', (d?: { remoteAddress?: string; remotePort?: number }) =>
    report.event('refused', { peer: d?.remoteAddress === undefined ? '?:0' : hostPortText(d.remoteAddress, String(d.remotePort)), reason: `--max-connections reached (${plan.maxConnections ?? 1000} open)` }),
  );
  const a = bridge.address();
  report.event('listening', { address: hostPortText(a.address, a.port), transport: 'websocket', allow: plan.allow.map(targetName) });
  await untilStopSignal();
  await bridge.close();
  return 0;
}
