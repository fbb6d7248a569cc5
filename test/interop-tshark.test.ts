/**
 * Wireshark's dissector (tshark) decrypts qkd-tls sessions with the NSS key-log file qkd-tls writes — an
 * independent check of the record protection and of every logged secret. Two captures:
 *
 * - a live capture on the loopback interface (`tshark -i lo -f "tcp port N" -w FILE`) of the `qkd-tls client
 *   --keylog FILE` command talking to a qkd-tls server, including 0-RTT data (which needs the client's
 *   early traffic secret). Capturing needs CAP_NET_RAW: under CI (root, or dumpcap given the capability by
 *   .ci/run) a capture that cannot start is a failure, as a missing peer program is; elsewhere the case is
 *   skipped with tshark's reason, and the second case below still checks decryption;
 * - a pcap file the test writes itself from the bytes a relay between client and server saw, which needs no
 *   privileges at all.
 *
 * Either way tshark must show the decrypted application data, byte for byte, in both directions.
 *
 * Two more written captures, of sessions the first two do not cover (a HelloRetryRequest with SHA-384 secrets,
 * psk_ke without any key share; each with a KeyUpdate), also hold the tracer (lib/trace) against tshark's own
 * dissection of the same bytes: per direction, the content types of the records (inner ones once decrypted), the
 * handshake message types and the extension types, in order, must be the same.
 */
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import * as net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { toHex, utf8 } from '../lib/codec/bytes.js';
import type { Psk } from '../lib/psk/types.js';
import { connect, createServer, type ConnectOptions, type QkdTlsSocket, type ServerTransportOptions } from '../lib/transport/node.js';
import { createTracer, type TraceEvent, type TraceNode } from '../lib/trace/index.js';
import { tcpConversationPcap, type TcpChunk } from './helpers/pcap.js';
import { missingPrograms, once, PSK_HEX, PSK_IDENTITY, readBytes, spawnPeer, spawnQkdTls, type Tap, type TestLike, UNDER_CI, withTimeout } from './helpers/peers.js';
import { libraryEchoServer, PEER_PSK } from './helpers/library.js';

const skip = missingPrograms(t, 'tshark');
const SUBTEST = { timeout: 60_000, skip };
const WAIT = 15_000;

const psk = PEER_PSK;

// --- helpers ------------------------------------------------------------------------------------------------

