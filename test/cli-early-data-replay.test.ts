/**
 * `qkd-tls server --max-early-data N` and a replayed first flight (RFC 8446 §8): the server makes one replay guard
 * for all its connections, accepts the 0-RTT data of a ClientHello once, and says on its handshake line that a
 * replay's 0-RTT was rejected as one. Before, every copy's early data was accepted and echoed.
 *
 * The replay is a twin client: the same key and the same (seeded) randomness, so the same first flight, byte for
 * byte (test/early-data-replay.test.ts checks that), which can complete the handshake so that the line is printed.
 */
import t from 'tap';
import { once } from 'node:events';
import { fromHex, utf8 } from '../lib/codec/bytes.js';
import { nodeProvider } from '../lib/crypto/node.js';
import { connect } from '../lib/transport/node.js';
import { jsonEvents, type Peer, PSK_HEX, PSK_IDENTITY, spawnQkdTls, type Tap } from './helpers/peers.js';
import { seededRandom, withRandom } from './helpers/pair.js';

const WAIT = 15_000;
const psk = { identity: utf8(PSK_IDENTITY), secret: fromHex(PSK_HEX), hash: 'SHA-256' as const };

async function start(t: Tap, extra: string[]): Promise<{ server: Peer; port: number }> {
  const server = spawnQkdTls(t, ['server', '--listen', '127.0.0.1:0', '--psk', PSK_HEX, '--identity', PSK_IDENTITY, '--max-early-data', '1024', ...extra]);
  const text = await server.waitFor(/"?listening"?[:,] ?"?address"?[=:]"?127\.0\.0\.1:\d+/, WAIT, 'stderr');
  return { server, port: Number(/127\.0\.0\.1:(\d+)/.exec(text)![1]) };
}

/** A client with 0-RTT data and randomness from `seed`; resolves what the echo server sent back. */
async function client(port: number, seed: number): Promise<string> {
  const c = connect({ port, crypto: withRandom(nodeProvider, seededRandom(seed)), psks: [psk], earlyData: utf8('early echo') });
  const chunks: Buffer[] = [];
  c.on('data', (d: Buffer) => chunks.push(d));
  await once(c, 'secureConnect');
  c.end();
  await once(c, 'close');
  return Buffer.concat(chunks).toString();
}

t.test('--json: the replay is a handshake line with earlyData "rejected" and earlyDataRejection "replay"', async (t) => {
  const { server, port } = await start(t, ['--json']);
  t.equal(await client(port, 501), 'early echo', 'the first copy: the early data is echoed');
  t.equal(await client(port, 501), '', 'the replay: nothing is echoed');
  await server.waitFor((s) => jsonEvents(s).filter((e) => e.event === 'handshake').length >= 2, WAIT, 'stderr');
  const lines = jsonEvents(server.stderr).filter((e) => e.event === 'handshake');
  t.match(lines[0], { earlyData: 'accepted' }, 'first: accepted');
  t.notOk('earlyDataRejection' in lines[0], 'first: no rejection field');
  t.match(lines[1], { earlyData: 'rejected', earlyDataRejection: 'replay' }, 'the replay: rejected, as a replay');
  await server.kill('SIGTERM');
});

t.test('text: the replay line says "early-data=rejected (replay: ...)"', async (t) => {
  const { server, port } = await start(t, []);
  await client(port, 502);
  await client(port, 502);
  const text = await server.waitFor((s) => (s.match(/^handshake: /gm) ?? []).length >= 2, WAIT, 'stderr');
  const lines = text.split('\n').filter((l) => l.startsWith('handshake: '));
  t.match(lines[0], / early-data=accepted /, 'first: accepted');
  t.match(lines[1], / early-data=rejected \(replay: this ClientHello had its 0-RTT accepted before, or the replay register is full\) /, 'the replay, in words');
  await server.kill('SIGTERM');
});
