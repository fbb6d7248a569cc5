/**
 * qkd-tls inside Deno (2.9, from test/peers): a client over `Deno.connect` and a server over `Deno.listen`,
 * built only from the runtime-neutral entry points (test/fixtures/runtimes/tcp-peer.mjs), against qkd-tls in
 * Node and OpenSSL. See test/helpers/tcp-runtime-matrix.ts for the matrix. Deno's `Deno.Conn` closes the
 * whole socket when its writable closes: the streams transport half-closes with `closeWrite()` instead, which
 * is what lets the server's close_notify and the last echoed bytes arrive (checked by every case here).
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { tcpRuntimeMatrix } from './helpers/tcp-runtime-matrix.js';

tcpRuntimeMatrix(t, {
  name: 'deno',
  runtimePattern: /^deno \d+\.\d+\.\d+/,
  args: (fixture, json) => [
    'run',
    '--no-config', // no deno.json: the project's package.json and node_modules resolve @noble/*
    '--no-lock',
    '--node-modules-dir=manual', // use node_modules as npm laid it out; never install
    '--no-prompt',
    '--allow-net=127.0.0.1', // the only permission: static local imports need no --allow-read
    fixture,
    json,
  ],
  env: async (tt) => {
    // A private module cache: nothing from another run is reused, nothing is left behind.
    const denoDir = await mkdtemp(join(tmpdir(), 'qkd-tls-deno-'));
    tt.teardown(() => rm(denoDir, { recursive: true, force: true }));
    return { DENO_DIR: denoDir, DENO_NO_UPDATE_CHECK: '1', NO_COLOR: '1' };
  },
});
