/**
 * A client refuses a PSK whose lease was released, as the server does (165c890): the lease's release wipes the
 * secret (all zeros now), and a ClientHello offering it would carry a binder computed under zeros (RFC 8446
 * §4.2.11.2), refused by the server with decrypt_error a round trip later. Before the fix the client built and
 * sent that ClientHello; now it fails locally (PskUnavailable, no alert: nothing was sent) and sends nothing.
 */
import { once } from 'node:events';
import { Duplex } from 'node:stream';
import t from 'tap';
import { Connection } from '../lib/connection/connection.js';
import { nobleProvider } from '../lib/crypto/noble.js';
import { TlsError } from '../lib/errors.js';
import { StaticKeySource, takePsks, type ClientKeySource } from '../lib/psk/source.js';
import { connect } from '../lib/transport/node.js';
import { handshake, makePsk } from './helpers/pair.js';

const crypto = nobleProvider;
const key = makePsk('released');

/** A Duplex that records what is written to it and never answers. */
function silentPeer(): { socket: Duplex; written: Buffer[] } {
  const written: Buffer[] = [];
  const socket = new Duplex({
    read() {},
    write(chunk: Buffer, _enc, cb) {
      written.push(chunk);
      cb();
    },
  });
  return { socket, written };
}

/** Connection.client's failure for `psks`, or undefined when it made a connection (and then its first output). */
function clientFailure(psks: Parameters<typeof Connection.client>[0]['psks']): { error?: unknown; sent?: Uint8Array | null } {
  try {
    const c = Connection.client({ crypto, psks });
    return { sent: c.takeOutput() };
  } catch (error) {
    return { error };
  }
}

t.test('a taken key offered again after its lease was released: refused locally, nothing sent', async (t) => {
  const source = new StaticKeySource([{ identity: key.identity, secret: key.secret }]);
  t.teardown(() => source.close());
  const offer = await takePsks(crypto, source);
  const first = handshake({ crypto, psks: offer.psks }, { crypto, psks: [key] });
  t.ok(first.info('client'), 'the first connection completes with the taken key');
  offer.release();
  t.ok(offer.psks[0].secret.every((b) => b === 0), 'the release wiped the key');

  const { error, sent } = clientFailure(offer.psks);
  t.equal(sent, undefined, 'no connection was made, so no ClientHello is sent');
  t.type(error, TlsError, 'a TlsError');
  const e = error as TlsError;
  t.equal(e.reason, 'PskUnavailable', 'the reason the server uses for a released key');
  t.equal(e.alertSent, false, 'no alert: nothing was sent, there is no peer to alert');
  t.equal(e.remote, false, 'detected locally');
  t.match(e.message, /not sent: client: a PSK offered was already wiped: its lease was released/, 'says what happened');
  t.match(e.message, /take a fresh one \(takePsks\) for each connection/, 'and what to do');
});

t.test('a lease released before its connection is made (RFC 9258 imported keys too): refused', async (t) => {
  const source = new StaticKeySource([{ identity: key.identity, secret: key.secret, label: 'key-7' }]);
  t.teardown(() => source.close());
  const plain = await takePsks(crypto, source);
  const imported = await takePsks(crypto, source, { importer: { context: 'ctx', targetKdfs: ['HKDF_SHA256'] } });
  plain.release();
  imported.release();
  for (const [name, offer] of [['plain', plain], ['imported', imported]] as const) {
    const { error } = clientFailure(offer.psks);
    t.match(error, { name: 'TlsError', reason: 'PskUnavailable', alertSent: false }, `${name}: refused`);
  }
  t.match((clientFailure(plain.psks).error as Error).message, /a PSK offered \(key-7\) was already wiped/, 'the key is named by its label');
  // One released key among good ones fails the whole connection: a caller that mixes them up has a bug to see.
  const fresh = await takePsks(crypto, source);
  t.teardown(() => fresh.release());
  t.match(clientFailure([...fresh.psks, ...plain.psks]).error, { reason: 'PskUnavailable' }, 'a released key among fresh ones: refused');
  t.ok(clientFailure(fresh.psks).sent, 'the fresh key alone: a ClientHello');
});

t.test('qkd-tls/node connect: the socket ends with the error, not a byte written', async (t) => {
  const source = new StaticKeySource([{ identity: key.identity, secret: key.secret }]);
  t.teardown(() => source.close());
  const offer = await takePsks(crypto, source);
  offer.release();
  const { socket, written } = silentPeer();
  const tls = connect({ socket, psks: offer.psks, crypto });
  const [error] = (await once(tls, 'error')) as [TlsError];
  t.match(error, { reason: 'PskUnavailable', alertSent: false }, 'the error event carries the local failure');
  t.same(written, [], 'nothing reached the socket');
});

t.test('the caller\'s own PSKs, on one connection after another: never wiped by a connection, never refused', async (t) => {
  // The other way a client's secret could turn to zeros: a connection wiping the caller's buffer when it ends.
  // It works on copies of its own (ownPsks) and wipes only those, after success, failure or destroy().
  const own = [makePsk('released', 'SHA-256', key.secret.slice())];
  const ok = handshake({ crypto, psks: own }, { crypto, psks: [key] });
  t.ok(ok.info('client'), 'connection 1 completes');
  ok.client.destroy();
  const failed = handshake({ crypto, psks: own }, { crypto, psks: [makePsk('released')] });
  t.ok(failed.error('client'), 'connection 2 fails (the server holds another key)');
  Connection.client({ crypto, psks: own }).destroy();
  t.ok(own[0].secret.some((b) => b !== 0), 'the caller\'s key is untouched');
  t.ok(handshake({ crypto, psks: own }, { crypto, psks: [key] }).info('client'), 'and still completes a handshake');
});

t.test('a key source that hands out the same buffer again, refilled with a new key: the new key is used', async (t) => {
  // The refusal is for a wiped secret. A source may recycle its buffers (a fixed pool, to keep key material out of
  // the garbage-collected heap): once a lease is released and the buffer refilled with the next key, that buffer
  // holds a fresh key, not zeros, and a connection offering it must go ahead.
  const buffer = new Uint8Array(32);
  const keys = [makePsk('recycled-1'), makePsk('recycled-2')];
  let next = 0;
  const recycling: ClientKeySource = {
    description: 'one recycled buffer',
    async take() {
      const k = keys[next++];
      buffer.set(k.secret);
      return [{ identity: k.identity, secret: buffer }];
    },
    close() {},
  };
  for (const k of keys) {
    const offer = await takePsks(crypto, recycling);
    t.equal(offer.psks[0].secret, buffer, 'the source handed out its one buffer');
    const { error } = clientFailure(offer.psks);
    t.equal(error, undefined, `${new TextDecoder().decode(k.identity)}: not refused`);
    t.ok(handshake({ crypto, psks: offer.psks }, { crypto, psks: [k] }).info('client'), 'and the handshake completes');
    offer.release();
    t.ok(buffer.every((b) => b === 0), 'the release wiped the buffer');
  }
});
