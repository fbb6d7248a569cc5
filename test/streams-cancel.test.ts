/**
 * The streams transport when the application cancels its plaintext readable before the handshake completed
 * (found by review): the handshake can no longer complete (nothing more is read), so its promise, and any
 * write waiting for it, must settle rather than wait forever (the handshake deadline was cleared as well).
 */
import t from 'tap';
import { tlsClientOverStreams } from '../lib/transport/streams.js';
import { nobleProvider } from '../lib/crypto/noble.js';
import { memoryPipe } from './helpers/memory-streams.js';
import { makePsk } from './helpers/pair.js';

/** `p`'s outcome, or 'pending' if it has not settled within `ms` (a bounded wait, not a timing assertion). */
function outcome(p: Promise<unknown>, ms: number): Promise<string> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  return Promise.race([
    p.then(
      () => 'resolved',
      () => 'rejected',
    ),
    new Promise<string>((r) => (timer = setTimeout(() => r('pending'), ms))),
  ]).finally(() => clearTimeout(timer));
}

t.test('cancelling the readable during the handshake rejects the handshake and pending writes', async (tt) => {
  const [near, far] = memoryPipe();
  // The far end reads what the client sends and never answers.
  // (It errors once the client gives up the transport.)
  void (async () => {
    for await (const _ of far.readable as unknown as AsyncIterable<Uint8Array>) void _;
  })().catch(() => {});
  const tls = tlsClientOverStreams(near, { crypto: nobleProvider, psks: [makePsk('streams-cancel')], handshakeTimeout: 0 });
  const writer = tls.writable.getWriter();
  const written = writer.write(new Uint8Array([1, 2, 3]));
  written.catch(() => {});
  await tls.readable.cancel();
  tt.equal(await outcome(tls.handshake, 5000), 'rejected', 'the handshake promise rejects');
  tt.equal(await outcome(written, 5000), 'rejected', 'a write waiting for the handshake rejects');
  tt.equal(tls.connection.phase, 'closed', 'the connection is destroyed');
  await far.writable.close().catch(() => {});
});
