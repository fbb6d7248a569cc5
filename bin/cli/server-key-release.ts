/**
 * How the commands' servers (`qkd-tls server --kme`, the proxy's server role through it, and the demos) wipe the
 * QKD keys they lease: when the handshake that used them is over, with a timer as the backstop.
 */
import type { AsyncPskResolver, QkdTlsSocket } from 'qkd-tls/node';
import { type CryptoProvider, type ImportAcceptOptions, type PskLease, type ServerKeySource, serverPskResolver } from 'qkd-tls';

export interface ReleasingResolverOptions {
  /** Accept RFC 9258 imported identities (see `serverPskResolver`). */
  readonly importer?: ImportAcceptOptions;
  /**
   * Receives each lease as well (e.g. `releaseAfter(ms)`): it wipes a lease whose handshake ends unseen, such as
   * one resolved for a caller that passes no socket.
   */
  readonly backstop: (lease: PskLease) => void;
}

/**
 * A server's PSK resolver over `source` (`serverPskResolver`) whose leased keys are wiped as soon as the
 * handshake on the socket that asked is over (see {@link releaseAtHandshakeEnd}). One `serverPskResolver` per
 * lookup, so that its lease is known to belong to this connection's handshake.
 */
export function releasingServerResolver(crypto: CryptoProvider, source: ServerKeySource, options: ReleasingResolverOptions): AsyncPskResolver {
  return (request, socket?: QkdTlsSocket) => {
    let lease: PskLease | undefined;
    const lookup = serverPskResolver(crypto, source, {
      importer: options.importer,
      onLease: (l) => {
        lease = l;
        options.backstop(l);
      },
    });
    return lookup(request).then((psks) => {
      if (lease) releaseAtHandshakeEnd(socket, lease);
      return psks;
    });
  };
}

/**
 * Wipes a server's leased keys once the handshake on `socket` is over: completed ('secure') or failed or
 * destroyed ('close'), at once if it is over already. The handshake has read what it needs of them by then: it
 * derives the early secret when the keys are handed over, from copies, and keeps copies of its own across a
 * HelloRetryRequest (lib/handshake/server.ts, ownPsks). Without a socket (a caller of its own) the lease waits
 * for the backstop timer.
 */
export function releaseAtHandshakeEnd(socket: QkdTlsSocket | undefined, lease: PskLease): void {
  if (!socket) return;
  if (socket.destroyed || socket.handshake) {
    lease.release();
    return;
  }
  const release = (): void => {
    socket.off('secure', release);
    socket.off('close', release);
    lease.release();
  };
  socket.once('secure', release);
  socket.once('close', release);
}

/** Whether every secret of `lease` is all zeros (the demos show that the server's keys are gone). */
export function leaseWiped(lease: PskLease): boolean {
  return lease.psks.every((p) => p.secret.every((b) => b === 0));
}
