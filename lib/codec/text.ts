/**
 * Text from a peer made fit for a human-readable line (an error message, a log line, an event the CLI prints).
 */

/**
 * `s` with at most `max` characters (then `...`), and its control characters shown as `\uXXXX` escapes: C0 (newline,
 * carriage return, escape...), DEL, C1, the line and paragraph separators, and the bidirectional marks, embeddings,
 * overrides and isolates. A peer's text printed through it cannot rewrite a terminal, start a fake log line, reorder
 * what follows it, or make a line unboundedly long.
 */
export function clip(s: string, max = 300): string {
  return shorten(s, max).replace(CONTROLS, escape);
}

/**
 * A value for a `key=value` line: as it is when it is plain (no space, quote, `=`, backslash or control character,
 * not empty), else as a JSON string literal with every control character escaped, so that a value cannot forge
 * another field or line. At most `max` characters of `s` are kept (then `...`).
 */
export function fieldText(s: string, max = 1000): string {
  const short = shorten(s, max);
  if (short !== '' && !/[\s"=\\]/.test(short) && short.replace(CONTROLS, '') === short) return short;
  return JSON.stringify(short).replace(CONTROLS, escape);
}

/**
 * `JSON.stringify(value)` for a log line: JSON escapes C0 itself; this also escapes DEL, C1, the line separators and
 * the bidirectional controls (as `\uXXXX`, which JSON reads back to the same string), so that the line cannot rewrite
 * a terminal it is shown on.
 */
export function jsonText(value: unknown): string {
  return (JSON.stringify(value) ?? 'null').replace(CONTROLS, escape);
}

const CONTROLS = /[\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069]/g;

function shorten(s: string, max: number): string {
  return s.length > max ? `${s.slice(0, max)}...` : s;
}

function escape(c: string): string {
  return `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`;
}

/**
 * HOST:PORT as a log line or an error names an address: an IPv6 address in brackets, `[::1]:4433` (RFC 3986 §3.2.2),
 * so that it reads back as one and says where the address ends. An unknown host or port is written as given.
 */
export function hostPortText(host: string | undefined, port: number | string | undefined): string {
  return host?.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
}
