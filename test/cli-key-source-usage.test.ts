/**
 * Bad key-source and key-log options are usage errors (exit 2) found before anything runs (found by review):
 * several --peer-sae-id for a client were only found when the first key was fetched (the client exited 1 after
 * connecting; the proxy started and failed every connection with key-unavailable), and a --keylog file that
 * cannot be written only at the first handshake (the server listened and failed every handshake).
 */
import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { makeKmeCertificates } from '../lib/tools/kme/certificates.js';
import { EXITS_WITHIN_MS, runQkdTls } from './helpers/peers.js';

// This file runs dozens of commands one after another, and each one's start scales with the machine's load: 71 s
// under load in a full run, 285 s at a load of ~20 on 2 cores, against tap's 300 s per file (package.json). That
// bound is only a hang catcher here, each command having its own (EXITS_WITHIN_MS): told to the runner.
t.setTimeout(900_000);

const KME = ['--kme', 'http://127.0.0.1:9', '--sae-id', 'sae-a', '--peer-sae-id', 'sae-b', '--peer-sae-id', 'sae-c'];

t.test('qkd-tls client with two --peer-sae-id exits 2 with a usage message', async (tt) => {
  const r = await runQkdTls(['client', '--connect', '127.0.0.1:9', ...KME], { ms: EXITS_WITHIN_MS });
  tt.equal(r.code, 2, 'exit code 2');
  tt.match(r.stderr, /^qkd-tls client: a client takes one --peer-sae-id/m);
});

t.test('qkd-tls proxy --role client with two --peer-sae-id exits 2 with a usage message', async (tt) => {
  const r = await runQkdTls(['proxy', '--role', 'client', '--accept', '127.0.0.1:0', '--connect', '127.0.0.1:9', ...KME], { ms: EXITS_WITHIN_MS });
  tt.equal(r.code, 2, 'exit code 2');
  tt.match(r.stderr, /a client takes one --peer-sae-id/);
});

t.test('a --keylog file that cannot be written is a usage error before the server listens', async (tt) => {
  const r = await runQkdTls(['server', '--listen', '127.0.0.1:0', '--psk', '00112233445566778899aabbccddeeff', '--identity', 'a', '--keylog', '/nonexistent-dir/keys.log'], { ms: EXITS_WITHIN_MS });
  tt.equal(r.code, 2, 'exit code 2');
  tt.match(r.stderr, /^qkd-tls server: --keylog: cannot write \/nonexistent-dir\/keys\.log/m);
  tt.notMatch(r.stdout + r.stderr, /listening/, 'it never listened');
});

// A file option naming something endless (/dev/zero) is read up to a bound (MAX_OPTION_FILE_BYTES, 64 MiB) and
// refused as a usage error; it was read until memory ran out (the process died with std::bad_alloc).
for (const [what, args] of [
  ['--psk-file', ['server', '--listen', '127.0.0.1:0', '--psk-file', '/dev/zero']],
  ['--kme-ca', ['client', '--connect', '127.0.0.1:9', '--kme', 'https://127.0.0.1:9', '--sae-id', 'a', '--peer-sae-id', 'b', '--kme-ca', '/dev/zero']],
  ['--early-data', ['client', '--connect', '127.0.0.1:9', '--psk', '00112233445566778899aabbccddeeff', '--identity', 'a', '--early-data', '/dev/zero']],
] as const) {
  t.test(`${what} /dev/zero is a usage error, not a read without end`, async (tt) => {
    const r = await runQkdTls([...args], { ms: 60_000 });
    tt.equal(r.code, 2, 'exit code 2');
    // The option itself first: a --kme-ca that cannot be read said "--kme: --kme-ca: ..." (found by review).
    tt.match(r.stderr, new RegExp(`^qkd-tls (server|client): ${what}: .*/dev/zero is larger than 67108864 bytes \\(64 MiB\\)`, 'm'));
    tt.notMatch(r.stderr, /\n\s+at /, 'no stack trace');
  });
}

