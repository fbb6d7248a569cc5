/**
 * `qkd-tls kme`: runs the ETSI GS QKD 014 key manager simulator (two KMEs sharing one simulated QKD link)
 * until interrupted, printing the URLs it serves and one line per request (never key material).
 */
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { jsonText } from 'qkd-tls';
import { etsi014Path } from 'qkd-tls/qkd';
import { type KmeLogEvent, type KmeSimulator, type KmeSimulatorOptions, startKmeSimulator } from 'qkd-tls/kme';
import { untilStopSignal, usageError } from '../cli/command.js';
import { listenHint } from '../cli/listen-error.js';
import { runNetworkKme } from '../cli/network-kme.js';
import { kmeLogLine, Reporter } from '../cli/report.js';

export const HELP = `usage: qkd-tls kme [--listen HOST:PORT] [options]
       qkd-tls kme --topology FILE [--listen HOST:PORT] [--insecure-http] [--json] [--time-scale N]
                   (a whole simulated QKD network: see qkd-tls kme --topology x --help)

Simulates the key managers (KMEs) of a Quantum Key Distribution link, speaking the ETSI GS QKD 014 REST
API. A QKD link gives two key managers the same random keys; each application endpoint (an "SAE") asks its
own KME for them. This command runs both KMEs of one link:

  KME-A, the master KME, on PORT:    the TLS client (master SAE) asks it for new keys
                                     (GET|POST /api/v1/keys/{slave SAE}/enc_keys) and gets keys + key IDs
  KME-B, the slave KME, on PORT+1:   the TLS server (slave SAE) asks it for the same keys by ID
                                     (GET|POST /api/v1/keys/{master SAE}/dec_keys)
  both:                              GET /api/v1/keys/{other SAE}/status

Each key is delivered once to each side, then deleted. Keys are produced at --rate bits per second into a
store of --max-keys keys. By default the KMEs speak HTTPS and require a client certificate whose CN is the
caller's SAE ID; the certificates are created in --certs on first start and reused afterwards.

options:
  --listen HOST:PORT        address of KME-A (default 127.0.0.1:8443); KME-B listens on PORT+1
                            (both pick free ports when PORT is 0)
  --slave-port PORT         port of KME-B instead of PORT+1
  --rate BPS                key production rate in bits per second (default 100000; 0 = none)
  --key-size BITS           default key size, a multiple of 8 (default 256)
  --min-key-size BITS       smallest key size a request may ask for (default 64)
  --max-key-size BITS       largest key size a request may ask for (default 1024)
  --max-keys N              capacity of the key store, in keys of --key-size (default 100000)
  --max-keys-per-request N  most keys in one request (default 128; at most 65536, and N × --max-key-size
                            at most 134217728 bits: 16 MiB of keys in one answer)
  --initial-keys N          keys already in the store at start (default 1000)
  --certs DIR               directory of the CA, KME and SAE certificates (default ./kme-certs)
  --insecure-http           plain HTTP instead of mutual TLS, loopback only; the caller names its SAE in
                            the X-SAE-ID header (for tests and demos)
  --master-sae ID           SAE ID of the master SAE, the TLS client (default client-sae)
  --slave-sae ID            SAE ID of the slave SAE, the TLS server (default server-sae)
  --master-kme ID           KME ID of KME-A in Status answers (default KME-A)
  --slave-kme ID            KME ID of KME-B in Status answers (default KME-B)
  --json                    print one JSON object per line instead of text
  -h, --help                this help

Stop it with Ctrl-C.`;

