/**
 * startProxy checks each service's role and addresses before it listens. Unchecked, a `connect` port out of range
 * (70000, -1, a string) was taken, the service listened, and the first connection crashed the whole process:
 * net.connect threw ERR_SOCKET_BAD_PORT from a promise callback (client role: an unhandled rejection) or from the
 * 'secure' event (server role: an uncaught exception), taking every other connection down with it. A host that is
 * not a string made startProxy reject only after it had bound its port ("host.includes is not a function"),
 * leaving that port listening, and a role other than client or server crashed on the first connection too.
 * The WebSocket bridge took such an allow-list target too: each connection to it then failed, reported as if the
 * application's onConnection callback had thrown.
 */
import t from 'tap';
import { startProxy, type ServiceConfig } from '../lib/proxy/proxy.js';
import { startWebSocketBridge, type BridgeTarget } from '../lib/proxy/ws-bridge.js';
import { makePsk } from './helpers/pair.js';
import { serviceConfig } from './proxy-helpers.js';

type Tap = Pick<typeof t, 'type' | 'match' | 'equal' | 'fail'>;

const LOCAL = '127.0.0.1';
const psk = makePsk('proxy-service-addresses');

const service = (more: Record<string, unknown>): ServiceConfig => serviceConfig(more, [psk]);

/** Listening TCP servers of this process (what a startProxy that rejected must not leave behind). */
function listeningServers(): number {
  return process.getActiveResourcesInfo().filter((r) => r === 'TCPServerWrap').length;
}

/** startProxy must refuse `config` with `type`, naming `field`, before it listens; a proxy it started anyway is closed. */
async function refuses(t: Tap, config: ServiceConfig, type: typeof TypeError | typeof RangeError, field: RegExp, what: string): Promise<void> {
  const before = listeningServers();
  try {
    const proxy = await startProxy({ services: [config] });
    await proxy.close();
    t.fail(`${what}: startProxy accepted it (the service listened; its first connection would crash the process)`);
  } catch (e) {
    t.type(e, type, `${what}: a ${type.name}`);
    t.match((e as Error).message, /service "svc"/, `${what}: the message names the service`);
    t.match((e as Error).message, field, `${what}: the message names the field`);
  }
  t.equal(listeningServers(), before, `${what}: nothing is left listening`);
}

for (const role of ['client', 'server'] as const) {
  t.test(`startProxy, ${role} role: a connect or accept port out of range is a RangeError before anything listens`, async (t) => {
    for (const port of [70000, 65536, -1, 1.5, NaN, 0]) {
      await refuses(t, service({ role, connect: { host: LOCAL, port } }), RangeError, /connect\.port/, `connect port ${port}`);
    }
    for (const port of [70000, -1, 1.5]) {
      await refuses(t, service({ role, accept: { host: LOCAL, port } }), RangeError, /accept\.port/, `accept port ${port}`);
    }
    await refuses(t, service({ role, connect: { host: LOCAL, port: '8443' } }), RangeError, /connect\.port/, 'connect port as a string');
    await refuses(t, service({ role, connect: { host: 5, port: 9 } }), TypeError, /connect\.host/, 'connect host a number');
    await refuses(t, service({ role, accept: { host: '', port: 0 } }), TypeError, /accept\.host/, 'accept host empty');
    await refuses(t, service({ role, connect: undefined }), TypeError, /connect/, 'no connect address');
  });
}

t.test('startProxy: a role other than client or server is a TypeError before anything listens', async (t) => {
  await refuses(t, service({ role: 'Client' }), TypeError, /role/, 'role "Client"');
  await refuses(t, service({ role: undefined }), TypeError, /role/, 'no role');
});

t.test('startProxy: the extremes of the range are taken (accept port 0 picks a free port; connect port 65535)', async (t) => {
  const proxy = await startProxy({ services: [service({ connect: { host: LOCAL, port: 65535 } })] });
  t.ok(proxy.services[0].address.port > 0, 'listening on a free port');
  await proxy.close();
});

t.test('startWebSocketBridge: an allowed target out of range is refused before it listens', async (t) => {
  const bad: [string, unknown, typeof TypeError | typeof RangeError][] = [
    ['port 70000', { host: LOCAL, port: 70000 }, RangeError],
    ['port 0', { host: LOCAL, port: 0 }, RangeError],
    ['port "x"', { host: LOCAL, port: 'x' }, RangeError],
    ['host 5', { host: 5, port: 9 }, TypeError],
  ];
  for (const [what, target, type] of bad) {
    const before = listeningServers();
    try {
      const bridge = await startWebSocketBridge({ host: LOCAL, port: 0, allow: [{ host: LOCAL, port: 9 }, target as BridgeTarget] });
      await bridge.close();
      t.fail(`${what}: the bridge started with it (each connection to it would fail)`);
    } catch (e) {
      t.type(e, type, `${what}: a ${type.name}`);
      t.match((e as Error).message, /allow\[1\]/, `${what}: the message names the target`);
    }
    t.equal(listeningServers(), before, `${what}: nothing is left listening`);
  }
});
