/**
 * Turns the text of RFC 8448 ("Example Handshake Traces for TLS 1.3") into vectors/rfc8448.json.
 *
 * As a library: `extractRfc8448(text)` parses sections 3 to 7 (pure, no I/O) and `formatRfc8448Json()`
 * gives the exact bytes of the committed JSON. As a script:
 *
 * ```
 * node dist/vectors/extract-rfc8448.js            # writes vectors/rfc8448.json
 * node dist/vectors/extract-rfc8448.js --check    # exits 1 if vectors/rfc8448.json is out of date
 * node dist/vectors/extract-rfc8448.js --rfc PATH # another copy of the RFC text
 * ```
 *
 * The RFC text it expects (RFC 8448 §3):
 *
 * ```
 *    {server}  derive secret "tls13 c hs traffic":
 *
 *       PRK (32 octets):  1d c8 26 e9 36 06 aa 6f dc 0a ad c1 2f 74 1b 01
 *          04 6a a6 b9 9f 69 1e d2 21 a9 f0 ca 04 3f be ac
 * ```
 *
 * Each value's hex must add up to the octet count the RFC declares; a wrong count, a label repeated
 * within a step, or any line that is neither a step, a value nor hex continuing a value is an error
 * naming the section and the line. Page breaks (footer, form feed, running header) are removed first,
 * wherever they fall, including inside a hex dump.
 */
import { readFileSync, realpathSync, writeFileSync } from 'node:fs';
import { fileURLToPath, pathToFileURL } from 'node:url';
import type { Rfc8448, Rfc8448Section, Rfc8448Side, Rfc8448Step } from './rfc8448.js';

/**
 * A malformed RFC text: names the section and the 1-based line of the input, or only the section when the problem
 * has no line (its heading is missing), or neither when the text has no trace section at all.
 */
export class Rfc8448FormatError extends Error {
  constructor(
    readonly section: string | undefined,
    readonly line: number | undefined,
    detail: string,
  ) {
    super(`RFC 8448${section === undefined ? '' : ` §${section}`}${line === undefined ? '' : ` line ${line}`}: ${detail}`);
    this.name = 'Rfc8448FormatError';
  }
}

export interface ExtractOptions {
  /**
   * Whether a step that carries values must end with a colon, as every such step of RFC 8448 does (a missing
   * colon then flags damaged text). The Internet-Draft versions (draft-ietf-tls-tls13-vectors) print some
   * step lines without it. Default: required in the RFC, optional in a draft (a text whose running page
   * header starts with "Internet-Draft").
   */
  readonly requireStepColons?: boolean;
}

/**
 * Parses the traces of sections 3 to 7 of RFC 8448, or of an Internet-Draft version of it (whose page
 * headers and footers differ). Throws Rfc8448FormatError on anything unexpected.
 */
export function extractRfc8448(text: string, options: ExtractOptions = {}): Rfc8448 {
  const isDraft = text.split(/\r?\n/).some((l) => l.length <= MAX_RUNNING_LINE && DRAFT_HEADER.test(l));
  const requireColons = options.requireStepColons ?? !isDraft;
  const lines = stripPageBreaks(text);
  const headings = findSectionHeadings(lines);
  // "line 0" named no line of the text (it said so for an empty file too).
  if (!headings.some((h) => (TRACE_SECTIONS as readonly string[]).includes(h.number))) {
    throw new Rfc8448FormatError(undefined, undefined, `no traces: none of the section headings 3 to 7 is in the text (${HEADING_EXAMPLE})`);
  }
  const sections: Rfc8448Section[] = [];
  for (const number of TRACE_SECTIONS) {
    const at = headings.findIndex((h) => h.number === number);
    if (at < 0) throw new Rfc8448FormatError(number, undefined, `section heading not found (a line "${number}.  TITLE" at the left margin)`);
    const start = headings[at].pos + 1;
    const end = at + 1 < headings.length ? headings[at + 1].pos : lines.length;
    const steps = parseSteps(number, lines.slice(start, end), requireColons);
    if (steps.length === 0) throw new Rfc8448FormatError(number, lines[headings[at].pos].n, 'section has no steps');
    sections.push({ number, title: headings[at].title, steps });
  }
  return { source: isDraft ? 'draft-ietf-tls-tls13-vectors' : 'RFC 8448', sections };
}

