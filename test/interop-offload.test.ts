/**
 * The WebCrypto record offload against other TLS stacks: the streams transport (lib/transport/streams.ts) over
 * a Node socket turned into WHATWG streams (Duplex.toWeb), against `openssl s_server -psk -nocert -rev` and
 * `gnutls-serv --echo` with a PSK, on 127.0.0.1. Bulk data both ways with several records in flight, a
 * KeyUpdate we request in the middle (the peer answers with its own, which our offload hands back to the
 * connection), then close_notify. Every record we send is checked to have been sealed by WebCrypto, and records
 * of the peer's, before its KeyUpdate and after it (under its new key), to have been opened by WebCrypto.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import * as net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Duplex } from 'node:stream';
import t from 'tap';
import { nodeProvider } from '../lib/crypto/node.js';
import type { SupportedSuiteName } from '../lib/suites.js';
import { tlsClientOverStreams, type ByteStreamPair, type TlsStreams } from '../lib/transport/streams.js';
import { PEER_PSK } from './helpers/library.js';
import { gnutlsServer, missingPrograms, opensslServer, PSK_HEX, PSK_IDENTITY, reversedLine, type Tap, withTimeout } from './helpers/peers.js';

const WAIT = 15_000;
const LINES = 160;
const LINE = 1_000;

/** Lines of printable text (s_server -rev works line by line). */
function lines(seed: number): string[] {
  return Array.from({ length: LINES }, (_, i) => {
    let s = '';
    for (let j = 0; s.length < LINE; j++) s += String.fromCharCode(0x21 + ((i * 31 + j * 7 + seed) % 90));
    return s;
  });
}

async function connectStreams(port: number, suite: SupportedSuiteName): Promise<{ tls: TlsStreams; socket: net.Socket }> {
  const socket = net.connect({ port, host: '127.0.0.1' });
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('error', reject);
  });
  const web = Duplex.toWeb(socket) as unknown as ByteStreamPair;
  const tls = tlsClientOverStreams(web, { crypto: nodeProvider, psks: [PEER_PSK], suites: [suite], offload: true, recordsInFlight: 6 });
  return { tls, socket };
}

/** Reads until `expected` bytes arrived; returns them as text. `at.then` runs once `at.bytes` have arrived. */
async function readText(tls: TlsStreams, expected: number, at?: { bytes: number; then: () => void }): Promise<string> {
  const reader = tls.readable.getReader();
  const chunks: Buffer[] = [];
  let n = 0;
  while (n < expected) {
    const { value, done } = await reader.read();
    if (done) break;
    chunks.push(Buffer.from(value));
    n += value.length;
    if (at && n >= at.bytes) {
      at.then();
      at = undefined;
    }
  }
  reader.releaseLock();
  return Buffer.concat(chunks).toString('latin1');
}

/** Writes the lines in two halves with a KeyUpdate (update_requested) between them; checks what comes back. */
async function exchange(t: Tap, tls: TlsStreams, suite: SupportedSuiteName, sent: string[], expect: (line: string) => string): Promise<void> {
  const info = await withTimeout(tls.handshake, WAIT, 'the handshake');
  t.equal(info.suite, suite, `handshake: ${info.suite}, ${info.kex}`);
  const writer = tls.writable.getWriter();
  const half = sent.length / 2;
  const expected = sent.map((l) => expect(l) + '\n').join('');
  // The answers to the first half come before the peer's KeyUpdate (it reads ours after the first half), the
  // others after it, under its new key: how many were opened by WebCrypto once the first half is read.
  const firstHalf = sent.slice(0, half).map((l) => expect(l) + '\n').join('').length;
  let openedBeforeUpdate = NaN;
  const reading = withTimeout(readText(tls, expected.length, { bytes: firstHalf, then: () => (openedBeforeUpdate = tls.offloaded.opened) }), WAIT, 'the answers');
  // Many small writes: s_server/gnutls-serv answer line by line, so several records are in flight both ways.
  for (const line of sent.slice(0, half)) await writer.write(Buffer.from(line + '\n', 'latin1'));
  tls.keyUpdate(true);
  for (const line of sent.slice(half)) await writer.write(Buffer.from(line + '\n', 'latin1'));
  const got = await reading;
  t.equal(got.length, expected.length, `${got.length} bytes came back`);
  t.ok(got === expected, 'every line came back as expected (compared byte for byte)');
  const events = tls.offloaded;
  t.ok(events.sealed >= LINES, `our records were sealed by WebCrypto (${events.sealed})`);
  t.ok(events.opened >= 1, `the peer's records were opened by WebCrypto (${events.opened})`);
  const afterUpdate = events.opened - openedBeforeUpdate;
  t.ok(afterUpdate > 0, `and after the peer's KeyUpdate too, under its new key (${afterUpdate} records of the ${half} answers)`);
  await writer.close();
}

// (AES-256-GCM goes with SHA-384, which these tools take only from session files; its records are covered by
// test/record-offload.test.ts.)
const suites: SupportedSuiteName[] = ['TLS_AES_128_GCM_SHA256'];

t.test('openssl s_server', { timeout: 60_000, skip: missingPrograms(t, 'openssl') }, async (t) => {
  for (const suite of suites) {
    t.test(`streams client with the offload -> openssl s_server -rev (${suite}, KeyUpdate both ways)`, async (t) => {
      const { peer, port } = await opensslServer(t, ['-psk', PSK_HEX, '-psk_identity', PSK_IDENTITY, '-nocert', '-naccept', '1', '-rev', '-msg'], WAIT);
      const { tls, socket } = await connectStreams(port, suite);
      t.teardown(() => socket.destroy());
      await exchange(t, tls, suite, lines(1), reversedLine);
      const exit = await peer.waitExit(WAIT);
      t.equal(exit.code, 0, 's_server exits 0 after the connection');
      t.match(peer.output, `Ciphersuite: ${suite}`, 's_server reports the suite');
      t.match(peer.output, /<<< TLS 1.3, Handshake \[length 0005\], KeyUpdate/, 's_server received our KeyUpdate');
      t.match(peer.output, />>> TLS 1.3, Handshake \[length 0005\], KeyUpdate/, 'and sent its own (we asked), which our offload handed back to the connection');
    });
  }
});

t.test('gnutls-serv', { timeout: 60_000, skip: missingPrograms(t, 'gnutls-serv') }, async (t) => {
  for (const suite of suites) {
    t.test(`streams client with the offload -> gnutls-serv --echo (${suite}, KeyUpdate both ways)`, async (t) => {
      const dir = await mkdtemp(join(tmpdir(), 'qkd-tls-offload-'));
      t.teardown(() => rm(dir, { recursive: true, force: true }));
      const passwd = join(dir, 'psk.passwd');
      await writeFile(passwd, `${PSK_IDENTITY}:${PSK_HEX}\n`, { mode: 0o600 });
      const priority = 'NORMAL:-VERS-ALL:+VERS-TLS1.3:+ECDHE-PSK:+PSK';
      // -d 4 logs the handshake messages, KeyUpdate included.
      const { peer, port } = await gnutlsServer(t, ['--echo', '--pskpasswd', passwd, '--priority', priority, '--disable-client-cert', '-d', '4'], WAIT);
      const { tls, socket } = await connectStreams(port, suite);
      t.teardown(() => socket.destroy());
      await exchange(t, tls, suite, lines(2), (l) => l);
      t.match(peer.output, /received TLS 1\.3 key update \(1\)/, 'gnutls-serv received our KeyUpdate (update_requested)');
      t.match(peer.output, /sending key update \(0\)/, 'and sent its own, which our offload handed back to the connection');
    });
  }
});
