/**
 * Claims of the API docs that a user relies on and no other test pins down.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { nobleProvider } from '../lib/crypto/noble.js';
import { decodeKeyIdIdentity, encodeKeyIdIdentity } from '../lib/psk/key-id.js';
import type { PskRequest } from '../lib/psk/types.js';
import { Etsi014Client } from '../lib/qkd/etsi014-client.js';
import { Etsi014ClientSource } from '../lib/qkd/etsi014-source.js';
import { TRANSPORT_ERROR_CODES } from '../lib/errors.js';
import { handshake, makePsk } from './helpers/pair.js';
import { EXITS_WITHIN_MS, runQkdTls } from './helpers/peers.js';
import { ROOT } from './helpers/runtimes.js';

const crypto = nobleProvider;

t.test('PskRequest.identities: a server looks up the first 16 offered identities, and no more', async (t) => {
  // A bound on what one ClientHello can make a server ask its key manager for; the rest count as unknown.
  const psks = Array.from({ length: 20 }, (_, i) => makePsk(`offered-${i}`));
  const requests: PskRequest[] = [];
  const lookUp = (known: number) => (request: PskRequest) => {
    requests.push(request);
    return request.identities.map((id) => psks.slice(known).find((p) => p.identity.every((b, i) => b === id[i]) && p.identity.length === id.length));
  };
  let p = handshake({ crypto, psks }, { crypto, psks: lookUp(15) });
  t.equal(requests[0].identities.length, 16, 'the lookup is given the first 16 identities');
  t.equal(p.info('server')?.identity, 'offered-15', 'the 16th identity is found');
  p = handshake({ crypto, psks }, { crypto, psks: lookUp(16) });
  t.equal(requests[1].identities.length, 16, 'again the first 16');
  t.equal(p.error('server')?.alert, 'unknown_psk_identity', 'a key known only as the 17th identity or later is not found');
});

t.test('encodeKeyIdIdentity refuses an identity that decodeKeyIdIdentity would not read back (over 1024 bytes)', async (t) => {
  const keyId = '550e8400-e29b-41d4-a716-446655440000';
  const longest = 'a'.repeat(1024 - 37);
  t.same(decodeKeyIdIdentity(encodeKeyIdIdentity({ keyId, saeId: longest })), { keyId, saeId: longest }, 'the longest SAE ID round-trips');
  t.throws(() => encodeKeyIdIdentity({ keyId, saeId: longest + 'a' }), TypeError, 'one more character is a TypeError');
  // Etsi014ClientSource checks its SAE ID with it when made, not on each handshake (which the server would refuse).
  t.throws(
    () => new Etsi014ClientSource({ client: new Etsi014Client({ baseUrl: 'http://127.0.0.1:9' }), peerSaeId: 'server-sae', saeId: longest + 'a' }),
    TypeError,
    'Etsi014ClientSource refuses that SAE ID when made',
  );
});

/** The .ts files under `dir`, recursively. */
function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? sources(join(dir, e.name)) : e.name.endsWith('.ts') ? [join(dir, e.name)] : [],
  );
}

t.test("the README's table of TransportError codes is TRANSPORT_ERROR_CODES, and each code is thrown somewhere in lib/", async (t) => {
  // A user switches on these codes (lib/errors.ts): the table must list each one, and only those.
  const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
  const table = readme.slice(readme.indexOf('| `code` | what happened |'), readme.indexOf('Their messages stay as they were'));
  t.ok(table.length > 0, "the README's table is found");
  const listed = [...table.matchAll(/^\| `([A-Z_]+)` \|/gm)].map((m) => m[1]);
  t.same(listed.slice().sort(), Object.keys(TRANSPORT_ERROR_CODES).sort(), 'the same codes');
  const code = sources(join(ROOT, 'lib'))
    .filter((f) => !f.endsWith(join('lib', 'errors.ts')))
    .map((f) => readFileSync(f, 'utf8'))
    .join('\n');
  for (const c of Object.keys(TRANSPORT_ERROR_CODES)) t.ok(code.includes(`new TransportError('${c}'`), `${c} is thrown in lib/`);
});

