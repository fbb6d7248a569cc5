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
  const short = s.length > max ? `${s.slice(0, max)}...` : s;
  return short.replace(CONTROLS, escape);
}

const CONTROLS = /[\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069]/g;

function escape(c: string): string {
  return `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`;
}
