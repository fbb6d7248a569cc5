/**
 * The test matrix for a runtime that has TCP sockets of its own and can listen (Deno, Bun), run by
 * test/runtime-deno.test.ts and test/runtime-bun.test.ts with test/fixtures/runtimes/tcp-peer.mjs inside the
 * runtime:
 *  - client in the runtime -> qkd-tls server in Node, and -> `openssl s_server -psk -nocert -rev`;
 *  - server in the runtime <- the qkd-tls client in Node;
 * each with psk_ke and psk_dhe_ke, a 1 MiB echo compared byte for byte, and close_notify seen both ways;
 * a client whose close_notify is padded (the server still echoes everything); in Bun, client and server on
 * qkd-tls/node's nodeProvider (node:crypto, no offload); and a wrong key, which fails with the alert named.
 */
import { join } from 'node:path';
import type tap from 'tap';
import { jsonEvent, missingPrograms, type Peer, PSK_HEX, PSK_IDENTITY, spawnPeer, type Tap, testPeer, WRONG_PSK_HEX } from './peers.js';
import {
  checkClientResult,
  corePayload,
  KEX_MODES,
  nodeClient,
  nodeEchoServer,
  opensslRevServer,
  paddedCloseClient,
  PAYLOAD_BYTES,
  ROOT,
  type RuntimeResult,
  SUBTEST,
  WAIT,
} from './runtimes.js';

const FIXTURE = join(ROOT, 'test', 'fixtures', 'runtimes', 'tcp-peer.mjs');

export interface TcpRuntime {
  /** 'deno' or 'bun': the test peer's name. */
  readonly name: 'deno' | 'bun';
  /** How its runtime field reads ("deno 2.9.6"). */
  readonly runtimePattern: RegExp;
  /** The command line that runs FIXTURE with one JSON argument. */
  args(fixture: string, json: string): string[];
  /** Extra environment (a private module cache). */
  env(t: Tap): Promise<NodeJS.ProcessEnv>;
}

