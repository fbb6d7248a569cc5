/**
 * The trace (lib/trace) against hostile bytes: a peer under test may send anything, and the dissector must show
 * it as it is.
 *
 * - Bytes that do not parse inside a length-prefixed vector (a truncated element, bytes left over after the last
 *   one, inner lengths inconsistent with the outer one) are shown as `malformed` where they are, inside that
 *   vector, and what follows the vector is still dissected. Before, the vector's bytes had already been skipped
 *   when the error reached the enclosing guard, so `malformed` pointed at the (well-formed) bytes after the
 *   vector, and the offending bytes were shown nowhere.
 * - For thousands of seeded mutations of RFC 8448's ClientHellos, every node's fields tile it: each byte of
 *   the message is shown exactly once, malformed or not.
 * - A handshake message in one-byte records is reassembled in linear work; a record of thousands of messages
 *   has a summary that does not grow with it; a padding extension that is not zeros shows its bytes.
 * - Records the connection fails on are traced first: one that fails to open (bad_record_mac), one refused on
 *   its header (unknown content type, record_overflow).
 * - A HelloRetryRequest record is summarised as one; a sink that throws does not desynchronise the tracer.
 * - Checks of what holds: peer strings reach the printed trace without control characters; any split of the
 *   received bytes gives the same events.
 */
import t from 'tap';
import { concat, fromHex, toHex } from '../lib/codec/bytes.js';
import { Connection } from '../lib/connection/connection.js';
import { nodeProvider } from '../lib/crypto/node.js';
import { createTracer, dissectHandshake, formatTraceEvent, type TraceEvent, type TraceNode } from '../lib/trace/index.js';
import { at } from './helpers/trace-tree.js';
import { step, value } from '../vectors/rfc8448.js';
import { makePsk, seededRandom, withRandom } from './helpers/pair.js';

/** A vector: `prefix` length bytes, then `parts`. */
function vec(prefix: 1 | 2 | 3, ...parts: Uint8Array[]): Uint8Array {
  const body = concat(...parts);
  const n = body.length;
  const len = prefix === 1 ? [n] : prefix === 2 ? [n >> 8, n & 0xff] : [n >> 16, (n >> 8) & 0xff, n & 0xff];
  return concat(Uint8Array.from(len), body);
}
function handshake(type: number, body: Uint8Array): Uint8Array {
  return concat(Uint8Array.of(type), vec(3, body));
}
function extension(type: number, data: Uint8Array): Uint8Array {
  return concat(Uint8Array.of(type >> 8, type & 0xff), vec(2, data));
}
const h = fromHex;

/** Every `malformed` node of the tree. */
function malformedNodes(n: TraceNode): TraceNode[] {
  return [...(n.name === 'malformed' ? [n] : []), ...(n.children ?? []).flatMap(malformedNodes)];
}
/** Where the fields of `n` fail to tile it (each child follows the previous one, the last ends with `n`), or ''. */
function tilingError(n: TraceNode): string {
  if (!n.children?.length) return '';
  let pos = n.offset;
  for (const c of n.children) {
    if (c.offset !== pos) return `${n.name}/${c.name} at ${c.offset}, expected ${pos}`;
    pos += c.length;
    const inner = tilingError(c);
    if (inner) return `${n.name}/${inner}`;
  }
  return pos === n.offset + n.length ? '' : `${n.name}: its fields end at ${pos}, it at ${n.offset + n.length}`;
}

t.test('bytes left over in a vector: malformed inside it, at those bytes', async (tt) => {
  // KeyUpdate (RFC 8446 §4.6.3) is one byte; this one has a second.
  const raw = h('18000002' + '01ff');
  const tree = dissectHandshake(raw);
  tt.equal(at(tree, 'body/request_update').value, 'update_requested (0x01)');
  const [bad, ...more] = malformedNodes(tree);
  tt.same(more, [], 'one malformed field');
  tt.equal(bad.offset, 5, 'at the extra byte');
  tt.equal(bad.length, 1);
  tt.match(bad.value, /\(ff\)$/, 'showing it');
  tt.equal(tilingError(tree), '', 'every byte shown once');

  // A ServerHello with garbage after its extensions.
  const sh = handshake(2, concat(h('0303'), new Uint8Array(32).fill(0x11), vec(1), h('1301'), h('00'), vec(2, extension(0x2b, h('0304'))), h('dead')));
  const shTree = dissectHandshake(sh);
  tt.equal(at(shTree, 'body/extensions/Extension/extension_data/selected_version').value, 'TLS 1.3 (0x0304)');
  const [garbage] = malformedNodes(shTree);
  tt.equal(garbage.offset, sh.length - 2, 'the garbage at the end of the body');
  tt.match(garbage.value, /\(dead\)$/);
  tt.equal(tilingError(shTree), '');
});