async function tempDir(tt: TestLike): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'qkd-tls-tshark-'));
  tt.teardown(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

/** A qkd-tls echo server (0-RTT allowed) on 127.0.0.1. */
function echoServer(tt: TestLike, key: Psk = psk): Promise<{ port: number; sockets: QkdTlsSocket[] }> {
  return libraryEchoServer(tt, { psks: [key], maxEarlyDataSize: 1024 }, WAIT);
}

/** `tshark -r CAPTURE` decrypting with the key log, TLS on the server's port, printing `fields` (-T fields): its stdout. */
async function tsharkFields(tt: TestLike, capture: string, keylog: string, serverPort: number, fields: readonly string[]): Promise<string> {
  const tshark = spawnPeer(tt, 'tshark', [
    '-r', capture,
    '-o', `tls.keylog_file:${keylog}`,
    '-d', `tcp.port==${serverPort},tls`,
    '-Y', 'tls',
    '-T', 'fields',
    ...fields,
  ]);
  const exit = await tshark.waitExit(WAIT);
  if (exit.code !== 0) throw new Error(`tshark -r failed (${exit.code}):\n${tshark.transcript()}`);
  return tshark.stdout;
}

/**
 * Runs tshark over a capture with the key-log file and returns the decrypted application data per
 * direction (records in order), from the `data.data` field that holds decrypted payloads without a
 * sub-dissector.
 */
async function decrypt(tt: TestLike, capture: string, keylog: string, serverPort: number): Promise<{ toServer: string; toClient: string; records: number }> {
  const stdout = await tsharkFields(tt, capture, keylog, serverPort, ['-e', 'tcp.srcport', '-e', 'data.data']);
  let toServer = '';
  let toClient = '';
  let records = 0;
  for (const line of stdout.split('\n')) {
    const [src, data] = line.split('\t');
    if (!src || !data) continue;
    const hex = data.replace(/[,:]/g, '');
    records += data.split(',').length;
    if (Number(src) === serverPort) toClient += hex;
    else toServer += hex;
  }
  return { toServer, toClient, records };
}

/** Bytes to hex, as tshark prints data.data. */
function hexOf(text: string): string {
  return toHex(utf8(text));
}

// --- a live capture on lo -----------------------------------------------------------------------------------

/** "Capturing on 'lo'" is printed even when the capture then fails; this comes only once it runs. */
const CAPTURE_STARTED = /Capture started/;

/**
 * Whether `tshark` can capture on lo here: false, or why not (tshark's own words). Capturing needs CAP_NET_RAW
 * and CAP_NET_ADMIN: root has them unless its container dropped them; another user has them only through
 * dumpcap's file capabilities (which .ci/run sets when it runs under sudo). As with a missing peer program
 * (missingPrograms), a capture that cannot start is recorded as a failure under CI, where this case must run,
 * and is a skip with a comment elsewhere.
 *
 * The probe writes into a temporary folder, never to /dev/null: dumpcap removes its output file when the
 * capture fails, and as root without CAP_NET_RAW that would remove /dev/null itself.
 */
async function cannotCapture(tt: TestLike, tshark = 'tshark', underCi = UNDER_CI): Promise<string | false> {
  const dir = await mkdtemp(join(tmpdir(), 'qkd-tls-tshark-probe-'));
  const probes: (() => unknown)[] = [];
  const probe = spawnPeer({ teardown: (fn) => probes.push(fn), fail: tt.fail.bind(tt), comment: tt.comment.bind(tt) }, tshark, ['-i', 'lo', '-f', 'tcp port 9', '-w', join(dir, 'probe.pcapng')]);
  try {
    await probe.waitFor(CAPTURE_STARTED, WAIT, 'stderr');
    return false;
  } catch (e) {
    tt.comment((e as Error).message);
    const reason = `tshark cannot capture on lo here: ${captureError(probe.stderr)} (capturing needs CAP_NET_RAW and CAP_NET_ADMIN: root's, or dumpcap's file capabilities)`;
    if (underCi) tt.fail(`${reason}: the live capture must run under CI`);
    else tt.comment(`skipping: ${reason}; the written-pcap case still checks decryption`);
    return reason;
  } finally {
    for (const p of probes) await p();
    await rm(dir, { recursive: true, force: true });
  }
}

/** The lines of tshark's stderr that say why a capture did not start (not its banner, not its advice). */
function captureError(stderr: string): string {
  const lines = stderr
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '' && !/^(Running as user|Capturing on|\*\*)/.test(l));
  return [...new Set(lines)].slice(0, 3).join(' ') || `no "Capture started" within ${WAIT / 1000} s`;
}

const captureProblem = skip || (await cannotCapture(t));

t.test('tshark decrypts a live loopback capture of the qkd-tls client CLI (with 0-RTT) using its --keylog file', { ...SUBTEST, skip: captureProblem }, async (t) => {
  const dir = await tempDir(t);
  const { port } = await echoServer(t);
  const capture = join(dir, 'live.pcapng');
  const keylog = join(dir, 'keys.log');
  // -P -l: print a summary line per packet as it is captured, so that the test knows what has been written.
  const capturer = spawnPeer(t, 'tshark', ['-i', 'lo', '-f', `tcp port ${port}`, '-w', capture, '-P', '-l']);
  await capturer.waitFor(CAPTURE_STARTED, WAIT, 'stderr');
  const early = 'early data, decrypted by tshark\n';
  const late = 'and a line after the handshake\n';
  await writeFile(join(dir, 'early.txt'), early);
  const cli = spawnQkdTls(t, ['client', '--connect', `127.0.0.1:${port}`, '--psk', PSK_HEX, '--identity', PSK_IDENTITY, '--keylog', keylog, '--early-data', join(dir, 'early.txt'), '--json']);
  await cli.waitFor(early, WAIT, 'stdout');
  cli.write(late);
  await cli.waitFor(early + late, WAIT, 'stdout');
  cli.end();
  t.equal((await cli.waitExit(WAIT)).code, 0, 'the client closed cleanly');
  t.match(cli.stderr, '"earlyData":"accepted"', 'the server accepted the 0-RTT data');

  // A marker connection after the session: once tshark has seen its SYN, every packet before it is written.
  const marker = net.connect({ host: '127.0.0.1', port });
  t.teardown(() => marker.destroy());
  await once(marker, 'connect', WAIT);
  const markerPort = marker.localPort!;
  await capturer.waitFor(new RegExp(`\\b${markerPort}\\D+${port} \\[SYN\\]`), WAIT, 'stdout');
  marker.destroy();
  await capturer.kill('SIGINT', WAIT);

  const logged = await readFile(keylog, 'latin1');
  for (const label of ['CLIENT_EARLY_TRAFFIC_SECRET', 'CLIENT_HANDSHAKE_TRAFFIC_SECRET', 'SERVER_HANDSHAKE_TRAFFIC_SECRET', 'CLIENT_TRAFFIC_SECRET_0', 'SERVER_TRAFFIC_SECRET_0']) {
    t.match(logged, new RegExp(`^${label} [0-9a-f]{64} [0-9a-f]{64}$`, 'm'), `the key-log file has ${label}`);
  }
  const seen = await decrypt(t, capture, keylog, port);
  t.equal(seen.toServer, hexOf(early + late), 'tshark decrypted what the client sent (0-RTT and 1-RTT)');
  t.equal(seen.toClient, hexOf(early + late), 'tshark decrypted the echo the server sent');
});

