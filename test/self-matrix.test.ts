/**
 * qkd-tls client against qkd-tls server over real TCP sockets on 127.0.0.1 (lib/transport/node.ts), across
 * every cipher suite × key-exchange group × {key share accepted at once, HelloRetryRequest}, plus psk_ke once
 * per suite, with middlebox compatibility alternating. Each connection echoes a random payload (up to 1 MiB with
 * the native provider, smaller with the pure-JavaScript one), compared by SHA-256. Once per provider.
 */
import { createHash, randomBytes } from 'node:crypto';
import t from 'tap';
import { nobleProvider } from '../lib/crypto/noble.js';
import { nodeProvider } from '../lib/crypto/node.js';
import type { CryptoProvider, GroupName } from '../lib/crypto/provider.js';
import type { HandshakeInfo } from '../lib/config/events.js';
import type { SupportedSuiteName } from '../lib/suites.js';
import { connect, createServer, type ConnectOptions, type QkdTlsServer } from '../lib/transport/node.js';
import { makePsk, seededRandom } from './helpers/pair.js';

const SUITES: readonly SupportedSuiteName[] = ['TLS_AES_128_GCM_SHA256', 'TLS_CHACHA20_POLY1305_SHA256', 'TLS_AES_256_GCM_SHA384'];
const GROUPS: readonly GroupName[] = ['x25519', 'secp256r1', 'secp384r1'];
/** Give up on one connection after this long (a guard against hangs, not a performance assertion). */
const GUARD_MS = 20_000;

const psk256 = makePsk('matrix-256', 'SHA-256');
const psk384 = makePsk('matrix-384', 'SHA-384');
const pskFor = (suite: SupportedSuiteName) => (suite === 'TLS_AES_256_GCM_SHA384' ? psk384 : psk256);
const sha256 = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

interface EchoServer {
  readonly server: QkdTlsServer;
  readonly port: number;
  /** Handshake summaries of the server side, in order. */
  readonly infos: HandshakeInfo[];
  readonly errors: Error[];
}

async function echoServer(crypto: CryptoProvider, groups: readonly GroupName[]): Promise<EchoServer> {
  const infos: HandshakeInfo[] = [];
  const errors: Error[] = [];
  const server = createServer({ crypto, psks: [psk256, psk384], groups, handshakeTimeout: GUARD_MS }, (socket) => {
    infos.push(socket.handshake!);
    socket.on('error', (e) => errors.push(e));
    socket.pipe(socket);
  });
  server.on('tlsClientError', (e: Error) => errors.push(e));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { server, port: server.address().port, infos, errors };
}

/** Connects, sends `payload`, half-closes, and collects the echo until the server closes. */
function echo(port: number, options: Omit<ConnectOptions, 'host' | 'port'>, payload: Uint8Array): Promise<{ echoed: Buffer; info: HandshakeInfo }> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    const socket = connect({ ...options, host: '127.0.0.1', port, handshakeTimeout: GUARD_MS }, () => socket.end(payload));
    const guard = setTimeout(() => {
      socket.destroy();
      reject(new Error(`no echo after ${GUARD_MS} ms`));
    }, GUARD_MS);
    socket.on('data', (c: Buffer) => chunks.push(c));
    socket.on('end', () => {
      clearTimeout(guard);
      resolve({ echoed: Buffer.concat(chunks), info: socket.handshake! });
    });
    socket.on('error', (e) => {
      clearTimeout(guard);
      reject(e);
    });
  });
}

interface Combo {
  readonly suite: SupportedSuiteName;
  readonly group: GroupName | null;
  readonly mode: 'direct' | 'retry' | 'psk_ke';
}

const COMBOS: Combo[] = [
  ...SUITES.flatMap((suite) => GROUPS.flatMap((group) => (['direct', 'retry'] as const).map((mode) => ({ suite, group, mode })))),
  ...SUITES.map((suite) => ({ suite, group: null, mode: 'psk_ke' as const })),
];

const RUNS: { crypto: CryptoProvider; maxPayload: number }[] = [
  { crypto: nodeProvider, maxPayload: 1 << 20 },
  { crypto: nobleProvider, maxPayload: 160 << 10 },
];

for (const { crypto, maxPayload } of RUNS) {
  t.test(`${crypto.name}: ${COMBOS.length} suite × group × mode combinations over TCP`, async (tt) => {
    const servers = new Map<GroupName, EchoServer>();
    for (const g of GROUPS) servers.set(g, await echoServer(crypto, [g]));
    tt.teardown(() => {
      for (const s of servers.values()) {
        s.server.destroyAll();
        s.server.close();
      }
    });
    const sizes = seededRandom(crypto.name.length * 7919);
    let i = 0;
    for (const c of COMBOS) {
      const size = i === 0 ? maxPayload : 1 + (((sizes(4)[0] << 16) | (sizes(4)[1] << 8) | sizes(4)[2]) % maxPayload);
      const compat = i % 4 < 2; // both settings for direct and retry alike
      i++;
      const name = `${c.suite} ${c.group ?? '-'} ${c.mode} (compat ${compat}, ${size} bytes)`;
      const serverGroup = c.group ?? 'x25519';
      const srv = servers.get(serverGroup)!;
      const other = GROUPS.find((g) => g !== serverGroup)!;
      const payload = randomBytes(size);
      const before = srv.infos.length;
      const { echoed, info } = await echo(
        srv.port,
        {
          crypto,
          psks: [pskFor(c.suite)],
          suites: [c.suite],
          kexModes: c.mode === 'psk_ke' ? ['psk_ke'] : ['psk_dhe_ke'],
          keyShareGroups: c.mode === 'retry' ? [other] : [serverGroup],
          middleboxCompatibility: compat,
        },
        payload,
      );
      tt.equal(echoed.length, payload.length, `${name}: echoed length`);
      tt.equal(sha256(echoed), sha256(payload), `${name}: echoed intact (sha256)`);
      tt.equal(info.suite, c.suite, `${name}: suite`);
      tt.equal(info.group, c.group, `${name}: group`);
      tt.equal(info.kex, c.mode === 'psk_ke' ? 'psk_ke' : 'psk_dhe_ke', `${name}: kex`);
      tt.equal(info.helloRetry, c.mode === 'retry', `${name}: helloRetry`);
      const serverInfo = srv.infos[before];
      tt.ok(serverInfo, `${name}: the server completed too`);
      tt.same(
        serverInfo && { suite: serverInfo.suite, group: serverInfo.group, kex: serverInfo.kex, helloRetry: serverInfo.helloRetry },
        { suite: info.suite, group: info.group, kex: info.kex, helloRetry: info.helloRetry },
        `${name}: the server agrees`,
      );
    }
    for (const [g, s] of servers) tt.same(s.errors.map((e) => e.message), [], `${crypto.name}: server for ${g} saw no error`);
  });
}
