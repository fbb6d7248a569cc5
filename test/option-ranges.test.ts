/**
 * The transports' number options as their docs state them: a time in milliseconds from 0 (or 1) to 2^31 - 1,
 * setTimeout's longest delay, and a count from its least value; anything else is a RangeError naming the option
 * before anything starts. Unchecked, these were taken silently and did something else:
 *
 *  - a timer of Infinity or above 2^31 - 1 ms fires after 1 ms (Node's TimeoutOverflowWarning): a handshakeTimeout
 *    of Infinity, meant as "no limit", failed every handshake at once; NaN or a negative number turned it off;
 *  - the `ws` package takes a maxPayload of 0, NaN or 2^32 as no limit, and net.Server a maxConnections of 0
 *    or NaN: listenWebSocket's message and connection limits were off;
 *  - a proxy client service built its TLS socket only once a connection came, so a bad value failed there.
 *
 * No connection is made here, every check happening before one would be; except the last test's, which checks that an
 * option refused after the WebSocket opened closes it.
 */
import * as net from 'node:net';
import { Duplex } from 'node:stream';
import t from 'tap';
import { nobleProvider } from '../lib/crypto/noble.js';
import { startProxy, type ServiceConfig } from '../lib/proxy/proxy.js';
import { startWebSocketBridge } from '../lib/proxy/ws-bridge.js';
import { Etsi014Client } from '../lib/qkd/etsi014-client.js';
import { releaseAfter } from '../lib/qkd/etsi014-source.js';
import { parseTopology, startQkdNetworkServer } from '../lib/tools/network/node.js';
import { connect, createServer } from '../lib/transport/node.js';
import { tlsClientOverStreams, tlsServerOverStreams } from '../lib/transport/streams.js';
import { connectWebSocket, tlsClientOverWebSocket } from '../lib/transport/websocket.js';
import { listenWebSocket } from '../lib/transport/ws-server.js';
import { makePsk } from './helpers/pair.js';
import { timersArmedBy } from './helpers/timers.js';
import { serviceConfig } from './proxy-helpers.js';

const psk = makePsk('option-ranges');
const BAD_TIMES = [Infinity, 2 ** 31, NaN, -1];
const LOCAL = '127.0.0.1';

/** A Duplex that takes what is written and never answers. */
function silentDuplex(): Duplex {
  return new Duplex({ read() {}, write: (_c, _e, cb) => cb() });
}

/** A stream pair that never answers. */
function silentStreams(): { readable: ReadableStream<Uint8Array>; writable: WritableStream<Uint8Array> } {
  return { readable: new ReadableStream<Uint8Array>(), writable: new WritableStream<Uint8Array>() };
}

t.test('qkd-tls/node: handshakeTimeout out of 0..2^31-1 is a RangeError from connect and createServer', async (t) => {
  for (const bad of BAD_TIMES) {
    t.throws(() => connect({ socket: silentDuplex(), psks: [psk], handshakeTimeout: bad }), RangeError, `connect, ${bad}`);
    t.throws(() => createServer({ psks: [psk], handshakeTimeout: bad }), RangeError, `createServer, ${bad}`);
  }
  for (const ok of [0, 1, 2 ** 31 - 1]) {
    const socket = connect({ socket: silentDuplex(), psks: [psk], handshakeTimeout: ok });
    socket.on('error', () => {});
    socket.destroy();
    t.doesNotThrow(() => createServer({ psks: [psk], handshakeTimeout: ok }), `${ok} is taken`);
  }
});

t.test('qkd-tls/streams: handshakeTimeout and recordsInFlight out of range are RangeErrors', async (t) => {
  for (const bad of BAD_TIMES) {
    t.throws(() => tlsClientOverStreams(silentStreams(), { crypto: nobleProvider, psks: [psk], handshakeTimeout: bad }), RangeError, `client, ${bad}`);
    t.throws(() => tlsServerOverStreams(silentStreams(), { crypto: nobleProvider, psks: [psk], handshakeTimeout: bad }), RangeError, `server, ${bad}`);
  }
  for (const bad of [0, NaN, 1.5]) {
    t.throws(() => tlsClientOverStreams(silentStreams(), { crypto: nobleProvider, psks: [psk], recordsInFlight: bad }), RangeError, `recordsInFlight ${bad}`);
  }
  const tls = tlsClientOverStreams(silentStreams(), { crypto: nobleProvider, psks: [psk], handshakeTimeout: 0, recordsInFlight: 1 });
  tls.connection.destroy();
});