t.test('proxy --config /dev/zero is a usage error, not a read without end', async (tt) => {
  const r = await runQkdTls(['proxy', '--config', '/dev/zero'], { ms: 60_000 });
  tt.equal(r.code, 2, 'exit code 2');
  tt.match(r.stderr, /^qkd-tls proxy: \/dev\/zero: cannot read the configuration file: \/dev\/zero is larger than 67108864 bytes \(64 MiB\)/m);
});

// A --kme without its scheme (found in a README walkthrough): `--kme 127.0.0.1:8443` said "--kme: Invalid URL", and
// `--kme localhost:8443` (read as the URL scheme "localhost:") "--kme: Etsi014Client: baseUrl must be https: (got
// localhost:)". Each now says what a --kme is.
for (const url of ['127.0.0.1:8443', 'localhost:8443', 'ftp://127.0.0.1:8443']) {
  t.test(`--kme ${url} is a usage error that shows a KME URL`, async (tt) => {
    const r = await runQkdTls(['client', '--connect', '127.0.0.1:9', '--kme', url, '--sae-id', 'a', '--peer-sae-id', 'b'], { ms: EXITS_WITHIN_MS });
    tt.equal(r.code, 2, 'exit code 2');
    tt.equal(r.stderr, `qkd-tls client: --kme: expected the KME's URL, https://HOST:PORT (or http://127.0.0.1:PORT for a simulator on this machine), got "${url}"\n`);
  });
}

// --kme-cert and --kme-key that do not go together (or a key given as the certificate) are a usage error at startup
// (found in a README walkthrough): the client connected, and each enc_keys call failed, after its retries, with
// "cannot reach the KME at https://... (4 attempt(s)): ERR_OSSL_X509_KEY_VALUES_MISMATCH ...".
t.test('--kme-cert and --kme-key that cannot be used together are a usage error before anything runs', async (tt) => {
  const dir = await mkdtemp(join(tmpdir(), 'qkd-tls-certs-'));
  tt.teardown(() => rm(dir, { recursive: true, force: true }));
  const set = await makeKmeCertificates({ kmeIds: ['KME-A'], saeIds: ['sae-a', 'sae-b'] });
  const file = async (name: string, text: string): Promise<string> => {
    await writeFile(join(dir, name), text);
    return join(dir, name);
  };
  const certA = await file('a.crt', set.saes['sae-a'].cert);
  const keyA = await file('a.key', set.saes['sae-a'].key);
  const keyB = await file('b.key', set.saes['sae-b'].key);
  const kme = ['--kme', 'https://127.0.0.1:9', '--sae-id', 'sae-a', '--peer-sae-id', 'sae-b'];
  for (const [what, cert, key, message] of [
    ["another SAE's key", certA, keyB, "key values mismatch (the key is not the certificate's)"],
    ['the key as the certificate', keyA, keyA, 'no start line (both must be PEM: the certificate, then its private key)'],
  ]) {
    const r = await runQkdTls(['client', '--connect', '127.0.0.1:9', ...kme, '--kme-cert', cert, '--kme-key', key], { ms: EXITS_WITHIN_MS });
    tt.equal(r.code, 2, `${what}: exit code 2`);
    tt.equal(r.stderr, `qkd-tls client: --kme: Etsi014Client: cert and key cannot be used: ${message}\n`, `${what}: one line`);
  }
});

