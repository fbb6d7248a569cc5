/**
 * `qkd-tls demo --network`: TLS 1.3 across a simulated QKD network, explained step by step.
 *
 * Four nodes: the TLS client's SAE at A, the TLS server's SAE at D; the main route A-B-C-D (three hops of
 * 15 km) and a detour B-D (60 km). A handshake crosses three hops; an eavesdropper appears on C-D, its QBER
 * rises above the threshold, the controller routes around it through B-D; then the detour is cut too and the
 * next handshake fails closed (the client's key manager answers 503 with the reason; no key, no handshake).
 */
import { writeFileSync } from 'node:fs';
import { type PskLease, takePsks } from 'qkd-tls';
import { Etsi014Client, Etsi014ClientSource, Etsi014ServerSource, releaseAfter, type Etsi014SourceEvent } from 'qkd-tls/qkd';
import { networkSvg, parseTopology, type NetworkEvent, type QkdNetworkServer, startQkdNetworkServer } from 'qkd-tls/network';
import { createServer, defaultNodeCrypto, type QkdTlsServer } from 'qkd-tls/node';
import { closeDemoParts } from './demo-close.js';
import { echoOnce, type EchoResult } from './echo-once.js';
import { describeEvent } from './network-kme.js';
import { leaseWiped, releasingServerResolver } from './server-key-release.js';

const CLIENT_SAE = 'client-sae';
const SERVER_SAE = 'server-sae';
const EVE_FRACTION = 0.5;

/** The demo's network (also in the README as an example topology). */
export const DEMO_TOPOLOGY = {
  nodes: [
    { name: 'A', saes: [CLIENT_SAE], x: 0, y: 1 },
    { name: 'B', x: 1, y: 1 },
    { name: 'C', x: 2, y: 0 },
    { name: 'D', saes: [SERVER_SAE], x: 3, y: 1 },
  ],
  links: [
    { a: 'A', b: 'B', km: 15 },
    { a: 'B', b: 'C', km: 15 },
    { a: 'C', b: 'D', km: 15 },
    { a: 'B', b: 'D', km: 60 },
  ],
};

export interface NetworkDemoOptions {
  /** Write the picture of the network here at the end (SVG). */
  svgFile?: string;
  say?: (line?: string) => void;
}

export class NetworkDemo {
  private net: QkdNetworkServer | undefined;
  private server: QkdTlsServer | undefined;
  private clientKeys: Etsi014ClientSource | undefined;
  private serverKeys: Etsi014ServerSource | undefined;
  /** The backstop: the server wipes each key when its handshake is over (releasingServerResolver). */
  private readonly wipeLater = releaseAfter(15_000);
  private readonly serverLeases: PskLease[] = [];
  private readonly crypto = defaultNodeCrypto();
  private readonly netEvents: NetworkEvent[] = [];
  private readonly keyEvents: Etsi014SourceEvent[] = [];
  private port = 0;
  private readonly say: (line?: string) => void;

  constructor(private readonly options: NetworkDemoOptions = {}) {
    this.say = options.say ?? ((s = '') => process.stdout.write(s + '\n'));
  }

