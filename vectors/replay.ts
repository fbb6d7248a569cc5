/**
 * Replays the five example handshakes of RFC 8448 ("Example Handshake Traces for TLS 1.3") through this stack's
 * foundation — crypto provider, key schedule, transcript hash, message codecs and record protection — and says,
 * one row per value, whether each value the RFC prints comes out of our code bit for bit.
 *
 * Nothing is copied from the RFC's intermediate values into the computation: from the RFC we take only its
 * inputs (the ephemeral private keys, the handshake messages on the wire, the application data) and recompute
 * everything else; each printed value is then compared with ours. §4 (resumption with 0-RTT) even takes its PSK
 * from our own §3 computation: resumption_master_secret and the ticket_nonce of §3's NewSessionTicket.
 *
 * ```ts
 * const checks = runRfc8448Checks(nobleProvider);
 * checks.filter((c) => !c.pass); // [] when the foundation is right
 * ```
 *
 * Pure apart from reading the committed vectors/rfc8448.json (through vectors/rfc8448.ts); `qkd-tls vectors`
 * prints the table.
 */
import { alertName, ContentType, ExtensionType, HandshakeType, NamedGroup } from '../lib/codec/enums.js';
import { concat, equalConstantTime, toHex } from '../lib/codec/bytes.js';
import type { CryptoProvider, GroupName, HashName } from '../lib/crypto/provider.js';
import { deriveSecret, hkdfLabel } from '../lib/keyschedule/hkdf-label.js';
import { Label, type LabelName } from '../lib/keyschedule/labels.js';
import { EarlySecret, emptyHash, finishedKey, finishedVerifyData, resumptionPsk, trafficKeys } from '../lib/keyschedule/schedule.js';
import { messageHash, Transcript } from '../lib/keyschedule/transcript.js';
import { decodeClientHello, decodeServerHello, encodeClientHello, encodeServerHello, patchBinders } from '../lib/messages/hello.js';
import {
  decodeEncryptedExtensions,
  decodeEndOfEarlyData,
  decodeFinished,
  decodeNewSessionTicket,
  encodeEncryptedExtensions,
  encodeEndOfEarlyData,
  encodeFinished,
} from '../lib/messages/post-hello.js';
import { Deframer, encodePlaintextRecord, type RawRecord } from '../lib/record/deframer.js';
import { HandshakeJoiner } from '../lib/record/handshake-joiner.js';
import { RecordProtection } from '../lib/record/protection.js';
import { suiteById, type SuiteInfo } from '../lib/suites.js';
import { loadRfc8448, RFC8448_TRACE_SECTIONS, section, value, type Rfc8448, type Rfc8448Section, type Rfc8448Side, type Rfc8448Step } from './rfc8448.js';

/** One row of the table: a value of RFC 8448 recomputed, or a record replayed through the record layer. */
export interface Check {
  /** The RFC section: "3" .. "7". */
  readonly section: string;
  /** What was checked, unique within its section (e.g. "client_handshake_traffic_secret"). */
  readonly name: string;
  readonly pass: boolean;
  /** Why it failed: which value differed (ours vs the RFC's), or the exception thrown. */
  readonly detail?: string;
}

/**
 * Recomputes every secret, key, IV, transcript hash, Finished, binder and record of RFC 8448 §3–§7 with
 * `crypto` and the library's key schedule, codecs and record layer: the committed RFC 8448 traces, or `data`
 * (another text in the same layout, through extractRfc8448). Never throws for a mismatch: each
 * failure is a row with `pass: false` and a detail. Rows come in the order of the traces.
 */
export function runRfc8448Checks(crypto: CryptoProvider, data: Rfc8448 = loadRfc8448()): Check[] {
  const out: Check[] = [];
  let ticket: Ticket | undefined;
  for (const number of RFC8448_TRACE_SECTIONS) {
    const rows = new Rows(number, out);
    try {
      const result = new SectionReplay(crypto, section(number, data), rows, number === '4' ? ticket : undefined).run();
      if (number === '3') ticket = result;
    } catch (e) {
      rows.add('the replay of the section runs to its end', () => `threw ${describeError(e)}`);
    }
  }
  return out;
}

/** The number of checks per section, e.g. `{ '3': 120, ... }`. */
export function countBySection(checks: readonly Check[]): Record<string, number> {
  const n: Record<string, number> = {};
  for (const c of checks) n[c.section] = (n[c.section] ?? 0) + 1;
  return n;
}

// ---------------------------------------------------------------------------------------------------------
// Rows

/** `true`, or why not. */
type Outcome = true | string;

/** Collects the rows of one section; a check that throws becomes a failed row (never an exception). */
class Rows {
  private readonly names = new Set<string>();
  constructor(
    private readonly section: string,
    private readonly out: Check[],
  ) {}

