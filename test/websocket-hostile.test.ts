/**
 * The WebSocket transport against broken or hostile peers (found by review): limits that must not be switched
 * off by a value that reads as small, a flood of tiny messages, a peer's last messages kept when it closes with an
 * error code, and a text message refused through the WHATWG WebSocket (which reserves 1003 to the browser).
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import type * as net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { WebSocketServer, WebSocket as WsClient } from 'ws';
import { webSocketByteStreams } from '../lib/transport/websocket.js';
import { listenWebSocket } from '../lib/transport/ws-server.js';
import { spawnPeer, testPeer, withTimeout } from './helpers/peers.js';
import { WAIT } from './helpers/runtimes.js';

const SUBTEST = { timeout: 60_000 };
const node24 = testPeer(t, 'node');

t.test('the smallest bounds the listener takes are applied (option-ranges checks those it refuses)', SUBTEST, async (t) => {
  const l = await listenWebSocket({ host: '127.0.0.1', port: 0, maxMessageBytes: 1024, maxConnections: 1 }, ({ stream }) => stream.resume());
  t.teardown(() => l.close());
  const ws = new WsClient(`ws://127.0.0.1:${l.address().port}/`);
  ws.on('error', () => {});
  const code = withTimeout(new Promise<number>((r) => ws.once('close', (c: number) => r(c))), WAIT, 'the close');
  ws.once('open', () => ws.send(Buffer.alloc(1025)));
  t.equal(await code, 1009, 'the smallest valid bounds are applied (1025 bytes closes with 1009)');
});

t.test('the client: a peer closing with an error code after its last messages: they are read first, then the error', SUBTEST, async (t) => {
  // Regression: the close handler called controller.error() at once, which discards the messages received and
  // not read yet (a server's last records, its TLS alert): the reader got only "WebSocket closed (code 1011)".
  const server = new WebSocketServer({ host: '127.0.0.1', port: 0 });
  await new Promise<void>((r) => server.once('listening', () => r()));
  t.teardown(() => new Promise<void>((r) => server.close(() => r())));
  let last: 'close' | 'text' = 'close';
  server.on('connection', (peer) => {
    peer.send(Buffer.from([1, 2, 3]));
    peer.send(Buffer.from([4, 5]));
    if (last === 'text') peer.send('not a TLS record');
    peer.close(1011, 'backend failed');
  });
  const expected = { close: /closed \(code 1011, backend failed\)/, text: /a text message arrived where TLS records \(binary\) were expected/ };
  for (last of ['close', 'text'] as const) {
    const ws = new WsClient(`ws://127.0.0.1:${(server.address() as net.AddressInfo).port}/`);
    ws.on('error', () => {});
    const pair = webSocketByteStreams(ws as unknown as WebSocket);
    // Read nothing until the WebSocket has closed (the byte stream's listener runs before this one).
    await withTimeout(new Promise((r) => ws.once('close', r)), WAIT, 'the WebSocket to close');
    const reader = pair.readable.getReader();
    const got: number[] = [];
    let error: unknown;
    for (let i = 0; i < 4; i++) {
      try {
        const { value, done } = await reader.read();
        if (done) break;
        got.push(...value);
      } catch (e) {
        error = e;
        break;
      }
    }
    t.same(got, [1, 2, 3, 4, 5], `${last}: the messages before it are all read`);
    t.match(error, { message: expected[last] }, `${last}: then the byte stream fails, saying why`);
  }
});

t.test('the listener: a flood of tiny (or empty) binary messages is joined into few chunks, in order, none empty', SUBTEST, async (t) => {
  // Regression: each message was a chunk of its own, and the stream's highWaterMark counts bytes, so a peer sending
  // 1-byte messages while TLS was not reading had 16384 Buffer objects buffered (plus the rest of the socket
  // read): ~2.7 MB of memory per connection for 16 KiB of data.
  const chunks: Buffer[] = [];
  let delivered: () => void = () => {};
  const all = new Promise<void>((r) => (delivered = r));
  const COUNT = 2000;
  const l = await listenWebSocket({ host: '127.0.0.1', port: 0 }, ({ stream }) => {
    // Not read until everything has arrived (as when TLS waits for a PSK lookup), then counted.
    const ready = (): void => {
      if (stream.destroyed) return;
      if (stream.readableLength < COUNT) return void setTimeout(ready, 10);
      stream.on('data', (b: Buffer) => {
        chunks.push(b);
        if (Buffer.concat(chunks).length >= COUNT) delivered();
      });
    };
    ready();
  });
  t.teardown(() => l.close());
  const ws = new WsClient(`ws://127.0.0.1:${l.address().port}/`);
  ws.on('error', () => {});
  t.teardown(() => ws.terminate());
  await withTimeout(new Promise((r) => ws.once('open', r)), WAIT, 'the WebSocket to open');
  for (let i = 0; i < COUNT; i++) {
    ws.send(Buffer.from([i & 0xff]));
    if (i % 100 === 0) ws.send(Buffer.alloc(0));
  }
  await withTimeout(all, WAIT, `${COUNT} bytes to be delivered`);
  t.ok(Buffer.concat(chunks).equals(Buffer.from(Array.from({ length: COUNT }, (_, i) => i & 0xff))), `the ${COUNT} bytes, in order`);
  t.ok(chunks.length <= COUNT / 20, `in few chunks (${chunks.length}), not one per message`);
  t.equal(chunks.filter((c) => c.length === 0).length, 0, 'no empty chunk');
});

t.test('the client over a WHATWG WebSocket (Node 24): a text message errors the byte stream and closes the socket, no uncaught exception', { ...SUBTEST, skip: node24.skip }, async (t) => {
  // Regression: ws.close(1003) throws InvalidAccessError in the WHATWG API (a page may send only 1000 and
  // 3000-4999): thrown in the message listener, it was an uncaught exception (the process ended) and the socket
  // stayed open.
  const server = new WebSocketServer({ host: '127.0.0.1', port: 0 });
  await new Promise<void>((r) => server.once('listening', () => r()));
  t.teardown(() => new Promise<void>((r) => server.close(() => r())));
  const closedBy = new Promise<{ code: number; reason: string }>((resolve) =>
    server.on('connection', (peer) => {
      peer.once('message', () => peer.send('not a TLS record'));
      peer.once('close', (code: number, reason: Buffer) => resolve({ code, reason: reason.toString() }));
    }),
  );
  const dir = await mkdtemp(join(tmpdir(), 'qkd-tls-ws-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const script = join(dir, 'text-refused.mjs');
  await writeFile(
    script,
    `import { webSocketByteStreams } from ${JSON.stringify(new URL('../lib/transport/websocket.js', import.meta.url).href)};
process.on('uncaughtException', (e) => { console.log(JSON.stringify({ uncaught: e.name + ': ' + e.message })); process.exit(3); });
const ws = new WebSocket('ws://127.0.0.1:${(server.address() as net.AddressInfo).port}/');
await new Promise((resolve, reject) => { ws.onopen = resolve; ws.onerror = reject; });
const pair = webSocketByteStreams(ws);
ws.send(new Uint8Array([0x16]));
let error = null;
try { await pair.readable.getReader().read(); } catch (e) { error = e.message; }
console.log(JSON.stringify({ error }));
`,
  );
  const child = spawnPeer(t, node24.path!, [script]);
  const { code, reason } = await withTimeout(closedBy, WAIT, 'the client to close the WebSocket');
  const out = await child.waitFor(/\{.*\}/, WAIT, 'stdout');
  t.match(JSON.parse(/\{.*\}/.exec(out)![0]), { error: /a text message arrived where TLS records \(binary\) were expected/ }, 'the byte stream fails, saying why; no uncaught exception');
  t.same({ code, reason }, { code: 1000, reason: 'binary messages only' }, 'the socket is closed (1000 with the reason: the WHATWG API reserves 1003 to the browser)');
});
