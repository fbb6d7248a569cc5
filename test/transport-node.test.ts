/**
 * The Node transport's connection lifecycle: closed connections are released, whatever the application
 * does with the readable side. (Found by the benchmark: a server that only writes kept every connection
 * its clients had closed, because 'end' waited for a reader that never came.) And which reads the transport
 * may keep views of: a net.Socket's (a fresh buffer per read), never those of any other Duplex.
 */
import t from 'tap';
import { once } from 'node:events';
import * as v8 from 'node:v8';
import * as net from 'node:net';
import { Duplex } from 'node:stream';
import { runInNewContext } from 'node:vm';
import { connect, createServer, TlsError, type QkdTlsServer, type QkdTlsSocket } from '../lib/transport/node.js';
import { makePsk } from './helpers/pair.js';

const psk = makePsk('transport-lifecycle');
const GREETING = Uint8Array.of(0x2a);

/** A server that greets each client and never reads; destroys its socket on 'end'. */
async function writeOnlyServer(): Promise<{ server: QkdTlsServer; port: number; ended: () => number }> {
  let ended = 0;
  const server = createServer({ psks: [psk] }, (s) => {
    s.on('error', () => {});
    s.on('end', () => {
      ended++;
      s.destroy();
    });
    s.write(GREETING);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return { server, port: server.address().port, ended: () => ended };
}

/** Resolves once `cond` holds, polling every 10 ms, failing after `ms`. */
async function until(cond: () => boolean, ms: number, what: string): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

for (const how of ['destroy', 'end'] as const) {
  t.test(`a server that never reads sees 'end' and releases connections its clients ${how === 'end' ? 'ended (close_notify)' : 'destroyed (TCP close only)'}`, async (tt) => {
    const { server, port, ended } = await writeOnlyServer();
    const N = 20;
    for (let i = 0; i < N; i++) {
      const c: QkdTlsSocket = connect({ host: '127.0.0.1', port, psks: [psk] });
      c.on('error', () => {});
      await once(c, 'data', { signal: AbortSignal.timeout(5000) });
      if (how === 'destroy') c.destroy();
      else c.end();
      if (how === 'end') {
        // The client keeps reading until the server's side closes too.
        c.resume();
        await once(c, 'close', { signal: AbortSignal.timeout(5000) });
      }
    }
    await until(() => ended() === N && server.connections === 0, 5000, `${N} server-side 'end' events and no open connections`);
    tt.equal(ended(), N, `'end' on every server socket`);
    tt.equal(server.connections, 0, 'no connection left open on the server');
    await closeServer(server);
  });
}

t.test('a destroyed client socket closes as soon as the peer closes, and nothing keeps it reachable afterwards', async (tt) => {
  const { server, port } = await writeOnlyServer();
  const gc = forceGc();
  const refs: WeakRef<object>[] = [];
  const closeOne = async () => {
    const c = connect({ host: '127.0.0.1', port, psks: [psk] });
    c.on('error', () => {});
    await once(c, 'data', { signal: AbortSignal.timeout(5000) });
    refs.push(new WeakRef(c), new WeakRef(c.socket));
    // The grace period for flushing is 2 s, after which the socket is destroyed without the peer's FIN; the
    // peer closes its side at once, so the socket must close because of that FIN ('end' before 'close').
    let peerEnded = false;
    c.socket.once('end', () => (peerEnded = true));
    c.destroy();
    await once(c.socket, 'close', { signal: AbortSignal.timeout(5000) });
    tt.ok(peerEnded, "the underlying socket closed on the peer's FIN, not on the grace timer");
  };
  await closeOne();
  await until(() => server.connections === 0, 5000, 'the server to release the connection');
  // A pending grace timer would keep the socket, the TLS socket and its connection reachable for 2 s.
  await new Promise((r) => setImmediate(r));
  gc();
  await new Promise((r) => setImmediate(r));
  gc();
  tt.ok(
    refs.every((r) => r.deref() === undefined),
    'the TLS socket and its TCP socket are garbage once closed',
  );
  await closeServer(server);
});

/**
 * A Duplex over a TCP socket that hands on what it reads in small pieces through one buffer, which it writes
 * over again as soon as a piece has been delivered (as a reader with one read buffer does).
 */
class ReusingDuplex extends Duplex {
  private buf = new Uint8Array(1000);
  constructor(private readonly inner: net.Socket) {
    super({ allowHalfOpen: true });
    inner.on('data', (b: Buffer) => {
      for (let at = 0; at < b.length; at += this.buf.length) {
        const n = Math.min(this.buf.length, b.length - at);
        this.buf.set(b.subarray(at, at + n));
        this.push(Buffer.from(this.buf.buffer, 0, n));
        // Only a piece still queued in this stream may not be overwritten: a new buffer then.
        if (this.readableLength === 0) this.buf.fill(0xee);
        else this.buf = new Uint8Array(1000);
      }
    });
    inner.on('end', () => this.push(null));
    inner.on('error', (e) => this.destroy(e));
  }
  override _read(): void {}
  override _write(chunk: Buffer, _e: BufferEncoding, cb: (e?: Error | null) => void): void {
    this.inner.write(chunk, cb);
  }
  override _final(cb: (e?: Error | null) => void): void {
    this.inner.end(cb);
  }
  override _destroy(e: Error | null, cb: (e?: Error | null) => void): void {
    this.inner.destroy();
    cb(e);
  }
}

t.test('over a Duplex that reuses its read buffer, what is received is copied, not kept as a view', async (tt) => {
  const server = createServer({ psks: [psk] }, (s) => s.pipe(s));
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const inner = net.connect({ host: '127.0.0.1', port: server.address().port, allowHalfOpen: true });
  const c = connect({ socket: new ReusingDuplex(inner), psks: [psk] });
  const payload = new Uint8Array(200_000).map((_, i) => (i * 7) & 0xff);
  const chunks: Buffer[] = [];
  c.on('data', (b: Buffer) => chunks.push(b));
  const ended = once(c, 'end', { signal: AbortSignal.timeout(10_000) });
  c.end(payload);
  await ended;
  // Records straddle the 1000-byte pieces: a view of the reused buffer would fail their authentication.
  tt.equal(Buffer.compare(Buffer.concat(chunks), Buffer.from(payload)), 0, 'the echo of 200,000 bytes came back intact');
  c.destroy();
  await closeServer(server);
});

t.test("over a net.Socket, reads are handed over (Connection.receiveOwned: no copy of a read's pending tail)", async (tt) => {
  const server = createServer({ psks: [psk] }, (s) => s.pipe(s));
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const c = connect({ host: '127.0.0.1', port: server.address().port, psks: [psk] });
  await once(c, 'secureConnect', { signal: AbortSignal.timeout(10_000) });
  const conn = c.connection!;
  let owned = 0;
  let copied = 0;
  const receiveOwned = conn.receiveOwned.bind(conn);
  const receive = conn.receive.bind(conn);
  conn.receiveOwned = (d) => (owned++, receiveOwned(d));
  conn.receive = (d) => (copied++, receive(d));
  const chunks: Buffer[] = [];
  c.on('data', (b: Buffer) => chunks.push(b));
  const ended = once(c, 'end', { signal: AbortSignal.timeout(10_000) });
  c.end(new Uint8Array(100_000).fill(5));
  await ended;
  tt.equal(Buffer.concat(chunks).length, 100_000, 'the echo came back');
  tt.ok(owned > 0 && copied === 0, `every read handed over (${owned} owned, ${copied} copied)`);
  c.destroy();
  await closeServer(server);
});

t.test('a handshake that never completes fails with the named reason HandshakeTimeout and says so to the peer', async (tt) => {
  const server = createServer({ psks: [psk], handshakeTimeout: 100 });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const failed = once(server, 'tlsClientError', { signal: AbortSignal.timeout(10_000) });
  // A client that connects and says nothing.
  const silent = net.connect({ host: '127.0.0.1', port: server.address().port });
  silent.on('error', () => {});
  const [err] = (await failed) as [unknown];
  tt.ok(err instanceof TlsError, 'a TlsError');
  const e = err as TlsError;
  tt.equal(e.reason, 'HandshakeTimeout', 'reason HandshakeTimeout');
  tt.equal(e.alertSent, true, 'the internal_error alert was sent to the silent client');
  tt.equal(e.remote, false, 'detected here');
  tt.match(e.message, /timed out after 100 ms/, e.message);
  silent.destroy();
  await closeServer(server);
});

/** global.gc when the process has it (--expose-gc), else enabled at run time through V8's flags. */
function forceGc(): () => void {
  const existing = (globalThis as { gc?: () => void }).gc;
  if (existing) return existing;
  v8.setFlagsFromString('--expose-gc');
  return runInNewContext('gc') as () => void;
}

/** Stops the server; connections a failed test left open are destroyed so that the test ends at once. */
function closeServer(server: QkdTlsServer): Promise<void> {
  return new Promise<void>((resolve) => {
    server.close(() => resolve());
    server.destroyAll();
  });
}

t.test('a reader that has not taken everything yet still gets the tail and its end when the peer closes after our end', async (tt) => {
  // The client ends first; the server answers with less than a readable buffer's worth, then close_notify and
  // FIN. The TCP socket then closes while the client's application has not read: the answer must wait for it.
  const ANSWER = 1000;
  const server = createServer({ psks: [psk] }, (s) => {
    s.on('error', () => {});
    s.resume();
    s.on('end', () => s.end(Buffer.alloc(ANSWER, 7)));
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  tt.teardown(() => void server.close());
  const c = connect({ host: '127.0.0.1', port: server.address().port, psks: [psk] }, () => c.end('x'));
  c.pause();
  const errors: string[] = [];
  c.on('error', (e) => errors.push(e.message));
  await once(c.socket, 'close', { signal: AbortSignal.timeout(5000) });
  let got = 0;
  let ended = false;
  c.on('data', (d: Buffer) => (got += d.length));
  c.on('end', () => (ended = true));
  c.resume();
  await until(() => ended || c.destroyed, 5000, "the client's 'end' or its close");
  await until(() => c.destroyed, 5000, 'the client socket to close after its end');
  tt.same({ got, ended, errors }, { got: ANSWER, ended: true, errors: [] }, 'every byte, then the end');
});

t.test("connect()'s psks: the caller owns them; the connection copies them and never wipes them, nor uses keys that arrive after destroy", async (tt) => {
  // The documented contract (ConnectOptions.psks): the caller wipes its keys, also when they arrive late.
  const server = createServer({ psks: [psk] }, (s) => s.pipe(s));
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const port = server.address().port;
  const secret = () => psk.secret.slice();

  // Used: after the handshake and the close, the caller's buffer is as given.
  const used = { ...psk, secret: secret() };
  const c1 = connect({ host: '127.0.0.1', port, psks: async () => [used] }, () => c1.end('x'));
  c1.resume();
  await once(c1, 'close');
  tt.ok(c1.handshake, 'the handshake completed');
  tt.same(used.secret, psk.secret, 'the caller\'s key is intact: the connection used copies of its own');

  // Late: the socket is destroyed while the "key manager" is still answering.
  let answer!: (p: typeof psk[]) => void;
  const late = { ...psk, secret: secret() };
  const c2 = connect({ host: '127.0.0.1', port, psks: () => new Promise((r) => (answer = r)) });
  c2.destroy();
  await once(c2, 'close');
  answer([late]);
  await new Promise((r) => setImmediate(r));
  tt.equal(c2.connection, null, 'the late keys started no handshake');
  tt.same(late.secret, psk.secret, 'and are left to the caller (who owns them), not wiped');
  await closeServer(server);
});
