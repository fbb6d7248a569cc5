/**
 * QkdTlsSocket as code ported from node:tls calls it: setTimeout with its 'timeout' event (the socket is not closed by
 * it), setKeepAlive, setNoDelay, address() and the local/remote address getters, bytesRead/bytesWritten (plaintext,
 * as a TLSSocket counts), encrypted, getProtocol(), getCipher(), servername, and the server's 'keylog' event. Before,
 * only remoteAddress/remotePort were there: `socket.setTimeout(...)` was a TypeError, and the rest undefined.
 */
import { once } from 'node:events';
import * as http from 'node:http';
import * as net from 'node:net';
import { PassThrough } from 'node:stream';
import t from 'tap';
import { connect, createServer, type QkdTlsServer, type QkdTlsSocket } from '../lib/transport/node.js';
import { makePsk } from './helpers/pair.js';

const psk = makePsk('socket-api');

/** A listening echo server, and a connected client with the server's socket for it. */
type Test = Parameters<Parameters<typeof t.test>[0]>[0];

async function connectedPair(t: Test, options: { keyLog?: (line: string) => void; serverName?: string } = {}): Promise<{ server: QkdTlsServer; client: QkdTlsSocket; accepted: QkdTlsSocket }> {
  const server = createServer({ psks: [psk], keyLog: options.keyLog });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const accepted = once(server, 'secureConnection').then(([s]) => s as QkdTlsSocket);
  const client = connect({ port: server.address().port, psks: [psk], serverName: options.serverName });
  await once(client, 'secureConnect');
  const s = await accepted;
  t.teardown(() => {
    client.destroy();
    server.destroyAll();
    server.close();
  });
  return { server, client, accepted: s };
}

t.test("setTimeout: 'timeout' on the TLS socket after idle time, the socket stays open; 0 turns it off", async (t) => {
  const { client, accepted } = await connectedPair(t);
  accepted.pipe(accepted);
  let calls = 0;
  t.equal(accepted.setTimeout(30, () => calls++), accepted, 'returns the socket');
  await once(accepted, 'timeout');
  t.equal(calls, 1, 'the callback ran, once');
  t.equal(accepted.destroyed, false, 'the socket is not closed by the timeout');
  // Still served after its timeout.
  client.write('after the timeout');
  const [echo] = (await once(client, 'data')) as [Buffer];
  t.equal(echo.toString(), 'after the timeout');
  t.equal(accepted.timeout, 30, 'timeout is the idle time set (net.Socket.timeout)');
  accepted.setTimeout(0);
  t.equal(accepted.socket instanceof net.Socket && (accepted.socket as net.Socket).timeout, 0, 'setTimeout(0) turned the idle timer off');
  t.equal(accepted.timeout, 0, 'and timeout says 0');
  // The client side has it too.
  client.setTimeout(20);
  await once(client, 'timeout');
  t.equal(client.destroyed, false);
  client.setTimeout(0);
});

t.test('setTimeout over a Duplex that is not a net.Socket (a WebSocket stream): the same, on a timer of its own', async (t) => {
  const server = createServer({ psks: [psk] });
  const tls = server.accept(new PassThrough());
  t.teardown(() => void tls.destroy());
  tls.on('error', () => {});
  let calls = 0;
  t.equal(tls.timeout, undefined, 'no timeout before setTimeout, as net.Socket');
  tls.setTimeout(20, () => calls++);
  t.equal(tls.timeout, 20, 'timeout is the idle time set');
  // The idle timer does not keep the process alive (as net.Socket's): this test does, while it waits.
  const alive = setInterval(() => {}, 1000);
  await once(tls, 'timeout');
  clearInterval(alive);
  t.equal(calls, 1);
  t.equal(tls.destroyed, false, 'not closed');
  t.throws(() => tls.setTimeout(-1), RangeError, 'a negative time is a RangeError');
});

