/**
 * The layering of lib/ (README "Architecture"), enforced on the import statements of every source file:
 * no import cycle between files, none between top-level folders, no import against the layer order, no Node
 * built-in in the runtime-neutral core, and a bin/ that uses the package only through its "exports".
 */
import t from 'tap';
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { checkLayers, fileCycles, importsOf, LAYERS, unitCycles, unitOf, type ImportGraph } from './helpers/imports.js';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const NODE_BUILTINS = /^(node:|fs$|net$|http$|https$|crypto$|tls$|stream$|events$|os$|path$|child_process$|buffer$|util$)/;

/** Node-only files inside the core's folders, each with its reason. */
const NODE_ONLY_IN_CORE: Record<string, string> = {
  'crypto/node.ts': "the crypto provider backed by Node's OpenSSL (exported from qkd-tls/node only)",
  'crypto/node-ffdhe.ts': 'that provider\'s ffdhe groups, on node:crypto\'s DH (imported by crypto/node.ts only)',
};

function tsFiles(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir)) {
    const f = join(dir, name);
    if (statSync(f).isDirectory()) out.push(...tsFiles(f));
    else if (name.endsWith('.ts') && !name.endsWith('.d.ts')) out.push(f);
  }
  return out.sort();
}

/** The graph of lib/: each file (path relative to lib/, with /) to the lib/ files it imports. */
function libGraph(): { graph: ImportGraph; bare: Map<string, string[]> } {
  const lib = join(root, 'lib');
  const graph = new Map<string, string[]>();
  const bare = new Map<string, string[]>();
  for (const f of tsFiles(lib)) {
    const from = relative(lib, f).split(sep).join('/');
    const specs = importsOf(readFileSync(f, 'utf8'));
    graph.set(
      from,
      specs.filter((s) => s.startsWith('.')).map((s) => relative(lib, resolve(dirname(f), s.replace(/\.js$/, '.ts'))).split(sep).join('/')),
    );
    bare.set(from, specs.filter((s) => !s.startsWith('.')));
  }
  return { graph, bare };
}

const { graph, bare } = libGraph();

t.test('every lib/ file belongs to a layer, and every relative import names a lib/ file', async (t) => {
  t.ok(graph.size >= 50, `${graph.size} files in lib/`);
  for (const [from, tos] of graph) {
    t.not(unitOf(from), undefined, `${from} is in a layer`);
    for (const to of tos) t.ok(graph.has(to), `${from} imports ${to}, a file of lib/`);
  }
});

t.test('no import cycle between files of lib/', async (t) => {
  t.same(fileCycles(graph), [], 'no file reaches itself through its imports');
});

t.test('no import cycle between the top-level folders of lib/', async (t) => {
  t.same(unitCycles(graph), [], 'no folder reaches itself through its imports');
});

t.test('every import goes down the layer order (or stays in its folder)', async (t) => {
  t.same(checkLayers(graph), [], 'no import goes up or sideways');
});

t.test('no Node built-in in the runtime-neutral core', async (t) => {
  const coreUnits = new Set(LAYERS.slice(0, LAYERS.findIndex((l) => l.includes('index.ts')) + 1).flat());
  let n = 0;
  for (const [file, specs] of bare) {
    const unit = unitOf(file);
    if (unit === undefined || !coreUnits.has(unit) || file in NODE_ONLY_IN_CORE) continue;
    n++;
    t.same(specs.filter((s) => NODE_BUILTINS.test(s)), [], `lib/${file} imports no Node built-in`);
  }
  t.ok(n >= 30, `${n} core files checked`);
});

t.test('the state machines and the connection never await (an asynchronous step is a pause, lib/handshake/key-agreement.ts)', async (t) => {
  const files = [...tsFiles(join(root, 'lib', 'handshake')), join(root, 'lib', 'connection', 'connection.ts')];
  for (const f of files) {
    // Comments and strings may say "await"; the code may not.
    const code = readFileSync(f, 'utf8')
      .replace(/\/\*[\s\S]*?\*\//g, '')
      .replace(/\/\/.*$/gm, '')
      .replace(/'(?:[^'\\\n]|\\.)*'|`(?:[^`\\]|\\.)*`/g, "''");
    t.notMatch(code, /\bawait\b|\basync\b/, `${relative(root, f)} has no await and no async function`);
  }
  t.ok(files.length >= 6, `${files.length} files checked`);
});

t.test('bin/ imports the library only through package.json "exports"', async (t) => {
  const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { name: string; exports: Record<string, unknown> };
  const entries = new Set(Object.keys(pkg.exports).map((k) => (k === '.' ? pkg.name : `${pkg.name}/${k.slice(2)}`)));
  const bin = join(root, 'bin');
  let n = 0;
  for (const f of tsFiles(bin)) {
    for (const spec of importsOf(readFileSync(f, 'utf8'))) {
      const where = `${relative(root, f)} imports ${spec}`;
      if (spec.startsWith('.')) {
        // The CLI's own files, and its `bench` and `vectors` commands' harnesses (not part of the library).
        const target = relative(root, resolve(dirname(f), spec)).split(sep)[0];
        t.ok(['bin', 'bench', 'vectors'].includes(target), `${where}: bin/, bench/ or vectors/`);
      } else if (spec === pkg.name || spec.startsWith(`${pkg.name}/`)) {
        n++;
        t.ok(entries.has(spec), `${where}: an "exports" entry point`);
      } else {
        t.ok(NODE_BUILTINS.test(spec), `${where}: a Node built-in`);
      }
    }
  }
  t.ok(n >= 10, `${n} imports of the package checked`);
});

t.test('the checks catch what they are meant to', async (t) => {
  const broken: ImportGraph = new Map([
    ['codec/reader.ts', ['errors.ts']],
    ['errors.ts', ['codec/enums.ts']],
    ['codec/enums.ts', []],
    ['psk/types.ts', ['psk/importer.ts']],
    ['psk/importer.ts', ['psk/types.ts', 'connection/connection.ts']],
    ['connection/connection.ts', []],
  ]);
  t.same(fileCycles(broken), [['psk/importer.ts', 'psk/types.ts']], 'a file cycle is found');
  t.same(unitCycles(broken), [['codec', 'errors.ts']], 'a folder cycle is found');
  t.same(
    checkLayers(broken),
    ['errors.ts imports codec/enums.ts (codec is above errors.ts)', 'psk/importer.ts imports connection/connection.ts (connection is above psk)'],
    'imports against the order are found',
  );
  t.same(
    importsOf(`import { a,\n  b } from './a.js';\nexport * from "../b.js";\nimport './c.js';\n * import { x } from 'doc';\nconst m = await import('./d.js');`),
    ['./a.js', '../b.js', './c.js', './d.js'],
    'multi-line, re-export, side-effect and dynamic imports are parsed; doc comments are not',
  );
});