t.test('a truncated element inside a vector: malformed there, and the message goes on after the vector', async (tt) => {
  // Three bytes of cipher suites: one suite and a half.
  const ch = handshake(
    1,
    concat(h('0303'), new Uint8Array(32).fill(0xaa), vec(1), vec(2, h('130113')), vec(1, h('00')), vec(2, extension(0x2b, vec(1, h('0304'))), extension(0x0d, vec(2, h('0804'))))),
  );
  const tree = dissectHandshake(ch);
  const suites = at(tree, 'body/cipher_suites');
  tt.equal(suites.value, '1 suites');
  tt.equal(at(suites, 'CipherSuite').value, 'TLS_AES_128_GCM_SHA256 (0x1301)');
  const bad = at(suites, 'malformed');
  tt.equal(bad.offset, 4 + 2 + 32 + 1 + 2 + 2, 'at the half suite');
  tt.equal(bad.length, 1);
  tt.match(bad.value, /CipherSuite: need 2 bytes, 1 left \(13\)$/);
  tt.equal(malformedNodes(tree).length, 1, 'nothing else malformed');
  tt.equal(at(tree, 'body/extensions').value, '2 extensions', 'the extensions after it still dissected');
  tt.equal(at(tree, 'body/extensions/Extension#0/extension_data/versions/ProtocolVersion').value, 'TLS 1.3 (0x0304)');
  tt.equal(at(tree, 'body/extensions/Extension#1/extension_data/supported_signature_algorithms/SignatureScheme').value, 'rsa_pss_rsae_sha256 (0x0804)');
  tt.equal(tilingError(tree), '');
});

t.test('inner lengths inconsistent with the outer one: the inner vector is malformed, its neighbours are not', async (tt) => {
  // pre_shared_key (RFC 8446 §4.2.11): the identity claims 9 bytes, the identities vector holds 4 + 4.
  const identities = vec(2, h('0009'), h('41424344'), h('00000000'));
  const binders = vec(2, vec(1, new Uint8Array(32).fill(0xbb)));
  const ch = handshake(1, concat(h('0303'), new Uint8Array(32), vec(1), vec(2, h('1301')), vec(1, h('00')), vec(2, extension(0x29, concat(identities, binders)))));
  const tree = dissectHandshake(ch);
  const psk = at(tree, 'body/extensions/Extension/extension_data');
  const bad = malformedNodes(tree);
  tt.equal(bad.length, 1, 'one malformed field');
  tt.ok(bad[0].offset >= psk.offset + 2 && bad[0].offset < psk.offset + identities.length, 'inside the identities');
  tt.equal(at(psk, 'binders').value, '1 binders', 'the binders after the identities still dissected');
  tt.equal(at(psk, 'binders/PskBinderEntry/binder').value, 'bb'.repeat(32));
  tt.equal(tilingError(tree), '');
});

t.test('seeded mutations of RFC 8448 ClientHellos: never a throw, every byte shown exactly once', async (tt) => {
  const hellos = [
    value(step('3', 'client', 'construct a ClientHello handshake message'), 'ClientHello'),
    value(step('4', 'client', 'send handshake record'), 'complete record').subarray(5),
  ];
  const random = seededRandom(8448);
  let malformed = 0;
  let failures = 0;
  for (const [i, hello] of hellos.entries()) {
    for (let n = 0; n < 1500; n++) {
      const raw = hello.slice();
      const [a, b, c] = random(3);
      const edits = 1 + (a % 3);
      const r = random(edits * 3);
      for (let e = 0; e < edits; e++) raw[((r[3 * e] << 8) | r[3 * e + 1]) % raw.length] = r[3 * e + 2];
      // Sometimes cut it short, or add bytes after it.
      const bytes = b < 32 ? raw.subarray(0, ((c << 8) | a) % raw.length) : b > 224 ? concat(raw, random(1 + (c % 7))) : raw;
      let tree: TraceNode;
      try {
        tree = dissectHandshake(bytes);
      } catch (err) {
        failures++;
        tt.fail(`hello ${i} mutation ${n} threw: ${(err as Error).message} (${toHex(bytes)})`);
        continue;
      }
      if (malformedNodes(tree).length) malformed++;
      const error = tilingError(tree);
      if (error) {
        failures++;
        if (failures <= 5) tt.fail(`hello ${i} mutation ${n}: ${error} (${toHex(bytes)})`);
      }
      if (tree.length !== bytes.length) {
        failures++;
        if (failures <= 5) tt.fail(`hello ${i} mutation ${n}: the tree covers ${tree.length} of ${bytes.length} bytes`);
      }
    }
  }
  tt.equal(failures, 0, '3000 mutations: each tiled exactly');
  tt.ok(malformed > 1000, `${malformed} of them malformed somewhere`);
});

