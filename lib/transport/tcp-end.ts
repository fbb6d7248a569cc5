/**
 * How a plain TCP connection ended, and how to end one so that the peer cannot mistake it: the pieces that
 * the proxy and `qkd-tls server --forward` use to carry a clean close and an abort from one side to the other.
 */
import type * as net from 'node:net';

/**
 * Runs `then` once a TCP socket that reported the end of its stream is known not to have been reset, or
 * `onReset` if it was.
 *
 * Node 20's libuv reports a reset as a clean end of stream when the RST arrives while received data is still
 * unread (it takes a short read after POLLHUP for end of file without asking the kernel; libuv issue 2319,
 * changed upstream in 2026): a peer that aborted would pass for one that finished, and its truncated stream
 * would be closed cleanly on the other side. A write of zero bytes asks the kernel:
 * - it succeeds on a half-closed connection: a clean end;
 * - it fails with EPIPE when the peer sent its FIN before a reset (the reset then only answers data we sent
 *   after the peer had closed for good): the peer's stream is complete, so that is a clean end too, and the
 *   socket's own 'error' reports the failed write;
 * - it fails with ECONNRESET when the reset came without a FIN: an abort, and `onReset` runs.
 * The probe is only made while nothing is queued for the socket: behind queued data it would wait for the
 * peer to read it, and a peer that closed its side without reading the rest would hold the end back. With data
 * queued, the reset shows as the failure of that queued write instead, which libuv reports in the same poll as
 * the false end of stream but after it ('end' runs on the ticks that follow the read): the end is taken one
 * turn of the event loop later, unless that write failed meanwhile (taken at once, a truncated upload passed
 * for a complete one). Once our own side has ended the socket cannot be written: the end is taken the same way
 * while what we sent before our end is still queued, and as it is once all of it is out. Nothing runs for a
 * socket already destroyed (whoever destroyed it reported why).
 */
export function confirmNotReset(socket: net.Socket, then: () => void, onReset: (e: Error) => void): void {
  if (socket.writableFinished) return then();
  if (socket.destroyed) return;
  if (socket.writableEnded || socket.writableLength > 0) {
    // The queue may also be flushed meanwhile: 'finish' (our side ended) comes before the 'close' that follows
    // it, and the end is clean then.
    let settled = false;
    const settle = (): void => {
      if (settled) return;
      settled = true;
      socket.off('finish', settle);
      if (!socket.errored && (!socket.destroyed || socket.writableFinished)) then();
    };
    socket.once('finish', settle);
    setImmediate(settle);
    return;
  }
  socket.write(NO_BYTES, (e) => (e && (e as NodeJS.ErrnoException).code !== 'EPIPE' ? onReset(e) : then()));
}

/**
 * How a TCP peer left before sending a byte, as a load balancer's or monitor's health check does (connect, then
 * close or reset): "closed" (FIN) or "reset"; undefined if it sent anything, or is still there. bytesRead counts
 * what the kernel handed over, read by the socket's consumer or not, and stays once the socket is gone. The proxy
 * logs such a connection "no-data" and `qkd-tls server` prints a no-data line, not a failure.
 */
export function endedBeforeAByte(socket: net.Socket): 'closed' | 'reset' | undefined {
  if (socket.bytesRead !== 0) return undefined;
  if (socket.errored !== null) return 'reset';
  return socket.readableEnded ? 'closed' : undefined;
}

/** Closes a TCP socket with RST (the peer sees ECONNRESET, not a clean end of stream). */
export function resetSocket(s: net.Socket): void {
  if (s.destroyed) return;
  if (s.connecting) s.destroy();
  else s.resetAndDestroy();
}

const NO_BYTES = new Uint8Array(0);