  async run(): Promise<void> {
    const say = this.say;
    say('qkd-tls demo --network: TLS 1.3 across a simulated QKD network (everything on 127.0.0.1)');
    say();
    say('A QKD link joins two nodes over fibre: single photons (BB84) give both ends the same secret bits, at a');
    say('rate that falls with distance. Nodes without a direct link get keys by relay: the first node draws a key');
    say('and sends it hop by hop, one-time-pad encrypted with each hop\'s own link key (trusted nodes). Anyone who');
    say('measures the photons on a link disturbs them: the error rate (QBER) rises and the link stops serving.');

    // 1. The network.
    this.net = await startQkdNetworkServer({ topology: parseTopology(DEMO_TOPOLOGY), insecureHttp: true, onEvent: (e) => this.netEvents.push(e) });
    const net = this.net;
    say();
    say('1. The network: four nodes, each with a key manager (KME) speaking ETSI GS QKD 014 (plain HTTP here)');
    for (const n of DEMO_TOPOLOGY.nodes) say(`   node ${n.name}: ${net.kmeUrl(n.name)}${n.saes ? `  serves SAE "${n.saes[0]}"` : ''}`);
    for (const l of net.network.snapshot().links) {
      say(`   link ${l.name}: ${l.km} km of fibre, ${Math.round(l.siftedRateBps / 1000)} kbit/s sifted, QBER ${pct(l.expectedQber)}, secret key ${Math.round(l.keyRateBps / 1000)} kbit/s`);
    }
    say(`   (decoy-state BB84, Ma et al. 2005; the picture is served at ${net.url}/network.svg)`);
    await this.until('every link has key in its pool', () => net.network.snapshot().links.every((l) => l.poolBits >= 4096));

    // 2. TLS server at D, client at A.
    const serverKme = new Etsi014Client({ baseUrl: net.kmeUrl('D'), saeId: SERVER_SAE, timeoutMs: 3000 });
    this.serverKeys = new Etsi014ServerSource({ client: serverKme, ownsClient: true, peerSaeIds: [CLIENT_SAE], onEvent: (e) => this.keyEvents.push(e) });
    const resolver = releasingServerResolver(this.crypto, this.serverKeys, {
      backstop: (lease) => {
        this.serverLeases.push(lease);
        this.wipeLater(lease);
      },
    });
    this.server = createServer({ crypto: this.crypto, handshakeTimeout: 10_000, psks: resolver }, (socket) => socket.pipe(socket));
    this.server.on('tlsClientError', () => {});
    await new Promise<void>((resolve, reject) => {
      this.server!.once('error', reject);
      this.server!.listen(0, '127.0.0.1', () => resolve());
    });
    this.port = this.server.address().port;
    const clientKme = new Etsi014Client({ baseUrl: net.kmeUrl('A'), saeId: CLIENT_SAE, timeoutMs: 1500, retries: 1 });
    this.clientKeys = new Etsi014ClientSource({ client: clientKme, ownsClient: true, peerSaeId: SERVER_SAE, saeId: CLIENT_SAE, poolSize: 0, onEvent: (e) => this.keyEvents.push(e) });
    say();
    say(`2. A TLS server (SAE "${SERVER_SAE}") listens on 127.0.0.1:${this.port}; it gets keys from node D's KME (dec_keys).`);
    say(`   The TLS client (SAE "${CLIENT_SAE}") asks node A's KME for a fresh key per connection (enc_keys).`);

    // 3. A handshake across three hops.
    await this.handshake('3. A handshake across three hops', 'the controller picks the shortest route with enough key');

    // 4. Eve.
    net.network.addEavesdropper({ link: 'C-D', fraction: EVE_FRACTION });
    say();
    say(`4. An eavesdropper starts an intercept-resend attack on link C-D, measuring ${EVE_FRACTION * 100}% of the photons.`);
    say(`   She guesses the basis wrong half the time, so a quarter of the bits she touches arrive wrong: the QBER`);
    say(`   should rise by about ${pct(EVE_FRACTION * 0.25)}. The link estimates its QBER on every block of key it distils.`);
    await this.until('link C-D notices', () => net.network.snapshot().links.find((l) => l.name === 'C-D')!.state === 'compromised');
    const cd = net.network.snapshot().links.find((l) => l.name === 'C-D')!;
    say(`   link C-D: QBER ${pct(cd.qber)} > threshold ${pct(cd.qberThreshold)}: it discards its unconfirmed key and stops serving (state "${cd.state}").`);
    for (const e of this.netEvents.filter((e) => e.type === 'link-state')) say(`     ${describeEvent(e)}`);

    // 5. The detour.
    await this.handshake('5. The next handshake', 'C-D is compromised, so the controller takes the detour');
    const route = this.netEvents.filter((e) => e.type === 'route').at(-1);
    if (route) say(`     ${describeEvent(route)}`);

    // 6. Cut the detour: fail closed.
    net.network.setLinkCut('B-D', true);
    say();
    say('6. Now the detour B-D is cut as well. There is no route from A to D with trustworthy key.');
    const r = await this.connectOnce('this must not be sent');
    if (r.info || !r.error) throw new Error('a handshake succeeded without a route: it must fail closed');
    say('   The handshake fails closed, before any TLS message is sent: the client has no key, and never reuses one.');
    say(`   the client got: ${r.error.message}`);
    const refused = this.netEvents.filter((e) => e.type === 'refused').at(-1);
    if (refused) say(`   node A's KME says: ${refused.type === 'refused' ? refused.message : ''}`);

    // 7. The picture.
    const snap = net.network.snapshot();
    say();
    say('7. The network now');
    for (const l of snap.links) say(`   ${l.name.padEnd(4)} ${l.state.padEnd(12)} QBER ${(l.state === 'down' ? '-' : pct(l.qber)).padStart(6)}  key ${String(Math.round(l.keyRateBps)).padStart(7)} bit/s  pool ${l.poolBits} bits  (consumed ${l.consumedBits} by relay)`);
    say(`   relay: ${snap.ledger.consumedBits} link-key bits spent = ${snap.ledger.deliveredBits} delivered + ${snap.ledger.pendingBits} waiting + ${snap.ledger.discardedBits} discarded`);
    if (this.options.svgFile) {
      writeFileSync(this.options.svgFile, networkSvg(snap));
      say(`   picture: ${this.options.svgFile}`);
    } else {
      // Not this network's URL: the demo stops it on exit, so a reader who opened it found nothing there.
      say(`   picture: run the demo with --svg FILE to keep one (qkd-tls kme --topology serves one at /network.svg)`);
    }
    say();
    say('Done: TLS crossed three trusted nodes, survived an eavesdropper by rerouting, and failed closed without a route.');
    say('Run it yourself: npx qkd-tls kme --topology FILE --listen 127.0.0.1:8443 --insecure-http (see the README),');
    say(`then --kme http://127.0.0.1:8443/A for the client and --kme http://127.0.0.1:8443/D for the server.`);
  }

