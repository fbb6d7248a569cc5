/**
 * `qkd-tls server --listen HOST:PORT [key source] [tls options] [--forward HOST:PORT]`
 *
 * A TLS 1.3 PSK server: echoes what each client sends, or with --forward relays it to a TCP backend.
 * Each completed handshake and each failure is reported on stderr.
 */
import * as net from 'node:net';
import { confirmNotReset, createServer, endedBeforeAByte, listenWebSocket, type QkdTlsSocket, resetSocket, type WebSocketListener, type WebSocketRefusal } from 'qkd-tls/node';
import { hostPortText } from '../cli/address.js';
import { KEY_SOURCE_HELP, KEY_SOURCE_OPTION_SPEC, parseKeySource } from '../cli/key-source.js';
import { isListenError, listenFailure } from '../cli/listen-error.js';
import { Reporter } from '../cli/report.js';
import { parseCommandLine } from '../cli/command.js';
import { refuseOtherRoleOptions } from '../cli/roles.js';
import { parseTraceOptions, TRACE_HELP, TRACE_OPTION_SPEC } from '../cli/trace.js';
import { parseHostPort, parseMaxMessage, parseOrigins, parseTlsOptions, TLS_OPTION_SPEC, TLS_OPTIONS_HELP, UsageError } from '../cli/tls-options.js';

const HELP = `usage: qkd-tls server --listen HOST:PORT [key source] [tls options] [--forward HOST:PORT]

A TLS 1.3 server for external pre-shared keys. By default it echoes back whatever each client sends;
with --forward it passes the decrypted bytes to a plain TCP backend and its answers back.

  --listen HOST:PORT     where to listen (port 0 picks a free one; the address is printed)
  --forward HOST:PORT    relay to this TCP backend instead of echoing
  --max-connections N    refuse connections beyond N open ones (default 1000); with --websocket, those that
                         have not sent their upgrade request yet count too
  --once                 exit after the first connection closes (exit code: 0 if it succeeded; 1 after a failure,
                         and after a connection that sent no byte)
  --websocket            accept TLS over WebSocket (binary messages: what qkd-tls/websocket sends from a
                         page) instead of TCP
    --origin URL         (--websocket) only pages from this origin may connect (repeatable; default any)
    --max-message N      (--websocket) largest WebSocket message accepted, in bytes, 1024 to 2^31-1 (default 1048576)

${KEY_SOURCE_HELP}

${TLS_OPTIONS_HELP}

${TRACE_HELP}

What it reports (stderr; one JSON object per line with --json): a "listening" line, a "handshake" line per
completed handshake (with the client's address, peer=HOST:PORT), and a line per failure (an alert, a reset, a
TLS connection cut without close_notify: "truncated"). A client that closes or resets the connection before
sending a byte (a load balancer's or monitor's health check) is no failure, and no key is looked up for it:
"no-data: peer=HOST:PORT ended=closed" (or ended=reset). With --websocket, a WebSocket that closes without
a TLS byte stays a failure, and an upgrade refused before it happened (a page from an origin that --origin
does not allow: 403) is a "refused" line, with the peer, path, origin and status: the page sees only that
its WebSocket failed. A connection closed at once because --max-connections are open is a "refused" line
too: "refused: peer=HOST:PORT reason=..."; it is no failure of this server's.

Stopping (SIGINT or SIGTERM): it stops listening and ends each echoed connection with close_notify (its client
answers with its own and sees a clean end); a --forward relay and a connection still in its handshake are cut,
and so is what has not closed 2 s later; a second signal cuts at once. Exit code 0, or 1 if any connection
failed while it ran.`;

/** How long a stopping server waits for its echo clients to answer its close_notify before it cuts what is left. */
const STOP_GRACE_MS = 2000;

