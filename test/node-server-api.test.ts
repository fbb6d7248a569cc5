/**
 * QkdTlsServer as a node:tls user drives it: close(callback) stops accepting and calls back once every connection has
 * ended (net.Server.close), getConnections, listening, maxConnections, ref/unref. close() handed its callback to the
 * net.Server, which waits for its TCP sockets only: a TLS connection still open (its last data not yet read, or taken
 * with accept()) was left out, and the callback came while `connections` still counted it.
 */
import { once } from 'node:events';
import * as net from 'node:net';
import t from 'tap';
import { connect, createServer, type QkdTlsSocket } from '../lib/transport/node.js';
import { makePsk } from './helpers/pair.js';

const psk = makePsk('server-api');

t.test('close(callback) waits for a TLS connection that outlives its TCP socket (data not yet read)', async (t) => {
  let accepted!: QkdTlsSocket;
  const server = createServer({ psks: [psk] }, (s) => {
    accepted = s;
    s.end('bye'); // the server ends its side and never reads (yet)
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.equal(server.listening, true);
  const client = connect({ port: server.address().port, psks: [psk] }, () => client.end('unread data'));
  client.resume();
  await once(client, 'close');
  // The server's TCP socket has closed (both sides ended); its TLS socket keeps the data the application has not read.
  if (!accepted.socket.destroyed) await once(accepted.socket, 'close');
  t.equal(accepted.destroyed, false, 'the TLS socket is still open, holding unread data');
  t.equal(server.connections, 1);
  const events: string[] = [];
  server.on('close', () => events.push('close event'));
  const closed = new Promise<{ err: Error | undefined; tlsOpen: boolean; connections: number }>((resolve) =>
    server.close((err) => resolve({ err, tlsOpen: !accepted.closed, connections: server.connections })),
  );
  t.equal(server.listening, false, 'close() stops accepting at once');
  // Read the held data (after close's own turn of the event loop): the socket ends, then closes.
  setImmediate(() => accepted.resume());
  const r = await closed;
  t.equal(r.err, undefined);
  t.equal(r.tlsOpen, false, 'the callback came once the TLS connection had closed');
  t.equal(r.connections, 0, 'and no connection is counted any more');
  t.same(events, ['close event'], "the 'close' event came as well, first");
});

t.test('close(callback) waits for the connections handed to accept(); getConnections counts them', async (t) => {
  const server = createServer({ psks: [psk] }, (s) => s.pipe(s));
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  // Another listener (as the WebSocket listener does) hands its sockets to this server's accept().
  let accepted!: QkdTlsSocket;
  const side = net.createServer({ allowHalfOpen: true }, (raw) => void (accepted = server.accept(raw))).listen(0, '127.0.0.1');
  await once(side, 'listening');
  t.teardown(() => void side.close());
  const client = connect({ port: (side.address() as net.AddressInfo).port, psks: [psk] });
  await once(client, 'secureConnect');
  const count = await new Promise<number>((resolve, reject) => server.getConnections((e, n) => (e ? reject(e) : resolve(n))));
  t.equal(count, 1, 'getConnections counts the accepted connection');
  const closed = new Promise<boolean>((resolve) => server.close(() => resolve(accepted.closed)));
  // The connection goes on after close(): an echo still works, then the client ends it.
  client.write('still served');
  const [echo] = (await once(client, 'data')) as [Buffer];
  t.equal(echo.toString(), 'still served');
  client.end();
  client.resume();
  t.equal(await closed, true, 'the callback came only after the accepted connection had closed');
});

t.test('a server that never listened: close(callback) gets ERR_SERVER_NOT_RUNNING, as net.Server; maxConnections and ref/unref pass through', async (t) => {
  const server = createServer({ psks: [psk] });
  t.equal(server.listening, false);
  const err = await new Promise<Error | undefined>((resolve) => server.close(resolve));
  t.match(err, { code: 'ERR_SERVER_NOT_RUNNING' });
  server.maxConnections = 3;
  t.equal(server.server.maxConnections, 3);
  t.equal(server.maxConnections, 3);
  t.equal(server.unref(), server);
  t.equal(server.ref(), server);
});

t.test("'connection' carries each TCP socket before its handshake, as tls.Server's (a net.Server's) does", async (t) => {
  const server = createServer({ psks: [psk] }, (s) => s.pipe(s));
  const raws: net.Socket[] = [];
  server.on('connection', (raw: net.Socket) => raws.push(raw));
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const client = connect({ port: server.address().port, psks: [psk] });
  await once(client, 'secureConnect');
  t.equal(raws.length, 1);
  t.ok(raws[0] instanceof net.Socket);
  t.equal(raws[0]!.remotePort, client.localPort, "the client's TCP connection");
  client.end();
  client.resume();
  await new Promise((r) => server.close(r));
});
