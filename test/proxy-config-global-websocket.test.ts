/**
 * `qkd-tls proxy --config`: the global section's service fields are defaults for every service, and a service
 * ignores those of the other role (bin/cli/roles.ts, `connect-on-data`). `websocket` (server role) and `origin`
 * (with websocket) were the exception: set globally, they made every client service (and every server service
 * over TCP) a usage error, "websocket: only the server role accepts TLS over WebSocket", so a file with one
 * WebSocket server service and one client service had to repeat them per section. Set in a service's own
 * section, they are still refused for the wrong role.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { WebSocket as WsClient } from 'ws';
import { EXITS_WITHIN_MS, runQkdTls } from './helpers/peers.js';
import { KEY_HEX, servicePorts, spawnProxy } from './proxy-helpers.js';

const LOCAL = '127.0.0.1';
const ORIGIN = 'http://page.example';

function configFile(t: { teardown(fn: () => unknown): void }, lines: string[]): string {
  const dir = mkdtempSync(join(tmpdir(), 'qkd-proxy-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'p.conf');
  writeFileSync(file, lines.join('\n'), { mode: 0o600 });
  return file;
}

/** Whether a WebSocket upgrade from `origin` to `port` opens (true) or is refused with its HTTP status. */
function upgrade(port: number, origin: string): Promise<true | number> {
  return new Promise((resolve, reject) => {
    const ws = new WsClient(`ws://${LOCAL}:${port}/`, { origin });
    ws.once('open', () => {
      ws.terminate();
      resolve(true);
    });
    ws.once('unexpected-response', (_req, res) => {
      ws.terminate();
      resolve(res.statusCode ?? 0);
    });
    ws.once('error', reject);
  });
}

t.test('global websocket and origin serve the WebSocket server service; client and TCP server services ignore them', async (t) => {
  const file = configFile(t, [
    'json = yes',
    `psk = ${KEY_HEX}`,
    'identity = k1',
    'websocket = yes',
    `origin = ${ORIGIN}`,
    '[in]',
    'role = client',
    `accept = ${LOCAL}:0`,
    `connect = ${LOCAL}:9`,
    '[ws]',
    'role = server',
    `accept = ${LOCAL}:0`,
    `connect = ${LOCAL}:9`,
    '[tcp]',
    'role = server',
    'websocket = no',
    `accept = ${LOCAL}:0`,
    `connect = ${LOCAL}:9`,
  ]);
  const p = await spawnProxy(t, ['--config', file]);
  const ports = await servicePorts(p, ['in', 'ws', 'tcp']);
  t.equal(await upgrade(ports.ws, ORIGIN), true, '[ws] accepts a WebSocket from the allowed origin');
  t.equal(await upgrade(ports.ws, 'http://other.example'), 403, '[ws] refuses another origin (the global origin applies)');
  t.ok(ports.in > 0 && ports.tcp > 0, 'the client service [in] and the TCP server service [tcp] listen too');
});

t.test("set in a service's own section, websocket and origin are still refused for the wrong role", async (t) => {
  const own = configFile(t, [`psk = ${KEY_HEX}`, 'identity = k1', '[in]', 'role = client', `accept = ${LOCAL}:0`, `connect = ${LOCAL}:9`, 'websocket = yes']);
  const r = await runQkdTls(['proxy', '--config', own], { ms: EXITS_WITHIN_MS });
  t.equal(r.code, 2);
  t.equal(r.stderr, `qkd-tls proxy: ${own}:7: [in] websocket: only the server role accepts TLS over WebSocket\n`);
  const origin = configFile(t, [`psk = ${KEY_HEX}`, 'identity = k1', '[back]', 'role = server', `accept = ${LOCAL}:0`, `connect = ${LOCAL}:9`, `origin = ${ORIGIN}`]);
  const o = await runQkdTls(['proxy', '--config', origin], { ms: EXITS_WITHIN_MS });
  t.equal(o.code, 2);
  t.equal(o.stderr, `qkd-tls proxy: ${origin}:7: [back] origin: goes with websocket\n`);
});
