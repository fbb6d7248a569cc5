/**
 * The browser entry point (`qkd-tls/browser`: the sans-IO core, the streams and WebSocket transports, the
 * fetch-based ETSI GS QKD 014 client, the handshake trace) bundles for the browser with a mainstream bundler,
 * esbuild (from test/peers), with platform=browser and no externals: esbuild itself fails on any `node:` import or Node
 * built-in there, and the metafile's inputs are checked too (only qkd-tls's own files and @noble/*).
 * A control case shows the check bites: the Node transport does not bundle for the browser.
 */
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import type tap from 'tap';
import { spawnPeer, testPeer } from './helpers/peers.js';
import { ROOT, WAIT } from './helpers/runtimes.js';

const esbuild = testPeer(t, 'esbuild');
const SUBTEST = { timeout: 120_000, skip: esbuild.skip };

interface Metafile {
  inputs: Record<string, { imports: { path: string; external?: boolean }[] }>;
  outputs: Record<string, { bytes: number; exports: string[] }>;
}

async function bundle(t: Parameters<Parameters<typeof tap.test>[0]>[0], entry: string): Promise<{ code: number | null; output: string; meta?: Metafile }> {
  const dir = await mkdtemp(join(tmpdir(), 'qkd-tls-bundle-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const peer = spawnPeer(t, esbuild.path!, [entry, '--bundle', '--platform=browser', '--format=esm', `--outfile=${join(dir, 'out.js')}`, `--metafile=${join(dir, 'meta.json')}`, '--log-level=warning'], { cwd: ROOT });
  const exit = await peer.waitExit(WAIT);
  const meta = exit.code === 0 ? (JSON.parse(await readFile(join(dir, 'meta.json'), 'utf8')) as Metafile) : undefined;
  return { code: exit.code, output: peer.output, meta };
}
t.test('qkd-tls/browser bundles for platform=browser with no Node built-in', SUBTEST, async (t) => {
  const { code, output, meta } = await bundle(t, 'dist/lib/browser.js');
  t.equal(code, 0, 'esbuild bundles it (platform=browser, no externals)', { output });
  t.equal(output.trim(), '', 'without a warning');
  const inputs = Object.keys(meta?.inputs ?? {});
  t.ok(inputs.length > 30, `${inputs.length} input files`);
  const foreign = inputs.filter((p) => !p.startsWith('dist/lib/') && !/^node_modules\/@noble\/(hashes|curves|ciphers|post-quantum)\//.test(p));
  t.same(foreign, [], "every input is qkd-tls's own or @noble/*");
  const imports = Object.values(meta?.inputs ?? {}).flatMap((i) => i.imports);
  t.same(imports.filter((i) => i.external || /^node:|^(fs|net|http|https|tls|crypto|stream|events|os|path|buffer|util)$/.test(i.path)), [], 'no external or Node built-in import');
  for (const f of ['dist/lib/transport/websocket.js', 'dist/lib/transport/streams.js', 'dist/lib/qkd/etsi014-fetch.js', 'dist/lib/qkd/etsi014-source.js', 'dist/lib/psk/key-file.js', 'dist/lib/connection/connection.js', 'dist/lib/trace/dissect.js']) {
    t.ok(inputs.includes(f), `it contains ${f}`);
  }
  const exports = Object.values(meta?.outputs ?? {})[0]?.exports ?? [];
  for (const name of ['Connection', 'nobleProvider', 'tlsClientOverStreams', 'tlsClientOverWebSocket', 'Etsi014FetchClient', 'Etsi014ClientSource', 'Etsi014ServerSource', 'releaseAfter', 'parseKeyFile', 'importPsk', 'createTracer', 'dissectRecord', 'formatTraceEvent']) {
    t.ok(exports.includes(name), `it exports ${name}`);
  }
});

t.test('control: the Node transport does not bundle for the browser (the check bites)', SUBTEST, async (t) => {
  const { code, output } = await bundle(t, 'dist/lib/transport/node.js');
  t.not(code, 0, 'esbuild refuses it');
  t.match(output, /node:net|"net"|node:events/, 'naming a Node built-in');
});
