/**
 * confirmNotReset (lib/transport/tcp-end.ts): how the proxy and `server --forward` tell a TCP peer that
 * finished from one that aborted, although Node 20 reports some resets as a plain end of stream.
 */
import { EventEmitter } from 'node:events';
import * as net from 'node:net';
import t from 'tap';
import { confirmNotReset } from '../lib/transport/tcp-end.js';

type Verdict = 'clean' | `reset ${string}` | `error ${string}` | 'no verdict within 5 s';

/** Blocks the event loop, so that packets arrive together before the socket sees any of them. */
function busy(ms: number): void {
  const end = Date.now() + ms;
  while (Date.now() < end);
}

/**
 * Connects to a server whose accepted socket is handed to `serve`; `onConnect` runs on the client once
 * connected. Resolves with the verdict on the client's end of stream (or the client's error).
 */
function verdict(serve: (s: net.Socket) => void, onConnect: (c: net.Socket) => void = () => {}): Promise<{ verdict: Verdict; data: string }> {
  return new Promise((resolve) => {
    const server = net.createServer({ allowHalfOpen: true }, (s) => {
      s.on('error', () => {});
      serve(s);
    });
    server.listen(0, '127.0.0.1', () => {
      const c = net.connect({ port: (server.address() as net.AddressInfo).port, host: '127.0.0.1', allowHalfOpen: true });
      let data = '';
      let settled = false;
      const done = (v: Verdict): void => {
        if (settled) return;
        settled = true;
        clearTimeout(guard);
        c.destroy();
        server.close();
        resolve({ verdict: v, data });
      };
      const guard = setTimeout(() => done('no verdict within 5 s'), 5000);
      c.setEncoding('latin1');
      c.on('data', (d: string) => (data += d));
      c.on('error', (e: NodeJS.ErrnoException) => done(`error ${e.code ?? e.message}`));
      c.once('connect', () => onConnect(c));
      c.once('end', () =>
        confirmNotReset(
          c,
          () => done('clean'),
          (e: NodeJS.ErrnoException) => done(`reset ${e.code ?? e.message}`),
        ),
      );
    });
  });
}

t.test('a half-close is a clean end', async (t) => {
  const r = await verdict((s) => s.end('bye'));
  t.equal(r.verdict, 'clean');
  t.equal(r.data, 'bye');
});

t.test('a reset while data is unread is a reset, even when Node reports it as an end', async (t) => {
  let reportedAsEnd = 0;
  for (let i = 0; i < 5; i++) {
    const r = await verdict((s) => {
      // Once the client is connected and idle, the data and the RST reach it before it reads any of it.
      setTimeout(() => s.write(Buffer.alloc(100_000, 0x61), () => s.resetAndDestroy()), 20);
    });
    t.match(r.verdict, /^(reset|error) ECONNRESET$/, `not taken for a clean end (${r.verdict}, ${r.data.length} bytes read)`);
    if (r.verdict.startsWith('reset')) reportedAsEnd++;
  }
  // On Node 20 all five arrive as an end of stream (libuv's shortcut), so the probe decides; a Node whose
  // libuv reports them as errors passes through the 'error' path instead.
  t.comment(`Node reported ${reportedAsEnd} of 5 resets as an end of stream`);
});

t.test('a FIN followed by a reset (the peer closed for good, then refused what we sent) is a clean end', async (t) => {
  const r = await verdict(
    (s) => {
      s.end('full response');
      s.once('finish', () => s.destroy());
    },
    (c) => {
      busy(100); // the answer and the FIN arrive
      c.write('late data the peer will not read'); // answered with a reset
      busy(100);
    },
  );
  t.equal(r.verdict, 'clean', 'the peer’s stream was complete');
  t.equal(r.data, 'full response');
});

t.test('with data still queued for the peer, the end is taken without waiting for the peer to read it', async (t) => {
  const r = await verdict(
    (s) => {
      s.pause(); // never reads: what the client sends stays queued on its side
      setTimeout(() => s.end('done'), 100);
    },
    (c) => {
      const chunk = Buffer.alloc(1 << 20);
      while (c.write(chunk));
    },
  );
  t.equal(r.verdict, 'clean');
  t.equal(r.data, 'done');
});

/** A socket's write-side state, as confirmNotReset reads it, without a real connection. */
function fakeSocket(state: { writableEnded: boolean; writableLength: number }) {
  return Object.assign(new EventEmitter(), { writableFinished: false, destroyed: false, errored: null as Error | null, ...state });
}
const turn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

t.test('our side ended with bytes still queued: a reset reported meanwhile is not taken as the end; a flush is', async (t) => {
  // Before, a socket whose own side had ended took the end of stream at once, queue or not: the proxy passed a
  // reset on as close_notify (a clean FIN for a truncated upload) when the failing queued write came a moment later.
  let verdicts: string[] = [];
  const reset = fakeSocket({ writableEnded: true, writableLength: 1000 });
  confirmNotReset(reset as unknown as net.Socket, () => verdicts.push('clean'), (e) => verdicts.push(`reset ${e.message}`));
  t.same(verdicts, [], 'no verdict while the queued bytes may still fail');
  Object.assign(reset, { errored: new Error('ECONNRESET'), destroyed: true }); // the queued write failed
  await turn();
  await turn();
  t.same(verdicts, [], 'the failed write reports the reset (the socket\'s own error): no clean end');

  verdicts = [];
  const flushed = fakeSocket({ writableEnded: true, writableLength: 1000 });
  confirmNotReset(flushed as unknown as net.Socket, () => verdicts.push('clean'), () => verdicts.push('reset'));
  Object.assign(flushed, { writableFinished: true, writableLength: 0 });
  flushed.emit('finish');
  await turn();
  await turn();
  t.same(verdicts, ['clean'], 'the queue flushed: a clean end, once');

  verdicts = [];
  const waited = fakeSocket({ writableEnded: false, writableLength: 1000 });
  confirmNotReset(waited as unknown as net.Socket, () => verdicts.push('clean'), () => verdicts.push('reset'));
  await turn();
  await turn();
  t.same(verdicts, ['clean'], 'bytes queued, nothing failed within a turn of the event loop: a clean end');
});
