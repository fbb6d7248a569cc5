/**
 * `qkd-tls kme --topology FILE`: runs a simulated QKD network (nodes, BB84 links, key relay, eavesdroppers)
 * with an ETSI GS QKD 014 key manager at every node, on one port, until interrupted.
 */
import { resolve } from 'node:path';
import { loadTopology, type NetworkEvent, type QkdNetworkServer, startQkdNetworkServer, type Topology, TopologyFileError } from 'qkd-tls/network';
import { jsonText } from 'qkd-tls';
import { parseCommandLine, untilStopSignal } from './command.js';
import { listenHint } from './listen-error.js';
import { kmeLogLine, Reporter } from './report.js';
import { UsageError } from './tls-options.js';

export const NETWORK_HELP = `usage: qkd-tls kme --topology FILE [--listen HOST:PORT] [--insecure-http] [--json] [--time-scale N]

Simulates a Quantum Key Distribution network: nodes joined by QKD links (BB84 over fibre, with the physics of
loss, detector noise and misalignment), a key manager (KME) at every node, trusted-node key relay between
nodes that share no link, and optional eavesdroppers that raise a link's error rate (QBER) until the link
stops serving. Every node's KME speaks ETSI GS QKD 014 under http(s)://HOST:PORT/NODE, so an application
(SAE) attached to node A uses --kme http(s)://HOST:PORT/A.

  GET /NODE/api/v1/keys/{SAE}/status|enc_keys|dec_keys   ETSI GS QKD 014 at node NODE
  GET /network                                            the network as JSON: links with qber,
                                                          keyRateBps, poolBits, state ("up" while serving)
  GET /network.svg                                        a picture of the network

The topology file (JSON; see the README, "The QKD network simulator"):
  {"nodes":[{"name":"A","saes":["client-sae"]},{"name":"B"},{"name":"C","saes":["server-sae"]}],
   "links":[{"a":"A","b":"B","km":20},{"a":"B","b":"C","km":30}],
   "eavesdroppers":[{"link":"B-C","fraction":1.0,"from_s":0}]}

options:
  --topology FILE     the network to simulate (one that cannot be read, is not JSON or describes no network is
                      a usage error, exit 2, naming the file and what is wrong: JSON's error or the field)
  --listen HOST:PORT  where the KMEs listen (default 127.0.0.1:8443; port 0 picks a free one)
  --time-scale N      simulated seconds per real second (default 1)
  --certs DIR         mutual TLS: the CA, server and SAE certificates (made on first start; default ./kme-certs)
  --insecure-http     plain HTTP instead of mutual TLS, loopback only; callers name their SAE in X-SAE-ID
  --json              one JSON object per line instead of text
  -h, --help          this help

Stop it with Ctrl-C.`;

const OPTIONS = {
  topology: { type: 'string' },
  listen: { type: 'string', default: '127.0.0.1:8443' },
  'time-scale': { type: 'string' },
  certs: { type: 'string', default: 'kme-certs' },
  'insecure-http': { type: 'boolean', default: false },
  json: { type: 'boolean', default: false },
} as const;

