/**
 * The RFC 8448 example handshakes ("Example Handshake Traces for TLS 1.3"), as data.
 *
 * RFC 8448 prints five complete TLS 1.3 handshakes with every intermediate value: key pairs, each
 * HKDF-Extract and Derive-Secret input and output, traffic keys and IVs, and every record on the wire.
 * `vectors/extract-rfc8448.ts` turns that text into `vectors/rfc8448.json`; this module loads the JSON
 * so that tests (and `qkd-tls vectors`) can replay a trace step by step, for example:
 *
 * ```ts
 * const s = step('3', 'server', 'derive secret "tls13 s hs traffic"');
 * value(s, 'expanded'); // the server handshake traffic secret, 32 bytes
 * ```
 *
 * Node-only (reads a file). The JSON is located relative to this module, so it works from the compiled
 * location dist/vectors/ (the normal case) and from vectors/ next to the JSON.
 */
import { existsSync, readFileSync } from 'node:fs';
import { fromHex } from '../lib/codec/bytes.js';

/** All five traces of RFC 8448 sections 3 to 7. */
export interface Rfc8448 {
  /** Where the traces come from: the RFC, or one of its Internet-Draft versions. */
  readonly source: 'RFC 8448' | 'draft-ietf-tls-tls13-vectors';
  readonly sections: readonly Rfc8448Section[];
}

/** One example handshake, e.g. `{ number: '3', title: 'Simple 1-RTT Handshake' }`. */
export interface Rfc8448Section {
  /** The RFC section number as printed: "3" .. "7". */
  readonly number: string;
  readonly title: string;
  readonly steps: readonly Rfc8448Step[];
}

/** The side that performs a step, from the `{client}` / `{server}` prefix of the RFC. */
export type Rfc8448Side = 'client' | 'server';

/**
 * One step of a trace, e.g. `{server}  derive secret "tls13 s hs traffic":` with its labelled values.
 * Steps that the RFC only mentions ("... (same as server)") have an empty `values` object.
 */
export interface Rfc8448Step {
  /** Position of the step within its section, from 0. */
  readonly index: number;
  readonly side: Rfc8448Side;
  /** The step text without the side and the trailing colon, whitespace folded to single spaces. */
  readonly action: string;
  /** Label exactly as printed ("PRK", "key expanded", "ClientHello", ...) -> lowercase hex, no spaces. */
  readonly values: Readonly<Record<string, string>>;
}

/** The sections of RFC 8448 that hold traces, in order. */
export const RFC8448_TRACE_SECTIONS = ['3', '4', '5', '6', '7'] as const;

let cached: Rfc8448 | undefined;

/**
 * Reads and validates vectors/rfc8448.json once; later calls return the same deeply frozen object.
 * Throws if the file is missing or malformed (regenerate it with `node dist/vectors/extract-rfc8448.js`).
 */
export function loadRfc8448(): Rfc8448 {
  if (cached) return cached;
  const url = JSON_LOCATIONS.map((p) => new URL(p, import.meta.url)).find((u) => existsSync(u));
  if (!url) throw new Error(`loadRfc8448: vectors/rfc8448.json not found near ${import.meta.url}`);
  const parsed: unknown = JSON.parse(readFileSync(url, 'utf8'));
  validate(parsed);
  cached = deepFreeze(parsed);
  return cached;
}

/** One section by number ("3" .. "7"); throws if absent. */
export function section(number: string, data: Rfc8448 = loadRfc8448()): Rfc8448Section {
  const s = data.sections.find((x) => x.number === number);
  if (!s) throw new Error(`RFC 8448: no section ${number} (have ${data.sections.map((x) => x.number).join(', ')})`);
  return s;
}

/**
 * The `nth` (from 0) step of `side` in a section whose action starts with `actionPrefix` (a string) or
 * matches it (a RegExp). Throws a message naming the section, side and matcher when there is no such step.
 */
export function step(
  sectionNumber: string,
  side: Rfc8448Side,
  actionPrefix: string | RegExp,
  nth = 0,
  data: Rfc8448 = loadRfc8448(),
): Rfc8448Step {
  const sec = section(sectionNumber, data);
  const matches = sec.steps.filter(
    (s) => s.side === side && (typeof actionPrefix === 'string' ? s.action.startsWith(actionPrefix) : actionPrefix.test(s.action)),
  );
  const found = matches[nth];
  if (!found) {
    throw new Error(
      `RFC 8448 §${sectionNumber}: no ${side} step #${nth} matching ${String(actionPrefix)} ` +
        `(${matches.length} match${matches.length === 1 ? '' : 'es'})`,
    );
  }
  return found;
}

/** The bytes of one labelled value of a step (a fresh copy). Throws, listing the labels present, if absent. */
export function value(s: Rfc8448Step, label: string): Uint8Array {
  const hex = Object.hasOwn(s.values, label) ? s.values[label] : undefined;
  if (hex === undefined) {
    const have = Object.keys(s.values);
    throw new Error(
      `RFC 8448 step "{${s.side}} ${s.action}" has no value "${label}" ` +
        `(has ${have.length ? have.map((l) => `"${l}"`).join(', ') : 'no values'})`,
    );
  }
  return fromHex(hex);
}

/* ------------------------------------------------------------------------------------------------ */

/** From dist/vectors/ the JSON is two levels up; from vectors/ itself it is a sibling. */
const JSON_LOCATIONS = ['../../vectors/rfc8448.json', './rfc8448.json'];

function validate(v: unknown): asserts v is Rfc8448 {
  const fail = (where: string): never => {
    throw new Error(`loadRfc8448: malformed rfc8448.json at ${where}`);
  };
  if (!isObject(v) || v.source !== 'RFC 8448' || !Array.isArray(v.sections)) fail('top level');
  const sections = (v as { sections: unknown[] }).sections;
  sections.forEach((sec, i) => {
    if (!isObject(sec) || typeof sec.number !== 'string' || typeof sec.title !== 'string' || !Array.isArray(sec.steps)) {
      fail(`sections[${i}]`);
    }
    (sec as { steps: unknown[] }).steps.forEach((st, j) => {
      const where = `sections[${i}].steps[${j}]`;
      if (!isObject(st) || st.index !== j || (st.side !== 'client' && st.side !== 'server')) fail(where);
      const s = st as Record<string, unknown>;
      if (typeof s.action !== 'string' || !isObject(s.values)) fail(where);
      for (const [label, hex] of Object.entries(s.values as object)) {
        if (typeof hex !== 'string' || !/^(?:[0-9a-f]{2})*$/.test(hex)) fail(`${where}.values[${JSON.stringify(label)}]`);
      }
    });
  });
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function deepFreeze<T>(v: T): T {
  if (typeof v === 'object' && v !== null) {
    for (const x of Object.values(v)) deepFreeze(x);
    Object.freeze(v);
  }
  return v;
}
