/**
 * Regressions found reviewing the tools: hostile input to the `vectors --file` text extractor and the proxy's
 * configuration file parser. The extractor tests feed lines that the old code handled in quadratic time (hours
 * for these sizes, so that the test's own timeout catches it); the new code handles them in linear time.
 */
import { createServer } from 'node:net';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { spawn } from 'node:child_process';
import { QKD_TLS_BIN, runQkdTls } from './helpers/peers.js';
import { listenWebSocket } from '../lib/transport/ws-server.js';
import { startWebSocketBridge } from '../lib/proxy/ws-bridge.js';
import { extractRfc8448, Rfc8448FormatError } from '../vectors/extract-rfc8448.js';
import { parseConfig, ConfigError } from '../lib/proxy/config-file.js';
import { parseTlsOptions, UsageError } from '../bin/cli/tls-options.js';
import { parseKeySource } from '../bin/cli/key-source.js';

t.test('vectors --file: a very long line of spaces is rejected as malformed text, not parsed in quadratic time', async (tt) => {
  // Page footer / running header patterns and the right-trim backtracked over the run of spaces.
  for (const text of [
    ' '.repeat(1_000_000) + 'x',
    'x' + ' '.repeat(400_000) + 'Informational' + ' '.repeat(400_000) + 'z',
    'Internet-Draft' + ' '.repeat(400_000) + 'x' + ' '.repeat(400_000) + 'y',
  ]) {
    tt.throws(() => extractRfc8448(text), Rfc8448FormatError);
  }
});

t.test('vectors --file: a step line wrapped over very many lines is not refolded as a whole at each line', async (tt) => {
  const text = '3. S\n   {client}  x\n' + '      word word\n'.repeat(400_000);
  tt.throws(() => extractRfc8448(text), { name: 'Rfc8448FormatError', message: /^RFC 8448 §4: section heading not found \(a line "4\.  TITLE" at the left margin\)$/ });
});

t.test('proxy config: fields named like Object.prototype members are unknown fields', async (tt) => {
  const schema = { global: { json: { type: 'boolean' } }, service: { role: { type: 'string' }, psk: { type: 'string', multiple: true } } } as const;
  for (const field of ['constructor', '__proto__', '__definegetter__']) {
    for (const where of ['global', 'service']) {
      const text = where === 'global' ? `${field} = 1\n[a]\nrole = client\n` : `[a]\nrole = client\n${field} = 1\n`;
      let error: unknown;
      try {
        parseConfig(text, 'p.conf', schema);
      } catch (e) {
        error = e;
      }
      tt.ok(error instanceof ConfigError && /unknown field/.test(error.message), `${field} in ${where}: ${String(error)}`);
    }
  }
});

t.test('CLI: --suites naming an Object.prototype member is a usage error', async (tt) => {
  // It passed the `in SUITES` check and failed later as "no PSK usable with the configured cipher suites" (exit 1).
  for (const suites of ['constructor', 'toString', '__proto__']) {
    let error: unknown;
    try {
      parseTlsOptions({ suites });
    } catch (e) {
      error = e;
    }
    tt.ok(error instanceof UsageError && error.message.startsWith(`--suites: unknown suite "${suites}"`), `${suites}: ${String(error)}`);
  }
});

t.test('CLI: demo --web on a busy --listen port reports the error and exits (the key manager it started is stopped)', async (tt) => {
  const busy = createServer();
  await new Promise<void>((resolve) => busy.listen(0, '127.0.0.1', resolve));
  tt.teardown(() => busy.close());
  const { port } = busy.address() as { port: number };
  // runQkdTls kills a command that does not exit (code null): before, the process stayed up with its KME.
  const r = await runQkdTls(['demo', '--web', '--listen', `127.0.0.1:${port}`], { ms: 30_000 });
  tt.equal(r.code, 1, `exit code (stderr: ${r.stderr})`);
  tt.match(r.stderr, /EADDRINUSE/);
});

