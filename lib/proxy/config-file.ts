/**
 * The proxy's configuration file: an INI file in the style of stunnel's, so that one process can run
 * several services.
 *
 * ```ini
 * ; Global options come first. Those that also exist per service are defaults for every service.
 * json = yes
 * idle-timeout = 5m
 *
 * [web]                          ; each [section] is one service, named in every log line
 * role = client
 * accept = 127.0.0.1:8080
 * connect = proxy-b.example:8443
 * psk = 0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0
 * identity = web-key
 * ```
 *
 * Rules: one `field = value` per line; whole-line comments start with `;` or `#` (there are no comments at
 * the end of a line, so `#` may appear in values); field names are the command-line option names without
 * `--` and are case-insensitive; a value may be wrapped in double quotes to keep surrounding spaces; a
 * boolean is yes/no, true/false, on/off or 1/0; a repeatable field (such as `psk`) is written once per value.
 * Every error names the file, the line and the field, e.g.
 * `proxy.conf:12: [web] accept: expected HOST:PORT, got "8080"`.
 *
 * This module only reads the file's structure and the field types; the meaning of each value is checked
 * by the caller (the same code that checks the command-line flags), which reports through
 * {@link ConfigSection.error} so that its messages point at the right line too.
 */
import { MAX_OPTION_FILE_BYTES, readTextFileBounded } from '../qkd/bounded-file.js';

/** How one field is read: the shape util.parseArgs uses for its options. */
export interface FieldSpec {
  readonly type: 'string' | 'boolean';
  readonly multiple?: boolean;
}

export interface ConfigSchema {
  /** Fields that only the global section (before the first `[service]`) may set. */
  readonly global: Readonly<Record<string, FieldSpec>>;
  /** Fields of a service. Set in the global section, they are defaults for every service. */
  readonly service: Readonly<Record<string, FieldSpec>>;
}

/** A configuration mistake, located: `FILE:LINE: [SECTION] FIELD: what is wrong`. */
export class ConfigError extends Error {
  override readonly name = 'ConfigError';
  constructor(
    readonly file: string,
    /** 1-based line number (0 when the file could not be read at all). */
    readonly line: number,
    /** The service section, when the error is inside one. */
    readonly section: string | undefined,
    readonly field: string | undefined,
    readonly detail: string,
  ) {
    super(`${file}${line > 0 ? `:${line}` : ''}: ${section !== undefined ? `[${section}] ` : ''}${field !== undefined ? `${field}: ` : ''}${detail}`);
  }
}

/** A value as util.parseArgs would return it: a string, a boolean, or (repeatable fields) a list of strings. */
export type ConfigValue = string | boolean | string[];

export interface ConfigSection {
  /** The service's name (the `[section]`), or undefined for the global section. */
  readonly name: string | undefined;
  /** The line of the `[section]` header (1 for the global section). */
  readonly line: number;
  /** The values by field name, service sections including the global defaults they did not override. */
  readonly values: Readonly<Record<string, ConfigValue>>;
  /** The line that set `field` (its `nth` value, 1-based, for a repeatable field); the header's if unset. */
  lineOf(field: string, nth?: number): number;
  /** A {@link ConfigError} pointing at `field` (or at the section header when `field` is undefined or unset). */
  error(field: string | undefined, detail: string, nth?: number): ConfigError;
}

export interface ConfigFile {
  readonly file: string;
  readonly global: ConfigSection;
  /** The services, in file order (at least one). */
  readonly services: readonly ConfigSection[];
}

/**
 * Reads and parses `path`, at most {@link MAX_OPTION_FILE_BYTES} (64 MiB) of it: a path to something endless
 * (/dev/zero) is an error, not a read without end. Throws {@link ConfigError}.
 */
export function readConfigFile(path: string, schema: ConfigSchema): ConfigFile {
  let text: string;
  try {
    text = readTextFileBounded(path, MAX_OPTION_FILE_BYTES); // its bytes wiped: a configuration may hold PSKs
  } catch (e) {
    throw new ConfigError(path, 0, undefined, undefined, `cannot read the configuration file: ${(e as Error).message}`);
  }
  return parseConfig(text, path, schema);
}

