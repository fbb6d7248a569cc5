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
import { concat } from '../codec/bytes.js';
import type { RecordTrace, RecordTraceHook } from '../record/trace-hook.js';
import { dissectHandshake, dissectRecord } from './dissect.js';
import type { TraceEvent } from './tree.js';

/** A record trace hook (the connection's `trace` option) that sends dissected events to `sink`. */
export function createTracer(sink: (event: TraceEvent) => void): RecordTraceHook {
  const sides = { sent: new Side(), received: new Side() };
  return (record: RecordTrace) => {
    const side = sides[record.direction];
    const recordLength = record.header.length >= 5 ? 5 + ((record.header[3] << 8) | record.header[4]) : record.header.length;
    sink({ direction: record.direction, kind: 'record', streamOffset: side.offset, tree: dissectRecord(record.header, record) });
    if (record.type === ContentType.handshake && record.opened) {
      for (const m of side.messages(record.content)) {
        sink({ direction: record.direction, kind: 'handshake', streamOffset: m.at, tree: dissectHandshake(m.raw) });
      }
    }
    side.offset += recordLength;
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

/** One direction: its stream offset and the handshake bytes not yet forming a whole message. */
class Side {
  offset = 0;
  private pending: Uint8Array = new Uint8Array(0);
  /** Where `pending` starts in the stream: the start of the record that began the partial message. */
  private pendingAt = 0;

  *messages(content: Uint8Array): Generator<{ raw: Uint8Array; at: number }> {
    if (this.pending.length === 0) this.pendingAt = this.offset;
    // Our own copy: the content is a view valid only during the hook call.
    this.pending = this.pending.length === 0 ? content.slice() : concat(this.pending, content);
    while (this.pending.length >= 4) {
      const n = 4 + ((this.pending[1] << 16) | (this.pending[2] << 8) | this.pending[3]);
      if (this.pending.length < n) return;
      yield { raw: this.pending.subarray(0, n), at: this.pendingAt };
      this.pending = this.pending.subarray(n);
      this.pendingAt = this.offset;
    }
  }
}
