/**
 * `qkd-tls client --connect HOST:PORT [key source] [tls options]`
 *
 * A TLS 1.3 PSK client: what arrives on stdin goes to the server, what the server sends goes to stdout.
 * It ends as `openssl s_client` does: when the server closes (close_notify), the client delivers what it
 * received, closes too and exits 0, whether or not its stdin is still open (`--half-close` keeps sending
 * stdin until it ends). When stdin ends, it sends close_notify and exits once the server has closed too. A
 * connection cut without close_notify is a truncation: reported, exit code 1.
 */
import type { Psk } from 'qkd-tls';
import { connect } from 'qkd-tls/node';
import { KEY_SOURCE_HELP, KEY_SOURCE_OPTION_SPEC, parseKeySource } from '../cli/key-source.js';
import { clientFailureHint, Reporter } from '../cli/report.js';
import { parseCommandLine } from '../cli/command.js';
import { refuseOtherRoleOptions } from '../cli/roles.js';
import { parseTraceOptions, TRACE_HELP, TRACE_OPTION_SPEC } from '../cli/trace.js';
import { parseHostPort, parseTlsOptions, TLS_OPTION_SPEC, TLS_OPTIONS_HELP } from '../cli/tls-options.js';

const HELP = `usage: qkd-tls client --connect HOST:PORT [key source] [tls options]

A TLS 1.3 client for external pre-shared keys: stdin goes to the server, the server's data to stdout.
When the server closes its direction (close_notify), the client writes out what it received, closes its own
direction and exits, even if stdin is still open (as openssl s_client and gnutls-cli do). At the end of
stdin it closes its direction (close_notify) and exits when the server closes.
Exit code 0 on a clean close; 1 on a TLS failure (the alert is printed) or when the connection was cut
without close_notify ("truncated": the data may be incomplete); 2 on a usage error.

  --connect HOST:PORT    the server
  --key-update           send a KeyUpdate (asking the server to update too) right after the handshake
  --half-close           after the server's close_notify, keep sending stdin until it ends, then close
                         (TLS half-close, RFC 8446 §6.1; the counterpart of s_client -ign_eof)

${KEY_SOURCE_HELP}

${TLS_OPTIONS_HELP}

${TRACE_HELP}`;

export async function run(argv: string[]): Promise<number> {
  const options = {
    connect: { type: 'string' },
    'key-update': { type: 'boolean' },
    'half-close': { type: 'boolean' },
    ...KEY_SOURCE_OPTION_SPEC,
    ...TLS_OPTION_SPEC,
    ...TRACE_OPTION_SPEC,
  } as const;
  const cli = parseCommandLine('client', argv, options, HELP, (values) => {
    // An option of the other role (bin/cli/roles.ts) is a usage error, not silently ignored.
    refuseOtherRoleOptions('client', values);
    return {
      target: parseHostPort('connect', values.connect, 'connect'),
      tls: parseTlsOptions(values),
      keys: parseKeySource(values, { role: 'client' }),
      trace: parseTraceOptions(values),
    };
  });
  if ('exit' in cli) return cli.exit;
  const { values } = cli;
  const { target, tls, keys, trace } = cli.plan;
  const report = new Reporter(tls.json);
  const { json: _j, maxEarlyDataSize: _m, ...connOptions } = tls; // --max-early-data was refused (a server option)

  return new Promise<number>((resolve) => {
    let failed = false;
    let offered: readonly Psk[] | undefined;
    // The keys serve this one handshake: once it is over (or failed), they are released and wiped. Keys still
    // being fetched when the socket closes never reach `offered` unwiped: 'close' also closes the key source,
    // which rejects the pending take, cancels its enc_keys call and wipes any key that arrives anyway
    // (ConnectOptions.psks leaves late keys to the caller; test/client-key-lifetime.test.ts).
    const release = (): void => {
      if (offered) keys.release?.(offered);
      offered = undefined;
    };
    const options = {
      ...connOptions,
      ...(trace ? { trace: trace.newTracer(), keyLog: trace.keyLog(connOptions.keyLog) } : {}),
      host: target.host,
      port: target.port,
      psks: async () => (offered = await keys.clientPsks()),
    };
    const socket = connect(options, () => {
      release();
      report.handshake(socket.handshake!);
      // --early-data is this command's own request: if the server rejected the 0-RTT data, it is sent again now,
      // before stdin (RFC 8446 §4.2.10 leaves that choice to the application). Written here rather than with
      // resendRejectedEarlyData, which resends only under the PSK's earlyDataAlpn: with --alpn the data was lost.
      if (socket.handshake!.earlyData === 'rejected' && connOptions.earlyData) socket.write(connOptions.earlyData);
      if (values['key-update']) {
        socket.keyUpdate(true);
        report.event('key-update', { direction: 'write', requestPeer: true });
      }
      process.stdin.pipe(socket);
    });
    socket.on('earlyData', (status: string) => report.event('early-data', { status }));
    socket.on('data', (d: Buffer) => {
      if (!process.stdout.write(d)) {
        socket.pause();
        process.stdout.once('drain', () => socket.resume());
      }
    });
    socket.on('error', (e: NodeJS.ErrnoException) => {
      // The server closed cleanly (close_notify) and then the TCP connection: our own close_notify may meet a
      // reset. Nothing was lost, so that is still a clean end.
      if (socket.connection?.peerClosed && (e.code === 'EPIPE' || e.code === 'ECONNRESET')) return;
      failed = true;
      // No connection yet: the key source had not answered (the handshake timer runs from the connect).
      report.failure(e, {}, clientFailureHint(e, values.kme !== undefined, socket.connection !== null));
    });
    socket.on('end', () => {
      if (!socket.connection?.peerClosed) {
        // §6.1: only close_notify ends a connection cleanly; an EOF without it may have cut the data short.
        if (!failed) {
          failed = true;
          report.failure(new Error('the server closed the connection without close_notify (truncated)'));
        }
        socket.destroy();
        return;
      }
      // The server's close_notify: unless asked to keep sending, stop reading stdin and close our side.
      if (values['half-close'] && socket.writable) return;
      process.stdin.unpipe(socket);
      socket.end();
    });
    socket.on('close', () => {
      release();
      keys.close();
      process.stdin.unpipe(socket);
      process.stdin.destroy();
      resolve(failed ? 1 : 0);
    });
  });
}
