/**
 * X25519MLKEM768 (draft-ietf-tls-ecdhe-mlkem) with a QKD-style external PSK, against Node 24's TLS (OpenSSL
 * 3.5, the test-only `node` peer of test/peers), both directions, on both of qkd-tls's providers, echo checked:
 * the hybrid alone (and SecP256r1MLKEM768, SecP384r1MLKEM1024), the browser-like pair of shares (Node 24's default ClientHello sends X25519MLKEM768 and
 * X25519), the server's preference, and a HelloRetryRequest to each hybrid, from either side.
 *
 * Node's external PSK goes through OpenSSL's TLS 1.2-style callback, which binds the key to SHA-256: only the
 * SHA-256 suites work. A Node server socket's getEphemeralKeyInfo() is null, so for Node-as-server the group is
 * read from our client's handshake; a Node client reports it (getEphemeralKeyInfo().name).
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import type { ClientOptions } from '../lib/config/options.js';
import { createNobleProvider } from '../lib/crypto/noble.js';
import { createNodeProvider } from '../lib/crypto/node.js';
import type { CryptoProvider, GroupName } from '../lib/crypto/provider.js';
import { libraryClient, libraryEchoServer } from './helpers/library.js';
import { PSK_HEX, PSK_IDENTITY, readBytes, spawnPeer, type Peer, type TestLike, testPeer, withTimeout } from './helpers/peers.js';

const node24 = testPeer(t, 'node');
const SUBTEST = { timeout: 30_000, skip: node24.skip };
const WAIT = 10_000;
const PROVIDERS: [string, () => CryptoProvider][] = [
  ['node', () => createNodeProvider()],
  ['noble', () => createNobleProvider()],
];

/**
 * The Node 24 side. `server CURVES`: an echo server printing `LISTENING port`. `client PORT CURVES|default`: sends
 * one line, prints what came back and its key-exchange info as one JSON line, closes.
 */
const PEER_SCRIPT = `
const tls = require('node:tls');
const [mode, a, b] = process.argv.slice(2);
const key = Buffer.from(process.env.PSK_HEX, 'hex');
const identity = process.env.PSK_IDENTITY;
const common = { minVersion: 'TLSv1.3', ciphers: 'TLS_AES_128_GCM_SHA256:TLS_CHACHA20_POLY1305_SHA256' };
if (mode === 'server') {
  const server = tls.createServer({ ...common, ecdhCurve: a, pskCallback: (_s, id) => (id === identity ? key : null) }, (s) => s.pipe(s));
  server.on('tlsClientError', (e) => console.log('TLS_CLIENT_ERROR ' + e.message));
  server.listen(0, '127.0.0.1', () => console.log('LISTENING ' + server.address().port));
} else {
  const opts = { ...common, host: '127.0.0.1', port: Number(a), pskCallback: () => ({ psk: key, identity }), checkServerIdentity: () => undefined };
  if (b !== 'default') opts.ecdhCurve = b;
  const s = tls.connect(opts, () => {
    s.write('hello from node ' + process.version + '\\n');
  });
  let got = '';
  s.on('data', (d) => {
    got += d;
    if (got.endsWith('\\n')) {
      console.log(JSON.stringify({ echo: got, key: s.getEphemeralKeyInfo(), cipher: s.getCipher().name, openssl: process.versions.openssl }));
      s.end();
    }
  });
  s.on('error', (e) => { console.log('ERROR ' + e.message); process.exitCode = 1; });
}
`;

async function peerScript(tt: TestLike): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'qkd-tls-node24-'));
  tt.teardown(() => rm(dir, { recursive: true, force: true }));
  const file = join(dir, 'peer.cjs');
  await writeFile(file, PEER_SCRIPT);
  return file;
}

const ENV = { PSK_HEX, PSK_IDENTITY };

async function node24Server(tt: TestLike, curves: string): Promise<{ peer: Peer; port: number }> {
  const peer = spawnPeer(tt, node24.path!, [await peerScript(tt), 'server', curves], { env: ENV });
  const out = await peer.waitFor(/LISTENING \d+/, WAIT, 'stdout');
  return { peer, port: Number(/LISTENING (\d+)/.exec(out)![1]) };
}