  add(name: string, check: () => Outcome): void {
    let unique = name;
    for (let i = 2; this.names.has(unique); i++) unique = `${name} (#${i})`;
    this.names.add(unique);
    let outcome: Outcome;
    try {
      outcome = check();
    } catch (e) {
      outcome = `threw ${describeError(e)}`;
    }
    this.out.push(outcome === true ? { section: this.section, name: unique, pass: true } : { section: this.section, name: unique, pass: false, detail: outcome });
  }
}

function same(what: string, ours: Uint8Array, rfc: Uint8Array): Outcome {
  if (equalConstantTime(ours, rfc)) return true;
  return `${what}: ours ${short(ours)} (${ours.length} bytes), RFC ${short(rfc)} (${rfc.length} bytes)`;
}

function all(...outcomes: Outcome[]): Outcome {
  for (const o of outcomes) if (o !== true) return o;
  return true;
}

function short(b: Uint8Array): string {
  const h = toHex(b);
  return h.length > 48 ? `${h.slice(0, 48)}…` : h || '(empty)';
}

function describeError(e: unknown): string {
  return e instanceof Error ? `${e.name}: ${e.message}` : String(e);
}

// ---------------------------------------------------------------------------------------------------------
// One section

/** What §3 hands to §4: the resumption PSK we derived and the ticket that names it. */
interface Ticket {
  readonly psk: Uint8Array;
  readonly identity: Uint8Array;
}

/** A handshake message as it went over the wire, with who sent it. */
interface Message {
  readonly side: Rfc8448Side;
  readonly type: number;
  readonly raw: Uint8Array;
  /** "ClientHello", "HelloRetryRequest", "server Finished", ... */
  readonly name: string;
}

type TrafficKind = 'early' | 'handshake' | 'application';

/** The write keys of one side: which secret, and how many records were protected under it so far. */
interface Epoch {
  readonly kind: TrafficKind;
  readonly opener: RecordProtection;
  readonly sealer: RecordProtection;
  seq: number;
}

/** §7.1 Derive-Secret steps that the RFC prints, by label. */
type DerivedName = 'cets' | 'eems' | 'chts' | 'shts' | 'cats' | 'sats' | 'ems' | 'rms';
type Point = 'CH' | 'SH' | 'SF' | 'CF';

const DERIVE_SECRET: Readonly<Record<string, { label: LabelName; secret: DerivedName; stage: 'early' | 'hs' | 'master'; point: Point; name: string }>> = {
  'c e traffic': { label: Label.clientEarlyTraffic, secret: 'cets', stage: 'early', point: 'CH', name: 'client_early_traffic_secret' },
  'e exp master': { label: Label.earlyExporterMaster, secret: 'eems', stage: 'early', point: 'CH', name: 'early_exporter_master_secret' },
  'c hs traffic': { label: Label.clientHandshakeTraffic, secret: 'chts', stage: 'hs', point: 'SH', name: 'client_handshake_traffic_secret' },
  's hs traffic': { label: Label.serverHandshakeTraffic, secret: 'shts', stage: 'hs', point: 'SH', name: 'server_handshake_traffic_secret' },
  'c ap traffic': { label: Label.clientApplicationTraffic, secret: 'cats', stage: 'master', point: 'SF', name: 'client_application_traffic_secret_0' },
  's ap traffic': { label: Label.serverApplicationTraffic, secret: 'sats', stage: 'master', point: 'SF', name: 'server_application_traffic_secret_0' },
  'exp master': { label: Label.exporterMaster, secret: 'ems', stage: 'master', point: 'SF', name: 'exporter_master_secret' },
  'res master': { label: Label.resumptionMaster, secret: 'rms', stage: 'master', point: 'CF', name: 'resumption_master_secret' },
};

const MESSAGE_NAME: Readonly<Record<number, string>> = {
  [HandshakeType.client_hello]: 'ClientHello',
  [HandshakeType.server_hello]: 'ServerHello',
  [HandshakeType.new_session_ticket]: 'NewSessionTicket',
  [HandshakeType.end_of_early_data]: 'EndOfEarlyData',
  [HandshakeType.encrypted_extensions]: 'EncryptedExtensions',
  [HandshakeType.certificate]: 'Certificate',
  [HandshakeType.certificate_request]: 'CertificateRequest',
  [HandshakeType.certificate_verify]: 'CertificateVerify',
  [HandshakeType.finished]: 'Finished',
};
/** Messages both sides send (in §6), named with their sender. */
const SIDED = new Set<number>([HandshakeType.certificate, HandshakeType.certificate_verify, HandshakeType.finished]);

const GROUP_OF: Readonly<Record<string, GroupName>> = { x25519: 'x25519', 'P-256': 'secp256r1' };

/** Every TLS 1.3 AEAD in this stack has a 16-byte tag (RFC 5116 §5, RFC 8439 §2.8). */
const TAG_LENGTH = 16;

class SectionReplay {
  private readonly n: string;
  private readonly steps: readonly Rfc8448Step[];
  private readonly messages: Message[] = [];
  /** The messages of each handshake record, by step index. */
  private readonly recordMessages = new Map<number, Message[]>();
  private readonly hrr: boolean;
  private readonly suite: SuiteInfo;
  private readonly hash: HashName;

