/**
 * One demo connection, as `qkd-tls demo` and `qkd-tls demo --network` make them: connect, write one message once
 * the handshake is complete and end our side, collect the echo until the socket closes.
 */
import type { HandshakeInfo } from 'qkd-tls';
import { connect } from 'qkd-tls/node';

/** What one exchange gave: the handshake, the echo, the error that ended it, if any. */
export interface EchoResult {
  info?: HandshakeInfo;
  error?: Error;
  echoed: string;
}

/**
 * Runs the exchange and resolves with `result` filled in once the socket closed, after calling `keys.release`
 * (which the PSK callback in `options` sets when it takes keys: they are wiped then). Keys that the callback
 * takes after the socket was destroyed (its TCP connection failed while the key manager answered) are never
 * used: `keys.release` is called for them as they arrive (ConnectOptions.psks: the caller wipes its keys).
 */
export function echoOnce<R extends EchoResult>(options: Parameters<typeof connect>[0], message: string, result: R, keys: { release?: () => void }): Promise<R> {
  const take = options.psks;
  const psks: typeof take =
    typeof take === 'function'
      ? () =>
          take().then((taken) => {
            if (socket.destroyed) keys.release?.();
            return taken;
          })
      : take;
  let socket: ReturnType<typeof connect>;
  return new Promise((resolve) => {
    socket = connect({ ...options, psks }, () => {
      result.info = socket.handshake!;
      socket.end(message);
    });
    socket.on('data', (d: Buffer) => (result.echoed += d.toString()));
    socket.on('error', (e) => (result.error = e));
    socket.on('close', () => {
      keys.release?.();
      resolve(result);
    });
  });
}
