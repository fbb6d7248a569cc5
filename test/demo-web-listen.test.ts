/**
 * `qkd-tls demo --web` runs three listeners: the key manager simulator, the page's server (--listen) and the TLS
 * server's WebSocket listener (a free port the command picks). A failure of the last one was reported as "cannot
 * listen on" the --listen address, with advice about that port; one of the first went out as a bare error. The command runs as users run it, with a module
 * loaded first (--import) that makes a listen fail as Node's does when the process is out of file descriptors, for
 * the WebSocket server only (the one HTTP server with an 'upgrade' listener when it listens).
 */
import t from 'tap';
import { spawnQkdTls } from './helpers/peers.js';

const FAIL_WEBSOCKET_LISTEN = `
import { Server } from 'node:net';
const listen = Server.prototype.listen;
Server.prototype.listen = function (...args) {
  if (this.listenerCount('upgrade') === 0) return listen.apply(this, args);
  const e = Object.assign(new Error('listen EMFILE: too many open files'), { code: 'EMFILE', errno: -24, syscall: 'listen' });
  process.nextTick(() => this.emit('error', e));
  return this;
};`;

t.test("demo --web: a failure of the TLS server's WebSocket listener is not reported as the --listen port", async (t) => {
  const preload = `--import=data:text/javascript,${encodeURIComponent(FAIL_WEBSOCKET_LISTEN)}`;
  const demo = spawnQkdTls(t, ['demo', '--web', '--listen', '127.0.0.1:0'], { env: { NODE_OPTIONS: preload } });
  t.equal((await demo.waitExit(20_000)).code, 1, 'exit code 1');
  t.equal(demo.stderr, 'qkd-tls demo --web: the TLS server cannot listen for WebSocket connections on 127.0.0.1 (a free port): listen EMFILE: too many open files\n');
});

// The key manager simulator listens first (two HTTP servers on free ports): the first listen of the process fails.
const FAIL_FIRST_LISTEN = `
import { Server } from 'node:net';
const listen = Server.prototype.listen;
let first = true;
Server.prototype.listen = function (...args) {
  if (!first) return listen.apply(this, args);
  first = false;
  const e = Object.assign(new Error('listen EMFILE: too many open files'), { code: 'EMFILE', errno: -24, syscall: 'listen' });
  process.nextTick(() => this.emit('error', e));
  return this;
};`;

t.test("demo --web: a failure of the key manager simulator's listener says so", async (t) => {
  const preload = `--import=data:text/javascript,${encodeURIComponent(FAIL_FIRST_LISTEN)}`;
  const demo = spawnQkdTls(t, ['demo', '--web', '--listen', '127.0.0.1:0'], { env: { NODE_OPTIONS: preload } });
  t.equal((await demo.waitExit(20_000)).code, 1, 'exit code 1');
  t.match(demo.stderr, /^qkd-tls demo --web: the key manager simulator cannot listen on 127\.0\.0\.1 \(free ports\): .*EMFILE.*\n$/);
  t.equal(demo.stderr.split('\n').length, 2, 'one line');
});
