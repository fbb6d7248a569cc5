/**
 * The plain-data form of a trace: each record and each handshake message is a tree of named fields with
 * their offset, length and value, nested like Wireshark's packet details. Plain JSON-serialisable objects,
 * so that a command line can print them and a web page can render them.
 */
import { fromUtf8, toHex } from '../codec/bytes.js';
import { Reader } from '../codec/reader.js';
import { TlsError } from '../errors.js';

/** One field of a record or a message. */
export interface TraceNode {
  /** The field's name, as in RFC 8446's presentation language (`legacy_version`, `cipher_suites`, ...). */
  readonly name: string;
  /** Where the field starts, counted from the start of its record or handshake message. */
  readonly offset: number;
  /** The field's length in bytes (with its length prefix, for a vector). */
  readonly length: number;
  /** The value, rendered: a number, a registry name with its code, hex, or text. */
  readonly value?: string;
  readonly children?: readonly TraceNode[];
}

/** One trace entry: a record, a handshake message, a secret (only with a key log), or a note. */
export interface TraceEvent {
  readonly direction: 'sent' | 'received';
  readonly kind: 'record' | 'handshake' | 'secret';
  /**
   * Records: where the record starts in its direction's stream. Handshake messages: where the record holding the
   * message's first byte starts (a protected record's plaintext has no place of its own in the stream), so the
   * messages that start in one record share its offset.
   */
  readonly streamOffset?: number;
  readonly tree: TraceNode;
}

interface MutableNode {
  name: string;
  offset: number;
  length: number;
  value?: string;
  children?: MutableNode[];
}

/**
 * Builds a {@link TraceNode} tree while reading with the codec's {@link Reader}: each read names its field.
 * Vectors open a nested node whose body must be consumed exactly, as in the parsers.
 */
export class TreeBuilder {
  private readonly stack: MutableNode[];

  /** `buf` is the whole record or message; offsets are reported from `base`. */
  constructor(
    readonly r: Reader,
    root: MutableNode,
    private readonly base: number,
  ) {
    this.stack = [root];
  }

  static start(name: string, buf: Uint8Array): TreeBuilder {
    return new TreeBuilder(new Reader(buf), { name, offset: 0, length: buf.length, children: [] }, 0);
  }

  /** The tree built so far. */
  get root(): TraceNode {
    return this.stack[0];
  }

  private add(node: MutableNode): MutableNode {
    const top = this.stack[this.stack.length - 1];
    (top.children ??= []).push(node);
    return node;
  }

  private at(start: number): { offset: number; length: number } {
    return { offset: start - this.base, length: this.r.offset - start };
  }

  u8(name: string, render: (v: number) => string = String): number {
    const start = this.r.offset;
    const v = this.r.u8(name);
    this.add({ name, ...this.at(start), value: render(v) });
    return v;
  }
  u16(name: string, render: (v: number) => string = String): number {
    const start = this.r.offset;
    const v = this.r.u16(name);
    this.add({ name, ...this.at(start), value: render(v) });
    return v;
  }
  u24(name: string, render: (v: number) => string = String): number {
    const start = this.r.offset;
    const v = this.r.u24(name);
    this.add({ name, ...this.at(start), value: render(v) });
    return v;
  }
  u32(name: string, render: (v: number) => string = String): number {
    const start = this.r.offset;
    const v = this.r.u32(name);
    this.add({ name, ...this.at(start), value: render(v) });
    return v;
  }
  /** `n` bytes, shown as hex (or as `render` says). */
  bytes(name: string, n: number, render: (b: Uint8Array) => string = toHex): Uint8Array {
    const start = this.r.offset;
    const v = this.r.bytes(n, name);
    this.add({ name, ...this.at(start), value: render(v) });
    return v;
  }
  /** The rest of the current scope, as one field. */
  rest(name: string, render: (b: Uint8Array) => string = toHex): Uint8Array {
    return this.bytes(name, this.r.remaining, render);
  }
  /** A leaf with a value but no bytes of its own (e.g. a summary). */
  note(name: string, value: string): void {
    this.add({ name, offset: this.r.offset - this.base, length: 0, value });
  }

