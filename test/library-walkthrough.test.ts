/**
 * What a new user of the library in Deno, Bun, a Worker or a page runs into, found by writing the programs the
 * README leads to (a walkthrough of qkd-tls as a library in those runtimes). Each test is a mistake or a path such a
 * user takes, and checks that the library says what to do instead of failing somewhere inside.
 */
import { createServer as createTcpServer, type AddressInfo, Socket } from 'node:net';
import t from 'tap';
import { WebSocket as WsClient } from 'ws';
import { Connection } from '../lib/connection/connection.js';
import { receivedAlertHint } from '../lib/errors.js';
import { nobleProvider } from '../lib/crypto/noble.js';
import { decodeKeyIdIdentity } from '../lib/psk/key-id.js';
import { serverPskResolver, StaticKeySource, takePsks } from '../lib/psk/source.js';
import type { Psk, PskRequest } from '../lib/psk/types.js';
import { Etsi014FetchClient } from '../lib/qkd/etsi014-fetch.js';
import { Etsi014ClientSource, Etsi014ServerSource, releaseAfter } from '../lib/qkd/index.js';
import { startProxy } from '../lib/proxy/proxy.js';
import { startWebSocketBridge } from '../lib/proxy/ws-bridge.js';
import { startKmeSimulator } from '../lib/tools/kme/simulator.js';
import type { WebSocketRefusal } from '../lib/transport/ws-server.js';
import { createServer as createQkdTlsServer } from '../lib/transport/node.js';
import { tlsClientOverStreams, tlsServerOverStreams } from '../lib/transport/streams.js';
import { connectWebSocket, tlsClientOverWebSocket } from '../lib/transport/websocket.js';
import { memoryPipe, readAllBytes } from './helpers/memory-streams.js';
import { handshake, makePsk } from './helpers/pair.js';
import { jsonEvent, spawnQkdTls } from './helpers/peers.js';

const psk = makePsk('walkthrough');

/** A stream pair that never answers. */
function silentStreams(): { readable: ReadableStream<Uint8Array>; writable: WritableStream<Uint8Array> } {
  return { readable: new ReadableStream<Uint8Array>(), writable: new WritableStream<Uint8Array>() };
}

t.test('no crypto option: a TypeError naming the option and a provider to pass (it was "Cannot read properties of undefined")', async (t) => {
  const required = /the crypto option is required: a CryptoProvider, such as nobleProvider \(from 'qkd-tls', any runtime\)/;
  // Plain JavaScript (Deno, a Worker, a page) has no compiler to say that `crypto` is missing.
  const none = { psks: [psk] } as unknown as Parameters<typeof Connection.client>[0];
  t.throws(() => Connection.client(none), { name: 'TypeError', message: /^client: / }, 'Connection.client');
  t.throws(() => Connection.client(none), { message: required });
  t.throws(() => Connection.server(none), { name: 'TypeError', message: /^server: the crypto option is required/ }, 'Connection.server');
  t.throws(() => Connection.client({ ...none, crypto: {} } as never), { message: /required: .* got an object that is not one$/ }, 'an object that is no provider');
  t.throws(() => tlsClientOverStreams(silentStreams(), none), { name: 'TypeError', message: /^tlsClientOverStreams: the crypto option is required/ }, 'tlsClientOverStreams');
  t.throws(() => tlsServerOverStreams(silentStreams(), none), { name: 'TypeError', message: /^tlsServerOverStreams: the crypto option is required/ }, 'tlsServerOverStreams');

  // tlsClientOverWebSocket says so before it opens a WebSocket.
  const opened: string[] = [];
  const original = Object.getOwnPropertyDescriptor(globalThis, 'WebSocket');
  Object.defineProperty(globalThis, 'WebSocket', {
    configurable: true,
    writable: true,
    value: class {
      constructor(url: string) {
        opened.push(url);
        throw new Error('no WebSocket in this test');
      }
    },
  });
  try {
    await t.rejects(tlsClientOverWebSocket('ws://127.0.0.1:9/', none, { preferWebSocketStream: false }), { name: 'TypeError', message: /^tlsClientOverWebSocket: the crypto option is required/ }, 'tlsClientOverWebSocket');
  } finally {
    if (original) Object.defineProperty(globalThis, 'WebSocket', original);
    else delete (globalThis as { WebSocket?: unknown }).WebSocket;
  }
  t.same(opened, [], 'no WebSocket was opened');
  // A provider is taken as before.
  Connection.client({ crypto: nobleProvider, psks: [psk] }).destroy();
});

