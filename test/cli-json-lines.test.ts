/**
 * The command-line contract (shared/design.md, "Command line"): with --json, every report on stderr is one JSON
 * object per line. `--trace` given with --json wrote its text dissection between the JSON events (found by
 * review): a reader of the JSON lines failed at the first record. With --json it writes the JSON lines of
 * --trace-json.
 */
import t from 'tap';
import { jsonEvents, PSK_HEX, PSK_IDENTITY, runQkdTls, spawnQkdTls } from './helpers/peers.js';

/** The lines of `text` that are not one JSON object each. */
function notJson(text: string): string[] {
  return text
    .split('\n')
    .filter((line) => line !== '')
    .filter((line) => {
      try {
        const o: unknown = JSON.parse(line);
        return typeof o !== 'object' || o === null || Array.isArray(o);
      } catch {
        return true;
      }
    });
}

t.test('server and client with --json --trace: every stderr line is a JSON object, the trace among them', async (t) => {
  const key = ['--psk', PSK_HEX, '--identity', PSK_IDENTITY];
  const server = spawnQkdTls(t, ['server', '--listen', '127.0.0.1:0', ...key, '--json', '--trace']);
  const listening = await server.waitFor(/"address":"127\.0\.0\.1:(\d+)"/, 20_000, 'stderr');
  const port = /"address":"127\.0\.0\.1:(\d+)"/.exec(listening)![1];
  const client = await runQkdTls(['client', '--connect', `127.0.0.1:${port}`, ...key, '--json', '--trace'], { input: 'hello\n', ms: 30_000 });
  t.equal(client.code, 0, 'the client exits 0');
  t.equal(client.stdout, 'hello\n', 'the echo on stdout, nothing else');
  await server.waitFor(/"event":"handshake"/, 20_000, 'stderr');
  await server.kill('SIGTERM');
  for (const [name, stderr] of [
    ['client', client.stderr],
    ['server', server.stderr],
  ] as const) {
    t.same(notJson(stderr), [], `${name}: no line on stderr that is not a JSON object`);
    const events = jsonEvents(stderr).map((e) => e.event);
    t.ok(events.includes('trace'), `${name}: the trace is there, as JSON lines`);
    t.ok(events.includes('handshake'), `${name}: the handshake line`);
  }
});
