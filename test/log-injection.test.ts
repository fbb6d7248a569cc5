/**
 * Findings of the log-injection review: a string a remote peer controls (an error's text, a PSK identity, a key
 * ID or SAE ID, a request path, a header) reaches a human-readable line with its control characters escaped, quoted
 * where it could forge a `key=value` field, and bounded in length; JSON lines stay valid JSON and read back to the
 * same strings.
 */
import t from 'tap';
import { request } from 'node:http';
import type { AddressInfo } from 'node:net';
import { WebSocketServer, WebSocket as WsClient } from 'ws';
import { webSocketByteStreams } from '../lib/transport/websocket.js';
import { kmeLogLine, Reporter } from '../bin/cli/report.js';
import { type KmeLogEvent, startKmeSimulator } from '../lib/tools/kme/index.js';
import { clip, fieldText, jsonText } from '../lib/codec/text.js';
import { nodeProvider } from '../lib/crypto/node.js';
import { ExtensionType } from '../lib/codec/enums.js';
import { utf8 } from '../lib/codec/bytes.js';
import { ext } from '../lib/messages/extensions.js';
import { handshake, makePsk } from './helpers/pair.js';
import { createLogger, type ConnectionRecord } from '../lib/proxy/log.js';

/** What `run` writes to stderr. */
function stderrOf(run: () => void): string {
  const write = process.stderr.write;
  let out = '';
  process.stderr.write = ((chunk: string | Uint8Array) => {
    out += typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString();
    return true;
  }) as typeof process.stderr.write;
  try {
    run();
  } finally {
    process.stderr.write = write;
  }
  return out;
}

const EVIL = 'x\n2026-01-01T00:00:00.000Z handshake: forged\r\u001b[2J\u009b31m\u202egnp.exe\u2028';
/** No raw control character (C0 but the final newline, DEL, C1, line separators, bidi controls). */
const RAW = /[\u0000-\u0009\u000b-\u001f\u007f-\u009f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069]/;

t.test('text helpers: escape controls, quote what could forge a field, bound the length, keep JSON exact', async (t) => {
  t.equal(clip('a\u001bb\u202ec'), 'a\\u001bb\\u202ec');
  t.equal(clip('x'.repeat(400)).length, 303, 'at most 300 characters and ...');
  t.equal(fieldText('plain-value:1'), 'plain-value:1', 'a plain value is printed as it is');
  t.equal(fieldText('alice key=forged'), '"alice key=forged"', 'a space or = is quoted');
  t.equal(fieldText(''), '""');
  t.equal(fieldText('a\\u000ab'), '"a\\\\u000ab"', 'a backslash is quoted, so a typed \\u escape differs from an escaped control');
  t.notMatch(fieldText(EVIL), RAW);
  t.notOk(fieldText(EVIL).includes('\n'));
  t.ok(fieldText('y'.repeat(100_000)).length < 1100, 'bounded');
  const line = jsonText({ m: EVIL });
  t.notMatch(line, RAW);
  t.same(JSON.parse(line), { m: EVIL }, 'the JSON reads back to the same string');
});