t.test('setKeepAlive, setNoDelay, address() and the address getters pass through to the TCP socket', async (t) => {
  const { client, accepted } = await connectedPair(t);
  t.equal(client.setKeepAlive(true, 1000), client);
  t.equal(client.setNoDelay(true), client);
  t.equal(accepted.setNoDelay(), accepted);
  const raw = client.socket as net.Socket;
  t.same(client.address(), raw.address(), 'address() is the TCP socket\'s');
  t.equal(client.localAddress, '127.0.0.1');
  t.equal(client.localPort, raw.localPort);
  t.equal(client.localFamily, 'IPv4');
  t.equal(client.remoteFamily, 'IPv4');
  t.equal(accepted.remotePort, client.localPort, "the server sees the client's port");
  t.equal(accepted.localPort, client.remotePort);
  const overDuplex = createServer({ psks: [psk] }).accept(new PassThrough());
  overDuplex.on('error', () => {});
  t.same(overDuplex.address(), {}, 'over another Duplex, address() is {}');
  t.equal(overDuplex.setNoDelay(true), overDuplex, 'and setNoDelay does nothing');
  overDuplex.destroy();
});

t.test('bytesWritten and bytesRead count plaintext, as node:tls; the TCP socket counts the records', async (t) => {
  const { client, accepted } = await connectedPair(t);
  accepted.pipe(accepted);
  client.write('hello');
  client.write(Buffer.alloc(1000, 0x61));
  let got = 0;
  for await (const chunk of client) {
    got += (chunk as Buffer).length;
    if (got === 1005) break;
  }
  t.equal(client.bytesWritten, 1005);
  t.equal(accepted.bytesRead, 1005);
  t.equal(accepted.bytesWritten, 1005, 'the echo');
  t.equal(client.bytesRead, 1005);
  t.ok((client.socket as net.Socket).bytesWritten > 1005, 'the TCP socket counts the ClientHello and the records');
});

t.test("a client's earlyData counts in its bytesWritten once the server took it: accepted, or rejected and resent", async (t) => {
  // It counted only what was written on the socket: 0-RTT data the server read (its bytesRead counts it) was missing.
  const early = Buffer.from('0-RTT request');
  const cases = [
    { name: 'accepted', server: { maxEarlyDataSize: 1024 }, client: {}, status: 'accepted', resent: undefined, counted: early.length },
    { name: 'rejected, not resent', server: {}, client: {}, status: 'rejected', resent: false, counted: 0 },
    { name: 'rejected and resent', server: {}, client: { resendRejectedEarlyData: true }, status: 'rejected', resent: true, counted: early.length },
  ] as const;
  for (const c of cases) {
    const server = createServer({ psks: [psk], ...c.server });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const accepted = once(server, 'secureConnection').then(([s]) => s as QkdTlsSocket);
    const client = connect({ port: server.address().port, psks: [psk], earlyData: early, ...c.client });
    await once(client, 'secureConnect');
    const s = await accepted;
    t.equal(client.handshake?.earlyData, c.status, `${c.name}: 0-RTT ${c.status}`);
    t.equal(client.handshake?.earlyDataResent, c.resent, `${c.name}: earlyDataResent ${String(c.resent)}`);
    t.equal(client.bytesWritten, c.counted, `${c.name}: bytesWritten ${c.counted}`);
    client.write('after');
    let got = '';
    for await (const chunk of s) {
      got += (chunk as Buffer).toString();
      if (got.endsWith('after')) break;
    }
    t.equal(got, (c.counted > 0 ? early.toString() : '') + 'after', `${c.name}: what the server read`);
    t.equal(s.bytesRead, client.bytesWritten + 0, `${c.name}: the server read what the client counts as written`);
    client.destroy();
    server.destroyAll();
    server.close();
  }
});

