/**
 * A mistyped option is a usage error in every command: exit code 2, nothing on stdout, and on stderr one line
 * naming the command and the problem, then where the options are. Most commands printed their whole --help
 * after the message (70 lines for server and client), which buried it (found in a README walkthrough); proxy
 * already did it this way.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import t from 'tap';
import { isListenError, listenHint } from '../bin/cli/listen-error.js';
import { EXITS_WITHIN_MS, runQkdTls } from './helpers/peers.js';
import { ROOT } from './helpers/runtimes.js';

// This file runs dozens of commands one after another, and each one's start scales with the machine's load: 252 s
// under load in a full run, 440 s alone at a load of ~24 on 2 cores (23 s of CPU), against tap's 300 s per file
// (package.json). That bound is only a hang catcher here, each command having its own (EXITS_WITHIN_MS): told to the runner.
t.setTimeout(900_000);

const COMMANDS: [args: string[], name: string, help: string][] = [
  [['server'], 'server', 'server'],
  [['client'], 'client', 'client'],
  [['proxy'], 'proxy', 'proxy'],
  [['bridge'], 'bridge', 'bridge'],
  [['kme'], 'kme', 'kme'],
  [['kme', '--topology', 'net.json'], 'kme', 'kme --topology FILE'],
  [['vectors'], 'vectors', 'vectors'],
  [['bench'], 'bench', 'bench'],
  [['demo'], 'demo', 'demo'],
  [['demo', '--web'], 'demo --web', 'demo --web'],
];

for (const [args, name, help] of COMMANDS) {
  t.test(`qkd-tls ${args.join(' ')} --bogus`, async (t) => {
    const r = await runQkdTls([...args, '--bogus'], { ms: EXITS_WITHIN_MS });
    t.equal(r.code, 2, 'exit code 2');
    t.equal(r.stdout, '', 'nothing on stdout');
    t.equal(r.stderr, `qkd-tls ${name}: Unknown option '--bogus'\n(run qkd-tls ${help} --help for the options)\n`, 'one line, then where the options are');
  });
}

t.test('qkd-tls with no command: the usage on stderr, exit 2; --help: on stdout, exit 0', async (t) => {
  const none = await runQkdTls([], { ms: EXITS_WITHIN_MS });
  t.equal(none.code, 2, 'exit code 2');
  t.equal(none.stdout, '', 'nothing on stdout (it is an error)');
  t.match(none.stderr, /^usage: qkd-tls <command>/, 'the usage on stderr');
  const help = await runQkdTls(['--help'], { ms: EXITS_WITHIN_MS });
  t.equal(help.code, 0, 'exit code 0');
  t.equal(help.stderr, '', 'nothing on stderr');
  t.equal(help.stdout, none.stderr, 'the same usage, on stdout');
});

// `qkd-tls help nosuch` printed the list of commands and exited 0, as if it had been asked for (found by review).
t.test('qkd-tls help with an unknown command is the usage error of that command name, exit 2', async (t) => {
  const r = await runQkdTls(['help', 'nosuch'], { ms: EXITS_WITHIN_MS });
  t.equal(r.code, 2, 'exit code 2');
  t.equal(r.stdout, '', 'nothing on stdout (it is an error)');
  t.match(r.stderr, /^qkd-tls: unknown command 'nosuch'\n/, 'names the command');
  const known = await runQkdTls(['help', 'client'], { ms: EXITS_WITHIN_MS });
  t.equal(known.code, 0, 'help client: exit code 0');
  t.match(known.stdout, /^usage: qkd-tls client /, "help client: the client's --help");
});

t.test('a name listed twice in --suites, --kex-modes, --groups or --key-shares is a usage error at startup', async (t) => {
  const psk = ['--psk', '000102030405060708090a0b0c0d0e0f', '--identity', 'a'];
  for (const [option, value, twice] of [
    ['--suites', 'TLS_AES_128_GCM_SHA256,TLS_AES_128_GCM_SHA256', 'TLS_AES_128_GCM_SHA256'],
    ['--kex-modes', 'psk_ke,psk_ke', 'psk_ke'],
    ['--groups', 'x25519,X25519', 'x25519'],
    ['--key-shares', 'x25519,x25519', 'x25519'],
  ]) {
    const r = await runQkdTls(['client', '--connect', '127.0.0.1:9', ...psk, option, value], { ms: EXITS_WITHIN_MS });
    t.equal(r.code, 2, `${option}: exit code 2`);
    t.equal(r.stderr, `qkd-tls client: ${option}: ${twice} is listed twice\n`, `${option}: one line`);
  }
  // A server would have listened and failed every connection.
  const s = await runQkdTls(['server', '--listen', '127.0.0.1:0', ...psk, '--groups', 'x25519,x25519'], { ms: EXITS_WITHIN_MS });
  t.equal(s.code, 2, 'server: exit code 2');
  t.notMatch(s.stdout + s.stderr, /listening/, 'it never listened');
});

t.test('--max-message outside 1024 to 2^31 - 1 is a usage error in server --websocket and bridge, before listening', async (t) => {
  // Above 2^31 - 1 the library refuses it (the ws package takes a larger maxPayload as none): server --websocket
  // exited 1 with that RangeError after parsing its options, and bridge likewise.
  const psk = ['--psk', '000102030405060708090a0b0c0d0e0f', '--identity', 'a'];
  for (const value of ['2147483648', '1023', '1.5']) {
    for (const args of [
      ['server', '--listen', '127.0.0.1:0', '--websocket', ...psk],
      ['bridge', '--listen', '127.0.0.1:0', '--allow', '127.0.0.1:9'],
    ]) {
      const r = await runQkdTls([...args, '--max-message', value], { ms: EXITS_WITHIN_MS });
      t.equal(r.code, 2, `${args[0]} --max-message ${value}: exit code 2`);
      t.match(r.stderr, `--max-message must be an integer from 1024 to 2147483647`, `${args[0]} --max-message ${value}: the range`);
      t.notMatch(r.stdout + r.stderr, /listening/, 'it never listened');
    }
  }
});

t.test('--record-padding outside 0 to 16385 is a usage error in client, server and proxy', async (t) => {
  const psk = ['--psk', '000102030405060708090a0b0c0d0e0f', '--identity', 'a'];
  for (const value of ['16386', '-1', '1.5']) {
    for (const args of [
      ['client', '--connect', '127.0.0.1:9', ...psk],
      ['server', '--listen', '127.0.0.1:0', ...psk],
      ['proxy', '--accept', '127.0.0.1:0', '--connect', '127.0.0.1:9', '--role', 'client', ...psk],
    ]) {
      const r = await runQkdTls([...args, `--record-padding=${value}`], { ms: EXITS_WITHIN_MS });
      t.equal(r.code, 2, `${args[0]} --record-padding ${value}: exit code 2`);
      t.match(r.stderr, '--record-padding must be an integer from 0 to 16385', `${args[0]} --record-padding ${value}: the range`);
    }
  }
});

t.test('a --listen port in use: one line naming the command, the address and what to do, exit 1', async (t) => {
  // Node's own "listen EADDRINUSE: address already in use 127.0.0.1:8443" came alone (server, bridge), or as
  // "qkd-tls: listen EADDRINUSE ..." (demo --web), without the command or a word on what to do (found in a README
  // walkthrough, whose sections reuse ports while a command of an earlier section may still run).
  const holder = createServer();
  await new Promise<void>((resolve) => holder.listen(0, '127.0.0.1', resolve));
  t.teardown(() => holder.close());
  const at = `127.0.0.1:${(holder.address() as AddressInfo).port}`;
  const psk = ['--psk', '000102030405060708090a0b0c0d0e0f', '--identity', 'a'];
  const hint = 'another program (perhaps a qkd-tls command still running) listens on that port: stop it, or pick another port (0 picks a free one)';
  for (const [name, args] of [
    ['server', ['server', '--listen', at, ...psk]],
    ['server', ['server', '--websocket', '--listen', at, ...psk]],
    ['bridge', ['bridge', '--listen', at, '--allow', '127.0.0.1:9']],
    ['demo --web', ['demo', '--web', '--listen', at]],
  ] as const) {
    const r = await runQkdTls(args, { ms: EXITS_WITHIN_MS });
    t.equal(r.code, 1, `${args.join(' ')}: exit code 1`);
    t.equal(r.stderr, `qkd-tls ${name}: cannot listen on ${at}: listen EADDRINUSE: address already in use ${at}; ${hint}\n`, `${args.join(' ')}: one line`);
    // With --json the hint is a field of its own, as in a client's error events (it was inside "message").
    const j = await runQkdTls([...args, '--json'], { ms: EXITS_WITHIN_MS });
    t.equal(j.code, 1, `${args.join(' ')} --json: exit code 1`);
    t.same(
      j.stderr.split('\n').filter(Boolean).map((l) => JSON.parse(l) as unknown),
      [{ event: 'error', message: `cannot listen on ${at}: listen EADDRINUSE: address already in use ${at}`, hint }],
      `${args.join(' ')} --json: one error event, the hint apart`,
    );
  }
  const kme = await runQkdTls(['kme', '--listen', at, '--insecure-http'], { ms: EXITS_WITHIN_MS });
  t.equal(kme.code, 1, 'kme: exit code 1');
  t.match(kme.stderr, `cannot listen on ${at}: listen EADDRINUSE: address already in use ${at}; ${hint}\n`, 'kme: the same hint');
  // With --json, kme (and kme --topology) too give an error event with the hint apart (they printed the text line).
  const topology = join(mkdtempSync(join(tmpdir(), 'qkd-topology-')), 'two.json');
  t.teardown(() => rmSync(dirname(topology), { recursive: true, force: true }));
  writeFileSync(topology, '{"nodes":[{"name":"A"},{"name":"B"}],"links":[{"a":"A","b":"B","km":10}]}');
  for (const args of [['kme', '--listen', at, '--insecure-http'], ['kme', '--topology', topology, '--listen', at, '--insecure-http']]) {
    const j = await runQkdTls([...args, '--json'], { ms: EXITS_WITHIN_MS });
    t.equal(j.code, 1, `${args[1]} --json: exit code 1`);
    const events = j.stderr.split('\n').filter(Boolean).map((l) => JSON.parse(l) as { event?: string; message?: string; hint?: string });
    t.equal(events.length, 1, `${args[1]} --json: one line on stderr`);
    t.equal(events[0]?.event, 'error', `${args[1]} --json: an error event`);
    t.match(events[0]?.message, /EADDRINUSE/, `${args[1]} --json: its message`);
    t.equal(events[0]?.hint, hint, `${args[1]} --json: the hint apart`);
  }
});

t.test('an unknown --kex-modes name lists the known ones, as --suites and --groups do', async (t) => {
  // It said only `unknown mode "psk"` (found in a README walkthrough).
  const r = await runQkdTls(['client', '--connect', '127.0.0.1:9', '--psk', '000102030405060708090a0b0c0d0e0f', '--identity', 'a', '--kex-modes', 'psk'], { ms: EXITS_WITHIN_MS });
  t.equal(r.code, 2, 'exit code 2');
  t.equal(r.stderr, 'qkd-tls client: --kex-modes: unknown mode "psk" (known: psk_dhe_ke, psk_ke)\n');
});

t.test('qkd-tls --version prints the version; qkd-tls help COMMAND is COMMAND --help', async (t) => {
  // --version was "unknown command '--version'" with the usage, exit 2; `help server` printed the list of commands.
  const { version } = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string };
  const v = await runQkdTls(['--version'], { ms: EXITS_WITHIN_MS });
  t.equal(v.code, 0, '--version: exit code 0');
  t.equal(v.stdout, `qkd-tls ${version}\n`, 'the version from package.json');
  const help = await runQkdTls(['help', 'server'], { ms: EXITS_WITHIN_MS });
  const direct = await runQkdTls(['server', '--help'], { ms: EXITS_WITHIN_MS });
  t.equal(help.code, 0, 'help server: exit code 0');
  t.equal(help.stdout, direct.stdout, 'help server is server --help');
});

t.test('--origin must be a page origin, and --origin or --max-message without --websocket is a usage error', async (t) => {
  // `--origin localhost:8000` (no scheme) was taken as it is and matched no browser's Origin header, so every page
  // was refused with 403; server --origin or --max-message without --websocket were ignored without a word (the proxy
  // already refused --origin without --websocket). Found in a README walkthrough.
  const psk = ['--psk', '000102030405060708090a0b0c0d0e0f', '--identity', 'a'];
  for (const [name, args] of [
    ['server', ['server', '--websocket', '--listen', '127.0.0.1:0', ...psk]],
    ['bridge', ['bridge', '--listen', '127.0.0.1:0', '--allow', '127.0.0.1:9']],
    ['proxy', ['proxy', '--role', 'server', '--websocket', '--accept', '127.0.0.1:0', '--connect', '127.0.0.1:9', ...psk]],
  ] as const) {
    const r = await runQkdTls([...args, '--origin', 'localhost:8000'], { ms: EXITS_WITHIN_MS });
    t.equal(r.code, 2, `${name}: exit code 2`);
    t.equal(r.stderr, `qkd-tls ${name}: --origin: expected a page's origin, such as http://localhost:8000, got "localhost:8000"\n`, `${name}: one line`);
  }
  for (const [option, value] of [['--origin', 'http://localhost:8000'], ['--max-message', '2048']]) {
    const r = await runQkdTls(['server', '--listen', '127.0.0.1:0', ...psk, option, value], { ms: EXITS_WITHIN_MS });
    t.equal(r.code, 2, `server ${option} without --websocket: exit code 2`);
    t.equal(r.stderr, `qkd-tls server: ${option} goes with --websocket\n`);
  }
});

t.test('the listen hint is for failures of listen only, not for the same code from another call', async (t) => {
  // kme's --certs directory that cannot be written fails with EACCES from mkdir: its message got "not allowed to
  // listen there (ports below 1024 need privileges)", a cause it did not have. Node's error, as fs.mkdir makes it
  // (a test running as root cannot provoke it).
  const mkdir = Object.assign(new Error("EACCES: permission denied, mkdir '/srv/kme-certs'"), { code: 'EACCES', errno: -13, syscall: 'mkdir', path: '/srv/kme-certs' });
  t.equal(listenHint(mkdir), '', 'no hint for mkdir');
  t.equal(isListenError(mkdir), false, 'not a listen error');
  t.equal(listenHint(new Error('could not start', { cause: mkdir })), '', 'nor for it as the cause');
  // A real failure of listen still gets its hint, as an error of its own or wrapped in a message (the simulator's).
  const holder = createServer();
  await new Promise<void>((resolve) => holder.listen(0, '127.0.0.1', resolve));
  t.teardown(() => holder.close());
  const inUse = await new Promise<Error>((resolve) => {
    const s = createServer();
    s.once('error', resolve);
    s.listen((holder.address() as AddressInfo).port, '127.0.0.1');
  });
  t.match(listenHint(inUse), /^another program/, 'listen EADDRINUSE: the hint');
  t.equal(isListenError(inUse), true, 'a listen error');
  t.match(listenHint(new Error(`kme simulator: cannot listen on 127.0.0.1:80: ${inUse.message}`)), /^another program/, 'wrapped in a message: the hint');
});

t.test('a --server-name that is not a DNS host name: one line saying what is wrong and what a server name may contain', async (t) => {
  // `--server-name "my host"` said "printable ASCII only" (a space is printable ASCII), and "a/b" or "host:443"
  // were sent as they were (found in a README walkthrough). One check, the library's serverNameProblem, serves the
  // command line and ClientOptions.serverName.
  const psk = ['--psk', '000102030405060708090a0b0c0d0e0f', '--identity', 'a'];
  const rule = 'a server name is a DNS host name (RFC 6066 §3): ASCII letters, digits, "-" and "_" in labels separated by "."; no label starts or ends with "-", and the last is not all digits (RFC 1123 §2.1); at most 63 bytes a label and 253 in all (RFC 1035 §2.3.4); an internationalized name in its A-label form ("xn--..."); a trailing dot is dropped; not an IP address';
  for (const [name, problem] of [
    ['my host', 'contains a space'],
    ['a/b', 'contains "/"'],
    ['example.com:443', 'contains ":" (a port does not go in a server name)'],
    ['a..example', 'has an empty label (a "." at the start or two in a row)'],
    [`${'a'.repeat(64)}.example`, 'has a label of 64 bytes ("aaaaaaaaaaaaaaaa..."), longer than 63'],
    ['kme-.example', 'has a label that ends with "-" ("kme-")'],
    ['kme.example.123', 'has a last label of digits only ("123"), which could be read as an IP address'],
  ] as const) {
    for (const [command, args] of [
      ['client', ['client', '--connect', '127.0.0.1:9', ...psk]],
      ['proxy', ['proxy', '--role', 'client', '--accept', '127.0.0.1:0', '--connect', '127.0.0.1:9', ...psk]],
    ] as const) {
      const r = await runQkdTls([...args, '--server-name', name], { ms: EXITS_WITHIN_MS });
      t.equal(r.code, 2, `${command} --server-name "${name}": exit code 2`);
      t.equal(r.stderr, `qkd-tls ${command}: --server-name: ${problem}; ${rule}\n`, `${command} --server-name "${name}": one line`);
    }
  }
});

t.test('the proxy\'s times: a bare number is milliseconds, and the message says so, with the units', async (t) => {
  // "--idle-timeout 5x" said "expected a duration such as 500ms, 30s or 5m": what a bare number means was left
  // unsaid, while --handshake-timeout takes seconds (found in a README walkthrough). bin/cli/duration.ts.
  const psk = ['--psk', '000102030405060708090a0b0c0d0e0f', '--identity', 'a'];
  for (const [option, from] of [['--idle-timeout', '0 (never)'], ['--connect-timeout', '1ms'], ['--drain-timeout', '0 (do not wait)']]) {
    const r = await runQkdTls(['proxy', '--role', 'client', '--accept', '127.0.0.1:0', '--connect', '127.0.0.1:9', ...psk, option, '5x'], { ms: EXITS_WITHIN_MS });
    t.equal(r.code, 2, `${option}: exit code 2`);
    t.equal(r.stderr, `qkd-tls proxy: ${option}: expected a number of milliseconds, or a number with a unit (500ms, 30s, 5m, 1h), from ${from} to 168h; got "5x"\n`, `${option}: one line`);
  }
});

t.test('demo --web with an option of the terminal demo (--network, --svg, --handshakes): a usage error that says why', async (t) => {
  // `demo --web --network` said "Unknown option '--network'" (demo has that option; the web demo has no simulated
  // network and so no simulated time), found in a README walkthrough.
  for (const args of [['--web', '--network'], ['--network', '--web'], ['--network', '--svg', 'n.svg', '--web'], ['--web', '--handshakes', '2'], ['--web', '--handshakes=2']]) {
    const r = await runQkdTls(['demo', ...args], { ms: EXITS_WITHIN_MS });
    const option = args.find((a) => a !== '--web')!.split('=')[0];
    t.equal(r.code, 2, `demo ${args.join(' ')}: exit code 2`);
    t.equal(r.stdout, '', 'nothing started');
    t.equal(
      r.stderr,
      `qkd-tls demo: ${option} does not go with --web: the page runs the single-link demo in real time, with no simulated network; --network, --svg and --handshakes are options of the demo in the terminal\n(run qkd-tls demo --help for the options)\n`,
      `demo ${args.join(' ')}: one line naming the option, then where the options are`,
    );
  }
  for (const option of ['--listen', '--json']) {
    const r = await runQkdTls(['demo', option, ...(option === '--listen' ? ['127.0.0.1:0'] : [])], { ms: EXITS_WITHIN_MS });
    t.equal(r.code, 2, `demo ${option} without --web: exit code 2`);
    t.equal(r.stderr, `qkd-tls demo: ${option} goes with --web\n(run qkd-tls demo --help for the options)\n`);
  }
  const help = await runQkdTls(['help', 'demo'], { ms: EXITS_WITHIN_MS });
  t.match(help.stdout, /--web {12}instead: the single-link demo in a browser/);
});

// Port 0 means "any free port" where qkd-tls listens; nothing can be connected to on it. `proxy --connect HOST:0` started,
// then failed in startProxy with exit 1 and a JSON error line; `client --connect HOST:0` tried and got ECONNREFUSED.
t.test('port 0 in an address qkd-tls connects to is a usage error; where it listens it is a free port', async (t) => {
  const psk = ['--psk', '000102030405060708090a0b0c0d0e0f', '--identity', 'a'];
  for (const [name, args, option] of [
    ['client', ['client', '--connect', '127.0.0.1:0', ...psk], '--connect'],
    ['proxy', ['proxy', '--role', 'server', '--accept', '127.0.0.1:0', '--connect', '127.0.0.1:0', ...psk], '--connect'],
    ['proxy', ['proxy', '--role', 'client', '--accept', '127.0.0.1:0', '--connect', '[::1]:0', ...psk], '--connect'],
    ['server', ['server', '--listen', '127.0.0.1:0', '--forward', 'localhost:0', ...psk], '--forward'],
    ['bridge', ['bridge', '--listen', '127.0.0.1:0', '--allow', '127.0.0.1:0'], '--allow'],
  ] as const) {
    const r = await runQkdTls([...args], { ms: EXITS_WITHIN_MS });
    t.equal(r.code, 2, `${args.join(' ')}: exit code 2`);
    t.equal(r.stdout, '', `${name}: nothing on stdout (it never listened)`);
    t.equal(r.stderr, `qkd-tls ${name}: ${option}: port 0 cannot be connected to (0 means "any free port" only where qkd-tls listens)\n`, `${name}: one line naming ${option}`);
  }
});
