/**
 * `--trace` and `--trace-json` for `qkd-tls client` and `server`: every record and handshake message sent and
 * received, dissected (lib/trace), on stderr. Secrets appear in the trace only when a key log is asked for
 * too (--keylog or SSLKEYLOGFILE), since anyone holding them can decrypt the session.
 */
import { createTracer, formatTraceEvent, type RecordTraceHook, secretEvent, traceEventJson, type TraceEvent } from 'qkd-tls/trace';

export const TRACE_OPTION_SPEC = {
  trace: { type: 'boolean' },
  'trace-json': { type: 'boolean' },
} as const;

export const TRACE_HELP = `Trace:
  --trace                 print every record and handshake message sent and received on stderr, field by
                          field with offsets and lengths (decrypted records: inner content type, padding);
                          with --keylog the traffic secrets are printed too; with --json as --trace-json
  --trace-json            the same as one JSON object per line ({"event":"trace",...})`;

/** What the trace options ask for: a hook per connection and a key-log wrapper, or nothing. */
export interface TracePlan {
  /** A fresh trace hook for one connection (each connection reassembles its own messages). */
  newTracer(label?: string): RecordTraceHook;
  /** The key-log callback that also puts each secret into the trace (only when a key log was asked for). */
  keyLog(user: ((line: string) => void) | undefined, label?: string): ((line: string) => void) | undefined;
  /** Puts one key-log line into the trace, naming its connection (a server's 'keylog' event, which has the socket). */
  secret(line: string, label?: string): void;
}

export function parseTraceOptions(values: Record<string, unknown>): TracePlan | undefined {
  // With --json every line on stderr is one JSON object (the contract in design.md): --trace then writes its JSON
  // lines, as --trace-json does; its text lines came between the JSON events, and a reader of them failed there.
  const json = values['trace-json'] === true || (values.trace === true && values.json === true);
  if (!json && values.trace !== true) return undefined;
  const print = (e: TraceEvent, label?: string): void => {
    if (json) process.stderr.write((label ? traceEventJson({ ...e, connection: label } as TraceEvent) : traceEventJson(e)) + '\n');
    else process.stderr.write((label ? `[${label}] ` : '') + formatTraceEvent(e) + '\n');
  };
  return {
    newTracer: (label) => createTracer((e) => print(e, label)),
    keyLog: (user, label) =>
      user
        ? (line) => {
            user(line);
            print(secretEvent(line), label);
          }
        : undefined,
    secret: (line, label) => print(secretEvent(line), label),
  };
}