t.test('a transport that is no byte-stream pair: a TypeError saying what is one (it was "reading \'getWriter\'" of undefined)', async (t) => {
  const pairRule = /the transport must be a byte-stream pair \{ readable: ReadableStream, writable: WritableStream \}, such as a Deno\.Conn, .*in Bun use qkd-tls\/node\); got /;
  // What a user passes by mistake: a socket of another kind (a Bun socket is an object with neither stream; so is a
  // node:net Socket, never connected here), the result of a connect() not awaited, nothing.
  const notPairs: [string, unknown, RegExp][] = [
    ['a node:net Socket', new Socket(), /got a Socket without both$/],
    ['a plain object', { write() {}, end() {} }, /got an object without both$/],
    ['a promise of a pair', Promise.resolve(silentStreams()), /got a Promise without both$/],
    ['undefined', undefined, /got nothing$/],
  ];
  for (const [what, transport, got] of notPairs) {
    for (const [name, open] of [
      ['tlsClientOverStreams', () => tlsClientOverStreams(transport as never, { crypto: nobleProvider, psks: [psk] })],
      ['tlsServerOverStreams', () => tlsServerOverStreams(transport as never, { crypto: nobleProvider, psks: [psk] })],
    ] as const) {
      t.throws(open, { name: 'TypeError', message: new RegExp(`^${name}: ${pairRule.source}`) }, `${name}, ${what}`);
      t.throws(open, { message: got }, `${name}, ${what}: says what it got`);
    }
  }
  // A pair is taken as before.
  tlsClientOverStreams(silentStreams(), { crypto: nobleProvider, psks: [psk], handshakeTimeout: 0 }).connection.destroy();
});

t.test('the ETSI 014 key sources of qkd-tls/qkd run on the fetch client (Deno, Bun), over the streams transport', async (t) => {
  // This file compiling is the first check: the sources' `client` was typed as the Node Etsi014Client, which the
  // Etsi014FetchClient is not ("Property 'agent' is missing"), so a TypeScript user in Deno or Bun needed a cast.
  const kme = await startKmeSimulator({ insecureHttp: true, initialKeyCount: 10, rateBitsPerSecond: 0 });
  t.teardown(() => kme.close());
  const clientSource = new Etsi014ClientSource({
    client: new Etsi014FetchClient({ baseUrl: kme.master.url, saeId: kme.master.saeId }),
    ownsClient: true,
    peerSaeId: kme.master.peerSaeId,
    saeId: kme.master.saeId,
    poolSize: 0,
  });
  const serverSource = new Etsi014ServerSource({ client: new Etsi014FetchClient({ baseUrl: kme.slave.url, saeId: kme.slave.saeId }), ownsClient: true, peerSaeIds: [kme.slave.peerSaeId] });
  const release = releaseAfter(30_000);
  t.teardown(() => {
    release.releaseAll();
    clientSource.close();
    serverSource.close();
  });

  const offer = await takePsks(nobleProvider, clientSource);
  const [clientEnd, serverEnd] = memoryPipe();
  const server = tlsServerOverStreams(serverEnd, { crypto: nobleProvider, lookupPsks: serverPskResolver(nobleProvider, serverSource, { onLease: release }) });
  const client = tlsClientOverStreams(clientEnd, { crypto: nobleProvider, psks: offer.psks });
  const [serverInfo, clientInfo] = await Promise.all([server.handshake, client.handshake]);
  offer.release();
  t.equal(decodeKeyIdIdentity(clientInfo.identityBytes)?.keyId, offer.keys[0].label, 'the client offered the QKD key it took (its ID in the identity)');
  t.equal(serverInfo.identity, clientInfo.identity, 'the server took the same key by its ID');
  void server.readable.pipeTo(server.writable);
  const writer = client.writable.getWriter();
  await writer.write(new TextEncoder().encode('over QKD keys'));
  await writer.close();
  t.equal(new TextDecoder().decode(await readAllBytes(client.readable)), 'over QKD keys', 'the echo');
});

