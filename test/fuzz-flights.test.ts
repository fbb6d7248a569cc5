/**
 * Property tests on mutated flights. Valid handshakes are recorded with seeded randomness (so a replay sends
 * the same bytes), then replayed with mutations — bit flips, truncation, byte insertion and removal, records
 * reordered, dropped or duplicated, record and handshake length fields and content types corrupted — against
 * both the client and the server. The only acceptable outcomes are: success, a TLS alert (an `error` event
 * carrying a TlsError with a named reason, never internal_error from a stray exception), or waiting for more
 * bytes. `receive` never throws and the exchange settles in a bounded number of rounds. When both sides
 * complete, application data must flow (their keys agree).
 *
 * Over real sockets, a server under a barrage of mutated ClientHellos keeps serving valid clients.
 *
 * Reproduce a failure with FUZZ_SEED=<seed printed in the output>.
 */
import * as net from 'node:net';
import fc from 'fast-check';
import t from 'tap';
import { concat, toHex, utf8 } from '../lib/codec/bytes.js';
import { ContentType } from '../lib/codec/enums.js';
import type { ClientOptions, ServerOptions } from '../lib/config/options.js';
import { Connection } from '../lib/connection/connection.js';
import { nodeProvider } from '../lib/crypto/node.js';
import { TlsError } from '../lib/errors.js';
import { connect, createServer } from '../lib/transport/node.js';
import { makePsk, Pair, seededRandom, withRandom } from './helpers/pair.js';
import { createEarlyDataReplayGuard } from '../lib/config/anti-replay.js';

const SEED = Number(process.env.FUZZ_SEED ?? 20240611);
/** Runs per scenario; raise FUZZ_RUNS for a longer local hunt. */
const RUNS = Number(process.env.FUZZ_RUNS ?? 150);
t.comment(`fuzz seed ${SEED} (set FUZZ_SEED to reproduce or vary)`);

// ---------------------------------------------------------------------------------------------------------
// Mutations

type Mutation =
  | { kind: 'flip'; flight: number; pos: number; bit: number }
  | { kind: 'truncate'; flight: number; pos: number }
  | { kind: 'insert'; flight: number; pos: number; bytes: Uint8Array }
  | { kind: 'remove'; flight: number; pos: number; count: number }
  | { kind: 'swap'; flight: number; a: number; b: number }
  | { kind: 'duplicate'; flight: number; rec: number }
  | { kind: 'drop'; flight: number; rec: number }
  | { kind: 'recordLength'; flight: number; rec: number; value: number }
  | { kind: 'messageLength'; flight: number; rec: number; value: number }
  | { kind: 'contentType'; flight: number; rec: number; value: number };

const flight = fc.nat({ max: 15 });
const idx = fc.nat({ max: 1 << 16 });
const mutationArb: fc.Arbitrary<Mutation> = fc.oneof(
  fc.record({ kind: fc.constant('flip' as const), flight, pos: idx, bit: fc.nat({ max: 7 }) }),
  fc.record({ kind: fc.constant('truncate' as const), flight, pos: idx }),
  fc.record({ kind: fc.constant('insert' as const), flight, pos: idx, bytes: fc.uint8Array({ minLength: 1, maxLength: 8 }) }),
  fc.record({ kind: fc.constant('remove' as const), flight, pos: idx, count: fc.integer({ min: 1, max: 8 }) }),
  fc.record({ kind: fc.constant('swap' as const), flight, a: fc.nat({ max: 7 }), b: fc.nat({ max: 7 }) }),
  fc.record({ kind: fc.constant('duplicate' as const), flight, rec: fc.nat({ max: 7 }) }),
  fc.record({ kind: fc.constant('drop' as const), flight, rec: fc.nat({ max: 7 }) }),
  fc.record({
    kind: fc.constant('recordLength' as const),
    flight,
    rec: fc.nat({ max: 7 }),
    value: fc.oneof(fc.nat({ max: 0xffff }), fc.constantFrom(0, 1, 0x4000, 0x4001, 0x4100, 0x4101)),
  }),
  fc.record({
    kind: fc.constant('messageLength' as const),
    flight,
    rec: fc.nat({ max: 7 }),
    value: fc.oneof(fc.nat({ max: 0xffffff }), fc.nat({ max: 600 }), fc.constantFrom(0, 0x10000, 0x10001)),
  }),
  fc.record({ kind: fc.constant('contentType' as const), flight, rec: fc.nat({ max: 7 }), value: fc.constantFrom(0, 20, 21, 22, 23, 24, 255) }),
);

