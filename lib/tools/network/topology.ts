/**
 * The topology file of a simulated QKD network: which nodes there are, which SAEs (applications) each node's
 * key manager serves, which QKD links join the nodes, and where an eavesdropper sits. JSON, for example:
 *
 *     {"nodes":[{"name":"A","saes":["client-sae"]},{"name":"B"},{"name":"C","saes":["server-sae"]}],
 *      "links":[{"a":"A","b":"B","km":20},{"a":"B","b":"C","km":30}],
 *      "eavesdroppers":[{"link":"B-C","fraction":1.0,"from_s":0}]}
 *
 * nodes[]:         name (letters, digits, '.', '_', '-'; it is a URL path segment), saes (SAE IDs, each at one
 *                  node only), optional x, y (position in the picture, any unit)
 * links[]:         a, b (node names), km (fibre length), and optionally any physical parameter of
 *                  {@link LinkPhysics} (attenuationDbPerKm, detectorEfficiency, darkCountProbability,
 *                  misalignment, pulseRateHz, meanPhotonNumber, errorCorrectionEfficiency, siftingFactor),
 *                  capacityBits, qberThreshold; a link is named "a-b" ("b-a" finds it too)
 * eavesdroppers[]: link ("A-B"), fraction (share of pulses intercepted and resent, 0..1), from_s (simulated
 *                  seconds after start, default 0), until_s (default: forever)
 * defaults:        optional link parameters applied to every link (a link's own values win)
 *
 * Bounds ({@link TOPOLOGY_LIMITS}): at most 1000 nodes, 1000 links and 1000 eavesdroppers, and 2^31 bits (256 MiB)
 * of link pools in all. Every request brings every link up to date (up to 25 blocks of 4000 simulated detections
 * each) and the pools are allocated at start, so a larger file made each request take seconds or ran the simulator
 * out of memory. At most 10000 SAEs in all: with mutual TLS each gets a certificate before the KMEs listen (about
 * 7 ms each: a file of a million SAE IDs kept the simulator from listening for two hours).
 *
 * Runtime-neutral: parses an already-read JSON value.
 */
import { clip } from '../../codec/text.js';
import { DEFAULT_CAPACITY_BITS, linkParameterProblem, MAX_CAPACITY_BITS } from './link.js';
import { type LinkPhysics, physicsParameterProblem } from './physics.js';

export type LinkParameters = Partial<Omit<LinkPhysics, 'km'>> & { capacityBits?: number; qberThreshold?: number };

export interface TopologyNode {
  name: string;
  saes: string[];
  x?: number;
  y?: number;
}

export interface TopologyLink extends LinkParameters {
  a: string;
  b: string;
  km: number;
}

export interface TopologyEavesdropper {
  link: string;
  fraction: number;
  from_s: number;
  until_s?: number;
}

export interface Topology {
  nodes: TopologyNode[];
  links: TopologyLink[];
  eavesdroppers: TopologyEavesdropper[];
  defaults: LinkParameters;
}

/** The most nodes, links and eavesdroppers a topology may list (see the file comment). */
export const TOPOLOGY_LIMITS = Object.freeze({ nodes: 1000, links: 1000, eavesdroppers: 1000, saes: 10_000 });

const NODE_NAME_RE = /^[A-Za-z0-9._-]{1,64}$/;
const PARAMETER_NAMES = [
  'attenuationDbPerKm',
  'detectorEfficiency',
  'darkCountProbability',
  'misalignment',
  'pulseRateHz',
  'meanPhotonNumber',
  'errorCorrectionEfficiency',
  'siftingFactor',
  'capacityBits',
  'qberThreshold',
] as const;

