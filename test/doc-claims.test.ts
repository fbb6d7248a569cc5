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
import { handshake, makePsk } from './helpers/pair.js';
import { runQkdTls } from './helpers/peers.js';
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
    const help = await runQkdTls([command, '--help'], { ms: 20_000 });
    t.equal(help.code, 0, `${command} --help: exit code 0`);
    t.match(help.stdout, /With --websocket, [^]*an upgrade refused before it happened \(a page from\s+an origin that --origin\s+does not allow: 403\) is a "refused" line/, `${command} --help: the refused line`);
  }
});
