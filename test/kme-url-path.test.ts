/**
 * A KME's base URL may have a path: each node of `qkd-tls kme --topology` is `http://H:P/NODE`, and the ETSI
 * client keeps it. The key source's description (the `keys=` of a server's or proxy's listening line) showed only
 * the origin, so `--kme http://H:P/C` was reported as `http://H:P`, as if the node had been dropped (found in a
 * README walkthrough).
 */
import t from 'tap';
import { Etsi014Client } from '../lib/qkd/etsi014-client.js';
import { Etsi014ClientSource, Etsi014ServerSource } from '../lib/qkd/etsi014-source.js';
import { jsonEvent, spawnQkdTls } from './helpers/peers.js';
import { WAIT } from './helpers/runtimes.js';

t.test("qkd-tls server's listening line names the KME with its path", async (t) => {
  // Nothing listens on port 9: the server asks its KME only when a client connects.
  const server = spawnQkdTls(t, ['server', '--listen', '127.0.0.1:0', '--json', '--kme', 'http://127.0.0.1:9/C/', '--sae-id', 'server-sae', '--peer-sae-id', 'client-sae']);
  const listening = jsonEvent(await server.waitFor(/"event":"listening"/, WAIT, 'stderr'), 'listening');
  t.match(String(listening?.keys), /^QKD keys from http:\/\/127\.0\.0\.1:9\/C \(/, 'keys: the base URL with its path');
});

t.test('the ETSI 014 key sources describe the KME with its path', async (t) => {
  const client = new Etsi014Client({ baseUrl: 'http://127.0.0.1:9/A', saeId: 'client-sae' });
  t.teardown(() => client.close());
  const server = new Etsi014ServerSource({ client, peerSaeIds: ['client-sae'] });
  t.match(server.description, /^QKD keys from http:\/\/127\.0\.0\.1:9\/A \(/);
  const source = new Etsi014ClientSource({ client, saeId: 'client-sae', peerSaeId: 'server-sae', poolSize: 0 });
  t.teardown(() => source.close());
  t.match(source.description, /^QKD keys from http:\/\/127\.0\.0\.1:9\/A \(/);
  // A base URL without a path is shown as before.
  const plain = new Etsi014ServerSource({ client: new Etsi014Client({ baseUrl: 'http://127.0.0.1:9', saeId: 's' }), peerSaeIds: ['c'] });
  t.match(plain.description, /^QKD keys from http:\/\/127\.0\.0\.1:9 \(/);
});
