/**
 * psk_dhe_ke with the post-quantum hybrids and the ffdhe groups, over both providers: every group end to end,
 * the browser-like key-share strategy (two shares, the server's preference, a HelloRetryRequest when needed),
 * hostile shares from either peer ending in the right alert and named reason, and a 1216-byte-share
 * ClientHello that arrives in many small records and small TCP writes.
 */
import { connect as netConnect } from 'node:net';
import t from 'tap';
import { tamperedShares } from './helpers/tampered-groups.js';
import { concat, utf8 } from '../lib/codec/bytes.js';
import { ContentType } from '../lib/codec/enums.js';
import type { ClientOptions, ServerOptions } from '../lib/config/options.js';
import { Connection } from '../lib/connection/connection.js';
import { FFDHE_SPECS, bigIntToBytes } from '../lib/crypto/ffdhe.js';
import { createNobleProvider } from '../lib/crypto/noble.js';
import { createNodeProvider } from '../lib/crypto/node.js';
import type { CryptoProvider, GroupName } from '../lib/crypto/provider.js';
import type { Reason } from '../lib/errors.js';
import { selectKeyShare } from '../lib/handshake/server.js';
import { NamedGroup } from '../lib/codec/enums.js';
import { createServer } from '../lib/transport/node.js';
import { firstHandshakeMessage, handshake, makePsk, plainRecord, seededRandom, splitRecords, type Pair } from './helpers/pair.js';
import { decodeClientHello } from '../lib/messages/hello.js';
import { once, withTimeout } from './helpers/peers.js';

const PROVIDERS: [string, (seed: number) => CryptoProvider][] = [
  ['noble', (seed) => createNobleProvider({ random: seededRandom(seed) })],
  ['node', (seed) => createNodeProvider({ random: seededRandom(seed) })],
];
const NEW_GROUPS: GroupName[] = ['X25519MLKEM768', 'SecP256r1MLKEM768', 'SecP384r1MLKEM1024', 'ffdhe2048', 'ffdhe3072', 'ffdhe4096', 'ffdhe6144', 'ffdhe8192'];

function pair(
  crypto: [CryptoProvider, CryptoProvider],
  client: Partial<ClientOptions> = {},
  server: Partial<ServerOptions> = {},
): Pair {
  const psk = makePsk('groups');
  return handshake({ crypto: crypto[0], psks: [psk], ...client }, { crypto: crypto[1], psks: [psk], ...server });
}

function echoes(tt: Tap, p: Pair, what: string): void {
  p.client.write(utf8(`ping ${what}`));
  p.pump();
  p.server.write(p.received('server'));
  p.pump();
  tt.equal(new TextDecoder().decode(p.received('client')), `ping ${what}`, `${what}: data echoed`);
}
type Tap = Parameters<Parameters<typeof t.test>[0]>[0];

t.test('every new group completes psk_dhe_ke, both providers on each side', async (tt) => {
  for (const [cn, mkClient] of PROVIDERS) {
    for (const [sn, mkServer] of PROVIDERS) {
      for (const g of NEW_GROUPS) {
        // The big ffdhe groups once (noble client, node server) to keep the run short; the rest in all four pairings.
        if ((g === 'ffdhe6144' || g === 'ffdhe8192' || g === 'ffdhe4096') && !(cn === 'noble' && sn === 'node')) continue;
        const what = `${g}, ${cn} client, ${sn} server`;
        const p = pair([mkClient(1), mkServer(2)], { groups: [g] }, { groups: [g] });
        tt.equal(p.error('client'), undefined, `${what}: client ok`);
        tt.equal(p.error('server'), undefined, `${what}: server ok`);
        tt.equal(p.info('client')?.group, g, `${what}: client reports ${g}`);
        tt.equal(p.info('server')?.group, g, `${what}: server reports ${g}`);
        tt.equal(p.info('client')?.helloRetry, false, `${what}: no retry`);
        echoes(tt, p, what);
      }
    }
  }
});

