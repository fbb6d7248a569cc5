/**
 * Model 1 end to end: a TLS client and server that each get their QKD keys from their own key manager (the
 * ETSI GS QKD 014 simulator): handshakes on imported and plain QKD keys, a replayed key ID refused with
 * unknown_psk_identity, key managers that are down or silent (a clear error within the KME timeout, no key
 * used twice), 200 concurrent handshakes on 200 distinct keys, and the `qkd-tls server` / `qkd-tls client`
 * commands over mutual TLS to the key managers. Everything on 127.0.0.1, ephemeral ports.
 */
import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer as createNetServer, type Server as NetServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { copyBytes } from '../lib/codec/bytes.js';
import type { HandshakeInfo } from '../lib/config/events.js';
import { nodeProvider } from '../lib/crypto/node.js';
import type { TlsError } from '../lib/errors.js';
import { Etsi014Client } from '../lib/qkd/etsi014-client.js';
import { Etsi014ClientSource, Etsi014ServerSource, releaseAfter, type Etsi014SourceEvent } from '../lib/qkd/etsi014-source.js';
import { decodeImportedIdentity, TargetKdf, type ImportOptions } from '../lib/psk/importer.js';
import { startKmeSimulator, type KmeSimulator } from '../lib/tools/kme/simulator.js';
import { serverPskResolver, takePsks, type PskOffer } from '../lib/psk/source.js';
import type { Psk } from '../lib/psk/types.js';
import type { SupportedSuiteName } from '../lib/suites.js';
import { connect, createServer, type QkdTlsServer } from '../lib/transport/node.js';

type Tap = { teardown(fn: () => unknown): void };
const crypto = nodeProvider;

interface WorldOptions {
  importer?: ImportOptions;
  poolSize?: number;
  batchSize?: number;
  /** Where the client's and the server's ETSI clients go (default: the simulator's KMEs). */
  masterUrl?: string;
  slaveUrl?: string;
  kmeTimeoutMs?: number;
}

interface World {
  kme: KmeSimulator;
  client: Etsi014ClientSource;
  serverSource: Etsi014ServerSource;
  server: QkdTlsServer;
  port: number;
  serverInfos: HandshakeInfo[];
  serverErrors: Error[];
  events: Etsi014SourceEvent[];
  importer?: ImportOptions;
}

async function world(tt: Tap, o: WorldOptions = {}): Promise<World> {
  const kme = await startKmeSimulator({ insecureHttp: true, rateBitsPerSecond: 0, initialKeyCount: 1000 });
  tt.teardown(() => kme.close());
  const etsi = { timeoutMs: o.kmeTimeoutMs ?? 5000, retries: 1, retryDelayMs: 1, maxRetryDelayMs: 2 };
  const master = new Etsi014Client({ baseUrl: o.masterUrl ?? kme.master.url, saeId: 'client-sae', ...etsi });
  const slave = new Etsi014Client({ baseUrl: o.slaveUrl ?? kme.slave.url, saeId: 'server-sae', ...etsi });
  const events: Etsi014SourceEvent[] = [];
  const client = new Etsi014ClientSource({
    client: master,
    ownsClient: true,
    peerSaeId: 'server-sae',
    saeId: 'client-sae',
    poolSize: o.poolSize ?? 0,
    batchSize: o.batchSize,
    onEvent: (e) => events.push(e),
  });
  const serverSource = new Etsi014ServerSource({ client: slave, ownsClient: true, peerSaeIds: ['client-sae'], onEvent: (e) => events.push(e) });
  const wipe = releaseAfter(10_000);
  const serverInfos: HandshakeInfo[] = [];
  const serverErrors: Error[] = [];
  const server = createServer(
    { crypto, handshakeTimeout: 10_000, psks: serverPskResolver(crypto, serverSource, { importer: o.importer, onLease: wipe }) },
    (s) => {
      serverInfos.push(s.handshake!);
      s.pipe(s);
    },
  );
  server.on('tlsClientError', (e: Error) => serverErrors.push(e));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  tt.teardown(
    () =>
      new Promise<void>((r) => {
        server.close(() => r());
        server.destroyAll();
        client.close();
        serverSource.close();
        wipe.releaseAll();
      }),
  );
  return { kme, client, serverSource, server, port: server.address().port, serverInfos, serverErrors, events, importer: o.importer };
}