t.test('setTimeout takes what net.Socket.setTimeout takes: a time past 2^31 - 1 ms (truncated), a fraction; not Infinity or a string', async (t) => {
  // A time past 2^31 - 1 ms was a RangeError (net.Socket takes it and truncates it, with a TimeoutOverflowWarning).
  const { client } = await connectedPair(t);
  t.equal(client.setTimeout(1.5), client, 'a fraction over a TCP socket');
  t.equal(client.timeout, 1.5);
  await once(client, 'timeout');
  client.setTimeout(0);
  const server = createServer({ psks: [psk] });
  const tls = server.accept(new PassThrough());
  t.teardown(() => void tls.destroy());
  tls.on('error', () => {});
  let fired = 0;
  tls.on('timeout', () => fired++);
  tls.setTimeout(2 ** 32);
  t.equal(tls.timeout, 2 ** 32, 'past 2^31 - 1 over another Duplex: taken, as net.Socket reports it');
  // Unclamped, Node's setTimeout would have run it after 1 ms.
  await new Promise((r) => setTimeout(r, 50));
  t.equal(fired, 0, 'not fired after 1 ms');
  tls.setTimeout(2.5);
  const alive = setInterval(() => {}, 1000);
  await once(tls, 'timeout');
  clearInterval(alive);
  t.equal(fired, 1, 'a fraction over another Duplex fires');
  tls.setTimeout(0);
  t.throws(() => tls.setTimeout(Infinity), RangeError, 'Infinity is a RangeError, as in net.Socket');
  t.throws(() => tls.setTimeout('5' as unknown as number), TypeError, 'a string is a TypeError, as in net.Socket');
  t.doesNotThrow(() => connect({ port: 9, psks: [psk], timeout: 2.5 }).on('error', () => {}).destroy(), 'connect takes a fractional timeout too');
});

t.test('encrypted, getProtocol(), getCipher(), servername; the server emits keylog (line, socket) with the keyLog option', async (t) => {
  const server = createServer({ psks: [psk] });
  const idle = server.accept(new PassThrough());
  idle.on('error', () => {});
  t.equal(idle.getProtocol(), 'unknown', 'handshaking: unknown, as node:tls');
  t.equal(idle.getCipher(), null);
  idle.destroy();
  t.equal(idle.getProtocol(), null, 'destroyed before the handshake: null');

  const keylog: [Buffer, QkdTlsSocket][] = [];
  const { client, accepted } = await connectedPair(t, { serverName: 'kme.example' });
  t.equal(client.encrypted, true);
  t.equal(client.getProtocol(), 'TLSv1.3');
  t.equal(accepted.getProtocol(), 'TLSv1.3');
  t.same(client.getCipher(), { name: client.handshake!.suite, standardName: client.handshake!.suite, version: 'TLSv1.3' });
  t.equal(accepted.servername, 'kme.example', 'the server sees the SNI the client sent');
  // node:tls answers null once the socket is destroyed, the handshake done or not (as getProtocol's doc says here too).
  accepted.destroy();
  t.equal(accepted.getProtocol(), null, 'destroyed after the handshake: null, as node:tls');
  t.equal(accepted.getCipher(), null, 'getCipher too');

  // keylog on the server: a new connection to a server with keyLog and a 'keylog' listener.
  const withLog = createServer({ psks: [psk], keyLog: () => {} });
  withLog.on('keylog', (line: Buffer, socket: QkdTlsSocket) => keylog.push([line, socket]));
  withLog.listen(0, '127.0.0.1');
  await once(withLog, 'listening');
  const secured = once(withLog, 'secureConnection');
  const c2 = connect({ port: withLog.address().port, psks: [psk] });
  await once(c2, 'secureConnect');
  const [s3] = (await secured) as [QkdTlsSocket];
  t.ok(keylog.length >= 4, `the server emitted its key-log lines (${keylog.length})`);
  t.ok(keylog.every(([line, socket]) => Buffer.isBuffer(line) && line.toString().endsWith('\n') && socket === s3), 'each a Buffer line, with its socket');
  c2.destroy();
  withLog.destroyAll();
  withLog.close();
});

t.test("'close' carries hadError, as a TLSSocket's: false after a clean close, true after a failure", async (t) => {
  const { client, accepted } = await connectedPair(t);
  accepted.pipe(accepted);
  const clean = once(client, 'close');
  client.end('bye');
  client.resume();
  t.same(await clean, [false], 'a clean close: hadError false');
  // A handshake that fails (the server closes at once).
  const raw = net.createServer((s) => s.destroy()).listen(0, '127.0.0.1');
  await once(raw, 'listening');
  t.teardown(() => void raw.close());
  const failing = connect({ port: (raw.address() as net.AddressInfo).port, psks: [psk] });
  failing.on('error', () => {});
  t.same(await new Promise((r) => failing.once('close', (...args: unknown[]) => r(args))), [true], 'a failure: hadError true');
});