export async function run(argv: string[]): Promise<number> {
  const options = {
    listen: { type: 'string' },
    forward: { type: 'string' },
    'max-connections': { type: 'string' },
    once: { type: 'boolean' },
    websocket: { type: 'boolean' },
    origin: { type: 'string', multiple: true },
    'max-message': { type: 'string' },
    ...KEY_SOURCE_OPTION_SPEC,
    ...TLS_OPTION_SPEC,
    ...TRACE_OPTION_SPEC,
  } as const;
  const cli = parseCommandLine('server', argv, options, HELP, (values) => {
    // An option of the other role (bin/cli/roles.ts) is a usage error, not silently ignored.
    refuseOtherRoleOptions('server', values);
    // --origin and --max-message belong to --websocket; without it they were ignored without a word.
    for (const o of ['origin', 'max-message'] as const) if (values[o] !== undefined && !values.websocket) throw new UsageError(`--${o} goes with --websocket`);
    return {
      listen: parseHostPort('listen', values.listen, 'listen'),
      maxConnections: maxConnectionsOf(values['max-connections']),
      maxMessage: parseMaxMessage(values['max-message']),
      origins: parseOrigins(values.origin),
      forward: values.forward ? parseHostPort('forward', values.forward, 'connect') : undefined,
      tls: parseTlsOptions(values),
      keys: parseKeySource(values),
      trace: parseTraceOptions(values),
    };
  });
  if ('exit' in cli) return cli.exit;
  const { values } = cli;
  const { listen, forward, tls, keys, trace, maxConnections, maxMessage } = cli.plan;
  const report = new Reporter(tls.json);
  /** Each connection's peer: a TCP socket's address, or for a WebSocket connection the HTTP request's. */
  const peers = new WeakMap<object, string>();
  // The address is kept when the connection comes: a socket already closed has none ("peer=undefined:undefined"
  // for a client that reset the connection before or right after its handshake; test/cli-client-close.test.ts).
  // One reset before it was accepted has none even then (a health check's connect and reset, often): "?:0", as
  // the proxy writes it (lib/proxy/proxy.ts), not "undefined:undefined".
  const addressOf = (s: { remoteAddress?: string | undefined; remotePort?: number | undefined }): string =>
    s.remoteAddress === undefined ? '?:0' : hostPortText(s.remoteAddress, String(s.remotePort));
  const peerOf = (s: QkdTlsSocket): string => peers.get(s.socket) ?? addressOf(s);
  const { json: _j, ...connOptions } = tls;

  return new Promise<number>((resolve) => {
    let exitCode = 0;
    /** SIGINT or SIGTERM came: echoed connections are being closed (see stop). */
    let stopping = false;
    /** The connections echoed (not --forward) and relayed (--forward) now. */
    const echoing = new Set<QkdTlsSocket>();
    const relaying = new Set<QkdTlsSocket>();
    /** Ends an echoed connection with close_notify after what it echoed, and reads (and drops) on to the client's. */
    const endEcho = (socket: QkdTlsSocket): void => {
      socket.unpipe(socket);
      socket.resume();
      socket.end();
    };
    const traceOptions = trace ? { traceConnection: (s: QkdTlsSocket) => trace.newTracer(peerOf(s)) } : {};
    const server = createServer({ ...connOptions, ...traceOptions, psks: keys.server }, (socket) => {
      const info = socket.handshake!;
      report.handshake(info, { peer: peerOf(socket) });
      if (forward) {
        relaying.add(socket);
        socket.once('close', () => relaying.delete(socket));
        relay(socket, forward, (e) => {
          exitCode = 1;
          report.failure(e);
        });
        if (stopping) socket.destroy();
      } else {
        // As the client command and --forward do: a client that cut the connection without close_notify may
        // have sent less than it meant to (RFC 8446 §6.1), so the connection did not succeed.
        socket.once('end', () => {
          if (socket.connection?.peerClosed) return;
          exitCode = 1;
          report.failure(new Error('the client cut the TLS connection without close_notify (truncated)'), { peer: peerOf(socket) });
        });
        socket.pipe(socket);
        echoing.add(socket);
        socket.once('close', () => echoing.delete(socket));
        if (stopping) endEcho(socket); // its handshake completed while the server stops
      }
    });
    // With --keylog (or SSLKEYLOGFILE), each secret goes into the trace too, naming its connection as every other
    // trace line does: the server's 'keylog' event has the socket, which the keyLog option's callback has not.
    if (trace && connOptions.keyLog) server.on('keylog', (line: Buffer, socket: QkdTlsSocket) => trace.secret(line.toString('latin1').trimEnd(), peerOf(socket)));
    server.server.maxConnections = maxConnections;
    // net.Server closes a connection beyond maxConnections without a word (its 'drop' event): said, as the proxy
    // logs the connections it refuses, so that an operator sees why clients were turned away.
    const dropped = (d?: { remoteAddress?: string; remotePort?: number }): void =>
      report.event('refused', { peer: addressOf(d ?? {}), reason: `--max-connections reached (${maxConnections} open)` });
    server.server.on('drop', dropped);
    // A reset said in words, as after the handshake also before it (it said only "read ECONNRESET").
    const isReset = (err: NodeJS.ErrnoException): boolean => err.code === 'ECONNRESET' || err.code === 'EPIPE';
    server.on('tlsClientError', (err: NodeJS.ErrnoException, socket: QkdTlsSocket) => {
      // A monitor's health check (connect, then close or reset, before a byte) is no failed handshake: a no-data
      // line, as the proxy logs it (lib/proxy/proxy.ts). It is no success either: --once still exits 1 for it,
      // while a server that runs on is not made to exit 1 at its stop by the probes it answered.
      const ended = values.websocket || !(socket.socket instanceof net.Socket) ? undefined : endedBeforeAByte(socket.socket);
      if (ended) {
        if (values.once) exitCode = 1;
        report.event('no-data', { peer: peerOf(socket), ended });
        return;
      }
      exitCode = 1;
      report.failure(err, { peer: peerOf(socket) }, isReset(err) ? 'the client reset the connection before the handshake completed' : undefined);
    });
    server.on('socketError', (err: NodeJS.ErrnoException, socket: QkdTlsSocket) => {
      exitCode = 1;
      // It said only "read ECONNRESET", with no peer (found in a README walkthrough: a client killed mid-transfer).
      report.failure(err, { peer: peerOf(socket) }, isReset(err) ? 'the client reset the connection; what arrived may be incomplete' : undefined);
    });
    server.server.on('connection', (raw: net.Socket) => {
      peers.set(raw, addressOf(raw));
      if (values.once) {
        server.close();
        raw.once('close', () => {
          keys.close();
          resolve(exitCode);
        });
      }
    });
    // A failure to listen (the port in use...) says so with the command's name and what to do.
    const failed = (e: Error): void => {
      if (isListenError(e)) report.fatal('server', listenFailure(listen.host, listen.port, e));
      else report.failure(e);
      keys.close();
      resolve(1);
    };
    server.on('error', failed);
    let ws: WebSocketListener | undefined;
    if (values.websocket) {
      const origins = cli.plan.origins;
      // A refused upgrade (an --origin not allowed) is said here: the page sees only that its WebSocket failed.
      const onRefused = (r: WebSocketRefusal): void => report.event('refused', { ...r });
      listenWebSocket({ host: listen.host, port: listen.port, maxConnections, onRefused, ...(origins ? { origins } : {}), ...(maxMessage ? { maxMessageBytes: maxMessage } : {}) }, ({ stream, peer }) => {
        peers.set(stream, peer);
        server.accept(stream);
        if (values.once && ws) {
          ws.server.close(); // stop accepting; this connection goes on
          stream.once('close', () => {
            keys.close();
            resolve(exitCode);
          });
        }
      }).then(
        (l) => {
          ws = l;
          l.server.on('drop', dropped);
          const a = l.address();
          report.event('listening', { address: hostPortText(a.address, a.port), transport: 'websocket', keys: keys.description });
        },
        failed,
      );
    } else {
      server.listen(listen.port, listen.host, () => {
        const a = server.address();
        report.event('listening', { address: hostPortText(a.address, a.port), keys: keys.description });
      });
    }
    const stop = (): void => {
      if (stopping) {
        server.destroyAll(); // a second SIGINT or SIGTERM: at once
        return;
      }
      stopping = true;
      // RFC 8446 §6.1: each party sends close_notify before it closes its write side. Each echoed connection is ended
      // with one (after what it echoed already) and its client answers with its own, so that the client sees a clean
      // end, not a truncation; it had none and the client reported "truncated" and exited 1. A --forward relay is cut
      // (its backend reset) as before; a connection still in its handshake, and a client that has not answered within
      // STOP_GRACE_MS, are cut then.
      for (const s of echoing) endEcho(s);
      for (const s of relaying) s.destroy();
      const cut = setTimeout(() => server.destroyAll(), STOP_GRACE_MS);
      const stopped = (): void => {
        clearTimeout(cut);
        keys.close();
        resolve(exitCode);
      };
      // close(cb) calls back once every TLS connection has closed (with ERR_SERVER_NOT_RUNNING where the server does not
      // listen itself: --websocket, --once; ignored).
      if (ws) {
        const listener = ws;
        listener.server.close(); // no new WebSocket; those open go on until their TLS connection closes
        server.close(() => void listener.close().then(stopped));
      } else server.close(stopped);
    };
    process.on('SIGTERM', stop); // (on, not once: a second signal cuts what is left)
    process.on('SIGINT', stop);
  });
}