  // Transcript (RFC 8446 §4.4.1)
  private readonly transcriptMessages: Message[];
  private readonly hashAfter: Uint8Array[] = [];
  private readonly point: Record<Point, number>;

  // (EC)DHE and key schedule
  private readonly psk: Uint8Array | null;
  private dhe!: { group: GroupName; client: Uint8Array; server: Uint8Array };
  private k!: {
    early: Uint8Array;
    binderKey?: Uint8Array;
    derivedHs: Uint8Array;
    hs: Uint8Array;
    derivedMs: Uint8Array;
    master: Uint8Array;
  } & Record<DerivedName, Uint8Array>;

  private readonly epochs: Partial<Record<Rfc8448Side, Epoch>> = {};
  private readonly constructed: Record<Rfc8448Side, Uint8Array[]> = { client: [], server: [] };
  private readonly seenPoints = new Set<Point>();
  private dheReported = false;
  private ticket: Ticket | undefined;

  constructor(
    private readonly crypto: CryptoProvider,
    sec: Rfc8448Section,
    private readonly rows: Rows,
    private readonly resumed: Ticket | undefined,
  ) {
    this.n = sec.number;
    this.steps = sec.steps;
    this.collectMessages();
    this.hrr = this.messages.some((m) => m.name === 'HelloRetryRequest');
    const sh = this.messages.find((m) => m.name === 'ServerHello');
    if (!sh) throw new Error(`§${this.n}: no ServerHello in the records`);
    const suite = suiteById(decodeServerHello(sh.raw).cipherSuite);
    if (!suite) throw new Error(`§${this.n}: unknown cipher suite`);
    this.suite = suite;
    this.hash = suite.hash;

    const clientFinished = this.messages.findIndex((m) => m.name === 'client Finished');
    if (clientFinished < 0) throw new Error(`§${this.n}: no client Finished in the records`);
    this.transcriptMessages = this.messages.slice(0, clientFinished + 1);
    const t = new Transcript(crypto, this.hash);
    for (const m of this.transcriptMessages) {
      // §4.4.1: after a HelloRetryRequest, ClientHello1 is replaced by message_hash(Hash(ClientHello1)).
      if (m.name === 'HelloRetryRequest') t.replaceWithMessageHash();
      t.add(m.raw);
      this.hashAfter.push(t.current());
    }
    const last = (pred: (m: Message) => boolean): number => {
      for (let i = this.transcriptMessages.length - 1; i >= 0; i--) if (pred(this.transcriptMessages[i])) return i;
      throw new Error(`§${this.n}: a message is missing from the transcript`);
    };
    this.point = {
      CH: last((m) => m.type === HandshakeType.client_hello),
      SH: last((m) => m.name === 'ServerHello'),
      SF: last((m) => m.name === 'server Finished'),
      CF: clientFinished,
    };
    if (this.n === '4' && !resumed) throw new Error('§4 needs the resumption PSK of §3, which §3 did not produce');
    this.psk = resumed ? resumed.psk : null;
  }

  /** Emits every row of the section; returns the resumption ticket when the section issues one (§3). */
  run(): Ticket | undefined {
    this.computeSchedule();
    for (const s of this.steps) this.step(s);
    return this.ticket;
  }

  // ---- setup ----------------------------------------------------------------------------------------------

  private collectMessages(): void {
    const perRecord: { step: Rfc8448Step; list: { type: number; raw: Uint8Array }[] }[] = [];
    for (const s of this.steps) {
      if (!s.action.startsWith('send handshake record')) continue;
      const joiner = new HandshakeJoiner();
      joiner.push(value(s, 'payload'));
      const list: { type: number; raw: Uint8Array }[] = [];
      for (let m = joiner.next(); m; m = joiner.next()) list.push({ type: m.type, raw: m.raw.slice() });
      if (!joiner.isEmpty) throw new Error(`§${this.n} step ${s.index}: a handshake record ends inside a message`);
      perRecord.push({ step: s, list });
    }
    const hellos = perRecord.reduce((n, r) => n + r.list.filter((m) => m.type === HandshakeType.client_hello).length, 0);
    let helloNumber = 0;
    for (const { step: s, list } of perRecord) {
      const named = list.map(({ type, raw }): Message => {
        let name = MESSAGE_NAME[type] ?? `handshake type ${type}`;
        if (type === HandshakeType.server_hello && decodeServerHello(raw).isHelloRetryRequest) name = 'HelloRetryRequest';
        if (type === HandshakeType.client_hello && hellos > 1) name = `ClientHello${++helloNumber}`;
        if (SIDED.has(type)) name = `${s.side} ${name}`;
        return { side: s.side, type, raw, name };
      });
      this.recordMessages.set(s.index, named);
      this.messages.push(...named);
    }
  }

