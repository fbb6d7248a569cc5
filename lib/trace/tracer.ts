/**
 * Turns a connection's record trace hook calls into trace events: one per record (header, protection,
 * inner content type, padding) and one per complete handshake message (reassembled across records, per
 * direction), each with its stream offset.
 *
 * ```ts
 * const conn = Connection.client({ crypto, psks, trace: createTracer((e) => console.log(formatTraceEvent(e))) });
 * ```
 */
import { ContentType } from '../codec/enums.js';
import type { RecordTrace, RecordTraceHook } from '../record/trace-hook.js';
import { dissectHandshake, dissectRecord } from './dissect.js';
import type { TraceEvent } from './tree.js';

/**
 * A record trace hook (the connection's `trace` option) that sends dissected events to `sink`. The tracer's own
 * state (stream offsets, partial messages) is updated before `sink` is called, so a sink that throws (the
 * connection reports it to `onCallbackError` and goes on) loses that record's events, never the later ones.
 */
export function createTracer(sink: (event: TraceEvent) => void): RecordTraceHook {
  const sides = { sent: new Side(), received: new Side() };
  return (record: RecordTrace) => {
    const side = sides[record.direction];
    const recordAt = side.offset;
    side.offset += record.header.length >= 5 ? 5 + ((record.header[3] << 8) | record.header[4]) : record.header.length;
    const messages: TraceEvent[] = [];
    if (record.type === ContentType.handshake && record.opened) {
      side.messages(record.content, recordAt, (raw, at) => messages.push({ direction: record.direction, kind: 'handshake', streamOffset: at, tree: dissectHandshake(raw) }));
    }
    sink({ direction: record.direction, kind: 'record', streamOffset: recordAt, tree: dissectRecord(record.header, record) });
    for (const m of messages) sink(m);
  };
}

/** A key-log line (`LABEL client_random secret`) as a trace event: for a trace asked together with a key log. */
export function secretEvent(line: string): TraceEvent {
  const [label = '', clientRandom = '', secret = ''] = line.split(' ');
  return {
    direction: 'sent',
    kind: 'secret',
    tree: {
      name: label,
      offset: 0,
      length: secret.length / 2,
      value: secret,
      children: [{ name: 'client_random', offset: 0, length: clientRandom.length / 2, value: clientRandom }],
    },
  };
}

/**
 * One direction: its stream offset and the handshake bytes not yet forming a whole message. The bytes are kept
 * in a buffer that doubles when full (as the connection's HandshakeJoiner does), so that a message sent one byte
 * per record (RFC 8446 §5.1 allows any split) costs work linear in its size, not quadratic.
 */
class Side {
  /** Where the next record starts in this direction's stream. */
  offset = 0;
  /** Our own copy of the handshake bytes received (the content is a view valid only during the hook call). */
  private buf = new Uint8Array(0);
  /** [start, end) of `buf` is pending. */
  private start = 0;
  private end = 0;
  /** Where the pending bytes start in the stream: the start of the record that began the partial message. */
  private pendingAt = 0;

  /**
   * Adds the handshake content of the record at stream offset `recordAt` and calls `each` for every message it
   * completes (`raw` is a view, valid during the call).
   */
  messages(content: Uint8Array, recordAt: number, each: (raw: Uint8Array, at: number) => void): void {
    if (this.start === this.end) {
      this.pendingAt = recordAt;
      this.start = this.end = 0;
    }
    this.append(content);
    while (this.end - this.start >= 4) {
      const p = this.start;
      const n = 4 + ((this.buf[p + 1] << 16) | (this.buf[p + 2] << 8) | this.buf[p + 3]);
      if (this.end - p < n) return;
      const at = this.pendingAt;
      this.start = p + n;
      this.pendingAt = recordAt;
      each(this.buf.subarray(p, p + n), at);
    }
  }

  private append(content: Uint8Array): void {
    if (this.end + content.length > this.buf.length) {
      const pending = this.end - this.start;
      const next = new Uint8Array(Math.max(2 * (pending + content.length), 512));
      next.set(this.buf.subarray(this.start, this.end));
      this.buf = next;
      this.start = 0;
      this.end = pending;
    }
    this.buf.set(content, this.end);
    this.end += content.length;
  }
}