t.test("tlsServerOverStreams given `psks: async ...` (as qkd-tls/node's createServer takes it): the failure names lookupPsks", async (t) => {
  const [clientEnd, serverEnd] = memoryPipe();
  const asyncLookup = (async () => [psk]) as unknown as () => (typeof psk)[];
  const server = tlsServerOverStreams(serverEnd, { crypto: nobleProvider, psks: asyncLookup });
  const client = tlsClientOverStreams(clientEnd, { crypto: nobleProvider, psks: [psk] });
  await t.rejects(server.handshake, { reason: 'PskLookupThrew', alert: 'internal_error', message: /answered a promise .*an asynchronous one goes to the lookupPsks option of tlsServerOverStreams/ }, 'the server says where an asynchronous lookup goes');
  await t.rejects(client.handshake, { name: 'TlsError', alert: 'internal_error', remote: true }, 'the client received the alert');
  // The same lookup as lookupPsks completes.
  const [c2, s2] = memoryPipe();
  const server2 = tlsServerOverStreams(s2, { crypto: nobleProvider, lookupPsks: async () => [psk] });
  const client2 = tlsClientOverStreams(c2, { crypto: nobleProvider, psks: [psk] });
  t.match(await client2.handshake, { kex: 'psk_dhe_ke' }, 'with lookupPsks the handshake completes');
  await server2.handshake;
  client2.connection.destroy();
  server2.connection.destroy();
});

t.test('Etsi014FetchClient: a fetch that fails says why, not only "fetch failed" (Node and Deno put the reason in its cause)', async (t) => {
  // Deno's shape, as it came in the walkthrough (HTTPS to the simulator without its CA).
  const denoLike = new Etsi014FetchClient({
    baseUrl: 'https://127.0.0.1:9',
    retries: 0,
    fetch: () => Promise.reject(new TypeError('fetch failed', { cause: new Error('error sending request for url (https://127.0.0.1:9/): client error (Connect): invalid peer certificate: UnknownIssuer') })),
  });
  await t.rejects(denoLike.encKeys('peer'), { reason: 'connection', message: /^cannot reach the KME at https:\/\/127\.0\.0\.1:9 for enc_keys \(1 attempt\(s\)\): fetch failed: error sending request .*invalid peer certificate: UnknownIssuer$/ }, "Deno's: the certificate problem is said");
  // A cause that only has a code, down a chain, and a repeated message said once.
  const coded = Object.assign(new Error(''), { code: 'ECONNRESET' });
  const chained = new Etsi014FetchClient({ baseUrl: 'http://127.0.0.1:9', saeId: 'x', retries: 0, fetch: () => Promise.reject(new TypeError('fetch failed', { cause: new Error('fetch failed', { cause: coded }) })) });
  await t.rejects(chained.encKeys('peer'), { message: /\(1 attempt\(s\)\): fetch failed: ECONNRESET$/ }, 'a code where there is no message; no message twice');
  // Node's own fetch, to a port where nothing listens.
  const probe = createTcpServer();
  await new Promise<void>((r) => probe.listen(0, '127.0.0.1', r));
  const port = (probe.address() as AddressInfo).port;
  await new Promise<void>((r) => probe.close(() => r()));
  const refused = new Etsi014FetchClient({ baseUrl: `http://127.0.0.1:${port}`, saeId: 'x', retries: 0 });
  await t.rejects(refused.encKeys('peer'), { reason: 'connection', message: /fetch failed: .*ECONNREFUSED/ }, "Node's fetch: the refused connection is said");
});

t.test('a transport that cannot connect: the handshake fails with what its write said, not with the read that followed', async (t) => {
  // A Worker's connect() socket to a port where nothing listens, as workerd does it: the write rejects with the
  // reason, then the read with "Stream was cancelled." (which the handshake reported).
  let failRead!: (e: Error) => void;
  const readable = new ReadableStream<Uint8Array>({ start: (c) => void (failRead = (e) => c.error(e)) });
  const writable = new WritableStream<Uint8Array>({
    write() {
      setTimeout(() => failRead(new TypeError('Stream was cancelled.')), 0);
      return Promise.reject(new Error('proxy request failed, cannot connect to the specified address'));
    },
  });
  const tls = tlsClientOverStreams({ readable, writable }, { crypto: nobleProvider, psks: [psk] });
  await t.rejects(tls.handshake, { message: 'proxy request failed, cannot connect to the specified address' }, 'the reason');
  await t.rejects(tls.readable.getReader().read(), { message: 'proxy request failed, cannot connect to the specified address' }, 'the plaintext readable says the same');
});