/** Records of a chunk, leniently: whole records, then whatever is left. */
function records(chunk: Uint8Array): { recs: Uint8Array[]; tail: Uint8Array } {
  const recs: Uint8Array[] = [];
  let at = 0;
  while (chunk.length - at >= 5) {
    const len = (chunk[at + 3] << 8) | chunk[at + 4];
    if (chunk.length - at < 5 + len) break;
    recs.push(chunk.slice(at, at + 5 + len));
    at += 5 + len;
  }
  return { recs, tail: chunk.slice(at) };
}

function applyMutation(chunk: Uint8Array, m: Mutation): Uint8Array {
  const n = chunk.length;
  const out = chunk.slice();
  switch (m.kind) {
    case 'flip':
      if (n > 0) out[m.pos % n] ^= 1 << m.bit;
      return out;
    case 'truncate':
      return out.subarray(0, n === 0 ? 0 : m.pos % n);
    case 'insert': {
      const p = m.pos % (n + 1);
      return concat(out.subarray(0, p), m.bytes, out.subarray(p));
    }
    case 'remove': {
      const p = n === 0 ? 0 : m.pos % n;
      return concat(out.subarray(0, p), out.subarray(Math.min(n, p + m.count)));
    }
  }
  const { recs, tail } = records(out);
  if (recs.length === 0) return out;
  const r = (i: number) => i % recs.length;
  switch (m.kind) {
    case 'swap': {
      const [a, b] = [r(m.a), r(m.b)];
      [recs[a], recs[b]] = [recs[b], recs[a]];
      break;
    }
    case 'duplicate':
      recs.splice(r(m.rec), 0, recs[r(m.rec)]);
      break;
    case 'drop':
      recs.splice(r(m.rec), 1);
      break;
    case 'recordLength': {
      const rec = recs[r(m.rec)];
      rec[3] = m.value >>> 8;
      rec[4] = m.value & 0xff;
      break;
    }
    case 'messageLength': {
      // The uint24 length of the first handshake message in a plaintext handshake record.
      const rec = recs[r(m.rec)];
      if (rec[0] === ContentType.handshake && rec.length >= 9) {
        rec[6] = m.value >>> 16;
        rec[7] = (m.value >>> 8) & 0xff;
        rec[8] = m.value & 0xff;
      }
      break;
    }
    case 'contentType':
      recs[r(m.rec)][0] = m.value;
      break;
  }
  return concat(...recs, tail);
}

// ---------------------------------------------------------------------------------------------------------
// Scenarios: valid exchanges with seeded randomness, so every replay sends the same flights

interface Scenario {
  readonly name: string;
  client(): ClientOptions;
  server(): ServerOptions;
}

const pskA = makePsk('fuzz-a');
// Provisioned for 0-RTT under the ALPN protocol the second scenario negotiates (RFC 8446 §4.2.10).
const pskB = { ...makePsk('fuzz-b', 'SHA-384'), earlyDataAlpn: 'qkd' };
const seeded = (seed: number) => withRandom(nodeProvider, seededRandom(seed));

const SCENARIOS: Scenario[] = [
  {
    name: 'psk_dhe_ke, compat',
    client: () => ({ crypto: seeded(1), psks: [pskA] }),
    server: () => ({ crypto: seeded(2), psks: [pskA] }),
  },
  {
    name: '0-RTT accepted, two PSKs, SHA-384',
    client: () => ({ crypto: seeded(3), psks: [pskB, pskA], earlyData: utf8('early data, fuzzed'), alpn: ['h2', 'qkd'] }),
    server: () => ({ crypto: seeded(4), psks: [pskA, pskB], maxEarlyDataSize: 4096, earlyDataReplayGuard: createEarlyDataReplayGuard(), alpn: ['qkd'], suites: ['TLS_AES_256_GCM_SHA384'] }),
  },
  {
    name: 'HelloRetryRequest with cookie, 0-RTT skipped',
    client: () => ({ crypto: seeded(5), psks: [pskA], earlyData: utf8('skipped'), resendRejectedEarlyData: true, serverName: 'fuzz.example' }),
    server: () => ({ crypto: seeded(6), psks: [pskA], groups: ['secp256r1'] }),
  },
  {
    name: 'psk_ke, no compat, record_size_limit',
    client: () => ({ crypto: seeded(7), psks: [pskA], kexModes: ['psk_ke'], middleboxCompatibility: false, recordSizeLimit: 512, suites: ['TLS_CHACHA20_POLY1305_SHA256'] }),
    server: () => ({ crypto: seeded(8), psks: [pskA], recordSizeLimit: 1024 }),
  },
];

const UP = utf8('client data in the second flight');
const DOWN = utf8('server data after the handshake');