t.test('a handshake message in one-byte records: the tracer reassembles it in linear work', async (tt) => {
  // RFC 8446 §5.1 lets a handshake message span any number of records; a hostile peer may send one byte per
  // record. The tracer used to copy everything pending on each record (quadratic: 30,000 records of a 30 KB
  // message copied ~450 MB). Counted here as the bytes Uint8Array.prototype.set copies while the traced server
  // receives the message (no timing).
  const size = 30_000;
  const message = handshake(1, new Uint8Array(size - 4).fill(0x61));
  const wire = new Uint8Array(message.length * 6);
  for (let i = 0; i < message.length; i++) wire.set([0x16, 0x03, 0x03, 0x00, 0x01, message[i]], i * 6);
  const names: string[] = [];
  let records = 0;
  const server = Connection.server({
    crypto: nodeProvider,
    psks: [makePsk('trace')],
    trace: createTracer((e) => {
      if (e.direction !== 'received') return;
      if (e.kind === 'handshake') names.push(e.tree.name);
      else records++;
    }),
  });
  const set = Uint8Array.prototype.set;
  let copied = 0;
  Uint8Array.prototype.set = function (this: Uint8Array, source: ArrayLike<number>, offset?: number) {
    copied += source.length;
    return set.call(this, source, offset);
  } as typeof set;
  try {
    server.receive(wire);
  } finally {
    Uint8Array.prototype.set = set;
  }
  tt.equal(records, message.length, 'every record traced');
  tt.match(server.error?.message, /./, 'the server refused the garbage ClientHello (after the trace)');
  tt.same(names, ['ClientHello'], 'the message traced once, whole');
  tt.ok(copied < 20 * size, `${copied} bytes copied for a ${size}-byte message in ${message.length} records`);
});

t.test('a padding extension that is not all zeros shows its bytes', async (tt) => {
  // RFC 7685 §3: the padding extension is zeros. A peer that puts anything else there (data smuggled in a field
  // a reader skims over) must not be summarised as "N bytes" of zeros.
  const hello = (padding: Uint8Array): TraceNode =>
    dissectHandshake(handshake(1, concat(h('0303'), new Uint8Array(32), vec(1), vec(2, h('1301')), vec(1, h('00')), vec(2, extension(0x15, padding)))));
  tt.equal(at(hello(new Uint8Array(6)), 'body/extensions/Extension/extension_data/zeros').value, '6 bytes');
  tt.equal(at(hello(h('000000c0ffee')), 'body/extensions/Extension/extension_data/zeros').value, '6 bytes, not all zero: 000000c0ffee');
});

t.test("a record of thousands of messages: the record's summary does not grow with it", async (tt) => {
  // 4,096 empty Finished messages in one 16 KiB record. Each is its own handshake event; the record's summary
  // (its header line, and its fragment field) named every one of them, twice per record: 80 KB of text.
  const content = new Uint8Array(16_384).map((_, i) => (i % 4 === 0 ? 0x14 : 0));
  const events: TraceEvent[] = [];
  createTracer((e) => events.push(e))({ direction: 'received', header: h('1603034000'), protected: false, opened: true, type: 0x16, content, paddingLength: 0 });
  const record = events[0];
  tt.equal(record.kind, 'record');
  tt.equal(record.tree.value, `handshake: ${Array(8).fill('Finished').join(', ')}, and 4088 more`);
  tt.ok(formatTraceEvent(record).length < 1000, `the record's printed form: ${formatTraceEvent(record).length} characters`);
  tt.equal(events.filter((e) => e.kind === 'handshake').length, 4096, 'every message still traced');
  const partial = createTracer((e) => events.push(e));
  events.length = 0;
  partial({ direction: 'received', header: h('1603030006'), protected: false, opened: true, type: 0x16, content: h('140000001400'), paddingLength: 0 });
  tt.equal(events[0].tree.value, 'handshake: Finished, (fragment)', 'a short list as before');
});