// A time in the wrong form names the unit (found in a README walkthrough: the proxy's other times take "5s", these
// took milliseconds only, and `--kme-timeout 5s` said only "must be an integer from 1 to 600000"). Every time option
// now takes a unit too; a bare number is still milliseconds here.
t.test('--kme-timeout and --key-lifetime take a unit (5s, 1m); out of form, the message names milliseconds and the units', async (tt) => {
  const kme = ['client', '--connect', '127.0.0.1:9', '--kme', 'http://127.0.0.1:9', '--sae-id', 'a', '--peer-sae-id', 'b'];
  const ok = await runQkdTls([...kme, '--kme-timeout', '5s', '--key-lifetime', '1m'], { ms: EXITS_WITHIN_MS });
  tt.equal(ok.code, 1, 'taken: the client runs, and fails only because nothing listens on port 9');
  tt.notMatch(ok.stderr, /--kme-timeout|--key-lifetime/);
  for (const [option, max] of [['--kme-timeout', '10m'], ['--key-lifetime', '24h']]) {
    const r = await runQkdTls([...kme, option, '5x'], { ms: EXITS_WITHIN_MS });
    tt.equal(r.code, 2, `${option}: exit code 2`);
    tt.equal(r.stderr, `qkd-tls client: ${option}: expected a number of milliseconds, or a number with a unit (500ms, 30s, 5m, 1h), from 1ms to ${max}; got "5x"\n`, `${option}: the units`);
  }
});

// --kme-ca, --kme-cert and --kme-key with an http:// KME were read and then ignored without a word (found in a README
// walkthrough): a reader could believe the link to the KME was TLS.
t.test('--kme-ca, --kme-cert or --kme-key with an http:// KME is a usage error', async (tt) => {
  const r = await runQkdTls(['server', '--listen', '127.0.0.1:0', '--kme', 'http://127.0.0.1:9', '--sae-id', 'a', '--peer-sae-id', 'b', '--kme-ca', '/dev/null'], { ms: EXITS_WITHIN_MS });
  tt.equal(r.code, 2, 'exit code 2');
  tt.equal(r.stderr, 'qkd-tls server: --kme-ca: for an https:// KME; this one is http:// (plain HTTP, a simulator on this machine)\n');
  tt.notMatch(r.stdout + r.stderr, /listening/, 'it never listened');
});

// The options indented under --kme in the help were accepted with static keys and ignored without a word (found in a
// README walkthrough): `--psk ... --kme-pool 8` ran with no pool, `--psk-file F --sae-id x` as if it were not given.
t.test('an option of a key manager source with static keys is a usage error (a proxy config default is not)', async (tt) => {
  const dir = await mkdtemp(join(tmpdir(), 'qkd-tls-kme-only-'));
  tt.teardown(() => rm(dir, { recursive: true, force: true }));
  const keyFile = join(dir, 'keys.txt');
  await writeFile(keyFile, 'k1 00112233445566778899aabbccddeeff\n');
  const psk = ['--psk', '00112233445566778899aabbccddeeff', '--identity', 'a'];
  for (const [command, args, message] of [
    ['client', ['--connect', '127.0.0.1:9', ...psk, '--kme-pool', '8'], '--kme-pool goes with --kme (keys from a key manager); the keys here come from --psk'],
    ['client', ['--connect', '127.0.0.1:9', ...psk, '--kme-timeout', '5s'], '--kme-timeout goes with --kme (keys from a key manager); the keys here come from --psk'],
    ['server', ['--listen', '127.0.0.1:0', '--psk-file', keyFile, '--sae-id', 'server-sae'], '--sae-id goes with --kme (keys from a key manager); the keys here come from --psk-file'],
    ['proxy', ['--role', 'client', '--accept', '127.0.0.1:0', '--connect', '127.0.0.1:9', ...psk, '--offer-keys', '2'], '--offer-keys goes with --kme (keys from a key manager); the keys here come from --psk'],
  ] as const) {
    const r = await runQkdTls([command, ...args], { ms: EXITS_WITHIN_MS });
    tt.equal(r.code, 2, `${command} ${args.slice(-2).join(' ')}: exit code 2`);
    tt.equal(r.stderr, `qkd-tls ${command}: ${message}\n`, `${command}: one line naming the option`);
    tt.notMatch(r.stdout + r.stderr, /listening/, `${command}: it never listened`);
  }
  // In a proxy config, a global default serves the services that use a key manager; a static-key service ignores it,
  // but the same field in its own section is refused, at its line.
  const config = join(dir, 'proxy.ini');
  await writeFile(config, `kme-timeout = 5s\n[static]\nrole = client\naccept = 127.0.0.1:0\nconnect = 127.0.0.1:9\npsk = 00112233445566778899aabbccddeeff\nidentity = a\nkme-pool = 4\n`, { mode: 0o600 });
  const own = await runQkdTls(['proxy', '--config', config], { ms: EXITS_WITHIN_MS });
  tt.equal(own.code, 2, 'config: kme-pool in a static-key service: exit code 2');
  tt.match(own.stderr, /proxy\.ini:8: \[static\] kme-pool: goes with --kme /, 'config: the line of kme-pool');
  tt.notMatch(own.stderr, /kme-timeout/, 'config: the global kme-timeout is not refused');
});

