/**
 * Shared by the runtime tests (test/runtime-*.test.ts): the peers that qkd-tls, running inside another
 * runtime, talks to — a qkd-tls echo server in Node and `openssl s_server -psk -nocert -rev` — and the Node
 * qkd-tls client that talks to a server running inside another runtime; each one reports whether it saw the
 * other side's close_notify. The runtime side is test/fixtures/runtimes/echo-core.mjs (1 MiB, compared byte
 * for byte).
 */
import * as net from 'node:net';
import { fileURLToPath } from 'node:url';
import { fromHex, utf8 } from '../../lib/codec/bytes.js';
import type { KexMode } from '../../lib/config/options.js';
import type { HandshakeInfo } from '../../lib/config/events.js';
import type { Psk } from '../../lib/psk/types.js';
import { connect, createServer, type QkdTlsSocket } from '../../lib/transport/node.js';
import { PaddingClient } from './padded-close.js';
import { freePort, opensslServer, type Peer, PSK_HEX, PSK_IDENTITY, spawnPeer, type Tap, withTimeout } from './peers.js';

/** The project root (helpers run as dist/test/helpers/*.js). */
export const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
export const KEX_MODES: readonly KexMode[] = ['psk_ke', 'psk_dhe_ke'];
export const WAIT = 60_000;
export const SUBTEST = { timeout: 120_000 };
/** The size echo-core.mjs sends. */
export const PAYLOAD_BYTES = 1024 * 1024;

export const PSK: Psk = { identity: utf8(PSK_IDENTITY), secret: fromHex(PSK_HEX), hash: 'SHA-256' };

/** What a connection on the Node side saw. */
export interface NodeSide {
  handshake: HandshakeInfo | null;
  echoed: number;
  /** The runtime's close_notify arrived (the readable ended with it, not with a bare FIN). */
  closeNotifyReceived: boolean;
  error?: string;
}

/**
 * A qkd-tls server (both key exchange modes) that echoes each connection and records it in `connections` (a
 * failed handshake too); not listening yet.
 */
export function echoServer(connections: NodeSide[]): ReturnType<typeof createServer> {
  const server = createServer({ psks: [PSK], kexModes: ['psk_dhe_ke', 'psk_ke'] }, (socket: QkdTlsSocket) => {
    const side: NodeSide = { handshake: socket.handshake, echoed: 0, closeNotifyReceived: false };
    connections.push(side);
    socket.on('data', (b: Buffer) => (side.echoed += b.length));
    socket.on('end', () => (side.closeNotifyReceived = socket.connection?.peerClosed ?? false));
    socket.on('error', (e: Error) => (side.error = e.message));
    socket.pipe(socket);
  });
  server.on('tlsClientError', (e: Error) => connections.push({ handshake: null, echoed: 0, closeNotifyReceived: false, error: e.message }));
  return server;
}

/** A qkd-tls echo server in Node on 127.0.0.1:0 (both key exchange modes); closed in teardown. */
export async function nodeEchoServer(t: Tap): Promise<{ port: number; connections: NodeSide[]; closed: Promise<void>[] }> {
  const connections: NodeSide[] = [];
  const closed: Promise<void>[] = [];
  const server = echoServer(connections);
  server.on('secureConnection', (socket: QkdTlsSocket) => closed.push(new Promise((r) => socket.once('close', () => r()))));
  t.teardown(() => {
    server.destroyAll();
    server.close();
  });
  await withTimeout(new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve)), WAIT, 'the server to listen');
  return { port: server.address().port, connections, closed };
}

/** `openssl s_server -psk -nocert -tls1_3 -rev` for one connection; psk_ke needs -allow_no_dhe_kex. */
export async function opensslRevServer(t: Tap, kex: KexMode): Promise<{ port: number; server: Peer }> {
  const { peer: server, port } = await opensslServer(t, [
    '-psk',
    PSK_HEX,
    '-psk_identity',
    PSK_IDENTITY,
    '-nocert',
    '-tls1_3',
    '-naccept',
    '1',
    '-rev',
    ...(kex === 'psk_ke' ? ['-allow_no_dhe_kex'] : []),
  ], WAIT);
  return { port, server };
}

/**
 * Runs `workerd serve CONFIG` with the config's socket named "http" on a free port of 127.0.0.1 (`--socket-addr`
 * overrides the address in the config) and returns its URL once it listens. workerd cannot report a port the
 * kernel picked, so a port found free beforehand can be taken by another process in between (tap runs two test
 * files at once); workerd then exits saying "Address already in use", and this tries another port, up to three
 * times. Killed in `t`'s teardown.
 */
