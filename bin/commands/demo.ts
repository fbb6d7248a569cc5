/**
 * `qkd-tls demo` (what `npm start` runs): the whole of model 1 on one machine, explained as it happens.
 *
 * It starts the ETSI GS QKD 014 key manager simulator (two KMEs sharing a simulated QKD link), a TLS server
 * that gets its keys from KME-B, and a client that gets them from KME-A; runs a few handshakes and an echo on
 * 127.0.0.1; shows a replayed key being refused; prints what is left; and exits 0. No arguments, no files.
 */
import { appendFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import {
  decodeImportedIdentity,
  DEFAULT_SUITES,
  type GroupName,
  type HandshakeInfo,
  type ImportOptions,
  type KexMode,
  type Psk,
  type PskLease,
  SUITES,
  type SupportedSuiteName,
  takePsks,
  TargetKdf,
  targetKdfsForHashes,
  type TlsError,
} from 'qkd-tls';
import { Etsi014Client, Etsi014ClientSource, Etsi014ServerSource, type Etsi014SourceEvent, releaseAfter } from 'qkd-tls/qkd';
import { type KmeSimulator, startKmeSimulator } from 'qkd-tls/kme';
import { createServer, defaultNodeCrypto, type QkdTlsServer } from 'qkd-tls/node';
import { closeDemoParts } from '../cli/demo-close.js';
import { echoOnce } from '../cli/echo-once.js';
import { leaseWiped, releasingServerResolver } from '../cli/server-key-release.js';
import { NetworkDemo } from '../cli/network-demo.js';
import { usageError } from '../cli/command.js';

const HELP = `usage: qkd-tls demo [--handshakes N]
       qkd-tls demo --network [--svg FILE]
       qkd-tls demo --web [--listen HOST:PORT]   (the same in a browser: see qkd-tls demo --web --help)

Runs model 1 of QKD-TLS end to end on this machine and explains each step: a simulated QKD link with its two
key managers (ETSI GS QKD 014), a TLS 1.3 server and a client that each fetch the same quantum keys from
their own key manager, a few handshakes with an echo, and a replayed key being refused. Exits 0 on success.

  --handshakes N   how many handshakes to run (default 4, one with each setting; more repeat them; at most 20)
  --network        instead: TLS across a simulated QKD network of four nodes (three hops, a detour), an
                   eavesdropper that raises a link's QBER, rerouting, and failing closed without a route
  --svg FILE       (with --network) write a picture of the network at the end to FILE
  --web            instead: the single-link demo in a browser (see qkd-tls demo --web --help); the options
                   above do not go with it`;

/** The options of the demo in the terminal, which --web refuses. */
const TERMINAL_ONLY = ['--handshakes', '--network', '--svg'];

const CLIENT_SAE = 'client-sae';
const SERVER_SAE = 'server-sae';
const CONTEXT = 'qkd-tls demo';
const TIME_LIMIT_MS = 30_000;

/** What each handshake of the demo shows (suites offered, key-exchange modes, key-exchange groups). */
interface Step {
  suites?: SupportedSuiteName[];
  kexModes?: KexMode[];
  groups?: GroupName[];
  keyShareGroups?: GroupName[];
  why: string;
}
const PLAN: Step[] = [
  { why: 'default settings: the client offers all three TLS 1.3 cipher suites' },
  { suites: ['TLS_AES_256_GCM_SHA384'], why: 'the client offers only AES-256-GCM with SHA-384' },
  { kexModes: ['psk_ke'], why: 'the client asks for psk_ke: the QKD key alone, no ECDHE' },
  {
    groups: ['X25519MLKEM768', 'x25519'],
    keyShareGroups: ['X25519MLKEM768', 'x25519'],
    why: 'the QKD key plus a post-quantum key exchange: the client sends an X25519MLKEM768 share (ML-KEM-768 and X25519) and an x25519 one, as browsers do',
  },
];

export async function run(argv: string[]): Promise<number> {
  // The same demo in a browser: bin/commands/demo-web.ts. The options of the terminal demo do not go with it: the
  // page runs the single-link demo (there is no simulated network, and so no simulated time, behind it). They were
  // passed on to the web demo's parser, which called them unknown ("Unknown option '--network'", found in a README
  // walkthrough), as if demo had no such option.
  if (argv.includes('--web')) {
    const terminalOnly = argv.find((a) => TERMINAL_ONLY.some((o) => a === o || a.startsWith(`${o}=`)));
    if (terminalOnly !== undefined) {
      const option = terminalOnly.split('=')[0];
      return usageError('demo', `${option} does not go with --web: the page runs the single-link demo in real time, with no simulated network; --network, --svg and --handshakes are options of the demo in the terminal`);
    }
    return (await import('./demo-web.js')).run(argv.filter((a) => a !== '--web'));
  }
  let count = PLAN.length;
  let network: { svgFile?: string } | undefined;
  try {
    const { values } = parseArgs({
      args: argv,
      options: {
        handshakes: { type: 'string' },
        network: { type: 'boolean' },
        svg: { type: 'string' },
        // The web demo's options, known here so that one given without --web is named as such, not as unknown.
        listen: { type: 'string' },
        json: { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
      },
      strict: true,
    });
    if (values.help) {
      process.stdout.write(HELP + '\n');
      return 0;
    }
    for (const option of ['listen', 'json'] as const) if (values[option] !== undefined) throw new Error(`--${option} goes with --web`);
    if (values.svg !== undefined && !values.network) throw new Error('--svg goes with --network');
    if (values.network && values.handshakes !== undefined) throw new Error('--handshakes does not go with --network');
    if (values.network) network = { svgFile: values.svg };
    if (values.svg !== undefined) {
      // Found now rather than at the end of the tour, which then failed (exit 1).
      try {
        appendFileSync(values.svg, '');
      } catch (e) {
        throw new Error(`--svg: cannot write ${values.svg}: ${(e as Error).message}`);
      }
    }
    if (values.handshakes !== undefined) {
      count = Number(values.handshakes);
      if (!Number.isInteger(count) || count < 1 || count > 20) throw new Error('--handshakes must be a whole number from 1 to 20');
    }
  } catch (e) {
    return usageError('demo', (e as Error).message);
  }
  const demo = network ? new NetworkDemo(network) : new Demo(count);
  let timer: NodeJS.Timeout | undefined;
  const limit = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`the demo did not finish within ${TIME_LIMIT_MS / 1000} s`)), TIME_LIMIT_MS);
  });
  try {
    await Promise.race([demo.run(), limit]);
    return 0;
  } catch (e) {
    process.stderr.write(`\nqkd-tls demo failed: ${(e as Error).message}\n`);
    return 1;
  } finally {
    clearTimeout(timer);
    await demo.close();
  }
}

