/**
 * The streams transport when the application cancels its plaintext readable before the handshake completed
 * (found by review): the handshake can no longer complete (nothing more is read), so its promise, and any
 * write waiting for it, must settle rather than wait forever (the handshake deadline was cleared as well).
 */
import t from 'tap';
import { tlsClientOverStreams, tlsServerOverStreams } from '../lib/transport/streams.js';
import { nobleProvider } from '../lib/crypto/noble.js';
import { memoryPipe } from './helpers/memory-streams.js';
import { makePsk } from './helpers/pair.js';

const psk = makePsk('streams-cancel-abort');

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

// The streams spec calls a sink's abort() only once the write in progress has settled (found by review): a write that
// waits while the peer does not read, or for the handshake, made writable.abort() wait with it — for good with a peer
// that never reads again, the connection and its keys kept. The sink now gives up the write at once (the controller's
// signal), and abort() ends the connection with the reason given.
for (const offload of [true, false]) {
  t.test(`offload ${offload}: writable.abort() while a write waits for a peer that does not read settles and ends the connection`, async (tt) => {
    const [c, s] = memoryPipe();
    const server = tlsServerOverStreams(s, { crypto: nobleProvider, psks: [psk], offload });
    const client = tlsClientOverStreams(c, { crypto: nobleProvider, psks: [psk], offload });
    await client.handshake;
    await server.handshake; // (the server's application never reads: its transport is read no further)
    const writer = client.writable.getWriter();
    let pending: Promise<void> | undefined;
    for (let i = 0; i < 1000; i++) {
      const w = writer.write(new Uint8Array(65_536));
      w.catch(() => {});
      if ((await outcome(w, 200)) === 'pending') {
        pending = w;
        break;
      }
    }
    tt.ok(pending, 'a write waits (backpressure)');
    const reason = new Error('the application gives up');
    tt.equal(await outcome(writer.abort(reason), 5000), 'resolved', 'abort() settles');
    tt.equal(await outcome(pending!, 5000), 'rejected', 'the waiting write rejects');
    const read = await client.readable
      .getReader()
      .read()
      .then(
        () => null,
        (e: unknown) => e,
      );
    tt.equal(read, reason, 'the plaintext readable errors with the reason');
    tt.equal(client.connection.phase, 'closed', 'the connection is destroyed (its keys wiped)');
    await server.writable.abort().catch(() => {});
  });
}

t.test('writable.abort() while a write waits for the handshake settles (the handshake deadline off)', async (tt) => {
  const [near, far] = memoryPipe();
  void (async () => {
    for await (const _ of far.readable as unknown as AsyncIterable<Uint8Array>) void _;
  })().catch(() => {});
  const tls = tlsClientOverStreams(near, { crypto: nobleProvider, psks: [makePsk('streams-abort')], handshakeTimeout: 0 });
  const writer = tls.writable.getWriter();
  const written = writer.write(new Uint8Array([1, 2, 3]));
  written.catch(() => {});
  tt.equal(await outcome(written, 100), 'pending', 'the write waits for the handshake (the sink has it: not only queued)');
  const reason = new Error('no answer: give up');
  tt.equal(await outcome(writer.abort(reason), 5000), 'resolved', 'abort() settles');
  tt.equal(await tls.handshake.catch((e: unknown) => e), reason, 'the handshake rejects with the reason');
  tt.equal(await outcome(written, 5000), 'rejected', 'the write waiting for the handshake rejects');
  tt.equal(tls.connection.phase, 'closed', 'the connection is destroyed');
  await far.writable.close().catch(() => {});
});