export async function serveWorkerd(t: Tap, workerd: string, config: string, cwd: string): Promise<{ peer: Peer; url: string }> {
  for (let attempt = 1; ; attempt++) {
    const port = await freePort();
    const peer = spawnPeer(t, workerd, ['serve', config, '--socket-addr', `http=127.0.0.1:${port}`], { cwd });
    try {
      await peer.waitFor('Listening on', WAIT);
      return { peer, url: `http://127.0.0.1:${port}/` };
    } catch (e) {
      if (attempt === 3 || !peer.hasExited || !/Address already in use/.test(peer.output)) throw e;
      t.comment(`workerd: port ${port} was taken in the meantime; another one`);
    }
  }
}

/**
 * The Node qkd-tls client against a server inside another runtime: sends the 1 MiB payload, ends (close_notify),
 * reads until the server's close_notify, and compares what came back with what went.
 */
export async function nodeClient(port: number, kex: KexMode, payload: Uint8Array): Promise<NodeSide & { equal: boolean }> {
  const socket = connect({ host: '127.0.0.1', port, psks: [PSK], kexModes: [kex] });
  const chunks: Buffer[] = [];
  const side: NodeSide = { handshake: null, echoed: 0, closeNotifyReceived: false };
  await withTimeout(
    new Promise<void>((resolve, reject) => {
      socket.once('secureConnect', () => {
        side.handshake = socket.handshake;
        socket.end(Buffer.from(payload));
      });
      socket.on('data', (b: Buffer) => {
        chunks.push(b);
        side.echoed += b.length;
      });
      socket.once('end', () => {
        side.closeNotifyReceived = socket.connection?.peerClosed ?? false;
        resolve();
      });
      socket.once('error', reject);
    }),
    WAIT,
    'the echo from the server in the other runtime',
  );
  socket.destroy();
  return { ...side, equal: Buffer.concat(chunks).equals(Buffer.from(payload)) };
}

/**
 * Like {@link nodeClient}, but the client pads its close_notify with `padding` zero bytes (RFC 8446 §5.4; this
 * stack never pads, so the record is sealed by hand: test/helpers/padded-close.ts) and half-closes the socket right
 * behind it, then reads the echo to the server's close_notify. A server that cannot tell the padded alert from data
 * before opening it must still not read on to the end of stream while it echoes: in Deno that end closes the socket.
 */
export async function paddedCloseClient(port: number, payload: Uint8Array, padding: number): Promise<NodeSide & { equal: boolean }> {
  const client = new PaddingClient({ psks: [PSK], kexModes: ['psk_dhe_ke'] });
  const conn = client.connection;
  const socket = net.connect({ host: '127.0.0.1', port });
  const chunks: Uint8Array[] = [];
  const side: NodeSide = { handshake: null, echoed: 0, closeNotifyReceived: false };
  try {
    await withTimeout(
      new Promise<void>((resolve, reject) => {
        const flush = (): void => {
          for (const c of conn.takeOutputChunks()) if (!socket.writableEnded) socket.write(c);
          for (const e of conn.takeEvents()) {
            if (e.type === 'data') {
              chunks.push(e.data);
              side.echoed += e.data.length;
            } else if (e.type === 'error') reject(e.error);
            else if (e.type === 'handshake') {
              side.handshake = e.info;
              for (const r of client.write(payload)) socket.write(r);
              socket.end(client.closeNotify(padding)); // the padded close_notify, then FIN
            }
          }
        };
        socket.once('connect', flush);
        socket.on('data', (b: Buffer) => {
          conn.receive(b);
          flush();
        });
        socket.once('end', () => {
          side.closeNotifyReceived = conn.peerClosed;
          resolve();
        });
        socket.once('error', reject);
      }),
      WAIT,
      'the echo from the server in the other runtime (padded close_notify)',
    );
  } finally {
    socket.destroy();
  }
  return { ...side, equal: Buffer.concat(chunks).equals(Buffer.from(payload)) };
}

/** The 1 MiB payload of echo-core.mjs, computed the same way (checked against the fixture by size and by echo). */
export function corePayload(): Uint8Array {
  const lineLength = 1023;
  const out = new Uint8Array(PAYLOAD_BYTES);
  let at = 0;
  for (let line = 0; line < 1024; line++) {
    for (let i = 0; i < lineLength; i++) out[at++] = 0x61 + ((line * 7 + i * 13 + ((i * i) >> 3)) % 26);
    out[at++] = 0x0a;
  }
  return out;
}