t.test('a WebSocket that does not open: the error names the URL and the likely causes (a page cannot see the HTTP status)', async (t) => {
  const hint = /\(nothing listens there, or the server refused the upgrade: a qkd-tls bridge refuses a path that names none of its --allow targets \(404\), a listener or bridge with --origin a page from another origin \(403\)/;
  const g = globalThis as { WebSocket?: unknown; WebSocketStream?: unknown };
  const saved = { ws: Object.getOwnPropertyDescriptor(g, 'WebSocket'), wss: Object.getOwnPropertyDescriptor(g, 'WebSocketStream') };
  t.teardown(() => {
    for (const [name, d] of [['WebSocket', saved.ws], ['WebSocketStream', saved.wss]] as const) {
      if (d) Object.defineProperty(g, name, d);
      else delete g[name];
    }
  });
  // Chromium's WebSocketStream on a 404: its opened promise rejects with a WebSocketError without the URL.
  class RefusedStream {
    readonly opened = Promise.reject(Object.assign(new Error('WebSocket closed before handshake complete.'), { name: 'WebSocketError' }));
    readonly closed = Promise.reject(new Error('closed'));
    close(): void {}
  }
  g.WebSocketStream = RefusedStream;
  await t.rejects(connectWebSocket('ws://127.0.0.1:9/127.0.0.1:4433'), { message: /^WebSocketStream ws:\/\/127\.0\.0\.1:9\/127\.0\.0\.1:4433: WebSocket closed before handshake complete\. / }, 'WebSocketStream: the URL and what the runtime said');
  await t.rejects(connectWebSocket('ws://127.0.0.1:9/127.0.0.1:4433'), { message: hint }, 'and the likely causes');
  // The WebSocket API (Deno, Bun, Firefox): an error event, then close 1006, and nothing more.
  class RefusedSocket extends EventTarget {
    readyState = 0;
    binaryType = 'blob';
    constructor(readonly url: string) {
      super();
      setTimeout(() => {
        this.readyState = 3;
        this.dispatchEvent(new Event('error'));
        this.dispatchEvent(Object.assign(new Event('close'), { code: 1006, reason: '' }));
      }, 0);
    }
    close(): void {}
  }
  g.WebSocket = RefusedSocket;
  await t.rejects(connectWebSocket('ws://127.0.0.1:9/', { preferWebSocketStream: false }), { message: /^WebSocket ws:\/\/127\.0\.0\.1:9\/: the connection failed \(/ }, 'WebSocket: the URL');
  await t.rejects(connectWebSocket('ws://127.0.0.1:9/', { preferWebSocketStream: false }), { message: hint }, 'and the likely causes');
});

t.test("Etsi014FetchClient: a page can send its user's client certificate (credentials: 'include' in fetchInit); none by default", async (t) => {
  // Fetch's credentials are cookies and TLS client certificates alike: with 'omit' always sent, a browser never
  // presented the certificate its doc said it would use for the KME's mutual TLS.
  const seen: (RequestInit["credentials"] | undefined)[] = [];
  const fetch = async (_url: string | URL | Request, init?: RequestInit): Promise<Response> => {
    seen.push(init?.credentials);
    return new Response(JSON.stringify({ keys: [] }), { status: 200 });
  };
  const plain = new Etsi014FetchClient({ baseUrl: 'https://kme.example', fetch });
  await plain.encKeys('peer').catch(() => {});
  const page = new Etsi014FetchClient({ baseUrl: 'https://kme.example', fetch, fetchInit: { credentials: 'include' } });
  await page.encKeys('peer').catch(() => {});
  t.same(seen, ['omit', 'include'], "'omit' by default; 'include' when fetchInit asks for it");
});

/** Opens a WebSocket with the `ws` client; resolves with the HTTP status of a refused upgrade. */
function refusedStatus(url: string, origin?: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const ws = new WsClient(url, origin === undefined ? {} : { origin });
    ws.once('unexpected-response', (_req, res) => {
      resolve(res.statusCode ?? 0);
      ws.terminate();
    });
    ws.once('open', () => reject(new Error('it opened')));
    ws.once('error', () => {});
  });
}