/**
 * Relays a TLS socket to a new TCP connection to `backend`, both ways with backpressure. A clean end goes
 * across, each direction on its own (close_notify ⇄ FIN, RFC 8446 §6.1); an abort (the TLS connection cut
 * without close_notify, a reset or an error on either side) resets the TCP side and cuts the TLS side, so
 * that neither end takes a truncated stream for a complete one. (`qkd-tls proxy --role server` does the same
 * with timeouts, limits and a log line per connection.)
 */
function relay(tls: QkdTlsSocket, backend: { host: string; port: number }, onFailure: (e: Error) => void): void {
  const where = `backend ${backend.host}:${backend.port}`;
  const tcp = net.connect({ host: backend.host, port: backend.port, allowHalfOpen: true });
  let clientEnded = false;
  let backendEnded = false;
  let aborted = false;
  const abort = (why: string): void => {
    if (aborted) return;
    aborted = true;
    onFailure(new Error(why));
    tls.destroy();
    resetSocket(tcp);
  };
  tls.pipe(tcp, { end: false });
  tcp.pipe(tls, { end: false });
  tls.on('end', () => {
    if (!tls.connection?.peerClosed) return abort('the client cut the TLS connection without close_notify (truncated)');
    clientEnded = true;
    tcp.end();
  });
  tcp.on('end', () =>
    confirmNotReset(
      tcp,
      () => {
        backendEnded = true;
        tls.end();
      },
      (e) => abort(`${where}: reset (${e.message})`),
    ),
  );
  tcp.on('error', (e) => abort(`${where}: ${e.message}`));
  // The TLS socket's own errors are reported by the server ('socketError'); here they only end the relay.
  tls.on('error', () => {
    aborted = true;
    resetSocket(tcp);
  });
  tls.on('close', () => {
    if (clientEnded && backendEnded) return;
    aborted = true; // reported by whoever closed the TLS socket; a probe cut short here is no backend reset
    resetSocket(tcp);
  });
}

/**
 * `--max-connections N`, an integer from 1 (default 1000). Checked: net.Server takes NaN ("abc") or 0 as no limit
 * at all.
 */
function maxConnectionsOf(v: string | undefined): number {
  if (v === undefined) return 1000;
  if (!/^\d+$/.test(v) || Number(v) < 1 || Number(v) > 1_000_000) throw new UsageError(`--max-connections must be an integer from 1 to 1000000, got "${v}"`);
  return Number(v);
}
