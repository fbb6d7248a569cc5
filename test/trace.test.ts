/**
 * The annotated trace (lib/trace): records and handshake messages dissected field by field, with offsets,
 * lengths and values.
 *
 * - RFC 8448 §3's ClientHello, dissected, is held against the RFC's own bytes field by field: every field's
 *   offset and length select the bytes its value shows, the fields of each node tile it exactly, and the
 *   named fields (suites, extensions by name, the x25519 key share, ...) are the RFC's.
 * - RFC 8448 §4's ClientHello record (through the tracer, as a connection calls it): the PSK identity, its
 *   obfuscated ticket age and the binder that §4 computes.
 * - A connection with a tracer: every record either side sends is traced as sent and as received, with the
 *   inner content type and padding of protected records, the handshake messages in order, alerts by name; a
 *   tracer changes nothing on the wire.
 * - Malformed bytes are shown, not thrown.
 * - The command line: `--trace` on the client, `--trace-json` on the server; secrets only with --keylog, and on a
 *   server each secret names its connection as the other trace lines do.
 */
import t from 'tap';
import { fromHex, toHex, utf8 } from '../lib/codec/bytes.js';
import { ContentType } from '../lib/codec/enums.js';
import { Connection } from '../lib/connection/connection.js';
import { nodeProvider } from '../lib/crypto/node.js';
import { createTracer, dissectHandshake, dissectRecord, formatTraceEvent, type TraceEvent, type TraceNode } from '../lib/trace/index.js';
import { at } from './helpers/trace-tree.js';
import { step, value } from '../vectors/rfc8448.js';
import { KeyLog, makePsk, protection, seededRandom, withRandom } from './helpers/pair.js';
import { jsonEvents, PSK_HEX, PSK_IDENTITY, spawnQkdTls } from './helpers/peers.js';

const crypto = nodeProvider;
const WAIT = 15_000;

function leaves(n: TraceNode): TraceNode[] {
  return n.children?.length ? n.children.flatMap(leaves) : [n];
}
function bigEndian(b: Uint8Array): number {
  return b.reduce((v, x) => v * 256 + x, 0);
}