t.test('the WebSocket bridge tells of each refused upgrade (a page sees only that its WebSocket failed); so does the command', async (t) => {
  const refusals: WebSocketRefusal[] = [];
  const bridge = await startWebSocketBridge({ host: '127.0.0.1', port: 0, allow: [{ host: '127.0.0.1', port: 9 }], origins: ['http://127.0.0.1:8000'], onRefused: (r) => refusals.push(r) });
  t.teardown(() => bridge.close());
  const base = `ws://127.0.0.1:${bridge.address().port}`;
  t.equal(await refusedStatus(`${base}/127.0.0.1:4433`), 404, 'a target not allowed: 404');
  t.equal(await refusedStatus(`${base}/`, 'http://evil.example'), 403, 'an origin not allowed: 403');
  t.match(refusals, [
    { path: '/127.0.0.1:4433', status: 404, reason: 'no such target', peer: /^127\.0\.0\.1:\d+$/ },
    { path: '/', origin: 'http://evil.example', status: 403, reason: 'origin not allowed' },
  ], 'onRefused was told of both, with the path, the origin and the status');

  // `qkd-tls bridge --json` logs them.
  const cli = spawnQkdTls(t, ['bridge', '--listen', '127.0.0.1:0', '--allow', '127.0.0.1:9', '--json']);
  const listening = jsonEvent(await cli.waitFor(/"event":"listening"/, 30_000, 'stderr'), 'listening');
  t.equal(await refusedStatus(`ws://${String(listening?.address)}/127.0.0.1:4433`), 404, 'the command refuses too');
  t.match(jsonEvent(await cli.waitFor(/"event":"refused"/, 30_000, 'stderr'), 'refused'), { path: '/127.0.0.1:4433', status: 404, reason: 'no such target' }, 'and logs it');

  // So does `qkd-tls server --websocket --origin ...` for a page of another origin.
  const server = spawnQkdTls(t, ['server', '--websocket', '--listen', '127.0.0.1:0', '--origin', 'http://127.0.0.1:8000', '--psk', '00'.repeat(32), '--identity', 'walk', '--json']);
  const serving = jsonEvent(await server.waitFor(/"event":"listening"/, 30_000, 'stderr'), 'listening');
  t.equal(await refusedStatus(`ws://${String(serving?.address)}/`, 'http://evil.example'), 403, 'qkd-tls server --websocket refuses another origin');
  t.match(jsonEvent(await server.waitFor(/"event":"refused"/, 30_000, 'stderr'), 'refused'), { origin: 'http://evil.example', status: 403, reason: 'origin not allowed' }, 'and logs it');

  // And the proxy's WebSocket server role, through its logger.
  const events: [string, Record<string, unknown>][] = [];
  const proxy = await startProxy({
    services: [
      {
        name: 'pages',
        role: 'server',
        accept: { host: '127.0.0.1', port: 0 },
        connect: { host: '127.0.0.1', port: 9 },
        keys: { clientPsks: async () => [psk], server: [psk], description: 'test' },
        websocket: { origins: ['http://127.0.0.1:8000'] },
      },
    ],
    logger: { connection() {}, event: (name, fields) => void events.push([name, fields]) },
  });
  t.teardown(() => proxy.close());
  const at = proxy.services[0].address;
  t.equal(await refusedStatus(`ws://${at.host}:${at.port}/`, 'http://evil.example'), 403, 'the proxy refuses another origin');
  t.match(events.filter(([name]) => name === 'refused'), [['refused', { service: 'pages', origin: 'http://evil.example', status: 403 }]], 'and logs it');
});

