/**
 * connStreams (lib/transport/conn-streams.ts): byte streams over a Deno.Conn-like socket that keep it open after the
 * peer's end of stream, and close it once both directions are over.
 */
import t from 'tap';
import { nobleProvider } from '../lib/crypto/noble.js';
import type { Psk } from '../lib/psk/types.js';
import { connStreams, type ConnLike } from '../lib/transport/conn-streams.js';
import { tlsClientOverStreams, tlsServerOverStreams, type ByteStreamPair } from '../lib/transport/streams.js';
import { utf8 } from '../lib/codec/bytes.js';
import { memoryPipe } from './helpers/memory-streams.js';
import { PaddingClient } from './helpers/padded-close.js';

const psk: Psk = { identity: utf8('conn'), secret: new Uint8Array(32).fill(5), hash: 'SHA-256' };

/**
 * A socket in the shape of Deno.Conn over one end of an in-memory pipe: `read` fills the caller's buffer, `write`
 * takes at most `maxWrite` bytes a call (slowly), and after close() both fail as Deno's do ("Bad resource ID").
 */
class FakeConn implements ConnLike {
  closes = 0;
  closeWrites = 0;
  readonly log: string[] = [];
  private leftover: Uint8Array = new Uint8Array(0);
  private readonly reader: ReadableStreamDefaultReader<Uint8Array>;
  private readonly writer: WritableStreamDefaultWriter<Uint8Array>;

  constructor(end: ByteStreamPair, private readonly maxWrite = 1 << 30) {
    this.reader = end.readable.getReader();
    this.writer = end.writable.getWriter();
  }
  async read(p: Uint8Array): Promise<number | null> {
    if (this.closes > 0) throw new Error('Bad resource ID');
    if (this.leftover.length === 0) {
      const { value, done } = await this.reader.read();
      if (done) {
        this.log.push('eof');
        return null;
      }
      this.leftover = value;
    }
    const n = Math.min(p.length, this.leftover.length);
    p.set(this.leftover.subarray(0, n));
    this.leftover = this.leftover.subarray(n);
    return n;
  }
  async write(p: Uint8Array): Promise<number> {
    await new Promise((r) => setTimeout(r, 1)); // slow: the peer's end of stream comes while we still write
    if (this.closes > 0) throw new Error('Bad resource ID');
    const n = Math.min(p.length, this.maxWrite);
    await this.writer.write(p.slice(0, n));
    return n;
  }
  async closeWrite(): Promise<void> {
    this.closeWrites++;
    this.log.push('closeWrite');
    await this.writer.close();
  }
  close(): void {
    this.closes++;
    this.log.push('close');
  }
}

t.test("a server over connStreams echoes everything to a client whose full-size padded close_notify comes with its end of stream", async (t) => {
  // A close_notify padded to the full record size (2 + 1 + 16,382 = 2^14 + 1 bytes): the offloading server cannot
  // tell it from data before opening it, and reads on to the end of stream, which over Deno's own readable would
  // close the socket under the echo. Over connStreams the end of stream closes nothing.
  const [c, s] = memoryPipe();
  const conn = new FakeConn(s, 5000); // (partial writes: connStreams must write the rest)
  const server = tlsServerOverStreams(connStreams(conn, { readSize: 4096 }), { crypto: nobleProvider, psks: [psk] });
  const echo = server.readable.pipeTo(server.writable).then(() => 'ok', (e: Error) => e.message);
  const client = new PaddingClient({ psks: [psk] });
  const payload = new Uint8Array(120_000).map((_, i) => (i * 31) & 0xff);
  const { closeNotify, received, reading } = await client.sendAndClose(c, payload, 16_382);
  t.equal(closeNotify.length, 5 + 16_385 + 16, 'the close_notify is a full-size record');
  const echoed = await echo;
  t.equal(echoed, 'ok', 'the echo finished without a write failing');
  if (echoed !== 'ok') return;
  await reading;
  t.equal(Buffer.compare(Buffer.concat(received), Buffer.from(payload)), 0, `all ${payload.length} bytes came back`);
  t.ok(client.connection.peerClosed, "and the server's close_notify after them");
  t.equal(conn.closes, 1, 'the socket was closed once');
  t.ok(conn.log.indexOf('close') > conn.log.indexOf('closeWrite'), `after our direction ended (${conn.log.join(', ')})`);
});

