/**
 * Claims of the API docs that a user relies on and no other test pins down.
 */
import t from 'tap';
import { nobleProvider } from '../lib/crypto/noble.js';
import { decodeKeyIdIdentity, encodeKeyIdIdentity } from '../lib/psk/key-id.js';
import type { PskRequest } from '../lib/psk/types.js';
import { Etsi014Client } from '../lib/qkd/etsi014-client.js';
import { Etsi014ClientSource } from '../lib/qkd/etsi014-source.js';
import { handshake, makePsk } from './helpers/pair.js';

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