t.test('listenWebSocket and the bridge on a busy port reject their promise (no uncaught EADDRINUSE)', async (tt) => {
  const busy = createServer();
  await new Promise<void>((resolve) => busy.listen(0, '127.0.0.1', resolve));
  tt.teardown(() => busy.close());
  const { port } = busy.address() as { port: number };
  // Before, the WebSocketServer re-emitted the HTTP server's 'error' with no listener: the process crashed.
  await tt.rejects(listenWebSocket({ host: '127.0.0.1', port }, () => {}), { code: 'EADDRINUSE' });
  await tt.rejects(startWebSocketBridge({ host: '127.0.0.1', port, allow: [{ host: '127.0.0.1', port: 1 }] }), { code: 'EADDRINUSE' });
  const r = await runQkdTls(['bridge', '--listen', `127.0.0.1:${port}`, '--allow', '127.0.0.1:1'], { ms: 30_000 });
  tt.equal(r.code, 1, 'qkd-tls bridge exits with 1');
  tt.notMatch(r.stderr, /Unhandled 'error' event|\n\s+at /, `no stack trace: ${r.stderr}`);
});

t.test('CLI: a reader that closes our stdout early ends the command quietly (no unhandled EPIPE stack trace)', async (tt) => {
  for (const args of [['vectors'], ['demo', '--handshakes', '1']]) {
    const child = spawn(process.execPath, [QKD_TLS_BIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    // Our end of the pipe is closed before the child can have written anything: its first write fails with EPIPE.
    child.stdout.destroy();
    let stderr = '';
    child.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
    const guard = setTimeout(() => child.kill('SIGKILL'), 60_000);
    const code = await new Promise<number | null>((resolve) => child.once('close', (c) => resolve(c)));
    clearTimeout(guard);
    tt.equal(code, 1, `${args.join(' ')}: exit code 1`);
    tt.equal(stderr, '', `${args.join(' ')}: nothing on stderr`);
  }
});

t.test('CLI: a command named like an Object.prototype member is an unknown command', async (tt) => {
  for (const name of ['constructor', '__proto__']) {
    const r = await runQkdTls([name], { ms: 30_000 });
    tt.equal(r.code, 2, `${name}: exit 2`);
    tt.match(r.stderr, new RegExp(`^qkd-tls: unknown command '${name}'`), `${name}: ${r.stderr.split('\n')[0]}`);
  }
});

t.test('CLI: empty lists, over-long ALPN names and server names are usage errors', async (tt) => {
  // Before, each went to the library and failed as a TypeError or an encoding error (exit 1), or was sent as is.
  const cases: [Record<string, string>, RegExp][] = [
    [{ 'kex-modes': '' }, /^--kex-modes: the list is empty/],
    [{ suites: ',' }, /^--suites: the list is empty/],
    [{ groups: ' , ' }, /^--groups: the list is empty/],
    [{ 'key-shares': ',' }, /^--key-shares: the list is empty/],
    [{ alpn: ',' }, /^--alpn: the list is empty/],
    [{ alpn: 'h2,' + 'a'.repeat(256) }, /^--alpn: a protocol name is at most 255 bytes/],
    [{ 'server-name': '' }, /^--server-name: is empty; a server name is a DNS host name/],
    [{ 'server-name': 'a'.repeat(70_000) }, /^--server-name: is longer than 253 bytes; a server name is a DNS host name/],
    [{ 'server-name': 'a'.repeat(254) }, /^--server-name: is longer than 253 bytes; /],
    [{ 'server-name': `${'a'.repeat(64)}.example` }, /^--server-name: has a label of 64 bytes /],
  ];
  for (const [values, message] of cases) {
    let error: unknown;
    try {
      parseTlsOptions(values);
    } catch (e) {
      error = e;
    }
    tt.ok(error instanceof UsageError && message.test(error.message), `${JSON.stringify(values).slice(0, 60)}: ${String(error).slice(0, 120)}`);
  }
  tt.doesNotThrow(() => parseTlsOptions({ alpn: 'h2,' + 'a'.repeat(255), 'server-name': 'example.com' }), 'the limits themselves are accepted');
  const longest = `${'a'.repeat(63)}.`.repeat(4).slice(0, 253);
  tt.equal(parseTlsOptions({ 'server-name': `${longest}.` }).serverName, `${longest}.`, 'a 253-byte name of 63-byte labels, with a trailing dot: taken (the connection drops the dot)');
});

t.test('CLI: a bad --key-lifetime is a usage error at start, not a failure of every connection', async (tt) => {
  let error: unknown;
  try {
    parseKeySource({ kme: 'http://127.0.0.1:1', 'sae-id': 'a', 'peer-sae-id': ['b'], 'key-lifetime': 'x' }, { role: 'client' });
  } catch (e) {
    error = e;
  }
  tt.ok(error instanceof UsageError && /--key-lifetime: expected a number of milliseconds/.test(error.message), String(error));
});

t.test('CLI: server --max-connections takes an integer from 1, or it is a usage error', async (tt) => {
  // Before, "abc" (NaN) and "0" were taken by net.Server as no limit at all, and the server ran.
  for (const v of ['abc', '0', '1.5', '']) {
    const r = await runQkdTls(['server', '--listen', '127.0.0.1:0', '--psk', '00112233445566778899aabbccddeeff', '--identity', 'a', '--max-connections', v], { ms: 30_000 });
    tt.equal(r.code, 2, `--max-connections "${v}": exit 2 (${r.stderr.split('\n')[0]})`);
    tt.match(r.stderr, /--max-connections must be an integer from 1/);
  }
});

t.test('CLI: an unwritable demo --svg or bench --out is a usage error before anything runs', async (tt) => {
  const dir = await mkdtemp(join(tmpdir(), 'qkd-tls-review-'));
  tt.teardown(() => rm(dir, { recursive: true, force: true }));
  const file = join(dir, 'a-file');
  await writeFile(file, '');
  // Before, the whole network tour (or benchmark) ran, and then writing failed with exit 1.
  const demo = await runQkdTls(['demo', '--network', '--svg', join(file, 'x.svg')], { ms: 120_000 });
  tt.equal(demo.code, 2, `demo --svg: exit 2 (${demo.stderr.split('\n')[0]})`);
  tt.match(demo.stderr, /^qkd-tls demo: --svg: cannot write/);
  tt.equal(demo.stdout, '', 'the tour did not start');
  const bench = await runQkdTls(['bench', '--size', 'tiny', '--out', join(file, 'out')], { ms: 120_000 });
  tt.equal(bench.code, 2, `bench --out: exit 2 (${bench.stderr.split('\n')[0]})`);
  tt.match(bench.stderr, /^qkd-tls bench: --out: cannot write to/);
});

t.test('CLI: kme option values the simulator refuses are usage errors (exit 2)', async (tt) => {
  // Before: exit 1, as for a port already in use.
  for (const extra of [['--key-size', '7'], ['--min-key-size', '512', '--max-key-size', '128'], ['--max-keys', '0'], ['--master-sae', ''], ['--master-sae', 'x', '--slave-sae', 'x']]) {
    const r = await runQkdTls(['kme', '--listen', '127.0.0.1:0', '--insecure-http', ...extra], { ms: 30_000 });
    tt.equal(r.code, 2, `${extra.join(' ')}: exit 2 (${r.stderr.split('\n')[0]})`);
  }
  const offLoopback = await runQkdTls(['kme', '--listen', '0.0.0.0:0', '--insecure-http'], { ms: 30_000 });
  tt.equal(offLoopback.code, 2, `--insecure-http off loopback: exit 2 (${offLoopback.stderr.split('\n')[0]})`);
  // Told with the command's option names, not the simulator's (found in a README walkthrough: "kme simulator: keySize
  // must be a multiple of 8 bits" for --key-size), and KME-B on KME-A's port is refused as such, not reported as a
  // port that another program holds.
  const size = await runQkdTls(['kme', '--listen', '127.0.0.1:0', '--insecure-http', '--key-size', '100'], { ms: 30_000 });
  tt.equal(size.stderr, 'qkd-tls kme: --key-size must be a multiple of 8 bits (got 100)\n(run qkd-tls kme --help for the options)\n');
  const order = await runQkdTls(['kme', '--listen', '127.0.0.1:0', '--insecure-http', '--key-size', '2048'], { ms: 30_000 });
  tt.match(order.stderr, /^qkd-tls kme: need --min-key-size <= --key-size <= --max-key-size \(got 64, 2048, 1024\)\n/);
  const same = await runQkdTls(['kme', '--listen', '127.0.0.1:8443', '--slave-port', '8443', '--insecure-http'], { ms: 30_000 });
  tt.equal(same.code, 2, '--slave-port on KME-A\'s port: exit 2');
  tt.match(same.stderr, /^qkd-tls kme: --slave-port 8443 is KME-A's port \(--listen\): KME-B needs a port of its own\n/);
});

/** Runs an ES module's code in a Node with a 500 KiB stack (a runtime with less stack than Node's default). */
async function runOnSmallStack(code: string): Promise<{ exit: number | null; out: string; err: string }> {
  const child = spawn(process.execPath, ['--stack-size=500', '--input-type=module', '-e', code], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout.on('data', (b: Buffer) => (out += b.toString()));
  child.stderr.on('data', (b: Buffer) => (err += b.toString()));
  const exit = await new Promise<number | null>((resolve) => child.once('close', resolve));
  return { exit, out, err: err.split('\n').slice(0, 6).join(' | ') };
}

t.test('trace: a ClientHello with a 64 KiB printable PSK identity is dissected on a smaller stack', async (tt) => {
  // Before, hexAndText spread the identity into String.fromCharCode: 65535 arguments on the stack (about 512 KiB), a
  // RangeError (not a TlsError, so guarded() rethrew it) on a runtime or call path with less stack than that left.
  // Run in a Node with a 500 KiB stack, as a runtime with a smaller stack than Node's default.
  const dissect = new URL('../lib/trace/dissect.js', import.meta.url).href;
  const code = `
    import { dissectHandshake } from ${JSON.stringify(dissect)};
    const identity = new Uint8Array(65000).fill(0x41);
    const ext = new Uint8Array(2 + 2 + 2 + 2 + identity.length + 4 + 2 + 1 + 32);
    const dv = new DataView(ext.buffer);
    let at = 0;
    dv.setUint16(at, 41); at += 2;
    dv.setUint16(at, ext.length - 4); at += 2;
    dv.setUint16(at, 2 + identity.length + 4); at += 2;
    dv.setUint16(at, identity.length); at += 2;
    ext.set(identity, at); at += identity.length;
    at += 4;
    dv.setUint16(at, 33); at += 2;
    ext[at] = 32;
    const body = [3, 3, ...new Uint8Array(32), 0, 0, 2, 0x13, 0x01, 1, 0, (ext.length >> 8) & 0xff, ext.length & 0xff];
    const n = body.length + ext.length;
    const msg = new Uint8Array(4 + n);
    msg.set([1, n >> 16, (n >> 8) & 0xff, n & 0xff]);
    msg.set(body, 4);
    msg.set(ext, 4 + body.length);
    const text = JSON.stringify(dissectHandshake(msg));
    process.stdout.write(!text.includes('malformed') && text.includes('A'.repeat(65000)) ? 'ok' : 'unexpected tree');
  `;
  const { exit, out, err } = await runOnSmallStack(code);
  tt.equal(exit, 0, `exit code (stderr: ${err})`);
  tt.equal(out, 'ok', 'the identity is dissected and shown as text');
});

t.test('identityText: a 64 KiB printable PSK identity is shown as text on a smaller stack', async (tt) => {
  // identityText (HandshakeInfo.identity, logs) spread the identity into String.fromCharCode, as hexAndText did.
  const module = new URL('../lib/psk/identity-text.js', import.meta.url).href;
  const code = `
    import { identityText } from ${JSON.stringify(module)};
    const text = identityText(new Uint8Array(65000).fill(0x41));
    process.stdout.write(text === 'A'.repeat(65000) ? 'ok' : 'unexpected text');
  `;
  const { exit, out, err } = await runOnSmallStack(code);
  tt.equal(exit, 0, `exit code (stderr: ${err})`);
  tt.equal(out, 'ok', 'the identity is shown as text');
});
