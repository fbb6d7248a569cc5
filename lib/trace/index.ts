/**
 * Annotated traces of TLS 1.3 records and handshake messages (runtime-neutral, plain data).
 *
 * - {@link createTracer}: the connection's `trace` option, turning each record into dissected events;
 * - {@link dissectRecord}, {@link dissectHandshake}: the dissectors themselves, for any bytes;
 * - {@link formatTraceEvent}, {@link traceEventJson}: the printed and JSON-lines forms.
 */
export { createTracer, secretEvent } from './tracer.js';
export { dissectAlert, dissectHandshake, dissectRecord, messageName, type ExtensionContext } from './dissect.js';
export { formatTraceEvent, traceEventJson } from './format.js';
export type { TraceEvent, TraceNode } from './tree.js';
export type { RecordTrace, RecordTraceHook } from '../record/trace-hook.js';
