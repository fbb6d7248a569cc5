/**
 * The Node transport against broken and hostile peers over real TCP (127.0.0.1, port 0), found by review:
 * every failure is one 'error' with a named reason and the alert RFC 8446 §6 asks for, whatever the client was
 * doing when the peer's bytes arrived.
 */
import t from 'tap';
import { once } from 'node:events';
import * as net from 'node:net';
import { connect, createServer, TlsError, type QkdTlsSocket } from '../lib/transport/node.js';
import { makePsk, plaintextAlerts, splitRecords, wiped } from './helpers/pair.js';

const psk = makePsk('transport-hostile');

/** Resolves once `cond` holds, polling every 10 ms, failing after `ms`. */
async function until(cond: () => boolean, ms: number, what: string): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

t.test('a server that speaks first (an SSH banner) while the client still fetches its PSKs: unexpected_message at once, not a timeout', async (tt) => {
  // RFC 8446 §5: a record of an unknown content type is unexpected_message. With static PSKs the client reads the
  // banner and says so; with a psks function (a QKD key manager's answer) the banner arrived before the
  // connection existed and was dropped, and the client waited for the handshake timeout instead.
  const BANNER = 'SSH-2.0-OpenSSH_9.6\r\n';
  const received: Buffer[] = [];
  let clientDone!: () => void;
  const clientClosed = new Promise<void>((r) => (clientDone = r));
  const banner = net.createServer((s) => {
    s.on('error', () => {});
    s.on('data', (d: Buffer) => received.push(d));
    s.on('end', () => clientDone()); // everything the client sent is in
    s.write(BANNER);
  });
  banner.listen(0, '127.0.0.1');
  await once(banner, 'listening');
  tt.teardown(() => void banner.close());
  let fetched!: (psks: (typeof psk)[]) => void;
  const c = connect({ host: '127.0.0.1', port: (banner.address() as net.AddressInfo).port, psks: () => new Promise((r) => (fetched = r)), handshakeTimeout: 10_000 });
  tt.teardown(() => c.destroy());
  const errors: unknown[] = [];
  c.on('error', (e) => errors.push(e));
  const closed = new Promise((r) => c.once('close', r));
  // The key manager answers once the banner is in the client's socket.
  await until(() => c.socket instanceof net.Socket && c.socket.bytesRead >= BANNER.length, 5000, 'the banner to reach the client');
  fetched([psk]);
  await closed;
  tt.equal(errors.length, 1, "one 'error'");
  const e = errors[0] as TlsError;
  tt.ok(e instanceof TlsError, 'a TlsError');
  tt.same({ reason: e.reason, alert: e.alert, alertSent: e.alertSent }, { reason: 'RecordUnknownContentType', alert: 'unexpected_message', alertSent: true }, e.message);
  await clientClosed;
  tt.same(plaintextAlerts(splitRecords(Buffer.concat(received))), [{ level: 2, code: 10 }], 'the server got the ClientHello, then a fatal unexpected_message alert');
});

t.test('a destroyed socket whose reading was paused (the application did not read) still closes on the peer\'s FIN', async (tt) => {
  // The server sends more than the client's application takes (it reads nothing), so the transport stopped
  // reading the TCP socket; then the application destroys its socket. The peer answers our FIN with its own at
  // once, but a socket left paused never reads it (nor the data queued before it), and stayed open for the whole
  // close grace period (2 s), to be destroyed without its 'end'.
  const GREETING = Buffer.alloc(256 * 1024, 0x2a);
  const server = createServer({ psks: [psk] }, (s) => {
    s.on('error', () => {});
    s.on('end', () => s.destroy());
    s.write(GREETING);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  tt.teardown(() => {
    server.close();
    server.destroyAll();
  });
  const c = connect({ host: '127.0.0.1', port: server.address().port, psks: [psk] });
  c.on('error', () => {});
  c.pause();
  await until(() => c.readableLength >= c.readableHighWaterMark && (c.socket as net.Socket).isPaused(), 5000, 'the client to stop reading');
  let peerEnded = false;
  c.socket.once('end', () => (peerEnded = true));
  const closed = new Promise((r) => c.socket.once('close', r));
  c.destroy();
  await closed;
  tt.ok(peerEnded, "the TCP socket closed on the peer's FIN ('end' before 'close'), not on the grace timer");
});

t.test('a server that answers and ends without reading: once the TCP socket closes, the keys of a connection holding unread data are wiped', async (tt) => {
  // Both directions are closed (close_notify each way, the TCP socket closed), but the client's data was never
  // read: the TLS socket keeps it for a reader (as a net.Socket would), and stays open until then. Its
  // connection has nothing left to decrypt or send, yet its keys were kept, unwiped, for as long as nobody read
  // (for ever, for a server that never reads), after the server itself had closed.
  let serverSide: QkdTlsSocket | undefined;
  let tcpClosed!: Promise<unknown>;
  const server = createServer({ psks: [psk] }, (s) => {
    serverSide = s;
    tcpClosed = new Promise((r) => s.socket.once('close', r));
    s.on('error', () => {});
    s.end('greeting');
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  tt.teardown(() => server.destroyAll());
  const c = connect({ host: '127.0.0.1', port: server.address().port, psks: [psk] }, () => c.end('unread'));
  c.on('error', () => {});
  c.resume();
  await new Promise((r) => c.once('close', r));
  // (Not waited for: close's callback waits for every connection, this one too, which waits for a reader.)
  const serverClosed = new Promise<void>((r) => server.close(() => r()));
  await tcpClosed;
  const s = serverSide!;
  tt.ok(s.socket.destroyed, 'the TCP socket is closed');
  tt.equal(s.readableLength, 'unread'.length, 'the unread data is still there for a reader');
  tt.ok(wiped(s.connection!), "the connection's keys are wiped");
  const got: Buffer[] = [];
  s.on('data', (d: Buffer) => got.push(d));
  await new Promise((r) => s.once('close', r));
  tt.equal(Buffer.concat(got).toString(), 'unread', 'a late reader still gets it, then the end');
  await serverClosed; // and the server's close completes once that connection has closed
});
