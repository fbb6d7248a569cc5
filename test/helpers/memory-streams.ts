/** In-memory WHATWG byte streams for the streams-transport tests. */
import type { ByteStreamPair } from '../../lib/transport/streams.js';

/** Two connected in-memory byte-stream pairs: what one end writes, the other reads. */
export function memoryPipe(): [ByteStreamPair, ByteStreamPair] {
  const a = new TransformStream<Uint8Array, Uint8Array>();
  const b = new TransformStream<Uint8Array, Uint8Array>();
  return [
    { readable: a.readable, writable: b.writable },
    { readable: b.readable, writable: a.writable },
  ];
}

/** Everything `r` yields until it ends, joined. */
export async function readAllBytes(r: ReadableStream<Uint8Array>): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  for await (const c of r as unknown as AsyncIterable<Uint8Array>) parts.push(c);
  return Buffer.concat(parts);
}
