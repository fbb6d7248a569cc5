/**
 * The Node transport and the application's callbacks: key-log lines exist only when a key log was asked for,
 * and a PSK resolver that throws fails its own handshake without escaping into the socket's event handlers.
 *
 * Each test pins a fault an independent review found; its comment quotes the rule and says where the code
 * broke it before the fix.
 */
import t from 'tap';
import { once } from 'node:events';
import { Duplex } from 'node:stream';
import { Connection } from '../lib/connection/connection.js';
import { nodeProvider } from '../lib/crypto/node.js';
import { connect, createServer, type AsyncPskResolver } from '../lib/transport/node.js';
import { handshake, makePsk } from './helpers/pair.js';

const crypto = nodeProvider;

t.test('the Node transport builds key-log lines only when a key log was asked for', async (tt) => {
  // node.ts:76/130 always pass tls.keyLogSink(options.keyLog), which is a function even without a keyLog option
  // or a 'keylog' listener (node.ts:237-242); Connection.logSecret (connection.ts:582) therefore renders the
  // handshake and application traffic secrets and the exporter secret as hex strings for every connection.
  // JavaScript strings cannot be wiped, so each session's secrets stay on the heap until collected, contrary to
  // the project rule "wipe key material". Expected: no key-log line is built unless a keyLog option or a
  // 'keylog' listener exists.
  const psk = makePsk('f18');
  const server = createServer({ psks: [psk] }, (s) => s.end());
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  let lines = 0;
  const socket = connect({ host: '127.0.0.1', port: server.address().port, psks: [psk] });
  const count = socket.listenerCount.bind(socket);
  // The sink asks listenerCount('keylog') once per line, after the line was built.
  socket.listenerCount = ((name: string | symbol) => {
    if (name === 'keylog') lines++;
    return count(name);
  }) as typeof socket.listenerCount;
  socket.on('error', () => {});
  await once(socket, 'secureConnect');
  socket.destroy();
  server.destroyAll();
  server.close();
  tt.equal(lines, 0, `key-log lines built without a key log: ${lines}`);
});

t.test('a PSK resolver that throws synchronously fails that handshake, not the socket data handler', async (tt) => {
  // node.ts:406 calls `resolver(request).then(...)` unguarded, from the socket 'data' handler. An
  // AsyncPskResolver written as a plain function that throws before returning its promise (for example on an
  // identity it cannot parse — peer-controlled input), or that returns a non-promise, throws out of
  // onSocketData: in a real server an uncaught exception that takes the whole process down, and the connection
  // is left waiting for PSKs. Expected: the failure becomes failPskLookup (handshake_failure) and a
  // tlsClientError.
  const psk = makePsk('f19');
  const resolver = ((request: { identities: readonly Uint8Array[] }) => {
    throw new Error(`cannot parse identity ${request.identities.length}`);
  }) as unknown as AsyncPskResolver;
  const server = createServer({ psks: resolver });
  const clientErrors: Error[] = [];
  server.on('tlsClientError', (e: Error) => clientErrors.push(e));
  const raw = new Duplex({
    read() {},
    write(_chunk, _encoding, callback) {
      callback();
    },
  });
  const tls = server.accept(raw);
  const ch = Connection.client({ crypto, psks: [psk] }).takeOutput()!;
  let thrown: unknown;
  try {
    raw.emit('data', Buffer.from(ch)); // what a net.Socket does when bytes arrive
  } catch (e) {
    thrown = e;
  }
  await new Promise((r) => setImmediate(r));
  tt.equal((thrown as Error | undefined)?.message, undefined, 'nothing is thrown into the socket event handler');
  tt.equal(clientErrors.length, 1, 'the failure is reported as a tlsClientError');
  tls.destroy();
  raw.destroy();
});
