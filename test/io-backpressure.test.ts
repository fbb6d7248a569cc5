/**
 * Backpressure and bounded memory in the I/O layers, found by review: what an application writes must not
 * pile up in memory while the peer does not let it through (a handshake that never completes included).
 */
import t from 'tap';
import { once } from 'node:events';
import * as net from 'node:net';
import { Duplex } from 'node:stream';
import { Connection } from '../lib/connection/connection.js';
import { nodeProvider } from '../lib/crypto/node.js';
import { connect, createServer, type QkdTlsSocket } from '../lib/transport/node.js';
import { tlsServerOverStreams } from '../lib/transport/streams.js';
import { WebCryptoRecords } from '../lib/transport/webcrypto-records.js';
import { makePsk } from './helpers/pair.js';

const psk = makePsk('io-backpressure');

t.test('writes made while the handshake is pending get backpressure (a server that never answers)', async (tt) => {
  // A TCP server that reads the ClientHello and never answers it.
  const silent = net.createServer((s) => {
    s.on('error', () => {});
    s.resume();
  });
  silent.listen(0, '127.0.0.1');
  await once(silent, 'listening');
  tt.teardown(() => silent.close());
  const tls = connect({ host: '127.0.0.1', port: (silent.address() as net.AddressInfo).port, psks: [psk], handshakeTimeout: 0 });
  tls.on('error', () => {});
  tt.teardown(() => tls.destroy());
  const chunk = Buffer.alloc(1 << 20);
  let accepted = 0;
  while (accepted < 32 && tls.write(chunk)) accepted++;
  // node:tls holds such writes in the Writable's buffer: write() returns false once past the high-water mark.
  tt.ok(accepted < 32, `write() returned false after ${accepted} MiB (not 32 MiB taken in while nothing can be sent)`);
});

/**
 * A peer whose reads we control: what the server sends goes to `deliver` until `stuck`, then it is never
 * taken (a peer that stopped reading, and no kernel buffer in between).
 */
class StuckPeer extends Duplex {
  stuck = false;
  constructor(private readonly deliver: (bytes: Uint8Array) => void) {
    super({ allowHalfOpen: true });
  }
  override _read(): void {}
  override _write(chunk: Buffer, _e: BufferEncoding, callback: (e?: Error | null) => void): void {
    if (this.stuck) return; // never completes: everything written after it stays in writableLength
    this.deliver(chunk);
    callback();
  }
}

t.test('a peer that requests KeyUpdates and never reads the answers cannot make the unsent output grow without bound', async (tt) => {
  let serverSide: QkdTlsSocket | undefined;
  const server = createServer({ psks: [psk], handshakeTimeout: 0 }, (s) => {
    s.on('error', () => {});
    s.resume(); // an application that reads (and discards) what it gets
  });
  const client = Connection.client({ psks: [psk], crypto: nodeProvider });
  // (Pushed from a later tick: a push inside the server's write would re-enter its read path.)
  const send = (): void => {
    const out = client.takeOutput();
    if (out) setImmediate(() => peer.push(out));
  };
  const peer = new StuckPeer((bytes) => {
    client.receive(bytes);
    send();
  });
  server.once('secureConnection', (s: QkdTlsSocket) => (serverSide = s));
  const tls = server.accept(peer);
  tt.teardown(() => tls.destroy());
  send(); // the ClientHello
  for (let i = 0; i < 500 && !(serverSide && client.phase === 'connected'); i++) await new Promise((r) => setTimeout(r, 10));
  tt.equal(client.phase, 'connected', 'handshake complete');
  peer.stuck = true;
  const N = 40_000;
  const one = Uint8Array.of(1);
  for (let i = 1; i <= N; i++) {
    client.keyUpdate(true); // update_requested: each one asks the server for a KeyUpdate of its own
    if (i % 16 === 0) client.write(one); // (so that the records are not all idle ones)
    if (i % 500 === 0) {
      send();
      await new Promise((r) => setImmediate(r));
    }
  }
  send();
  await new Promise((r) => setTimeout(r, 50));
  // Without a bound, every answer (27 bytes) would wait in memory: about 1 MB here.
  tt.ok(peer.writableLength < 512 * 1024, `unsent output stays bounded (${peer.writableLength} bytes)`);
  tt.notOk(tls.destroyed, 'the connection itself is not failed for it');
});

t.test('the streams transport likewise: KeyUpdate answers a peer never reads do not pile up in the output queue', async (tt) => {
  // The transport's record queue, caught as it is first used (its size is what this test is about).
  let records: WebCryptoRecords | undefined;
  const flushCore = WebCryptoRecords.prototype.flushCore;
  WebCryptoRecords.prototype.flushCore = function (this: WebCryptoRecords) {
    records ??= this;
    return flushCore.call(this);
  };
  tt.teardown(() => {
    WebCryptoRecords.prototype.flushCore = flushCore;
  });
  const client = Connection.client({ psks: [psk], crypto: nodeProvider });
  let stuck = false;
  let input!: ReadableStreamDefaultController<Uint8Array>;
  const send = (): void => {
    const out = client.takeOutput();
    if (out) input.enqueue(out);
  };
  const readable = new ReadableStream<Uint8Array>({
    start(c) {
      input = c;
    },
  });
  // After the handshake the peer reads nothing more: a write never completes.
  const writable = new WritableStream<Uint8Array>({
    write(chunk) {
      if (stuck) return new Promise<void>(() => {});
      client.receive(chunk);
      send();
    },
  });
  const tls = tlsServerOverStreams({ readable, writable }, { psks: [psk], crypto: nodeProvider, handshakeTimeout: 0 });
  void (async () => {
    for await (const _ of tls.readable as unknown as AsyncIterable<Uint8Array>) void _;
  })().catch(() => {});
  send();
  await tls.handshake;
  for (let i = 0; i < 500 && client.phase !== 'connected'; i++) await new Promise((r) => setTimeout(r, 10));
  tt.equal(client.phase, 'connected', 'handshake complete');
  stuck = true;
  const one = Uint8Array.of(1);
  for (let i = 1; i <= 40_000; i++) {
    client.keyUpdate(true);
    if (i % 16 === 0) client.write(one);
    if (i % 500 === 0) {
      send();
      await new Promise((r) => setImmediate(r));
    }
  }
  send();
  await new Promise((r) => setTimeout(r, 50));
  tt.ok(records, 'the record queue was seen');
  tt.ok(records!.queuedOutputBytes < 512 * 1024, `queued output stays bounded (${records!.queuedOutputBytes} bytes; about 1 MB without a bound)`);
  input.close();
});