/** The committed form of the vectors: two-space indentation, keys in the order produced, final newline. */
export function formatRfc8448Json(v: Rfc8448): string {
  return JSON.stringify(v, null, 2) + '\n';
}

/* ------------------------------------------------------------------------------------------------ */

const TRACE_SECTIONS = ['3', '4', '5', '6', '7'] as const;

interface Line {
  /** 1-based line number in the original text, for error messages. */
  readonly n: number;
  readonly text: string;
}

/**
 * "Thomson                       Informational                     [Page 1]" (RFC), or
 * "Thomson                  Expires March 31, 2019                 [Page 1]" (Internet-Draft).
 */
const PAGE_FOOTER = /^\S.*\s{2,}(?:Informational|Expires [A-Z][a-z]+ \d{1,2}, \d{4}|Expires \d{1,2} [A-Z][a-z]+ \d{4})\s{2,}\[Page \d+\]$/;
/**
 * "RFC 8448                     TLS 1.3 Traces                 January 2019" (RFC), or
 * "Internet-Draft               TLS 1.3 Traces              September 2018" (Internet-Draft).
 */
const PAGE_HEADER = /^(?:RFC 8448|Internet-Draft)\s{2,}\S.*\s{2,}(?:[A-Z][a-z]+ )?(?:\d{1,2} [A-Z][a-z]+ )?\d{4}$/;
/** The running header of an Internet-Draft. */
const DRAFT_HEADER = /^Internet-Draft\s{2,}\S.*\s{2,}\S.*\d{4}\s*$/;
/**
 * The longest line tested against the page header and footer patterns: those lines fill at most the 72
 * columns of an RFC page, and the patterns backtrack quadratically on a long line of spaces (hostile --file).
 */
const MAX_RUNNING_LINE = 200;
/** "3.  Simple 1-RTT Handshake" at the left margin. */
const HEADING_EXAMPLE = 'lines such as "3.  Simple 1-RTT Handshake" at the left margin';
const SECTION_HEADING = /^(\d+)\.\s+(\S.*)$/;
/** "   {client}  create an ephemeral x25519 key pair:" */
const STEP_LINE = /^\s+\{([a-z]+)\}\s+(\S.*)$/;
/** "      PRK (32 octets):  33 ad ..."; the count is absent only for "salt:  0 (all zero octets)". */
const VALUE_LINE = /^(\s+)([A-Za-z][A-Za-z0-9 _-]*?)(?: \((\d+) octets?\))?:(?:\s+(\S.*))?$/;
/** A run of hex octets separated by single spaces. */
const HEX_RUN = /^[0-9a-fA-F]{2}(?: [0-9a-fA-F]{2})*$/;
/** RFC 8446 §7.1: a "0" salt is a string of Hash.length zero octets. */
const ALL_ZERO = '0 (all zero octets)';
/** How RFC 8448 prints a zero-length value: "hash (0 octets):  (empty)". */
const EMPTY = '(empty)';

/**
 * Removes form feeds, page footers and running headers, and the blank lines around them, so that a hex
 * dump split by a page break becomes contiguous. Right-trims every line; keeps original line numbers.
 */
function stripPageBreaks(text: string): Line[] {
  const out: Line[] = [];
  const raw = text.split(/\r?\n/);
  let skipBlanks = false;
  for (let i = 0; i < raw.length; i++) {
    // trimEnd(), not replace(/\s+$/): the regex is quadratic on a long run of inner spaces.
    const t = raw[i].replace(/\f/g, '').trimEnd();
    if (t.length <= MAX_RUNNING_LINE && (PAGE_FOOTER.test(t) || PAGE_HEADER.test(t))) {
      while (out.length > 0 && out[out.length - 1].text === '') out.pop();
      skipBlanks = true;
      continue;
    }
    if (t === '' && skipBlanks) continue;
    skipBlanks = false;
    out.push({ n: i + 1, text: t });
  }
  return out;
}

interface Heading {
  readonly number: string;
  readonly title: string;
  /** Index into the stripped lines. */
  readonly pos: number;
}