// --- a pcap written from the bytes the test saw -----------------------------------------------------------------

/** A TCP relay between a client and `serverPort` that records every chunk in the order it passes. */
async function recordingRelay(tt: TestLike, serverPort: number): Promise<{ port: number; chunks: TcpChunk[]; clientPort: () => number; done: Promise<void> }> {
  const chunks: TcpChunk[] = [];
  let clientPort = 0;
  let finish!: () => void;
  const done = new Promise<void>((resolve) => (finish = resolve));
  const relay = net.createServer({ allowHalfOpen: true }, (down) => {
    clientPort = down.remotePort!;
    const up = net.connect({ host: '127.0.0.1', port: serverPort, allowHalfOpen: true });
    down.on('data', (b: Buffer) => {
      chunks.push({ from: 'client', data: Buffer.from(b) });
      up.write(b);
    });
    up.on('data', (b: Buffer) => {
      chunks.push({ from: 'server', data: Buffer.from(b) });
      down.write(b);
    });
    down.on('end', () => up.end());
    up.on('end', () => down.end());
    let closed = 0;
    const onClose = (): void => {
      if (++closed === 2) finish();
    };
    down.on('close', onClose);
    up.on('close', onClose);
    down.on('error', () => up.destroy());
    up.on('error', () => down.destroy());
    tt.teardown(() => {
      down.destroy();
      up.destroy();
    });
  });
  tt.teardown(() => relay.close());
  await withTimeout(new Promise<void>((resolve) => relay.listen(0, '127.0.0.1', resolve)), WAIT, 'the relay to listen');
  return { port: (relay.address() as net.AddressInfo).port, chunks, clientPort: () => clientPort, done };
}

async function roundTrip(tt: Tap, socket: QkdTlsSocket, text: string): Promise<void> {
  socket.write(text);
  const back = await readBytes(socket, text.length, WAIT);
  tt.equal(back.toString('latin1'), text, 'echoed');
}

t.test('tshark decrypts a pcap written from the bytes of a qkd-tls session (0-RTT, KeyUpdate, ChaCha20)', SUBTEST, async (t) => {
  const dir = await tempDir(t);
  // 0-RTT uses the suite provisioned with the PSK (RFC 8446 §4.2.10), so both ends are told which one.
  const chachaPsk: Psk = { ...psk, earlyDataSuite: 'TLS_CHACHA20_POLY1305_SHA256' };
  const { port: serverPort } = await echoServer(t, chachaPsk);
  const relay = await recordingRelay(t, serverPort);
  const lines: string[] = [];
  const early = 'zero-RTT through the relay\n';
  const socket = connect({
    host: '127.0.0.1',
    port: relay.port,
    psks: [chachaPsk],
    suites: ['TLS_CHACHA20_POLY1305_SHA256'],
    earlyData: utf8(early),
    keyLog: (line) => lines.push(line),
  });
  t.teardown(() => socket.destroy());
  await once(socket, 'secureConnect', WAIT);
  t.equal(socket.handshake!.earlyData, 'accepted');
  t.equal((await readBytes(socket, early.length, WAIT)).toString('latin1'), early, 'early data echoed');
  await roundTrip(t, socket, 'first 1-RTT line\n');
  // After a KeyUpdate, tshark has to derive the next traffic secrets itself (RFC 8446 §7.2).
  socket.keyUpdate(true);
  await roundTrip(t, socket, 'after the key update\n');
  const big = 'x'.repeat(5000) + '\n';
  await roundTrip(t, socket, big);
  socket.end();
  await withTimeout(relay.done, WAIT, 'the relayed connection to close');

  const capture = join(dir, 'written.pcap');
  const keylog = join(dir, 'keys.log');
  await writeFile(capture, tcpConversationPcap({ clientPort: relay.clientPort(), serverPort, chunks: relay.chunks }));
  await writeFile(keylog, lines.join('\n') + '\n');
  const seen = await decrypt(t, capture, keylog, serverPort);
  const all = early + 'first 1-RTT line\n' + 'after the key update\n' + big;
  t.equal(seen.toServer, hexOf(all), 'tshark decrypted every byte the client sent, across the KeyUpdate');
  t.equal(seen.toClient, hexOf(all), 'tshark decrypted every byte the server sent, across the KeyUpdate');
  t.ok(seen.records >= 8, `tshark showed ${seen.records} decrypted records`);
});

