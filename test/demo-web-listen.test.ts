/**
 * `qkd-tls demo --web` runs three listeners: the key manager simulator, the page's server (--listen) and the TLS
 * server's WebSocket listener (a free port the command picks). A failure of the last one was reported as "cannot
 * listen on" the --listen address, with advice about that port; one of the first went out as a bare error. The
 * command runs as users run it, with a module loaded first (--import) that makes one listen fail as Node's does when
 * the process is out of file descriptors.
 */
import t from 'tap';
import { spawnQkdTls, type TestLike } from './helpers/peers.js';

/**
 * Runs `demo --web` with every `listen` for which `failsIf` (a JavaScript condition on `this`, the server, and
 * `before`, the number of listens before it) holds failing with EMFILE; resolves with its exit code and stderr.
 */
async function demoWithFailingListen(tt: TestLike, failsIf: string): Promise<{ code: number | null; stderr: string }> {
  const module = `
import { Server } from 'node:net';
const listen = Server.prototype.listen;
let calls = 0;
Server.prototype.listen = function (...args) {
  const before = calls++;
  if (!(${failsIf})) return listen.apply(this, args);
  const e = Object.assign(new Error('listen EMFILE: too many open files'), { code: 'EMFILE', errno: -24, syscall: 'listen' });
  process.nextTick(() => this.emit('error', e));
  return this;
};`;
  const demo = spawnQkdTls(tt, ['demo', '--web', '--listen', '127.0.0.1:0'], { env: { NODE_OPTIONS: `--import=data:text/javascript,${encodeURIComponent(module)}` } });
  const { code } = await demo.waitExit(20_000);
  return { code, stderr: demo.stderr };
}

t.test("demo --web: a failure of the TLS server's WebSocket listener is not reported as the --listen port", async (t) => {
  // The WebSocket server is the one HTTP server with an 'upgrade' listener when it listens.
  const demo = await demoWithFailingListen(t, "this.listenerCount('upgrade') > 0");
  t.equal(demo.code, 1, 'exit code 1');
  t.equal(demo.stderr, 'qkd-tls demo --web: the TLS server cannot listen for WebSocket connections on 127.0.0.1 (a free port): listen EMFILE: too many open files\n');
});

t.test("demo --web: a failure of the key manager simulator's listener says so", async (t) => {
  // The key manager simulator listens first (two HTTP servers on free ports): the first listen of the process fails.
  const demo = await demoWithFailingListen(t, 'before === 0');
  t.equal(demo.code, 1, 'exit code 1');
  t.match(demo.stderr, /^qkd-tls demo --web: the key manager simulator cannot listen on 127\.0\.0\.1 \(free ports\): .*EMFILE.*\n$/);
  t.equal(demo.stderr.split('\n').length, 2, 'one line');
});