  private computeSchedule(): void {
    const { crypto, hash } = this;
    const pairs = this.steps.flatMap((s) => {
      const m = /^create an ephemeral (\S+) key pair/.exec(s.action);
      return m ? [{ side: s.side, group: GROUP_OF[m[1]], priv: value(s, 'private key'), pub: value(s, 'public key') }] : [];
    });
    const server = pairs.filter((p) => p.side === 'server').pop();
    const client = server && pairs.find((p) => p.side === 'client' && p.group === server.group);
    if (!server || !client) throw new Error(`§${this.n}: no matching client and server key pairs`);
    const group = crypto.group(server.group);
    if (!group) throw new Error(`§${this.n}: the ${crypto.name} provider lacks ${server.group}`);
    this.dhe = {
      group: server.group,
      client: group.start(privateKeyAsRandomness(server.group, client.priv, group.randomLength)).complete(server.pub),
      server: group.respond(client.pub, privateKeyAsRandomness(server.group, server.priv, group.randomLength)).sharedSecret,
    };

    const at = (p: Point) => this.hashAfter[this.point[p]];
    const empty = emptyHash(crypto, hash);
    const early = EarlySecret.fromPsk(crypto, hash, this.psk ? this.psk.slice() : null);
    const earlyBytes = early.dangerousSecret().slice();
    const binderKey = this.psk ? early.binderKey('resumption') : undefined;
    const cets = early.clientEarlyTrafficSecret(at('CH'));
    const eems = early.earlyExporterMasterSecret(at('CH'));
    const derivedHs = deriveSecret(crypto, hash, earlyBytes, Label.derived, empty);
    const hs = early.intoHandshake(this.dhe.client.slice());
    const hsBytes = hs.dangerousSecret().slice();
    const chts = hs.clientHandshakeTrafficSecret(at('SH'));
    const shts = hs.serverHandshakeTrafficSecret(at('SH'));
    const derivedMs = deriveSecret(crypto, hash, hsBytes, Label.derived, empty);
    const master = hs.intoMaster();
    this.k = {
      early: earlyBytes,
      binderKey,
      derivedHs,
      hs: hsBytes,
      derivedMs,
      master: master.dangerousSecret().slice(),
      cets,
      eems,
      chts,
      shts,
      cats: master.clientApplicationTrafficSecret(at('SF')),
      sats: master.serverApplicationTrafficSecret(at('SF')),
      ems: master.exporterMasterSecret(at('SF')),
      rms: master.resumptionMasterSecret(at('CF')),
    };
    master.destroy();
  }

  // ---- transcript points ----------------------------------------------------------------------------------

  /** "ClientHello..ServerHello", or with a HelloRetryRequest "message_hash(ClientHello1), HelloRetryRequest, ClientHello2..ServerHello". */
  private describeThrough(index: number): string {
    const start = this.hrr ? 'message_hash(ClientHello1), HelloRetryRequest, ClientHello2' : 'ClientHello';
    return index === this.point.CH ? start : `${start}..${this.transcriptMessages[index].name}`;
  }

  private trafficSecret(owner: Rfc8448Side, kind: TrafficKind): Uint8Array {
    if (kind === 'early') {
      if (owner !== 'client') throw new Error('only the client has early traffic keys');
      return this.k.cets;
    }
    if (kind === 'handshake') return owner === 'client' ? this.k.chts : this.k.shts;
    return owner === 'client' ? this.k.cats : this.k.sats;
  }

  /** The transcript hash that `side`'s Finished covers: everything before that Finished (§4.4.4). */
  private beforeFinished(side: Rfc8448Side): number {
    return (side === 'server' ? this.point.SF : this.point.CF) - 1;
  }

  private verifyData(side: Rfc8448Side): Uint8Array {
    return finishedVerifyData(this.crypto, this.hash, this.trafficSecret(side, 'handshake'), this.hashAfter[this.beforeFinished(side)]);
  }

  // ---- steps ------------------------------------------------------------------------------------------------

  private step(s: Rfc8448Step): void {
    const a = s.action;
    const printed = Object.keys(s.values).length > 0;
    let m: RegExpExecArray | null;
    if ((m = /^create an ephemeral (\S+) key pair/.exec(a))) return this.keyPair(s, GROUP_OF[m[1]]);
    if ((m = /^extract secret "(early|handshake|master)"/.exec(a)) && printed) return this.extract(s, m[1] as 'early' | 'handshake' | 'master');
    if ((m = /^derive secret for (handshake|master) "tls13 derived"/.exec(a)) && printed) return this.derived(s, m[1] as 'handshake' | 'master');
    if ((m = /^derive secret "tls13 ([^"]+)"/.exec(a)) && printed) return this.deriveSecretStep(s, m[1]);
    if ((m = /^derive (read|write) traffic keys for (early application|handshake|application) data/.exec(a))) {
      const kind: TrafficKind = m[2] === 'early application' ? 'early' : (m[2] as TrafficKind);
      const owner: Rfc8448Side = m[1] === 'write' ? s.side : other(s.side);
      if (m[1] === 'write') this.installWrite(s.side, kind);
      if (printed) this.trafficKeysStep(s, owner, kind, m[1] as 'read' | 'write');
      return;
    }
    if (/^calculate finished "tls13 finished"/.test(a) && printed) return this.finished(s);
    if (/^calculate PSK binder/.test(a) && printed) return this.binder(s);
    if (/^generate resumption secret "tls13 resumption"/.test(a) && printed) return this.resumption(s);
    if ((m = /^construct an? (\w+) handshake message/.exec(a)) && printed) {
      this.constructed[s.side].push(value(s, m[1]));
      return;
    }
    if ((m = /^send (handshake|application_data|alert|change_cipher_spec) record/.exec(a))) {
      return this.record(s, m[1] as 'handshake' | 'application_data' | 'alert' | 'change_cipher_spec');
    }
    if (printed) this.rows.add(`step "{${s.side}} ${a}" is understood`, () => 'the replay does not know this step');
  }

