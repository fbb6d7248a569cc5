/**
 * `qkd-tls client --early-data FILE` never loses FILE: when the server rejects the 0-RTT data, the client sends
 * it again right after the handshake, before stdin (its --help says so; RFC 8446 §4.2.10 leaves resending to the
 * application). Before, the resend was left to the library's resendRejectedEarlyData, which resends only under
 * the PSK's earlyDataAlpn: with --alpn (a command-line PSK has no earlyDataAlpn) the data was silently dropped.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { jsonEvent, PSK_IDENTITY, spawnQkdTls, type Tap } from './helpers/peers.js';

const WAIT = 15_000;
const PSK_HEX = '5c1e0f3a9b8d7c6e5f4a3b2c1d0e9f8a7b6c5d4e3f2a1b0c9d8e7f6a5b4c3d2e';
const EARLY = 'the 0-RTT request\n';

/** `qkd-tls server` (an echo server) with the static key and `extra` options; resolves its port. */
async function echoServer(tt: Tap, extra: string[]): Promise<number> {
  const server = spawnQkdTls(tt, ['server', '--listen', '127.0.0.1:0', '--psk', PSK_HEX, '--identity', PSK_IDENTITY, ...extra]);
  const line = await server.waitFor(/listening: address=\S+/, WAIT, 'stderr');
  return Number(/listening: address=\S+:(\d+)/.exec(line)![1]);
}

const cases = [
  { name: 'rejected (no --max-early-data), with --alpn', server: ['--alpn', 'h2'], client: ['--alpn', 'h2'], status: 'rejected' },
  { name: 'rejected (no --max-early-data), without ALPN', server: [], client: [], status: 'rejected' },
  { name: 'accepted', server: ['--max-early-data', '1024'], client: [], status: 'accepted' },
] as const;

for (const c of cases) {
  t.test(`--early-data ${c.name}: the server echoes FILE once, then stdin`, async (tt) => {
    const dir = tt.testdir({});
    const file = join(dir, 'early.txt');
    writeFileSync(file, EARLY);
    const port = await echoServer(tt, [...c.server]);
    const client = spawnQkdTls(tt, ['client', '--connect', `127.0.0.1:${port}`, '--psk', PSK_HEX, '--identity', PSK_IDENTITY, '--early-data', file, '--json', ...c.client]);
    await client.waitFor(/"event":"handshake"/, WAIT, 'stderr');
    client.write('then stdin\n');
    await client.waitFor('then stdin\n', WAIT, 'stdout');
    client.end();
    const exit = await client.waitExit(WAIT);
    tt.equal(exit.code, 0, `exit code 0\n${client.transcript()}`);
    tt.match(jsonEvent(client.stderr, 'handshake'), { earlyData: c.status }, `0-RTT ${c.status}`);
    tt.equal(client.stdout, EARLY + 'then stdin\n', 'FILE echoed once, before stdin');
  });
}
