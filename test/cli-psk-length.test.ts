/**
 * RFC 9257 §6: "Each PSK ... MUST be at least 128 bits long". `--psk`, a `--psk-file` line and a proxy config
 * file's `psk` shorter than 16 bytes are usage errors (exit 2, one line naming the rule); before, a 2-byte key
 * was taken and completed a handshake. The command line has no way around it (the library's
 * dangerouslyAllowShortPsks is for tests of other stacks).
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { EXITS_WITHIN_MS, runQkdTls } from './helpers/peers.js';

const SHORT = '00112233445566778899aabbccddee'; // 15 bytes
const RULE = 'a PSK must be at least 16 bytes \\(128 bits, RFC 9257 §6\\)';

for (const [what, args] of [
  ['server', ['server', '--listen', '127.0.0.1:0']],
  ['client', ['client', '--connect', '127.0.0.1:9']],
  ['proxy', ['proxy', '--role', 'server', '--accept', '127.0.0.1:0', '--connect', '127.0.0.1:9']],
] as const) {
  t.test(`qkd-tls ${what} --psk with 15 bytes is a usage error`, async (tt) => {
    const r = await runQkdTls([...args, '--psk', '0011223344556677889900112233445566778899', '--identity', 'ok', '--psk', SHORT, '--identity', 'short'], { ms: EXITS_WITHIN_MS });
    tt.equal(r.code, 2, 'exit code 2');
    tt.match(r.stderr, new RegExp(`^qkd-tls ${what}: --psk #2 is 15 bytes: ${RULE}\\n$`), 'one line naming the key and the rule');
    tt.notMatch(r.stdout, /listening/, 'nothing started');
  });
}

t.test('a --psk-file line with a key under 16 bytes is a usage error', async (tt) => {
  const dir = mkdtempSync(join(tmpdir(), 'qkd-psk-length-'));
  tt.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'keys');
  writeFileSync(file, `good ${'ab'.repeat(32)}\ntiny 0102\n`, { mode: 0o600 });
  const r = await runQkdTls(['server', '--listen', '127.0.0.1:0', '--psk-file', file], { ms: EXITS_WITHIN_MS });
  tt.equal(r.code, 2, 'exit code 2');
  tt.match(r.stderr, new RegExp(`^qkd-tls server: --psk-file: the key of 'tiny' is 2 bytes: ${RULE}\\n$`));
});

t.test("a proxy config file's psk under 16 bytes is reported at its line", async (tt) => {
  const dir = mkdtempSync(join(tmpdir(), 'qkd-psk-length-'));
  tt.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'p.conf');
  writeFileSync(file, ['[in]', 'role = client', 'accept = 127.0.0.1:0', 'connect = 127.0.0.1:9', `psk = ${SHORT}`, 'identity = k1'].join('\n'), { mode: 0o600 });
  const r = await runQkdTls(['proxy', '--config', file], { ms: EXITS_WITHIN_MS });
  tt.equal(r.code, 2, 'exit code 2');
  tt.match(r.stderr, new RegExp(`p\\.conf:5: \\[in\\] psk: .*is 15 bytes: ${RULE}`), 'the line of the psk field');
});