  private keyPair(s: Rfc8448Step, group: GroupName): void {
    const g = this.crypto.group(group);
    const hello = s.side === 'client' ? 'ClientHello' : 'ServerHello';
    this.rows.add(`${s.side} ${group} public key from its private key`, () => {
      if (!g) return `the ${this.crypto.name} provider lacks ${group}`;
      const priv = value(s, 'private key');
      return same('public key', g.start(privateKeyAsRandomness(group, priv, g.randomLength)).share, value(s, 'public key'));
    });
    this.rows.add(`${s.side} ${group} public key is the key_share of its ${hello}`, () => {
      const pub = value(s, 'public key');
      const want = groupCode(group);
      for (const msg of this.messages) {
        if (msg.side !== s.side) continue;
        if (msg.type === HandshakeType.client_hello) {
          if (decodeClientHello(msg.raw).keyShares?.some((k) => k.group === want && equalConstantTime(k.keyExchange, pub))) return true;
        } else if (msg.name === 'ServerHello') {
          const k = decodeServerHello(msg.raw).keyShare;
          if (k && k.group === want && equalConstantTime(k.keyExchange, pub)) return true;
        }
      }
      return `no ${hello} carries this ${group} key share`;
    });
  }

  private extract(s: Rfc8448Step, which: 'early' | 'handshake' | 'master'): void {
    const zeros = new Uint8Array(this.suite.hashLength);
    if (which === 'early') {
      const name = this.psk ? 'early secret = HKDF-Extract(0, PSK derived from §3)' : 'early secret = HKDF-Extract(0, 0)';
      this.rows.add(name, () =>
        all(same('salt', zeros, value(s, 'salt')), same('IKM (PSK)', this.psk ?? zeros, value(s, 'IKM')), same('secret', this.k.early, value(s, 'secret'))),
      );
      return;
    }
    if (which === 'handshake') {
      if (!this.dheReported) {
        this.dheReported = true;
        const g = this.dhe.group;
        this.rows.add(`(EC)DHE ${g} shared secret, client side (its private key, the server's share)`, () => same('shared secret', this.dhe.client, value(s, 'IKM')));
        this.rows.add(`(EC)DHE ${g} shared secret, server side (its private key, the client's share)`, () => same('shared secret', this.dhe.server, value(s, 'IKM')));
      }
      this.rows.add('handshake secret = HKDF-Extract(derived, (EC)DHE)', () =>
        all(same('salt', this.k.derivedHs, value(s, 'salt')), same('IKM', this.dhe.client, value(s, 'IKM')), same('secret', this.k.hs, value(s, 'secret'))),
      );
      return;
    }
    this.rows.add('master secret = HKDF-Extract(derived, 0)', () =>
      all(same('salt', this.k.derivedMs, value(s, 'salt')), same('IKM', zeros, value(s, 'IKM')), same('secret', this.k.master, value(s, 'secret'))),
    );
  }

  private derived(s: Rfc8448Step, before: 'handshake' | 'master'): void {
    const prk = before === 'handshake' ? this.k.early : this.k.hs;
    const out = before === 'handshake' ? this.k.derivedHs : this.k.derivedMs;
    const empty = emptyHash(this.crypto, this.hash);
    this.rows.add(`Derive-Secret(., "derived", "") before the ${before} secret (${s.side})`, () =>
      all(
        same('PRK', prk, value(s, 'PRK')),
        same('hash of ""', empty, value(s, 'hash')),
        same('HkdfLabel', hkdfLabel(Label.derived, empty, this.suite.hashLength), value(s, 'info')),
        same('expanded', out, value(s, 'expanded')),
      ),
    );
  }

