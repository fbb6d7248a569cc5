/**
 * WebCrypto key shares through the transports, in Node 20 (whose WebCrypto has X25519 and P-256):
 * - the streams transport uses them by default over a provider other than `node`, for x25519 and secp256r1, with
 *   a PSK lookup pausing the same server first; `webCryptoKeyShares: false` and the node provider do not;
 * - the Node transport with `webCryptoKeyShares: true`, client and server over TCP (an asynchronous PSK lookup
 *   pausing the server before its key agreement, for P-256);
 * - a peer sending a low-order X25519 point through the streams transport: the alert of the synchronous path;
 * - the handshake timeout of the streams transport while a key agreement runs;
 * - a streams server failing in the same read as its pause; the Node server's socket paused during a key
 *   agreement; a Node client read in paused mode (an async iterator) from the start.
 */
import t from 'tap';
import { once } from 'node:events';
import type { Socket } from 'node:net';
import { concat, fromUtf8, utf8 } from '../lib/codec/bytes.js';
import { Connection, MAX_BUFFERED_WHILE_WAITING } from '../lib/connection/connection.js';
import { createNobleProvider, nobleProvider } from '../lib/crypto/noble.js';
import { nodeProvider } from '../lib/crypto/node.js';
import type { CryptoProvider, GroupName } from '../lib/crypto/provider.js';
import { isWebCryptoKeyShareProvider, withWebCryptoKeyShares, type WebCryptoKeyShareProvider } from '../lib/crypto/webcrypto.js';
import { connect, createServer, type QkdTlsSocket } from '../lib/transport/node.js';
import { tlsClientOverStreams, tlsServerOverStreams, type TlsStreams } from '../lib/transport/streams.js';
import { memoryPipe, readAllBytes } from './helpers/memory-streams.js';
import { makePsk } from './helpers/pair.js';

async function readAll(r: ReadableStream<Uint8Array>): Promise<string> {
  return fromUtf8(await readAllBytes(r));
}

/** One message from the client, echoed by the server; both close. */
async function echo(client: TlsStreams, server: TlsStreams, message: string): Promise<string> {
  void (async () => {
    const got = await readAll(server.readable);
    const w = server.writable.getWriter();
    await w.write(utf8(got));
    await w.close();
  })();
  const w = client.writable.getWriter();
  await w.write(utf8(message));
  await w.close();
  return readAll(client.readable);
}

t.test('the streams transport uses WebCrypto key shares by default (not with the node provider)', async (t) => {
  for (const group of ['x25519', 'secp256r1'] as GroupName[]) {
    const psk = makePsk(`streams-${group}`);
    const base = createNobleProvider();
    const [c, s] = memoryPipe();
    const server = tlsServerOverStreams(s, {
      crypto: base,
      groups: [group],
      // A PSK lookup pauses the server before its key agreement does.
      lookupPsks: async (req) => req.identities.map(() => psk),
    });
    const client = tlsClientOverStreams(c, { crypto: base, psks: [psk], groups: [group] });
    const [ci, si] = await Promise.all([client.handshake, server.handshake]);
    t.equal(ci.group, group, `${group}: negotiated`);
    t.equal(si.kex, 'psk_dhe_ke');
    t.equal(await echo(client, server, `over ${group}`), `over ${group}`, `${group}: data flows both ways`);
    t.ok(isWebCryptoKeyShareProvider(client.crypto), `${group}: the client runs on the WebCrypto wrapper`);
    const wc = client.crypto as WebCryptoKeyShareProvider;
    t.equal(wc, server.crypto, 'one wrapper per base provider, shared by its connections');
    t.equal(wc.keySharePath(group), 'webcrypto', `${group}: the key shares ran in WebCrypto`);
    t.same(wc.keyShares, { webcrypto: 2, fallback: 0 }, `${group}: two key shares (client start, server respond)`);
  }

  const psk = makePsk('streams-off');
  for (const [what, options] of [
    ['webCryptoKeyShares: false', { crypto: nobleProvider, webCryptoKeyShares: false }],
    ['the node provider', { crypto: nodeProvider }],
  ] as [string, { crypto: CryptoProvider; webCryptoKeyShares?: boolean }][]) {
    const [c, s] = memoryPipe();
    const server = tlsServerOverStreams(s, { ...options, psks: [psk] });
    const client = tlsClientOverStreams(c, { ...options, psks: [psk] });
    await Promise.all([client.handshake, server.handshake]);
    t.equal(client.crypto, options.crypto, `${what}: the connection runs on the provider given`);
    t.equal(client.connection.handshake?.kex, 'psk_dhe_ke');
    t.equal(await echo(client, server, 'sync'), 'sync');
  }
});