t.test("connect({ timeout }) sets the idle timeout before connecting, as net.connect and tls.connect do (it was silently ignored)", async (t) => {
  const server = createServer({ psks: [psk] }, (s) => s.pipe(s));
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.teardown(() => {
    server.destroyAll();
    server.close();
  });
  const client = connect({ port: server.address().port, psks: [psk], timeout: 30 });
  t.teardown(() => void client.destroy());
  await once(client, 'secureConnect');
  await once(client, 'timeout');
  t.equal(client.destroyed, false, 'the timeout closes nothing');
  t.throws(() => connect({ port: server.address().port, psks: [psk], timeout: -1 }), RangeError, 'a negative timeout is a RangeError');
});

t.test("node:tls's servername and ALPNProtocols are a TypeError naming qkd-tls's serverName and alpn (they were ignored: no SNI sent)", async (t) => {
  const asNodeTls = (o: object): never => o as never;
  t.throws(() => connect(asNodeTls({ port: 9, psks: [psk], servername: 'kme.example' })), { name: 'TypeError', message: "connect: node:tls's servername option is serverName in qkd-tls" });
  t.throws(() => connect(asNodeTls({ port: 9, psks: [psk], ALPNProtocols: ['h2'] })), { name: 'TypeError', message: "connect: node:tls's ALPNProtocols option is alpn in qkd-tls" });
  t.throws(() => createServer(asNodeTls({ psks: [psk], ALPNProtocols: ['h2'] })), { name: 'TypeError', message: "createServer: node:tls's ALPNProtocols option is alpn in qkd-tls" });
});

t.test('an http.Agent with keepAlive over qkd-tls connect reuses the connection (it calls socket.unref and socket.ref)', async (t) => {
  // http.Agent's keepSocketAlive calls socket.unref() on each socket it keeps and reuseSocket socket.ref(), as on a
  // TLSSocket: without them the first answer threw "socket.unref is not a function" out of the agent.
  const web = http.createServer((_req, res) => res.end('hello'));
  const server = createServer({ psks: [psk] }, (s) => web.emit('connection', s));
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const port = server.address().port;
  let opened = 0;
  class QkdAgent extends http.Agent {
    override createConnection(): QkdTlsSocket {
      opened++;
      return connect({ port, psks: [psk] });
    }
  }
  const agent = new QkdAgent({ keepAlive: true });
  t.teardown(() => {
    agent.destroy();
    server.destroyAll();
    server.close();
    web.close();
  });
  const get = (): Promise<{ body: string; reused: boolean }> =>
    new Promise((resolve, reject) => {
      const req = http.get({ host: '127.0.0.1', port, agent, path: '/' }, (res) => {
        let body = '';
        res.on('data', (d: Buffer) => (body += d.toString()));
        res.on('end', () => resolve({ body, reused: req.reusedSocket }));
      });
      req.on('error', reject);
    });
  t.same(await get(), { body: 'hello', reused: false }, 'the first request opens a connection');
  // The agent frees the socket on the next tick after the answer ends.
  await new Promise((r) => setImmediate(r));
  t.same(await get(), { body: 'hello', reused: true }, 'the second reuses it');
  t.equal(opened, 1, 'one TLS connection for both');
});

t.test('an http.Server over a QkdTlsServer closes an idle keep-alive connection after keepAliveTimeout (it calls socket.setTimeout)', async (t) => {
  // node:http sets the socket's idle timeout for keepAliveTimeout and headersTimeout only when the socket has a
  // setTimeout: without it, idle keep-alive connections stayed open for ever.
  const web = http.createServer((_req, res) => res.end('hello'));
  web.keepAliveTimeout = 50;
  const server = createServer({ psks: [psk] }, (s) => web.emit('connection', s));
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.teardown(() => {
    server.destroyAll();
    server.close();
    web.close();
  });
  const client = connect({ port: server.address().port, psks: [psk] });
  await once(client, 'secureConnect');
  client.write('GET / HTTP/1.1\r\nHost: qkd\r\nConnection: keep-alive\r\n\r\n');
  let answer = '';
  client.on('data', (d: Buffer) => (answer += d.toString()));
  await once(client, 'end'); // the server ends the idle connection
  t.match(answer, /^HTTP\/1\.1 200 OK\r\n[^]*keep-alive[^]*\r\n\r\nhello$/, 'answered, kept alive, then closed when idle');
});
