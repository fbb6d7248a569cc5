/**
 * A client (or a client-role proxy) given several --peer-sae-id is a usage error found before anything runs
 * (found by review: it was only found when the first key was fetched — the client exited 1 after connecting,
 * and the proxy started and failed every connection with key-unavailable).
 */
import t from 'tap';
import { runQkdTls } from './helpers/peers.js';

const KME = ['--kme', 'http://127.0.0.1:9', '--sae-id', 'sae-a', '--peer-sae-id', 'sae-b', '--peer-sae-id', 'sae-c'];

t.test('qkd-tls client with two --peer-sae-id exits 2 with a usage message', async (tt) => {
  const r = await runQkdTls(['client', '--connect', '127.0.0.1:9', ...KME], { ms: 20_000 });
  tt.equal(r.code, 2, 'exit code 2');
  tt.match(r.stderr, /^qkd-tls client: a client takes one --peer-sae-id/m);
});

t.test('qkd-tls proxy --role client with two --peer-sae-id exits 2 with a usage message', async (tt) => {
  const r = await runQkdTls(['proxy', '--role', 'client', '--accept', '127.0.0.1:0', '--connect', '127.0.0.1:9', ...KME], { ms: 20_000 });
  tt.equal(r.code, 2, 'exit code 2');
  tt.match(r.stderr, /a client takes one --peer-sae-id/);
});
