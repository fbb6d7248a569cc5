/**
 * RFC 8448 §4 (resumed 0-RTT handshake) replayed through the real state machines: Connection.client and
 * Connection.server, given the RFC's randomness (client random, server random, the two x25519 private keys),
 * must put on the wire exactly the records the RFC prints, accept the 0-RTT data, derive the RFC's
 * application traffic secrets, and read each other's (the RFC's) application data, then close_notify.
 *
 * The PSK is the §3 resumption PSK (HKDF-Expand-Label(resumption_master_secret, "resumption", ticket_nonce)),
 * recomputed here from the RFC's §3 values; the identity is the ticket of §3's NewSessionTicket.
 * The ClientHello extensions that NSS (which made the traces) sends and this stack does not
 * (renegotiation_info, its longer supported_groups, signature_algorithms, padding) are added with the
 * `dangerousClientHelloExtensions` hook, taken from the RFC's ClientHello bytes; likewise the server's
 * supported_groups in EncryptedExtensions.
 */
import t from 'tap';
import { concat, toHex, utf8 } from '../lib/codec/bytes.js';
import { ExtensionType } from '../lib/codec/enums.js';
import { Connection } from '../lib/connection/connection.js';
import type { ConnectionEvent } from '../lib/config/events.js';
import { createNobleProvider, nobleProvider } from '../lib/crypto/noble.js';
import { createNodeProvider } from '../lib/crypto/node.js';
import type { CryptoProvider, RandomSource } from '../lib/crypto/provider.js';
import type { Psk } from '../lib/psk/types.js';
import { step, value } from '../vectors/rfc8448.js';
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

// ---- the RFC's inputs ------------------------------------------------------------------------------------

const hex = toHex;
type Tap = Pick<typeof t, 'equal'>;
const chRecord = value(step('4', 'client', 'send handshake record', 0), 'complete record');
const earlyRecord = value(step('4', 'client', 'send application_data record', 0), 'complete record');
const earlyPayload = value(step('4', 'client', 'send application_data record', 0), 'payload');
const shRecord = value(step('4', 'server', 'send handshake record', 0), 'complete record');
const serverFlightRecord = value(step('4', 'server', 'send handshake record', 1), 'complete record');
const eoedRecord = value(step('4', 'client', 'send handshake record', 1), 'complete record');
const clientFinishedRecord = value(step('4', 'client', 'send handshake record', 2), 'complete record');

const secretOf = (label: string) => hex(value(step('4', 'server', `derive secret "tls13 ${label}"`), 'expanded'));
const earlySecretHex = hex(value(step('4', 'client', 'derive secret "tls13 c e traffic"'), 'expanded'));

function keyLogger(t: Tap): { lines: Map<string, string>; log: (line: string) => void } {
  const lines = new Map<string, string>();
  return {
    lines,
    log: (line) => {
      const [label, random, secret] = line.split(' ');
      t.equal(random, hex(clientRandom), `${label} is logged under the client random`);
      lines.set(label, secret);
    },
  };
}

const events = (c: Connection): ConnectionEvent[] => c.takeEvents();
/** Everything the connection has to send (takeOutput gives null when there is nothing). */
const output = (c: Connection): Uint8Array => c.takeOutput() ?? new Uint8Array(0);
const ofType = <T extends ConnectionEvent['type']>(list: ConnectionEvent[], type: T) =>
  list.filter((e): e is Extract<ConnectionEvent, { type: T }> => e.type === type);

// ---- the replay ----------------------------------------------------------------------------------------------

const PROVIDERS: { name: string; make: (random: RandomSource) => CryptoProvider }[] = [
  { name: 'noble', make: (random) => createNobleProvider({ random }) },
  { name: 'node', make: (random) => createNodeProvider({ random }) },
];

t.test('the §3 NewSessionTicket and the §4 ClientHello name the same ticket', async (t) => {
  const { identity, secret } = resumptionFromSection3(nobleProvider);
  t.equal(clientHello.psks?.identities.length, 1);
  t.equal(hex(clientHello.psks!.identities[0].identity), hex(identity));
  // The §4 early secret printed by the RFC is HKDF-Extract(0, this PSK).
  const ikm = value(step('4', 'client', 'extract secret "early"'), 'IKM');
  t.equal(hex(secret), hex(ikm), 'the PSK recomputed from §3 is the IKM of §4');
  t.equal(clientHello.sessionId.length, 0, '§4 uses an empty legacy_session_id (no middlebox compatibility)');
});