  private async handshake(title: string, why: string): Promise<void> {
    const before = this.keyEvents.length;
    const leasesBefore = this.serverLeases.length;
    const r = await this.connectOnce(`hello across the QKD network`);
    this.say();
    this.say(`${title} (${why}):`);
    if (r.error || !r.info) throw new Error(`${title}: the handshake failed: ${r.error?.message ?? 'no handshake'}`);
    const relay = this.netEvents.filter((e) => e.type === 'relay').at(-1);
    if (relay?.type === 'relay') this.say(`     node A relayed the key over ${relay.path.join(' -> ')} (${relay.path.length - 1} hops, ${relay.sizeBits} bits of link key per hop)`);
    for (const e of this.keyEvents.slice(before)) if (e.type === 'resolved') this.say(`     the server fetched key ${e.keyId} from node D`);
    this.say(`     negotiated ${r.info.version} ${r.info.suite}, mode ${r.info.kex}${r.info.group ? ` with ${r.info.group}` : ''}; echoed "${r.echoed}"`);
    if (r.echoed !== 'hello across the QKD network') throw new Error(`${title}: the echo differs`);
    const leases = this.serverLeases.slice(leasesBefore);
    if (leases.length === 0 || !leases.every(leaseWiped)) throw new Error(`${title}: the server still holds its key after the handshake`);
    this.say('     the server wiped its copy of the key as soon as the handshake was over');
  }

  private connectOnce(message: string): Promise<EchoResult> {
    const keys: { release?: () => void } = {};
    return echoOnce(
      {
        crypto: this.crypto,
        host: '127.0.0.1',
        port: this.port,
        handshakeTimeout: 10_000,
        psks: async () => {
          const offer = await takePsks(this.crypto, this.clientKeys!);
          keys.release = offer.release;
          return offer.psks;
        },
      },
      message,
      { echoed: '' },
      keys,
    );
  }

  /** Waits (bounded: 10 s) until `done()`; the network advances on each look. */
  private async until(what: string, done: () => boolean): Promise<void> {
    for (let i = 0; i < 200; i++) {
      if (done()) return;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    throw new Error(`timed out waiting until ${what}`);
  }

  async close(): Promise<void> {
    await closeDemoParts({ server: this.server, clientKeys: this.clientKeys, serverKeys: this.serverKeys, wipeLater: this.wipeLater });
    await this.net?.close();
  }
}

function pct(x: number): string {
  return `${(x * 100).toFixed(1)}%`;
}
