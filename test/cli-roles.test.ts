/**
 * Options of the other role are usage errors (exit 2, one line): `qkd-tls server` took the client's options
 * (--early-data, --key-shares, --server-name, --kme-pool, ...) and `qkd-tls client` took --max-early-data, and
 * silently ignored them. One table (bin/cli/roles.ts, ROLE_OF_OPTION) says which options belong to one role;
 * the "(client)" / "(server)" markers of the help texts must agree with it. The proxy refuses them only on the
 * command line, for the wrong --role; its config file's global section holds defaults for both roles.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { KEY_SOURCE_OPTION_SPEC } from '../bin/cli/key-source.js';
import { ROLE_OF_OPTION } from '../bin/cli/roles.js';
import { TLS_OPTION_SPEC } from '../bin/cli/tls-options.js';
import { EXITS_WITHIN_MS, runQkdTls } from './helpers/peers.js';
import { KEY_HEX, spawnProxy } from './proxy-helpers.js';

const KEY = ['--psk', KEY_HEX, '--identity', 'k1'];
const SPECS: Record<string, { type: string }> = { ...TLS_OPTION_SPEC, ...KEY_SOURCE_OPTION_SPEC };
const TABLE = Object.entries(ROLE_OF_OPTION);

/** The option as given on a command line: a boolean alone, anything else with a value the parser accepts. */
function given(name: string): string[] {
  return SPECS[name].type === 'boolean' ? [`--${name}`] : [`--${name}`, name === 'key-shares' ? 'x25519' : '16'];
}

/** "--name ... (client)" at the start of a help line: the option and the role it is marked for. */
function markersOf(help: string): Map<string, string> {
  const marks = new Map<string, string>();
  for (const m of help.matchAll(/^ {2,}--([a-z0-9-]+)(?: [A-Z][A-Z0-9:_-]*)* +\((client|server)\)/gm)) marks.set(m[1], m[2]);
  return marks;
}

t.test('the help texts mark exactly the options of the table, with the role of the table', async (tt) => {
  for (const name of Object.keys(ROLE_OF_OPTION)) tt.ok(Object.hasOwn(SPECS, name), `--${name} is a shared option`);
  for (const command of ['server', 'client']) {
    const r = await runQkdTls([command, '--help'], { ms: EXITS_WITHIN_MS });
    tt.equal(r.code, 0, `${command} --help`);
    tt.same(Object.fromEntries([...markersOf(r.stdout)].sort()), Object.fromEntries([...TABLE].sort()), `${command} --help: markers = table`);
  }
  // The proxy's help leaves out --early-data (not supported); the others are marked as in the table.
  const r = await runQkdTls(['proxy', '--help'], { ms: EXITS_WITHIN_MS });
  tt.same(
    Object.fromEntries([...markersOf(r.stdout)].sort()),
    Object.fromEntries(TABLE.filter(([n]) => n !== 'early-data').sort()),
    'proxy --help: markers = table',
  );
});

for (const command of ['server', 'client'] as const) {
  const where = command === 'server' ? ['--listen', '127.0.0.1:0'] : ['--connect', '127.0.0.1:9'];
  t.test(`qkd-tls ${command} refuses every option of the other role`, async (tt) => {
    const foreign = TABLE.filter(([, role]) => role !== command);
    tt.ok(foreign.length > 0);
    // Four at a time: all at once (a dozen Node processes starting together), each had 15 s and some ran out of it
    // at a load of 17 on 2 cores (and see EXITS_WITHIN_MS). The bound only stops a command that, as before, starts
    // listening instead of refusing: one that does is killed at it and fails the test all the same.
    const results: Awaited<ReturnType<typeof runQkdTls>>[] = [];
    for (let i = 0; i < foreign.length; i += 4) {
      results.push(...(await Promise.all(foreign.slice(i, i + 4).map(([name]) => runQkdTls([command, ...where, ...KEY, ...given(name)], { ms: EXITS_WITHIN_MS })))));
    }
    foreign.forEach(([name, role], i) => {
      tt.equal(results[i].code, 2, `--${name}: exit code 2`);
      tt.equal(results[i].stderr, `qkd-tls ${command}: --${name} is a ${role} option\n`, `--${name}: one line`);
    });
  });
}

t.test('qkd-tls proxy refuses an option of the other --role on the command line', async (tt) => {
  const base = ['--accept', '127.0.0.1:0', '--connect', '127.0.0.1:9', ...KEY];
  const [asServer, asClient] = await Promise.all([
    runQkdTls(['proxy', '--role', 'server', ...base, '--key-shares', 'x25519'], { ms: EXITS_WITHIN_MS }),
    runQkdTls(['proxy', '--role', 'client', ...base, '--max-early-data', '100'], { ms: EXITS_WITHIN_MS }),
  ]);
  tt.equal(asServer.code, 2);
  tt.equal(asServer.stderr, 'qkd-tls proxy: --key-shares is a client option\n');
  tt.equal(asClient.code, 2);
  tt.equal(asClient.stderr, 'qkd-tls proxy: --max-early-data is a server option\n');
});

t.test("a proxy config file's global options apply to the services of both roles without complaint", async (tt) => {
  const dir = mkdtempSync(join(tmpdir(), 'qkd-roles-'));
  tt.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'p.conf');
  const lines = ['json = yes', `psk = ${KEY_HEX}`, 'identity = k1', 'max-early-data = 100', 'server-name = example.com'];
  lines.push('[in]', 'role = client', 'accept = 127.0.0.1:0', 'connect = 127.0.0.1:9');
  lines.push('[out]', 'role = server', 'accept = 127.0.0.1:0', 'connect = 127.0.0.1:9');
  writeFileSync(file, lines.join('\n'), { mode: 0o600 });
  const p = await spawnProxy(tt, ['--config', file]);
  await p.waitFor((l) => l.event === 'listening' && l.service === 'in');
  await p.waitFor((l) => l.event === 'listening' && l.service === 'out');
  tt.pass('both services listen');
});

t.test("an option of the other role in a proxy config service's own section is refused at its line", async (tt) => {
  // (Only the global section serves both roles; in a service's own section the option was silently ignored.)
  const dir = mkdtempSync(join(tmpdir(), 'qkd-roles-'));
  tt.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'p.conf');
  const lines = [`psk = ${KEY_HEX}`, 'identity = k1', 'server-name = example.com'];
  lines.push('[out]', 'role = server', 'accept = 127.0.0.1:0', 'connect = 127.0.0.1:9', 'key-shares = x25519');
  writeFileSync(file, lines.join('\n'), { mode: 0o600 });
  const r = await runQkdTls(['proxy', '--config', file], { ms: EXITS_WITHIN_MS });
  tt.equal(r.code, 2, 'exit code 2');
  tt.match(r.stderr, /p\.conf:8: \[out\] key-shares: is a client option/, 'the line of key-shares in [out], not the global server-name');
});