  private deriveSecretStep(s: Rfc8448Step, label: string): void {
    const spec = DERIVE_SECRET[label];
    if (!spec) {
      this.rows.add(`Derive-Secret "${label}" is known`, () => 'the replay does not know this label');
      return;
    }
    const index = this.point[spec.point];
    const th = this.hashAfter[index];
    if (!this.seenPoints.has(spec.point)) {
      this.seenPoints.add(spec.point);
      this.rows.add(`Transcript-Hash(${this.describeThrough(index)})`, () => same('transcript hash', th, value(s, 'hash')));
      if (this.hrr && spec.point === 'SH') this.messageHashRow(s);
    }
    const prk = spec.stage === 'early' ? this.k.early : spec.stage === 'hs' ? this.k.hs : this.k.master;
    this.rows.add(`${spec.name} = Derive-Secret(., "${label}", ${this.describeThrough(index)})`, () =>
      all(
        same('PRK', prk, value(s, 'PRK')),
        same('transcript hash', th, value(s, 'hash')),
        same('HkdfLabel', hkdfLabel(spec.label, th, this.suite.hashLength), value(s, 'info')),
        same('secret', this.k[spec.secret], value(s, 'expanded')),
      ),
    );
  }

  /**
   * §4.4.1, spelled out without the Transcript class: after a HelloRetryRequest the transcript starts with the
   * synthetic message_hash = 254 || 00 00 Hash.length || Hash(ClientHello1) in place of ClientHello1.
   */
  private messageHashRow(s: Rfc8448Step): void {
    this.rows.add('message_hash rule: Hash(254 00 00 20 || Hash(ClientHello1) || HelloRetryRequest || ClientHello2 || ServerHello)', () => {
      const h = this.crypto.hash(this.hash);
      const [ch1, ...rest] = this.transcriptMessages.slice(0, this.point.SH + 1);
      const synthetic = concat(new Uint8Array([HandshakeType.message_hash, 0, 0, h.outputLength]), h.digest(ch1.raw));
      return all(
        same('message_hash message', synthetic, messageHash(h.digest(ch1.raw))),
        same('transcript hash', h.digest(concat(synthetic, ...rest.map((m) => m.raw))), value(s, 'hash')),
      );
    });
  }

  private trafficKeysStep(s: Rfc8448Step, owner: Rfc8448Side, kind: TrafficKind, dir: 'read' | 'write'): void {
    const what = kind === 'early' ? 'early application data' : `${kind} traffic`;
    const as = dir === 'read' ? ` (${s.side} read keys)` : '';
    this.rows.add(`${owner} ${what} write key and IV${as}`, () => {
      const secret = this.trafficSecret(owner, kind);
      const { keyLength, ivLength } = this.suite;
      const keys = trafficKeys(this.crypto, this.hash, secret, keyLength, ivLength);
      const empty = new Uint8Array(0);
      return all(
        same('PRK (traffic secret)', secret, value(s, 'PRK')),
        same('key HkdfLabel', hkdfLabel(Label.key, empty, keyLength), value(s, 'key info')),
        same('key', keys.key, value(s, 'key expanded')),
        same('IV HkdfLabel', hkdfLabel(Label.iv, empty, ivLength), value(s, 'iv info')),
        same('IV', keys.iv, value(s, 'iv expanded')),
      );
    });
  }

  private finished(s: Rfc8448Step): void {
    const base = this.trafficSecret(s.side, 'handshake');
    const empty = new Uint8Array(0);
    this.rows.add(`${s.side} finished_key = HKDF-Expand-Label(${s.side}_handshake_traffic_secret, "finished", "")`, () =>
      all(
        same('PRK', base, value(s, 'PRK')),
        same('context', empty, value(s, 'hash')),
        same('HkdfLabel', hkdfLabel(Label.finished, empty, this.suite.hashLength), value(s, 'info')),
        same('finished_key', finishedKey(this.crypto, this.hash, base), value(s, 'expanded')),
      ),
    );
    this.rows.add(`${s.side} Finished verify_data = HMAC(finished_key, Transcript-Hash(${this.describeThrough(this.beforeFinished(s.side))}))`, () =>
      same('verify_data', this.verifyData(s.side), value(s, 'finished')),
    );
  }

  private binder(s: Rfc8448Step): void {
    const ch = this.messages.find((m) => m.type === HandshakeType.client_hello);
    const decoded = () => decodeClientHello(ch!.raw);
    const truncated = () => ch!.raw.subarray(0, decoded().truncatedLength);
    const binderHash = () => this.crypto.hash(this.hash).digest(truncated());
    const key = () => {
      if (!this.k.binderKey) throw new Error('no PSK, so no binder key');
      return this.k.binderKey;
    };
    const binder = () => finishedVerifyData(this.crypto, this.hash, key(), binderHash());
    this.rows.add('ClientHello prefix = the ClientHello as sent, up to its binders list (§4.2.11.2)', () => same('prefix', truncated(), value(s, 'ClientHello prefix')));
    this.rows.add('PSK identity = the ticket of §3 NewSessionTicket', () => {
      const ids = decoded().psks?.identities ?? [];
      if (ids.length !== 1) return `${ids.length} PSK identities`;
      return same('identity', ids[0].identity, this.resumed!.identity);
    });
    this.rows.add('binder hash = Transcript-Hash(truncated ClientHello)', () => same('binder hash', binderHash(), value(s, 'binder hash')));
    this.rows.add('binder_key = Derive-Secret(early secret, "res binder", "")', () => same('binder key', key(), value(s, 'PRK')));
    this.rows.add('binder finished_key = HKDF-Expand-Label(binder_key, "finished", "")', () =>
      all(
        same('HkdfLabel', hkdfLabel(Label.finished, new Uint8Array(0), this.suite.hashLength), value(s, 'info')),
        same('finished_key', finishedKey(this.crypto, this.hash, key()), value(s, 'expanded')),
      ),
    );
    this.rows.add('PSK binder = HMAC(finished_key, binder hash)', () => same('binder', binder(), value(s, 'finished')));
    this.rows.add('the ClientHello sent carries that binder', () => {
      const binders = decoded().psks?.binders ?? [];
      return binders.length === 1 ? same('binder in the ClientHello', binders[0], binder()) : `${binders.length} binders`;
    });
  }