t.test('--psk-hash with --psk-file is the hash of the lines that name none; a line that names its own keeps it', async (tt) => {
  const { parseKeySource } = await import('../bin/cli/key-source.js');
  const dir = await mkdtemp(join(tmpdir(), 'qkd-tls-psk-hash-'));
  tt.teardown(() => rm(dir, { recursive: true, force: true }));
  const file = join(dir, 'keys.txt');
  await writeFile(file, `named   ${'11'.repeat(48)} SHA-384\nplain   ${'22'.repeat(32)}\nnamed256 ${'33'.repeat(32)} SHA-256\n`);
  const hashes = (extra: Record<string, unknown>) => {
    const source = parseKeySource({ 'psk-file': file, provider: 'noble', ...extra }, { role: 'server' });
    const psks = source.server as readonly { identity: Uint8Array; hash: string }[];
    source.close();
    return Object.fromEntries(psks.map((p) => [new TextDecoder().decode(p.identity), p.hash]));
  };
  tt.same(hashes({}), { named: 'SHA-384', plain: 'SHA-256', named256: 'SHA-256' }, 'without --psk-hash: each line its own, SHA-256 by default');
  // --psk-hash overrode every line before: the SHA-384 key was offered bound to SHA-256, and failed every handshake.
  tt.same(hashes({ 'psk-hash': 'SHA-256' }), { named: 'SHA-384', plain: 'SHA-256', named256: 'SHA-256' }, '--psk-hash SHA-256: the SHA-384 line stays SHA-384');
  tt.same(hashes({ 'psk-hash': 'SHA-384' }), { named: 'SHA-384', plain: 'SHA-384', named256: 'SHA-256' }, '--psk-hash SHA-384: the line naming none becomes SHA-384, the SHA-256 line stays');
});

// Two --psk under one --identity: the server found a key by its identity and took the first, so the second key
// could never be used, and a client offered both (found by review). A --psk-file refuses it ("identity 'a' appears
// twice"); the flags took it without a word: the server listened, and a client with the second key failed with
// decrypt_error.
t.test('the same --identity for two --psk is a usage error naming the flag, without the key', async (tt) => {
  const [k1, k2] = ['00112233445566778899aabbccddeeff', '11112233445566778899aabbccddeeff'];
  const twice = ['--psk', k1, '--identity', 'a', '--psk', k2, '--identity', 'a'];
  for (const args of [
    ['server', '--listen', '127.0.0.1:0', ...twice],
    ['client', '--connect', '127.0.0.1:9', ...twice],
    ['proxy', '--role', 'client', '--accept', '127.0.0.1:0', '--connect', '127.0.0.1:9', ...twice],
  ]) {
    const r = await runQkdTls(args, { ms: EXITS_WITHIN_MS });
    tt.equal(r.code, 2, `${args[0]}: exit code 2`);
    tt.equal(r.stderr, `qkd-tls ${args[0]}: --identity #2: 'a' is given twice (each --psk needs an identity of its own)\n`, `${args[0]}: one line naming --identity`);
    tt.notMatch(r.stdout + r.stderr, /listening/, `${args[0]}: it never listened`);
    tt.notMatch(r.stdout + r.stderr, /112233445566/, `${args[0]}: no key in the output`);
  }
});