interface Run {
  info?: HandshakeInfo;
  error?: Error;
  echoed: string;
  offer?: PskOffer;
}

/** One client connection: offers fresh keys (or `psks`), sends `message`, reads the echo until the server closes. */
function run(w: World, options: { suites?: SupportedSuiteName[]; psks?: readonly Psk[]; message?: string } = {}): Promise<Run> {
  const r: Run = { echoed: '' };
  const message = options.message ?? 'ping over QKD';
  return new Promise((resolve) => {
    const socket = connect(
      {
        crypto,
        host: '127.0.0.1',
        port: w.port,
        suites: options.suites,
        handshakeTimeout: 10_000,
        psks: options.psks ?? (async () => (r.offer = await takePsks(crypto, w.client, { importer: w.importer })).psks),
      },
      () => {
        r.info = socket.handshake!;
        socket.end(message);
      },
    );
    socket.on('data', (d: Buffer) => (r.echoed += d.toString()));
    socket.on('error', (e) => (r.error = e));
    socket.on('close', () => {
      r.offer?.release();
      resolve(r);
    });
  });
}

/** A TCP server on 127.0.0.1 that accepts connections and never answers (a hung key manager). */
async function silentServer(tt: Tap): Promise<string> {
  const sockets: Socket[] = [];
  const server: NetServer = createNetServer((s) => sockets.push(s));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  tt.teardown(() => new Promise<void>((r) => (sockets.forEach((s) => s.destroy()), server.close(() => r()))));
  return `http://127.0.0.1:${(server.address() as { port: number }).port}`;
}

/** A loopback URL where nothing listens (a key manager that is down). */
async function deadUrl(): Promise<string> {
  const server = createNetServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as { port: number }).port;
  await new Promise<void>((r) => server.close(() => r()));
  return `http://127.0.0.1:${port}`;
}

t.test('a handshake on QKD keys, imported for each target KDF', async (t) => {
  const w = await world(t, { importer: { context: 'qkd-tls model 1' }, poolSize: 2 });
  await w.client.prefetch();
  const a = await run(w);
  t.notOk(a.error, 'no error');
  t.equal(a.echoed, 'ping over QKD', 'echoed');
  t.equal(a.info?.suite, 'TLS_AES_128_GCM_SHA256');
  t.equal(a.info?.identityIndex, 0, 'the first identity offered...');
  t.equal(decodeImportedIdentity(a.info!.identityBytes)?.targetKdf, TargetKdf.HKDF_SHA256, '...imported for HKDF_SHA256');
  t.equal(w.serverInfos[0].pskLabel, a.offer!.keys[0].label, 'the server used the key the client fetched (same key ID)');
  t.ok(a.offer!.psks.every((p) => p.secret.every((b) => b === 0)), 'the client wiped the keys after the handshake');

  const b = await run(w, { suites: ['TLS_AES_256_GCM_SHA384'] });
  t.notOk(b.error);
  t.equal(b.info?.suite, 'TLS_AES_256_GCM_SHA384');
  t.equal(decodeImportedIdentity(b.info!.identityBytes)?.targetKdf, TargetKdf.HKDF_SHA384, 'the SHA-256 QKD key, imported for HKDF_SHA384');
  t.not(b.info?.pskLabel, a.info?.pskLabel, 'a new key for each handshake');
  t.equal(w.kme.stats().redeemed, 2, 'the server fetched each key once, though two identities named it');
});

t.test('a handshake on a plain QKD key (no importer)', async (t) => {
  const w = await world(t);
  const r = await run(w);
  t.notOk(r.error);
  t.equal(r.echoed, 'ping over QKD');
  t.match(r.info?.identity, /^client-sae\/[0-9a-f-]{36}$/, 'the identity is the SAE ID and the key ID, in clear');
  t.equal(r.info?.suite, 'TLS_AES_128_GCM_SHA256');
});

