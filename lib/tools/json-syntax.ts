/**
 * Where a JSON text (RFC 8259) first goes wrong, for a message that points the user at it. JSON.parse's own
 * messages differ between engines and versions and often give no position (V8 in Node 20: "Unexpected end of
 * JSON input", "Unexpected token 'B', ..." is not valid JSON"). Runtime-neutral; no recursion, so a deeply
 * nested text cannot overflow the stack.
 */

/** The first character that cannot continue a JSON text: 1-based line and column, and what is wrong there. */
export interface JsonSyntaxError {
  readonly line: number;
  readonly column: number;
  readonly problem: string;
}

/** Where `text` stops being valid JSON (RFC 8259), or undefined when it is valid. */
export function findJsonSyntaxError(text: string): JsonSyntaxError | undefined {
  const n = text.length;
  let i = 0;
  const open: ('[' | '{')[] = [];
  let expect: 'value' | 'value-or-]' | 'name' | 'name-or-}' | 'after-value' = 'value';
  const fail = (expected: string): JsonSyntaxError => at(text, i, i >= n ? `the text ends where ${expected} should come` : `found ${describe(text.codePointAt(i)!)} where ${expected} should come`);

  for (;;) {
    while (i < n && (text[i] === ' ' || text[i] === '\t' || text[i] === '\n' || text[i] === '\r')) i++;
    if (expect === 'after-value' && open.length === 0) return i < n ? at(text, i, `found ${describe(text.codePointAt(i)!)} after the end of the JSON value`) : undefined;
    if (i >= n) return fail(EXPECTED[expect === 'after-value' ? open.at(-1)! : expect]);
    const c = text[i];
    if (expect === 'after-value') {
      const top = open.at(-1)!;
      if (c === ',') {
        i++;
        expect = top === '[' ? 'value' : 'name';
      } else if (c === (top === '[' ? ']' : '}')) {
        i++;
        open.pop();
      } else return fail(EXPECTED[top]);
    } else if (expect === 'name' || expect === 'name-or-}') {
      if (expect === 'name-or-}' && c === '}') {
        i++;
        open.pop();
        expect = 'after-value';
        continue;
      }
      if (c !== '"') return fail(EXPECTED[expect]);
      const bad = skipString();
      if (bad) return bad;
      while (i < n && (text[i] === ' ' || text[i] === '\t' || text[i] === '\n' || text[i] === '\r')) i++;
      if (text[i] !== ':') return fail('":"');
      i++;
      expect = 'value';
    } else {
      if (expect === 'value-or-]' && c === ']') {
        i++;
        open.pop();
      } else if (c === '[' || c === '{') {
        i++;
        open.push(c);
        expect = c === '[' ? 'value-or-]' : 'name-or-}';
        continue;
      } else if (c === '"') {
        const bad = skipString();
        if (bad) return bad;
      } else {
        SCALAR.lastIndex = i;
        if (!SCALAR.test(text)) return fail(EXPECTED[expect]);
        i = SCALAR.lastIndex;
      }
      expect = 'after-value';
    }
  }

  /** Moves `i` past the string that starts there, or says where it goes wrong. */
  function skipString(): JsonSyntaxError | undefined {
    i++;
    for (;;) {
      if (i >= n) return at(text, i, 'the text ends inside a string');
      const code = text.charCodeAt(i);
      if (code === 0x22) {
        i++;
        return undefined;
      }
      if (code < 0x20) return at(text, i, `${describe(code)} inside a string (write it as an escape such as \\n)`);
      if (code === 0x5c) {
        ESCAPE.lastIndex = i;
        if (!ESCAPE.test(text)) return at(text, i, 'a "\\" that starts no escape (\\" \\\\ \\/ \\b \\f \\n \\r \\t \\uXXXX)');
        i = ESCAPE.lastIndex;
      } else i++;
    }
  }
}

const EXPECTED = {
  value: 'a value',
  'value-or-]': 'a value or "]"',
  name: 'a property name in double quotes',
  'name-or-}': 'a property name in double quotes or "}"',
  '[': '"," or "]"',
  '{': '"," or "}"',
} as const;

/** A number, true, false or null. */
const SCALAR = /-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?|true|false|null/y;
const ESCAPE = /\\(?:["\\/bfnrt]|u[0-9A-Fa-f]{4})/y;

function at(text: string, index: number, problem: string): JsonSyntaxError {
  let line = 1;
  let lineStart = 0;
  for (let k = text.indexOf('\n'); k !== -1 && k < index; k = text.indexOf('\n', k + 1)) {
    line++;
    lineStart = k + 1;
  }
  return { line, column: index - lineStart + 1, problem };
}

/** A character for a message: printable ASCII quoted, anything else named with its code point. */
function describe(code: number): string {
  const hex = `U+${code.toString(16).toUpperCase().padStart(4, '0')}`;
  if (code === 0x20) return 'a space';
  if (code < 0x20 || code === 0x7f) return `a control character (${hex})`;
  if (code === 0xfeff) return `a byte order mark (${hex})`;
  return code < 0x7f ? `"${String.fromCharCode(code)}"` : `"${String.fromCodePoint(code)}" (${hex})`;
}
