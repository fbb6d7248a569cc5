/**
 * `qkd-tls server --forward`: a TLS-PSK server that relays each connection to a plain TCP backend. Bytes
 * go both ways intact, a half-close is passed through (close_notify ⇄ FIN), and an abort on either side
 * reaches the other side as an abort (a reset towards the backend, a cut without close_notify towards the
 * client), never as a clean end.
 */
import { createHash, randomBytes } from 'node:crypto';
import t from 'tap';
import { connect, type QkdTlsSocket } from '../lib/transport/node.js';
import { backend, hashBack, KEY_HEX, onEndOrError, PSK, spawnCli, type Teardown } from './proxy-helpers.js';

const LOCAL = '127.0.0.1';

async function startRelay(tt: Teardown, backendPort: number) {
  const p = await spawnCli(tt, 'server', ['--listen', `${LOCAL}:0`, '--forward', `${LOCAL}:${backendPort}`, '--psk', KEY_HEX, '--identity', 'k1', '--json']);
  const listening = await p.waitFor((o) => o.event === 'listening');
  return { p, port: Number(String(listening.address).split(':').pop()) };
}

/** How a TLS client connection ended: 'close_notify', 'cut' (end of stream without close_notify) or the error. */
function follow(c: QkdTlsSocket): Promise<{ how: string; data: Buffer }> {
  return new Promise((resolve) => {
    const got: Buffer[] = [];
    const guard = setTimeout(() => (c.destroy(), resolve({ how: 'timed out after 10 s', data: Buffer.concat(got) })), 10_000);
    const done = (how: string): void => {
      clearTimeout(guard);
      resolve({ how, data: Buffer.concat(got) });
    };
    c.on('data', (d: Buffer) => got.push(d));
    c.once('end', () => done(c.connection?.peerClosed ? 'close_notify' : 'cut'));
    c.once('error', (e) => done(`error: ${e.message}`));
  });
}

t.test('bytes both ways, the client half-closes first, the backend answers after it and closes', async (t) => {
  const b = await backend(t, hashBack);
  const relay = await startRelay(t, b.port);
  const payload = randomBytes(1024 * 1024 + 7);
  const c = connect({ host: LOCAL, port: relay.port, psks: [PSK] });
  const result = follow(c);
  c.end(payload);
  const r = await result;
  t.equal(r.how, 'close_notify', 'the backend’s FIN reaches the client as close_notify');
  t.equal(r.data.toString(), `${payload.length} ${createHash('sha256').update(payload).digest('hex')}`, 'the backend got every byte, then the end');
  await relay.p.waitFor((o) => o.event === 'handshake');
  t.notOk(relay.p.lines.some((l) => l.includes('"event":"error"')), 'nothing reported as a failure');
});

t.test('a client that cuts the TLS connection: the backend sees a reset, not an end', async (t) => {
  const backendSaw: string[] = [];
  const b = await backend(t, (s) => {
    s.resume();
    onEndOrError(
      s,
      () => (backendSaw.push('end'), s.end()),
      (e) => backendSaw.push((e as NodeJS.ErrnoException).code ?? e.message),
    );
  });
  const relay = await startRelay(t, b.port);
  for (let i = 0; i < 3; i++) {
    const c = connect({ host: LOCAL, port: relay.port, psks: [PSK] });
    c.on('error', () => {});
    await new Promise<void>((resolve) => c.once('secureConnect', () => resolve()));
    c.write(randomBytes(100_000));
    c.destroy(); // no close_notify: to the relay this is a truncated stream
  }
  const failure = await relay.p.waitFor((o) => o.event === 'error');
  t.match(failure.message, /without close_notify/, 'the relay names the cut');
  for (let i = 0; i < 200 && backendSaw.length < 3; i++) await new Promise((r) => setTimeout(r, 25));
  t.same(backendSaw, ['ECONNRESET', 'ECONNRESET', 'ECONNRESET'], 'each backend connection was reset');
});

t.test('a backend that resets mid-answer: the client sees the TLS connection cut, not closed', async (t) => {
  const b = await backend(t, (s) => {
    s.once('data', () => {
      s.write(randomBytes(200_000));
      s.resetAndDestroy();
    });
  });
  const relay = await startRelay(t, b.port);
  const c = connect({ host: LOCAL, port: relay.port, psks: [PSK] });
  const result = follow(c);
  c.write('request');
  const r = await result;
  t.not(r.how, 'close_notify', `the client does not get a clean end (${r.how})`);
  t.match(r.how, /^(cut|error: )/);
  const failure = await relay.p.waitFor((o) => o.event === 'error');
  t.match(failure.message, /backend 127\.0\.0\.1:\d+: (reset|.*ECONNRESET)/, 'the relay names the backend’s reset');
});