t.test('a replayed key ID is refused with unknown_psk_identity', async (t) => {
  const w = await world(t, { importer: {} });
  const offer = await takePsks(crypto, w.client, { importer: {} });
  const replay = offer.psks.map((p) => ({ ...p, secret: copyBytes(p.secret) }));
  const first = await run(w, { psks: offer.psks });
  offer.release();
  t.notOk(first.error, 'the first use succeeds');
  const second = await run(w, { psks: replay });
  const ce = second.error as TlsError;
  t.equal(ce?.alert, 'unknown_psk_identity', 'the client is told: unknown_psk_identity');
  t.equal(ce?.remote, true);
  t.match(ce?.message, /tls alert: unknown_psk_identity \(115\) received/);
  const se = w.serverErrors.at(-1) as TlsError;
  t.equal(se?.alert, 'unknown_psk_identity', 'the server sent it');
  t.match(
    w.events.find((e) => e.type === 'refused'),
    { reason: 'replayed', keyId: offer.keys[0].label, message: /already used/ },
    'and says why: the key ID was already used',
  );
  t.equal(w.kme.stats().redeemed, 1, 'the replayed key was not fetched again');
});

t.test("the client's key manager is down: a clear error, no hang", async (t) => {
  const w = await world(t, { masterUrl: await deadUrl() });
  const r = await run(w);
  t.notOk(r.info, 'no handshake');
  t.match(r.error?.message, /could not obtain PSKs: could not get a QKD key: cannot reach the KME at http:\/\/127\.0\.0\.1:\d+ for enc_keys/);
  t.equal(w.serverInfos.length + w.serverErrors.length, 0, 'nothing reached the server');
});

t.test("the client's key manager does not answer: fails at the KME timeout", async (t) => {
  const w = await world(t, { masterUrl: await silentServer(t), kmeTimeoutMs: 200 });
  const r = await run(w);
  t.notOk(r.info);
  t.match(r.error?.message, /could not get a QKD key: no answer from the KME for enc_keys within 200 ms/);
});

t.test("the server's key manager does not answer: handshake_failure, and the key is never used again", async (t) => {
  const w = await world(t, { slaveUrl: await silentServer(t), kmeTimeoutMs: 200 });
  const r = await run(w);
  t.notOk(r.info);
  t.equal((r.error as TlsError)?.alert, 'handshake_failure', 'the client receives handshake_failure');
  const se = w.serverErrors[0] as TlsError;
  t.equal(se?.alert, 'handshake_failure');
  t.match(se?.message, /PSK lookup failed: key manager failed for key ID [0-9a-f-]{36}: no answer from the KME for dec_keys within 200 ms/);
  const keyId = r.offer!.keys[0].label!;
  t.ok(w.serverSource.hasUsed(keyId), 'the server will refuse that key ID from now on');
  t.ok(r.offer!.psks.every((p) => p.secret.every((b) => b === 0)), 'the client wiped it');
  const again = await run(w);
  t.not(again.offer?.keys[0].label, keyId, 'the next handshake takes a new key');
});

t.test('200 concurrent handshakes consume 200 distinct keys', async (t) => {
  const w = await world(t, { importer: {}, poolSize: 16, batchSize: 32 });
  const runs = await Promise.all(Array.from({ length: 200 }, (_, i) => run(w, { message: `#${i}` })));
  const failed = runs.filter((r) => r.error || !r.info);
  t.equal(failed.length, 0, `every handshake completed${failed.length ? ` (first error: ${failed[0].error?.message})` : ''}`);
  t.ok(
    runs.every((r, i) => r.echoed === `#${i}`),
    'every echo came back on its own connection',
  );
  const clientKeys = new Set(runs.map((r) => r.offer?.keys[0].label));
  const serverKeys = new Set(w.serverInfos.map((i) => i.pskLabel));
  t.equal(clientKeys.size, 200, '200 distinct keys offered');
  t.equal(serverKeys.size, 200, '200 distinct keys used by the server');
  t.same([...clientKeys].sort(), [...serverKeys].sort(), 'the same keys on both sides');
  t.equal(w.kme.stats().redeemed, 200, 'the server fetched each key exactly once');
});