// --- tshark's view of each record and message against the tracer's ----------------------------------------------

/** Per direction, what a dissector saw: content types of records (inner ones when decrypted), handshake message types, extension types. */
interface Seen {
  contentTypes: number[];
  messages: number[];
  extensions: number[];
}

/** tshark's view of a decrypted capture, per direction (occurrences in order; HelloRetryRequest is a server_hello, 2). */
async function tsharkView(tt: TestLike, capture: string, keylog: string, serverPort: number): Promise<{ toServer: Seen; toClient: Seen }> {
  const stdout = await tsharkFields(tt, capture, keylog, serverPort, [
    '-E', 'occurrence=a',
    '-E', 'aggregator=,',
    '-e', 'tcp.srcport',
    '-e', 'tls.record.content_type',
    '-e', 'tls.handshake.type',
    '-e', 'tls.handshake.extension.type',
  ]);
  const view = { toServer: { contentTypes: [], messages: [], extensions: [] } as Seen, toClient: { contentTypes: [], messages: [], extensions: [] } as Seen };
  const numbers = (field: string | undefined): number[] => (field ? field.split(',').map(Number) : []);
  for (const line of stdout.split('\n')) {
    const [src, types, messages, extensions] = line.split('\t');
    if (!src) continue;
    const seen = Number(src) === serverPort ? view.toClient : view.toServer;
    seen.contentTypes.push(...numbers(types));
    seen.messages.push(...numbers(messages));
    seen.extensions.push(...numbers(extensions));
  }
  return view;
}

/** The code at the end of a rendered value: `handshake (0x16)` -> 0x16. */
function code(value: string | undefined): number {
  const m = /\((0x[0-9a-f]+)\)$/.exec(value ?? '');
  if (!m) throw new Error(`no code in ${value}`);
  return Number(m[1]);
}

/** The tracer's view of one direction, from its events (the same three lists as tshark's). */
function tracerView(events: readonly TraceEvent[], direction: 'sent' | 'received'): Seen {
  const seen: Seen = { contentTypes: [], messages: [], extensions: [] };
  const find = (n: TraceNode, name: string): TraceNode | undefined => n.children?.find((c) => c.name === name);
  const extensionsOf = (n: TraceNode): number[] =>
    n.name === 'Extension' ? [code(find(n, 'extension_type')?.value)] : (n.children ?? []).flatMap(extensionsOf);
  for (const e of events) {
    if (e.direction !== direction) continue;
    if (e.kind === 'record') {
      const inner = find(find(e.tree, 'encrypted_record') ?? e.tree, 'TLSInnerPlaintext');
      seen.contentTypes.push(code(find(inner ?? e.tree, 'type')?.value));
    } else if (e.kind === 'handshake') {
      seen.messages.push(code(find(e.tree, 'msg_type')?.value));
      seen.extensions.push(...extensionsOf(e.tree));
    }
  }
  return seen;
}

const SESSIONS: { name: string; psk: Psk; client: Partial<ConnectOptions>; server: Partial<ServerTransportOptions> }[] = [
  {
    // RFC 8446 §4.1.4: the server wants secp256r1, the client sent an x25519 share: HelloRetryRequest. SHA-384
    // secrets (96 hex digits in the key log).
    name: 'HelloRetryRequest, TLS_AES_256_GCM_SHA384',
    psk: { ...psk, hash: 'SHA-384' },
    client: { groups: ['x25519', 'secp256r1'], suites: ['TLS_AES_256_GCM_SHA384'] },
    server: { groups: ['secp256r1'], suites: ['TLS_AES_256_GCM_SHA384'] },
  },
  {
    // RFC 8446 §4.2.9: psk_ke, no key share at all.
    name: 'psk_ke',
    psk,
    client: { kexModes: ['psk_ke'] },
    server: { kexModes: ['psk_ke'] },
  },
];