t.test('the CLI reporter: a peer-controlled value cannot forge a line or a field, in text and in --json', async (t) => {
  const text = new Reporter(false);
  const event = stderrOf(() => text.event('key-refused', { keyId: 'k', reason: 'unexpected-sae', message: `SAE '${EVIL}'` }));
  t.equal(event.split('\n').length, 2, 'one line');
  t.notMatch(event, RAW);
  t.match(event, /^key-refused: keyId=k reason=unexpected-sae message="SAE '/);

  const failure = stderrOf(() => text.failure(new Error(`KME said ${EVIL}${'z'.repeat(100_000)}`), { peer: 'a b=c' }));
  t.equal(failure.split('\n').length, 2, 'one line');
  t.notMatch(failure, RAW);
  t.ok(failure.length < 2000, 'bounded');
  t.match(failure, / \(peer="a b=c"\)\n$/);

  const info = { version: 'TLSv1.3', suite: 'TLS_AES_128_GCM_SHA256', kex: 'psk_dhe_ke', group: 'x25519', identity: 'alice early-data=accepted', identityBytes: new Uint8Array(0), identityIndex: 0, pskLabel: 'id key=forged', earlyData: 'none', helloRetry: false } as const;
  const handshake = stderrOf(() => text.handshake(info, { peer: EVIL }));
  t.equal(handshake.split('\n').length, 2, 'one line');
  t.notMatch(handshake, RAW);
  // keyId=, as in --json and the proxy's log line (it was key=, which read as the key itself: found in a README walkthrough).
  t.match(handshake, /identity="alice early-data=accepted" keyId="id key=forged" early-data=none peer="x\\n/);

  const json = new Reporter(true);
  const j = stderrOf(() => json.event('key-refused', { message: EVIL }));
  t.notMatch(j, RAW);
  t.same(JSON.parse(j), { event: 'key-refused', message: EVIL });
});

t.test('the proxy log: an error text or identity cannot forge a line or a field, in text and in --json', async (t) => {
  const record: ConnectionRecord = {
    event: 'connection',
    time: '2026-01-01T00:00:00.000Z',
    service: 'web',
    role: 'server',
    id: 1,
    peer: '127.0.0.1:5000',
    target: '127.0.0.1:80',
    identity: 'alice end=closed',
    bytesUp: 0,
    bytesDown: 0,
    durationMs: 1,
    end: 'handshake-failed',
    error: `no ALPN protocol in common (client offered ${EVIL})`,
  };
  for (const json of [false, true]) {
    const lines: string[] = [];
    const log = createLogger({ json, write: (l) => void lines.push(l) });
    log.connection(record);
    log.event('error', { message: EVIL });
    t.equal(lines.join('').split('\n').length, 3, `${json ? 'json' : 'text'}: two lines`);
    for (const l of lines) t.notMatch(l, RAW, `${json ? 'json' : 'text'}: no raw control character`);
    if (json) t.same(JSON.parse(lines[0]), record, 'the JSON reads back to the record');
    else t.match(lines[0], / identity="alice end=closed" .* end=handshake-failed error="no ALPN/);
  }
});

t.test("a server's no_application_protocol error quotes the client's ALPN names escaped and bounded", async (t) => {
  // A hostile client's protocol names (up to 64 KiB of them) went into the error message raw.
  const psk = makePsk('alpn-names');
  const names = [EVIL, ...Array.from({ length: 200 }, () => 'n'.repeat(255))];
  const p = handshake(
    {
      crypto: nodeProvider,
      psks: [psk],
      alpn: ['h2'],
      dangerousClientHelloExtensions: (l) =>
        l.map((e) => (e.type === ExtensionType.application_layer_protocol_negotiation ? ext(e.type, (w) => w.vec16((x) => names.forEach((n) => x.vec8(utf8(n))))) : e)),
    },
    { crypto: nodeProvider, psks: [psk], alpn: ['qkd/1'] },
  );
  const e = p.error('server');
  t.equal(e?.reason, 'NoApplicationProtocol');
  t.notMatch(e!.message, RAW, 'no raw control character');
  t.ok(e!.message.length < 2000, `bounded (${e!.message.length} characters)`);
  t.match(e!.message, /client offered x\\u000a2026/);
});

t.test("a client's error about the server's ALPN answer quotes the server's protocol name escaped", async (t) => {
  const psk = makePsk('alpn-answer');
  const p = handshake(
    { crypto: nodeProvider, psks: [psk], alpn: ['h2'] },
    {
      crypto: nodeProvider,
      psks: [psk],
      alpn: ['h2'],
      dangerousEncryptedExtensions: (l) =>
        l.map((e) => (e.type === ExtensionType.application_layer_protocol_negotiation ? ext(e.type, (w) => w.vec16((x) => x.vec8(utf8('\u001b[2J\n\u202e')))) : e)),
    },
  );
  const e = p.error('client');
  t.equal(e?.reason, 'ServerSelectedUnofferedAlpn');
  t.notMatch(e!.message, RAW, 'no raw control character');
  t.match(e!.message, 'server selected ALPN "\\u001b[2J\\u000a\\u202e"');
});

/** A GET to `url` with an X-SAE-ID header (Node sends a latin-1 header value as it is); resolves with the status. */
function getWithSaeId(url: string, saeId: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = request(url, { headers: { 'x-sae-id': saeId } }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    req.on('error', reject);
    req.end();
  });
}

t.test("the KME simulator's log: a caller's X-SAE-ID header and SAE ID in the path cannot forge a field or a line", async (t) => {
  const events: KmeLogEvent[] = [];
  const kme = await startKmeSimulator({ insecureHttp: true, rateBitsPerSecond: 0, initialKeyCount: 1, now: () => 0, log: (e) => events.push(e) });
  t.teardown(() => kme.close());
  // A header value may carry spaces, '=' and latin-1 bytes, which read as C1 controls (U+009B is CSI).
  t.equal(await getWithSaeId(`${kme.master.url}/api/v1/keys/server-sae/status`, 'evil -> 200 ok \u009b31m'), 401);
  // A percent-encoded SAE ID in the path is decoded into the answer's message.
  t.equal(await getWithSaeId(`${kme.master.url}/api/v1/keys/%1b%5b2J%0aforged%e2%80%ae/status`, 'client-sae'), 401);
  t.equal(events.length, 2);
  for (const e of events) {
    t.notMatch((e as { message?: string }).message ?? '', RAW, "the event's message carries no raw control character");
    const line = kmeLogLine(e);
    t.notMatch(line, RAW, 'the text line carries no raw control character');
    t.notOk(line.includes('\n'));
  }
  t.match(kmeLogLine(events[0]), / KME-A "evil -> 200 ok \\u009b31m" GET \/api\/v1\/keys\/server-sae\/status -> 401 SAE 'evil -> 200 ok \\u009b31m' is not served/);
  t.match(events[1], { message: "no QKD link from SAE 'client-sae' to SAE '\\u001b[2J\\u000aforged\\u202e' at KME-A" });
});

t.test("a WebSocket's error quotes the server's close reason escaped", async (t) => {
  const server = new WebSocketServer({ host: '127.0.0.1', port: 0 });
  await new Promise<void>((r) => server.once('listening', () => r()));
  t.teardown(() => new Promise<void>((r) => server.close(() => r())));
  server.on('connection', (peer) => peer.close(4000, '\u001b[2J\nforged\u202e'));
  const ws = new WsClient(`ws://127.0.0.1:${(server.address() as AddressInfo).port}/`);
  ws.on('error', () => {});
  const pair = webSocketByteStreams(ws as unknown as WebSocket);
  const error = await pair.readable.getReader().read().then(
    () => undefined,
    (e: Error) => e,
  );
  t.match(error?.message, 'WebSocket closed (code 4000, \\u001b[2J\\u000aforged\\u202e)');
  t.notMatch(error?.message ?? '', RAW);
});

t.test("the proxy log's text lines keep a long value of its own whole, as --json does (a pool's expired key IDs)", async (t) => {
  const keyIds = Array.from({ length: 200 }, (_, i) => `00000000-0000-4000-8000-${String(i).padStart(12, '0')}`);
  for (const json of [false, true]) {
    const lines: string[] = [];
    createLogger({ json, write: (l) => void lines.push(l) }).event('keys-expired', { service: 'web', keyIds: keyIds.join(',') });
    t.equal(lines.length, 1, `${json ? 'json' : 'text'}: one line`);
    for (const id of keyIds) if (!lines[0].includes(id)) return t.fail(`${json ? 'json' : 'text'}: key ID ${id} missing`);
    t.pass(`${json ? 'json' : 'text'}: every expired key ID is logged`);
  }
});
