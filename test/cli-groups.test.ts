/**
 * `--groups` and `--key-shares` on the command line: group names in any case, the JSON handshake line naming
 * the group by its IANA name on both ends, and unknown names refused as usage errors.
 */
import t from 'tap';
import { jsonEvent, PSK_HEX, PSK_IDENTITY, spawnQkdTls } from './helpers/peers.js';

const WAIT = 10_000;
const KEY = ['--psk', PSK_HEX, '--identity', PSK_IDENTITY];

t.test('qkd-tls client -> qkd-tls server with --groups x25519mlkem768,x25519 and two key shares', { timeout: 30_000 }, async (tt) => {
  const server = spawnQkdTls(tt, ['server', '--listen', '127.0.0.1:0', ...KEY, '--groups', 'X25519MLKEM768,x25519', '--json', '--once']);
  await server.waitFor((s) => jsonEvent(s, 'listening') !== undefined, WAIT, 'stderr');
  const port = String(jsonEvent(server.stderr, 'listening')!.address).split(':').pop()!;
  const client = spawnQkdTls(tt, ['client', '--connect', `127.0.0.1:${port}`, ...KEY, '--groups', 'x25519mlkem768,X25519', '--key-shares', 'X25519MLKEM768,x25519', '--json']);
  client.write('post-quantum on the command line\n');
  await client.waitFor('post-quantum on the command line\n', WAIT, 'stdout');
  client.end();
  tt.equal((await client.waitExit(WAIT)).code, 0, 'the client exits 0');
  tt.equal((await server.waitExit(WAIT)).code, 0, 'the --once server exits 0');
  tt.match(jsonEvent(client.stderr, 'handshake'), { kex: 'psk_dhe_ke', group: 'X25519MLKEM768' }, 'client: "group":"X25519MLKEM768"');
  tt.match(jsonEvent(server.stderr, 'handshake'), { kex: 'psk_dhe_ke', group: 'X25519MLKEM768' }, 'server: "group":"X25519MLKEM768"');
  tt.notOk(jsonEvent(client.stderr, 'handshake')?.helloRetry, 'no HelloRetryRequest');
});

t.test('unknown group names and key shares outside --groups are usage errors', { timeout: 30_000 }, async (tt) => {
  const bad = spawnQkdTls(tt, ['client', '--connect', '127.0.0.1:9', ...KEY, '--groups', 'x25519,kyber768']);
  const exit = await bad.waitExit(WAIT);
  tt.not(exit.code, 0, 'exits non-zero');
  tt.match(bad.stderr, /--groups: unknown group "kyber768" \(known: .*X25519MLKEM768.*ffdhe2048/);
  const outside = spawnQkdTls(tt, ['client', '--connect', '127.0.0.1:9', ...KEY, '--groups', 'x25519', '--key-shares', 'ffdhe2048']);
  tt.not((await outside.waitExit(WAIT)).code, 0, 'exits non-zero');
  tt.match(outside.stderr, /--key-shares: ffdhe2048 is not among the groups offered/);
});