t.test('a protected record that fails to open is traced before the connection fails on it', async (tt) => {
  // The trace hook receives "every record a connection receives": the one whose authentication fails (RFC 8446
  // §5.2, bad_record_mac), the record a conformance tester most wants to see, was not among them.
  const psk = makePsk('trace-bad-mac');
  const events: TraceEvent[] = [];
  const client = Connection.client({ crypto: nodeProvider, psks: [psk], trace: createTracer((e) => events.push(e)) });
  const server = Connection.server({ crypto: nodeProvider, psks: [psk] });
  for (let i = 0; i < 10; i++) {
    const a = client.takeOutput();
    if (a) server.receive(a);
    const b = server.takeOutput();
    if (b) client.receive(b);
    if (!a && !b) break;
  }
  tt.equal(client.phase, 'connected');
  server.write(concat(h('70696e67')));
  const record = server.takeOutput()!;
  record[record.length - 1] ^= 0x01; // a bit of the tag
  const before = events.length;
  client.receive(record);
  tt.equal(client.error?.reason, 'RecordBadMac');
  const traced = events.slice(before).filter((e) => e.direction === 'received');
  tt.equal(traced.length, 1, 'the record is traced');
  tt.equal(traced[0].tree.name, 'TLSCiphertext');
  tt.equal(traced[0].tree.value, 'protected, could not be opened');
  tt.equal(traced[0].tree.length, record.length);
  tt.equal(at(traced[0].tree, 'encrypted_record').value, 'not decrypted: bad_record_mac (20) sent: record authentication failed');
  tt.equal(traced[0].streamOffset, events.filter((e) => e.direction === 'received' && e.kind === 'record').slice(0, -1).reduce((n, e) => n + e.tree.length, 0), 'at its stream offset');
});

t.test('a record refused on its header is traced, as far as its header goes, before the connection fails on it', async (tt) => {
  const psk = makePsk('trace-refused');
  // A ClientHello record, then text in the same chunk (RFC 8446 §5: an unknown content type).
  const hello = Connection.client({ crypto: nodeProvider, psks: [psk] }).takeOutput()!;
  const events: TraceEvent[] = [];
  const server = Connection.server({ crypto: nodeProvider, psks: [psk], trace: createTracer((e) => events.push(e)) });
  server.receive(concat(hello, h('474554202f20485454502f312e310d0a')));
  tt.equal(server.error?.reason, 'RecordUnknownContentType');
  const received = events.filter((e) => e.direction === 'received' && e.kind === 'record');
  tt.same(
    received.map((e) => e.streamOffset),
    [0, hello.length],
    'the ClientHello record, then the refused one after it',
  );
  const refused = received[1].tree;
  tt.equal(refused.value, 'refused: unexpected_message (10) sent: record content type 0x47 ("G"): the peer does not seem to speak TLS (it sent text)');
  tt.equal(at(refused, 'type').value, 'unknown (0x47)');
  tt.equal(at(refused, 'length').value, String(0x202f), 'the header as the peer sent it');
  tt.match(at(refused, 'fragment').value, /^not read: /);

  // §5.2: a length over 2^14 + 256, after the handshake; and a refused first byte with no more bytes after it.
  const client = Connection.client({ crypto: nodeProvider, psks: [psk], trace: createTracer((e) => events.push(e)) });
  events.length = 0;
  client.receive(h('1703034101'));
  tt.equal(client.error?.reason, 'RecordOverflow');
  tt.equal(events.find((e) => e.direction === 'received')?.tree.value, 'refused: record_overflow (22) sent: record length 16641 exceeds 2^14 + 256');
  const lone = Connection.server({ crypto: nodeProvider, psks: [psk], trace: createTracer((e) => events.push(e)) });
  events.length = 0;
  lone.receive(h('ff'));
  const [one] = events.filter((e) => e.direction === 'received');
  tt.equal(one.tree.length, 1, 'one byte, shown');
  tt.equal(at(one.tree, 'type').value, 'unknown (0xff)');
  tt.match(one.tree.value, /^refused: unexpected_message/);
});

t.test("a HelloRetryRequest record's summary names it as its message does", async (tt) => {
  // RFC 8446 §4.1.3: HelloRetryRequest is a ServerHello with a special random. The message was named
  // HelloRetryRequest, the record carrying it "handshake: ServerHello".
  const psk = makePsk('trace-hrr');
  const events: TraceEvent[] = [];
  const client = Connection.client({ crypto: nodeProvider, psks: [psk], groups: ['x25519', 'secp256r1'], trace: createTracer((e) => events.push(e)) });
  const server = Connection.server({ crypto: nodeProvider, psks: [psk], groups: ['secp256r1'] });
  server.receive(client.takeOutput()!);
  client.receive(server.takeOutput()!);
  const received = events.filter((e) => e.direction === 'received').slice(0, 2); // (then its change_cipher_spec)
  tt.same(
    received.map((e) => `${e.kind} ${e.tree.name} ${e.tree.value}`),
    ['record TLSPlaintext handshake: HelloRetryRequest', `handshake HelloRetryRequest ${received[1]?.tree.value}`],
  );
});

