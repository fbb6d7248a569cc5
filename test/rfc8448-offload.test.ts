/**
 * RFC 8448 §4's application records through the record offload: after the real handshake (the same replay as
 * test/rfc8448-handshake.test.ts: the RFC's randomness, NSS's extensions), the application_data records are
 * sealed and opened by WebCrypto through lib/transport/webcrypto-records.ts, and must be the RFC's bytes; the
 * close_notify records, sealed by the connection after it took its keys back, must be the RFC's too (which
 * proves the sequence number came back exact: the alert is at sequence 1 after the offloaded record at 0).
 */
import t from 'tap';
import { toHex } from '../lib/codec/bytes.js';
import { ExtensionType } from '../lib/codec/enums.js';
import { Connection } from '../lib/connection/connection.js';
import type { ConnectionEvent } from '../lib/config/events.js';
import { createNobleProvider } from '../lib/crypto/noble.js';
import type { Psk } from '../lib/psk/types.js';
import { WebCryptoRecords } from '../lib/transport/webcrypto-records.js';
import {
  clientAlertRecord,
  clientAppStep,
  clientHello,
  clientPrivate,
  clientRandom,
  nssClientHelloExtensions,
  resumptionFromSection3,
  rfcEncryptedExtensions,
  scripted,
  serverAlertRecord,
  serverAppStep,
  serverPrivate,
  serverRandom,
} from './helpers/rfc8448-section4.js';
import { step, value } from '../vectors/rfc8448.js';

const hex = toHex;

/** A WebCrypto pipeline whose output is collected, not sent anywhere. */
function offloaded(conn: Connection) {
  const sent: Uint8Array[] = [];
  const data: Uint8Array[] = [];
  const events: ConnectionEvent[] = [];
  const collect = () => {
    for (const e of conn.takeEvents()) {
      events.push(e);
      if (e.type === 'data') data.push(e.data);
    }
  };
  const records = new WebCryptoRecords(conn, {
    send: async (b) => void sent.push(b),
    deliver: (d) => data.push(d),
    afterCore: collect,
  });
  const take = () => hex(Uint8Array.from(sent.splice(0).flatMap((b) => [...b])));
  return { records, data, events, collect, take };
}

t.test("RFC 8448 §4's application and close_notify records through the WebCrypto offload", async (t) => {
  const clientCrypto = createNobleProvider({ random: scripted('client', [clientRandom, clientPrivate]) });
  const serverCrypto = createNobleProvider({ random: scripted('server', [serverRandom, serverPrivate]) });
  const { identity, secret } = resumptionFromSection3(clientCrypto);
  const psk = (): Psk => ({
    identity: identity.slice(),
    secret: secret.slice(),
    hash: 'SHA-256',
    binderKind: 'resumption',
    obfuscatedTicketAge: clientHello.psks!.identities[0].obfuscatedTicketAge,
  });
  const client = Connection.client({
    crypto: clientCrypto,
    psks: [psk()],
    serverName: 'server',
    middleboxCompatibility: false,
    earlyData: value(step('4', 'client', 'send application_data record', 0), 'payload'),
    recordSizeLimit: 16385,
    dangerousClientHelloExtensions: nssClientHelloExtensions,
  });
  const server = Connection.server({
    crypto: serverCrypto,
    psks: [psk()],
    maxEarlyDataSize: 16384,
    // The RFC 8448 trace's ClientHello is the same in every run, and replayed here on purpose (RFC 8446 §8).
    dangerouslyAcceptReplayedEarlyData: true,
    recordSizeLimit: 16385,
    dangerousEncryptedExtensions: (list) => [
      { type: ExtensionType.supported_groups, data: rfcEncryptedExtensions.extensions.get(ExtensionType.supported_groups)! },
      ...list,
    ],
  });
  // The handshake, on the connections' own path (nothing is offloaded before it completes).
  server.receive(client.takeOutput()!);
  client.receive(server.takeOutput()!);
  server.receive(client.takeOutput()!);
  t.equal(client.phase, 'connected');
  t.equal(server.phase, 'connected');
  t.equal(server.takeOutput(), null);
  client.takeEvents();
  server.takeEvents();

  const c = offloaded(client);
  const s = offloaded(server);

  await c.records.write(value(clientAppStep, 'payload'));
  await c.records.drained();
  t.equal(c.take(), hex(value(clientAppStep, 'complete record')), "the client's offloaded record is the RFC's (sequence 0)");
  t.equal(c.records.offloadedWrites, 1, 'sealed by WebCrypto');

  s.records.receive(value(clientAppStep, 'complete record'));
  await s.records.readDrained();
  s.collect();
  t.same(s.data.map(hex), [hex(value(clientAppStep, 'payload'))], "the server's offload opens the RFC's client record");
  t.equal(s.records.offloadedReads, 1, 'opened by WebCrypto');

  await s.records.write(value(serverAppStep, 'payload'));
  await s.records.drained();
  t.equal(s.take(), hex(value(serverAppStep, 'complete record')), "the server's offloaded record is the RFC's");

  c.records.receive(value(serverAppStep, 'complete record'));
  await c.records.readDrained();
  c.collect();
  t.same(c.data.map(hex), [hex(value(serverAppStep, 'payload'))], "the client's offload opens the RFC's server record");

  // close_notify: the connection takes its write key back at sequence 1 and seals the alert itself.
  client.close();
  c.records.flushCore();
  await c.records.drained();
  t.equal(c.take(), hex(clientAlertRecord), "the client's close_notify after the offloaded record is the RFC's (sequence 1)");
  s.records.receive(clientAlertRecord);
  await s.records.readDrained();
  s.collect();
  t.same(s.events.map((e) => e.type), ['end'], 'the offload hands the alert back; the server sees the end of the client stream');
  server.close();
  s.records.flushCore();
  await s.records.drained();
  t.equal(s.take(), hex(serverAlertRecord), "the server's close_notify is the RFC's");
  c.records.receive(serverAlertRecord);
  await c.records.readDrained();
  c.collect();
  t.same(c.events.map((e) => e.type), ['end']);
  t.equal(client.phase, 'closed');
  t.equal(server.phase, 'closed');
});