export async function runNetworkKme(argv: string[]): Promise<number> {
  const cli = parseCommandLine('kme', argv, OPTIONS, NETWORK_HELP, (v) => {
    if (!v.topology) throw new UsageError('--topology FILE is required');
    const m = /^(?:\[([^\]]+)\]|([^:]+)):(\d{1,5})$/.exec(v.listen!);
    if (!m || Number(m[3]) > 65535) throw new UsageError(`--listen wants HOST:PORT (or [IPv6]:PORT), got '${v.listen}'`);
    let timeScale = 1;
    if (v['time-scale'] !== undefined) {
      timeScale = Number(v['time-scale']);
      if (!/^\d+(\.\d+)?$/.test(v['time-scale']) || !(timeScale > 0) || timeScale > 10_000) throw new UsageError(`--time-scale wants a positive number up to 10000, got '${v['time-scale']}'`);
    }
    return { topology: v.topology, host: m[1] ?? m[2], port: Number(m[3]), timeScale };
  }, 'kme --topology FILE');
  if ('exit' in cli) return cli.exit;
  const { values, plan } = cli;
  const json = values.json!;
  const out = (line: string) => process.stdout.write(line + '\n');
  let topology: Topology;
  try {
    topology = await loadTopology(plan.topology);
  } catch (e) {
    // A file the user named that cannot be used is a usage error (exit 2), as the proxy's --config file is; it was
    // exit 1, and a bad value in range only showed when the network started, without the file or the field.
    if (!(e instanceof TopologyFileError)) throw e;
    process.stderr.write(`qkd-tls kme: ${e.message}\n`);
    return 2;
  }
  let server: QkdNetworkServer;
  try {
    server = await startQkdNetworkServer({
      topology,
      host: plan.host,
      port: plan.port,
      timeScale: plan.timeScale,
      insecureHttp: values['insecure-http'],
      certsDir: values['insecure-http'] ? undefined : resolve(values.certs!),
      onEvent: (e) => out(json ? JSON.stringify({ event: e.type, ...withoutType(e) }) : describeEvent(e)),
      onRequest: (r) =>
        out(
          json
            ? jsonText({ event: 'request', ...r, callerSaeId: r.callerSaeId ?? null })
            : kmeLogLine({ type: 'request', kmeId: r.node ?? '-', ...r }),
        ),
    });
  } catch (e) {
    new Reporter(json).fatal('kme', { message: (e as Error).message, hint: listenHint(e) || undefined });
    return 1;
  }
  const snap = server.network.snapshot();
  if (json) {
    out(
      JSON.stringify({
        event: 'listening',
        url: server.url,
        insecureHttp: server.insecureHttp,
        timeScale: plan.timeScale,
        nodes: snap.nodes.map((n) => ({ name: n.name, saes: n.saes, kme: server.kmeUrl(n.name) })),
        links: snap.links.map((l) => ({ name: l.name, km: l.km, expectedQber: l.expectedQber, keyRateBps: l.keyRateBps })),
        network: `${server.url}/network`,
        svg: `${server.url}/network.svg`,
        certificates: server.credentials ? { ca: server.credentials.caFile, saes: Object.fromEntries(Object.entries(server.credentials.saes).map(([id, p]) => [id, { cert: p.certFile, key: p.keyFile }])) } : null,
      }),
    );
  } else {
    out(`qkd-tls kme: a simulated QKD network of ${snap.nodes.length} nodes and ${snap.links.length} links at ${server.url} (time scale ${plan.timeScale})`);
    for (const n of snap.nodes) out(`  node ${n.name}: ETSI GS QKD 014 at ${server.kmeUrl(n.name)}${n.saes.length ? ` for SAE ${n.saes.join(', ')}` : ' (relay only)'}`);
    for (const l of server.network.snapshot().links) {
      out(`  link ${l.name}: ${l.km} km, expected QBER ${(l.expectedQber * 100).toFixed(1)}%, sifted ${Math.round(l.siftedRateBps)} bit/s, secret key ${Math.round(l.keyRateBps)} bit/s`);
    }
    out(`  the network: ${server.url}/network (JSON), ${server.url}/network.svg (picture)`);
    if (server.insecureHttp) out('  plain HTTP on loopback: callers name their SAE in the X-SAE-ID header');
    else if (server.credentials) out(`  mutual TLS: CA ${server.credentials.caFile}; SAE certificates sae-<ID>.crt/.key beside it`);
  }
  await untilStopSignal();
  await server.close();
  if (!json) out('qkd-tls kme: stopped');
  return 0;
}

function withoutType(e: NetworkEvent): Record<string, unknown> {
  const { type: _t, ...rest } = e;
  return rest;
}

/** One line for a network event. */
export function describeEvent(e: NetworkEvent): string {
  const at = `t=${e.atS.toFixed(1)}s`;
  switch (e.type) {
    case 'link-state':
      return `${at} link ${e.link}: ${e.from} -> ${e.to}${e.qber !== null ? ` (QBER ${(e.qber * 100).toFixed(1)}%)` : ''}`;
    case 'route':
      return `${at} route ${e.masterSaeId} -> ${e.slaveSaeId}: ${e.path.join(' -> ')}${e.previous ? ` (was ${e.previous.join(' -> ')})` : ''}`;
    case 'relay':
      return `${at} relayed ${e.keys} key(s) of ${e.sizeBits} bits ${e.path.join(' -> ')}`;
    case 'refused':
      return `${at} refused ${e.masterSaeId} -> ${e.slaveSaeId}: ${e.message}`;
  }
}