  private resumption(s: Rfc8448Step): void {
    const nst = this.messages.find((m) => m.type === HandshakeType.new_session_ticket);
    const decoded = () => {
      if (!nst) throw new Error('no NewSessionTicket in the records');
      return decodeNewSessionTicket(nst.raw.subarray(4));
    };
    this.rows.add('resumption PSK = HKDF-Expand-Label(resumption_master_secret, "resumption", ticket_nonce)', () => {
      const t = decoded();
      const psk = resumptionPsk(this.crypto, this.hash, this.k.rms, t.nonce);
      const outcome = all(
        same('PRK', this.k.rms, value(s, 'PRK')),
        same('ticket_nonce', t.nonce, value(s, 'hash')),
        same('HkdfLabel', hkdfLabel(Label.resumption, t.nonce, this.suite.hashLength), value(s, 'info')),
        same('PSK', psk, value(s, 'expanded')),
      );
      // §4 resumes with the PSK computed here, never with the printed one.
      this.ticket = { psk, identity: t.ticket.slice() };
      return outcome;
    });
  }

  // ---- records ------------------------------------------------------------------------------------------------

  private installWrite(side: Rfc8448Side, kind: TrafficKind): void {
    const secret = this.trafficSecret(side, kind);
    const make = () => {
      const { key, iv } = trafficKeys(this.crypto, this.hash, secret, this.suite.keyLength, this.suite.ivLength);
      return new RecordProtection(this.crypto, this.suite, key, iv);
    };
    this.epochs[side] = { kind, opener: make(), sealer: make(), seq: 0 };
  }

  private record(s: Rfc8448Step, typeName: 'handshake' | 'application_data' | 'alert' | 'change_cipher_spec'): void {
    const type = ContentType[typeName];
    const side = s.side;
    const payload = value(s, 'payload');
    const complete = value(s, 'complete record');
    const messages = this.recordMessages.get(s.index) ?? [];

    let desc: string;
    if (typeName === 'handshake') desc = messages.map((m) => m.name).join(', ');
    else if (typeName === 'alert') desc = `alert ${alertName(payload[1] ?? -1) ?? payload[1]}`;
    else if (typeName === 'change_cipher_spec') desc = 'change_cipher_spec';
    else desc = `${payload.length} bytes of ${this.epochs[side]?.kind === 'early' ? '0-RTT ' : ''}application data`;

    if (typeName === 'handshake') {
      const pending = this.constructed[side];
      this.constructed[side] = [];
      this.rows.add(`${side} record of ${desc}: its payload is the messages the ${side} constructed`, () => {
        const expected = concat(...pending);
        if (equalConstantTime(expected, payload)) return true;
        // §4 prints the ClientHello before its binders are filled in.
        const ch = messages.length === 1 && messages[0].type === HandshakeType.client_hello ? decodeClientHello(payload) : undefined;
        if (ch && ch.truncatedLength === expected.length) return same('ClientHello up to its binders', payload.subarray(0, expected.length), expected);
        return same('payload', payload, expected);
      });
      for (const m of messages) this.codecRow(m);
    }