t.test('key-share strategy: two shares, server preference, retry only when needed', async (tt) => {
  for (const [name, mk] of PROVIDERS) {
    const browser: Partial<ClientOptions> = { groups: ['X25519MLKEM768', 'x25519', 'secp256r1'], keyShareGroups: ['X25519MLKEM768', 'x25519'] };
    // Default server groups prefer the hybrid.
    let p = pair([mk(3), mk(4)], browser);
    tt.equal(p.info('server')?.group, 'X25519MLKEM768', `${name}: a default server picks the hybrid from two shares`);
    tt.equal(p.info('client')?.helloRetry, false, `${name}: without a retry`);
    // A server that prefers x25519 takes that share instead.
    p = pair([mk(3), mk(4)], browser, { groups: ['x25519', 'X25519MLKEM768'] });
    tt.equal(p.info('client')?.group, 'x25519', `${name}: a server preferring x25519 picks it`);
    // A client that sends x25519 only but lists the hybrid: the share present wins, no round trip.
    p = pair([mk(3), mk(4)], { groups: ['x25519', 'X25519MLKEM768'] });
    tt.equal(p.info('client')?.group, 'x25519', `${name}: a present share beats a preferred group without one`);
    tt.equal(p.info('client')?.helloRetry, false, `${name}: no retry for it`);
    // A server accepting only the hybrid asks for it with a HelloRetryRequest.
    p = pair([mk(3), mk(4)], { groups: ['x25519', 'X25519MLKEM768'] }, { groups: ['X25519MLKEM768'] });
    tt.equal(p.info('client')?.group, 'X25519MLKEM768', `${name}: the retry gets the hybrid`);
    tt.equal(p.info('client')?.helloRetry, true, `${name}: after a HelloRetryRequest`);
    echoes(tt, p, `${name} hybrid after retry`);
    // And the other way round: only ffdhe2048 on the server, x25519 share from the client.
    p = pair([mk(3), mk(4)], { groups: ['x25519', 'ffdhe2048'] }, { groups: ['ffdhe2048'] });
    tt.equal(p.info('server')?.group, 'ffdhe2048', `${name}: the retry gets ffdhe2048`);
    // A tlsfuzzer-like client offering ffdhe2048 alone meets a default server.
    p = pair([mk(3), mk(4)], { groups: ['ffdhe2048'] });
    tt.equal(p.info('server')?.group, 'ffdhe2048', `${name}: a default server accepts ffdhe2048`);
    // No group in common.
    p = pair([mk(3), mk(4)], { groups: ['ffdhe8192'] });
    tt.equal(p.error('server')?.reason, 'NoCommonGroup', `${name}: ffdhe8192 is not a default server group`);
  }
});

t.test('selectKeyShare: the named step of the server flight', async (tt) => {
  const share = (g: GroupName) => ({ group: NamedGroup[g], keyExchange: new Uint8Array(1) });
  const ch = { keyShares: [share('x25519')], supportedGroups: [NamedGroup.X25519MLKEM768, NamedGroup.x25519] };
  tt.same(selectKeyShare(['X25519MLKEM768', 'x25519'], ch), { group: 'x25519', clientShare: share('x25519') }, 'a present share first');
  tt.same(selectKeyShare(['X25519MLKEM768'], ch), { group: 'X25519MLKEM768', retryGroup: 'X25519MLKEM768' }, 'else a retry for our preferred');
  tt.equal(selectKeyShare(['ffdhe2048'], ch), undefined, 'else nothing');
  tt.equal(selectKeyShare(['x25519'], { keyShares: undefined, supportedGroups: undefined }), undefined, 'no extensions, nothing');
});