/** Runs a scenario, mutating chunk number `flight` (client and server chunks counted together). */
function run(s: Scenario, mutations: readonly Mutation[], chunkCount: number): Pair {
  const p = new Pair(s.client(), s.server());
  p.client.write(UP);
  p.server.write(DOWN);
  let chunk = 0;
  const mutate = (b: Uint8Array): Uint8Array => {
    const i = chunk++;
    let out = b;
    for (const m of mutations) if (m.flight % chunkCount === i) out = applyMutation(out, m);
    return out;
  };
  p.pump({ maxRounds: 32, toServer: mutate, toClient: mutate });
  return p;
}

const MORE = utf8('after the handshake');

/** Errors are TlsErrors with a named reason other than internal_error, at most one per side. */
function checkErrors(p: Pair): void {
  for (const side of ['client', 'server'] as const) {
    const conn = side === 'client' ? p.client : p.server;
    const errors = p.events(side).filter((e) => e.type === 'error');
    if (errors.length > 1) throw new Error(`${side}: ${errors.length} error events`);
    if (conn.phase === 'failed') {
      const e = conn.error;
      if (!(e instanceof TlsError)) throw new Error(`${side}: failed without a TlsError`);
      if (e.reason === 'InternalError') throw new Error(`${side}: internal error (a stray exception): ${e.message}`);
    } else if (errors.length) {
      throw new Error(`${side}: an error event but phase ${conn.phase}`);
    }
  }
}

const isPrefix = (got: Uint8Array, of: Uint8Array) => got.length <= of.length && toHex(got) === toHex(of.subarray(0, got.length));

/**
 * The property: only acceptable outcomes (see the file comment). And integrity: whatever application data a
 * side delivered is a prefix of what the peer wrote — never altered, reordered or with a gap.
 */
function checkOutcome(p: Pair, s: Scenario): void {
  checkErrors(p);
  if (p.client.phase === 'connected' && p.server.phase === 'connected') {
    p.client.write(MORE);
    p.server.write(MORE);
    p.pump({ maxRounds: 8 });
    checkErrors(p);
  }
  const early = s.client().earlyData ?? new Uint8Array(0);
  const up = concat(early, UP, MORE);
  const down = concat(DOWN, MORE);
  const gotUp = p.received('server');
  const gotDown = p.received('client');
  if (!isPrefix(gotUp, up)) throw new Error(`the server delivered data the client did not send: ${toHex(gotUp)}`);
  if (!isPrefix(gotDown, down)) throw new Error(`the client delivered data the server did not send: ${toHex(gotDown)}`);
}

for (const [i, s] of SCENARIOS.entries()) {
  t.test(`mutated flights: ${s.name}`, async (tt) => {
    // The unmutated exchange succeeds (and tells how many chunks there are to mutate).
    const clean = run(s, [], 1);
    tt.equal(clean.client.phase, 'connected', 'the recorded exchange completes (client)');
    tt.equal(clean.server.phase, 'connected', 'the recorded exchange completes (server)');
    const chunks = clean.clientSent.length + clean.serverSent.length;
    tt.ok(chunks >= 3, `${chunks} chunks to mutate`);
    // Deterministic: a second clean run sends the same bytes.
    const again = run(s, [], 1);
    tt.equal(toHex(concat(...again.clientSent)), toHex(concat(...clean.clientSent)), 'replays send the same client bytes');
    tt.equal(toHex(concat(...again.serverSent)), toHex(concat(...clean.serverSent)), 'replays send the same server bytes');
    checkOutcome(clean, s);
    tt.equal(clean.received('server').length, (s.client().earlyData?.length ?? 0) + UP.length + MORE.length, 'all client data arrives');
    tt.equal(clean.received('client').length, DOWN.length + MORE.length, 'all server data arrives');

    const outcomes = { success: 0, alert: 0, waiting: 0 };
    // success: both completed; alert: a side failed with an alert; waiting: a side waits for bytes that never came.
    const property = fc.property(fc.array(mutationArb, { minLength: 1, maxLength: 3 }), (mutations) => {
      const p = run(s, mutations, chunks);
      checkOutcome(p, s);
      if (p.client.phase === 'failed' || p.server.phase === 'failed') outcomes.alert++;
      else if (p.client.phase === 'connected' && p.server.phase === 'connected') outcomes.success++;
      else outcomes.waiting++;
    });
    const details = fc.check(property, { seed: SEED + i, numRuns: RUNS });
    if (details.failed) {
      tt.fail(`property failed — seed ${details.seed}, path ${details.counterexamplePath}: ${fc.stringify(details.counterexample)}\n${String(details.errorInstance)}`);
    } else {
      tt.pass(`${details.numRuns} mutated exchanges: only success, alerts or waiting (seed ${details.seed})`);
    }
    tt.comment(`outcomes: ${JSON.stringify(outcomes)}`);
    tt.ok(outcomes.alert > outcomes.success + outcomes.waiting, 'most mutations are caught by an alert');
  });
}