function findSectionHeadings(lines: readonly Line[]): Heading[] {
  const out: Heading[] = [];
  lines.forEach((l, pos) => {
    const m = SECTION_HEADING.exec(l.text);
    if (m) out.push({ number: m[1], title: m[2].replace(/\s+/g, ' '), pos });
  });
  return out;
}

interface OpenValue {
  readonly label: string;
  readonly line: number;
  readonly indent: number;
  /** Declared octet count, or 'zero-salt' for "0 (all zero octets)". */
  readonly declared: number | 'zero-salt';
  hex: string;
}

interface OpenStep {
  readonly line: number;
  readonly side: Rfc8448Side;
  action: string;
  /** The step line(s) may still continue: nothing but the action has been read so far. */
  headerOpen: boolean;
  /** The step text ended with ':' (known once the header is closed). */
  hasColon: boolean;
  readonly values: Map<string, string>;
  readonly zeroSalts: { label: string; line: number }[];
  value?: OpenValue;
}

/**
 * Parses the lines of one section. Prose before the first step is skipped; after it, every non-blank
 * line must be a step line, the continuation of a step line, a value line, or hex continuing a value.
 */
function parseSteps(sectionNumber: string, lines: readonly Line[], requireColons: boolean): Rfc8448Step[] {
  const fail: (line: number, detail: string) => never = (line, detail) => {
    throw new Rfc8448FormatError(sectionNumber, line, detail);
  };
  const steps: Rfc8448Step[] = [];
  let cur: OpenStep | undefined;

  const closeValue = (): void => {
    const v = cur?.value;
    if (!cur || !v) return;
    cur.value = undefined;
    if (v.declared === 'zero-salt') {
      cur.zeroSalts.push({ label: v.label, line: v.line });
      cur.values.set(v.label, '');
      return;
    }
    const octets = v.hex.length / 2;
    if (octets !== v.declared) fail(v.line, `"${v.label}" declares ${v.declared} octets but has ${octets}`);
    cur.values.set(v.label, v.hex);
  };

  const closeStep = (): void => {
    if (!cur) return;
    closeValue();
    const step = cur;
    if (step.headerOpen) finishHeader(step);
    if (step.zeroSalts.length > 0) {
      // The salt's length is Hash.length, which is the length of the Extract output ("secret").
      const secret = step.values.get('secret');
      for (const z of step.zeroSalts) {
        if (secret === undefined) fail(z.line, `"${z.label}" is "${ALL_ZERO}" but the step has no "secret" to size it`);
        step.values.set(z.label, '00'.repeat(secret.length / 2));
      }
    }
    steps.push({ index: steps.length, side: step.side, action: step.action, values: Object.fromEntries(step.values) });
    cur = undefined;
  };

  const finishHeader = (step: OpenStep): void => {
    step.headerOpen = false;
    step.hasColon = step.action.endsWith(':');
    if (!balanced(step.action)) fail(step.line, `unbalanced parentheses in step "${step.action}"`);
    step.action = step.action.replace(/\s*:$/, '');
  };

  for (let i = 0; i < lines.length; i++) {
    const { n, text } = lines[i];

    const stepMatch = STEP_LINE.exec(text);
    if (stepMatch) {
      closeStep();
      const side = stepMatch[1];
      if (side !== 'client' && side !== 'server') fail(n, `unknown side "{${side}}"`);
      const action = fold(stepMatch[2]);
      cur = { line: n, side: side as Rfc8448Side, action, headerOpen: true, hasColon: false, values: new Map(), zeroSalts: [] };
      if (action.endsWith(':')) finishHeader(cur);
      continue;
    }
    if (!cur) continue; // prose before the first step of the section

    if (text === '') {
      closeValue();
      if (cur.headerOpen) finishHeader(cur);
      continue;
    }

    const valueMatch = VALUE_LINE.exec(text);
    if (!valueMatch && cur.headerOpen && cur.values.size === 0 && !cur.value) {
      // A step line that wraps, e.g. "(same as server\n      handshake data write traffic keys)".
      // Appended, not folded again as a whole: that is quadratic over a step line wrapped many times.
      const more = fold(text);
      cur.action = `${cur.action} ${more}`;
      if (more.endsWith(':')) finishHeader(cur);
      continue;
    }
    if (valueMatch) {
      closeValue();
      if (cur.headerOpen) finishHeader(cur);
      // RFC 8448 writes steps that carry values with a trailing colon; "(same as server)" steps have none.
      // (Some draft versions drop that colon: there a value line simply ends the step line.)
      if (!cur.hasColon && requireColons) fail(n, `value line after step "${cur.action}", which has no trailing colon`);
      const [, indent, label, count, rest] = valueMatch;
      if (cur.values.has(label) || cur.zeroSalts.some((z) => z.label === label)) {
        fail(n, `duplicate label "${label}" in step "${cur.action}"`);
      }
      let declared: number | 'zero-salt';
      let hex = '';
      if (count === undefined) {
        if (rest !== ALL_ZERO) fail(n, `value "${label}" has no octet count`);
        declared = 'zero-salt';
      } else {
        declared = Number(count);
        if (rest === EMPTY) {
          if (declared !== 0) fail(n, `"${label}" is "${EMPTY}" but declares ${declared} octets`);
        } else if (rest !== undefined) {
          if (!HEX_RUN.test(rest)) fail(n, `unparseable value for "${label}": ${JSON.stringify(rest)}`);
          hex = rest.replace(/ /g, '').toLowerCase();
        }
      }
      cur.value = { label, line: n, indent: indent.length, declared, hex };
      continue;
    }

    const v = cur.value;
    const indent = text.length - text.trimStart().length;
    if (v && v.declared !== 'zero-salt' && indent > v.indent && HEX_RUN.test(text.trim())) {
      v.hex += text.trim().replace(/ /g, '').toLowerCase();
      continue;
    }
    fail(n, `unparseable line in step "${cur.action}": ${JSON.stringify(text.trim())}`);
  }
  closeStep();
  return steps;
}