async function node24Client(tt: Tap, port: number, curves: string): Promise<{ echo: string; key: { name?: string } | null; cipher: string; openssl: string }> {
  const peer = spawnPeer(tt, node24.path!, [await peerScript(tt), 'client', String(port), curves], { env: ENV });
  const out = await peer.waitFor(/^\{.*\}$|ERROR/m, WAIT, 'stdout');
  const line = out.split('\n').find((l) => l.startsWith('{'));
  if (!line) throw new Error(`Node 24 client failed:\n${peer.transcript()}`);
  tt.equal((await peer.waitExit(WAIT)).code, 0, 'the Node 24 client exits 0');
  return JSON.parse(line);
}

async function echoThrough(tt: Tap, socket: Awaited<ReturnType<typeof libraryClient>>, line: string): Promise<void> {
  socket.write(line + '\n');
  tt.equal((await readBytes(socket, line.length + 1, WAIT)).toString('latin1'), line + '\n', 'Node 24 echoed our line');
  socket.end();
  await withTimeout(new Promise((resolve) => socket.once('close', resolve)), WAIT, 'the client to close');
}
type Tap = Parameters<Parameters<typeof t.test>[0]>[0];

const CLIENT_CASES: { name: string; curves: string; options: Partial<ClientOptions>; group: GroupName; retry: boolean }[] = [
  { name: 'the hybrid alone', curves: 'X25519MLKEM768', options: { groups: ['X25519MLKEM768'] }, group: 'X25519MLKEM768', retry: false },
  {
    name: 'two shares, Node prefers the hybrid',
    curves: 'X25519MLKEM768:X25519',
    options: { groups: ['X25519MLKEM768', 'x25519'], keyShareGroups: ['X25519MLKEM768', 'x25519'] },
    group: 'X25519MLKEM768',
    retry: false,
  },
  {
    name: 'two shares, Node accepts x25519 only',
    curves: 'X25519',
    options: { groups: ['X25519MLKEM768', 'x25519'], keyShareGroups: ['X25519MLKEM768', 'x25519'] },
    group: 'x25519',
    retry: false,
  },
  { name: 'an x25519 share, Node asks for the hybrid', curves: 'X25519MLKEM768', options: { groups: ['x25519', 'X25519MLKEM768'] }, group: 'X25519MLKEM768', retry: true },
  // The NIST hybrids put the ECDH part first (the draft's order differs from X25519MLKEM768's).
  { name: 'SecP256r1MLKEM768', curves: 'SecP256r1MLKEM768', options: { groups: ['SecP256r1MLKEM768'] }, group: 'SecP256r1MLKEM768', retry: false },
  { name: 'SecP384r1MLKEM1024', curves: 'SecP384r1MLKEM1024', options: { groups: ['SecP384r1MLKEM1024'] }, group: 'SecP384r1MLKEM1024', retry: false },
  // Our second ClientHello with a NIST hybrid's share, after Node's HelloRetryRequest.
  { name: 'an x25519 share, Node asks for SecP256r1MLKEM768', curves: 'SecP256r1MLKEM768', options: { groups: ['x25519', 'SecP256r1MLKEM768'] }, group: 'SecP256r1MLKEM768', retry: true },
  { name: 'an x25519 share, Node asks for SecP384r1MLKEM1024', curves: 'SecP384r1MLKEM1024', options: { groups: ['x25519', 'SecP384r1MLKEM1024'] }, group: 'SecP384r1MLKEM1024', retry: true },
];