t.test('qkd-tls/websocket: openTimeoutMs and maxBufferedBytes out of range are RangeErrors before any connection', async (t) => {
  for (const bad of [0, ...BAD_TIMES]) {
    await t.rejects(connectWebSocket(`ws://${LOCAL}:9/`, { openTimeoutMs: bad }), RangeError, `openTimeoutMs ${bad}`);
  }
  for (const bad of [-1, NaN]) {
    await t.rejects(connectWebSocket(`ws://${LOCAL}:9/`, { maxBufferedBytes: bad }), RangeError, `maxBufferedBytes ${bad}`);
  }
  // tlsClientOverWebSocket takes the streams transport's options too (as the README says of webCryptoKeyShares).
  for (const bad of BAD_TIMES) {
    await t.rejects(tlsClientOverWebSocket(`ws://${LOCAL}:9/`, { crypto: nobleProvider, psks: [psk], handshakeTimeout: bad, webCryptoKeyShares: false }), RangeError, `handshakeTimeout ${bad}`);
  }
});

t.test('listenWebSocket and the bridge: a limit that the ws package or net.Server would take as none is a RangeError', async (t) => {
  for (const bad of [0, -1, NaN, 2 ** 32, 1.5, Infinity]) {
    await t.rejects(listenWebSocket({ host: LOCAL, port: 0, maxMessageBytes: bad }, () => {}), RangeError, `maxMessageBytes ${bad}`);
  }
  for (const bad of [0, NaN, -1]) {
    await t.rejects(listenWebSocket({ host: LOCAL, port: 0, maxConnections: bad }, () => {}), RangeError, `maxConnections ${bad}`);
  }
  for (const bad of [0, ...BAD_TIMES]) {
    await t.rejects(startWebSocketBridge({ host: LOCAL, port: 0, allow: [{ host: LOCAL, port: 9 }], connectTimeoutMs: bad }), RangeError, `bridge connectTimeoutMs ${bad}`);
  }
  for (const bad of BAD_TIMES) {
    await t.rejects(startWebSocketBridge({ host: LOCAL, port: 0, allow: [{ host: LOCAL, port: 9 }], idleTimeoutMs: bad }), RangeError, `bridge idleTimeoutMs ${bad}`);
  }
  const ok = await listenWebSocket({ host: LOCAL, port: 0, maxMessageBytes: 2 ** 31 - 1, maxConnections: 1 }, () => {});
  await ok.close();
});

t.test('startProxy: each service number out of range is a RangeError, for a client service too', async (t) => {
  const service = (more: Partial<ServiceConfig>): ServiceConfig => serviceConfig(more, [psk]);
  const bad: [string, Partial<ServiceConfig>][] = [
    ['tls.handshakeTimeout Infinity', { tls: { handshakeTimeout: Infinity } }],
    ['tls.handshakeTimeout -1', { tls: { handshakeTimeout: -1 } }],
    ['idleTimeoutMs Infinity', { idleTimeoutMs: Infinity }],
    ['idleTimeoutMs NaN', { idleTimeoutMs: NaN }],
    ['connectTimeoutMs 0', { connectTimeoutMs: 0 }],
    ['connectTimeoutMs 2^31', { connectTimeoutMs: 2 ** 31 }],
    ['maxConnections NaN', { maxConnections: NaN }],
    ['maxConnections 0', { maxConnections: 0 }],
  ];
  for (const [what, more] of bad) {
    await t.rejects(startProxy({ services: [service(more)] }), RangeError, what);
    await t.rejects(startProxy({ services: [service({ ...more, role: 'server' })] }), RangeError, `${what}, server role`);
  }
});

