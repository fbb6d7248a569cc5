/**
 * The proxy when things go wrong: the backend down, the Key Manager down (either side), the remote proxy
 * killed mid-stream, the client gone mid-transfer, a wrong key, a silent or garbage-speaking peer, idle
 * connections, the connection limit, and SIGTERM with connections open. In every case: no crash, one clear
 * log line per connection, an abnormal end never passed off as a clean one, and the other connections
 * carry on intact. Also the Key Manager happy path (QKD keys end to end, key IDs in the logs).
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import * as net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { parseKeySource } from '../bin/cli/key-source.js';
import type { ProxyKeySource } from '../lib/proxy/proxy.js';
import { startKmeSimulator } from '../lib/tools/kme/simulator.js';
import {
  backend,
  collector,
  echo,
  exchange,
  hashBack,
  KEY_HEX,
  listen,
  onEndOrError,
  oneService,
  proxyPair,
  PSK,
  servicePorts,
  sleep,
  spawnProxy,
  staticKeys,
  waitUntil,
} from './proxy-helpers.js';

const MiB = 1024 * 1024;
const LOCAL = '127.0.0.1';

/**
 * A connection that sends `total` bytes slowly (a chunk every `everyMs`), so that it is still open while
 * the test breaks something else; resolves like `exchange` (hashes of what went each way, or the error).
 */
function slowExchange(port: number, total: number, chunk = 64 * 1024, everyMs = 5, onFirstData?: () => void) {
  return new Promise<{ received: number; sent: number; error?: string; sentData: Buffer; receivedData: Buffer }>((resolve, reject) => {
    const sent: Buffer[] = [];
    const got: Buffer[] = [];
    const s = net.connect({ host: LOCAL, port, allowHalfOpen: true });
    const guard = setTimeout(() => (s.destroy(), reject(new Error('slow exchange did not finish in 30 s'))), 30_000);
    let n = 0;
    const done = (error?: string) => {
      clearTimeout(guard);
      const sentData = Buffer.concat(sent);
      const receivedData = Buffer.concat(got);
      resolve({ received: receivedData.length, sent: sentData.length, sentData, receivedData, ...(error ? { error } : {}) });
    };
    s.on('data', (d: Buffer) => {
      if (got.length === 0) onFirstData?.();
      got.push(d);
    });
    onEndOrError(
      s,
      () => (s.end(), done()),
      (e) => done(e.message),
    );
    s.once('connect', () => {
      const tick = setInterval(() => {
        if (s.destroyed) return clearInterval(tick);
        const c = randomBytes(Math.min(chunk, total - n));
        sent.push(c);
        n += c.length;
        s.write(c);
        if (n >= total) {
          clearInterval(tick);
          s.end();
        }
      }, everyMs);
    });
  });
}

/** Connects and resolves with how the connection ended: 'end' (clean FIN) or the error code. */
function connectAndWait(port: number, send = 'hello'): Promise<{ how: string; data: string }> {
  return new Promise((resolve) => {
    const s = net.connect({ host: LOCAL, port, allowHalfOpen: true }, () => s.write(send));
    let data = '';
    s.setEncoding('utf8');
    s.on('data', (d: string) => (data += d));
    onEndOrError(
      s,
      () => (s.end(), resolve({ how: 'end', data })),
      (e) => resolve({ how: (e as NodeJS.ErrnoException).code ?? e.message, data }),
    );
  });
}

