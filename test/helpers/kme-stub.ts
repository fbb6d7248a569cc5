/**
 * A stand-in KME for tests of the ETSI GS QKD 014 clients: an HTTP server on 127.0.0.1 that answers as each test
 * needs, and the error a client call fails with.
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { Etsi014Error } from '../../lib/qkd/etsi014-api.js';

type Teardown = { teardown(fn: () => unknown): void };

/** An HTTP server on 127.0.0.1 answering with `handler` (n counts requests from 1); counts requests and TCP connections. */
export async function stubKme(tt: Teardown, handler: (req: IncomingMessage, res: ServerResponse, n: number) => void) {
  const seen = { requests: 0, connections: 0, urls: [] as string[] };
  const server = createServer((req, res) => {
    seen.requests++;
    const n = seen.requests;
    seen.urls.push(req.url ?? '');
    req.resume();
    req.on('end', () => handler(req, res, n));
  });
  server.on('connection', () => seen.connections++);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  tt.teardown(() => new Promise<void>((r) => (server.close(() => r()), server.closeAllConnections())));
  return { url: `http://127.0.0.1:${(server.address() as { port: number }).port}`, seen };
}

/** Answers `body` as JSON with `status`. */
export function answerJson(res: ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(JSON.stringify(body));
}

/** Resolves with the Etsi014Error a promise rejects with (fails the test if it resolves, or rejects otherwise). */
export async function etsi014Failure(p: Promise<unknown>): Promise<Etsi014Error> {
  try {
    await p;
  } catch (e) {
    if (e instanceof Etsi014Error) return e;
    throw e;
  }
  throw new Error('expected the call to fail');
}
