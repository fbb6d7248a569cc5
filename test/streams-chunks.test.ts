/**
 * The streams transport and chunks that are not a Uint8Array (found by review), with the WebCrypto record offload on
 * and off:
 * - written to the TLS writable: an ArrayBuffer or a DataView was sent as nothing (its `length` is undefined) and the
 *   write resolved; a string was sent as zeros when offloaded (a TypedArray's set() of its characters). Bytes in any
 *   BufferSource are now sent; anything else rejects the write with a TypeError and gives the connection up.
 * - yielded by the transport's readable: an ArrayBuffer threw "Cannot read properties of undefined" (an exception out
 *   of Connection.receive after the handshake, no alert sent); a string was parsed as characters, and the peer was
 *   blamed with unexpected_message. Bytes in any BufferSource are now read; anything else fails the connection with
 *   InternalError, its internal_error alert sent (RFC 8446 §6.2: a local failure).
 */
import t from 'tap';
import { tlsClientOverStreams, tlsServerOverStreams, type ByteStreamPair } from '../lib/transport/streams.js';
import { Connection } from '../lib/connection/connection.js';
import { nobleProvider } from '../lib/crypto/noble.js';
import { memoryPipe, readAllBytes } from './helpers/memory-streams.js';
import { handshake, makePsk } from './helpers/pair.js';

const psk = makePsk('streams-chunks');
const unhandled: unknown[] = [];
const onUnhandled = (e: unknown): void => void unhandled.push(e);
process.on('unhandledRejection', onUnhandled);
t.teardown(() => void process.off('unhandledRejection', onUnhandled));

/** A connected client and server; `mapToClient` rewrites each chunk the client's transport yields. */
async function connected(offload: boolean, mapToClient?: (chunk: Uint8Array, index: number) => unknown) {
  let [c, s] = memoryPipe();
  if (mapToClient) {
    let index = 0;
    const map = new TransformStream<Uint8Array, Uint8Array>({ transform: (chunk, out) => out.enqueue(mapToClient(chunk, index++) as Uint8Array) });
    c = { readable: c.readable.pipeThrough(map), writable: c.writable } satisfies ByteStreamPair;
  }
  const server = tlsServerOverStreams(s, { crypto: nobleProvider, psks: [psk], offload });
  const client = tlsClientOverStreams(c, { crypto: nobleProvider, psks: [psk], offload });
  return { client, server };
}