/** Checks a parsed topology file; throws an Error naming the first problem. */
export function parseTopology(json: unknown): Topology {
  const top = object(json, 'the topology');
  allowOnly(top, ['nodes', 'links', 'eavesdroppers', 'defaults'], 'the topology');
  const nodes = bounded(array(top.nodes, 'nodes'), 'nodes').map((n, i): TopologyNode => {
    const o = object(n, `nodes[${i}]`);
    allowOnly(o, ['name', 'saes', 'x', 'y'], `nodes[${i}]`);
    const name = string(o.name, `nodes[${i}].name`);
    if (!NODE_NAME_RE.test(name) || name === 'network' || name === 'network.svg') {
      throw new Error(`nodes[${i}].name '${name}' must be 1-64 letters, digits, '.', '_' or '-' (and not 'network')`);
    }
    const saes = o.saes === undefined ? [] : array(o.saes, `nodes[${i}].saes`).map((s, j) => saeId(s, `nodes[${i}].saes[${j}]`));
    const node: TopologyNode = { name, saes };
    if (o.x !== undefined) node.x = finite(o.x, `nodes[${i}].x`);
    if (o.y !== undefined) node.y = finite(o.y, `nodes[${i}].y`);
    return node;
  });
  if (nodes.length === 0) throw new Error('nodes must not be empty');
  // Each duplicate is told with both places (a name alone left the user to search a long file for it).
  const names = new Map<string, number>();
  const saeAt = new Map<string, string>();
  let saeCount = 0;
  nodes.forEach((n, i) => {
    saeCount += n.saes.length;
    if (saeCount > TOPOLOGY_LIMITS.saes) throw new Error(`nodes[${i}].saes: nodes[0..${i}] list ${saeCount} SAEs, more than the ${TOPOLOGY_LIMITS.saes} this simulator takes`);
    const first = names.get(n.name);
    if (first !== undefined) throw new Error(`nodes[${i}].name: node '${n.name}' is listed twice (nodes[${first}] and nodes[${i}])`);
    names.set(n.name, i);
    n.saes.forEach((s, j) => {
      if (s.trim() === '') throw new Error(`nodes[${i}].saes[${j}]: node '${n.name}' has a blank SAE ID`);
      const at = saeAt.get(s);
      const here = `nodes[${i}] '${n.name}'`;
      if (at === here) throw new Error(`nodes[${i}].saes[${j}]: SAE '${clip(s, 64)}' is listed twice at node '${n.name}'`);
      if (at !== undefined) throw new Error(`nodes[${i}].saes[${j}]: SAE '${clip(s, 64)}' is at two nodes (${at} and ${here})`);
      saeAt.set(s, here);
    });
  });
  const defaults = top.defaults === undefined ? {} : parameters(object(top.defaults, 'defaults'), 'defaults', []);
  const links = bounded(top.links === undefined ? [] : array(top.links, 'links'), 'links').map((l, i): TopologyLink => {
    const o = object(l, `links[${i}]`);
    const a = string(o.a, `links[${i}].a`);
    const b = string(o.b, `links[${i}].b`);
    for (const end of [a, b]) if (!names.has(end)) throw new Error(`links[${i}] names an unknown node '${end}'`);
    if (a === b) throw new Error(`links[${i}] joins node '${a}' to itself`);
    const km = finite(o.km, `links[${i}].km`);
    const kmProblem = physicsParameterProblem('km', km);
    if (kmProblem) throw new Error(`links[${i}].km ${kmProblem}`);
    return { a, b, km, ...parameters(o, `links[${i}]`, ['a', 'b', 'km']) };
  });
  // The pools are allocated when the network starts: their sum is bounded as each one is.
  let poolBits = 0;
  links.forEach((l, i) => {
    poolBits += l.capacityBits ?? defaults.capacityBits ?? DEFAULT_CAPACITY_BITS;
    if (poolBits > MAX_CAPACITY_BITS) {
      throw new Error(`links[${i}]: the key pools of links[0..${i}] hold ${poolBits} bits (capacityBits), more than the ${MAX_CAPACITY_BITS} bits (256 MiB) of all links together`);
    }
  });
  const pairs = new Map<string, number>();
  const linkNames = new Map<string, TopologyLink>();
  for (const [i, l] of links.entries()) {
    const key = [l.a, l.b].sort().join('\u0000');
    const first = pairs.get(key);
    if (first !== undefined) throw new Error(`links[${i}]: two links join '${l.a}' and '${l.b}' (links[${first}] and links[${i}])`);
    pairs.set(key, i);
    // Links are named "a-b" (or "b-a") by eavesdroppers and the API; with '-' in node names two links could
    // share a name (x-y + z and x + y-z are both "x-y-z"), and the name would pick the wrong one.
    for (const name of [`${l.a}-${l.b}`, `${l.b}-${l.a}`]) {
      const other = linkNames.get(name);
      if (other && other !== l) throw new Error(`links[${i}]: links '${other.a}'-'${other.b}' and '${l.a}'-'${l.b}' are both named "${name}"; rename a node`);
      linkNames.set(name, l);
    }
  }
  const eavesdroppers = bounded(top.eavesdroppers === undefined ? [] : array(top.eavesdroppers, 'eavesdroppers'), 'eavesdroppers').map((e, i): TopologyEavesdropper => {
    const o = object(e, `eavesdroppers[${i}]`);
    allowOnly(o, ['link', 'fraction', 'from_s', 'until_s'], `eavesdroppers[${i}]`);
    const link = string(o.link, `eavesdroppers[${i}].link`);
    if (!findLink(links, link)) throw new Error(`eavesdroppers[${i}].link '${link}' is not a link (write it "A-B")`);
    const fraction = finite(o.fraction, `eavesdroppers[${i}].fraction`);
    if (fraction < 0 || fraction > 1) throw new Error(`eavesdroppers[${i}].fraction must be in [0, 1]`);
    const from_s = o.from_s === undefined ? 0 : finite(o.from_s, `eavesdroppers[${i}].from_s`);
    const out: TopologyEavesdropper = { link, fraction, from_s };
    if (o.until_s !== undefined) out.until_s = finite(o.until_s, `eavesdroppers[${i}].until_s`);
    return out;
  });
  return { nodes, links, eavesdroppers, defaults };
}