// ---- the commands, with mutual TLS to the key managers ------------------------------------------------------

const BIN = fileURLToPath(new URL('../bin/qkd-tls.js', import.meta.url));

interface Child {
  stdout: string;
  stderr: string;
  code: Promise<number | null>;
  line(pred: (l: string) => boolean): Promise<string>;
  kill(): void;
}

function start(args: string[], input?: string): Child {
  const p = spawn(process.execPath, [BIN, ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
  const c: Child = {
    stdout: '',
    stderr: '',
    code: new Promise((r) => p.on('close', (code) => r(code))),
    line: (pred) =>
      new Promise((resolve, reject) => {
        const check = (): boolean => {
          const l = c.stderr.split('\n').find(pred);
          if (l !== undefined) resolve(l);
          return l !== undefined;
        };
        if (check()) return;
        const onData = () => check() && p.stderr.off('data', onData);
        p.stderr.on('data', onData);
        p.on('close', () => (check() ? undefined : reject(new Error(`exited without the line; stderr:\n${c.stderr}`))));
      }),
    kill: () => p.kill(),
  };
  p.stdout.on('data', (d: Buffer) => (c.stdout += d.toString()));
  p.stderr.on('data', (d: Buffer) => (c.stderr += d.toString()));
  // A guard against a hang (never an assertion): the test fails on the exit code instead.
  setTimeout(() => p.kill(), 60_000).unref();
  if (input !== undefined) p.stdin.end(input);
  return c;
}

t.test('qkd-tls server and client --kme --importer, mutual TLS to the key managers', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'qkd-model1-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const kme = await startKmeSimulator({ certsDir: dir, rateBitsPerSecond: 0, initialKeyCount: 20 });
  t.teardown(() => kme.close());
  const c = kme.credentials!;
  const creds = (sae: string) => ['--kme-ca', c.caFile!, '--kme-cert', c.saes[sae].certFile!, '--kme-key', c.saes[sae].keyFile!];
  const server = start([
    'server', '--listen', '127.0.0.1:0', '--once', '--json', '--importer', '--context', 'model-1 test',
    '--kme', kme.slave.url, '--sae-id', 'server-sae', '--peer-sae-id', 'client-sae', ...creds('server-sae'),
  ]);
  t.teardown(() => server.kill());
  const listening = JSON.parse(await server.line((l) => l.includes('"listening"'))) as { address: string; keys: string };
  t.match(listening.keys, /QKD keys from https:\/\/127\.0\.0\.1:\d+ .*imported \(RFC 9258\)/);
  const client = start(
    [
      'client', '--connect', listening.address, '--json', '--importer', '--context', 'model-1 test',
      '--kme', kme.master.url, '--sae-id', 'client-sae', '--peer-sae-id', 'server-sae', ...creds('client-sae'),
    ],
    'hello over QKD\n',
  );
  t.equal(await client.code, 0, `the client exits 0 (stderr: ${client.stderr})`);
  t.equal(client.stdout, 'hello over QKD\n', 'the server echoed');
  const hs = JSON.parse(client.stderr.split('\n').find((l) => l.includes('"handshake"'))!) as Record<string, unknown>;
  t.match(hs, { event: 'handshake', version: 'TLSv1.3', suite: 'TLS_AES_128_GCM_SHA256', kex: 'psk_dhe_ke', group: 'x25519' });
  t.match(hs.keyId, /^[0-9a-f-]{36}$/, 'the QKD key ID is reported');
  t.equal(await server.code, 0, `the server exits 0 after its one connection (stderr: ${server.stderr})`);
  const shs = JSON.parse(server.stderr.split('\n').find((l) => l.includes('"handshake"'))!) as Record<string, unknown>;
  t.equal(shs.keyId, hs.keyId, 'both sides used the same QKD key');
  t.equal(kme.stats().redeemed, 1);
});