t.test('a client whose key the server refuses is told what to check in err.message and err.hint, not only the alert', async (t) => {
  // A library user printing err.message saw only 'tls alert: decrypt_error (51) received'; the hint (a wrong key, or
  // another hash) was the command line's alone (bin/cli/report.ts).
  const other = makePsk('walkthrough'); // the same identity, another secret
  const wrongKey = handshake({ crypto: nobleProvider, psks: [other] }, { crypto: nobleProvider, psks: [psk] });
  const ce = wrongKey.error('client');
  t.equal(ce?.alert, 'decrypt_error');
  t.equal(ce?.remote, true);
  t.match(ce?.hint, /^the server could not verify the key we offered: the two sides hold different keys for this identity, or bind it to different hashes \(RFC 8446 §4\.2\.11\.2\)$/);
  t.equal(ce?.message, `tls alert: decrypt_error (51) received: ${ce?.hint}`, 'the message ends with the hint');
  const se = wrongKey.error('server');
  t.equal(se?.message, 'tls alert: decrypt_error (51) sent: PSK binder does not verify (wrong key?) (RFC 8446 §4.2.11.2)', "the server's message as before");
  t.match(se?.hint, /the client holds another key for this identity, or binds it to another hash/, 'and a hint of its own');

  const unknown = handshake({ crypto: nobleProvider, psks: [makePsk('nobody')] }, { crypto: nobleProvider, psks: [psk] });
  t.match(unknown.error('client')?.message, /^tls alert: unknown_psk_identity \(115\) received: the server has no key for any PSK identity we offered: .*\(RFC 8446 §4\.2\.11\)$/);

  const noSuite = handshake({ crypto: nobleProvider, psks: [psk], suites: ['TLS_AES_128_GCM_SHA256'] }, { crypto: nobleProvider, psks: [psk], suites: ['TLS_CHACHA20_POLY1305_SHA256'] });
  t.equal(noSuite.error('server')?.reason, 'NoCommonCipherSuite');
  t.match(noSuite.error('client')?.message, /^tls alert: handshake_failure \(40\) received: the server found no acceptable cipher suite, key exchange mode or group, .*its log says which \(RFC 8446 §6\.2\)$/);

  // OpenSSL before 3.4 (Node 20), GnuTLS 3.7 and tlslite-ng answer a bad binder with illegal_parameter: before the
  // ServerHello the client says what that most likely means; after it (or on a server), nothing.
  // The likely cause comes first (it came after the list of servers, where a reader of the command line missed it).
  t.match(receivedAlertHint('illegal_parameter', 'client', { handshaking: true, beforeServerHello: true }), /^the server refused our ClientHello, most likely because it holds another key for this identity \(or none\), or binds it to another hash: OpenSSL before 3\.4 \(Node 20\), GnuTLS and tlslite-ng /);
  // OpenSSL and Node (3.0 and 3.5) answer an identity they have no key for with missing_extension: having accepted no
  // PSK they want certificate authentication and a signature_algorithms extension (RFC 8446 §4.2.3). It said nothing.
  t.match(receivedAlertHint('missing_extension', 'client', { handshaking: true, beforeServerHello: true }), /^the server accepted none of the PSKs we offered and wanted a certificate handshake instead .*most likely it has no key for this identity, or binds it to another hash; its log says which$/);
  t.equal(receivedAlertHint('missing_extension', 'client', { handshaking: true, beforeServerHello: false }), undefined);
  t.equal(receivedAlertHint('missing_extension', 'server', { handshaking: true, beforeServerHello: true }), undefined);
  // tlslite-ng answers an unknown identity with handshake_failure: the hint names it among the causes.
  t.match(receivedAlertHint('handshake_failure', 'client', { handshaking: true, beforeServerHello: true }), /knew none of the PSK identities we offered/);
  t.equal(receivedAlertHint('illegal_parameter', 'client', { handshaking: true, beforeServerHello: false }), undefined);
  t.equal(receivedAlertHint('illegal_parameter', 'server', { handshaking: true, beforeServerHello: true }), undefined);
  // No guess where this side cannot know: a decrypt_error after the ServerHello (the server accepted the binder), an
  // alert a server receives, an alert after the handshake.
  t.equal(receivedAlertHint('decrypt_error', 'client', { handshaking: true, beforeServerHello: false }), undefined);
  t.equal(receivedAlertHint('decrypt_error', 'server', { handshaking: true, beforeServerHello: false }), undefined);
  t.equal(receivedAlertHint('handshake_failure', 'client', { handshaking: false, beforeServerHello: false }), undefined);
  const plain = handshake({ crypto: nobleProvider, psks: [psk] }, { crypto: nobleProvider, psks: [psk] });
  t.equal(plain.error('client'), undefined, 'a good key: no error');
});