for (const offload of [true, false]) {
  t.test(`offload ${offload}: bytes in any BufferSource written to the TLS writable arrive`, async (tt) => {
    const { client, server } = await connected(offload);
    await client.handshake;
    const received = readAllBytes(server.readable);
    const w = client.writable.getWriter();
    await w.write(new Uint8Array([1, 2]).buffer as unknown as Uint8Array);
    await w.write(new DataView(new Uint8Array([0, 3, 4, 0]).buffer, 1, 2) as unknown as Uint8Array);
    await w.write(new Uint16Array([0x0605]) as unknown as Uint8Array); // (little-endian in every runtime we run in)
    // A detached (transferred) buffer holds no bytes (WebIDL): nothing is sent, and the connection goes on.
    const detached = new ArrayBuffer(4);
    const detachedView = new DataView(detached);
    structuredClone(detached, { transfer: [detached] });
    await w.write(detached as unknown as Uint8Array);
    await w.write(detachedView as unknown as Uint8Array);
    await w.write(new Uint8Array([7]));
    await w.close();
    tt.same([...(await received)], [1, 2, 3, 4, 5, 6, 7], 'an ArrayBuffer, a DataView and a Uint16Array: their bytes, in order; detached ones: none');
  });

  for (const [what, chunk] of [
    ['a string', 'abc'],
    ['a number', 5],
    ['an array of numbers', [1, 2, 3]],
  ] as const) {
    t.test(`offload ${offload}: ${what} written to the TLS writable rejects with a TypeError, and nothing of it is sent`, async (tt) => {
      const { client, server } = await connected(offload);
      await client.handshake;
      const received = readAllBytes(server.readable).then(
        (b) => [...b],
        () => 'errored',
      );
      const w = client.writable.getWriter();
      await w.write(new Uint8Array([9]));
      const err = await w.write(chunk as unknown as Uint8Array).then(
        () => null,
        (e: unknown) => e,
      );
      tt.type(err, TypeError, 'the write rejects with a TypeError');
      tt.match((err as Error).message, /takes bytes/, 'saying what the writable takes');
      tt.equal(client.connection.phase, 'closed', 'the connection is given up (the errored writable can never close it)');
      tt.rejects(client.readable.getReader().read(), 'the plaintext readable errors too');
      // The peer received the byte written before, then no data (neither characters nor zeros): its readable fails
      // when the transport is aborted (the in-memory pipe passes the abort on).
      const got = await received;
      tt.not(got, [9, 0, 0, 0], 'no zeros for the characters');
      tt.not(got, [9, 97, 98, 99], 'nor the characters');
    });
  }

  t.test(`offload ${offload}: bytes in an ArrayBuffer or a DataView yielded by the transport are read`, async (tt) => {
    const { client, server } = await connected(offload, (chunk, i) => (i % 2 === 0 ? chunk.slice().buffer : new DataView(chunk.slice().buffer)));
    await client.handshake;
    await server.handshake;
    const received = readAllBytes(client.readable);
    const w = server.writable.getWriter();
    await w.write(new TextEncoder().encode('from the server'));
    await w.close();
    tt.equal(new TextDecoder().decode(await received), 'from the server', 'the handshake and the data went through');
  });

  for (const when of ['during the handshake', 'after the handshake'] as const) {
    t.test(`offload ${offload}: a string yielded by the transport ${when} fails with internal_error, not as the peer's fault`, async (tt) => {
      const first = when === 'during the handshake' ? 0 : 1;
      const { client, server } = await connected(offload, (chunk, i) => (i === first ? 'hello' : chunk));
      const sw = server.writable.getWriter();
      if (first === 1) {
        await server.handshake;
        void sw.write(new TextEncoder().encode('data')).catch(() => {});
      }
      const failure = (p: Promise<unknown>) =>
        p.then(
          () => null,
          (e: unknown) => e as { alert?: string; remote?: boolean; reason?: string; message: string },
        );
      const ce = first === 0 ? await failure(client.handshake) : await failure(client.readable.getReader().read());
      tt.match(ce, { alert: 'internal_error', remote: false, reason: 'InternalError' }, 'the client sends internal_error');
      tt.match(ce?.message, /must be a Uint8Array, got a string of 5 characters/, 'naming what the transport yielded');
      const se = first === 0 ? await failure(server.handshake) : await failure(server.readable.getReader().read());
      tt.match(se, { alert: 'internal_error', remote: true }, 'the server receives internal_error');
    });
  }
}

t.test('Connection.receive of an ArrayBuffer after the handshake: no exception, InternalError with its alert', async (tt) => {
  const { client } = handshake({ crypto: nobleProvider, psks: [psk] }, { crypto: nobleProvider, psks: [psk] });
  client.takeEvents();
  tt.doesNotThrow(() => client.receive(new Uint8Array([23, 3, 3, 0, 1]).buffer as unknown as Uint8Array), 'receive never throws');
  tt.equal(client.phase, 'failed');
  tt.match(client.error, { reason: 'InternalError', alert: 'internal_error', remote: false });
  tt.match(client.error?.message, /got an ArrayBuffer/);
  tt.ok(client.hasOutput, 'the alert is queued for the peer');
});

t.test('no unhandled promise rejection', async (tt) => {
  await new Promise((r) => setTimeout(r, 100));
  tt.same(unhandled, []);
});