export function tcpRuntimeMatrix(t: typeof tap, runtime: TcpRuntime): void {
  const peer = testPeer(t, runtime.name);
  const skip = peer.skip;
  const skipOpenssl = skip || missingPrograms(t, 'openssl');

  const run = async (tt: Tap, options: Record<string, unknown>): Promise<Peer> =>
    spawnPeer(tt, peer.path!, runtime.args(FIXTURE, JSON.stringify({ pskHex: PSK_HEX, identity: PSK_IDENTITY, ...options })), {
      cwd: ROOT,
      env: await runtime.env(tt),
    });
  const result = (p: Peer): RuntimeResult | undefined => jsonEvent(p.stdout, 'result') as RuntimeResult | undefined;

  for (const kex of KEX_MODES) {
    t.test(`${runtime.name} client -> qkd-tls server in Node, ${kex}: 1 MiB echo, close_notify both ways`, { ...SUBTEST, skip }, async (t) => {
      const { port, connections, closed } = await nodeEchoServer(t);
      const client = await run(t, { role: 'client', host: '127.0.0.1', port, kexMode: kex });
      const exit = await client.waitExit(WAIT);
      t.equal(exit.code, 0, `the ${runtime.name} client exits 0`, { output: client.transcript() });
      checkClientResult(t, result(client), kex, runtime.runtimePattern, client.transcript());
      await Promise.all(closed);
      t.equal(connections.length, 1, 'one connection reached the server');
      t.match(connections[0], { handshake: { kex, identity: PSK_IDENTITY }, echoed: PAYLOAD_BYTES, closeNotifyReceived: true }, `the server echoed 1 MiB and saw the ${runtime.name} client's close_notify`);
      t.equal(connections[0]?.error, undefined, 'the server reported no error');
    });

    t.test(`${runtime.name} client -> openssl s_server -psk -nocert, ${kex}: 1 MiB echo, close_notify both ways`, { ...SUBTEST, skip: skipOpenssl }, async (t) => {
      const { port, server } = await opensslRevServer(t, kex);
      const client = await run(t, { role: 'client', host: '127.0.0.1', port, kexMode: kex, reverse: true });
      const exit = await client.waitExit(WAIT);
      t.equal(exit.code, 0, `the ${runtime.name} client exits 0`, { output: client.transcript() + server.transcript() });
      checkClientResult(t, result(client), kex, runtime.runtimePattern, client.transcript());
      const serverExit = await server.waitExit(WAIT);
      t.equal(serverExit.code, 0, 's_server exits 0 after its one connection');
      t.match(server.output, 'Ciphersuite: TLS_AES_128_GCM_SHA256', 's_server negotiated the same suite');
      // s_server -rev prints this when its read returns 0: the client's close_notify, not a bare FIN.
      t.match(server.output, 'CONNECTION CLOSED', `s_server saw the ${runtime.name} client's close_notify`);
    });

    t.test(`qkd-tls client in Node -> ${runtime.name} server, ${kex}: 1 MiB echo, close_notify both ways`, { ...SUBTEST, skip }, async (t) => {
      const server = await run(t, { role: 'server', kexModes: ['psk_dhe_ke', 'psk_ke'] });
      const listening = jsonEvent(await server.waitFor(/"event":"listening"/, WAIT, 'stdout'), 'listening');
      const port = Number(listening?.port);
      t.ok(port > 0, `the ${runtime.name} server listens on 127.0.0.1:${port}`);
      const client = await nodeClient(port, kex, corePayload());
      t.match(client.handshake, { version: 'TLSv1.3', kex, identity: PSK_IDENTITY }, `the Node client negotiated ${kex}`);
      t.equal(client.echoed, PAYLOAD_BYTES, '1 MiB came back');
      t.equal(client.equal, true, 'byte for byte');
      t.equal(client.closeNotifyReceived, true, `the Node client saw the ${runtime.name} server's close_notify`);
      const exit = await server.waitExit(WAIT);
      t.equal(exit.code, 0, `the ${runtime.name} server exits 0`, { output: server.transcript() });
      const r = result(server);
      t.match(r, { handshake: { kex, identity: PSK_IDENTITY }, echoed: PAYLOAD_BYTES, closeNotifyReceived: true }, `the ${runtime.name} server echoed 1 MiB and saw the client's close_notify`);
      t.match(r?.runtime, runtime.runtimePattern, `the server ran in ${runtime.name}`);
    });
  }

  // The peer pads its close_notify (RFC 8446 §5.4) and half-closes right behind it: the server, offloading, must
  // open that record before reading on, or its read of the end of stream closes Deno's socket under the echo.
  t.test(`qkd-tls client in Node, close_notify padded to 1,024 bytes -> ${runtime.name} server: the echo arrives whole`, { ...SUBTEST, skip }, async (t) => {
    const server = await run(t, { role: 'server', kexModes: ['psk_dhe_ke', 'psk_ke'] });
    const listening = jsonEvent(await server.waitFor(/"event":"listening"/, WAIT, 'stdout'), 'listening');
    const client = await paddedCloseClient(Number(listening?.port), corePayload(), 1_000);
    t.equal(client.echoed, PAYLOAD_BYTES, '1 MiB came back');
    t.equal(client.equal, true, 'byte for byte');
    t.equal(client.closeNotifyReceived, true, `the client saw the ${runtime.name} server's close_notify`);
    const exit = await server.waitExit(WAIT);
    t.equal(exit.code, 0, `the ${runtime.name} server exits 0`, { output: server.transcript() });
    t.match(result(server), { echoed: PAYLOAD_BYTES, closeNotifyReceived: true }, `the ${runtime.name} server echoed 1 MiB and saw the padded close_notify`);
  });

  // A close_notify padded to the full record size looks like data until it is opened, so the server reads on to the
  // end of stream; over Deno's own readable that closes the socket, so a Deno server passes connStreams(conn).
  if (runtime.name === 'deno') {
    t.test('qkd-tls client in Node, close_notify padded to the full record size -> deno server over connStreams(conn): the echo arrives whole', { ...SUBTEST, skip }, async (t) => {
      const server = await run(t, { role: 'server', kexModes: ['psk_dhe_ke', 'psk_ke'], connStreams: true });
      const listening = jsonEvent(await server.waitFor(/"event":"listening"/, WAIT, 'stdout'), 'listening');
      const client = await paddedCloseClient(Number(listening?.port), corePayload(), 16_382); // 2 + 1 + 16,382 = 2^14 + 1
      t.equal(client.echoed, PAYLOAD_BYTES, '1 MiB came back');
      t.equal(client.equal, true, 'byte for byte');
      t.equal(client.closeNotifyReceived, true, "the client saw the deno server's close_notify");
      const exit = await server.waitExit(WAIT);
      t.equal(exit.code, 0, 'the deno server exits 0', { output: server.transcript() });
      t.match(result(server), { echoed: PAYLOAD_BYTES, closeNotifyReceived: true }, 'the deno server echoed 1 MiB and saw the padded close_notify');
    });
  }

  // Bun has node:crypto (BoringSSL): over qkd-tls/node's provider the streams transport keeps every record on its
  // synchronous native AES-GCM (no offload by default) and its own x25519, both ways (README, "Bun").
  if (runtime.name === 'bun') {
    t.test('bun client on qkd-tls/node\'s nodeProvider -> qkd-tls server in Node, psk_dhe_ke: 1 MiB echo on node:crypto, nothing offloaded', { ...SUBTEST, skip }, async (t) => {
      const { port, connections, closed } = await nodeEchoServer(t);
      const client = await run(t, { role: 'client', host: '127.0.0.1', port, kexMode: 'psk_dhe_ke', provider: 'node' });
      const exit = await client.waitExit(WAIT);
      t.equal(exit.code, 0, 'the bun client exits 0', { output: client.transcript() });
      const r = result(client);
      t.match(r, { handshake: { version: 'TLSv1.3', suite: 'TLS_AES_128_GCM_SHA256', kex: 'psk_dhe_ke', group: 'x25519', identity: PSK_IDENTITY }, sent: PAYLOAD_BYTES, received: PAYLOAD_BYTES, echoEqual: true, closeNotifyReceived: true }, '1 MiB echoed byte for byte, close_notify both ways', { output: client.transcript() });
      t.match(r?.runtime, runtime.runtimePattern, 'it ran in bun');
      t.equal(r?.provider, 'node', 'the connection ran on the node provider');
      t.same(r?.offloaded, { sealed: 0, opened: 0 }, 'no record went through WebCrypto: node:crypto sealed and opened them all');
      t.equal(r?.keyShares?.x25519, 'base', "the x25519 key share was the provider's own (node:crypto), not WebCrypto's");
      await Promise.all(closed);
      t.match(connections[0], { handshake: { kex: 'psk_dhe_ke' }, echoed: PAYLOAD_BYTES, closeNotifyReceived: true }, 'the server in Node echoed 1 MiB');
    });

    t.test('qkd-tls client in Node -> bun server on qkd-tls/node\'s nodeProvider, psk_dhe_ke: 1 MiB echo on node:crypto, nothing offloaded', { ...SUBTEST, skip }, async (t) => {
      const server = await run(t, { role: 'server', kexModes: ['psk_dhe_ke', 'psk_ke'], provider: 'node' });
      const listening = jsonEvent(await server.waitFor(/"event":"listening"/, WAIT, 'stdout'), 'listening');
      const client = await nodeClient(Number(listening?.port), 'psk_dhe_ke', corePayload());
      t.equal(client.echoed, PAYLOAD_BYTES, '1 MiB came back');
      t.equal(client.equal, true, 'byte for byte');
      t.equal(client.closeNotifyReceived, true, "the Node client saw the bun server's close_notify");
      const exit = await server.waitExit(WAIT);
      t.equal(exit.code, 0, 'the bun server exits 0', { output: server.transcript() });
      const r = result(server);
      t.match(r, { handshake: { kex: 'psk_dhe_ke', group: 'x25519' }, echoed: PAYLOAD_BYTES, closeNotifyReceived: true, provider: 'node' }, 'the bun server echoed 1 MiB on the node provider');
      t.same(r?.offloaded, { sealed: 0, opened: 0 }, 'no record went through WebCrypto');
    });
  }

  t.test(`${runtime.name} client with a wrong key -> qkd-tls server: the binder fails, the alert is named`, { ...SUBTEST, skip }, async (t) => {
    const { port, connections } = await nodeEchoServer(t);
    const client = await run(t, { role: 'client', host: '127.0.0.1', port, kexMode: 'psk_dhe_ke', pskHex: WRONG_PSK_HEX });
    const exit = await client.waitExit(WAIT);
    t.equal(exit.code, 1, 'the client exits 1');
    t.equal(result(client), undefined, 'no result');
    t.match(client.stderr, /decrypt_error \(51\) received/, 'the client names the alert it received');
    t.notOk(connections.some((c) => c.handshake), 'no connection reached the application');
  });
}