  /**
   * A vector with a `prefix`-byte length: a node `name` holding a `length` field and what `body` reads
   * (which must use up the vector). `value` summarises the node (e.g. "3 suites").
   *
   * A vector whose length fits its parent is a frame of its own: what inside it does not parse (a truncated
   * element, bytes left over after its last one) becomes a `malformed` field inside the vector, at the bytes
   * concerned, and the parent goes on after the vector. A length that overruns the parent throws to the parent,
   * whose own frame is then broken.
   */
  vector(name: string, prefix: 1 | 2 | 3, body: (t: TreeBuilder) => void, value?: (t: TraceNode) => string): void {
    const start = this.r.offset;
    const node = this.add({ name, offset: start - this.base, length: 0, children: [] });
    this.stack.push(node);
    try {
      const n = prefix === 1 ? this.u8('length') : prefix === 2 ? this.u16('length') : this.u24('length');
      const bodyStart = this.r.offset;
      const sub = new Reader(this.r.buf, bodyStart, bodyStart + n);
      this.r.bytes(n, name); // bounds check and skip; the body is read through `sub`
      // Errors inside are caught here, not by a guard further out: by now this.r is past the whole vector, so an
      // outer guard would show the bytes after it as malformed and never the ones that are.
      new TreeBuilder(sub, node, this.base).guarded((inner) => {
        body(inner);
        inner.r.expectEnd(name);
      });
    } finally {
      this.stack.pop();
      node.length = this.r.offset - start;
    }
    if (value) node.value = value(node);
  }

  /** A structure without a length prefix: a node grouping what `body` reads. */
  group(name: string, body: (t: TreeBuilder) => void, value?: (t: TraceNode) => string): void {
    const start = this.r.offset;
    const node = this.add({ name, offset: start - this.base, length: 0, children: [] });
    this.stack.push(node);
    try {
      body(this);
    } finally {
      this.stack.pop();
      node.length = this.r.offset - start;
    }
    if (value) node.value = value(node);
  }

  /** Runs `body` until the current scope is used up. */
  each(body: (t: TreeBuilder) => void): void {
    while (!this.r.atEnd) body(this);
  }

  /**
   * Runs `body`; if the bytes do not parse, records what went wrong and the bytes left as a `malformed`
   * field instead of throwing (a trace shows hostile input, it does not judge it).
   */
  guarded(body: (t: TreeBuilder) => void): void {
    try {
      body(this);
    } catch (e) {
      if (!(e instanceof TlsError)) throw e;
      const start = this.r.offset;
      const left = this.r.remaining > 0 ? this.r.rest() : new Uint8Array(0);
      this.add({ name: 'malformed', offset: start - this.base, length: left.length, value: `${e.message.replace(/^tls alert: [^:]*: /, '')}${left.length ? ` (${toHex(left)})` : ''}` });
    }
  }
}

/** `0x0303`-style hex of a number. */
export function hex(v: number, width = 4): string {
  return `0x${v.toString(16).padStart(width, '0')}`;
}

/** A code with its registry name: `x25519 (0x001d)`, or just the hex when unknown. */
export function named(table: Readonly<Record<string, number>>, width = 4): (v: number) => string {
  return (v) => {
    for (const [k, code] of Object.entries(table)) if (code === v) return `${k} (${hex(v, width)})`;
    return `unknown (${hex(v, width)})`;
  };
}

/** Bytes as hex, followed by their text when all are printable ASCII (PSK identities, ALPN names, hosts). */
export function hexAndText(b: Uint8Array): string {
  const printable = b.length > 0 && b.every((c) => c >= 0x20 && c < 0x7f);
  // Not String.fromCharCode(...b): one argument per byte overflows the stack for a long value (a 64 KiB PSK
  // identity or host name leaves little room), and the dissector must not throw. Printable ASCII is valid UTF-8.
  return printable ? `${toHex(b)} ("${fromUtf8(b)}")` : toHex(b);
}
