/** Walking the tracer's trees (lib/trace/tree.ts) in tests. */
import type { TraceNode } from '../../lib/trace/index.js';

/** The child named `name` of `n` (the first, or the nth from 0), or throws. */
export function child(n: TraceNode, name: string, nth = 0): TraceNode {
  const found = (n.children ?? []).filter((c) => c.name === name)[nth];
  if (!found) throw new Error(`${n.name} has no child ${name} #${nth} (has ${(n.children ?? []).map((c) => c.name).join(', ')})`);
  return found;
}

/** Follows a path of child names ("body/extensions/Extension#4"). */
export function at(n: TraceNode, path: string): TraceNode {
  return path.split('/').reduce((node, part) => {
    const [name, nth] = part.split('#');
    return child(node, name, nth ? Number(nth) : 0);
  }, n);
}