t.test('a low-order X25519 point from the peer, through the streams transport: the synchronous alert', async (t) => {
  const psk = makePsk('streams-hostile');
  const evil: CryptoProvider = {
    ...nobleProvider,
    group: (n) => {
      const g = nobleProvider.group(n);
      if (!g || n !== 'x25519') return g;
      return { ...g, respond: (cs, r) => ({ share: new Uint8Array(32), sharedSecret: g.respond(cs, r).sharedSecret }), start: (r) => g.start(r) };
    },
  };
  const [c, s] = memoryPipe();
  const server = tlsServerOverStreams(s, { crypto: evil, psks: [psk], webCryptoKeyShares: false });
  const client = tlsClientOverStreams(c, { crypto: createNobleProvider(), psks: [psk] });
  const err = await client.handshake.then(
    () => undefined,
    (e: unknown) => e as { reason?: string; alert?: string },
  );
  t.equal(err?.reason, 'KeyExchangeZeroSecret', 'the client refuses the all-zero secret');
  t.equal(err?.alert, 'illegal_parameter');
  const serr = await server.handshake.then(
    () => undefined,
    (e: unknown) => e as { alert?: string; remote?: boolean },
  );
  t.match(serr, { alert: 'illegal_parameter', remote: true }, 'the server receives illegal_parameter');
  t.equal((client.crypto as WebCryptoKeyShareProvider).keySharePath('x25519'), 'webcrypto');
});

t.test('the streams handshake timeout while a key agreement is pending', async (t) => {
  const psk = makePsk('streams-timeout');
  // A provider whose asynchronous x25519 never finishes: the timeout must still end the handshake.
  const base = createNobleProvider();
  const stuck = withWebCryptoKeyShares(base);
  const never: CryptoProvider = {
    ...stuck,
    asyncGroup: (name) => {
      const g = stuck.asyncGroup!(name);
      return g && { ...g, checkPeerShare: (f, sh) => g.checkPeerShare(f, sh), start: () => new Promise(() => {}), respond: () => new Promise(() => {}) };
    },
  };
  const [c] = memoryPipe();
  const client = tlsClientOverStreams(c, { crypto: never, psks: [psk], handshakeTimeout: 200, webCryptoKeyShares: false });
  const err = await client.handshake.then(
    () => undefined,
    (e: unknown) => e as { reason?: string },
  );
  t.equal(err?.reason, 'HandshakeTimeout', 'the handshake times out during the pause');
  t.equal(client.connection.stateName, 'AwaitKeyShares', 'in the state that waited');
  t.equal(client.connection.pendingKeyAgreement, null, 'nothing is pending any more');
});

/** `crypto` whose asynchronous groups never finish (a WebCrypto that never settles). */
function neverSettling(): CryptoProvider {
  const stuck = withWebCryptoKeyShares(createNobleProvider());
  return {
    ...stuck,
    asyncGroup: (name) => {
      const g = stuck.asyncGroup!(name);
      return g && { ...g, checkPeerShare: (f, sh) => g.checkPeerShare(f, sh), start: () => new Promise(() => {}), respond: () => new Promise(() => {}) };
    },
  };
}

t.test('the streams server reports a failure in the same read as its pause, without waiting for the key agreement', async (t) => {
  const psk = makePsk('streams-fail-in-pause');
  const [c, s] = memoryPipe();
  const server = tlsServerOverStreams(s, { crypto: neverSettling(), psks: [psk], handshakeTimeout: 2000, webCryptoKeyShares: false });
  const hello = Connection.client({ crypto: createNobleProvider(), psks: [psk] }).takeOutput()!;
  // The ClientHello and more than the server may hold while it waits, in one chunk: the server pauses, then fails.
  const w = c.writable.getWriter();
  void w.write(concat(hello, new Uint8Array(MAX_BUFFERED_WHILE_WAITING + 1))).catch(() => {});
  void c.readable.pipeTo(new WritableStream()).catch(() => {});
  const outcome = await Promise.race([
    server.handshake.then(
      () => 'completed',
      (e: { reason?: string }) => e.reason,
    ),
    new Promise((r) => setTimeout(() => r('no outcome after 3 s'), 3000)),
  ]);
  t.equal(outcome, 'TooMuchDataWhileWaiting', 'the failure is reported (the key agreement it no longer waits for is not run)');
});