t.test('RFC 8448 §3 ClientHello, field by field against the RFC bytes', async (tt) => {
  const raw = value(step('3', 'client', 'construct a ClientHello handshake message'), 'ClientHello');
  const tree = dissectHandshake(raw);
  tt.equal(tree.name, 'ClientHello');
  tt.equal(tree.length, raw.length);
  tt.equal(tree.length, 196, 'the RFC prints 196 octets');

  // Every node's children tile it exactly: no byte is skipped or shown twice.
  const tile = (n: TraceNode): void => {
    if (!n.children?.length) return;
    let pos = n.children[0].offset;
    tt.equal(pos, n.offset, `${n.name}: first field at its start`);
    for (const c of n.children) {
      tt.equal(c.offset, pos, `${n.name}/${c.name} follows the previous field`);
      pos += c.length;
      tile(c);
    }
    tt.equal(pos, n.offset + n.length, `${n.name}: the fields use it up`);
  };
  tile(tree);
  tt.notOk(JSON.stringify(tree).includes('malformed'), 'nothing malformed');

  // Every leaf shows the RFC's bytes at its offset: hex for byte strings, the big-endian number otherwise.
  for (const leaf of leaves(tree)) {
    const bytes = raw.subarray(leaf.offset, leaf.offset + leaf.length);
    const v = leaf.value ?? '';
    const code = /\((0x[0-9a-f]+)\)$/.exec(v);
    if (code) tt.equal(Number(code[1]), bigEndian(bytes), `${leaf.name} @${leaf.offset}: ${v}`);
    else if (/^0x[0-9a-f]+$/.test(v)) tt.equal(Number(v), bigEndian(bytes), `${leaf.name} @${leaf.offset}: ${v}`);
    else if (/^\d+$/.test(v)) tt.equal(Number(v), bigEndian(bytes), `${leaf.name} @${leaf.offset} = ${v}`);
    else if (/^[0-9a-f]+/.test(v)) tt.equal(v.split(' ')[0], toHex(bytes), `${leaf.name} @${leaf.offset} is the RFC's bytes`);
    else tt.fail(`${leaf.name}: unexpected value ${v}`);
  }

  // The named fields, as RFC 8448 §3 describes this ClientHello.
  tt.equal(at(tree, 'msg_type').value, 'client_hello (0x01)');
  tt.equal(at(tree, 'body/length').value, '192');
  tt.equal(at(tree, 'body/legacy_version').value, 'TLS 1.2 (0x0303)');
  tt.equal(at(tree, 'body/random').value, 'cb34ecb1e78163ba1c38c6dacb196a6dffa21a8d9912ec18a2ef6283024dece7');
  tt.same(at(tree, 'body/random'), { name: 'random', offset: 6, length: 32, value: 'cb34ecb1e78163ba1c38c6dacb196a6dffa21a8d9912ec18a2ef6283024dece7' });
  tt.equal(at(tree, 'body/legacy_session_id/length').value, '0', 'no legacy session ID');
  tt.same(
    at(tree, 'body/cipher_suites').children?.slice(1).map((c) => c.value),
    ['TLS_AES_128_GCM_SHA256 (0x1301)', 'TLS_CHACHA20_POLY1305_SHA256 (0x1303)', 'TLS_AES_256_GCM_SHA384 (0x1302)'],
  );
  const extensions = at(tree, 'body/extensions').children!.slice(1);
  tt.same(
    extensions.map((e) => e.value),
    [
      'server_name',
      'renegotiation_info',
      'supported_groups',
      'session_ticket',
      'key_share',
      'supported_versions',
      'signature_algorithms',
      'psk_key_exchange_modes',
      'record_size_limit',
    ],
    'the extensions by name, in the RFC order',
  );
  tt.equal(at(extensions[0], 'extension_data/server_name_list/ServerName/host_name/name').value, '736572766572 ("server")');
  const share = at(extensions[4], 'extension_data/client_shares/KeyShareEntry');
  tt.equal(share.value, 'x25519');
  const clientPublic = toHex(value(step('3', 'client', 'create an ephemeral x25519 key pair'), 'public key'));
  tt.same(at(share, 'key_exchange/key_exchange'), { name: 'key_exchange', offset: 109, length: 32, value: clientPublic }, "the client's x25519 public key");
  tt.equal(at(extensions[5], 'extension_data/versions/ProtocolVersion').value, 'TLS 1.3 (0x0304)');
  tt.equal(at(extensions[7], 'extension_data/ke_modes/PskKeyExchangeMode').value, 'psk_dhe_ke (0x01)');
  tt.equal(at(extensions[8], 'extension_data/record_size_limit').value, '16385');
  tt.same(
    at(extensions[2], 'extension_data/named_group_list')
      .children?.slice(1)
      .map((c) => c.value?.replace(/ \(.*/, '')),
    ['x25519', 'secp256r1', 'secp384r1', 'secp521r1', 'ffdhe2048', 'ffdhe3072', 'ffdhe4096', 'ffdhe6144', 'ffdhe8192'],
  );

  const text = formatTraceEvent({ direction: 'sent', kind: 'handshake', tree });
  tt.match(text, /\[0109\+32\] key_exchange: 99381de560e4bd43d23d8e435a7dbafeb3c06e51c13cae4d5413691e529aaf2c/, 'printed with offset and length');
});

t.test('RFC 8448 §4 ClientHello record through the tracer: PSK identity, obfuscated ticket age, binder', async (tt) => {
  const record = value(step('4', 'client', 'send handshake record'), 'complete record');
  const events: TraceEvent[] = [];
  const hook = createTracer((e) => events.push(e));
  hook({ direction: 'sent', header: record.subarray(0, 5), protected: false, opened: true, type: record[0], content: record.subarray(5), paddingLength: 0 });
  tt.same(
    events.map((e) => `${e.kind} ${e.tree.name}`),
    ['record TLSPlaintext', 'handshake ClientHello'],
  );
  tt.equal(events[0].tree.value, 'handshake: ClientHello');
  tt.equal(at(events[0].tree, 'length').value, String(record.length - 5));
  const hello = events[1].tree;
  const ext = at(hello, 'body/extensions').children!.slice(1);
  tt.equal(ext.at(-1)?.value, 'pre_shared_key', 'pre_shared_key is last');
  tt.ok(
    ext.some((e) => e.value === 'early_data'),
    'early_data offered',
  );
  const psk = at(ext.at(-1)!, 'extension_data');
  const identity = at(psk, 'identities/PskIdentity');
  tt.equal(at(identity, 'identity/length').value, '178', 'a 178-byte ticket as identity');
  tt.match(at(identity, 'identity/identity').value, /^2c035d829359ee5ff7af4ec900000000/);
  tt.equal(at(identity, 'obfuscated_ticket_age').value, '4208372427 (0xfad6aacb)');
  const binder = toHex(value(step('4', 'client', 'calculate PSK binder'), 'finished'));
  tt.equal(at(psk, 'binders/PskBinderEntry/binder').value, binder, 'the binder §4 computes');
});

t.test('a traced connection: every record both ways, protected ones opened, messages in order', async (tt) => {
  const events = { client: [] as TraceEvent[], server: [] as TraceEvent[] };
  const psk = makePsk('trace');
  const ck = new KeyLog();
  const client = Connection.client({ crypto, psks: [psk], trace: createTracer((e) => events.client.push(e)), keyLog: ck.sink });
  const server = Connection.server({ crypto, psks: [psk], trace: createTracer((e) => events.server.push(e)) });
  const wire = { client: [] as Uint8Array[], server: [] as Uint8Array[] };
  const pump = (): void => {
    for (let i = 0; i < 10; i++) {
      const a = client.takeOutput();
      if (a) (wire.client.push(a), server.receive(a));
      const b = server.takeOutput();
      if (b) (wire.server.push(b), client.receive(b));
      if (!a && !b) return;
    }
  };
  pump();
  client.write(utf8('ping'));
  pump();
  // A padded record from the server (qkd-tls does not pad, other stacks may: RFC 8446 §5.4).
  const padded = protection(crypto, 'TLS_AES_128_GCM_SHA256', ck.secret('SERVER_TRAFFIC_SECRET_0')).seal(ContentType.application_data, utf8('pong'), 7);
  client.receive(padded);
  client.close();
  pump();

  const names = (evs: TraceEvent[], direction: string, kind: string) => evs.filter((e) => e.direction === direction && e.kind === kind).map((e) => e.tree.name);
  tt.same(names(events.client, 'sent', 'handshake'), ['ClientHello', 'Finished']);
  tt.same(names(events.client, 'received', 'handshake'), ['ServerHello', 'EncryptedExtensions', 'Finished']);
  tt.same(names(events.server, 'received', 'handshake'), ['ClientHello', 'Finished']);
  tt.same(names(events.server, 'sent', 'handshake'), ['ServerHello', 'EncryptedExtensions', 'Finished']);

  // What one side traces as sent, the other traces as received: same headers, same contents.
  const recs = (evs: TraceEvent[], direction: string) => evs.filter((e) => e.direction === direction && e.kind === 'record');
  const sentByClient = recs(events.client, 'sent');
  const receivedByServer = recs(events.server, 'received');
  tt.equal(sentByClient.length, receivedByServer.length, 'as many records received as sent');
  tt.same(
    sentByClient.map((e) => [e.streamOffset, e.tree.value]),
    receivedByServer.map((e) => [e.streamOffset, e.tree.value]),
  );
  const total = wire.client.reduce((n, b) => n + b.length, 0);
  const last = sentByClient.at(-1)!;
  tt.equal(last.streamOffset! + last.tree.length, total, 'stream offsets add up to the bytes sent');

  const data = recs(events.client, 'sent').find((e) => e.tree.value === 'application data, 4 bytes')!;
  tt.ok(data, 'the application data record');
  tt.equal(data.tree.name, 'TLSCiphertext');
  tt.equal(at(data.tree, 'opaque_type').value, 'application_data (0x17)');
  tt.equal(at(data.tree, 'encrypted_record/TLSInnerPlaintext/type').value, 'application_data (0x17)', 'inner content type');
  tt.equal(at(data.tree, 'encrypted_record/TLSInnerPlaintext/zeros (padding)').length, 0);

  const paddedEvent = recs(events.client, 'received').find((e) => e.tree.name === 'TLSCiphertext' && at(e.tree, 'encrypted_record/TLSInnerPlaintext/zeros (padding)').length === 7);
  tt.ok(paddedEvent, 'the padded record shows its 7 bytes of padding');
  if (paddedEvent) tt.equal(at(paddedEvent.tree, 'encrypted_record').value, '28 bytes (AEAD tag 16)');

  const alert = recs(events.client, 'sent').at(-1)!;
  tt.equal(alert.tree.value, 'Alert: warning close_notify', 'alerts by name');
  tt.equal(at(alert.tree, 'encrypted_record/TLSInnerPlaintext/Alert/description').value, 'close_notify (0x00)');

  // Tracing changes nothing on the wire: the same handshake with the same randomness, without a tracer.
  const same = (traced: boolean): Uint8Array => {
    const r = withRandom(crypto, seededRandom(7));
    const c = Connection.client({ crypto: r, psks: [psk], ...(traced ? { trace: createTracer(() => {}) } : {}) });
    return c.takeOutput()!;
  };
  tt.same(same(true), same(false), 'the same bytes with and without a tracer');
});

t.test('malformed bytes are shown, never thrown', async (tt) => {
  const raw = value(step('3', 'client', 'construct a ClientHello handshake message'), 'ClientHello');
  const cut = raw.slice(0, 60);
  cut[3] = 56; // the length says 56: the body ends in the middle of the extensions' length
  const tree = dissectHandshake(cut);
  tt.match(JSON.stringify(tree), /"name":"malformed"/);
  tt.equal(at(tree, 'body/random').value, 'cb34ecb1e78163ba1c38c6dacb196a6dffa21a8d9912ec18a2ef6283024dece7', 'what parses is still shown');
  const junk = dissectHandshake(fromHex('02000003ffffff'));
  tt.match(JSON.stringify(junk), /malformed/);
  const alert = dissectRecord(fromHex('1503030003'), { protected: false, opened: true, type: ContentType.alert, content: fromHex('02280a'), paddingLength: 0 });
  tt.match(JSON.stringify(alert), /an alert is 2 bytes, this one 3/);
  // Any prefix of a message, the empty one too (dissectHandshake used to throw on no bytes at all).
  for (let n = 0; n <= 7; n++) tt.match(JSON.stringify(dissectHandshake(fromHex('02000003ffffff').subarray(0, n))), /malformed/, `${n} bytes: malformed, not thrown`);
  tt.doesNotThrow(() => dissectRecord(fromHex('16'), { protected: false, opened: true, type: ContentType.handshake, content: new Uint8Array(0), paddingLength: 0 }));
});

t.test('CLI: --trace on the client, --trace-json on the server, secrets only with --keylog', async (tt) => {
  const server = spawnQkdTls(tt, ['server', '--listen', '127.0.0.1:0', '--psk', PSK_HEX, '--identity', PSK_IDENTITY, '--trace-json', '--json']);
  const text = await server.waitFor(/"event":"listening".*\n/, WAIT, 'stderr');
  const port = /127\.0\.0\.1:(\d+)/.exec(text)![1];
  const run = async (extra: string[]) => {
    const client = spawnQkdTls(tt, ['client', '--connect', `127.0.0.1:${port}`, '--psk', PSK_HEX, '--identity', PSK_IDENTITY, '--trace', ...extra]);
    client.write('hello\n');
    client.end();
    const exit = await client.waitExit(WAIT);
    tt.equal(exit.code, 0, client.transcript());
    return client;
  };
  const plain = await run([]);
  tt.equal(plain.stdout, 'hello\n');
  tt.match(plain.stderr, />> sent message @0: ClientHello/);
  tt.match(plain.stderr, /<< received record @\d+: TLSCiphertext \(handshake: EncryptedExtensions, Finished\)/);
  tt.match(plain.stderr, /identity: 636c69656e7431 \("client1"\)/, 'the PSK identity');
  tt.match(plain.stderr, /obfuscated_ticket_age: 0 \(0x00000000\)/);
  tt.match(plain.stderr, /binder: [0-9a-f]{64}/, 'the binder');
  tt.match(plain.stderr, /KeyShareEntry: x25519/);
  tt.match(plain.stderr, /\[\d{4}\+1\] type: application_data \(0x17\)/, 'the inner content type');
  tt.match(plain.stderr, /zeros \(padding\): 0/);
  tt.match(plain.stderr, /Alert: warning close_notify/);
  tt.notMatch(plain.stderr, /TRAFFIC_SECRET|secret/i, 'no secret without --keylog');

  const keylogDir = await import('node:fs/promises').then((fs) => fs.mkdtemp('/tmp/qkd-tls-trace-'));
  tt.teardown(() => import('node:fs/promises').then((fs) => fs.rm(keylogDir, { recursive: true, force: true })));
  const withKeys = await run(['--keylog', `${keylogDir}/keys.log`]);
  tt.match(withKeys.stderr, /\*\* secret CLIENT_TRAFFIC_SECRET_0 \(from the key log\)/, 'secrets with --keylog');

  await server.waitFor((s) => (s.match(/"event":"handshake"/g) ?? []).length >= 2, WAIT, 'stderr');
  const traces = jsonEvents(server.stderr).filter((e) => e.event === 'trace');
  tt.ok(traces.length > 10, `${traces.length} JSON trace lines`);
  const first = traces[0] as unknown as TraceEvent & { connection: string };
  tt.equal(first.direction, 'received');
  tt.equal(first.kind, 'record');
  tt.match(first.connection, /^127\.0\.0\.1:\d+$/, 'each line names its connection');
  const hello = traces.find((e) => e.kind === 'handshake') as unknown as TraceEvent;
  tt.equal(hello.tree.name, 'ClientHello');
  tt.equal(at(hello.tree, 'body/legacy_version').value, 'TLS 1.2 (0x0303)');
  tt.notMatch(server.stderr, /TRAFFIC_SECRET/, 'the server had no key log: no secrets');
});

t.test('CLI: server --websocket --trace names each connection by its peer address', async (tt) => {
  const { WebSocket: WsClient } = await import('ws');
  const { webSocketByteStreams } = await import('../lib/transport/websocket.js');
  const { tlsClientOverStreams } = await import('../lib/transport/streams.js');
  const { nobleProvider } = await import('../lib/crypto/noble.js');
  const server = spawnQkdTls(tt, ['server', '--websocket', '--listen', '127.0.0.1:0', '--psk', PSK_HEX, '--identity', PSK_IDENTITY, '--trace-json', '--json']);
  const text = await server.waitFor(/"event":"listening".*\n/, WAIT, 'stderr');
  const port = /127\.0\.0\.1:(\d+)/.exec(text)![1];
  const ws = new WsClient(`ws://127.0.0.1:${port}/`);
  await new Promise((resolve, reject) => {
    ws.once('open', resolve);
    ws.once('error', reject);
  });
  const conn = tlsClientOverStreams(webSocketByteStreams(ws as unknown as WebSocket), { crypto: nobleProvider, psks: [{ identity: utf8(PSK_IDENTITY), secret: fromHex(PSK_HEX), hash: 'SHA-256' }] });
  await conn.handshake;
  const w = conn.writable.getWriter();
  await w.write(utf8('hello'));
  await w.close();
  for await (const _ of conn.readable as unknown as AsyncIterable<Uint8Array>);
  await server.waitFor(/"event":"handshake"/, WAIT, 'stderr');
  const traces = jsonEvents(server.stderr).filter((e) => e.event === 'trace') as unknown as { connection: string }[];
  tt.ok(traces.length > 5, `${traces.length} JSON trace lines`);
  tt.ok(
    traces.every((e) => /^127\.0\.0\.1:\d+$/.test(e.connection)),
    `every line names the WebSocket's peer (first: ${traces[0]?.connection})`,
  );
});

t.test('CLI: server --trace-json --keylog names the connection of each secret too', async (tt) => {
  // Every JSON trace line of a server names its connection; the secrets (from the key log) were written without
  // one, so with several connections a reader could not tell whose secret a line held.
  const fs = await import('node:fs/promises');
  const dir = await fs.mkdtemp('/tmp/qkd-tls-trace-');
  tt.teardown(() => fs.rm(dir, { recursive: true, force: true }));
  const server = spawnQkdTls(tt, ['server', '--listen', '127.0.0.1:0', '--psk', PSK_HEX, '--identity', PSK_IDENTITY, '--trace-json', '--json', '--keylog', `${dir}/keys.log`]);
  const text = await server.waitFor(/"event":"listening".*\n/, WAIT, 'stderr');
  const port = /127\.0\.0\.1:(\d+)/.exec(text)![1];
  const client = spawnQkdTls(tt, ['client', '--connect', `127.0.0.1:${port}`, '--psk', PSK_HEX, '--identity', PSK_IDENTITY]);
  client.write('hello\n');
  client.end();
  tt.equal((await client.waitExit(WAIT)).code, 0, client.transcript());
  await server.waitFor(/"event":"handshake"/, WAIT, 'stderr');
  const traces = jsonEvents(server.stderr).filter((e) => e.event === 'trace') as unknown as (TraceEvent & { connection?: string })[];
  const secrets = traces.filter((e) => e.kind === 'secret');
  tt.same(secrets.map((e) => e.tree.name).sort(), ['CLIENT_HANDSHAKE_TRAFFIC_SECRET', 'CLIENT_TRAFFIC_SECRET_0', 'EXPORTER_SECRET', 'SERVER_HANDSHAKE_TRAFFIC_SECRET', 'SERVER_TRAFFIC_SECRET_0'], 'the secrets of the key log');
  const connection = traces[0].connection;
  tt.match(connection, /^127\.0\.0\.1:\d+$/);
  tt.same(
    traces.filter((e) => e.connection !== connection).map((e) => `${e.kind} ${e.tree.name}`),
    [],
    'every trace line, secrets included, names the one connection',
  );
  const logged = (await fs.readFile(`${dir}/keys.log`, 'latin1')).trim().split('\n');
  tt.same(secrets.map((e) => `${e.tree.name} ${e.tree.children?.[0]?.value} ${e.tree.value}`), logged, 'the same lines as the key-log file, in order');
});

t.test('extensions of other handshakes are named in a ClientHello, not shown as unknown', async (tt) => {
  // ec_point_formats (RFC 8422, sent by clients that offer TLS 1.2 too), compress_certificate (RFC 8879) and
  // encrypted_client_hello (ECH): a trace of another stack's ClientHello showed them as "unknown".
  const extra = [
    { type: 11, data: fromHex('0100') },
    { type: 27, data: fromHex('020002') },
    { type: 0xfe0d, data: fromHex('00') },
  ];
  const client = Connection.client({ crypto, psks: [makePsk('names')], dangerousClientHelloExtensions: (list) => [...extra, ...list] });
  const records = client.takeOutput()!;
  const tree = dissectHandshake(records.subarray(5, 5 + ((records[3] << 8) | records[4])));
  const names = (tree.children ?? [])
    .find((n) => n.name === 'body')!
    .children!.find((n) => n.name === 'extensions')!
    .children!.filter((n) => n.name === 'Extension')
    .map((n) => n.value);
  tt.same(names.slice(0, 3), ['ec_point_formats', 'compress_certificate', 'encrypted_client_hello'], 'named');
  tt.notOk(JSON.stringify(tree).includes('malformed'), 'nothing malformed');
});