class Demo {
  private kme: KmeSimulator | undefined;
  private clientKeys: Etsi014ClientSource | undefined;
  private serverKeys: Etsi014ServerSource | undefined;
  private server: QkdTlsServer | undefined;
  /** The backstop: the server wipes each key when its handshake is over (releasingServerResolver). */
  private readonly wipeLater = releaseAfter(15_000);
  private readonly serverLeases: PskLease[] = [];
  private readonly events: Etsi014SourceEvent[] = [];
  private readonly crypto = defaultNodeCrypto();
  private readonly importer: ImportOptions = { context: CONTEXT };
  private port = 0;

  constructor(private readonly handshakes: number) {}

  async run(): Promise<void> {
    const say = (s = '') => process.stdout.write(s + '\n');
    say('qkd-tls demo: TLS 1.3 on keys from Quantum Key Distribution (model 1, everything on 127.0.0.1)');
    say();
    say('A QKD link gives two key managers (KMEs) the same random keys. Each application endpoint (an "SAE")');
    say('asks its own KME for them over the ETSI GS QKD 014 REST API: the TLS client asks KME-A for new keys');
    say('and gets each with a key ID; it names that ID in its ClientHello; the TLS server asks KME-B for the');
    say('key with that ID. Both then hold the same secret, which becomes a TLS 1.3 pre-shared key (PSK), used');
    say('for one handshake only.');

    // 1. The key managers.
    this.kme = await startKmeSimulator({ insecureHttp: true, rateBitsPerSecond: 100_000, initialKeyCount: 100, masterSaeId: CLIENT_SAE, slaveSaeId: SERVER_SAE });
    const k = this.kme;
    say();
    say('1. The key managers (a simulator: plain HTTP on loopback here; real KMEs require mutual TLS)');
    say(`   ${k.master.kmeId} serves the client "${CLIENT_SAE}":  ${k.master.url}`);
    say(`   ${k.slave.kmeId} serves the server "${SERVER_SAE}":  ${k.slave.url}`);
    say(`   The simulated link holds ${k.stats().storedKeyCount} keys of 256 bits and makes 100000 more bits a second.`);

    // 2. The TLS server, which resolves key IDs at KME-B.
    const slave = new Etsi014Client({ baseUrl: k.slave.url, saeId: SERVER_SAE, timeoutMs: 3000 });
    this.serverKeys = new Etsi014ServerSource({ client: slave, ownsClient: true, peerSaeIds: [CLIENT_SAE], onEvent: (e) => this.events.push(e) });
    const resolver = releasingServerResolver(this.crypto, this.serverKeys, {
      importer: this.importer,
      backstop: (lease) => {
        this.serverLeases.push(lease);
        this.wipeLater(lease);
      },
    });
    this.server = createServer({ crypto: this.crypto, handshakeTimeout: 10_000, psks: resolver }, (socket) => socket.pipe(socket));
    this.server.on('tlsClientError', () => {}); // reported by the client side below
    await new Promise<void>((resolve, reject) => {
      this.server!.once('error', reject);
      this.server!.listen(0, '127.0.0.1', () => resolve());
    });
    this.port = this.server.address().port;
    say();
    say(`2. The TLS server listens on 127.0.0.1:${this.port}. It echoes what it receives. For each ClientHello it`);
    say(`   reads the key ID from the PSK identity and fetches that key from ${k.slave.kmeId} (dec_keys).`);

    // 3. The client's key pool.
    const master = new Etsi014Client({ baseUrl: k.master.url, saeId: CLIENT_SAE, timeoutMs: 3000 });
    this.clientKeys = new Etsi014ClientSource({
      client: master,
      ownsClient: true,
      peerSaeId: SERVER_SAE,
      saeId: CLIENT_SAE,
      poolSize: Math.min(this.handshakes, 4),
      keyLifetimeMs: 60_000,
      onEvent: (e) => this.events.push(e),
    });
    await this.clientKeys.prefetch();
    const fetched = this.events.flatMap((e) => (e.type === 'fetched' ? e.keyIds : []));
    say();
    say(`3. The client fetched ${fetched.length} keys ahead of time from ${k.master.kmeId} (enc_keys), so that a`);
    say('   handshake need not wait for the key manager. Each expires unused after 60 s. Key IDs:');
    for (const id of fetched) say(`     ${id}`);

    // 4. Handshakes.
    say();
    say('4. Handshakes. The client takes one key per handshake and imports it with RFC 9258: the QKD key becomes');
    say('   one PSK identity per hash of the cipher suites it offers (SHA-256, SHA-384), each with its own derived');
    say('   key, and the server picks the one that fits the suite it chooses. Each identity carries');
    say(`   "${CLIENT_SAE}/<key ID>" and the context "${CONTEXT}" (in clear: it names the key, it does not reveal it).`);
    let replay: Psk[] | undefined;
    let replayId: string | undefined;
    for (let i = 0; i < this.handshakes; i++) {
      const plan = PLAN[i % PLAN.length];
      const before = this.events.length;
      const leasesBefore = this.serverLeases.length;
      const r = await this.connect(`hello from the QKD-TLS demo, handshake ${i + 1}`, plan);
      say();
      say(`   Handshake ${i + 1} (${plan.why}):`);
      say(`     the client offered key ${r.keyIds.join(', ')} as ${r.offered} PSK identit${r.offered === 1 ? 'y' : 'ies'} (imported for ${r.kdfs.join(' and ')})`);
      for (const e of this.events.slice(before)) {
        if (e.type === 'resolved') say(`     the server fetched key ${e.keyId} from ${k.slave.kmeId}`);
      }
      if (r.error || !r.info) throw new Error(`handshake ${i + 1} failed: ${r.error?.message ?? 'no handshake'}`);
      say(`     negotiated ${r.info.version} ${r.info.suite}, mode ${r.info.kex}${describeGroup(r.info.group)}`);
      if (r.info.group === 'X25519MLKEM768') {
        say('     the handshake secret mixes three secrets: the QKD key, an ML-KEM-768 secret (a post-quantum key');
        say('     encapsulation, FIPS 203) and an X25519 secret; an attacker must break the QKD key AND both of the others');
      }
      say(`     the server chose identity #${r.info.identityIndex}: ${describeIdentity(r.info)}`);
      say(`     echoed ${r.echoed.length} bytes: "${r.echoed}"`);
      if (r.echoed !== r.sent) throw new Error(`handshake ${i + 1}: the echo differs from what was sent`);
      const leases = this.serverLeases.slice(leasesBefore);
      if (leases.length === 0 || !leases.every(leaseWiped)) throw new Error(`handshake ${i + 1}: the server still holds its key after the handshake`);
      say('     the server wiped its copy of the key as soon as the handshake was over');
      if (i === 0) {
        replay = r.copy;
        replayId = r.keyIds[0];
      } else for (const p of r.copy) p.secret.fill(0);
    }

    // 5. A replay.
    say();
    say(`5. What if someone offers key ${replayId} again (say, a replayed ClientHello)?`);
    const again = await this.connect('replayed', {}, replay);
    for (const p of replay ?? []) p.secret.fill(0);
    const refused = this.events.find((e) => e.type === 'refused');
    if (!again.error || again.info) throw new Error('the replayed key was accepted');
    say(`   the client got: ${again.error.message}`);
    if (refused?.type === 'refused') say(`   the server says: ${refused.message}`);

    // 6. What is left.
    const stats = k.stats();
    say();
    say('6. Keys left');
    say(`   client pool: ${this.clientKeys.pooled} key(s) fetched and unused (wiped when the demo stops)`);
    say(`   ${k.master.kmeId}: ${stats.storedKeyCount} keys ready to hand out; ${stats.issued} issued so far`);
    say(`   ${k.slave.kmeId}: ${stats.redeemed} delivered to the server; ${stats.pendingKeyCount} issued to the client and not (yet) fetched by the server`);
    say(`   server: remembers ${this.serverKeys.rememberedKeyIds} used key ID(s), to refuse replays`);
    say();
    say(`Done: ${this.handshakes} handshake(s), each on its own QKD key, each key used once and wiped afterwards.`);
    say('Run the pieces yourself, in three terminals of this project:');
    say('  npx qkd-tls kme --listen 127.0.0.1:8443 --insecure-http');
    say(`  npx qkd-tls server --listen 127.0.0.1:9443 --kme http://127.0.0.1:8444 --sae-id ${SERVER_SAE} --peer-sae-id ${CLIENT_SAE} --importer`);
    say(`  echo hello | npx qkd-tls client --connect 127.0.0.1:9443 --kme http://127.0.0.1:8443 --sae-id ${CLIENT_SAE} --peer-sae-id ${SERVER_SAE} --importer`);
  }