// A --psk-file that any user can read (a file written with the default umask is 0644) or that others can write was used
// without a word, though its keys authenticate this endpoint (lib/qkd/file-source.ts: "readable by its owner only").
t.test('a --psk-file that other users can read or write is used with a warning naming its mode; 0600 and 0640 are not', { skip: process.platform === 'win32' && 'POSIX modes' }, async (tt) => {
  const dir = await mkdtemp(join(tmpdir(), 'qkd-tls-key-file-mode-'));
  tt.teardown(() => rm(dir, { recursive: true, force: true }));
  const keyFile = join(dir, 'keys.txt');
  await writeFile(keyFile, 'k1 00112233445566778899aabbccddeeff\n');
  // The client connects to a port nothing listens on: the key file is read, then the connection is refused.
  const run = async (mode: number, json = false) => {
    await chmod(keyFile, mode);
    return runQkdTls(['client', '--connect', '127.0.0.1:9', '--psk-file', keyFile, ...(json ? ['--json'] : [])], { ms: 20_000 });
  };
  const exposed = await run(0o644);
  tt.match(
    exposed.stderr,
    /^warning: option=--psk-file file=\S+keys\.txt message="the key file can be read by any user of this machine \(mode 0644\): .*chmod 600 it/m,
    '0644: a warning naming the mode and what to do',
  );
  const json = (await run(0o666, true)).stderr.split('\n').filter(Boolean).map((l) => JSON.parse(l) as { event: string; message?: string });
  tt.match(json[0], { event: 'warning', option: '--psk-file', message: /read by any user of this machine and written by others than its owner \(mode 0666\)/ }, '--json: a warning event');
  tt.match((await run(0o620)).stderr, /written by others than its owner \(mode 0620\)/, '0620: group-writable');
  for (const mode of [0o600, 0o640, 0o400]) {
    const r = await run(mode);
    tt.notMatch(r.stderr, /warning/, `${mode.toString(8)}: no warning`);
    tt.match(r.stderr, /ECONNREFUSED/, `${mode.toString(8)}: the keys were read and the client went on`);
  }
  tt.notMatch(exposed.stdout + exposed.stderr, /112233445566/, 'no key in the output');
});

// The same for a proxy configuration file holding `psk` lines: as much a key file as a --psk-file.
t.test('a proxy --config file holding PSKs that other users can read is used with a warning; one without PSKs is not', { skip: process.platform === 'win32' && 'POSIX modes' }, async (tt) => {
  const dir = await mkdtemp(join(tmpdir(), 'qkd-tls-config-mode-'));
  tt.teardown(() => rm(dir, { recursive: true, force: true }));
  const file = join(dir, 'proxy.conf');
  // (A service without `connect`: the command reads the file, then stops with a usage error, exit 2.)
  const run = async (lines: string[], mode: number) => {
    await writeFile(file, [...lines, '[in]', 'role = client', 'accept = 127.0.0.1:0'].join('\n'));
    await chmod(file, mode);
    return runQkdTls(['proxy', '--config', file], { ms: EXITS_WITHIN_MS });
  };
  const withPsk = ['psk = 00112233445566778899aabbccddeeff', 'identity = k1'];
  const exposed = await run(withPsk, 0o644);
  tt.equal(exposed.code, 2, 'the usage error after it');
  tt.match(
    exposed.stderr,
    /^warning: option=--config file=\S+proxy\.conf message="the configuration file, which holds PSKs, can be read by any user of this machine \(mode 0644\): .*chmod 600 it/m,
    '0644 with psk lines: a warning naming the mode',
  );
  tt.notMatch(exposed.stdout + exposed.stderr, /112233445566/, 'no key in the output');
  tt.notMatch((await run(withPsk, 0o600)).stderr, /warning/, '0600: no warning');
  tt.notMatch((await run(['kme = https://127.0.0.1:1', 'sae-id = a', 'peer-sae-id = b'], 0o644)).stderr, /warning/, 'no psk lines: no warning');
});
