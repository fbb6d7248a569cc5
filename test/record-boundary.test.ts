/**
 * RFC 8446 §5.1: "Handshake messages MUST NOT span key changes. Implementations MUST verify that all messages
 * immediately preceding a key change align with a record boundary; if not, then they MUST terminate the
 * connection with an "unexpected_message" alert. Because the ClientHello, EndOfEarlyData, ServerHello,
 * Finished, and KeyUpdate messages can immediately precede a key change, implementations MUST send these
 * messages in alignment with a record boundary."
 *
 * For every such message — ClientHello, ServerHello, the HelloRetryRequest exchange (the HelloRetryRequest and
 * the second ClientHello), EndOfEarlyData, Finished and KeyUpdate, from whichever side sends it — a real peer
 * sends it with something more in the same record: another handshake message, a partial handshake header, or
 * one byte. The receiver must refuse it with unexpected_message (reason RecordHandshakeSpansKeyChange) before
 * it answers anything or switches any key: its only output is that one alert record, and the sender can still
 * read it with the keys it had (a receiver that had switched keys would send an alert the sender cannot open).
 * Both crypto providers.
 */
import t from 'tap';
import { concat, utf8 } from '../lib/codec/bytes.js';
import { AlertDescription, ContentType, HandshakeType } from '../lib/codec/enums.js';
import type { ClientOptions, ServerOptions } from '../lib/config/options.js';
import { Connection } from '../lib/connection/connection.js';
import type { ConnectionEvent } from '../lib/config/events.js';
import { nobleProvider } from '../lib/crypto/noble.js';
import { nodeProvider } from '../lib/crypto/node.js';
import type { CryptoProvider } from '../lib/crypto/provider.js';
import { makePsk, splitRecords, type Side } from './helpers/pair.js';
import { createEarlyDataReplayGuard } from '../lib/config/anti-replay.js';

/** What may follow the message in its record. */
const TRAILERS: Record<string, Uint8Array> = {
  'another message (a KeyUpdate)': new Uint8Array([HandshakeType.key_update, 0, 0, 1, 0]),
  'a partial handshake header': new Uint8Array([HandshakeType.finished, 0]),
  'one byte': new Uint8Array([0]),
};

interface Scenario {
  readonly name: string;
  /** Who sends the message (the other side must refuse it). */
  readonly sender: Side;
  readonly type: number;
  /** Which message of that type the sender sends (1 = the first). */
  readonly nth: number;
  readonly client?: Partial<ClientOptions>;
  readonly server?: Partial<ServerOptions>;
  /** Sent after the handshake (KeyUpdate). */
  readonly afterHandshake?: boolean;
}

const HRR = { client: { groups: ['x25519', 'secp256r1'] }, server: { groups: ['secp256r1'] } } as const;
const EARLY = { client: { earlyData: utf8('0-RTT') }, server: { maxEarlyDataSize: 1024, earlyDataReplayGuard: createEarlyDataReplayGuard() } } as const;

const SCENARIOS: Scenario[] = [
  { name: 'ClientHello', sender: 'client', type: HandshakeType.client_hello, nth: 1 },
  { name: 'ServerHello', sender: 'server', type: HandshakeType.server_hello, nth: 1 },
  { name: 'HelloRetryRequest', sender: 'server', type: HandshakeType.server_hello, nth: 1, ...HRR },
  { name: 'the second ClientHello (after HelloRetryRequest)', sender: 'client', type: HandshakeType.client_hello, nth: 2, ...HRR },
  { name: 'the ServerHello after HelloRetryRequest', sender: 'server', type: HandshakeType.server_hello, nth: 2, ...HRR },
  { name: 'EndOfEarlyData', sender: 'client', type: HandshakeType.end_of_early_data, nth: 1, ...EARLY },
  { name: "the server's Finished", sender: 'server', type: HandshakeType.finished, nth: 1 },
  { name: "the client's Finished", sender: 'client', type: HandshakeType.finished, nth: 1 },
  { name: "the client's Finished after 0-RTT", sender: 'client', type: HandshakeType.finished, nth: 1, ...EARLY },
  { name: "the client's KeyUpdate", sender: 'client', type: HandshakeType.key_update, nth: 1, afterHandshake: true },
  { name: "the server's KeyUpdate", sender: 'server', type: HandshakeType.key_update, nth: 1, afterHandshake: true },
];

// ---------------------------------------------------------------------------------------------------------
// The injection: the sending connection's records pass through here (its private emitRecord, patched once).

interface Injection {
  readonly sender: Side;
  readonly type: number;
  readonly nth: number;
  readonly trailer: Uint8Array;
  seen: number;
  done: boolean;
}
let armed: Injection | null = null;

type EmitRecord = (this: Connection, type: number, content: Uint8Array) => void;
const proto = Connection.prototype as unknown as { emitRecord: EmitRecord };
const original = proto.emitRecord;
proto.emitRecord = function (this: Connection, type: number, content: Uint8Array): void {
  const inj = armed;
  if (inj && !inj.done && type === ContentType.handshake && inj.sender === (this.isClient ? 'client' : 'server')) {
    content = inject(inj, content);
  }
  original.call(this, type, content);
};
t.teardown(() => {
  proto.emitRecord = original;
});