t.test('arbitrary bytes to a fresh client and server never throw', async (tt) => {
  const property = fc.property(fc.uint8Array({ maxLength: 600 }), fc.boolean(), (bytes, toServer) => {
    const conn = toServer ? Connection.server({ crypto: nodeProvider, psks: [pskA] }) : Connection.client({ crypto: nodeProvider, psks: [pskA] });
    conn.takeOutput();
    conn.receive(bytes);
    const errs = conn.takeEvents().filter((e) => e.type === 'error');
    if (errs.length > 1) throw new Error('more than one error');
    if (conn.error && conn.error.reason === 'InternalError') throw new Error(`internal error: ${conn.error.message}`);
  });
  const details = fc.check(property, { seed: SEED + 100, numRuns: 200 });
  if (details.failed) tt.fail(`seed ${details.seed}, path ${details.counterexamplePath}: ${fc.stringify(details.counterexample)}\n${String(details.errorInstance)}`);
  else tt.pass(`${details.numRuns} random inputs handled (seed ${details.seed})`);
});

// ---------------------------------------------------------------------------------------------------------
// Over real sockets: the server survives a barrage of mutated ClientHellos

t.test('a server under a barrage of mutated ClientHellos keeps serving valid clients', async (tt) => {
  const psk = makePsk('barrage');
  const clientErrors: Error[] = [];
  const server = createServer({ crypto: nodeProvider, psks: [psk], handshakeTimeout: 5000 }, (socket) => {
    socket.on('error', () => {});
    socket.pipe(socket);
  });
  server.on('tlsClientError', (e: Error) => clientErrors.push(e));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = server.address().port;
  tt.teardown(() => {
    server.destroyAll();
    server.close();
  });

  const validHello = () => Connection.client({ crypto: nodeProvider, psks: [psk] }).takeOutput()!;
  const samples = fc.sample(fc.array(mutationArb, { minLength: 1, maxLength: 3 }), { seed: SEED + 200, numRuns: 80 });

  /** Sends mutated bytes on a raw TCP socket, half-closes, and waits until the server closes it. */
  const hostile = (bytes: Uint8Array, abrupt: boolean) =>
    new Promise<number>((resolve) => {
      let received = 0;
      const s = net.connect({ host: '127.0.0.1', port }, () => {
        s.write(bytes);
        if (abrupt) s.destroy();
        else s.end();
      });
      const guard = setTimeout(() => s.destroy(), 10_000);
      s.on('data', (b) => (received += b.length));
      s.on('error', () => {});
      s.on('close', () => {
        clearTimeout(guard);
        resolve(received);
      });
    });

  const valid = (n: number) =>
    new Promise<boolean>((resolve) => {
      const payload = utf8(`valid client ${n}`);
      const chunks: Buffer[] = [];
      const c = connect({ host: '127.0.0.1', port, psks: [psk], crypto: nodeProvider, handshakeTimeout: 10_000 }, () => c.end(payload));
      c.on('data', (b: Buffer) => chunks.push(b));
      c.on('end', () => resolve(Buffer.concat(chunks).equals(Buffer.from(payload))));
      c.on('error', () => resolve(false));
    });

  let validOk = 0;
  let validRuns = 0;
  for (let batch = 0; batch < samples.length; batch += 10) {
    const hostiles = samples.slice(batch, batch + 10).map((ms, j) => {
      let bytes = validHello();
      for (const m of ms) bytes = applyMutation(bytes, { ...m, flight: 0 });
      return hostile(bytes, j % 3 === 0);
    });
    const goods = [valid(validRuns++), valid(validRuns++)];
    const results = await Promise.all([...hostiles, ...goods.map((g) => g.then((ok) => (ok ? 1 : 0)))]);
    validOk += results.slice(hostiles.length).reduce((a, b) => a + b, 0);
  }
  tt.equal(validOk, validRuns, `all ${validRuns} valid clients succeeded amid ${samples.length} hostile ones`);
  tt.ok(clientErrors.length > samples.length / 2, `the server reported ${clientErrors.length} client errors`);
  tt.ok(
    clientErrors.every((e) => !(e instanceof TlsError) || e.reason !== 'InternalError'),
    'no internal errors among them',
  );
  tt.equal(await valid(999), true, 'and one more valid client afterwards');
});