t.test('connStreams closes the socket once both directions are over, whichever ends first (a cancelled readable counts as read to the end); at once on abort', async (t) => {
  // The peer's end of stream first, then ours.
  {
    const [peer, ours] = memoryPipe();
    const conn = new FakeConn(ours);
    const pair = connStreams(conn);
    await peer.writable.getWriter().close();
    const r = pair.readable.getReader();
    t.same(await r.read(), { value: undefined, done: true }, 'the end of stream is read');
    t.equal(conn.closes, 0, 'the socket stays open for writing');
    const w = pair.writable.getWriter();
    const got = peer.readable.getReader().read();
    await w.write(utf8('still writing'));
    t.same((await got).value, utf8('still writing'), 'what we write after it arrives');
    await pair.closeWrite();
    t.equal(conn.closes, 1, 'closed once our direction ended too');
  }
  // Ours first, then the peer's.
  {
    const [peer, ours] = memoryPipe();
    const conn = new FakeConn(ours);
    const pair = connStreams(conn);
    await pair.closeWrite();
    t.equal(conn.closes, 0, 'half-closed: still open for reading');
    const r = pair.readable.getReader();
    const late = r.read();
    const pw = peer.writable.getWriter();
    await pw.write(utf8('late'));
    t.same((await late).value, utf8('late'), 'the peer can still send');
    void pw.close().catch(() => {});
    t.equal((await r.read()).done, true, 'then its end of stream');
    t.equal(conn.closes, 1, 'closed once both are over');
  }
  // The transport lets the readable go: reading is over, writing is not (the application cancelled its plaintext
  // readable and goes on writing); the socket is closed once our direction is over too, or aborted.
  {
    const [peer, ours] = memoryPipe();
    const conn = new FakeConn(ours);
    const pair = connStreams(conn);
    await pair.readable.cancel();
    t.equal(conn.closes, 0, 'cancel leaves it open for writing');
    const got = peer.readable.getReader().read();
    await pair.writable.getWriter().write(utf8('after cancel'));
    t.same((await got).value, utf8('after cancel'), 'what we write after it arrives');
    await pair.closeWrite();
    t.equal(conn.closes, 1, 'closed once our direction ended too');
  }
  {
    const [, ours] = memoryPipe();
    const conn = new FakeConn(ours);
    const pair = connStreams(conn);
    await pair.closeWrite();
    await pair.readable.cancel();
    t.equal(conn.closes, 1, 'cancel after our direction ended closes it');
  }
  {
    const [, ours] = memoryPipe();
    const conn = new FakeConn(ours);
    const pair = connStreams(conn);
    await pair.readable.cancel();
    await pair.writable.abort().catch(() => {});
    t.equal(conn.closes, 1, 'cancel then abort (a transport giving up) closes it, once');
    await pair.readable.cancel();
    t.equal(conn.closes, 1, 'and only once');
  }
  {
    const [, ours] = memoryPipe();
    const conn = new FakeConn(ours);
    await connStreams(conn).writable.abort(new Error('failed'));
    t.equal(conn.closes, 1, 'abort closes it');
  }
});

t.test('connStreams: a read that fails errors the readable with its error and closes the socket; readSize is checked', async (t) => {
  const conn: ConnLike & { closes: number } = {
    closes: 0,
    read: async () => {
      throw new Error('connection reset');
    },
    write: async (p) => p.length,
    closeWrite: async () => {},
    close() {
      this.closes++;
    },
  };
  await t.rejects(connStreams(conn).readable.getReader().read(), /connection reset/, 'the read rejects with the socket error');
  t.equal(conn.closes, 1, 'the socket is closed');
  for (const bad of [0, 1.5, 1 << 25]) t.throws(() => connStreams(conn, { readSize: bad }), RangeError, `readSize ${bad}`);
});

t.test("connStreams: a write that fails errors the writable with its error and closes the socket, also after the peer's end of stream", async (t) => {
  // Before: only a failed read closed the socket. A peer that half-closes and then resets (our echo's write fails
  // with a broken pipe) left it open: the end of stream was read, our direction never ended, so neither rule closed
  // it — a file descriptor held for good (Deno closes nothing on garbage collection).
  const conn: ConnLike & { closes: number } = {
    closes: 0,
    read: async () => null,
    write: async () => {
      throw new Error('broken pipe');
    },
    closeWrite: async () => {},
    close() {
      this.closes++;
    },
  };
  const streams = connStreams(conn);
  t.equal((await streams.readable.getReader().read()).done, true, "the peer's end of stream is read");
  t.equal(conn.closes, 0, 'the socket stays open for our direction');
  await t.rejects(streams.writable.getWriter().write(new Uint8Array(10)), /broken pipe/, 'the write rejects with the socket error');
  t.equal(conn.closes, 1, 'the socket is closed');
});