async function closedPort(): Promise<number> {
  const s = net.createServer();
  const port = await listen(s);
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

t.test('backend down: connect-failed for new connections, the one in flight completes, recovery when it is back', async (t) => {
  const b = await backend(t, echo);
  const pair = await proxyPair(t, b.port);
  let flowing!: () => void;
  const started = new Promise<void>((r) => (flowing = r));
  const inFlight = slowExchange(pair.port, 2 * MiB, 64 * 1024, 5, flowing);
  await started; // bytes are coming back: the connection to the backend is up
  await new Promise<void>((r) => b.server.close(() => r())); // stops accepting; open connections go on
  const failed = await Promise.all([1, 2, 3].map(() => connectAndWait(pair.port)));
  for (const f of failed) t.equal(f.how, 'ECONNRESET', 'the application sees a reset, not a clean end');
  const r = await inFlight;
  t.notOk(r.error, 'the connection in flight was not disturbed');
  t.ok(r.receivedData.equals(r.sentData), `its ${r.sent} bytes came back intact`);
  await pair.serverLog.waitFor(() => pair.serverLog.records.filter((x) => x.end === 'connect-failed').length >= 3);
  const down = pair.serverLog.records.filter((x) => x.end === 'connect-failed');
  t.equal(down.length, 3, 'the server proxy logs connect-failed for each');
  t.match(down[0].error, /connect to 127\.0\.0\.1:\d+: connect ECONNREFUSED/);
  await pair.clientLog.waitFor(() => pair.clientLog.records.filter((x) => x.end === 'target-aborted').length >= 3);
  t.match(pair.clientLog.records.find((x) => x.end === 'target-aborted')!.error, /without close_notify/, 'the client proxy says the remote cut the stream');

  b.server.listen(b.port, LOCAL); // the backend is back on the same port
  await new Promise((r) => b.server.once('listening', r));
  const again = await exchange(pair.port, 100_000);
  t.equal(again.receivedHash, again.sentHash, 'new connections work again');
});

t.test('Key Manager: QKD keys end to end, then the KM down on either side', async (t) => {
  const kme = await startKmeSimulator({ insecureHttp: true, initialKeyCount: 20, rateBitsPerSecond: 0 });
  let kmeClosed = false;
  t.teardown(() => (kmeClosed ? undefined : kme.close()));
  const quiet = { onKmeEvent: () => {} };
  const source = (values: Record<string, unknown>): ProxyKeySource & { close(): void } => {
    const ks = parseKeySource({ 'kme-timeout': '1000', ...values }, quiet);
    t.teardown(() => ks.close());
    return ks;
  };
  const clientKeys = source({ kme: kme.master.url, 'sae-id': 'client-sae', 'peer-sae-id': ['server-sae'] });
  const serverKeys = source({ kme: kme.slave.url, 'sae-id': 'server-sae', 'peer-sae-id': ['client-sae'] });
  const b = await backend(t, hashBack);
  // One client proxy process with two services: "qkd" (keys from the KM) and "static" (a static PSK).
  const serverLog = collector();
  const qkdServer = await oneService(t, { name: 'qkd-in', role: 'server', accept: { host: LOCAL, port: 0 }, connect: { host: LOCAL, port: b.port }, keys: serverKeys }, serverLog.logger);
  const staticServer = await oneService(t, { name: 'static-in', role: 'server', accept: { host: LOCAL, port: 0 }, connect: { host: LOCAL, port: b.port }, keys: staticKeys() }, serverLog.logger);
  const deadKmeServer = await oneService(
    t,
    {
      name: 'dead-km-in',
      role: 'server',
      accept: { host: LOCAL, port: 0 },
      connect: { host: LOCAL, port: b.port },
      keys: source({ kme: `http://${LOCAL}:${await closedPort()}`, 'sae-id': 'server-sae', 'peer-sae-id': ['client-sae'] }),
    },
    serverLog.logger,
  );
  const clientLog = collector();
  const { startProxy } = await import('../lib/proxy/proxy.js');
  const client = await startProxy({
    services: [
      { name: 'qkd', role: 'client', accept: { host: LOCAL, port: 0 }, connect: { host: LOCAL, port: qkdServer.services[0].address.port }, keys: clientKeys },
      { name: 'static', role: 'client', accept: { host: LOCAL, port: 0 }, connect: { host: LOCAL, port: staticServer.services[0].address.port }, keys: staticKeys() },
      { name: 'to-dead-km', role: 'client', accept: { host: LOCAL, port: 0 }, connect: { host: LOCAL, port: deadKmeServer.services[0].address.port }, keys: clientKeys },
    ],
    logger: clientLog.logger,
  });
  t.teardown(() => client.close());
  const port = Object.fromEntries(client.services.map((s) => [s.name, s.address.port]));

  // Happy path: each connection takes a fresh QKD key; both proxies log the same key ID, never the key.
  for (let i = 0; i < 3; i++) {
    const r = await exchange(port.qkd, 50_000, { keep: true });
    t.equal(r.data!.toString(), `50000 ${r.sentHash}`, `QKD connection ${i + 1} carried its bytes`);
  }
  await serverLog.waitFor(() => serverLog.records.filter((r) => r.service === 'qkd-in').length >= 3);
  const clientIds = clientLog.records.filter((r) => r.service === 'qkd').map((r) => r.keyId);
  const serverIds = serverLog.records.filter((r) => r.service === 'qkd-in').map((r) => r.keyId);
  t.equal(new Set(clientIds).size, 3, 'three connections, three different keys');
  for (const id of clientIds) t.match(id, /^[0-9a-f]{8}-[0-9a-f]{4}-/, 'the key ID (a UUID) is logged');
  t.same([...serverIds].sort(), [...clientIds].sort(), 'the server resolved the same key IDs from its own KM');

  // The server's KM unreachable: that server proxy logs key-unavailable; the client sees the alert.
  const r1 = await connectAndWait(port['to-dead-km']);
  t.equal(r1.how, 'ECONNRESET');
  const deadRec = await serverLog.waitFor((r) => r.service === 'dead-km-in');
  t.equal(deadRec.end, 'key-unavailable');
  t.match(deadRec.error, /key source: .*(ECONNREFUSED|connect)/i);
  const deadClient = await clientLog.waitFor((r) => r.service === 'to-dead-km');
  t.equal(deadClient.end, 'handshake-failed');
  t.equal(deadClient.alertDirection, 'received', 'the client proxy names the alert it received');

  // Both KMs down: the client proxy cannot get a key, says so, and does not even call the remote proxy.
  await kme.close();
  kmeClosed = true;
  const before = serverLog.records.length;
  const failures = await Promise.all([1, 2].map(() => connectAndWait(port.qkd)));
  for (const f of failures) t.equal(f.how, 'ECONNRESET', 'the application sees a reset');
  await clientLog.waitFor(() => clientLog.records.filter((r) => r.service === 'qkd').length >= 5);
  const noKey = clientLog.records.filter((r) => r.service === 'qkd').slice(3);
  t.same(
    noKey.map((r) => r.end),
    ['key-unavailable', 'key-unavailable'],
    'the client proxy logs key-unavailable for both',
  );
  for (const r of noKey) t.match(r.error, /^key source: /);
  // Meanwhile the static service of the same process is unaffected.
  const s = await exchange(port.static, 300_000, { keep: true });
  t.equal(s.data!.toString(), `300000 ${s.sentHash}`, 'the static-PSK service still works');
  await serverLog.waitFor((r) => r.service === 'static-in');
  t.equal(serverLog.records.filter((r) => r.service === 'qkd-in').length, serverLog.records.filter((r) => r.service === 'qkd-in' && r.end === 'closed').length);
  t.equal(serverLog.records.length, before + 1, 'no connection reached the remote proxy without a key');
});

t.test('remote proxy killed mid-stream: target-aborted, resets, other connections intact, no crash', async (t) => {
  const b = await backend(t, echo);
  const remote = await spawnProxy(t, ['--role', 'server', '--accept', `${LOCAL}:0`, '--connect', `${LOCAL}:${b.port}`, '--psk', KEY_HEX, '--identity', 'k1', '--json']);
  const { server: remotePort } = await servicePorts(remote, ['server']);
  const healthy = await proxyPair(t, b.port); // an in-process pair that stays up
  const clientLog = collector();
  const { startProxy } = await import('../lib/proxy/proxy.js');
  const client = await startProxy({
    services: [
      { name: 'to-remote', role: 'client', accept: { host: LOCAL, port: 0 }, connect: { host: LOCAL, port: remotePort }, keys: staticKeys() },
      { name: 'to-healthy', role: 'client', accept: { host: LOCAL, port: 0 }, connect: { host: LOCAL, port: healthy.serverPort }, keys: staticKeys() },
    ],
    logger: clientLog.logger,
  });
  t.teardown(() => client.close());
  const [toRemote, toHealthy] = client.services.map((s) => s.address.port);

  const flowing: Promise<void>[] = [];
  // Far more than can be sent before the kill (at least 5 s of ticks), so that no doomed stream can finish
  // normally first however slowly the machine runs.
  const doomedSize = 64 * MiB;
  const doomed = [1, 2, 3].map(() => {
    let f!: () => void;
    flowing.push(new Promise<void>((r) => (f = r)));
    return slowExchange(toRemote, doomedSize, 64 * 1024, 5, f);
  });
  const survivors = [1, 2].map(() => slowExchange(toHealthy, MiB));
  await Promise.all(flowing); // all three carry data through the remote proxy
  remote.child.kill('SIGKILL');
  const cut = await Promise.all(doomed);
  for (const c of cut) {
    t.ok(c.error, `a cut stream ends with an error (${c.error}), not a clean end`);
    t.ok(c.received < doomedSize, `it got part of the stream (${c.received} bytes)`);
  }
  for (const s of await Promise.all(survivors)) t.ok(!s.error && s.receivedData.equals(s.sentData), 'the other connections are intact');
  await clientLog.waitFor(() => clientLog.records.filter((r) => r.service === 'to-remote').length >= 3);
  for (const r of clientLog.records.filter((x) => x.service === 'to-remote')) {
    t.equal(r.end, 'target-aborted');
    t.ok(r.bytesUp > 0, 'the line tells how far it got');
  }
  const after = await connectAndWait(toRemote);
  t.equal(after.how, 'ECONNRESET');
  const refused = await clientLog.waitFor((r) => r.end === 'connect-failed');
  t.match(refused.error, /ECONNREFUSED/, 'later connections: connect-failed, named');
  const ok = await exchange(toHealthy, 10_000);
  t.equal(ok.receivedHash, ok.sentHash, 'the client proxy still serves');
});

t.test('client gone mid-transfer: peer-aborted on both proxies, backend told, others intact', async (t) => {
  const backendSaw: string[] = [];
  const b = await backend(t, (s) => {
    s.once('data', (d: Buffer) => {
      if (d.toString() === 'firehose') {
        // Stream until the other side goes away.
        const chunk = Buffer.alloc(64 * 1024, 1);
        const pump = (): void => {
          while (!s.destroyed && s.write(chunk));
        };
        s.on('drain', pump);
        s.on('error', (e) => backendSaw.push((e as NodeJS.ErrnoException).code ?? e.message));
        s.on('close', () => backendSaw.push('close'));
        pump();
      } else {
        s.unshift(d);
        echo(s);
      }
    });
  });
  const pair = await proxyPair(t, b.port);
  const others = [1, 2].map(() => slowExchange(pair.port, MiB));
  for (const how of ['reset', 'close'] as const) {
    await new Promise<void>((resolve) => {
      const s = net.connect({ host: LOCAL, port: pair.port }, () => s.write('firehose'));
      let got = 0;
      s.on('data', (d: Buffer) => {
        got += d.length;
        if (got > 2 * MiB) {
          if (how === 'reset') s.resetAndDestroy();
          else s.destroy();
          resolve();
        }
      });
    });
  }
  for (const o of await Promise.all(others)) t.ok(!o.error && o.receivedData.equals(o.sentData), 'the other connections are intact');
  const c = await Promise.all([0, 1].map((i) => pair.clientLog.waitFor((r) => r.end === 'peer-aborted' && pair.clientLog.records.filter((x) => x.end === 'peer-aborted').length > i)));
  t.equal(c.length, 2);
  const cl = pair.clientLog.records.filter((r) => r.end === 'peer-aborted');
  t.equal(cl.length, 2, 'the client proxy logs peer-aborted for both (reset and plain close)');
  for (const r of cl) t.ok(r.bytesDown > 2 * MiB, `with the bytes that got through (${r.bytesDown})`);
  await pair.serverLog.waitFor(() => pair.serverLog.records.filter((r) => r.end === 'peer-aborted').length >= 2);
  t.match(pair.serverLog.records.find((r) => r.end === 'peer-aborted')!.error, /without close_notify/, 'the server proxy: TLS cut without close_notify');
  await waitUntil(() => backendSaw.filter((x) => x === 'close').length >= 2, () => `the backend connections to close (${backendSaw.join(', ')})`);
  t.equal(backendSaw.filter((x) => x === 'close').length, 2, 'the backend connections were closed too');
  t.equal(pair.client.stats().active, 0);
  t.equal(pair.server.stats().active, 0);
});

t.test('an application that resets while the proxy has not read all it sent: an abort, never a clean close', async (t) => {
  // Node 20 reports such a reset as a clean end of stream (libuv's short read after POLLHUP); the proxy must
  // not pass it on as a half-close (close_notify), or the backend would take a truncated upload as complete.
  const b = await backend(t, (s) => {
    s.write('ready');
    s.resume();
    s.on('end', () => s.end());
  });
  const pair = await proxyPair(t, b.port);
  for (let i = 0; i < 3; i++) {
    await new Promise<void>((resolve, reject) => {
      const s = net.connect({ host: LOCAL, port: pair.port });
      s.on('error', reject);
      s.once('data', () => {
        // Both proxies pipe now. Send more than one read takes (an odd size: the last read is a short one),
        // and reset in the same tick: the RST reaches the proxy's socket before the proxy has read the data.
        s.write(randomBytes(200_001));
        s.resetAndDestroy();
        resolve();
      });
    });
  }
  const client = await Promise.all([0, 1, 2].map((i) => pair.clientLog.waitFor(() => pair.clientLog.records.length > i)));
  const server = await Promise.all([0, 1, 2].map((i) => pair.serverLog.waitFor(() => pair.serverLog.records.length > i)));
  for (const r of pair.clientLog.records) {
    t.equal(r.end, 'peer-aborted', `the client proxy logs an abort (${r.error})`);
    t.match(r.error, /reset|ECONNRESET|EPIPE/);
  }
  for (const r of pair.serverLog.records) {
    t.equal(r.end, 'peer-aborted', `so does the server proxy (${r.error})`);
    t.match(r.error, /without close_notify/, 'the client proxy cut the TLS connection instead of closing it');
  }
  t.equal(client.length + server.length, 6);
});

t.test('an application that resets while the proxy still has bytes queued for it: the backend sees the reset, not a FIN', async (t) => {
  // Regression: with bytes queued towards the application, the proxy took Node 20's false end of stream (a reset
  // arriving while the proxy had not read all the application sent) as a FIN without asking the kernel, and
  // passed close_notify on: the backend got a clean end of a truncated upload, then the reset came too late.
  const backendSaw: string[] = [];
  const b = await backend(t, (s) => {
    let n = 0;
    s.on('data', (d: Buffer) => (n += d.length));
    onEndOrError(
      s,
      () => backendSaw.push(`FIN after ${n} bytes`),
      (e) => backendSaw.push(`error ${(e as NodeJS.ErrnoException).code}`),
    );
    s.write(randomBytes(8 * 1024 * 1024)); // more than the loopback buffers hold: some stays queued in the client proxy
  });
  const pair = await proxyPair(t, b.port);
  const open = (pair.client as unknown as { open: Set<{ accepted: net.Socket }> }).open;
  for (let i = 0; i < 3; i++) {
    const s = net.connect({ host: LOCAL, port: pair.port });
    s.on('error', () => {});
    await new Promise((resolve) => s.once('data', resolve));
    s.pause();
    await waitUntil(() => [...open].some((c) => c.accepted.writableLength > 0), 'the client proxy to have bytes queued for the application');
    s.write(randomBytes(200_001));
    s.resetAndDestroy();
    await pair.clientLog.waitFor(() => pair.clientLog.records.length > i);
    // Until the backend has seen how its connection ended: without it, the check below would hold vacuously.
    await waitUntil(() => backendSaw.length > i, () => `the backend to see connection ${i + 1} end (${backendSaw.join(', ')})`);
  }
  t.same(
    backendSaw.filter((x) => !x.startsWith('error')),
    [],
    `the backend never got a clean end of the truncated uploads (${backendSaw.join(', ')})`,
  );
  await pair.serverLog.waitFor(() => pair.serverLog.records.length === 3);
  for (const r of [...pair.clientLog.records, ...pair.serverLog.records]) t.equal(r.end, 'peer-aborted', `an abort on both proxies (${r.error})`);
});

t.test('wrong key, silent peer, garbage: handshake-failed with the reason, the proxy carries on', async (t) => {
  const b = await backend(t, echo);
  const wrongKey = { ...PSK, secret: Buffer.alloc(32, 9) };
  // The default handshake timeout here: a short one could end these handshakes first on a loaded machine.
  const pair = await proxyPair(t, b.port, { client: { keys: staticKeys([wrongKey]) } });
  const r = await connectAndWait(pair.port);
  t.equal(r.how, 'ECONNRESET');
  const c = await pair.clientLog.waitFor(() => true);
  const s = await pair.serverLog.waitFor(() => true);
  t.equal(c.end, 'handshake-failed');
  t.equal(s.end, 'handshake-failed');
  t.equal(s.alert, 'decrypt_error', 'the server names the alert (a binder that does not verify)');
  t.equal(s.alertDirection, 'sent');
  t.equal(c.alert, 'decrypt_error');
  t.equal(c.alertDirection, 'received');

  // Plain HTTP sent to the TLS port.
  const garbage = net.connect({ host: LOCAL, port: pair.serverPort }, () => garbage.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n'));
  garbage.on('error', () => {});
  const g = await pair.serverLog.waitFor((x) => x.id === 2);
  t.equal(g.end, 'handshake-failed');
  t.ok(g.alert, `names the alert (${g.alert})`);
  garbage.destroy();

  // A client that connects and says nothing: the handshake timeout (short, on a pair of its own) ends it.
  const quick = await proxyPair(t, b.port, { server: { tls: { handshakeTimeout: 300 } } });
  const silent = net.connect({ host: LOCAL, port: quick.serverPort });
  silent.on('error', () => {});
  const timedOut = await quick.serverLog.waitFor(() => true);
  t.equal(timedOut.end, 'handshake-failed');
  t.match(timedOut.error, /timed out after 300 ms/);
  silent.destroy();
});

t.test('idle timeout and connection limit', async (t) => {
  const b = await backend(t, echo);
  const pair = await proxyPair(t, b.port, { client: { idleTimeoutMs: 500, maxConnections: 2 } });
  const idle = await connectAndWait(pair.port, 'ping');
  t.equal(idle.data, 'ping', 'data flowed first');
  t.equal(idle.how, 'ECONNRESET', 'then, idle, it was reset');
  const rec = await pair.clientLog.waitFor(() => true);
  t.equal(rec.end, 'idle-timeout');
  t.equal(rec.bytesUp, 4);

  // Two held connections fill the limit; the third is refused at once and logged; after one ends, room again.
  // (On a pair of its own without the short idle timeout: there, a held connection could idle out before the
  // third arrives on a loaded machine, and the third would be let in.)
  const limited = await proxyPair(t, b.port, { client: { maxConnections: 2 } });
  const held = [1, 2].map(() => net.connect({ host: LOCAL, port: limited.port }));
  for (const h of held) h.on('error', () => {});
  await Promise.all(held.map((h) => new Promise((r) => h.once('connect', r))));
  await waitUntil(() => limited.client.stats().active === 2, 'the proxy holds both connections');
  const third = await connectAndWait(limited.port);
  t.equal(third.how, 'ECONNRESET');
  const rejected = await limited.clientLog.waitFor((r) => r.end === 'rejected');
  t.match(rejected.error, /connection limit reached \(2 open\)/);
  held[0].destroy();
  await waitUntil(() => limited.client.stats().active === 1, 'the proxy lets the destroyed connection go');
  const later = await exchange(limited.port, 1000);
  t.equal(later.receivedHash, later.sentHash, 'a new connection fits once one has ended');
  held[1].destroy();
});

t.test('SIGTERM: stop accepting, let open connections finish, cut the rest at the deadline, exit 0', async (t) => {
  const b = await backend(t, echo);
  const dir = mkdtempSync(join(tmpdir(), 'qkd-proxy-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  // The spawned client proxy speaks to a server proxy in this process.
  const serverLog = collector();
  const serverService = { name: 'srv', role: 'server' as const, accept: { host: LOCAL, port: 0 }, connect: { host: LOCAL, port: b.port }, keys: staticKeys() };
  const server = await oneService(t, serverService, serverLog.logger);
  const file = join(dir, 'p.conf');
  const config = ['json = yes', `psk = ${KEY_HEX}`, 'identity = k1', 'drain-timeout = 3s', '[in]', 'role = client', `accept = ${LOCAL}:0`];
  writeFileSync(file, [...config, `connect = ${LOCAL}:${server.services[0].address.port}`].join('\n'), { mode: 0o600 });
  const p = await spawnProxy(t, ['--config', file]);
  const { in: port } = await servicePorts(p, ['in']);
  const busy = slowExchange(port, 1536 * 1024, 32 * 1024, 20); // about a second of traffic
  const stuck = net.connect({ host: LOCAL, port }); // never sends, never ends
  let stuckEnd = '';
  stuck.on('error', (e) => (stuckEnd = (e as NodeJS.ErrnoException).code ?? e.message));
  await new Promise((r) => stuck.once('connect', r));
  // Both connections are open through the spawned proxy once the server proxy (in this process) has both.
  await waitUntil(() => server.stats().active === 2, () => `the server proxy to hold both connections (${server.stats().active})`);
  p.child.kill('SIGTERM');
  await p.waitFor((o) => o.event === 'draining');
  const refused = await connectAndWait(port);
  t.equal(refused.how, 'ECONNREFUSED', 'no new connections once draining');
  const r = await busy;
  t.notOk(r.error, 'the busy connection finished normally');
  t.ok(r.receivedData.equals(r.sentData), `all of its ${r.sent} bytes made it`);
  t.equal(await p.exited, 0, 'exit code 0');
  const lines = p.lines.map((l) => JSON.parse(l) as Record<string, unknown>);
  const conns = lines.filter((l) => l.event === 'connection');
  t.same(conns.map((c) => c.end).sort(), ['closed', 'shutdown'], 'one line per connection: the busy one closed, the stuck one cut');
  t.equal(stuckEnd, 'ECONNRESET', 'the cut connection was reset');
  t.ok(lines.some((l) => l.event === 'stopped'), 'it says it stopped');
});

t.test('WebSocket service: close() also drops a connection that has not sent its upgrade request', async (t) => {
  // Regression: the HTTP server stopped accepting but kept such a connection (until its header timeout, 60 s).
  const { startProxy } = await import('../lib/proxy/proxy.js');
  const p = await startProxy({
    services: [{ name: 'ws', role: 'server', accept: { host: LOCAL, port: 0 }, connect: { host: LOCAL, port: 9 }, keys: staticKeys(), websocket: {} }],
  });
  t.teardown(() => p.close());
  const s = net.connect({ host: LOCAL, port: p.services[0].address.port });
  s.on('error', () => {});
  t.teardown(() => s.destroy());
  await new Promise((resolve) => s.once('connect', resolve));
  s.write('GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n'); // headers not finished yet
  await sleep(50);
  const closed = new Promise<boolean>((resolve) => {
    s.once('close', () => resolve(true));
    setTimeout(() => resolve(false), 5000);
  });
  await p.close();
  t.ok(await closed, 'the connection was closed');
});
