/**
 * What a connection costs in keys: a client proxy took a key (a QKD key: enc_keys at its Key Manager, dec_keys at
 * the remote one) for every connection it accepted, at once, so a load balancer's or monitor's health check
 * (connect, then close, every few seconds) spent a key per probe on both sides. With `connectOnData`
 * (`--connect-on-data`, `connect-on-data = yes`) a client service waits for the application's first byte: a probe
 * that closes or resets before it costs no key and no connection, and is logged with end "no-data". A server service
 * spends nothing before a ClientHello names a key: pinned here with a counting key source and with the Key Manager
 * simulator's request log; its TCP probes (closed or reset before a byte) are logged "no-data" too, not
 * "handshake-failed" (a monitor's false alarm).
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import * as net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { WebSocket as WsClient } from 'ws';
import { parseKeySource } from '../bin/cli/key-source.js';
import type { Proxy, ProxyKeySource } from '../lib/proxy/proxy.js';
import { startKmeSimulator } from '../lib/tools/kme/simulator.js';
import { EXITS_WITHIN_MS, runQkdTls } from './helpers/peers.js';
import {
  backend,
  collector,
  echo,
  exchange,
  freePort,
  hashBack,
  KEY_HEX,
  onEndOrError,
  oneService,
  proxyPair,
  PSK,
  servicePorts,
  spawnProxy,
  waitUntil,
} from './proxy-helpers.js';

const LOCAL = '127.0.0.1';
const MiB = 1024 * 1024;

/**
 * Static test keys that count what is taken: `client` per clientPsks() call (one per connection), `server` per
 * lookup of the identities a ClientHello offers. A client's keys wait for `gate` when one is given.
 */
function countingKeys(gate?: Promise<void>): { keys: ProxyKeySource; counts: { client: number; server: number } } {
  const counts = { client: 0, server: 0 };
  const keys: ProxyKeySource = {
    clientPsks: async () => {
      counts.client++;
      await gate;
      return [PSK];
    },
    server: async (request) => {
      counts.server++;
      return request.identities.map(() => PSK);
    },
    description: 'counting test PSK',
  };
  return { keys, counts };
}

/**
 * A health check's probe: connects, then ends its side ('fin', and waits for the proxy's answer: 'end' for a clean
 * end, else the error code) or resets ('reset', once `accepted()` says the proxy holds the connection).
 */
async function probe(port: number, how: 'fin' | 'reset', accepted?: () => boolean): Promise<string> {
  const s = net.connect({ host: LOCAL, port, allowHalfOpen: true });
  const seen = new Promise<string>((resolve) => {
    onEndOrError(
      s,
      () => (s.end(), resolve('end')),
      (e) => resolve((e as NodeJS.ErrnoException).code ?? e.message),
    );
  });
  // (A refused connection may be reset before its 'connect' event.)
  const connected = await Promise.race([new Promise<boolean>((r) => s.once('connect', () => r(true))), seen.then(() => false)]);
  if (!connected) return seen;
  if (how === 'fin') {
    s.end();
    return seen;
  }
  if (accepted) await waitUntil(accepted, 'the proxy to hold the probe');
  s.resetAndDestroy();
  return 'reset';
}

/** The accepted sockets of a proxy's open connections (white box: to watch what it has read). */
function acceptedSockets(p: Proxy): net.Socket[] {
  return [...(p as unknown as { open: Set<{ accepted: net.Socket }> }).open].map((c) => c.accepted);
}

