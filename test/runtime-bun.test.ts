/**
 * qkd-tls inside Bun (1.4, from test/peers): a client over `Bun.connect` and a server over `Bun.listen`
 * (callback sockets adapted to WHATWG streams in test/fixtures/runtimes/tcp-peer.mjs), built only from the
 * runtime-neutral entry points, against qkd-tls in Node and OpenSSL. See test/helpers/tcp-runtime-matrix.ts.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { tcpRuntimeMatrix } from './helpers/tcp-runtime-matrix.js';

tcpRuntimeMatrix(t, {
  name: 'bun',
  runtimePattern: /^bun \d+\.\d+\.\d+/,
  args: (fixture, json) => ['run', '--no-install', fixture, json],
  env: async (tt) => {
    const cache = await mkdtemp(join(tmpdir(), 'qkd-tls-bun-'));
    tt.teardown(() => rm(cache, { recursive: true, force: true }));
    return { BUN_INSTALL_CACHE_DIR: cache, DO_NOT_TRACK: '1', NO_COLOR: '1' };
  },
});
