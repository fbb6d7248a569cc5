/**
 * Record padding (RFC 8446 §5.4), the recordPadding option: every protected record sent has a TLSInnerPlaintext
 * (content, content type, zeros) that is a multiple of the block size, or as long as the peer accepts in one record.
 * The receiving side needs nothing (it already strips padding: §5.4, "the receiving implementation scans the field
 * from the end toward the beginning").
 */
import t from 'tap';
import { utf8 } from '../lib/codec/bytes.js';
import { Connection } from '../lib/connection/connection.js';
import { nobleProvider } from '../lib/crypto/noble.js';
import { MAX_PADDING_BLOCK, paddingLength } from '../lib/record/padding.js';
import type { RecordTrace } from '../lib/record/trace-hook.js';
import { handshake, KeyLog, makePsk, openRecord, protection, type RecordBytes } from './helpers/pair.js';

const TAG = 16;
/** TLSInnerPlaintext length of a protected record (its encrypted record less the AES-GCM tag). */
const inner = (r: RecordBytes): number => r.fragment.length - TAG;

t.test('paddingLength: up to the next multiple of the block, within the most the peer accepts', async (t) => {
  const cases: [block: number, content: number, max: number, padding: number][] = [
    [0, 10, 16_385, 0], // no padding
    [1, 10, 16_385, 0],
    [16, 15, 16_385, 0], // content + type = 16 already
    [16, 16, 16_385, 15], // 17 -> 32
    [256, 2, 16_385, 253], // an alert: 3 -> 256
    [256, 16_384, 16_385, 0], // a full record is full
    [1000, 16_000, 16_385, 384], // 16,001 -> 17,000, capped at 16,385
    [1000, 50, 64, 13], // a record_size_limit of 64: 51 -> 64
    [MAX_PADDING_BLOCK, 0, 16_385, 16_384], // every record full size
  ];
  for (const [block, content, max, padding] of cases) t.equal(paddingLength(block, content, max), padding, `block ${block}, ${content} bytes, at most ${max}: ${padding} zeros`);
});

t.test('recordPadding is validated', async (t) => {
  const psk = makePsk('padding');
  for (const bad of [-1, 1.5, 16_386, Number.NaN, '256' as unknown as number]) {
    t.throws(() => Connection.client({ crypto: nobleProvider, psks: [psk], recordPadding: bad }), { name: 'RangeError', message: /^client: recordPadding must be an integer from 0 to 16385/ }, `client: ${String(bad)}`);
    t.throws(() => Connection.server({ crypto: nobleProvider, psks: [psk], recordPadding: bad }), { name: 'RangeError', message: /^server: recordPadding must be/ }, `server: ${String(bad)}`);
  }
  t.doesNotThrow(() => Connection.client({ crypto: nobleProvider, psks: [psk], recordPadding: 0 }), '0 (no padding) is fine');
});

t.test('every protected record both sides send is padded: handshake, data, KeyUpdate, close_notify; the peer reads it all', async (t) => {
  const psk = makePsk('padding');
  const traced: RecordTrace[] = [];
  const [ck, sk] = [new KeyLog(), new KeyLog()];
  const p = handshake(
    { crypto: nobleProvider, psks: [psk], recordPadding: 256, keyLog: ck.sink, trace: (r) => void traced.push(r) },
    { crypto: nobleProvider, psks: [psk], recordPadding: 512, keyLog: sk.sink },
  );
  t.ok(p.info('client') && p.info('server'), 'the handshake completes');
  const message = new Uint8Array(40_000).map((_, i) => i & 0xff);
  p.client.write(message);
  p.client.keyUpdate(true);
  p.client.write(utf8('after the update'));
  p.server.write(utf8('hello'));
  p.client.close();
  p.pump();
  p.server.close();
  p.pump();
  t.same(p.received('server'), new Uint8Array([...message, ...utf8('after the update')]), 'the server read every byte the client wrote');
  t.same(p.received('client'), utf8('hello'), 'and the client what the server wrote');
  t.equal(p.client.phase, 'closed', 'both closed cleanly');
  t.equal(p.server.phase, 'closed');

  for (const [side, block] of [['client', 256], ['server', 512]] as const) {
    const records = p.records(side).filter((r) => r.type === 23); // the protected ones
    const sizes = records.map(inner);
    t.same(sizes.filter((n) => n % block !== 0 && n !== 16_385), [], `${side}: all ${records.length} protected records are multiples of ${block} or full (${[...new Set(sizes)].join(', ')})`);
  }
  // The client's records opened by hand: the content and type, then only zeros (§5.4).
  const records = p.records('client').filter((r) => r.type === 23);
  const hs = protection(nobleProvider, 'TLS_AES_128_GCM_SHA256', ck.secret('CLIENT_HANDSHAKE_TRAFFIC_SECRET'));
  const finished = openRecord(hs, records[0]);
  t.equal(finished.type, 22, 'the first is the Finished, a handshake record');
  t.equal(inner(records[0]), 256, 'padded to 256');
  const app = protection(nobleProvider, 'TLS_AES_128_GCM_SHA256', ck.secret('CLIENT_TRAFFIC_SECRET_0'));
  const first = openRecord(app, records[1]);
  t.equal(first.content.length, 16_384, 'the next is full of data');
  // (A record's padding, after opening, is gone: what the trace hook reports is checked instead.)
  const sentTraces = traced.filter((r) => r.direction === 'sent' && r.protected);
  t.same(sentTraces.map((r) => r.content.length + 1 + r.paddingLength).filter((n) => n % 256 !== 0 && n !== 16_385), [], `the trace hook reports each sent record's padding (${sentTraces.length} records)`);
  const alert = sentTraces[sentTraces.length - 1];
  t.same([alert.type, alert.content.length, alert.paddingLength], [21, 2, 253], 'the close_notify: 2 bytes, its type, 253 zeros');
});

t.test("padding stops at the peer's record_size_limit (RFC 8449 §4 counts the padding): no record_overflow", async (t) => {
  const psk = makePsk('padding');
  const p = handshake({ crypto: nobleProvider, psks: [psk], recordPadding: 1000, recordSizeLimit: 100 }, { crypto: nobleProvider, psks: [psk], recordSizeLimit: 64, recordPadding: 1000 });
  p.client.write(new Uint8Array(500).fill(7));
  p.server.write(new Uint8Array(500).fill(9));
  p.pump();
  t.equal(p.error('client'), undefined, 'no error at the client');
  t.equal(p.error('server'), undefined, 'nor at the server');
  t.same(p.received('server'), new Uint8Array(500).fill(7), 'the server read the 500 bytes');
  t.same(p.received('client'), new Uint8Array(500).fill(9), 'the client too');
  const sizes = (side: 'client' | 'server') => p.records(side).filter((r) => r.type === 23).map(inner);
  t.same([...new Set(sizes('client'))], [64], "the client's records are all 64 bytes: the server's limit");
  t.same([...new Set(sizes('server'))], [100], "the server's all 100: the client's");
});
