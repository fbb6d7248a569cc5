/**
 * The WebSocket transport against broken or hostile peers (found by review): limits that must not be switched
 * off by a value that reads as small.
 */
import t from 'tap';
import { WebSocket as WsClient } from 'ws';
import { listenWebSocket } from '../lib/transport/ws-server.js';
import { withTimeout } from './helpers/peers.js';
import { WAIT } from './helpers/runtimes.js';

const SUBTEST = { timeout: 60_000 };

t.test('the listener refuses limits that `ws` or net.Server would take as "no limit" (0, negative, NaN, fractions)', SUBTEST, async (t) => {
  // ws's maxPayload 0 (or below, or NaN) means unlimited, as net.Server's maxConnections 0 does: listening with one
  // of them accepted messages of any size.
  for (const maxMessageBytes of [0, -1, Number.NaN, 1.5, Number.POSITIVE_INFINITY]) {
    await t.rejects(listenWebSocket({ host: '127.0.0.1', port: 0, maxMessageBytes }, () => {}), { name: 'TypeError', message: /maxMessageBytes must be a positive integer/ }, `maxMessageBytes ${maxMessageBytes}: refused`);
  }
  for (const maxConnections of [0, -5, Number.NaN]) {
    await t.rejects(listenWebSocket({ host: '127.0.0.1', port: 0, maxConnections }, () => {}), { name: 'TypeError', message: /maxConnections must be a positive integer/ }, `maxConnections ${maxConnections}: refused`);
  }
  const l = await listenWebSocket({ host: '127.0.0.1', port: 0, maxMessageBytes: 1024, maxConnections: 1 }, ({ stream }) => stream.resume());
  t.teardown(() => l.close());
  const ws = new WsClient(`ws://127.0.0.1:${l.address().port}/`);
  ws.on('error', () => {});
  const code = withTimeout(new Promise<number>((r) => ws.once('close', (c: number) => r(c))), WAIT, 'the close');
  ws.once('open', () => ws.send(Buffer.alloc(1025)));
  t.equal(await code, 1009, 'the smallest valid bounds are applied (1025 bytes closes with 1009)');
});