for (const session of SESSIONS) {
  t.test(`tshark decrypts a ${session.name} session with the key log, and sees the records and messages the tracer shows`, SUBTEST, async (t) => {
    const dir = await tempDir(t);
    const serverLines: string[] = [];
    const { port: serverPort } = await libraryEchoServer(t, { psks: [session.psk], ...session.server, keyLog: (line) => serverLines.push(line) }, WAIT);
    const relay = await recordingRelay(t, serverPort);
    const lines: string[] = [];
    const events: TraceEvent[] = [];
    const socket = connect({ host: '127.0.0.1', port: relay.port, psks: [session.psk], ...session.client, keyLog: (line) => lines.push(line), trace: createTracer((e) => events.push(e)) });
    t.teardown(() => socket.destroy());
    await once(socket, 'secureConnect', WAIT);
    if (session.name.startsWith('HelloRetryRequest')) t.equal(socket.handshake!.group, 'secp256r1', 'the group the HelloRetryRequest asked for');
    else t.equal(socket.handshake!.kex, 'psk_ke');
    await roundTrip(t, socket, 'before the key update\n');
    socket.keyUpdate(true);
    await roundTrip(t, socket, 'after the key update\n');
    socket.end();
    await withTimeout(relay.done, WAIT, 'the relayed connection to close');

    const hexDigits = session.psk.hash === 'SHA-384' ? 96 : 64;
    for (const line of lines) t.match(line, new RegExp(`^[A-Z_0]+ [0-9a-f]{64} [0-9a-f]{${hexDigits}}$`), `key-log line ${line.split(' ')[0]}`);
    // The server logs the same lines (keyed by the client random, as NSS does), so its key log decrypts too.
    t.same([...serverLines].sort(), [...lines].sort(), "the server's key log has the client's lines");
    const capture = join(dir, 'written.pcap');
    const keylog = join(dir, 'keys.log');
    await writeFile(capture, tcpConversationPcap({ clientPort: relay.clientPort(), serverPort, chunks: relay.chunks }));
    await writeFile(keylog, lines.join('\n') + '\n');
    const data = await decrypt(t, capture, keylog, serverPort);
    const all = 'before the key update\n' + 'after the key update\n';
    t.equal(data.toServer, hexOf(all), 'tshark decrypted every byte the client sent');
    t.equal(data.toClient, hexOf(all), 'tshark decrypted every byte the server sent');

    const view = await tsharkView(t, capture, keylog, serverPort);
    const sent = tracerView(events, 'sent');
    const received = tracerView(events, 'received');
    t.same(sent.messages, view.toServer.messages, `the client's messages: ${sent.messages.join(',')}`);
    t.same(received.messages, view.toClient.messages, `the server's messages: ${received.messages.join(',')}`);
    t.same(sent.extensions, view.toServer.extensions, `the client's extensions: ${sent.extensions.join(',')}`);
    t.same(received.extensions, view.toClient.extensions, `the server's extensions: ${received.extensions.join(',')}`);
    t.same(sent.contentTypes, view.toServer.contentTypes, `the client's records: ${sent.contentTypes.join(',')}`);
    t.same(received.contentTypes, view.toClient.contentTypes, `the server's records: ${received.contentTypes.join(',')}`);
  });
}

// --- the capture probe's verdict under CI -----------------------------------------------------------------------

/** What tshark prints when dumpcap lacks CAP_NET_RAW (a non-root user, or root in a container that dropped it). */
const NO_PERMISSION = `#!/bin/sh
echo "Capturing on 'Loopback: lo'" >&2
echo 'tshark: You do not have permission to capture on device "lo".' >&2
echo '(socket: Operation not permitted)' >&2
exit 1
`;

t.test('a live capture that cannot start is a failure under CI and a skip with its reason elsewhere', { timeout: 60_000 }, async (t) => {
  const dir = await tempDir(t);
  const tshark = join(dir, 'tshark');
  await writeFile(tshark, NO_PERMISSION, { mode: 0o755 });
  for (const underCi of [true, false]) {
    const failures: string[] = [];
    const comments: string[] = [];
    const recorder: TestLike = { teardown: (fn) => t.teardown(fn), fail: (m) => failures.push(m), comment: (...m) => comments.push(m.join(' ')) };
    const reason = await cannotCapture(recorder, tshark, underCi);
    const where = underCi ? 'under CI' : 'outside CI';
    t.match(reason, /^tshark cannot capture on lo here: tshark: You do not have permission to capture on device "lo"\. \(socket: Operation not permitted\)/, `${where}: the subtest is not run, and the reason quotes tshark`);
    if (underCi) {
      t.equal(failures.length, 1, `${where}: recorded as one failure`);
      t.match(failures[0], /: the live capture must run under CI$/, `${where}: which says the case must run`);
    } else {
      t.same(failures, [], `${where}: no failure`);
      t.match(comments, [/./, /^skipping: tshark cannot capture on lo here/], `${where}: a comment says the case is skipped`);
    }
  }
});