/** The link named "A-B" or "B-A". */
export function findLink<L extends { a: string; b: string }>(links: readonly L[], name: string): L | undefined {
  return links.find((l) => `${l.a}-${l.b}` === name || `${l.b}-${l.a}` === name);
}

function parameters(o: Record<string, unknown>, where: string, others: string[]): LinkParameters {
  allowOnly(o, [...others, ...PARAMETER_NAMES], where);
  const out: Record<string, number> = {};
  for (const k of PARAMETER_NAMES) {
    if (o[k] === undefined) continue;
    out[k] = finite(o[k], `${where}.${k}`);
    // The ranges the network checks when it starts, here too: a value out of range is reported with its place in
    // the file (it was "link parameter detectorEfficiency must be ...", naming neither the file nor the link).
    const problem = parameterProblem(k, out[k]);
    if (problem) throw new Error(`${where}.${k} ${problem}`);
  }
  return out as LinkParameters;
}

/** Why `v` cannot be the link parameter `name` (the rules of physics.ts and link.ts), or undefined. */
function parameterProblem(name: (typeof PARAMETER_NAMES)[number], v: number): string | undefined {
  if (name === 'capacityBits' || name === 'qberThreshold') return linkParameterProblem(name, v);
  return physicsParameterProblem(name, v);
}

function bounded(list: unknown[], name: keyof typeof TOPOLOGY_LIMITS): unknown[] {
  const limit = TOPOLOGY_LIMITS[name];
  if (list.length > limit) throw new Error(`${name} lists ${list.length} entries, more than the ${limit} this simulator takes`);
  return list;
}

function allowOnly(o: Record<string, unknown>, allowed: readonly string[], where: string): void {
  for (const k of Object.keys(o)) if (!allowed.includes(k)) throw new Error(`${where} has an unknown field '${k}' (allowed: ${allowed.join(', ')})`);
}

function object(v: unknown, where: string): Record<string, unknown> {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new Error(`${where} must be a JSON object`);
  return v as Record<string, unknown>;
}

function array(v: unknown, where: string): unknown[] {
  if (!Array.isArray(v)) throw new Error(`${where} must be an array`);
  return v;
}

function string(v: unknown, where: string): string {
  if (typeof v !== 'string' || v === '') throw new Error(`${where} must be a non-empty string`);
  return v;
}

/**
 * Characters no SAE ID may hold: control characters, lone surrogates and U+FFFE/U+FFFF. XML 1.0 (§2.2, Char) has
 * none of them, so one in an SAE ID made /network.svg a document no browser shows; nor can an HTTP header (X-SAE-ID)
 * carry a control character.
 */
const SAE_ID_UNFIT_RE = /[\u0000-\u001f\u007f-\u009f\ufffe\uffff]|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;

function saeId(v: unknown, where: string): string {
  const s = string(v, where);
  const bad = SAE_ID_UNFIT_RE.exec(s);
  if (bad) throw new Error(`${where} has the character U+${bad[0].charCodeAt(0).toString(16).toUpperCase().padStart(4, '0')} at index ${bad.index}: an SAE ID has no control characters`);
  return s;
}

function finite(v: unknown, where: string): number {
  if (typeof v !== 'number' || !Number.isFinite(v)) throw new Error(`${where} must be a number`);
  return v;
}