t.test('hostile shares end in illegal_parameter with a named reason, from either side, on both providers', async (tt) => {
  const p2048 = FFDHE_SPECS.ffdhe2048;
  const cases: { group: GroupName; side: 'client' | 'server'; edit: (s: Uint8Array) => Uint8Array; reason: Reason; what: string }[] = [
    { group: 'X25519MLKEM768', side: 'client', edit: (s) => s.subarray(0, 1215), reason: 'InvalidPeerKeyShare', what: 'client share of 1215 bytes' },
    { group: 'X25519MLKEM768', side: 'client', edit: (s) => concat(s, new Uint8Array(1)), reason: 'InvalidPeerKeyShare', what: 'client share of 1217 bytes' },
    {
      group: 'X25519MLKEM768',
      side: 'client',
      edit: (s) => {
        const b = Uint8Array.from(s);
        b[0] = 0xff;
        b[1] |= 0x0f;
        return b;
      },
      reason: 'MlKemEncapsulationKeyNotReduced',
      what: 'encapsulation key failing the modulus check',
    },
    { group: 'X25519MLKEM768', side: 'client', edit: (s) => concat(s.subarray(0, 1184), new Uint8Array(32)), reason: 'KeyExchangeZeroSecret', what: 'client X25519 part all zero (low order)' },
    { group: 'X25519MLKEM768', side: 'server', edit: (s) => s.subarray(0, 1119), reason: 'InvalidPeerKeyShare', what: 'ciphertext share of 1119 bytes' },
    { group: 'X25519MLKEM768', side: 'server', edit: (s) => concat(s, new Uint8Array(1)), reason: 'InvalidPeerKeyShare', what: 'ciphertext share of 1121 bytes' },
    { group: 'X25519MLKEM768', side: 'server', edit: (s) => concat(s.subarray(0, 1088), new Uint8Array(32)), reason: 'KeyExchangeZeroSecret', what: 'server X25519 part all zero' },
    { group: 'SecP256r1MLKEM768', side: 'server', edit: (s) => concat(Uint8Array.of(2), s.subarray(1)), reason: 'InvalidPeerKeyShare', what: 'server P-256 part not uncompressed' },
    { group: 'ffdhe2048', side: 'client', edit: () => bigIntToBytes(1n, 256), reason: 'FfdhePublicValueOutOfRange', what: 'client Y = 1' },
    { group: 'ffdhe2048', side: 'client', edit: () => bigIntToBytes(p2048.prime - 1n, 256), reason: 'FfdhePublicValueOutOfRange', what: 'client Y = p-1' },
    { group: 'ffdhe2048', side: 'client', edit: (s) => s.subarray(1), reason: 'InvalidPeerKeyShare', what: 'client Y not padded (255 bytes)' },
    { group: 'ffdhe2048', side: 'server', edit: () => bigIntToBytes(1n, 256), reason: 'FfdhePublicValueOutOfRange', what: 'server Y = 1' },
    { group: 'ffdhe2048', side: 'server', edit: () => bigIntToBytes(p2048.prime - 1n, 256), reason: 'FfdhePublicValueOutOfRange', what: 'server Y = p-1' },
    { group: 'ffdhe2048', side: 'server', edit: () => new Uint8Array(256), reason: 'FfdhePublicValueOutOfRange', what: 'server Y = 0' },
  ];
  for (const [pn, mk] of PROVIDERS) {
    for (const c of cases) {
      const what = `${pn}: ${c.group} ${c.what}`;
      const client = c.side === 'client' ? tamperedShares(mk(5), c.group, { client: c.edit }) : mk(5);
      const server = c.side === 'server' ? tamperedShares(mk(6), c.group, { server: c.edit }) : mk(6);
      const p = pair([client, server], { groups: [c.group] }, { groups: [c.group] });
      const detector = c.side === 'client' ? 'server' : 'client';
      const err = p.error(detector);
      tt.equal(err?.reason, c.reason, `${what}: the ${detector} fails with ${c.reason}`);
      tt.equal(err?.alert, 'illegal_parameter', `${what}: illegal_parameter`);
      const other = p.error(detector === 'server' ? 'client' : 'server');
      tt.equal(other?.remote, true, `${what}: the peer receives the alert`);
      tt.equal(other?.alert, 'illegal_parameter', `${what}: the peer sees illegal_parameter`);
    }
  }
});

/** Re-frames a plaintext handshake flight into records of at most `size` bytes of fragment each. */
function reframe(flight: Uint8Array, size: number): Uint8Array {
  const out: Uint8Array[] = [];
  for (const r of splitRecords(flight)) {
    if (r.type !== ContentType.handshake) {
      out.push(r.bytes);
      continue;
    }
    for (let at = 0; at < r.fragment.length; at += size) out.push(plainRecord(r.type, r.fragment.subarray(at, at + size), 0x0301));
  }
  return concat(...out);
}

