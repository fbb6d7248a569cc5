/**
 * `qkd-tls demo` (what `npm start` runs): with no arguments it runs model 1 end to end on loopback, tells a
 * newcomer what happened, and exits 0 — and it exits by itself (nothing left running).
 */
import t from 'tap';
import { runQkdTls } from './helpers/peers.js';

const demo = (args: string[]) => runQkdTls(['demo', ...args]);

const UUID = '[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}';

t.test('the demo runs end to end, explains itself, and exits 0', async (t) => {
  const r = await demo([]);
  t.equal(r.code, 0, `exit code 0 (stderr: ${r.stderr})`);
  t.equal(r.stderr, '', 'nothing on stderr');
  const out = r.stdout;
  // The key managers and the keys fetched from each.
  t.match(out, /KME-A serves the client "client-sae":\s+http:\/\/127\.0\.0\.1:\d+/);
  t.match(out, /KME-B serves the server "server-sae":\s+http:\/\/127\.0\.0\.1:\d+/);
  t.match(out, new RegExp(`fetched \\d+ keys ahead of time from KME-A[\\s\\S]*\\n\\s+${UUID}\\n`), 'the key IDs fetched from KME-A');
  // Four handshakes: suite, mode, group, identity, echo.
  const handshakes = out.match(/ {3}Handshake \d+ \(/g) ?? [];
  t.equal(handshakes.length, 4, 'four handshakes');
  t.equal((out.match(new RegExp(`the server fetched key ${UUID} from KME-B`, 'g')) ?? []).length, 4, 'the server fetched each key from KME-B');
  t.match(out, /negotiated TLSv1\.3 TLS_AES_128_GCM_SHA256, mode psk_dhe_ke with x25519 ECDHE/);
  t.match(out, /negotiated TLSv1\.3 TLS_AES_256_GCM_SHA384, mode psk_dhe_ke/);
  t.match(out, /mode psk_ke \(the QKD key alone\)/);
  t.match(out, /Handshake 4 \(the QKD key plus a post-quantum key exchange/);
  t.match(out, /negotiated TLSv1\.3 TLS_AES_128_GCM_SHA256, mode psk_dhe_ke with X25519MLKEM768, a post-quantum hybrid key exchange/);
  t.match(out, /mixes three secrets: the QKD key, an ML-KEM-768 secret/);
  t.match(out, new RegExp(`identity #\\d: client-sae/${UUID} imported for HKDF_SHA384`), 'the identity, decoded');
  t.equal((out.match(/echoed 40 bytes: "hello from the QKD-TLS demo, handshake \d"/g) ?? []).length, 4, 'four echoes');
  // The server's keys are all zeros once each handshake is over, not left to the demo's 15 s backstop timer (the
  // demo checks its leases after the echo and fails otherwise).
  t.equal((out.match(/\n {5}the server wiped its copy of the key as soon as the handshake was over\n/g) ?? []).length, 4, 'the server wiped each key at the end of its handshake');
  // Each handshake used its own key.
  const used = [...out.matchAll(new RegExp(`the client offered key (${UUID})`, 'g'))].map((m) => m[1]);
  t.equal(new Set(used).size, 4, 'four distinct keys');
  // The replay and what is left.
  t.match(out, /tls alert: unknown_psk_identity \(115\) received/);
  t.match(out, /was already used: a QKD key serves one handshake only/);
  t.match(out, /6\. Keys left\n {3}client pool: \d+ key\(s\)/);
  t.match(out, /KME-B: 4 delivered to the server/);
  t.match(out, /Done: 4 handshake\(s\)/);
});

t.test('demo options', async (t) => {
  const one = await demo(['--handshakes', '1']);
  t.equal(one.code, 0);
  t.equal((one.stdout.match(/ {3}Handshake \d+ \(/g) ?? []).length, 1);
  const bad = await demo(['--handshakes', 'many']);
  t.equal(bad.code, 2, 'a bad option is a usage error');
  t.match(bad.stderr, /--handshakes must be a whole number/);
  const help = await demo(['--help']);
  t.equal(help.code, 0);
  t.match(help.stdout, /usage: qkd-tls demo/);
  // The default the help states is the number the demo runs without --handshakes (four, tested above).
  t.match(help.stdout, /--handshakes N +how many handshakes to run \(default 4\b/, '--help states the default, 4');
});