t.test('the Node transport with webCryptoKeyShares: client and server over TCP', async (t) => {
  for (const group of ['x25519', 'secp256r1'] as GroupName[]) {
    const psk = makePsk(`node-${group}`);
    const crypto = withWebCryptoKeyShares(createNobleProvider());
    // With secp256r1 the server looks its PSK up asynchronously first: two pauses in a row.
    const psks = group === 'x25519' ? [psk] : async (req: { identities: readonly Uint8Array[] }) => req.identities.map(() => psk);
    const server = createServer({ psks, crypto, groups: [group] }, (s) => s.pipe(s));
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    t.teardown(() => void server.close());
    const client: QkdTlsSocket = connect({ host: '127.0.0.1', port: server.address().port, psks: [psk], groups: [group], crypto: createNobleProvider(), webCryptoKeyShares: true });
    await once(client, 'secureConnect');
    t.equal(client.handshake?.group, group, `${group}: negotiated`);
    client.end('node transport');
    const chunks: Buffer[] = [];
    for await (const chunk of client) chunks.push(chunk as Buffer);
    t.equal(Buffer.concat(chunks).toString(), 'node transport', `${group}: echoed`);
    t.equal(crypto.keySharePath(group), 'webcrypto', `${group}: the server's key share ran in WebCrypto`);
    t.same(crypto.keyShares, { webcrypto: 1, fallback: 0 });
  }
});

t.test('the Node server reads nothing from its socket while a key agreement runs (also right after a PSK lookup)', async (t) => {
  for (const lookup of [false, true]) {
    const what = lookup ? 'after an asynchronous PSK lookup' : 'with static PSKs';
    const psk = makePsk(`node-paused-${lookup}`);
    // The server's x25519 in WebCrypto, held at a gate until the test has looked at the socket.
    const web = withWebCryptoKeyShares(createNobleProvider());
    let open!: () => void;
    const gate = new Promise<void>((r) => (open = r));
    let reached!: () => void;
    const atGate = new Promise<void>((r) => (reached = r));
    const gated: CryptoProvider = {
      ...web,
      asyncGroup: (name) => {
        const g = web.asyncGroup!(name);
        return (
          g && {
            ...g,
            checkPeerShare: (f, sh) => g.checkPeerShare(f, sh),
            start: (r) => g.start(r),
            respond: (cs, r) => {
              const work = g.respond(cs, r);
              reached();
              return gate.then(() => work);
            },
          }
        );
      },
    };
    const psks = lookup ? async (req: { identities: readonly Uint8Array[] }) => req.identities.map(() => psk) : [psk];
    const server = createServer({ psks, crypto: gated }, (s) => s.pipe(s));
    let raw!: Socket;
    server.server.on('connection', (sock: Socket) => (raw = sock));
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    t.teardown(() => void server.close());
    const client = connect({ host: '127.0.0.1', port: server.address().port, psks: [psk], crypto: createNobleProvider() });
    await atGate;
    await new Promise((r) => setTimeout(r, 20));
    t.equal(raw.isPaused(), true, `${what}: the server's socket is paused during the key agreement`);
    open();
    await once(client, 'secureConnect');
    client.end('paused');
    const chunks: Buffer[] = [];
    for await (const chunk of client) chunks.push(chunk as Buffer);
    t.equal(Buffer.concat(chunks).toString(), 'paused', `${what}: then the handshake completes and data flows`);
  }
});

t.test('a Node client read through its async iterator from the start (readableFlowing false) completes and reads', async (t) => {
  const psk = makePsk('node-iterator');
  const server = createServer({ psks: [psk], crypto: createNobleProvider() }, (s) => s.pipe(s));
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.teardown(() => void server.close());
  const client = connect({ host: '127.0.0.1', port: server.address().port, psks: [psk], crypto: createNobleProvider(), webCryptoKeyShares: true, handshakeTimeout: 2000 });
  // Reading starts at once, in paused mode (a 'readable' listener), before the handshake and its two pauses.
  const reading = (async () => {
    const chunks: Buffer[] = [];
    for await (const chunk of client) chunks.push(chunk as Buffer);
    return Buffer.concat(chunks).toString();
  })();
  t.equal(client.readableFlowing, false, 'the iterator reads in paused mode');
  client.end('iterated');
  const got = await Promise.race([reading.catch((e: Error) => `failed: ${e.message}`), new Promise((r) => setTimeout(() => r('no answer after 3 s'), 3000))]);
  t.equal(got, 'iterated', 'the echo arrives');
  client.destroy();
});
