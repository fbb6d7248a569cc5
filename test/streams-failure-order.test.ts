/**
 * The streams transport delivers the plaintext the peer sent before a failure, then the failure (found by review):
 * the plaintext readable was errored at once, and controller.error() discards what is queued, so authenticated data
 * that arrived in the same read as a bad record, or just before the transport failed, never reached an application
 * that was not reading at that moment (node:tls emits it before the error). Nothing is delivered after the failure.
 */
import t from 'tap';
import { tlsClientOverStreams, tlsServerOverStreams } from '../lib/transport/streams.js';
import { nobleProvider } from '../lib/crypto/noble.js';
import { concat } from '../lib/codec/bytes.js';
import { makePsk } from './helpers/pair.js';

const psk = makePsk('streams-failure-order');

/**
 * A client and server whose server-to-client bytes the test holds back once `hold()` is called, and then hands to
 * the client as it likes (`inject`), or fails the client's transport with (`fail`).
 */
async function heldPair(offload: boolean) {
  const toClient = new TransformStream<Uint8Array, Uint8Array>();
  const toServer = new TransformStream<Uint8Array, Uint8Array>();
  const fromServer = toClient.readable.getReader();
  let holding = false;
  const held: Uint8Array[] = [];
  let injected: ReadableStreamDefaultController<Uint8Array>;
  let reading: () => void = () => {};
  const clientReadable = new ReadableStream<Uint8Array>(
    {
      pull() {
        reading(); // the transport asks for more: what it read before has been processed
      },
      start(c) {
        injected = c;
        void (async () => {
          for (;;) {
            const { value, done } = await fromServer.read();
            if (done) return;
            if (holding) held.push(value);
            else c.enqueue(value);
          }
        })().catch(() => {});
      },
    },
    { highWaterMark: 0 },
  );
  const server = tlsServerOverStreams({ readable: toServer.readable, writable: toClient.writable }, { crypto: nobleProvider, psks: [psk], offload });
  const client = tlsClientOverStreams({ readable: clientReadable, writable: toServer.writable }, { crypto: nobleProvider, psks: [psk], offload });
  await client.handshake;
  await server.handshake;
  return {
    client,
    server,
    hold: () => void (holding = true),
    /** What the server sent since hold(), joined. */
    held: () => concat(...held),
    inject: (bytes: Uint8Array) => injected.enqueue(bytes),
    /** Resolves when the client's transport next asks for bytes (after processing what it read). */
    nextRead: () => new Promise<void>((r) => (reading = r)),
    fail: (e: unknown) => injected.error(e),
    /** Ends the client's transport (end of stream) after what was injected. */
    end: () => injected.close(),
  };
}

/** Everything the application reads, then how the readable ended. */
async function readLate(readable: ReadableStream<Uint8Array>): Promise<string[]> {
  const out: string[] = [];
  const reader = readable.getReader();
  for (;;) {
    try {
      const { value, done } = await reader.read();
      if (done) return [...out, 'end'];
      out.push(new TextDecoder().decode(value));
    } catch (e) {
      return [...out, `error: ${(e as { reason?: string }).reason ?? (e as Error).message}`];
    }
  }
}

/** Until the client has failed (its handshake promise is settled already: its connection's phase tells). */
async function failed(conn: { phase: string }): Promise<void> {
  for (let i = 0; i < 500 && conn.phase !== 'failed' && conn.phase !== 'closed'; i++) await new Promise((r) => setTimeout(r, 10));
}

/** A pair whose client has read, opened and queued `text` from the server, and whose read loop waits for more. */
async function readThenWaiting(offload: boolean, text: string) {
  const p = await heldPair(offload);
  p.hold();
  await p.server.writable.getWriter().write(new TextEncoder().encode(text));
  for (let i = 0; i < 100 && p.held().length === 0; i++) await new Promise((r) => setTimeout(r, 10));
  const processed = p.nextRead();
  p.inject(p.held());
  await processed; // (the record was read and opened: the transport reads on)
  return p;
}