t.test('connectOnData: probes that close or reset before a byte take no key and open nothing; a real connection still works', async (t) => {
  const b = await backend(t, echo);
  const { keys, counts } = countingKeys();
  const pair = await proxyPair(t, b.port, { client: { connectOnData: true, keys }, server: { keys } });
  for (let i = 0; i < 5; i++) t.equal(await probe(pair.port, 'fin'), 'end', `FIN probe ${i + 1}: the proxy ends its side cleanly too`);
  for (let i = 0; i < 5; i++) await probe(pair.port, 'reset', () => pair.client.stats().accepted === 6 + i);
  await pair.clientLog.waitFor(() => pair.clientLog.records.length === 10);
  const fin = pair.clientLog.records.slice(0, 5);
  const reset = pair.clientLog.records.slice(5);
  for (const r of fin) {
    t.equal(r.end, 'no-data', 'a FIN probe: end "no-data"');
    t.equal(r.error, undefined, 'with no error');
  }
  for (const r of reset) {
    t.equal(r.end, 'no-data', 'a reset probe: end "no-data"');
    t.match(r.error, /^the application reset the connection before sending any data \(.*ECONNRESET/, 'which says it was reset');
  }
  for (const r of pair.clientLog.records) {
    t.same([r.bytesUp, r.bytesDown, r.identity, r.keyId], [0, 0, undefined, undefined], 'no bytes, no key');
  }
  t.same(counts, { client: 0, server: 0 }, 'no key was taken on either side');
  t.equal(pair.server.stats().accepted, 0, 'the remote proxy was never connected to');
  t.equal(pair.client.stats().ended['no-data'], 10, 'counted as no-data');
  t.equal(pair.client.stats().active, 0);

  // The same pair carries a real connection, with one key on each side.
  const r = await exchange(pair.port, 300_000, { chunk: 16 * 1024 });
  t.notOk(r.error, 'no error');
  t.equal(r.receivedHash, r.sentHash, 'the echo came back intact');
  t.same(counts, { client: 1, server: 1 }, 'one key for the connection that sent data');
  const rec = await pair.clientLog.waitFor((x) => x.id === 11);
  t.equal(rec.end, 'closed');
  t.equal(rec.identity, 'k1');
  t.equal(rec.bytesUp, 300_000);
});

t.test('connectOnData: bytes sent before the handshake is done arrive first and in order; the proxy reads only a buffer of them', async (t) => {
  let release!: () => void;
  const { keys, counts } = countingKeys(new Promise<void>((r) => (release = r)));
  const b = await backend(t, hashBack);
  const pair = await proxyPair(t, b.port, { client: { connectOnData: true, keys }, server: { keys } });
  const s = net.connect({ host: LOCAL, port: pair.port, allowHalfOpen: true });
  const got: Buffer[] = [];
  s.on('data', (d: Buffer) => got.push(d));
  const ended = new Promise<string | undefined>((resolve) =>
    onEndOrError(
      s,
      () => resolve(undefined),
      (e) => resolve(e.message),
    ),
  );
  await new Promise((r) => s.once('connect', r));
  t.equal(counts.client, 0, 'connected, no byte sent: no key asked for');
  const sent = createHash('sha256');
  let total = 0;
  const send = (d: Buffer): void => {
    sent.update(d);
    total += d.length;
    s.write(d);
  };
  send(randomBytes(1000));
  await waitUntil(() => counts.client === 1, 'the proxy to ask for a key once the first bytes came');
  // Two more chunks, each read by the proxy while the key (so the handshake) is still held back.
  send(randomBytes(3000));
  await waitUntil(() => acceptedSockets(pair.client)[0]?.bytesRead === 4000, 'the proxy to read the second chunk');
  send(randomBytes(5000));
  await waitUntil(() => acceptedSockets(pair.client)[0]?.bytesRead === 9000, 'the proxy to read the third chunk');
  t.equal(pair.server.stats().accepted, 0, 'the handshake has not begun');

  // Far more than the kernel's buffers hold: the proxy stops reading at its socket's buffer, and TCP flow control
  // holds the rest at the application (nothing is buffered without bound while the handshake waits).
  send(randomBytes(32 * MiB));
  let last = -1;
  let still = 0;
  await waitUntil(
    () => {
      const n = acceptedSockets(pair.client)[0].bytesRead;
      still = n === last ? still + 1 : 0;
      last = n;
      return still >= 30;
    },
    'the proxy to stop reading',
    30_000,
  );
  t.ok(last < 9000 + MiB, `the proxy read ${last} bytes of ${total} while the handshake waited`);
  t.comment(`${s.writableLength} bytes still queued at the application`);

  release();
  s.end();
  t.equal(await ended, undefined, 'the connection ended cleanly');
  t.equal(Buffer.concat(got).toString(), `${total} ${sent.digest('hex')}`, 'the backend got every byte, in order, then the end');
  const rec = await pair.clientLog.waitFor(() => true);
  t.equal(rec.end, 'closed');
  t.equal(rec.bytesUp, total);
  t.same(counts, { client: 1, server: 1 });
});

t.test('connectOnData: data and its end before the handshake; a failure after the first byte resets as without the option', async (t) => {
  const b = await backend(t, echo);
  let release!: () => void;
  const { keys, counts } = countingKeys(new Promise<void>((r) => (release = r)));
  const pair = await proxyPair(t, b.port, { client: { connectOnData: true, keys }, server: { keys } });
  // Bytes and the application's FIN, both before the key is there: the echo and the end still come back.
  const s = net.connect({ host: LOCAL, port: pair.port, allowHalfOpen: true }, () => s.end('ping'));
  let echoed = '';
  s.setEncoding('utf8');
  s.on('data', (d: string) => (echoed += d));
  const how = new Promise<string>((resolve) =>
    onEndOrError(
      s,
      () => (s.end(), resolve('end')),
      (e) => resolve((e as NodeJS.ErrnoException).code ?? e.message),
    ),
  );
  // Until the proxy has asked for the key and its socket has the bytes and the FIN (white box: the stream's state).
  const finReceived = (x: net.Socket | undefined): boolean => (x as unknown as { _readableState?: { ended: boolean } } | undefined)?._readableState?.ended === true;
  await waitUntil(() => counts.client === 1 && finReceived(acceptedSockets(pair.client)[0]), 'the proxy to have the bytes and the FIN');
  release();
  t.equal(await how, 'end', 'a clean end');
  t.equal(echoed, 'ping', 'the bytes came back');
  t.equal((await pair.clientLog.waitFor(() => true)).end, 'closed');

  // The key source fails, or the remote proxy is down, once the application has sent its first bytes: a reset, as
  // without the option, and the failure's own end in the log.
  const failing: ProxyKeySource = { clientPsks: () => Promise.reject(new Error('KME unreachable')), server: [PSK], description: 'failing' };
  const downPort = await freePort(); // nothing listens there
  const noKey = await proxyPair(t, b.port, { client: { connectOnData: true, keys: failing } });
  const noPeer = await proxyPair(t, b.port, { client: { connectOnData: true, connect: { host: LOCAL, port: downPort } } });
  for (const [p, end] of [
    [noKey, 'key-unavailable'],
    [noPeer, 'connect-failed'],
  ] as const) {
    const c = net.connect({ host: LOCAL, port: p.port, allowHalfOpen: true }, () => c.write('hello'));
    const seen = await new Promise<string>((resolve) =>
      onEndOrError(
        c,
        () => resolve('end'),
        (e) => resolve((e as NodeJS.ErrnoException).code ?? e.message),
      ),
    );
    t.equal(seen, 'ECONNRESET', `${end}: the application is reset`);
    t.equal((await p.clientLog.waitFor(() => true)).end, end, `${end}: logged as such`);
  }
});

t.test('connectOnData: the idle timeout ends a connection that sends nothing, without a key', async (t) => {
  const b = await backend(t, echo);
  const { keys, counts } = countingKeys();
  const pair = await proxyPair(t, b.port, { client: { connectOnData: true, idleTimeoutMs: 300, keys }, server: { keys } });
  const s = net.connect({ host: LOCAL, port: pair.port });
  const how = await new Promise<string>((resolve) =>
    onEndOrError(
      s,
      () => resolve('end'),
      (e) => resolve((e as NodeJS.ErrnoException).code ?? e.message),
    ),
  );
  t.equal(how, 'ECONNRESET', 'the silent application is reset');
  const rec = await pair.clientLog.waitFor(() => true);
  t.equal(rec.end, 'idle-timeout');
  t.equal(rec.error, 'no data from the application for 300 ms (no key was taken)');
  t.same(counts, { client: 0, server: 0 }, 'no key taken');
  t.equal(pair.server.stats().accepted, 0, 'nothing opened');
});

t.test('connectOnData: waiting connections count toward the limit; drain waits for them, serves one that sends, cuts the rest', async (t) => {
  const b = await backend(t, echo);
  const { keys, counts } = countingKeys();
  const pair = await proxyPair(t, b.port, { client: { connectOnData: true, maxConnections: 2, keys }, server: { keys } });
  const [a, c] = [1, 2].map(() => net.connect({ host: LOCAL, port: pair.port, allowHalfOpen: true }));
  const endOf = (s: net.Socket): Promise<string> =>
    new Promise((resolve) =>
      onEndOrError(
        s,
        () => resolve('end'),
        (e) => resolve((e as NodeJS.ErrnoException).code ?? e.message),
      ),
    );
  const aEnd = endOf(a);
  const cEnd = endOf(c);
  await waitUntil(() => pair.client.stats().active === 2, 'the proxy to hold both connections');
  t.equal(await probe(pair.port, 'fin'), 'ECONNRESET', 'a third is refused');
  t.equal((await pair.clientLog.waitFor(() => true)).end, 'rejected');

  const drained = pair.client.drain(60_000);
  await waitUntil(() => pair.clientLog.events.some((e) => e.name === 'draining'), 'the drain to begin');
  t.equal(pair.client.stats().active, 2, 'the waiting connections stay open while draining');
  let echoed = '';
  a.setEncoding('utf8');
  a.on('data', (d: string) => (echoed += d));
  a.end('ping');
  t.equal(await aEnd, 'end', 'one that sends during the drain is served, and ends cleanly');
  t.equal(echoed, 'ping');
  await waitUntil(() => pair.client.stats().active === 1, 'the served connection to finish');
  await pair.client.close(); // the deadline, now
  t.equal(await cEnd, 'ECONNRESET', 'the one still waiting is cut');
  await drained;
  const ends = pair.clientLog.records.map((r) => r.end);
  t.same(ends, ['rejected', 'closed', 'shutdown']);
  t.same(counts, { client: 1, server: 1 }, 'one key: for the connection that sent data');
});

t.test('server role: a probe of the TLS port (connect then close, or reset, before a byte) looks up no key and is logged no-data', async (t) => {
  const b = await backend(t, echo);
  const { keys, counts } = countingKeys();
  const pair = await proxyPair(t, b.port, { client: { keys }, server: { keys } });
  t.equal(await probe(pair.serverPort, 'fin'), 'end', 'a FIN probe: the proxy ends its side cleanly too');
  await probe(pair.serverPort, 'reset', () => pair.server.stats().accepted === 2);
  await pair.serverLog.waitFor(() => pair.serverLog.records.length === 2);
  // One byte, then a FIN: the peer began to speak (a cut ClientHello), so the handshake failed, as before.
  const one = net.connect({ host: LOCAL, port: pair.serverPort, allowHalfOpen: true }, () => one.end(Buffer.from([0x16])));
  one.on('error', () => {});
  await pair.serverLog.waitFor(() => pair.serverLog.records.length === 3);
  // One byte, read by the proxy, then a reset: the count of bytes read outlives the socket.
  const two = net.connect({ host: LOCAL, port: pair.serverPort }, () => two.write(Buffer.from([0x16])));
  two.on('error', () => {});
  await waitUntil(() => acceptedSockets(pair.server)[0]?.bytesRead === 1, 'the proxy to read the byte');
  two.resetAndDestroy();
  await pair.serverLog.waitFor(() => pair.serverLog.records.length === 4);
  const [fin, reset, byte, byteReset] = pair.serverLog.records;
  t.equal(fin.end, 'no-data', 'a FIN probe: end "no-data" (it was "handshake-failed")');
  t.equal(fin.error, undefined, 'with no error');
  t.equal(reset.end, 'no-data', 'a reset probe: end "no-data"');
  t.match(reset.error, /^the peer reset the connection before sending any data \(.*ECONNRESET/, 'which says it was reset');
  for (const r of [fin, reset]) t.same([r.bytesUp, r.bytesDown, r.identity, r.alert], [0, 0, undefined, undefined], 'no bytes, no key, no alert');
  t.equal(byte.end, 'handshake-failed', 'a byte then a FIN: still "handshake-failed"');
  t.equal(byte.error, 'connection closed by the peer before the TLS handshake completed');
  t.equal(byteReset.end, 'handshake-failed', 'a byte then a reset: still "handshake-failed"');
  t.match(byteReset.error, /ECONNRESET/);
  t.equal(pair.server.stats().ended['no-data'], 2, 'counted as no-data');
  t.equal(pair.server.stats().ended['handshake-failed'], 2);
  t.equal(counts.server, 0, 'no key was looked up');
  // Not vacuous: a real connection through the same server proxy looks its key up.
  const r = await exchange(pair.port, 1000);
  t.equal(r.receivedHash, r.sentHash);
  t.same(counts, { client: 1, server: 1 });
  t.equal((await pair.serverLog.waitFor((x) => x.id === 5)).end, 'closed');
});

t.test('server role with websocket: a TCP probe is no proxied connection; a WebSocket closed before a TLS byte stays handshake-failed', async (t) => {
  const log = collector();
  const { keys, counts } = countingKeys();
  const ws = await oneService(t, { name: 'ws', role: 'server', accept: { host: LOCAL, port: 0 }, connect: { host: LOCAL, port: 9 }, keys, websocket: {} }, log.logger);
  const port = ws.services[0].address.port;
  t.equal(await probe(port, 'fin'), 'end', 'the HTTP server ends a connection that sent no request');
  // A WebSocket opened (its HTTP upgrade sent) and closed without a TLS record: not a bare TCP probe.
  const client = new WsClient(`ws://${LOCAL}:${port}/`);
  client.on('error', () => {});
  client.on('open', () => client.close());
  const rec = await log.waitFor(() => true);
  t.equal(rec.id, 1, 'the TCP probe before it never became a proxied connection (no id, no line)');
  t.equal(rec.end, 'handshake-failed');
  t.equal(ws.stats().accepted, 1);
  t.equal(counts.server, 0, 'no key was looked up');
});

t.test('Key Manager: probes of both proxies make no enc_keys or dec_keys request; a real connection makes one of each', async (t) => {
  const requests: string[] = [];
  const kme = await startKmeSimulator({
    insecureHttp: true,
    initialKeyCount: 20,
    rateBitsPerSecond: 0,
    log: (e) => {
      if (e.type === 'request') requests.push(e.path.split('/').pop()!);
    },
  });
  t.teardown(() => kme.close());
  const source = (values: Record<string, unknown>): ProxyKeySource => {
    const ks = parseKeySource({ 'kme-timeout': '5000', ...values }, { onKmeEvent: () => {} });
    t.teardown(() => ks.close());
    return ks;
  };
  const b = await backend(t, hashBack);
  const pair = await proxyPair(t, b.port, {
    client: { connectOnData: true, keys: source({ kme: kme.master.url, 'sae-id': 'client-sae', 'peer-sae-id': ['server-sae'] }) },
    server: { keys: source({ kme: kme.slave.url, 'sae-id': 'server-sae', 'peer-sae-id': ['client-sae'] }) },
  });
  for (let i = 0; i < 3; i++) {
    await probe(pair.port, 'fin');
    await probe(pair.serverPort, 'fin');
  }
  await probe(pair.port, 'reset', () => pair.client.stats().accepted >= 4);
  await probe(pair.serverPort, 'reset', () => pair.server.stats().accepted >= 4);
  await pair.clientLog.waitFor(() => pair.clientLog.records.length >= 4);
  await pair.serverLog.waitFor(() => pair.serverLog.records.length >= 4);
  t.same(
    pair.clientLog.records.map((r) => r.end),
    ['no-data', 'no-data', 'no-data', 'no-data'],
  );
  t.same(requests, [], 'no request reached either Key Manager');
  const r = await exchange(pair.port, 50_000, { keep: true });
  t.equal(r.data!.toString(), `50000 ${r.sentHash}`, 'a real connection carries its bytes');
  t.same(requests.sort(), ['dec_keys', 'enc_keys'], 'with one key: enc_keys on the client side, dec_keys on the server side');
});

t.test('CLI: --connect-on-data and the config file field; refused for a server service; in the help', async (t) => {
  const b = await backend(t, echo);
  const { keys, counts } = countingKeys();
  const serverLog = collector();
  const server = await oneService(t, { name: 'srv', role: 'server', accept: { host: LOCAL, port: 0 }, connect: { host: LOCAL, port: b.port }, keys }, serverLog.logger);
  const dir = mkdtempSync(join(tmpdir(), 'qkd-proxy-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  // A global default: the client service takes it, the server service (of the same file) ignores it.
  const file = join(dir, 'p.conf');
  writeFileSync(
    file,
    [
      'json = yes',
      `psk = ${KEY_HEX}`,
      'identity = k1',
      'connect-on-data = yes',
      '[in]',
      'role = client',
      `accept = ${LOCAL}:0`,
      `connect = ${LOCAL}:${server.services[0].address.port}`,
      '[back]',
      'role = server',
      `accept = ${LOCAL}:0`,
      `connect = ${LOCAL}:${b.port}`,
    ].join('\n'),
    { mode: 0o600 },
  );
  const p = await spawnProxy(t, ['--config', file]);
  const ports = await servicePorts(p, ['in', 'back']);
  t.equal(await probe(ports.in, 'fin'), 'end');
  const line = await p.waitFor((o) => o.event === 'connection' && o.service === 'in');
  t.equal(line.end, 'no-data', 'the config field: a probe is logged "no-data"');
  const r = await exchange(ports.in, 10_000);
  t.equal(r.receivedHash, r.sentHash, 'and data goes through');
  t.same(counts, { client: 0, server: 1 }, 'the server proxy looked up one key: for the connection with data');

  const flag = await spawnProxy(t, ['--role', 'client', '--accept', `${LOCAL}:0`, '--connect', `${LOCAL}:${server.services[0].address.port}`, '--psk', KEY_HEX, '--identity', 'k1', '--json', '--connect-on-data']);
  const { client: port } = await servicePorts(flag, ['client']);
  t.equal(await probe(port, 'fin'), 'end');
  t.equal((await flag.waitFor((o) => o.event === 'connection')).end, 'no-data', 'the flag: a probe is logged "no-data"');
  t.equal(server.stats().accepted, 1, 'the server proxy saw only the connection with data');

  const refused = await runQkdTls(['proxy', '--role', 'server', '--accept', `${LOCAL}:0`, '--connect', `${LOCAL}:9`, '--psk', KEY_HEX, '--identity', 'k1', '--connect-on-data'], { ms: EXITS_WITHIN_MS });
  t.equal(refused.code, 2);
  t.equal(refused.stderr, 'qkd-tls proxy: --connect-on-data: for the client role (a server proxy takes no key before a ClientHello names one)\n');
  writeFileSync(file, ['[back]', 'role = server', `accept = ${LOCAL}:0`, `connect = ${LOCAL}:9`, `psk = ${KEY_HEX}`, 'identity = k1', 'connect-on-data = yes'].join('\n'), { mode: 0o600 });
  const inFile = await runQkdTls(['proxy', '--config', file], { ms: EXITS_WITHIN_MS });
  t.equal(inFile.code, 2);
  t.equal(inFile.stderr, `qkd-tls proxy: ${file}:7: [back] connect-on-data: for the client role (a server proxy takes no key before a ClientHello names one)\n`);

  const help = await runQkdTls(['proxy', '--help'], { ms: EXITS_WITHIN_MS });
  t.match(help.stdout, /--connect-on-data +\(client role\) take the key and connect only once/);
  t.match(help.stdout, /speaks first \(SMTP, FTP, POP3, IMAP, MySQL, SSH\)/, 'it warns of server-speaks-first protocols');
  t.match(help.stdout, /\n {2}no-data +closed or reset before sending a byte \(a health check\)[^\n]*\n +\(server role over TCP; client role with --connect-on-data\)/, 'it lists the "no-data" end, for both roles');
});

t.test('startProxy checks connectOnData', async (t) => {
  const { startProxy } = await import('../lib/proxy/proxy.js');
  const { keys } = countingKeys();
  const base = { name: 's', accept: { host: LOCAL, port: 0 }, connect: { host: LOCAL, port: 9 }, keys };
  await t.rejects(startProxy({ services: [{ ...base, role: 'server', connectOnData: true }] }), {
    name: 'TypeError',
    message: 'startProxy: service "s": connectOnData is for the client role (a server service takes no key before a ClientHello names one)',
  });
  await t.rejects(startProxy({ services: [{ ...base, role: 'client', connectOnData: 'yes' as unknown as boolean }] }), {
    name: 'TypeError',
    message: 'startProxy: service "s": connectOnData must be true or false, got string',
  });
});