t.test('a ClientHello with a 1216-byte share, in 64-byte records fed 7 bytes at a time', async (tt) => {
  for (const [name, mk] of PROVIDERS) {
    const psk = makePsk('split');
    // Three shares (1216 + 32 + 65 bytes): the ClientHello outgrows a 1460-byte TCP segment.
    const groups: GroupName[] = ['X25519MLKEM768', 'x25519', 'secp256r1'];
    const client = Connection.client({ crypto: mk(8), psks: [psk], groups, keyShareGroups: groups });
    const server = Connection.server({ crypto: mk(9), psks: [psk] });
    const first = client.takeOutput()!;
    tt.ok(first.length > 1460, `${name}: the ClientHello (${first.length} bytes) is larger than one Ethernet TCP segment`);
    const small = reframe(first, 64);
    tt.ok(splitRecords(small).length > 20, `${name}: split into ${splitRecords(small).length} records`);
    for (let at = 0; at < small.length; at += 7) {
      server.receive(small.subarray(at, at + 7));
      if (at + 7 < small.length) tt.equal(server.takeOutput(), null, `${name}: nothing answered before the last byte (${at})`);
    }
    const answer = server.takeOutput();
    tt.ok(answer && answer.length > 0, `${name}: the server answers once the ClientHello is whole`);
    client.receive(answer!);
    server.receive(client.takeOutput()!);
    const hs = client.takeEvents().find((e) => e.type === 'handshake');
    tt.equal(hs?.type === 'handshake' ? hs.info.group : undefined, 'X25519MLKEM768', `${name}: the handshake completes with the hybrid`);
    tt.ok(server.takeEvents().some((e) => e.type === 'handshake'), `${name}: the server completes too`);
  }
});

t.test('the same ClientHello over TCP in small records and small writes, to the Node transport', async (tt) => {
  const psk = makePsk('tcp split');
  const server = createServer({ psks: [psk] }, (socket) => socket.pipe(socket));
  tt.teardown(() => {
    server.destroyAll();
    server.close();
  });
  await withTimeout(new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve)), 10_000, 'listen');
  const groups: GroupName[] = ['X25519MLKEM768', 'x25519', 'secp256r1'];
  const conn = Connection.client({ crypto: createNodeProvider(), psks: [psk], groups, keyShareGroups: groups });
  const socket = netConnect({ host: '127.0.0.1', port: server.address().port });
  tt.teardown(() => socket.destroy());
  socket.setNoDelay(true);
  await once(socket, 'connect', 10_000);
  const flight = reframe(conn.takeOutput()!, 100);
  // Small writes, each on its own turn of the event loop (with Nagle off, each leaves as its own segment).
  for (let at = 0; at < flight.length; at += 50) {
    socket.write(flight.subarray(at, at + 50));
    await new Promise((resolve) => setImmediate(resolve));
  }
  let echoed = '';
  const done = new Promise<void>((resolve, reject) => {
    socket.on('data', (chunk: Buffer) => {
      conn.receive(new Uint8Array(chunk));
      for (const e of conn.takeEvents()) {
        if (e.type === 'handshake') conn.write(utf8('over tcp'));
        if (e.type === 'data') echoed += new TextDecoder().decode(e.data);
        if (e.type === 'error') reject(e.error);
      }
      const out = conn.takeOutput();
      if (out) socket.write(out);
      if (echoed === 'over tcp') resolve();
    });
  });
  await withTimeout(done, 10_000, 'the echo');
  tt.equal(echoed, 'over tcp', 'handshake with the hybrid and echo over TCP');
});

t.test('the key shares follow the order of supported_groups, whatever order keyShareGroups names them in', async (tt) => {
  // RFC 8446 §4.2.8: each KeyShareEntry "MUST correspond to a group offered in the "supported_groups" extension
  // and MUST appear in the same order". client.ts sent the shares in keyShareGroups' order.
  const psk = makePsk('share-order');
  const client = Connection.client({ crypto: createNodeProvider(), psks: [psk], groups: ['X25519MLKEM768', 'x25519', 'secp256r1'], keyShareGroups: ['secp256r1', 'X25519MLKEM768'] });
  const ch = decodeClientHello(firstHandshakeMessage(splitRecords(client.takeOutput()!)));
  tt.same(ch.keyShares?.map((k) => k.group), [NamedGroup.X25519MLKEM768, NamedGroup.secp256r1], 'X25519MLKEM768 then secp256r1, as in supported_groups');
  tt.same(ch.supportedGroups, [NamedGroup.X25519MLKEM768, NamedGroup.x25519, NamedGroup.secp256r1], 'supported_groups as configured');
});
