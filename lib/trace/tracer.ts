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
import { HandshakeJoiner, type HandshakeMessageBytes } from '../record/handshake-joiner.js';
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
 * One direction: its stream offset and the handshake bytes not yet forming a whole message, reassembled by the
 * connection's own HandshakeJoiner (RFC 8446 §5.1: a message may span records, a record hold several), whose buffer
 * grows by doubling, so that a message sent one byte per record costs work linear in its size, not quadratic. It
 * keeps its own copy: the content is a view valid only during the hook call.
 */
class Side {
  /** Where the next record starts in this direction's stream. */
  offset = 0;
  private readonly joiner = new HandshakeJoiner();
  /** Where the pending bytes start in the stream: the start of the record that began the partial message. */
  private pendingAt = 0;

  /**
   * Adds the handshake content of the record at stream offset `recordAt` and calls `each` for every message it
   * completes (`raw` is a view, valid during the call).
   */
  messages(content: Uint8Array, recordAt: number, each: (raw: Uint8Array, at: number) => void): void {
    if (this.joiner.isEmpty) this.pendingAt = recordAt;
    if (content.length === 0) return; // (§5.4 refuses an empty handshake record: the connection fails on it)
    this.joiner.push(content);
    for (;;) {
      let message: HandshakeMessageBytes | null;
      try {
        message = this.joiner.next();
      } catch {
        return; // a length over the connection's own limit, which fails on it: no message to show
      }
      if (!message) return;
      const at = this.pendingAt;
      this.pendingAt = recordAt;
      each(message.raw, at);
    }
  }
}