for (const [pname, provider] of PROVIDERS) {
  for (const c of CLIENT_CASES) {
    t.test(`qkd-tls client (${pname}) -> Node 24 server: ${c.name}`, SUBTEST, async (tt) => {
      const { peer, port } = await node24Server(tt, c.curves);
      const socket = await libraryClient(tt, port, { crypto: provider(), ...c.options });
      const info = socket.handshake!;
      tt.equal(info.group, c.group, `the ServerHello names ${c.group} (Node server sockets cannot report it)`);
      tt.equal(info.helloRetry, c.retry, c.retry ? 'after a HelloRetryRequest' : 'without a HelloRetryRequest');
      tt.equal(info.kex, 'psk_dhe_ke');
      await echoThrough(tt, socket, `qkd-tls ${pname} over ${c.group}`);
      tt.notMatch(peer.stdout, 'TLS_CLIENT_ERROR', 'Node 24 reports no TLS error');
    });
  }

  t.test(`Node 24 client (X25519MLKEM768) -> qkd-tls server (${pname})`, SUBTEST, async (tt) => {
    const { port, sockets } = await libraryEchoServer(tt, { crypto: provider() });
    const r = await node24Client(tt, port, 'X25519MLKEM768');
    tt.match(r.echo, /^hello from node v24\./, 'the echo came back to Node 24');
    tt.equal(r.key?.name, 'X25519MLKEM768', 'Node 24 reports X25519MLKEM768');
    tt.equal(r.cipher, 'TLS_AES_128_GCM_SHA256');
    tt.equal(sockets[0]?.handshake?.group, 'X25519MLKEM768', 'our server reports X25519MLKEM768');
    tt.comment(`peer: Node 24 with OpenSSL ${r.openssl}`);
  });

  for (const g of ['SecP256r1MLKEM768', 'SecP384r1MLKEM1024'] as const) {
    t.test(`Node 24 client (${g}) -> qkd-tls server (${pname})`, SUBTEST, async (tt) => {
      const { port, sockets } = await libraryEchoServer(tt, { crypto: provider() });
      const r = await node24Client(tt, port, g);
      tt.match(r.echo, /^hello from node v24\./, 'the echo came back to Node 24');
      tt.equal(r.key?.name, g, `Node 24 reports ${g}`);
      tt.equal(sockets[0]?.handshake?.group, g, `our server reports ${g}`);
    });
  }

  // Our server's HelloRetryRequest for each hybrid, answered by OpenSSL 3.5: its first ClientHello carries an X25519
  // share only (a leading '*' marks the groups it sends shares for), the second one the hybrid's share, in the
  // draft's layout (ECDH first for the NIST hybrids), which our server then answers.
  for (const g of ['X25519MLKEM768', 'SecP256r1MLKEM768', 'SecP384r1MLKEM1024'] as const) {
    t.test(`Node 24 client (an X25519 share, ${g} listed) -> qkd-tls server (${pname}) wanting ${g}: a HelloRetryRequest`, SUBTEST, async (tt) => {
      const { port, sockets } = await libraryEchoServer(tt, { crypto: provider(), groups: [g] });
      const r = await node24Client(tt, port, `*X25519:${g}`);
      tt.match(r.echo, /^hello from node v24\./, 'the echo came back to Node 24');
      tt.equal(r.key?.name, g, `Node 24 reports ${g}`);
      tt.equal(sockets[0]?.handshake?.group, g, `our server reports ${g}`);
      tt.equal(sockets[0]?.handshake?.helloRetry, true, 'after a HelloRetryRequest');
    });
  }

  t.test(`Node 24 client (its default groups, two shares) -> qkd-tls server (${pname}): the hybrid, no retry`, SUBTEST, async (tt) => {
    const { port, sockets } = await libraryEchoServer(tt, { crypto: provider() });
    const r = await node24Client(tt, port, 'default');
    tt.match(r.echo, /^hello from node v24\./, 'the echo came back');
    tt.equal(sockets[0]?.handshake?.group, 'X25519MLKEM768', 'a default qkd-tls server prefers the hybrid');
    tt.equal(sockets[0]?.handshake?.helloRetry, false, 'from the share Node sent, without a retry');
    tt.equal(r.key?.name, 'X25519MLKEM768');
  });

  t.test(`Node 24 client (shares for X25519MLKEM768 and X25519) -> qkd-tls server (${pname}) preferring x25519`, SUBTEST, async (tt) => {
    const { port, sockets } = await libraryEchoServer(tt, { crypto: provider(), groups: ['x25519', 'X25519MLKEM768'] });
    // OpenSSL 3.5's group-list syntax: a leading '*' asks for a key share for that group in the first ClientHello.
    const r = await node24Client(tt, port, '*X25519MLKEM768:*X25519');
    tt.match(r.echo, /^hello from node v24\./, 'the echo came back');
    tt.equal(sockets[0]?.handshake?.group, 'x25519', 'the server’s preference wins among the shares sent');
    tt.equal(r.key?.name, 'X25519');
  });
}
