/**
 * The core under lib/ must run unchanged in browsers, Deno, Bun and Workers: no `node:` (or bare Node
 * built-in) imports outside the Node-only edges, followed transitively from the runtime-neutral entry points.
 */
import t from 'tap';
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const NODE_BUILTINS = /^(node:|fs$|net$|http$|https$|crypto$|tls$|stream$|events$|os$|path$|child_process$|buffer$|util$)/;

function importsOf(file: string): string[] {
  const src = readFileSync(file, 'utf8');
  const out: string[] = [];
  for (const m of src.matchAll(/(?:^|\n)\s*(?:import|export)\s[^'";]*?from\s+['"]([^'"]+)['"]/g)) out.push(m[1]);
  for (const m of src.matchAll(/import\(\s*['"]([^'"]+)['"]\s*\)/g)) out.push(m[1]);
  return out;
}

function walk(entry: string, seen = new Set<string>()): Set<string> {
  if (seen.has(entry)) return seen;
  seen.add(entry);
  for (const spec of importsOf(entry)) {
    if (spec.startsWith('.')) walk(resolve(dirname(entry), spec.replace(/\.js$/, '.ts')), seen);
  }
  return seen;
}

// The ETSI 014 key sources run on the fetch client in Deno and Bun (and say they import no Node built-in).
const entries = ['lib/index.ts', 'lib/transport/streams.ts', 'lib/transport/websocket.ts', 'lib/browser.ts', 'lib/tools/network/index.ts', 'lib/qkd/etsi014-source.ts'];
for (const e of entries) {
  t.test(`${e} reaches no Node built-in`, async (t) => {
    const files = walk(join(root, e));
    t.ok(files.size > 10, `${files.size} files reached`);
    for (const f of files) {
      const bad = importsOf(f).filter((s) => NODE_BUILTINS.test(s));
      t.same(bad, [], `${relative(root, f)} imports no Node built-in`);
    }
  });
}

t.test('no file of the sans-IO core imports a Node built-in', async (t) => {
  const core = ['codec', 'crypto', 'keyschedule', 'record', 'messages', 'psk', 'config', 'handshake', 'connection'];
  let n = 0;
  for (const dir of core) {
    for (const name of readdirSync(join(root, 'lib', dir))) {
      const f = join(root, 'lib', dir, name);
      if (!statSync(f).isFile() || !name.endsWith('.ts') || (dir === 'crypto' && name.startsWith('node'))) continue;
      n++;
      t.same(importsOf(f).filter((s) => NODE_BUILTINS.test(s)), [], `lib/${dir}/${name}`);
    }
  }
  t.ok(n >= 20, `${n} core files checked`);
});

t.test('the state machines never await', async (t) => {
  for (const f of ['lib/handshake/client.ts', 'lib/handshake/server.ts', 'lib/handshake/common.ts', 'lib/connection/connection.ts']) {
    const src = readFileSync(join(root, f), 'utf8');
    t.notMatch(src, /\bawait\b|\basync\b/, `${f} has no async/await`);
  }
});