export async function run(argv: string[]): Promise<number> {
  if (argv.some((a) => a === '--topology' || a.startsWith('--topology='))) return runNetworkKme(argv);
  let parsed: { options: KmeSimulatorOptions; json: boolean; help: boolean };
  try {
    parsed = parseKmeArgs(argv);
  } catch (e) {
    return usageError('kme', (e as Error).message);
  }
  if (parsed.help) {
    process.stdout.write(HELP + '\n');
    return 0;
  }
  const { json } = parsed;
  const out = (line: string) => process.stdout.write(line + '\n');
  let kme: KmeSimulator;
  try {
    kme = await startKmeSimulator({ ...parsed.options, log: (e) => out(json ? jsonEvent(e) : kmeLogLine(e)) });
  } catch (e) {
    // The simulator checks its options before it listens and refuses a bad one with a RangeError: a usage error,
    // told with the command's option names (it said "keySize must be a multiple of 8 bits" for --key-size 100).
    if (e instanceof RangeError) return usageError('kme', optionNames(e.message));
    // With --json an error event with the hint apart, as the other commands report (it was the text line).
    new Reporter(json).fatal('kme', { message: (e as Error).message, hint: listenHint(e) || undefined });
    return 1;
  }
  out(json ? JSON.stringify(listeningEvent(kme, parsed.options)) : describe(kme, parsed.options).join('\n'));

  await untilStopSignal();
  await kme.close();
  if (!json) out('qkd-tls kme: stopped');
  return 0;
}