  /** One client connection: fresh keys (or `psks`), one message, its echo. */
  private connect(
    message: string,
    plan: Omit<Step, 'why'>,
    psks?: readonly Psk[],
  ): Promise<{ info?: HandshakeInfo; error?: TlsError | Error; echoed: string; sent: string; keyIds: string[]; offered: number; copy: Psk[]; kdfs: string[] }> {
    const r = { echoed: '', sent: message, keyIds: [] as string[], offered: psks?.length ?? 0, copy: [] as Psk[], kdfs: [] as string[] } as {
      kdfs: string[];
      info?: HandshakeInfo;
      error?: Error;
      echoed: string;
      sent: string;
      keyIds: string[];
      offered: number;
      copy: Psk[];
    };
    const keys: { release?: () => void } = {};
    return echoOnce(
      {
        crypto: this.crypto,
        host: '127.0.0.1',
        port: this.port,
        handshakeTimeout: 10_000,
        suites: plan.suites,
        kexModes: plan.kexModes,
        groups: plan.groups,
        keyShareGroups: plan.keyShareGroups,
        psks:
          psks ??
          (async () => {
            // RFC 9258 §5.1: one imported PSK for each target KDF of the suites offered.
            const hashes = (plan.suites ?? DEFAULT_SUITES).map((n) => SUITES[n].hash);
            const importer = { ...this.importer, targetKdfs: targetKdfsForHashes(hashes) };
            const offer = await takePsks(this.crypto, this.clientKeys!, { importer });
            r.kdfs = importer.targetKdfs;
            keys.release = offer.release;
            r.keyIds = offer.keys.map((k) => k.label ?? '?');
            r.offered = offer.psks.length;
            r.copy = offer.psks.map((p) => ({ ...p, secret: p.secret.slice() }));
            return offer.psks;
          }),
      },
      message,
      r,
      keys,
    );
  }