for (const provider of PROVIDERS) {
  t.test(`RFC 8448 §4 through Connection.client and Connection.server (${provider.name})`, async (t) => {
    const clientSource = scripted('client', [clientRandom, clientPrivate]);
    const serverSource = scripted('server', [serverRandom, serverPrivate]);
    const clientCrypto = provider.make(clientSource);
    const serverCrypto = provider.make(serverSource);
    const { identity, secret } = resumptionFromSection3(clientCrypto);
    const psk = (): Psk => ({
      identity: identity.slice(),
      secret: secret.slice(),
      hash: 'SHA-256',
      binderKind: 'resumption',
      obfuscatedTicketAge: clientHello.psks!.identities[0].obfuscatedTicketAge,
    });
    const clientLog = keyLogger(t);
    const serverLog = keyLogger(t);

    const client = Connection.client({
      crypto: clientCrypto,
      psks: [psk()],
      serverName: 'server',
      middleboxCompatibility: false,
      earlyData: earlyPayload,
      recordSizeLimit: 16385,
      dangerousClientHelloExtensions: nssClientHelloExtensions,
      keyLog: clientLog.log,
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
      keyLog: serverLog.log,
    });

    // Flight 1: ClientHello record, then the 0-RTT application_data record.
    const flight1 = output(client);
    t.equal(hex(flight1.subarray(0, chRecord.length)), hex(chRecord), 'the ClientHello record is byte-identical to the RFC');
    t.equal(hex(flight1.subarray(chRecord.length)), hex(earlyRecord), 'then the 0-RTT record is byte-identical to the RFC');
    t.equal(clientSource.remaining(), 0, 'the client drew exactly the client random and its x25519 key');

    // Flight 2: the server reads both, accepts the 0-RTT data and answers.
    server.receive(flight1);
    const serverEvents1 = events(server);
    t.same(ofType(serverEvents1, 'error'), [], 'no server error');
    const early = ofType(serverEvents1, 'data');
    t.equal(early.length, 1, 'the server delivers the 0-RTT data');
    t.equal(early[0]?.early, true, 'marked as early data');
    t.equal(hex(early[0]?.data ?? new Uint8Array(0)), hex(earlyPayload), 'the RFC 0-RTT payload');
    const flight2 = output(server);
    t.equal(hex(flight2), hex(concat(shRecord, serverFlightRecord)), "the server's flight is the RFC's ServerHello record + EE/Finished record");
    t.equal(serverSource.remaining(), 0, 'the server drew exactly its random and its x25519 key');

    // Flight 3: EndOfEarlyData (early keys) and Finished (handshake keys).
    client.receive(flight2);
    const clientEvents = events(client);
    t.same(ofType(clientEvents, 'error'), [], 'no client error');
    t.same(ofType(clientEvents, 'early-data').map((e) => e.status), ['accepted'], 'the client learns that its 0-RTT data was accepted');
    const clientHandshake = ofType(clientEvents, 'handshake');
    t.equal(clientHandshake.length, 1, 'the client completes');
    const flight3 = output(client);
    t.equal(hex(flight3), hex(concat(eoedRecord, clientFinishedRecord)), "the client's EndOfEarlyData and Finished records are the RFC's");

    server.receive(flight3);
    const serverEvents2 = events(server);
    t.same(ofType(serverEvents2, 'error'), [], 'no server error');
    const serverHandshake = ofType(serverEvents2, 'handshake');
    t.equal(serverHandshake.length, 1, 'the server completes');
    t.equal(output(server).length, 0, 'the server sends nothing more (no NewSessionTicket)');

    for (const [side, info] of [['client', clientHandshake[0]?.info], ['server', serverHandshake[0]?.info]] as const) {
      t.match(info, { suite: 'TLS_AES_128_GCM_SHA256', kex: 'psk_dhe_ke', group: 'x25519', earlyData: 'accepted', identityIndex: 0, helloRetry: false }, `${side} handshake summary`);
    }
    t.equal(serverHandshake[0]?.info.serverName, 'server');

    // Secrets, as the key log reports them on each side.
    for (const [side, log] of [['client', clientLog], ['server', serverLog]] as const) {
      t.equal(log.lines.get('CLIENT_EARLY_TRAFFIC_SECRET'), earlySecretHex, `${side}: client_early_traffic_secret`);
      t.equal(log.lines.get('EARLY_EXPORTER_SECRET'), hex(value(step('4', 'client', 'derive secret "tls13 e exp master"'), 'expanded')), `${side}: early exporter`);
      t.equal(log.lines.get('CLIENT_HANDSHAKE_TRAFFIC_SECRET'), secretOf('c hs traffic'), `${side}: client handshake traffic secret`);
      t.equal(log.lines.get('SERVER_HANDSHAKE_TRAFFIC_SECRET'), secretOf('s hs traffic'), `${side}: server handshake traffic secret`);
      t.equal(log.lines.get('CLIENT_TRAFFIC_SECRET_0'), secretOf('c ap traffic'), `${side}: client application traffic secret`);
      t.equal(log.lines.get('SERVER_TRAFFIC_SECRET_0'), secretOf('s ap traffic'), `${side}: server application traffic secret`);
      t.equal(log.lines.get('EXPORTER_SECRET'), secretOf('exp master'), `${side}: exporter master secret`);
    }

    // Application data: writing the RFC's payload produces the RFC's record, and the RFC's record decrypts
    // on the other side.
    client.write(value(clientAppStep, 'payload'));
    t.equal(hex(output(client)), hex(value(clientAppStep, 'complete record')), "client.write(payload) is the RFC's client application_data record");
    server.receive(value(clientAppStep, 'complete record'));
    t.same(
      ofType(events(server), 'data').map((e) => [hex(e.data), e.early]),
      [[hex(value(clientAppStep, 'payload')), false]],
      "the server reads the RFC's client application data",
    );
    server.write(value(serverAppStep, 'payload'));
    t.equal(hex(output(server)), hex(value(serverAppStep, 'complete record')), "server.write(payload) is the RFC's server application_data record");
    client.receive(value(serverAppStep, 'complete record'));
    t.same(ofType(events(client), 'data').map((e) => hex(e.data)), [hex(value(serverAppStep, 'payload'))], "the client reads the RFC's server application data");

    // close_notify both ways, as the RFC's alert records.
    client.close();
    t.equal(hex(output(client)), hex(clientAlertRecord), "client.close() sends the RFC's close_notify record");
    server.receive(clientAlertRecord);
    t.same(events(server).map((e) => e.type), ['end'], 'the server sees the end of the client stream');
    server.close();
    t.equal(hex(output(server)), hex(serverAlertRecord), "server.close() sends the RFC's close_notify record");
    client.receive(serverAlertRecord);
    t.same(events(client).map((e) => e.type), ['end'], 'the client sees the end of the server stream');
    t.equal(client.phase, 'closed');
    t.equal(server.phase, 'closed');
  });
}

t.test('the replay is sensitive: a different 0-RTT payload changes the early data record only', async (t) => {
  const clientCrypto = createNobleProvider({ random: scripted('client', [clientRandom, clientPrivate]) });
  const { identity, secret } = resumptionFromSection3(clientCrypto);
  const client = Connection.client({
    crypto: clientCrypto,
    psks: [{ identity, secret, hash: 'SHA-256', binderKind: 'resumption', obfuscatedTicketAge: clientHello.psks!.identities[0].obfuscatedTicketAge }],
    serverName: 'server',
    middleboxCompatibility: false,
    earlyData: utf8('ABCDEG'),
    recordSizeLimit: 16385,
    dangerousClientHelloExtensions: nssClientHelloExtensions,
  });
  const out = output(client);
  t.equal(hex(out.subarray(0, chRecord.length)), hex(chRecord), 'same ClientHello');
  t.not(hex(out.subarray(chRecord.length)), hex(earlyRecord), 'a different 0-RTT record');
});
