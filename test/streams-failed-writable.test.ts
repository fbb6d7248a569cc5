/**
 * The streams transport's plaintext writable once the connection has failed (found by review): it was left writable,
 * so a write rejected with "write: the connection is failed" (a bare Error, no reason or code: not the TlsError that
 * ended the connection), and close() resolved as if our direction had closed cleanly, though no close_notify was
 * sent (after an alert received, or a failed handshake). The writable now fails with the connection's error.
 */
import t from 'tap';
import { tlsClientOverStreams, tlsServerOverStreams } from '../lib/transport/streams.js';
import { TlsError } from '../lib/errors.js';
import { nobleProvider } from '../lib/crypto/noble.js';
import { makePsk } from './helpers/pair.js';

const psk = makePsk('streams-failed-writable');

/** How `p` settled: 'resolved', or what it rejected with. */
const settled = (p: Promise<unknown>): Promise<unknown> =>
  p.then(
    () => 'resolved',
    (e: unknown) => e,
  );

for (const offload of [true, false]) {
  t.test(`offload ${offload}: after an alert, the writable fails with the connection's TlsError`, async (tt) => {
    // The server's records reach the client with their last byte flipped once `corrupt` is set: the client sends
    // bad_record_mac (RFC 8446 §5.2) and the server receives it.
    const toClient = new TransformStream<Uint8Array, Uint8Array>();
    const toServer = new TransformStream<Uint8Array, Uint8Array>();
    let corrupt = false;
    const flip = new TransformStream<Uint8Array, Uint8Array>({
      transform(chunk, out) {
        if (corrupt) {
          chunk = chunk.slice();
          chunk[chunk.length - 1] ^= 1;
        }
        out.enqueue(chunk);
      },
    });
    const server = tlsServerOverStreams({ readable: toServer.readable, writable: toClient.writable }, { crypto: nobleProvider, psks: [psk], offload });
    const client = tlsClientOverStreams({ readable: toClient.readable.pipeThrough(flip), writable: toServer.writable }, { crypto: nobleProvider, psks: [psk], offload });
    await client.handshake;
    await server.handshake;
    const serverWriter = server.writable.getWriter(); // (taken before the failure, as an echo loop would)
    corrupt = true;
    void serverWriter.write(new Uint8Array([1])).catch(() => {});
    const clientError = await settled(client.readable.getReader().read());
    tt.match(clientError, { reason: 'RecordBadMac', alert: 'bad_record_mac', remote: false }, 'the client sent bad_record_mac');
    const serverError = await settled(server.readable.getReader().read());
    tt.match(serverError, { alert: 'bad_record_mac', remote: true }, 'the server received it');

    const clientWriter = client.writable.getWriter();
    tt.equal(await settled(clientWriter.write(new Uint8Array([2]))), clientError, "the client's write rejects with the connection's TlsError");
    tt.equal(await settled(clientWriter.closed), clientError, "the client's writable is errored with it");
    tt.type(await settled(serverWriter.close()), TypeError, "the server's close() rejects (a stream errored: the streams spec's TypeError), it does not resolve");
    tt.equal(await settled(serverWriter.closed), serverError, "the server's writable is errored with the alert received");
  });
}

t.test('after a failed handshake, close() rejects rather than resolve as a clean close', async (tt) => {
  const toClient = new TransformStream<Uint8Array, Uint8Array>();
  const toServer = new TransformStream<Uint8Array, Uint8Array>();
  const server = tlsServerOverStreams({ readable: toServer.readable, writable: toClient.writable }, { crypto: nobleProvider, psks: [psk] });
  const client = tlsClientOverStreams({ readable: toClient.readable, writable: toServer.writable }, { crypto: nobleProvider, psks: [{ ...psk, secret: new Uint8Array(32).fill(9) }] });
  const clientError = await settled(client.handshake);
  tt.type(clientError, TlsError, 'the handshake failed (a wrong key)');
  await settled(server.handshake);
  const writer = client.writable.getWriter();
  tt.not(await settled(writer.close()), 'resolved', 'close() rejects');
  tt.equal(await settled(writer.closed), clientError, 'the writable is errored with the handshake error');
});