for (const offload of [true, false]) {
  t.test(`offload ${offload}: data before a bad record in the same read is delivered, then the error`, async (tt) => {
    const p = await heldPair(offload);
    p.hold();
    await p.server.writable.getWriter().write(new TextEncoder().encode('sent before the bad record'));
    for (let i = 0; i < 100 && p.held().length === 0; i++) await new Promise((r) => setTimeout(r, 10));
    const record = p.held();
    const forged = record.slice();
    forged[forged.length - 1] ^= 1; // (a record that fails its tag: RFC 8446 §5.2, bad_record_mac)
    p.inject(concat(record, forged));
    await failed(p.client.connection);
    tt.equal(p.client.connection.phase, 'failed', 'the client failed (bad_record_mac) before the application read anything');
    tt.same(await readLate(p.client.readable), ['sent before the bad record', 'error: RecordBadMac'], 'the data, then the error');
  });

  t.test(`offload ${offload}: data received before the transport failed is delivered, then the transport's error`, async (tt) => {
    const p = await readThenWaiting(offload, 'sent before the reset');
    p.fail(new Error('ECONNRESET'));
    await failed(p.client.connection);
    tt.same(await readLate(p.client.readable), ['sent before the reset', 'error: ECONNRESET'], 'the data, then the error');
  });
}

/** A pair with the offload on whose server sent four full records (16 KiB each), held back from the client. */
async function fullRecordsHeld() {
  const p = await heldPair(true);
  p.hold();
  const sent = new Uint8Array(4 * 16_384).fill(0x61);
  await p.server.writable.getWriter().write(sent);
  for (let i = 0; i < 200 && p.held().length < sent.length + 4 * 22; i++) await new Promise((r) => setTimeout(r, 10));
  return { p, sent };
}

t.test('offload true: full records still being opened when the transport fails are delivered, then the error', async (tt) => {
  // A full record cannot be a close_notify, so the transport reads on while the offload opens it; a transport that
  // failed meanwhile ended the connection at once, and the plaintext the records carried was dropped (deliver()
  // enqueues nothing once the connection is over): the application got the error without the data before it.
  const { p, sent } = await fullRecordsHeld();
  const processed = p.nextRead();
  p.inject(p.held());
  await processed; // (the records were read and handed to the offload: the transport reads on)
  p.fail(new Error('ECONNRESET'));
  await failed(p.client.connection);
  const got = await readLate(p.client.readable);
  tt.equal(got.slice(0, -1).join('').length, sent.length, 'every byte of the four records');
  tt.equal(got.at(-1), 'error: ECONNRESET', 'then the error');
});

t.test('offload true: full records before a bad record are delivered, then the error, not an end of stream', async (tt) => {
  // The failure came while the read loop waited on the transport: finish() cancelled the reader, whose read then
  // answered "done", and the loop took that for the transport's end of stream and closed the plaintext readable,
  // before the failure held behind the queued data could error it: the application saw a clean end (as after a
  // close_notify, RFC 8446 §6.1) where the peer's record failed (§5.2, bad_record_mac).
  const { p, sent } = await fullRecordsHeld();
  const records = p.held();
  const forged = records.slice(records.length - (16_384 + 22)); // (a copy of the last: under the next sequence number it fails its tag)
  p.inject(concat(records, forged));
  await failed(p.client.connection);
  const got = await readLate(p.client.readable);
  tt.equal(got.slice(0, -1).join('').length, sent.length, 'every byte of the four records');
  tt.equal(got.at(-1), 'error: RecordBadMac', 'then the error');
});

t.test('offload false: the writable aborted while the read loop waits errors the readable after its data', async (tt) => {
  // (The same without the offload: the application's abort ended the readable as cleanly as a close_notify.)
  const p = await readThenWaiting(false, 'sent before the abort');
  await p.client.writable.abort(new Error('given up'));
  tt.same(await readLate(p.client.readable), ['sent before the abort', 'error: given up'], 'the data, then the abort reason');
});

t.test('offload true: a bad record right before the end of stream errors the readable after the data before it', async (tt) => {
  // The end of stream came first: the loop waited for the offload to open what it had read, the bad record failed
  // the connection meanwhile, and the loop then closed the plaintext readable as for a clean end of stream.
  const { p, sent } = await fullRecordsHeld();
  const records = p.held();
  p.inject(concat(records, records.slice(records.length - (16_384 + 22))));
  p.end();
  await failed(p.client.connection);
  const got = await readLate(p.client.readable);
  tt.equal(got.slice(0, -1).join('').length, sent.length, 'every byte of the four records');
  tt.equal(got.at(-1), 'error: RecordBadMac', 'then the error');
});
