/**
 * `qkd-tls demo --network`: TLS across a simulated QKD network of four nodes; an eavesdropper, rerouting,
 * failing closed; a picture of the network. It explains each step, writes the SVG, and exits 0 by itself.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { runQkdTls } from './helpers/peers.js';

const demo = (args: string[]) => runQkdTls(['demo', ...args]);

const UUID = '[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}';

t.test('the network demo runs end to end, explains each step, writes the picture, and exits 0', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'qkd-net-demo-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const svgFile = join(dir, 'network.svg');
  const r = await demo(['--network', '--svg', svgFile]);
  t.equal(r.code, 0, `exit code 0 (stderr: ${r.stderr})`);
  t.equal(r.stderr, '', 'nothing on stderr');
  const out = r.stdout;
  // 1. The network, with the physics of each link.
  for (const n of ['A', 'B', 'C', 'D']) t.match(out, new RegExp(`node ${n}: http://127\\.0\\.0\\.1:\\d+/${n}`), `node ${n}'s KME`);
  t.match(out, /link A-B: 15 km of fibre, \d+ kbit\/s sifted, QBER 3\.\d%, secret key \d+ kbit\/s/);
  t.match(out, /link B-D: 60 km of fibre/);
  // 3. Three hops.
  t.match(out, /3\. A handshake across three hops[^\n]*\n\s+node A relayed the key over A -> B -> C -> D \(3 hops, 256 bits of link key per hop\)/);
  t.match(out, new RegExp(`the server fetched key ${UUID} from node D\\n\\s+negotiated TLSv1\\.3 TLS_AES_128_GCM_SHA256, mode psk_dhe_ke with x25519; echoed "hello across the QKD network"`));
  // 4. Eve raises the QBER over the threshold.
  t.match(out, /4\. An eavesdropper starts an intercept-resend attack on link C-D, measuring 50% of the photons/);
  const qber = /link C-D: QBER (\d+\.\d)% > threshold 11\.0%: it discards its unconfirmed key and stops serving \(state "compromised"\)/.exec(out);
  t.ok(qber, 'the QBER rise is reported');
  if (qber) t.ok(Number(qber[1]) > 11 && Number(qber[1]) < 25, `QBER ${qber[1]}% (about 3.3% + 11.7%)`);
  t.match(out, /link C-D: up -> compromised \(QBER \d+\.\d%\)/);
  // 5. The detour.
  t.match(out, /5\. The next handshake \(C-D is compromised, so the controller takes the detour\):\n\s+node A relayed the key over A -> B -> D \(2 hops/);
  t.match(out, /route client-sae -> server-sae: A -> B -> D \(was A -> B -> C -> D\)/);
  t.equal((out.match(/echoed "hello across the QKD network"/g) ?? []).length, 2, 'two handshakes with their echo');
  // The server's keys are all zeros once each handshake is over, not left to the 15 s backstop timer.
  t.equal((out.match(/\n {5}the server wiped its copy of the key as soon as the handshake was over\n/g) ?? []).length, 2, 'the server wiped each key at the end of its handshake');
  // 6. Failing closed.
  t.match(out, /6\. Now the detour B-D is cut as well/);
  t.match(out, /the client got: [^\n]*HTTP 503[^\n]*no route from node A to node D[^\n]*link C-D is compromised[^\n]*link B-D is down: the link is cut/);
  t.match(out, /node A's KME says: no route from node A to node D/);
  // 7. The state, and the relay bookkeeping.
  t.match(out, /C-D {2}compromised/);
  t.match(out, /B-D {2}down/);
  t.match(out, /relay: 1280 link-key bits spent = 1280 delivered \+ 0 waiting \+ 0 discarded/);
  t.match(out, /Done: TLS crossed three trusted nodes/);
  // The picture: the file, not this network's URL, which is gone once the demo exits (a reader opened it in vain).
  t.match(out, `   picture: ${svgFile}\n`);
  t.notMatch(out, /network\.svg while a network runs/, "no URL that stops answering when the demo exits");
  const svg = readFileSync(svgFile, 'utf8');
  t.match(svg, /^<svg xmlns="http:\/\/www\.w3\.org\/2000\/svg"/);
  t.match(svg, /<\/svg>\n$/);
  for (const n of ['A', 'B', 'C', 'D']) t.match(svg, new RegExp(`data-node="${n}"`));
  t.match(svg, /data-link="A-B" data-state="up"/);
  t.match(svg, /data-link="C-D" data-state="compromised"/);
  t.match(svg, /data-link="B-D" data-state="down"/);
  t.match(svg, /SAE client-sae/);
});

t.test('network demo options', async (t) => {
  const bad = await demo(['--svg', 'x.svg']);
  t.equal(bad.code, 2);
  t.match(bad.stderr, /--svg goes with --network/);
  const both = await demo(['--network', '--handshakes', '2']);
  t.equal(both.code, 2);
  t.match(both.stderr, /--handshakes does not go with --network/);
  // Without --svg: how to keep a picture, not the URL of a network the demo stops on exit.
  const plain = await demo(['--network']);
  t.equal(plain.code, 0);
  t.match(plain.stdout, /picture: run the demo with --svg FILE to keep one/);
  t.notMatch(plain.stdout, /picture: GET http/, 'no URL that stops answering when the demo exits');
  const help = await demo(['--help']);
  t.match(help.stdout, /--network/);
});