/** The JSON line `{"event":"result",...}` a runtime fixture printed. */
export interface RuntimeResult {
  runtime: string;
  handshake: { version: string; suite: string; kex: string; group: string | null; identity: string };
  sent?: number;
  received?: number;
  echoed?: number;
  echoEqual?: boolean;
  firstMismatch?: number;
  closeNotifySent: boolean;
  closeNotifyReceived: boolean;
  /** The name of the connection's crypto provider ('noble', or 'node' with "provider": "node"). */
  provider?: string;
  /** Application data records the transport sealed and opened with WebCrypto. */
  offloaded?: { sealed: number; opened: number };
  /** Client: the path of the transport's x25519 key shares (test/fixtures/runtimes/echo-core.mjs). */
  keyShares?: { x25519: string; webcrypto: number; fallback: number };
  /** Client: a sans-IO handshake per group with WebCrypto key shares, run in the runtime. */
  keyShareProbe?: Record<'x25519' | 'secp256r1', { path: string; connected: boolean; webcrypto: number; fallback: number }> & {
    /** The reason a WebCrypto server gave for a client's all-zero X25519 share. */
    lowOrderX25519: string | null;
  };
}

/**
 * The path each runtime's WebCrypto key shares take (lib/crypto/webcrypto.ts): every runtime tested here (Node 20,
 * Chromium, Deno, Bun, workerd) has X25519 and ECDH P-256 in WebCrypto, so none falls back.
 */
export const EXPECTED_KEY_SHARE_PATH = 'webcrypto';

/** Checks a client run inside a runtime against the server it talked to. */
export function checkClientResult(t: Tap, r: RuntimeResult | undefined, kex: KexMode, runtime: RegExp, output: string): void {
  t.ok(r, 'the runtime printed its result', { output });
  if (!r) return;
  t.match(r.runtime, runtime, `it ran in ${runtime.source}`);
  t.equal(r.handshake.version, 'TLSv1.3', 'TLSv1.3');
  t.equal(r.handshake.suite, 'TLS_AES_128_GCM_SHA256', 'TLS_AES_128_GCM_SHA256');
  t.equal(r.handshake.kex, kex, `key exchange ${kex}`);
  t.equal(r.handshake.group, kex === 'psk_ke' ? null : 'x25519', kex === 'psk_ke' ? 'no group (psk_ke)' : 'group x25519');
  t.equal(r.handshake.identity, PSK_IDENTITY, `identity ${PSK_IDENTITY}`);
  t.equal(r.sent, PAYLOAD_BYTES, 'it sent 1 MiB');
  t.equal(r.received, PAYLOAD_BYTES, '1 MiB came back');
  t.equal(r.echoEqual, true, 'the echo equals what was expected, byte for byte', { firstMismatch: r.firstMismatch });
  t.equal(r.closeNotifyReceived, true, "the runtime's TLS saw the server's close_notify");
  // The streams transport uses WebCrypto key shares by default over the noble provider.
  // (The path is the provider's: a page that ran psk_dhe_ke before reports it for a psk_ke connection too.)
  const paths = kex === 'psk_ke' ? ['untried', EXPECTED_KEY_SHARE_PATH] : [EXPECTED_KEY_SHARE_PATH];
  t.ok(paths.includes(r.keyShares?.x25519 ?? ''), kex === 'psk_ke' ? 'no key share failed (psk_ke)' : `the x25519 key share took the ${EXPECTED_KEY_SHARE_PATH} path`, { keyShares: r.keyShares });
  for (const group of ['x25519', 'secp256r1'] as const) {
    const probe = r.keyShareProbe?.[group];
    t.match(probe, { path: EXPECTED_KEY_SHARE_PATH, connected: true, webcrypto: 2, fallback: 0 }, `a ${group} handshake with WebCrypto key shares in the runtime: ${EXPECTED_KEY_SHARE_PATH}`);
  }
  // What this runtime's WebCrypto throws for a low-order point must be read as the peer's fault (RFC 8446 §7.4.2).
  t.equal(r.keyShareProbe?.lowOrderX25519, 'KeyExchangeZeroSecret', "a low-order X25519 share: KeyExchangeZeroSecret (illegal_parameter), as on the synchronous path");
}