    const deframe = (): RawRecord => {
      const d = new Deframer();
      d.push(complete);
      const rec = d.next();
      if (!rec) throw new Error('the deframer found no complete record');
      if (d.buffered !== 0) throw new Error(`${d.buffered} bytes after the record`);
      return rec;
    };
    if (complete[0] !== ContentType.application_data) {
      this.rows.add(`${side} record of ${desc} (plaintext) frames exactly`, () => {
        const rec = deframe();
        return all(
          rec.type === type ? true : `content type ${rec.type}, expected ${type}`,
          same('fragment', rec.fragment, payload),
          same('record', encodePlaintextRecord(type, payload, rec.version), complete),
        );
      });
      return;
    }
    const epoch = this.epochs[side];
    const seq = epoch ? epoch.seq++ : -1;
    const where = epoch ? `${epoch.kind === 'early' ? 'client early' : `${side} ${epoch.kind}`} traffic keys, seq ${seq}` : 'no keys';
    this.rows.add(`${side} record of ${desc} (${where}) decrypts to the RFC payload`, () => {
      if (!epoch) return `the ${side} has no write keys at this point of the trace`;
      epoch.opener.dangerousSetSequence(0, seq);
      const opened = epoch.opener.open(deframe());
      return all(opened.type === type ? true : `inner content type ${opened.type}, expected ${type}`, same('plaintext', opened.content, payload));
    });
    this.rows.add(`${side} record of ${desc} (${where}) re-encrypts to the RFC record`, () => {
      if (!epoch) return `the ${side} has no write keys at this point of the trace`;
      const padding = complete.length - 5 - TAG_LENGTH - 1 - payload.length;
      if (padding < 0) return `record of ${complete.length} bytes is too short for its payload`;
      epoch.sealer.dangerousSetSequence(0, seq);
      return same('record', epoch.sealer.seal(type, payload, padding), complete);
    });
  }

  /** Each handshake message this stack has a codec for decodes, and re-encodes to the same bytes. */
  private codecRow(m: Message): void {
    const name = `${m.name} decodes and re-encodes byte for byte`;
    switch (m.type) {
      case HandshakeType.client_hello:
        return this.rows.add(name, () => {
          const ch = decodeClientHello(m.raw);
          const list = ch.extensions.list.filter((e) => e.type !== ExtensionType.pre_shared_key);
          const enc = encodeClientHello({
            random: ch.random,
            sessionId: ch.sessionId,
            cipherSuites: ch.cipherSuites,
            extensions: list,
            psks: ch.psks && {
              identities: ch.psks.identities.map((i) => ({ identity: i.identity, obfuscatedTicketAge: i.obfuscatedTicketAge })),
              binderLengths: ch.psks.binders.map((b) => b.length),
            },
          });
          if (ch.psks) patchBinders(enc.raw, enc.truncatedLength, ch.psks.binders);
          return all(enc.truncatedLength === ch.truncatedLength ? true : 'truncated length differs', same('ClientHello', enc.raw, m.raw));
        });
      case HandshakeType.server_hello:
        return this.rows.add(name, () => {
          const sh = decodeServerHello(m.raw);
          if (sh.isHelloRetryRequest !== (m.name === 'HelloRetryRequest')) return 'HelloRetryRequest not recognised by its random';
          const enc = encodeServerHello({ random: sh.random, sessionIdEcho: sh.sessionIdEcho, cipherSuite: sh.cipherSuite, extensions: sh.extensions.list });
          return same(m.name, enc, m.raw);
        });
      case HandshakeType.encrypted_extensions:
        return this.rows.add(name, () => same('EncryptedExtensions', encodeEncryptedExtensions(decodeEncryptedExtensions(m.raw.subarray(4)).extensions.list), m.raw));
      case HandshakeType.end_of_early_data:
        return this.rows.add(name, () => {
          decodeEndOfEarlyData(m.raw.subarray(4));
          return same('EndOfEarlyData', encodeEndOfEarlyData(), m.raw);
        });
      case HandshakeType.new_session_ticket:
        return this.rows.add(`${m.name} decodes (ticket_nonce and ticket)`, () => {
          const t = decodeNewSessionTicket(m.raw.subarray(4));
          return t.ticket.length > 0 ? true : 'empty ticket';
        });
      case HandshakeType.finished:
        return this.rows.add(`${m.name} message = header || the verify_data we compute`, () => {
          decodeFinished(m.raw.subarray(4), this.suite.hashLength);
          return same('Finished', encodeFinished(this.verifyData(m.side)), m.raw);
        });
      default:
      // Certificate, CertificateRequest, CertificateVerify: this PSK-only stack has no codec for them; they
      // still enter the transcript hash, which the Finished and Derive-Secret rows check.
    }
  }
}

// ---------------------------------------------------------------------------------------------------------

function other(side: Rfc8448Side): Rfc8448Side {
  return side === 'client' ? 'server' : 'client';
}

function groupCode(group: GroupName): number {
  return NamedGroup[group];
}

/**
 * The randomness that makes a provider's group use the RFC's printed private key. For X25519 the random bytes
 * are the private key. For the NIST curves a provider maps `randomLength` bytes to the scalar
 * (seed mod (n - 1)) + 1 (lib/crypto/groups.ts `nistScalarFromSeed`), so the seed k - 1, left-padded with zeros,
 * gives exactly the scalar k.
 */
function privateKeyAsRandomness(group: GroupName, priv: Uint8Array, randomLength: number): Uint8Array {
  if (group === 'x25519') return priv.slice();
  let k = 0n;
  for (const b of priv) k = (k << 8n) | BigInt(b);
  if (k === 0n) throw new RangeError('a zero private key');
  k -= 1n;
  const out = new Uint8Array(randomLength);
  for (let i = out.length - 1; i >= 0; i--) {
    out[i] = Number(k & 0xffn);
    k >>= 8n;
  }
  return out;
}