/** Parses the command line into simulator options. Throws on a bad option. */
export function parseKmeArgs(argv: string[]): { options: KmeSimulatorOptions; json: boolean; help: boolean } {
  const { values } = parseArgs({
    args: argv,
    strict: true,
    allowPositionals: false,
    options: {
      listen: { type: 'string', default: '127.0.0.1:8443' },
      'slave-port': { type: 'string' },
      rate: { type: 'string' },
      'key-size': { type: 'string' },
      'min-key-size': { type: 'string' },
      'max-key-size': { type: 'string' },
      'max-keys': { type: 'string' },
      'max-keys-per-request': { type: 'string' },
      'initial-keys': { type: 'string' },
      certs: { type: 'string', default: 'kme-certs' },
      'insecure-http': { type: 'boolean', default: false },
      'master-sae': { type: 'string' },
      'slave-sae': { type: 'string' },
      'master-kme': { type: 'string' },
      'slave-kme': { type: 'string' },
      json: { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  const { host, port } = parseHostPort(values.listen!);
  const slavePort = values['slave-port'] !== undefined ? integer(values['slave-port'], '--slave-port', 65535) : port === 0 ? 0 : port + 1;
  if (slavePort > 65535) throw new Error(`--listen port ${port} leaves no room for KME-B at PORT+1; give --slave-port`);
  // KME-B on KME-A's own port failed as "address already in use ... another program listens on that port".
  if (slavePort !== 0 && slavePort === port) throw new Error(`--slave-port ${slavePort} is KME-A's port (--listen): KME-B needs a port of its own`);
  const opt = (name: string) => (values as unknown as Record<string, string | undefined>)[name];
  const num = (name: string) => (opt(name) === undefined ? undefined : integer(opt(name)!, `--${name}`, Number.MAX_SAFE_INTEGER));
  const options: KmeSimulatorOptions = {
    host,
    masterPort: port,
    slavePort,
    rateBitsPerSecond: num('rate'),
    keySize: num('key-size'),
    minKeySize: num('min-key-size'),
    maxKeySize: num('max-key-size'),
    maxKeyCount: num('max-keys'),
    maxKeysPerRequest: num('max-keys-per-request'),
    initialKeyCount: num('initial-keys'),
    masterSaeId: values['master-sae'],
    slaveSaeId: values['slave-sae'],
    masterKmeId: values['master-kme'],
    slaveKmeId: values['slave-kme'],
  };
  if (values['insecure-http']) options.insecureHttp = true;
  else options.certsDir = resolve(values.certs!);
  return { options, json: values.json!, help: values.help! };
}

/** The simulator's option names in a message, as this command's options. */
const OPTION_NAMES: Record<string, string> = {
  keySize: '--key-size',
  minKeySize: '--min-key-size',
  maxKeySize: '--max-key-size',
  maxKeyCount: '--max-keys',
  maxKeysPerRequest: '--max-keys-per-request',
  initialKeyCount: '--initial-keys',
  rateBitsPerSecond: '--rate',
  masterSaeId: '--master-sae',
  slaveSaeId: '--slave-sae',
  masterKmeId: '--master-kme',
  slaveKmeId: '--slave-kme',
  certsDir: '--certs',
  insecureHttp: '--insecure-http',
};

function optionNames(message: string): string {
  return message.replace(/^kme simulator: /, '').replace(/\b[a-z][A-Za-z]+\b/g, (w) => OPTION_NAMES[w] ?? w);
}

function parseHostPort(s: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]+)):(\d+)$/.exec(s);
  if (!m) throw new Error(`--listen wants HOST:PORT (or [IPv6]:PORT), got '${s}'`);
  return { host: m[1] ?? m[2], port: integer(m[3], '--listen port', 65535) };
}

function integer(s: string, name: string, max: number): number {
  if (!/^\d+$/.test(s) || Number(s) > max) throw new Error(`${name} wants a whole number up to ${max}, got '${s}'`);
  return Number(s);
}

function describe(kme: KmeSimulator, o: KmeSimulatorOptions): string[] {
  const m = kme.master;
  const s = kme.slave;
  const lines = [
    `qkd-tls kme: ETSI GS QKD 014 simulator, one QKD link, ${o.rateBitsPerSecond ?? 100_000} bit/s, ${kme.stats().storedKeyCount} keys stored`,
    `  ${m.kmeId} (master KME) for SAE '${m.saeId}': ${m.url}`,
    `      status    GET       ${m.url}${etsi014Path(m.peerSaeId, 'status')}`,
    `      enc_keys  GET|POST  ${m.url}${etsi014Path(m.peerSaeId, 'enc_keys')}`,
    `  ${s.kmeId} (slave KME) for SAE '${s.saeId}': ${s.url}`,
    `      status    GET       ${s.url}${etsi014Path(s.peerSaeId, 'status')}`,
    `      dec_keys  GET|POST  ${s.url}${etsi014Path(s.peerSaeId, 'dec_keys')}`,
  ];
  const c = kme.credentials;
  let clientCreds = '';
  let serverCreds = '';
  if (kme.insecureHttp) {
    lines.push(`  plain HTTP on loopback: callers name their SAE in the X-SAE-ID header`);
  } else if (c) {
    lines.push(`  mutual TLS: certificates in ${o.certsDir}${kme.createdFiles.length ? ` (${kme.createdFiles.length} certificate(s) created, each with its key)` : ''}`);
    const mc = c.saes[m.saeId];
    const sc = c.saes[s.saeId];
    lines.push(`      CA ${c.caFile}`, `      ${m.saeId}: ${mc.certFile} ${mc.keyFile}`, `      ${s.saeId}: ${sc.certFile} ${sc.keyFile}`);
    clientCreds = ` --kme-ca ${c.caFile} --kme-cert ${mc.certFile} --kme-key ${mc.keyFile}`;
    serverCreds = ` --kme-ca ${c.caFile} --kme-cert ${sc.certFile} --kme-key ${sc.keyFile}`;
  }
  lines.push(
    `  TLS server: qkd-tls server --listen HOST:PORT --kme ${s.url} --sae-id ${s.saeId} --peer-sae-id ${m.saeId}${serverCreds}`,
    `  TLS client: qkd-tls client --connect HOST:PORT --kme ${m.url} --sae-id ${m.saeId} --peer-sae-id ${s.saeId}${clientCreds}`,
  );
  return lines;
}

function listeningEvent(kme: KmeSimulator, o: KmeSimulatorOptions): Record<string, unknown> {
  const c = kme.credentials;
  return {
    event: 'listening',
    master: { ...kme.master },
    slave: { ...kme.slave },
    insecureHttp: kme.insecureHttp,
    rateBitsPerSecond: o.rateBitsPerSecond ?? 100_000,
    storedKeyCount: kme.stats().storedKeyCount,
    certificates: c ? { dir: o.certsDir, ca: c.caFile, saes: Object.fromEntries(Object.entries(c.saes).map(([id, p]) => [id, { cert: p.certFile, key: p.keyFile }])) } : null,
  };
}

function jsonEvent(e: KmeLogEvent): string {
  const { type, ...rest } = e;
  return jsonText(type === 'request' ? { event: type, ...rest, callerSaeId: e.callerSaeId ?? null } : { event: type, ...rest });
}