t.test('serverPskResolver without onLease: the keys it leased are wiped once the handshake took them (they stayed until GC)', async (t) => {
  // A streams user (lookupPsks) or a Connection user had nothing telling them to wipe the resolved keys, and no clock
  // in the core to do it with: the connection that is handed the resolver's answer wipes it.
  const allZero = (answer: readonly (Psk | undefined)[]): boolean => answer.every((p) => p === undefined || p.secret.every((b) => b === 0));
  const source = new StaticKeySource([{ identity: psk.identity, secret: psk.secret }]);
  const resolve = serverPskResolver(nobleProvider, source);
  const answers: (Psk | undefined)[][] = [];
  const lookupPsks = async (r: PskRequest): Promise<(Psk | undefined)[]> => {
    const answer = await resolve(r);
    answers.push(answer);
    return answer; // passed on as it is
  };
  for (const round of [1, 2]) {
    const [clientEnd, serverEnd] = memoryPipe();
    const server = tlsServerOverStreams(serverEnd, { crypto: nobleProvider, lookupPsks });
    const client = tlsClientOverStreams(clientEnd, { crypto: nobleProvider, psks: [psk] });
    const [info] = await Promise.all([server.handshake, client.handshake]);
    t.equal(info.identity, 'walkthrough', `handshake ${round} completes`);
    const answer = answers[round - 1];
    t.ok(answer.some((p) => p !== undefined) && allZero(answer), `handshake ${round}: the leased key is wiped`);
    client.connection.destroy();
    server.connection.destroy();
  }
  // The source's own key is not (the second handshake above used it again), nor the caller's static PSK.
  t.ok(psk.secret.some((b) => b !== 0), "the caller's PSK is untouched");

  // A Connection user answering psk-request itself: its own PSKs are left alone, a resolver's answer is wiped.
  const own = makePsk('walkthrough', 'SHA-256', psk.secret.slice());
  const answerWith = async (answer: (r: PskRequest) => Promise<readonly (Psk | undefined)[]>): Promise<readonly (Psk | undefined)[]> => {
    const client = Connection.client({ crypto: nobleProvider, psks: [psk] });
    const server = Connection.server({ crypto: nobleProvider, psks: undefined });
    server.receive(client.takeOutput()!);
    const request = server.takeEvents().find((e) => e.type === 'psk-request');
    if (request?.type !== 'psk-request') throw new Error('no psk-request');
    const psks = await answer(request.request);
    server.providePsks(psks);
    client.receive(server.takeOutput()!);
    t.ok(client.takeEvents().some((e) => e.type === 'handshake'), 'the client completes');
    return psks;
  };
  t.ok((await answerWith(async () => [own])).every((p) => p!.secret.some((b) => b !== 0)), 'providePsks with PSKs of its own: not wiped');
  t.ok(allZero(await answerWith(resolve)), 'providePsks with a serverPskResolver answer: wiped');
  // An answer that comes after the connection ended: refused, and wiped all the same.
  const late = Connection.server({ crypto: nobleProvider });
  const hello = Connection.client({ crypto: nobleProvider, psks: [psk] });
  late.receive(hello.takeOutput()!);
  const req = late.takeEvents().find((e) => e.type === 'psk-request');
  if (req?.type !== 'psk-request') throw new Error('no psk-request');
  const lateAnswer = await resolve(req.request);
  late.destroy();
  t.throws(() => late.providePsks(lateAnswer), /not waiting for PSKs/);
  t.ok(allZero(lateAnswer), 'a late answer is wiped too');
  source.close();
});

t.test('qkd-tls/node: a serverPskResolver answer that comes after the client went away is wiped, not dropped as it was', async (t) => {
  const source = new StaticKeySource([{ identity: psk.identity, secret: psk.secret }]);
  t.teardown(() => source.close());
  const resolve = serverPskResolver(nobleProvider, source);
  let answered!: (a: readonly (Psk | undefined)[]) => void;
  const answer = new Promise<readonly (Psk | undefined)[]>((r) => (answered = r));
  const server = createQkdTlsServer({
    crypto: nobleProvider,
    psks: async (request, socket) => {
      const a = await resolve(request);
      // Answer only once the connection is gone (the client gave up during the lookup).
      if (socket && !socket.destroyed) await new Promise((r) => socket.once('close', r));
      setImmediate(() => answered(a));
      return a;
    },
  });
  server.on('socketError', () => {});
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => server.close());
  const hello = Connection.client({ crypto: nobleProvider, psks: [psk] });
  const raw = new Socket();
  raw.on('error', () => {});
  raw.connect((server.address() as AddressInfo).port, '127.0.0.1', () => raw.end(hello.takeOutput()!));
  const a = await answer;
  t.ok(a.some((p) => p !== undefined) && a.every((p) => p === undefined || p.secret.every((b) => b === 0)), 'the late answer is wiped');
  raw.destroy();
});