t.test('Etsi014Client: a timeoutMs above 2^31 - 1 is a RangeError (its deadline would fire after 1 ms)', async (t) => {
  for (const bad of [2 ** 31, Infinity, 0, NaN]) {
    t.throws(() => new Etsi014Client({ baseUrl: `http://${LOCAL}:9`, timeoutMs: bad }), RangeError, `timeoutMs ${bad}`);
  }
  new Etsi014Client({ baseUrl: `http://${LOCAL}:9`, timeoutMs: 2 ** 31 - 1 }).close();
});

t.test('releaseAfter: ms out of 0..2^31-1 is a RangeError (Infinity or NaN wiped each lease after 1 ms)', async (t) => {
  for (const bad of BAD_TIMES) t.throws(() => releaseAfter(bad), RangeError, `ms ${bad}`);
  releaseAfter(0).releaseAll();
});

t.test('connect without a port or a socket is a TypeError, as net.connect (port 0 was tried and refused later)', async (t) => {
  t.throws(() => connect({ psks: [psk] }), TypeError);
  t.throws(() => connect({ host: LOCAL, psks: [psk] }), TypeError);
});

t.test('startQkdNetworkServer: a maxBodyBytes of NaN or below 0 is a RangeError (NaN lifted the limit)', async (t) => {
  const topology = parseTopology({ nodes: [{ name: 'A', saes: ['a'] }, { name: 'B', saes: ['b'] }], links: [{ a: 'A', b: 'B', km: 10 }] });
  for (const bad of [NaN, -1]) {
    await t.rejects(startQkdNetworkServer({ topology, insecureHttp: true, maxBodyBytes: bad }), RangeError, `maxBodyBytes ${bad}`);
  }
});

t.test('Proxy.drain: NaN is a RangeError; a deadline past 2^31 - 1 ms is none (its timer would cut after 1 ms)', async (t) => {
  let failKeys!: (e: Error) => void;
  const proxy = await startProxy({
    services: [
      {
        name: 'held',
        role: 'client',
        accept: { host: LOCAL, port: 0 },
        connect: { host: LOCAL, port: 9 },
        // The connection waits for its keys until the end of the test: it stays open.
        keys: { clientPsks: () => new Promise((_, reject) => (failKeys = reject)), server: [psk], description: 'held' },
      },
    ],
  });
  const client = net.connect(proxy.services[0].address.port, LOCAL);
  client.on('error', () => {});
  await new Promise<void>((resolve) => client.once('connect', () => resolve()));
  for (let i = 0; i < 1000 && proxy.stats().active === 0; i++) await new Promise((r) => setImmediate(r));
  t.equal(proxy.stats().active, 1, 'one connection open');

  await t.rejects(proxy.drain(NaN), RangeError, 'NaN');
  let drained!: Promise<void>;
  const delays = timersArmedBy(() => (drained = proxy.drain(2 ** 31)));
  t.same(
    delays.filter((d) => d > 2 ** 31 - 1),
    [],
    'no timer beyond 2^31 - 1 ms was set',
  );
  t.equal(proxy.stats().active, 1, 'the connection is still open');
  failKeys(new Error('end of test'));
  await proxy.close();
  await drained;
  client.destroy();
});

t.test('tlsClientOverWebSocket: options the connection refuses once the WebSocket is open close that WebSocket', async (t) => {
  // A bad serverName is the connection's own check (a TypeError), made after the WebSocket opened: it was thrown
  // with the WebSocket left open, which held the server's connection until the server timed it out.
  const { WebSocket: WsClient } = await import('ws');
  const g = globalThis as { WebSocket?: unknown };
  const saved = g.WebSocket;
  g.WebSocket = WsClient;
  t.teardown(() => void (g.WebSocket = saved));
  let serverSide: Promise<number> | undefined;
  const listener = await listenWebSocket({ host: LOCAL, port: 0 }, ({ stream }) => {
    serverSide = new Promise((resolve) => stream.once('end', () => resolve(1)).once('close', () => resolve(1)));
    stream.resume();
  });
  t.teardown(() => listener.close());
  const url = `ws://${LOCAL}:${listener.address().port}/`;
  await t.rejects(tlsClientOverWebSocket(url, { crypto: nobleProvider, psks: [psk], serverName: 'bad name' }, { preferWebSocketStream: false }), TypeError);
  t.ok(serverSide, 'the WebSocket was opened');
  t.equal(await serverSide, 1, 'and closed: the server sees it end');
});