/** Inserts the trailer right after the nth message of the injection's type in `content` (a record's). */
function inject(inj: Injection, content: Uint8Array): Uint8Array {
  for (let at = 0; at + 4 <= content.length; ) {
    const end = at + 4 + ((content[at + 1] << 16) | (content[at + 2] << 8) | content[at + 3]);
    if (content[at] === inj.type && ++inj.seen === inj.nth) {
      inj.done = true;
      return concat(content.subarray(0, end), inj.trailer, content.subarray(end));
    }
    at = end;
  }
  return content;
}

// ---------------------------------------------------------------------------------------------------------

interface Outcome {
  readonly receiverEvents: ConnectionEvent[];
  /** What the receiver sent in answer to the record that carried the message. */
  readonly answer: Uint8Array | null;
  readonly senderEvents: ConnectionEvent[];
  readonly injected: boolean;
}

function run(crypto: CryptoProvider, s: Scenario, trailer: Uint8Array): Outcome {
  const psk = makePsk('boundary');
  const inj: Injection = { sender: s.sender, type: s.type, nth: s.nth, trailer, seen: 0, done: false };
  // Armed before the client exists: its ClientHello is sealed as it is created.
  armed = s.afterHandshake ? null : inj;
  const client = Connection.client({ crypto, psks: [psk], ...s.client });
  const server = Connection.server({ crypto, psks: [psk], ...s.server });
  const conns = { client, server };
  const receiverSide: Side = s.sender === 'client' ? 'server' : 'client';
  const sender = conns[s.sender];
  const receiver = conns[receiverSide];
  const events = { client: [] as ConnectionEvent[], server: [] as ConnectionEvent[] };
  let answer: Uint8Array | null = null;
  const pump = (): void => {
    for (let round = 0; round < 32; round++) {
      let moved = false;
      for (const from of ['client', 'server'] as const) {
        const to = from === 'client' ? server : client;
        const toSide: Side = from === 'client' ? 'server' : 'client';
        const bytes = conns[from].takeOutput();
        events[from].push(...conns[from].takeEvents());
        if (!bytes) continue;
        moved = true;
        const wasFailed = (to.phase as string) === 'failed';
        to.receive(bytes);
        events[toSide].push(...to.takeEvents());
        if (to === receiver && !wasFailed && to.phase === 'failed') {
          // Stop here: what the receiver sends now is its answer to the offending record.
          answer = receiver.takeOutput();
          return;
        }
      }
      if (!moved) return;
    }
    throw new Error('the exchange did not settle');
  };
  try {
    pump();
    if (s.afterHandshake) {
      armed = inj;
      sender.keyUpdate(false);
      pump();
    }
  } finally {
    armed = null;
  }
  // The sender reads the receiver's answer with the keys it has.
  if (answer) sender.receive(answer);
  events[s.sender].push(...sender.takeEvents());
  return { receiverEvents: events[receiverSide], answer, senderEvents: events[s.sender], injected: inj.done };
}

for (const [providerName, crypto] of [
  ['noble', nobleProvider],
  ['node', nodeProvider],
] as const) {
  t.test(`${providerName} provider`, async (tp) => {
    for (const s of SCENARIOS) {
      for (const [what, trailer] of Object.entries(TRAILERS)) {
        tp.test(`${s.name} followed by ${what} in the same record: the ${s.sender === 'client' ? 'server' : 'client'} refuses it`, async (tt) => {
          const o = run(crypto, s, trailer);
          tt.ok(o.injected, `the ${s.sender} sent ${s.name} with the trailer`);
          const errors = o.receiverEvents.flatMap((e) => (e.type === 'error' ? [e.error] : []));
          tt.equal(errors.length, 1, 'one error');
          tt.equal(errors[0]?.reason, 'RecordHandshakeSpansKeyChange', 'named reason');
          tt.equal(errors[0]?.alert, 'unexpected_message', 'unexpected_message');
          if (s.afterHandshake) tt.notOk(o.receiverEvents.some((e) => e.type === 'key-update'), 'no key updated');
          else tt.notOk(o.receiverEvents.some((e) => e.type === 'handshake'), 'the handshake did not complete');
          const records = o.answer ? splitRecords(o.answer) : [];
          tt.equal(records.length, 1, 'the only thing sent in answer is one record (the alert): no reply went out first');
          const senderErrors = o.senderEvents.flatMap((e) => (e.type === 'error' ? [e.error] : []));
          tt.equal(senderErrors.length, 1, 'the sender got the alert');
          tt.ok(senderErrors[0]?.remote, 'as an alert received');
          tt.equal(senderErrors[0]?.alertCode, AlertDescription.unexpected_message, 'readable with the keys the sender has: no key was switched');
        });
      }
    }
  });
}

t.test('the same messages alone in their records go through (the injection changes nothing else)', async (tt) => {
  for (const s of SCENARIOS) {
    const o = run(nodeProvider, s, new Uint8Array(0));
    tt.notOk(
      o.receiverEvents.some((e) => e.type === 'error'),
      `${s.name}: no error`,
    );
    tt.ok(o.injected, `${s.name}: the message was sent`);
  }
});