function fold(s: string): string {
  return s.replace(/\s+/g, ' ').trim();
}

function balanced(s: string): boolean {
  let depth = 0;
  for (const c of s) {
    if (c === '(') depth++;
    else if (c === ')' && --depth < 0) return false;
  }
  return depth === 0;
}

/* ---------------------------------------- script entry ------------------------------------------ */

function main(argv: string[]): number {
  // The project root is two levels above dist/vectors/; the RFC lives in ../shared/docs from there.
  const root = new URL('../../', import.meta.url);
  let rfc: URL = new URL('../shared/docs/rfc8448.txt', root);
  const out = new URL('vectors/rfc8448.json', root);
  let check = false;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--check') check = true;
    else if (a === '--rfc' && i + 1 < argv.length) rfc = pathToFileURL(argv[++i]);
    else {
      process.stderr.write(`usage: extract-rfc8448 [--check] [--rfc PATH]\nunknown argument: ${a}\n`);
      return 2;
    }
  }
  const vectors = extractRfc8448(readFileSync(rfc, 'utf8'));
  const json = formatRfc8448Json(vectors);
  const summary = vectors.sections.map((s) => `§${s.number} ${s.steps.length} steps`).join(', ');
  if (check) {
    let current: string | undefined;
    try {
      current = readFileSync(out, 'utf8');
    } catch {
      current = undefined;
    }
    if (current !== json) {
      process.stderr.write(`${fileURLToPath(out)} is ${current === undefined ? 'missing' : 'out of date'}; ` +
        `regenerate it with: node dist/vectors/extract-rfc8448.js\n`);
      return 1;
    }
    process.stdout.write(`${fileURLToPath(out)} is up to date (${summary})\n`);
    return 0;
  }
  writeFileSync(out, json);
  process.stdout.write(`wrote ${fileURLToPath(out)} (${summary})\n`);
  return 0;
}

function isMainModule(): boolean {
  const entry = process.argv[1];
  if (!entry) return false;
  try {
    return pathToFileURL(realpathSync(entry)).href === import.meta.url;
  } catch {
    return false;
  }
}

if (isMainModule()) {
  try {
    process.exitCode = main(process.argv.slice(2));
  } catch (err) {
    process.stderr.write(`${err instanceof Error ? err.message : String(err)}\n`);
    process.exitCode = 1;
  }
}
