/**
 * The printed form of a trace: one header line per record or handshake message, then its fields indented
 * as a tree, each with its offset and length, like Wireshark's packet details:
 *
 * ```
 * >> sent record @0: TLSPlaintext (handshake: ClientHello)
 *      [0000+1] type: handshake (0x16)
 *      ...
 * ```
 */
import type { TraceEvent, TraceNode } from './tree.js';

/** The lines of one event, without trailing newline. */
export function formatTraceEvent(e: TraceEvent): string {
  const arrow = e.direction === 'sent' ? '>>' : '<<';
  const at = e.streamOffset !== undefined ? ` @${e.streamOffset}` : '';
  const head =
    e.kind === 'secret'
      ? `** secret ${e.tree.name} (from the key log)`
      : `${arrow} ${e.direction} ${e.kind === 'record' ? 'record' : 'message'}${at}: ${e.tree.name}${e.tree.value ? ` (${e.tree.value})` : ''}`;
  const lines = [head];
  if (e.kind === 'secret') {
    for (const c of e.tree.children ?? []) lines.push(`     ${c.name}: ${c.value}`);
    lines.push(`     secret: ${e.tree.value}`);
    return lines.join('\n');
  }
  for (const c of e.tree.children ?? []) node(c, 1, lines);
  return lines.join('\n');
}

/** One JSON line per event (`--trace-json`). */
export function traceEventJson(e: TraceEvent): string {
  return JSON.stringify({ event: 'trace', ...e });
}

function node(n: TraceNode, depth: number, lines: string[]): void {
  const where = `[${n.offset.toString().padStart(4, '0')}+${n.length}]`;
  lines.push(`${'   '.repeat(depth)}  ${where} ${n.name}${n.value !== undefined ? `: ${n.value}` : ''}`);
  for (const c of n.children ?? []) node(c, depth + 1, lines);
}
