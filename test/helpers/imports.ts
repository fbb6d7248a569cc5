/**
 * The import graph of lib/ and the layer order it must follow (README "Architecture"), for
 * test/architecture.test.ts. A unit is a top-level folder of lib/ (`codec`) or a top-level file (`errors.ts`).
 */

/**
 * The layers, bottom-up. A file may import files of its own unit and of any unit in a lower layer; units that
 * share a layer do not import each other. Everything up to `index.ts` is the runtime-neutral core.
 */
export const LAYERS: readonly (readonly string[])[] = [
  ['alerts.ts'], // RFC 8446 §6 alert codes
  ['errors.ts'], // named failure reasons -> alerts
  ['codec'], // Reader/Writer, wire enums, bytes
  ['callbacks.ts', 'abort.ts'], // the rule for application callbacks that throw (CallbackError, observer); untilAborted
  ['crypto'], // CryptoProvider, groups, noble (and Node) providers
  ['suites.ts'], // the cipher suites
  ['keyschedule', 'record', 'messages'],
  ['trace'], // the annotated trace: records and handshake messages dissected field by field
  ['psk'], // PSK types and lookup interface, RFC 9258 importer, key-source interfaces, static sources
  ['config'], // options and events: the vocabulary shared by handshake/ and connection/
  ['handshake'],
  ['connection'],
  ['index.ts'], // the root export: the sans-IO core
  ['qkd', 'transport'], // adapters: ETSI GS QKD 014 and key files; Node sockets, WHATWG streams
  ['node.ts', 'browser.ts', 'proxy'], // the qkd-tls/node and qkd-tls/browser entry points; model 2
  ['tools'], // the KME simulator (and other tools)
];

/** File (relative to lib/, with /) -> the lib/ files it imports. */
export type ImportGraph = ReadonlyMap<string, readonly string[]>;

/** The module specifiers of a source text's import/export-from statements and dynamic imports. */
export function importsOf(src: string): string[] {
  const found: { at: number; spec: string }[] = [];
  const patterns = [
    /(?:^|\n)[ \t]*(?:import|export)\s[^'";]*?\sfrom\s*['"]([^'"]+)['"]/g,
    /(?:^|\n)[ \t]*import\s*['"]([^'"]+)['"]/g,
    /\bimport\(\s*['"]([^'"]+)['"]\s*\)/g,
  ];
  for (const re of patterns) for (const m of src.matchAll(re)) found.push({ at: m.index, spec: m[1] });
  return found.sort((a, b) => a.at - b.at).map((f) => f.spec);
}

/** The unit of a lib/ file: its top-level folder, or the file itself at the top. */
export function unitOf(file: string): string | undefined {
  const unit = file.includes('/') ? file.slice(0, file.indexOf('/')) : file;
  return LAYERS.some((l) => l.includes(unit)) ? unit : undefined;
}

function layerOf(unit: string): number {
  return LAYERS.findIndex((l) => l.includes(unit));
}

/** The imports that go against the layer order, as messages. */
export function checkLayers(graph: ImportGraph): string[] {
  const bad: string[] = [];
  for (const [from, tos] of graph) {
    const fu = unitOf(from);
    if (fu === undefined) continue;
    for (const to of tos) {
      const tu = unitOf(to);
      if (tu === undefined || tu === fu) continue;
      const d = layerOf(tu) - layerOf(fu);
      if (d > 0) bad.push(`${from} imports ${to} (${tu} is above ${fu})`);
      else if (d === 0) bad.push(`${from} imports ${to} (${tu} is beside ${fu})`);
    }
  }
  return bad;
}

/** The file-level import cycles: each strongly connected component of more than one file (or a self-import). */
export function fileCycles(graph: ImportGraph): string[][] {
  return cycles(graph);
}

/** The unit-level import cycles (folders and top-level files). */
export function unitCycles(graph: ImportGraph): string[][] {
  const units = new Map<string, Set<string>>();
  for (const [from, tos] of graph) {
    const fu = unitOf(from) ?? from;
    const set = units.get(fu) ?? new Set<string>();
    units.set(fu, set);
    for (const to of tos) {
      const tu = unitOf(to) ?? to;
      if (tu !== fu) set.add(tu);
    }
  }
  return cycles(new Map([...units].map(([u, s]) => [u, [...s]])));
}

/** Tarjan's strongly connected components, keeping those that are cycles; sorted for stable output. */
function cycles(graph: ImportGraph): string[][] {
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const out: string[][] = [];
  let next = 0;
  const visit = (v: string): void => {
    index.set(v, next);
    low.set(v, next);
    next++;
    stack.push(v);
    onStack.add(v);
    for (const w of graph.get(v) ?? []) {
      if (!index.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (onStack.has(w)) {
        low.set(v, Math.min(low.get(v)!, index.get(w)!));
      }
    }
    if (low.get(v) === index.get(v)) {
      const scc: string[] = [];
      let w: string;
      do {
        w = stack.pop()!;
        onStack.delete(w);
        scc.push(w);
      } while (w !== v);
      if (scc.length > 1 || (graph.get(v) ?? []).includes(v)) out.push(scc.sort());
    }
  };
  for (const v of [...graph.keys()].sort()) if (!index.has(v)) visit(v);
  return out.sort((a, b) => (a[0] < b[0] ? -1 : 1));
}
