/**
 * Finite-field psk_dhe_ke (RFC 7919 ffdhe2048 and ffdhe3072, RFC 8446 §4.2.8.1) against OpenSSL 3.0 and
 * GnuTLS 3.7, both directions, on both of qkd-tls's crypto providers, each case checking the echoed bytes and
 * the group both sides name. OpenSSL: `s_server`/`s_client -psk HEX -psk_identity ID -groups ffdhe2048`.
 * GnuTLS: priority `...:+DHE-PSK:-GROUP-ALL:+GROUP-FFDHE2048` (DHE-PSK is GnuTLS's name for psk_dhe_ke over a
 * finite field; GnuTLS does not print the TLS 1.3 group, so its priority allowing that one group is the check).
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { createNobleProvider } from '../lib/crypto/noble.js';
import { createNodeProvider } from '../lib/crypto/node.js';
import type { CryptoProvider } from '../lib/crypto/provider.js';
import { libraryClient, libraryEchoServer } from './helpers/library.js';
import {
  gnutlsServer,
  opensslServer,
  jsonEvent,
  missingPrograms,
  type Peer,
  PSK_HEX,
  PSK_IDENTITY,
  readBytes,
  reversedLine,
  spawnPeer,
  spawnQkdTls,
  type TestLike,
  withTimeout,
} from './helpers/peers.js';

const WAIT = 10_000;
const GROUPS = ['ffdhe2048', 'ffdhe3072'] as const;
const PROVIDERS: [string, () => CryptoProvider][] = [
  ['node', () => createNodeProvider()],
  ['noble', () => createNobleProvider()],
];

// --- OpenSSL ------------------------------------------------------------------------------------------------------

const openssl = { timeout: 30_000, skip: missingPrograms(t, 'openssl') };

async function sServer(tt: TestLike, group: string): Promise<{ peer: Peer; port: number }> {
  return opensslServer(tt, ['-psk', PSK_HEX, '-psk_identity', PSK_IDENTITY, '-nocert', '-naccept', '1', '-rev', '-groups', group], WAIT);
}

for (const group of GROUPS) {
  for (const [pname, provider] of PROVIDERS) {
    t.test(`qkd-tls client (${pname}) -> openssl s_server -groups ${group}`, openssl, async (tt) => {
      const { peer, port } = await sServer(tt, group);
      const socket = await libraryClient(tt, port, { crypto: provider(), groups: [group] });
      tt.equal(socket.handshake!.group, group, `the client reports ${group}`);
      tt.equal(socket.handshake!.kex, 'psk_dhe_ke');
      const line = `finite field ${group}`;
      socket.write(line + '\n');
      tt.equal((await readBytes(socket, line.length + 1, WAIT)).toString('latin1'), reversedLine(line) + '\n', 's_server -rev answered');
      socket.end();
      await withTimeout(new Promise((resolve) => socket.once('close', resolve)), WAIT, 'the client to close');
      tt.equal((await peer.waitExit(WAIT)).code, 0, 's_server exits 0');
      tt.match(peer.output, 'Ciphersuite: TLS_AES_128_GCM_SHA256');
    });

    t.test(`openssl s_client -groups ${group} -> qkd-tls server (${pname})`, openssl, async (tt) => {
      const { port, sockets } = await libraryEchoServer(tt, { crypto: provider() });
      const client = spawnPeer(tt, 'openssl', ['s_client', '-connect', `127.0.0.1:${port}`, '-psk', PSK_HEX, '-psk_identity', PSK_IDENTITY, '-groups', group]);
      client.write(`hello over ${group}\n`);
      await client.waitFor(`hello over ${group}\n`, WAIT, 'stdout');
      tt.pass('s_client got its line echoed back');
      tt.equal(sockets[0]?.handshake?.group, group, `the default server accepts ${group}`);
      tt.match(client.stdout, /Server Temp Key: DH, (2048|3072) bits/, 's_client reports a finite-field key');
      client.end();
      tt.equal((await client.waitExit(WAIT)).code, 0, 's_client exits 0');
    });
  }
}

t.test('qkd-tls client CLI --groups FFDHE2048 -> openssl s_server', openssl, async (tt) => {
  const { peer, port } = await sServer(tt, 'ffdhe2048');
  const cli = spawnQkdTls(tt, ['client', '--connect', `127.0.0.1:${port}`, '--psk', PSK_HEX, '--identity', PSK_IDENTITY, '--groups', 'FFDHE2048', '--json']);
  cli.write('from the command line\n');
  await cli.waitFor(reversedLine('from the command line') + '\n', WAIT, 'stdout');
  cli.end();
  tt.equal((await cli.waitExit(WAIT)).code, 0, 'the client exits 0');
  tt.match(jsonEvent(cli.stderr, 'handshake'), { kex: 'psk_dhe_ke', group: 'ffdhe2048' }, 'the JSON line names the group by its IANA name');
  tt.equal((await peer.waitExit(WAIT)).code, 0);
});

// --- GnuTLS -------------------------------------------------------------------------------------------------------

const gnutls = { timeout: 30_000, skip: missingPrograms(t, 'gnutls-serv', 'gnutls-cli') };
const priority = (group: string): string => `NORMAL:-VERS-ALL:+VERS-TLS1.3:+DHE-PSK:-GROUP-ALL:+GROUP-${group.toUpperCase()}`;

for (const group of GROUPS) {
  for (const [pname, provider] of PROVIDERS) {
    t.test(`qkd-tls client (${pname}) -> gnutls-serv ${group}`, gnutls, async (tt) => {
      const dir = await mkdtemp(join(tmpdir(), 'qkd-tls-ffdhe-'));
      tt.teardown(() => rm(dir, { recursive: true, force: true }));
      const passwd = join(dir, 'psk.passwd');
      await writeFile(passwd, `${PSK_IDENTITY}:${PSK_HEX}\n`, { mode: 0o600 });
      const { peer, port } = await gnutlsServer(tt, ['--echo', '--pskpasswd', passwd, '--priority', priority(group), '--disable-client-cert'], WAIT);
      const socket = await libraryClient(tt, port, { crypto: provider(), groups: [group] });
      tt.equal(socket.handshake!.group, group, `the client reports ${group}`);
      const line = `gnutls over ${group}`;
      socket.write(line + '\n');
      tt.equal((await readBytes(socket, line.length + 1, WAIT)).toString('latin1'), line + '\n', 'echoed');
      socket.end();
      await withTimeout(new Promise((resolve) => socket.once('close', resolve)), WAIT, 'the client to close');
      // GnuTLS does not print the TLS 1.3 group; its priority allows this one group only, and our side names it.
      await peer.waitFor(`Connected as '${PSK_IDENTITY}'`, WAIT);
      tt.pass('gnutls-serv reports PSK authentication as our identity');
    });

    t.test(`gnutls-cli ${group} -> qkd-tls server (${pname})`, gnutls, async (tt) => {
      const { port, sockets } = await libraryEchoServer(tt, { crypto: provider() });
      const cli = spawnPeer(tt, 'gnutls-cli', ['--pskusername', PSK_IDENTITY, '--pskkey', PSK_HEX, '--priority', priority(group), '--port', String(port), '127.0.0.1']);
      cli.write(`gnutls-cli over ${group}\n`);
      await cli.waitFor(`gnutls-cli over ${group}\n`, WAIT, 'stdout');
      tt.pass('gnutls-cli got its line echoed back');
      tt.equal(sockets[0]?.handshake?.group, group, `the default server accepts ${group}`);
      tt.match(cli.output, `PSK authentication. Connected as '${PSK_IDENTITY}'`, 'gnutls-cli authenticated with the PSK (its priority allows this one group)');
      cli.end();
      tt.equal((await cli.waitExit(WAIT)).code, 0, 'gnutls-cli exits 0');
    });
  }
}