t.test("a server over connStreams whose application cancels its plaintext readable can still write: what it writes arrives", async (t) => {
  // Before: cancelling the plaintext readable made the transport cancel connStreams' readable, which closed the whole
  // socket; the server's later write resolved (queued) but never arrived — over an ordinary transport it does.
  const [c, s] = memoryPipe();
  const conn = new FakeConn(s);
  const server = tlsServerOverStreams(connStreams(conn), { crypto: nobleProvider, psks: [psk] });
  const client = tlsClientOverStreams(c, { crypto: nobleProvider, psks: [psk] });
  await Promise.all([server.handshake, client.handshake]);
  await server.readable.cancel();
  t.equal(conn.closes, 0, 'the socket stays open for writing');
  const w = server.writable.getWriter();
  await w.write(utf8('still here'));
  const r = client.readable.getReader();
  t.same((await r.read()).value, utf8('still here'), 'the client receives what the server wrote after cancelling');
  await w.close();
  t.equal((await r.read()).done, true, "then the server's close_notify");
  t.equal(conn.closes, 1, 'and the socket is closed once the server closed its direction');
});

t.test("a server over connStreams that reads to the end of stream (or cancels its readable) and then aborts its writable closes the socket", async (t) => {
  for (const how of ['end of stream', 'cancel'] as const) {
    const [c, s] = memoryPipe();
    const conn = new FakeConn(s);
    const server = tlsServerOverStreams(connStreams(conn), { crypto: nobleProvider, psks: [psk] });
    // The client by hand, so that its transport can end without a close_notify (a truncated connection).
    const tls = new PaddingClient({ psks: [psk] }).connection;
    const toServer = c.writable.getWriter();
    const fromServer = c.readable.getReader();
    for (const chunk of tls.takeOutputChunks()) await toServer.write(chunk);
    while (tls.phase === 'handshaking') {
      tls.receive((await fromServer.read()).value!);
      for (const chunk of tls.takeOutputChunks()) await toServer.write(chunk);
    }
    await server.handshake;
    if (how === 'cancel') await server.readable.cancel();
    else {
      await toServer.close();
      t.equal((await server.readable.getReader().read()).done, true, `${how}: the server read the end of stream`);
    }
    t.equal(conn.closes, 0, `${how}: the socket stays open for writing`);
    await server.writable.abort(new Error('the application gives up'));
    for (let i = 0; i < 50 && conn.closes === 0; i++) await new Promise((r) => setTimeout(r, 1));
    t.equal(conn.closes, 1, `${how}: aborting the plaintext writable closes the socket`);
  }
});

t.test('connStreams: aborting the writable while a write waits for a peer that does not read closes the socket at once', async (t) => {
  // A socket whose writes never complete (the peer reads nothing, its window is full) until it is closed, after which
  // they fail as Deno's do.
  let closes = 0;
  let failPending: (e: Error) => void = () => {};
  const conn: ConnLike = {
    read: () => new Promise<number | null>(() => {}),
    write: () => new Promise<number>((_, reject) => (failPending = reject)),
    closeWrite: async () => {},
    close: () => {
      closes++;
      failPending(new Error('Bad resource ID'));
    },
  };
  const pair = connStreams(conn);
  const writer = pair.writable.getWriter();
  const pending = writer.write(new Uint8Array(1024));
  pending.catch(() => {});
  await new Promise((r) => setTimeout(r, 10)); // (the write has reached the socket)
  const aborted = writer.abort(new Error('the transport gives up'));
  t.equal(closes, 1, 'the socket is closed at once, not after the pending write (which would never come)');
  await t.rejects(pending, 'the pending write fails');
  await aborted;

  // The same through the TLS transport: an application that aborts under backpressure gets its socket closed.
  let tlsCloses = 0;
  const [near, far] = memoryPipe();
  const peer = tlsServerOverStreams(far, { crypto: nobleProvider, psks: [psk] }); // (its application never reads)
  const nearConn = new FakeConn(near);
  const stuck: ConnLike = {
    read: (p) => nearConn.read(p),
    write: (p) => nearConn.write(p),
    closeWrite: () => nearConn.closeWrite(),
    close: () => {
      tlsCloses++;
      nearConn.close();
    },
  };
  const client = tlsClientOverStreams(connStreams(stuck), { crypto: nobleProvider, psks: [psk] });
  await client.handshake;
  await peer.handshake;
  const w = client.writable.getWriter();
  for (let blocked = false, i = 0; !blocked && i < 1000; i++) {
    const p = w.write(new Uint8Array(65_536));
    p.catch(() => {});
    blocked = await Promise.race([p.then(() => false), new Promise<boolean>((r) => setTimeout(() => r(true), 200))]);
  }
  await w.abort(new Error('give up'));
  for (let i = 0; i < 100 && tlsCloses === 0; i++) await new Promise((r) => setTimeout(r, 10));
  t.equal(tlsCloses, 1, 'the socket under the TLS connection is closed');
  await peer.writable.abort().catch(() => {});
});
