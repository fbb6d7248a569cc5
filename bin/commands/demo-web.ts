/**
 * `qkd-tls demo --web [--listen HOST:PORT] [--json]`: the demo in a browser. It starts, all on 127.0.0.1:
 *  - the ETSI GS QKD 014 key manager simulator (plain HTTP on loopback; it allows loopback pages by CORS);
 *  - a qkd-tls server accepting TLS over WebSocket, which fetches each key by the ID the client names
 *    (dec_keys) and echoes;
 *  - a web server for the page (lib/tools/web-demo/), which imports qkd-tls/browser and @noble/* as
 *    native ES modules (an import map; nothing is bundled at run time).
 * The page opens its WebSocket, then takes a key (enc_keys: a server that is down costs none), runs the handshake
 * and an echo, and shows each step. The command prints the page's URL and runs until SIGINT/SIGTERM.
 */
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { createServer as createHttpServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { dirname, extname, join, normalize, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type KmeSimulator, startKmeSimulator } from 'qkd-tls/kme';
import { createServer, defaultNodeCrypto, listenWebSocket, type QkdTlsSocket } from 'qkd-tls/node';
import { Etsi014Client, Etsi014ServerSource, releaseAfter } from 'qkd-tls/qkd';
import { parseCommandLine, untilStopSignal } from '../cli/command.js';
import { isListenError, listenFailure } from '../cli/listen-error.js';
import { Reporter } from '../cli/report.js';
import { releasingServerResolver } from '../cli/server-key-release.js';
import { parseHostPort, UsageError } from '../cli/tls-options.js';

const HELP = `usage: qkd-tls demo --web [--listen HOST:PORT] [--json]

Serves a web page (on 127.0.0.1) that runs QKD-TLS in the browser: the page opens a WebSocket to a qkd-tls
server, takes a key from a simulated QKD key manager (ETSI GS QKD 014), runs a TLS 1.3 handshake with it
over the WebSocket (the server fetches the same key by its ID), echoes a message, and shows each step. Open
the printed URL.

  --listen HOST:PORT   where the page is served (a 127.x.x.x address; default 127.0.0.1:0, a free port)
  --json               report on stderr as JSON lines (listening, each handshake, each failure)`;

const CLIENT_SAE = 'browser-sae';
const SERVER_SAE = 'server-sae';

/** The folder of the page's files (lib/tools/web-demo; this file runs as dist/bin/commands/demo-web.js). */
const PAGE_DIR = fileURLToPath(new URL('../../../lib/tools/web-demo/', import.meta.url));
/** qkd-tls's compiled library, served under /qkd-tls/. */
const LIB_DIR = fileURLToPath(new URL('../../lib/', import.meta.url));
/** The @noble packages, served under /noble/NAME/ (the import map points their bare specifiers there). */
const NOBLE = ['hashes', 'curves', 'ciphers', 'post-quantum'].map((name) => ({ name, dir: dirname(fileURLToPath(import.meta.resolve(`@noble/${name}/utils.js`))) }));

export async function run(argv: string[]): Promise<number> {
  const cli = parseCommandLine('demo --web', argv, { listen: { type: 'string' }, json: { type: 'boolean' } } as const, HELP, (values) => {
    const listen = values.listen ? parseHostPort('listen', values.listen, 'listen') : { host: '127.0.0.1', port: 0 };
    if (!/^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(listen.host)) throw new UsageError('--listen: the web demo serves on a 127.x.x.x address only');
    return { listen };
  });
  if ('exit' in cli) return cli.exit;
  const report = new Reporter(Boolean(cli.values.json));
  const { host, port } = cli.plan.listen;

  let kme: KmeSimulator;
  try {
    kme = await startKmeSimulator({ host, insecureHttp: true, initialKeyCount: 100, masterSaeId: CLIENT_SAE, slaveSaeId: SERVER_SAE });
  } catch (e) {
    // Its listeners are on free ports the command picks: not the --listen port, and nothing the user can change.
    report.fatal('demo --web', { message: `the key manager simulator cannot listen on ${host} (free ports): ${e instanceof Error ? e.message : String(e)}` });
    return 1;
  }
  const crypto = defaultNodeCrypto();
  // Each key is wiped when its handshake is over (releasingServerResolver); this timer is the backstop.
  const wipeLater = releaseAfter(15_000);
  const serverKeys = new Etsi014ServerSource({
    client: new Etsi014Client({ baseUrl: kme.slave.url, saeId: SERVER_SAE, timeoutMs: 3000 }),
    ownsClient: true,
    peerSaeIds: [CLIENT_SAE],
    onEvent: (e) => {
      if (e.type === 'resolved') report.event('key', { keyId: e.keyId, from: kme.slave.kmeId, how: 'dec_keys' });
      else if (e.type === 'refused' || e.type === 'lookup-failed') report.event('key-refused', { keyId: e.keyId, message: e.message });
    },
  });
  const tls = createServer({ crypto, handshakeTimeout: 10_000, psks: releasingServerResolver(crypto, serverKeys, { backstop: wipeLater }) }, (socket: QkdTlsSocket) => {
    report.handshake(socket.handshake!, { transport: 'websocket' });
    socket.on('error', (e: Error) => report.failure(e));
    socket.pipe(socket);
  });
  tls.on('tlsClientError', (e: Error) => report.failure(e));

  // The page's origin is known once its server listens; the WebSocket accepts that origin only.
  const page = createHttpServer();
  let ws: Awaited<ReturnType<typeof listenWebSocket>> | undefined;
  let origin = '';
  const stop = async (): Promise<void> => {
    tls.destroyAll();
    await ws?.close();
    page.closeAllConnections();
    if (page.listening) await new Promise<void>((r) => page.close(() => r()));
    wipeLater.releaseAll();
    serverKeys.close();
    await kme.close();
  };
  // A listener that fails (a busy --listen port): stop what already runs (the key manager, the TLS server), or the
  // process never exits, and say which listener it was.
  const failed = async (e: unknown, failure: { message: string; hint?: string | undefined }): Promise<number> => {
    await stop();
    if (!isListenError(e)) throw e;
    report.fatal('demo --web', failure);
    return 1;
  };
  try {
    await new Promise<void>((resolve, reject) => {
      page.once('error', reject);
      page.listen(port, host, () => resolve());
    });
  } catch (e) {
    return failed(e, listenFailure(host, port, e));
  }
  origin = `http://${host}:${(page.address() as AddressInfo).port}`;
  try {
    ws = await listenWebSocket({ host, port: 0, origins: [origin], maxConnections: 32 }, ({ stream }) => tls.accept(stream));
  } catch (e) {
    // Not the --listen port (it was "cannot listen on" that port, with advice about it): the TLS server's own, on a
    // free port the command picks, which the user cannot change.
    return failed(e, { message: `the TLS server cannot listen for WebSocket connections on ${host} (a free port): ${e instanceof Error ? e.message : String(e)}` });
  }
  const config = { kmeUrl: kme.master.url, clientSaeId: CLIENT_SAE, serverSaeId: SERVER_SAE, serverUrl: `ws://${host}:${ws.address().port}/` };
  servePage(page, config, [kme.master.url, config.serverUrl]);

  report.event('listening', { url: `${origin}/`, kme: kme.master.url, server: config.serverUrl });
  if (!cli.values.json) process.stderr.write(`\nOpen ${origin}/ in a browser. Ctrl-C stops the demo.\n`);

  await untilStopSignal();
  await stop();
  return 0;
}

const TYPES: Record<string, string> = { '.html': 'text/html; charset=utf-8', '.js': 'text/javascript; charset=utf-8', '.css': 'text/css; charset=utf-8' };

/**
 * GET / (the page, with its configuration and import map filled in), /page.js, /page.css, /qkd-tls/*.js
 * (the compiled library) and /noble/NAME/*.js. Nothing else; no path leaves those folders.
 */
function servePage(server: Server, config: Record<string, string>, connectTo: string[]): void {
  const importMap = JSON.stringify({
    imports: {
      'qkd-tls/browser': '/qkd-tls/browser.js',
      ...Object.fromEntries(NOBLE.map((n) => [`@noble/${n.name}/`, `/noble/${n.name}/`])),
    },
  });
  const csp = [
    "default-src 'none'",
    `script-src 'self' 'sha256-${createHash('sha256').update(importMap).digest('base64')}'`,
    "style-src 'self'",
    `connect-src ${connectTo.map((u) => new URL(u).origin).join(' ')}`,
    "img-src 'none'",
    "base-uri 'none'",
    "form-action 'none'",
  ].join('; ');
  server.on('request', (req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    const send = (status: number, type: string, body: string | Buffer): void => {
      res.writeHead(status, { 'content-type': type, 'cache-control': 'no-store', 'x-content-type-options': 'nosniff', 'content-security-policy': csp });
      res.end(body);
    };
    if (req.method !== 'GET') return send(405, 'text/plain', 'GET only\n');
    let file: string | undefined;
    if (path === '/') file = join(PAGE_DIR, 'page.html');
    else if (path === '/page.js' || path === '/page.css') file = join(PAGE_DIR, path.slice(1));
    else if (path.startsWith('/qkd-tls/')) file = inside(LIB_DIR, path.slice('/qkd-tls/'.length));
    else {
      const n = NOBLE.find((x) => path.startsWith(`/noble/${x.name}/`));
      if (n) file = inside(n.dir, path.slice(`/noble/${n.name}/`.length));
    }
    if (!file || !TYPES[extname(file)]) return send(404, 'text/plain', 'not found\n');
    readFile(file).then(
      (body) => {
        if (path === '/') {
          const html = body
            .toString('utf8')
            .replace('__IMPORT_MAP__', importMap)
            .replace('__CONFIG__', JSON.stringify(config).replace(/</g, '\\u003c'));
          send(200, TYPES['.html'], html);
        } else send(200, TYPES[extname(file!)], body);
      },
      () => send(404, 'text/plain', 'not found\n'),
    );
  });
}

/** `rel` resolved inside `dir`, or undefined if it would leave it. */
function inside(dir: string, rel: string): string | undefined {
  let decoded: string;
  try {
    decoded = decodeURIComponent(rel);
  } catch {
    return undefined;
  }
  if (decoded.includes('\0')) return undefined;
  const full = normalize(join(dir, decoded));
  return full.startsWith(dir.endsWith(sep) ? dir : dir + sep) ? full : undefined;
}