/** Parses configuration text; `file` is only used in error messages. Throws {@link ConfigError}. */
export function parseConfig(text: string, file: string, schema: ConfigSchema): ConfigFile {
  const global = new SectionBuilder(file, undefined, 1);
  const services: SectionBuilder[] = [];
  let current = global;
  const lines = text.replace(/^\uFEFF/, '').split(/\r?\n/);
  for (let i = 0; i < lines.length; i++) {
    const lineNo = i + 1;
    const line = lines[i].trim();
    if (line === '' || line.startsWith('#') || line.startsWith(';')) continue;
    const header = /^\[(.*)\]$/.exec(line);
    if (header) {
      const name = header[1].trim();
      if (!SECTION_NAME.test(name)) {
        throw new ConfigError(file, lineNo, undefined, undefined, `invalid service name "${name}": use letters, digits, ".", "_" and "-"`);
      }
      const previous = services.find((s) => s.name === name);
      if (previous) throw new ConfigError(file, lineNo, name, undefined, `service [${name}] is already defined on line ${previous.line}`);
      current = new SectionBuilder(file, name, lineNo);
      services.push(current);
      continue;
    }
    const eq = line.indexOf('=');
    if (eq < 0) {
      // The line is not quoted: it may be a key written with the wrong separator.
      throw new ConfigError(file, lineNo, current.name, undefined, 'expected "field = value" or "[service]"');
    }
    const field = line.slice(0, eq).trim().toLowerCase();
    let value = line.slice(eq + 1).trim();
    if (value.length >= 2 && value.startsWith('"') && value.endsWith('"')) value = value.slice(1, -1);
    if (field === '') throw new ConfigError(file, lineNo, current.name, undefined, 'a field name is missing before "="');
    // Own properties only: "constructor" or "__proto__" must be unknown fields, not Object.prototype's members.
    const globalSpec = Object.hasOwn(schema.global, field) ? schema.global[field] : undefined;
    const serviceSpec = Object.hasOwn(schema.service, field) ? schema.service[field] : undefined;
    const spec = current === global ? (globalSpec ?? serviceSpec) : serviceSpec;
    if (!spec) {
      if (current !== global && globalSpec) {
        throw new ConfigError(file, lineNo, current.name, field, 'can only be set in the global section (before the first [service])');
      }
      const known = Object.keys(current === global ? { ...schema.global, ...schema.service } : schema.service);
      const hint = closest(field, known);
      throw new ConfigError(file, lineNo, current.name, field, `unknown field${hint ? ` (did you mean "${hint}"?)` : ''}`);
    }
    current.set(field, spec, value, lineNo);
  }
  if (services.length === 0) {
    throw new ConfigError(file, Math.max(1, lines.length), undefined, undefined, 'no service defined: add a [name] section with role, accept and connect');
  }
  const globalSection = global.build(undefined, schema);
  return { file, global: globalSection, services: services.map((s) => s.build(global, schema)) };
}

// --- internals ---------------------------------------------------------------------------------------------

const SECTION_NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;
const TRUE = new Set(['yes', 'true', 'on', '1']);
const FALSE = new Set(['no', 'false', 'off', '0']);

class SectionBuilder {
  /** field → (value, line) in file order. */
  readonly entries = new Map<string, { value: string | boolean; line: number }[]>();

  constructor(
    readonly file: string,
    readonly name: string | undefined,
    readonly line: number,
  ) {}

  set(field: string, spec: FieldSpec, raw: string, line: number): void {
    if (raw === '') throw new ConfigError(this.file, line, this.name, field, 'empty value');
    let value: string | boolean = raw;
    if (spec.type === 'boolean') {
      const lower = raw.toLowerCase();
      if (TRUE.has(lower)) value = true;
      else if (FALSE.has(lower)) value = false;
      else throw new ConfigError(this.file, line, this.name, field, `expected yes or no, got "${truncate(raw)}"`);
    }
    const list = this.entries.get(field) ?? [];
    if (list.length > 0 && !spec.multiple) {
      throw new ConfigError(this.file, line, this.name, field, `set twice (first on line ${list[0].line})`);
    }
    list.push({ value, line });
    this.entries.set(field, list);
  }

  /** Merges the global defaults under this section's own values (a section's list replaces the global list). */
  build(defaults: SectionBuilder | undefined, schema: ConfigSchema): ConfigSection {
    const merged = new Map<string, { value: string | boolean; line: number }[]>();
    if (defaults) for (const [k, v] of defaults.entries) if (schema.service[k]) merged.set(k, v);
    for (const [k, v] of this.entries) merged.set(k, v);
    const values: Record<string, ConfigValue> = {};
    for (const [k, list] of merged) {
      const spec = schema.service[k] ?? schema.global[k];
      values[k] = spec?.multiple ? list.map((e) => String(e.value)) : list[0].value;
    }
    const { file, name, line: headerLine } = this;
    const lineOf = (field: string, nth = 1): number => {
      const list = merged.get(field);
      return list?.[Math.min(Math.max(nth, 1), list.length) - 1]?.line ?? headerLine;
    };
    return {
      name,
      line: headerLine,
      values,
      lineOf,
      error: (field, detail, nth) => new ConfigError(file, field !== undefined ? lineOf(field, nth) : headerLine, name, field, detail),
    };
  }
}

function truncate(s: string): string {
  return s.length > 60 ? s.slice(0, 57) + '...' : s;
}

/** The known name nearest to `name` (edit distance at most 3), for "did you mean" hints. */
function closest(name: string, known: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestDistance = 4;
  for (const k of known) {
    const d = editDistance(name, k);
    if (d < bestDistance) {
      best = k;
      bestDistance = d;
    }
  }
  return best;
}

function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++) {
      cur[j] = Math.min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    prev = cur;
  }
  return prev[b.length];
}