  async close(): Promise<void> {
    await closeDemoParts({ server: this.server, clientKeys: this.clientKeys, serverKeys: this.serverKeys, wipeLater: this.wipeLater });
    await this.kme?.close();
  }
}

/** "client-sae/<key ID>, imported for HKDF_SHA256" for an imported identity; the text otherwise. */
/** How the demo names the key exchange on top of the QKD key. */
function describeGroup(group: GroupName | null): string {
  if (group === null) return ' (the QKD key alone)';
  if (group === 'X25519MLKEM768') return ' with X25519MLKEM768, a post-quantum hybrid key exchange (forward secrecy)';
  return ` with ${group} ECDHE (forward secrecy)`;
}

function describeIdentity(info: HandshakeInfo): string {
  const imported = decodeImportedIdentity(info.identityBytes);
  if (!imported) return info.identity;
  const kdf = imported.targetKdf === TargetKdf.HKDF_SHA256 ? 'HKDF_SHA256' : imported.targetKdf === TargetKdf.HKDF_SHA384 ? 'HKDF_SHA384' : `KDF 0x${imported.targetKdf.toString(16)}`;
  const ctx = imported.context.length > 0 ? `, context "${new TextDecoder().decode(imported.context)}"` : '';
  return `${new TextDecoder().decode(imported.externalIdentity)} imported for ${kdf}${ctx} (${info.identityBytes.length} bytes)`;
}