t.test('every callback the library treats as an observer is named where the rule is told (lib/callbacks.ts, README)', async (t) => {
  // observer('name', ...) wraps a callback so that what it throws changes nothing; a user who reads the rule must
  // find each such callback in its list (onRefused, added to the WebSocket listener, was in neither).
  const names = new Set(sources(join(ROOT, 'lib')).flatMap((f) => [...readFileSync(f, 'utf8').matchAll(/\bobserver\('([A-Za-z]+)'/g)].map((m) => m[1])));
  t.ok(names.has('onRefused') && names.has('onConnection'), 'the scan finds the observers');
  const rule = readFileSync(join(ROOT, 'lib', 'callbacks.ts'), 'utf8').split('**Callbacks the protocol depends on**')[0];
  const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
  const paragraph = readme.slice(readme.indexOf('Your callbacks and what happens when they throw'), readme.indexOf('A callback the handshake depends on'));
  t.ok(paragraph.length > 0, "the README's paragraph on callbacks is found");
  for (const name of [...names].sort()) {
    t.ok(rule.includes(`\`${name}\``), `lib/callbacks.ts lists \`${name}\` among the observers`);
    t.ok(paragraph.includes(`\`${name}\``), `README lists \`${name}\` among the observers`);
  }
});

t.test('server --help and proxy --help say what a "refused" line is (a WebSocket upgrade refused for its origin)', async (t) => {
  // The page sees only a failed WebSocket; the line the command prints is where the reason shows
  // (test/library-walkthrough.test.ts checks that the line is printed).
  for (const command of ['server', 'proxy']) {
    const help = await runQkdTls([command, '--help'], { ms: EXITS_WITHIN_MS });
    t.equal(help.code, 0, `${command} --help: exit code 0`);
    t.match(help.stdout, /With --websocket, [^]*an upgrade refused before it happened \(a page from\s+an origin that --origin\s+does not allow: 403\) is a "refused" line/, `${command} --help: the refused line`);
  }
});

/** The rows of a `## TITLE` table of bench/RESULTS.md (the table after that heading), as arrays of cells. */
function resultsTable(results: string, heading: string): string[][] {
  const at = results.indexOf(heading);
  if (at < 0) return [];
  const lines = results.slice(at).split('\n');
  const start = lines.findIndex((l) => l.startsWith('|'));
  const rows: string[][] = [];
  for (const line of lines.slice(start)) {
    if (!line.startsWith('|')) break;
    rows.push(line.split('|').slice(1, -1).map((c) => c.trim()));
  }
  return rows.slice(2); // the header and its rule
}

/** A number of bench/RESULTS.md ("1,124", "0.96x") as a number. */
const num = (cell: string | undefined): number => Number((cell ?? 'NaN').replace(/,/g, '').replace(/x$/, ''));
/** As the README writes a figure: a ratio with two decimals, a rate rounded with thousands separators. */
const ratio = (x: number): string => `${x.toFixed(2)}×`;
const whole = (x: number): string => Math.round(x).toLocaleString('en-US');

t.test("the README's figures that it says come from bench/RESULTS.md are that file's", async (t) => {
  // The paragraph on the record offload kept the figures of an earlier run (9–22×, 253–690 MB/s, 0.47–0.72× of the
  // ceiling) after RESULTS.md was re-measured (found in a README walkthrough).
  const readme = readFileSync(join(ROOT, 'README.md'), 'utf8').replace(/\s*\n\s*/g, ' ');
  const results = readFileSync(join(ROOT, 'bench', 'RESULTS.md'), 'utf8');
  const cell = (heading: string, measurement: string, provider = 'node'): number =>
    num(resultsTable(results, heading).find((r) => r[0].startsWith(measurement) && r[1] === provider)?.[4]);
  const hs = (m: string) => ratio(cell('## Handshakes (', m));
  const table: [string, string][] = [
    ['handshakes/s, psk_ke, sequential / 16 concurrent', `${hs('psk_ke, sequential')} / ${hs('psk_ke, 16 concurrent')}`],
    ['handshakes/s, psk_dhe_ke x25519', `${hs('psk_dhe_ke x25519, sequential')} / ${hs('psk_dhe_ke x25519, 16 concurrent')}`],
    ['handshakes/s, psk_dhe_ke secp256r1', `${hs('psk_dhe_ke secp256r1, sequential')} / ${hs('psk_dhe_ke secp256r1, 16 concurrent')}`],
    [
      `handshakes/s, psk_dhe_ke X25519MLKEM768, against Node 24's own (${/Node v24[^|]*\((OpenSSL [^)]*)\)/.exec(results)?.[1]})`,
      `${ratio(cell('## Hybrid (', 'psk_dhe_ke X25519MLKEM768, sequential'))} (ML-KEM runs in JavaScript)`,
    ],
    [
      'bulk MB/s on one connection, AES-128-GCM / ChaCha20 / AES-256-GCM',
      ['TLS_AES_128_GCM_SHA256', 'TLS_CHACHA20_POLY1305_SHA256', 'TLS_AES_256_GCM_SHA384'].map((s) => ratio(cell('## Bulk (', `${s}, one connection`))).join(' / '),
    ],
    [
      'CPU per 16 KiB record, sender / receiver (AES-128-GCM; lower is better)',
      `${ratio(cell('## Bulk CPU', 'TLS_AES_128_GCM_SHA256, sender'))} / ${ratio(cell('## Bulk CPU', 'TLS_AES_128_GCM_SHA256, receiver'))}`,
    ],
    ['RSS per idle connection (1,000 open)', `${ratio(cell('## Memory', 'RSS per idle connection'))} (less memory)`],
  ];
  for (const [label, figures] of table) t.ok(readme.includes(`| ${label} | ${figures} |`), `Performance table: | ${label} | ${figures} |`);

  // The runtimes section: | runtime | suite | offload | cipher | in flight | MB/s | ceiling | ratio | no TLS (ratio) |
  const bulk = resultsTable(results, '## Record offload in other runtimes');
  const row = (runtime: string, offload: 'yes' | 'no') => bulk.find((r) => r[0] === runtime && r[1] === 'TLS_AES_128_GCM_SHA256' && r[2] === offload) ?? [];
  const offloaded = (runtime: string) => ratio(num(row(runtime, 'yes')[7]));
  const noTls = (runtime: string) => ratio(num(/\(([\d.]+)\)/.exec(row(runtime, 'yes')[8] ?? '')?.[1]));
  t.ok(
    readme.includes(`${['deno', 'chromium', 'bun', 'workerd'].map(offloaded).join(', ').replace(/, (?=[^,]*$)/, ' and ')} in the latest`),
    'Performance: the latest offloaded ratios of Deno, Chromium, Bun and workerd',
  );
  t.ok(readme.includes(`; ${['chromium', 'bun', 'workerd'].map(noTls).join(', ')} in the latest)`), 'Performance: the latest no-TLS ratios of Chromium, Bun and workerd');
  const range = (xs: number[], f: (x: number) => string) => `${f(Math.min(...xs))}–${f(Math.max(...xs))}`;
  // The TLS transfer against the no-TLS one of the same run, in every runtime measured.
  const overNoTls = bulk.filter((r) => r[1] === 'TLS_AES_128_GCM_SHA256' && r[2] === 'yes').map((r) => num(r[5]) / num(/^([\d.]+)/.exec(r[8] ?? '')?.[1]));
  t.ok(readme.includes(`runs at 0.78–1.05× of it (${range(overNoTls, (x) => x.toFixed(2))}× in the latest)`), 'Performance: the TLS transfer against the no-TLS one, latest run');
  const noble = ['chromium', 'deno', 'workerd'].filter((r) => row(r, 'no')[3] === 'noble');
  t.same(noble, ['chromium', 'deno', 'workerd'], 'Chromium, Deno and workerd have a pure-JavaScript row');
  const speedups = noble.map((r) => num(row(r, 'yes')[5]) / num(row(r, 'no')[5]));
  const mbps = noble.map((r) => num(row(r, 'yes')[5]));
  const ofCeiling = ['chromium', 'deno', 'bun', 'workerd'].map((r) => num(row(r, 'yes')[7]));
  const streams = `in Chromium, Deno and workerd that is ${range(speedups, (x) => String(Math.round(x)))}× the bulk throughput of the pure-JavaScript cipher in the latest run (${range(mbps, whole)} MB/s; ${whole(num(row('bun', 'yes')[5]))} in Bun), and there and in Bun ${range(ofCeiling, (x) => x.toFixed(2))}×`;
  t.ok(readme.includes(streams), `Using the library: "${streams}"`);

  // Native key exchange: | runtime | handshakes/s | provider | key shares |
  const handshakes = resultsTable(results, 'Handshakes: "key shares"');
  const rate = (runtime: string, shares: string) => num(handshakes.find((r) => r[0] === runtime && r[3] === shares)?.[1]);
  const pairs = ['chromium', 'deno', 'workerd'].map((r) => [rate(r, 'noble'), rate(r, 'webcrypto')]);
  const native = `from ${whole(pairs[0][0])} to ${whole(pairs[0][1])} in Chromium, ${whole(pairs[1][0])} to ${whole(pairs[1][1])} in Deno and ${whole(pairs[2][0])} to ${whole(pairs[2][1])} in workerd (${pairs.map(([a, b]) => ratio(b / a)).join(', ').replace(/, (?=[^,]*$)/, ' and ')};`;
  t.ok(readme.includes(native), `Native key exchange: "${native}"`);
  const bun = `${whole(rate('bun', 'node'))} handshakes/s, against ${whole(rate('bun', 'webcrypto'))} with WebCrypto key shares`;
  t.ok(readme.includes(bun), `Native key exchange, Bun: "${bun}"`);
});

t.test('bench --help describes every section that --only takes', async (t) => {
  // The hybrid section (X25519MLKEM768 against Node 24, the README's post-quantum row) was in --only's list only.
  const help = await runQkdTls(['bench', '--help'], { ms: EXITS_WITHIN_MS });
  t.equal(help.code, 0, 'exit code 0');
  const sections = /--only LIST\s+only these sections, comma-separated: (.*)/.exec(help.stdout)?.[1].split(', ') ?? [];
  t.ok(sections.length >= 6, '--only names its sections', { sections });
  const described = help.stdout.slice(0, help.stdout.indexOf('\noptions:'));
  for (const section of sections) t.match(described, new RegExp(`^  ${section} +\\S`, 'm'), `the section "${section}" is described`);
});
