/**
 * The streams transport's contract with each runtime's own WHATWG streams (test/fixtures/runtimes/streams-contract.mjs,
 * in memory, the record offload on and off), in Node, Deno and Bun: their streams implementations differ, and what
 * was fixed depends on them (the writable controller's abort signal, a sink's rejection erroring its stream). Each
 * check is one of streams-chunks, streams-cancel, streams-failed-writable, streams-failure-order and conn-streams, run inside the runtime; and no promise
 * rejection may go unhandled.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { jsonEvent, spawnPeer, type Tap, testPeer } from './helpers/peers.js';
import { ROOT, SUBTEST, WAIT } from './helpers/runtimes.js';

const FIXTURE = join(ROOT, 'test', 'fixtures', 'runtimes', 'streams-contract.mjs');
/** The checks the fixture makes (six with the offload on and off, four on one setting, connStreams' one). */
const CHECKS = 17;

const runtimes: { name: string; command: () => { path: string; skip: false } | { path: null; skip: string }; args: string[]; env: (tt: Tap) => Promise<NodeJS.ProcessEnv> }[] = [
  { name: 'node', command: () => ({ path: process.execPath, skip: false }), args: [FIXTURE], env: async () => ({}) },
  {
    name: 'deno',
    command: () => testPeer(t, 'deno'),
    args: ['run', '--no-config', '--no-lock', '--node-modules-dir=manual', '--no-prompt', FIXTURE],
    env: async (tt) => {
      const denoDir = await mkdtemp(join(tmpdir(), 'qkd-tls-deno-'));
      tt.teardown(() => rm(denoDir, { recursive: true, force: true }));
      return { DENO_DIR: denoDir, DENO_NO_UPDATE_CHECK: '1', NO_COLOR: '1' };
    },
  },
  {
    name: 'bun',
    command: () => testPeer(t, 'bun'),
    args: ['run', '--no-install', FIXTURE],
    env: async (tt) => {
      const cache = await mkdtemp(join(tmpdir(), 'qkd-tls-bun-'));
      tt.teardown(() => rm(cache, { recursive: true, force: true }));
      return { BUN_INSTALL_CACHE_DIR: cache, DO_NOT_TRACK: '1', NO_COLOR: '1' };
    },
  },
];

for (const runtime of runtimes) {
  const command = runtime.command();
  t.test(`${runtime.name}: the streams contract (BufferSource chunks, abort under backpressure, the writable after an alert, data before an error)`, { ...SUBTEST, skip: command.skip }, async (tt) => {
    const peer = spawnPeer(tt, command.path!, runtime.args, { cwd: ROOT, env: await runtime.env(tt) });
    const exit = await peer.waitExit(WAIT);
    tt.equal(exit.code, 0, 'the fixture exits 0', { output: peer.transcript() });
    const result = jsonEvent(peer.stdout, 'result') as { runtime: string; checks: Record<string, unknown>; unhandled: unknown[] } | undefined;
    tt.ok(result, 'it printed its result', { output: peer.transcript() });
    if (!result) return;
    tt.match(result.runtime, new RegExp(`^${runtime.name} \\d+\\.\\d+\\.\\d+`), `it ran in ${runtime.name}`);
    tt.equal(Object.keys(result.checks).length, CHECKS, 'every check ran');
    for (const [name, ok] of Object.entries(result.checks)) tt.equal(ok, true, name);
    tt.same(result.unhandled, [], 'no unhandled promise rejection');
  });
}