t.test('peer strings (PSK identity, SNI, ALPN) reach the printed trace as hex, with text only when printable ASCII', async (tt) => {
  // A check of what already holds: a terminal reading --trace gets no control character from the peer.
  const evil = new TextEncoder().encode('id\u001b[2J\r\n\u009b31m\u202e\u2028"end');
  const printable = new TextEncoder().encode('client1');
  const ch = handshake(
    1,
    concat(
      h('0303'),
      new Uint8Array(32),
      vec(1),
      vec(2, h('1301')),
      vec(1, h('00')),
      vec(
        2,
        extension(0, vec(2, h('00'), vec(2, evil))),
        extension(16, vec(2, vec(1, evil), vec(1, printable))),
        extension(0x29, concat(vec(2, vec(2, evil), h('00000000'), vec(2, printable), h('00000000')), vec(2, vec(1, new Uint8Array(32)), vec(1, new Uint8Array(32))))),
      ),
    ),
  );
  const text = formatTraceEvent({ direction: 'received', kind: 'handshake', tree: dissectHandshake(ch) });
  tt.notMatch(text, /[\u0000-\u0009\u000b-\u001f\u007f-\u009f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069]/, 'no control character');
  tt.equal(text.split(toHex(evil)).length - 1, 3, 'the hostile strings as hex, three times');
  tt.equal(text.split(`${toHex(printable)} ("client1")`).length - 1, 2, 'the printable ones with their text');
  tt.equal(malformedNodes(dissectHandshake(ch)).length, 0);
});

t.test("a sink that throws loses that record's events, not the tracer's place in the stream", async (tt) => {
  // The connection catches what its trace hook throws (lib/callbacks.ts) and goes on; the tracer used to call the
  // sink before it had taken the record into account, so a throw left the record's bytes out of its stream offset
  // and out of the message being reassembled: every later offset was wrong, and the message came out as garbage.
  const message = handshake(8, vec(2, extension(0x10, vec(2, vec(1, h('6832'))))));
  const first = message.subarray(0, 5);
  const second = message.subarray(5);
  const events: TraceEvent[] = [];
  let calls = 0;
  const hook = createTracer((e) => {
    if (calls++ === 0) throw new Error('a sink that fails once');
    events.push(e);
  });
  const record = (content: Uint8Array) => ({ direction: 'received' as const, header: concat(h('160303'), Uint8Array.of(0, content.length)), protected: false, opened: true, type: 0x16, content, paddingLength: 0 });
  tt.throws(() => hook(record(first)), /fails once/);
  hook(record(second));
  tt.same(
    events.map((e) => [e.kind, e.streamOffset, e.tree.name]),
    [
      ['record', 5 + first.length, 'TLSPlaintext'],
      ['handshake', 0, 'EncryptedExtensions'],
    ],
  );
  tt.equal(malformedNodes(events[1].tree).length, 0, 'the message whole');
  tt.equal(at(events[1].tree, 'body/extensions/Extension/extension_data/protocol_name_list/ProtocolName/name').value, '6832 ("h2")');
});

t.test('the same bytes received in any split give the same trace', async (tt) => {
  // A check of what holds: records are traced as the deframer completes them (RFC 8446 §5.1), whatever the TCP
  // chunks: one byte at a time, or a whole flight at once, the events are the same.
  const psk = makePsk('trace-split');
  const run = (split: (b: Uint8Array) => Uint8Array[]): string[] => {
    const events: string[] = [];
    const client = Connection.client({ crypto: withRandom(nodeProvider, seededRandom(5)), psks: [psk] });
    const server = Connection.server({ crypto: withRandom(nodeProvider, seededRandom(6)), psks: [psk], trace: createTracer((e) => events.push(JSON.stringify(e))) });
    for (let i = 0; i < 10; i++) {
      const a = client.takeOutput();
      if (a) for (const piece of split(a)) server.receive(piece);
      const b = server.takeOutput();
      if (b) client.receive(b);
      if (!a && !b) break;
    }
    return events;
  };
  const whole = run((b) => [b]);
  const bytes = run((b) => [...b].map((x) => Uint8Array.of(x)));
  tt.ok(whole.length >= 8, `${whole.length} events`);
  tt.same(bytes, whole, 'one byte at a time: the same events');
});
