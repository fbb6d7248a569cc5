/**
 * `--groups` and `--key-shares` on the command line: group names in any case, the JSON handshake line naming
 * the group by its IANA name on both ends, and unknown names refused as usage errors.
 */
import t from 'tap';
import { jsonEvent, PSK_HEX, PSK_IDENTITY, spawnQkdTls } from './helpers/peers.js';

/**
 * Bounds on waits for a state (a line printed, a process ended), only to catch a hang: each subtest starts up to
 * four processes one after another, and their start scales with the machine's load. On 2 cores at a load of ~20,
 * 10 s (and the subtests' 30 s) ran out while a client was starting: generous, then.
 */
const WAIT = 60_000;
const SUBTEST = { timeout: 6 * WAIT };
const KEY = ['--psk', PSK_HEX, '--identity', PSK_IDENTITY];

t.test('qkd-tls client -> qkd-tls server with --groups x25519mlkem768,x25519 and two key shares', SUBTEST, async (tt) => {
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

t.test('unknown group names and key shares outside --groups are usage errors', SUBTEST, async (tt) => {
  const bad = spawnQkdTls(tt, ['client', '--connect', '127.0.0.1:9', ...KEY, '--groups', 'x25519,kyber768']);
  const exit = await bad.waitExit(WAIT);
  tt.not(exit.code, 0, 'exits non-zero');
  tt.match(bad.stderr, /--groups: unknown group "kyber768" \(known: .*X25519MLKEM768.*ffdhe2048/);
  const outside = spawnQkdTls(tt, ['client', '--connect', '127.0.0.1:9', ...KEY, '--groups', 'x25519', '--key-shares', 'ffdhe2048']);
  tt.not((await outside.waitExit(WAIT)).code, 0, 'exits non-zero');
  tt.match(outside.stderr, /--key-shares: ffdhe2048 is not among the groups offered/);
});

// The help's and README's example, `--key-shares X25519MLKEM768,x25519` "as browsers do", was a usage error without a
// --groups naming X25519MLKEM768 too ("X25519MLKEM768 is not among the groups offered"): the client's default
// groups have no hybrid (found in a README walkthrough). Without --groups, the key-share groups are offered first.
t.test('client --key-shares X25519MLKEM768,x25519 without --groups: offered first, no usage error', SUBTEST, async (tt) => {
  const server = spawnQkdTls(tt, ['server', '--listen', '127.0.0.1:0', ...KEY, '--json', '--once']);
  await server.waitFor((s) => jsonEvent(s, 'listening') !== undefined, WAIT, 'stderr');
  const port = String(jsonEvent(server.stderr, 'listening')!.address).split(':').pop()!;
  const client = spawnQkdTls(tt, ['client', '--connect', `127.0.0.1:${port}`, ...KEY, '--key-shares', 'X25519MLKEM768,x25519', '--json']);
  client.write('as browsers do\n');
  await client.waitFor('as browsers do\n', WAIT, 'stdout');
  client.end();
  tt.equal((await client.waitExit(WAIT)).code, 0, 'the client exits 0', { stderr: client.stderr });
  tt.equal((await server.waitExit(WAIT)).code, 0, 'the --once server exits 0');
  tt.match(jsonEvent(client.stderr, 'handshake'), { kex: 'psk_dhe_ke', group: 'X25519MLKEM768' }, 'the server took the hybrid share');
  tt.notOk(jsonEvent(client.stderr, 'handshake')?.helloRetry, 'no HelloRetryRequest');
  // The default groups are still offered after them: a server of secp256r1 only asks for that share (HelloRetryRequest).
  const secpOnly = spawnQkdTls(tt, ['server', '--listen', '127.0.0.1:0', ...KEY, '--groups', 'secp256r1', '--json', '--once']);
  await secpOnly.waitFor((s) => jsonEvent(s, 'listening') !== undefined, WAIT, 'stderr');
  const port2 = String(jsonEvent(secpOnly.stderr, 'listening')!.address).split(':').pop()!;
  const retry = spawnQkdTls(tt, ['client', '--connect', `127.0.0.1:${port2}`, ...KEY, '--key-shares', 'X25519MLKEM768,x25519', '--json']);
  retry.end();
  tt.equal((await retry.waitExit(WAIT)).code, 0, 'against a secp256r1-only server the client exits 0', { stderr: retry.stderr });
  tt.match(jsonEvent(retry.stderr, 'handshake'), { group: 'secp256r1', helloRetry: true }, 'secp256r1, a default group, after a HelloRetryRequest');
});
