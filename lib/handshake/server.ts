/**
 * The TLS 1.3 server handshake for external PSKs (RFC 8446 §2, §4), one class per state, each named for what
 * it expects next:
 *
 * ```
 *  ExpectClientHello ──▶ AwaitPsks (while the PSKs are looked up, possibly asynchronously)
 *        │                  │
 *        │     HelloRetryRequest ──▶ ExpectSecondClientHello ──▶ (as below, no second HRR)
 *        ▼                  ▼
 *   ServerHello, EncryptedExtensions, Finished ──▶ [ExpectEndOfEarlyData] ──▶ ExpectClientFinished ──▶ connected
 * ```
 *
 * Policy, in the server's preference order: the cipher suite (one that the client offers and that some
 * offered, known PSK can use), then the first such PSK in the client's order, then the key-exchange mode, then
 * the group (a HelloRetryRequest when the client sent no share for it). Randomness is drawn in a fixed order
 * (server random, key share), so a replay with injected randomness reproduces a trace byte for byte.
 */
import { ExtensionType, HandshakeType, nameOf, ProtocolVersion, PskKeyExchangeMode } from '../codec/enums.js';
import { equalConstantTime, toHex, wipe } from '../codec/bytes.js';
import type { CryptoProvider, GroupName } from '../crypto/provider.js';
import { TlsError } from '../errors.js';
import { Transcript } from '../keyschedule/transcript.js';
import { finishedVerifyData, type EarlySecret, type HandshakeSecret } from '../keyschedule/schedule.js';
import { ext, type Extension, type KeyShareEntry } from '../messages/extensions.js';
import { decodeClientHello, encodeServerHello, HELLO_RETRY_REQUEST_RANDOM, type ClientHello } from '../messages/hello.js';
import { decodeEndOfEarlyData, decodeFinished, encodeEncryptedExtensions, encodeFinished } from '../messages/post-hello.js';
import { earlyDataSuiteName, type Psk } from '../psk/types.js';
import type { HandshakeMessageBytes } from '../record/handshake-joiner.js';
import { SUITES, type SuiteInfo } from '../suites.js';
import {
  DEFAULT_SERVER_GROUPS,
  DEFAULT_SERVER_KEX_MODES,
  type KexMode,
  type PskRequest,
  type ServerOptions,
} from '../connection/config.js';
import type { EarlyDataStatus } from '../connection/events.js';
import {
  alpnExtension,
  deriveApplicationTraffic,
  deriveEarlyTraffic,
  deriveHandshakeTraffic,
  earlySecretFor,
  ExpectPostHandshake,
  groupId,
  handshakeInfo,
  resolveCommonOptions,
  supportedVersionsServer,
  verifyBinder,
} from './common.js';
import type { HandshakeIO, HandshakeState } from './io.js';

/** How many offered PSK identities a server looks up at most (the rest count as unknown). */
export const MAX_LOOKED_UP_IDENTITIES = 16;

/** How much rejected 0-RTT data a server skips before giving up (§4.2.10), when it accepts none itself. */
export const DEFAULT_EARLY_DATA_SKIP_LIMIT = 1 << 16;

interface ServerPlan {
  readonly crypto: CryptoProvider;
  readonly options: ServerOptions;
  readonly suites: readonly SuiteInfo[];
  readonly groups: readonly GroupName[];
  readonly modes: readonly KexMode[];
  readonly maxEarlyData: number;
}

/** The first server state. */
export function startServer(io: HandshakeIO, options: ServerOptions): HandshakeState {
  const { suites, modes, groups } = resolveCommonOptions('server', io.crypto, options, DEFAULT_SERVER_KEX_MODES, DEFAULT_SERVER_GROUPS);
  const maxEarlyData = options.maxEarlyDataSize ?? 0;
  return new ExpectClientHello({ crypto: io.crypto, options, suites, groups, modes, maxEarlyData });
}

/** A state that waits for the PSK lookup rather than for a message. */
export interface AwaitingPsks extends HandshakeState {
  readonly pskRequest: PskRequest;
  /** Continues the handshake with the looked-up PSKs (one entry per offered identity). */
  resume(io: HandshakeIO, psks: readonly (Psk | undefined | null)[]): HandshakeState;
}

export function isAwaitingPsks(s: HandshakeState): s is AwaitingPsks {
  return (s as AwaitingPsks).pskRequest !== undefined;
}

/** §4.1.2: expects the first ClientHello. */
class ExpectClientHello implements HandshakeState {
  readonly name = 'ExpectClientHello';
  constructor(private readonly plan: ServerPlan) {}

  handle(io: HandshakeIO, m: HandshakeMessageBytes): HandshakeState {
    if (m.type !== HandshakeType.client_hello) {
      throw new TlsError('UnexpectedMessage', `expected ClientHello, got ${nameOf(HandshakeType, m.type, 2)}`);
    }
    const ch = decodeClientHello(m.raw);
    checkClientHello(ch);
    // Only the first few identities are looked up: a client cannot make us query a key manager without end.
    const identities = ch.psks!.identities.slice(0, MAX_LOOKED_UP_IDENTITIES).map((i) => i.identity);
    const request: PskRequest = { identities, serverName: ch.serverName };
    const source = this.plan.options.psks;
    if (source === undefined) return new AwaitPsks(this.plan, ch, request);
    const found = typeof source === 'function' ? source(request) : identities.map((id) => source.find((p) => equalConstantTime(p.identity, id)));
    return respond(io, this.plan, ch, found.slice(0, identities.length), null);
  }
}

/** Waits for {@link AwaitingPsks.resume}; a handshake message meanwhile is impossible (reading is paused). */
class AwaitPsks implements AwaitingPsks {
  readonly name = 'AwaitPsks';
  constructor(
    private readonly plan: ServerPlan,
    private readonly ch: ClientHello,
    readonly pskRequest: PskRequest,
  ) {}

  handle(): HandshakeState {
    throw new TlsError('InternalError', 'handshake message received while looking up PSKs');
  }

  resume(io: HandshakeIO, psks: readonly (Psk | undefined | null)[]): HandshakeState {
    if (psks.length !== this.pskRequest.identities.length) {
      throw new TlsError('InternalError', `PSK lookup answered ${psks.length} entries for ${this.pskRequest.identities.length} identities`);
    }
    return respond(
      io,
      this.plan,
      this.ch,
      psks.map((p) => p ?? undefined),
      null,
    );
  }
}

/** Checks of a ClientHello that do not depend on our configuration (§4.1.2, §4.2, §9.2). */
function checkClientHello(ch: ClientHello): void {
  const E = ExtensionType;
  if (!ch.supportedVersions?.includes(ProtocolVersion.TLSv1_3)) {
    throw new TlsError('UnsupportedVersion', 'client does not offer TLS 1.3');
  }
  if (!ch.psks) throw new TlsError('NoPskOffered', 'client offered no PSK (this server authenticates with PSKs only)');
  // §4.2.9: a pre_shared_key without psk_key_exchange_modes is missing_extension.
  if (!ch.pskModes) throw new TlsError('PskModesMissing', 'pre_shared_key without psk_key_exchange_modes (RFC 8446 §4.2.9)');
  // §9.2: key_share requires supported_groups, and each share must be for a group the client lists.
  if (ch.keyShares) {
    if (!ch.supportedGroups) throw new TlsError('MissingExtension', 'key_share without supported_groups (RFC 8446 §9.2)');
    for (const k of ch.keyShares) {
      if (!ch.supportedGroups.includes(k.group)) {
        throw new TlsError('IllegalParameter', `key share for group 0x${k.group.toString(16)} not in supported_groups (RFC 8446 §4.2.8)`);
      }
    }
  }
  if (ch.extensions.has(E.supported_groups) && !ch.keyShares) {
    throw new TlsError('MissingExtension', 'supported_groups without key_share (RFC 8446 §9.2)');
  }
}

/** What a HelloRetryRequest fixed, for checking the second ClientHello (§4.1.2, §4.1.4). */
interface RetryState {
  readonly transcript: Transcript;
  readonly suite: SuiteInfo;
  readonly group: GroupName;
  readonly cookie?: Uint8Array;
  readonly ch1: ClientHello;
  /** The PSKs resolved for the first ClientHello, by identity (keys are never fetched twice). */
  readonly resolved: ReadonlyMap<string, Psk>;
}

interface Selection {
  readonly suite: SuiteInfo;
  readonly index: number;
  readonly psk: Psk;
  readonly kex: KexMode;
  readonly group: GroupName | null;
  readonly clientShare?: KeyShareEntry;
  /** psk_dhe_ke but the client sent no share for the chosen group: a HelloRetryRequest is needed. */
  readonly retryGroup?: GroupName;
}

/** Chooses suite, PSK, mode and group per the server's preferences. */
function select(plan: ServerPlan, ch: ClientHello, psks: readonly (Psk | undefined)[], fixedSuite?: SuiteInfo): Selection {
  let suite: SuiteInfo | undefined;
  let index = -1;
  for (const s of fixedSuite ? [fixedSuite] : plan.suites) {
    if (!ch.cipherSuites.includes(s.id)) continue;
    const i = psks.findIndex((p) => p !== undefined && p.hash === s.hash);
    if (i >= 0) {
      suite = s;
      index = i;
      break;
    }
  }
  if (!suite) {
    if (psks.every((p) => p === undefined)) throw new TlsError('UnknownPskIdentity', 'none of the offered PSK identities is known');
    throw new TlsError('NoCommonCipherSuite', 'no cipher suite in common that a known PSK can use');
  }
  const psk = psks[index]!;
  const clientModes = ch.pskModes ?? [];
  let sawDhe = false;
  for (const mode of plan.modes) {
    if (!clientModes.includes(PskKeyExchangeMode[mode])) continue;
    if (mode === 'psk_ke') return { suite, index, psk, kex: 'psk_ke', group: null };
    sawDhe = true;
    const choice = selectKeyShare(plan.groups, ch);
    if (choice) return { suite, index, psk, kex: 'psk_dhe_ke', ...choice };
  }
  if (sawDhe) throw new TlsError('NoCommonGroup', 'no key-exchange group in common');
  throw new TlsError('NoCommonKeyExchangeMode', 'no PSK key-exchange mode in common (RFC 8446 §4.2.9)');
}

/**
 * The key-share step (RFC 8446 §4.2.8, §4.1.4), as browsers and OpenSSL expect it. The server's groups are in
 * its preference order; a client typically sends shares for one or two groups (e.g. X25519MLKEM768 and x25519)
 * and lists more in supported_groups.
 * 1. A share the client already sent, for the first of our groups that has one: answered at once (it saves a
 *    round trip, so a share present beats a more preferred group without one).
 * 2. Otherwise our most preferred group among the client's supported_groups: a HelloRetryRequest asks for it.
 * 3. Otherwise no group in common (the caller tries the next key-exchange mode, or fails).
 * The share's contents are checked later, by the group itself (a malformed share is illegal_parameter).
 */
export function selectKeyShare(
  groups: readonly GroupName[],
  ch: Pick<ClientHello, 'keyShares' | 'supportedGroups'>,
): { group: GroupName; clientShare: KeyShareEntry } | { group: GroupName; retryGroup: GroupName } | undefined {
  for (const g of groups) {
    const clientShare = ch.keyShares?.find((k) => k.group === groupId(g));
    if (clientShare) return { group: g, clientShare };
  }
  const g = groups.find((x) => ch.supportedGroups?.includes(groupId(x)));
  return g ? { group: g, retryGroup: g } : undefined;
}

/** Answers a ClientHello: a HelloRetryRequest, or the whole server flight. */
function respond(
  io: HandshakeIO,
  plan: ServerPlan,
  ch: ClientHello,
  psks: readonly (Psk | undefined)[],
  retry: RetryState | null,
): HandshakeState {
  const sel = select(plan, ch, psks, retry?.suite);
  if (sel.retryGroup) {
    if (retry) {
      throw new TlsError('ClientHelloRetryMismatch', `second ClientHello has no key share for ${sel.retryGroup} (RFC 8446 §4.1.2)`);
    }
    return sendHelloRetryRequest(io, plan, ch, psks, sel);
  }
  const { crypto } = plan;
  const { suite, psk, index } = sel;
  const E = ExtensionType;

  // §4.2.11.2: verify the binder of the selected PSK over the truncated ClientHello.
  const es = earlySecretFor(crypto, psk);
  const truncated = ch.raw.subarray(0, ch.truncatedLength);
  const truncatedHash = retry ? retry.transcript.currentWith(truncated) : crypto.hash(suite.hash).digest(truncated);
  try {
    verifyBinder(crypto, es, psk, truncatedHash, ch.psks!.binders[index]);
  } catch (e) {
    es.destroy();
    throw e;
  }
  const transcript = retry ? retry.transcript : new Transcript(crypto, suite.hash);
  transcript.add(ch.raw);

  let alpn: string | undefined;
  if (plan.options.alpn && plan.options.alpn.length > 0 && ch.alpn) {
    // RFC 7301 §3.2: the server's preference among the client's protocols, or no_application_protocol.
    alpn = plan.options.alpn.find((p) => ch.alpn!.includes(p));
    if (alpn === undefined) throw new TlsError('NoApplicationProtocol', `no ALPN protocol in common (client offered ${ch.alpn.join(', ')})`);
  }

  // §4.2.10: accept 0-RTT only when configured, for the first PSK, without a retry, with the suite and the ALPN
  // protocol provisioned with the PSK.
  let earlyData: EarlyDataStatus = 'none';
  if (ch.earlyData) {
    const provisioned = SUITES[earlyDataSuiteName(psk)] === suite && alpn === psk.earlyDataAlpn;
    earlyData = plan.maxEarlyData > 0 && index === 0 && !retry && provisioned ? 'accepted' : 'rejected';
  } else if (retry?.ch1.earlyData) {
    earlyData = 'rejected'; // 0-RTT sent with the first ClientHello was skipped after the HelloRetryRequest
  }
  let earlySecret: Uint8Array | null = null;
  if (ch.earlyData && !retry) {
    earlySecret = deriveEarlyTraffic(io, es, transcript.current(), ch.random);
  }

  let serverShare: Uint8Array | undefined;
  let shared: Uint8Array | null = null;
  const random = crypto.random(32);
  if (sel.kex === 'psk_dhe_ke') {
    const group = crypto.group(sel.group!)!;
    const randomness = crypto.random(group.randomLength);
    try {
      const r = group.respond(sel.clientShare!.keyExchange, randomness);
      serverShare = r.share;
      shared = r.sharedSecret;
    } finally {
      wipe(randomness); // the group keeps its own copy of the private key only as long as it needs it
    }
  }
  // Extension order as in RFC 8448: pre_shared_key, key_share, supported_versions.
  const shExtensions: Extension[] = [ext(E.pre_shared_key, (w) => w.u16(index))];
  if (serverShare) shExtensions.push(ext(E.key_share, (w) => w.u16(groupId(sel.group!)).vec16(serverShare!)));
  shExtensions.push(supportedVersionsServer());
  const sh = encodeServerHello({ random, sessionIdEcho: ch.sessionId, cipherSuite: suite.id, extensions: shExtensions });
  io.sendHandshake(sh);
  transcript.add(sh);
  // §D.4: in compatibility mode (the client sent a session ID) a dummy ChangeCipherSpec follows our first message.
  if (!retry && ch.sessionId.length > 0) io.sendChangeCipherSpec();

  const { hs, chts, shts } = deriveHandshakeTraffic(io, es, shared, transcript, ch.random);
  io.setWriteKeys(suite, shts);

  // EncryptedExtensions, in RFC 8448's order: [supported_groups], record_size_limit, server_name, early_data.
  let eeList: Extension[] = [];
  if (ch.recordSizeLimit !== undefined) {
    const own = plan.options.recordSizeLimit ?? 16385;
    eeList.push(ext(E.record_size_limit, (w) => w.u16(own)));
    io.setPeerRecordSizeLimit(ch.recordSizeLimit, own);
  }
  if (ch.serverName !== undefined) eeList.push(ext(E.server_name));
  if (alpn !== undefined) eeList.push(alpnExtension([alpn]));
  if (earlyData === 'accepted') eeList.push(ext(E.early_data));
  if (plan.options.dangerousEncryptedExtensions) eeList = plan.options.dangerousEncryptedExtensions(eeList);
  const ee = encodeEncryptedExtensions(eeList);
  io.sendHandshake(ee);
  transcript.add(ee);

  const finished = encodeFinished(finishedVerifyData(crypto, suite.hash, shts, transcript.current()));
  io.sendHandshake(finished);
  transcript.add(finished);

  const { cats, sats, ems } = deriveApplicationTraffic(io, hs, transcript, ch.random);
  wipe(shts);
  // The server's flight is complete: what it sends next (0.5-RTT data, alerts) uses the application keys.
  io.setWriteKeys(suite, sats);

  const negotiated: NegotiatedServer = {
    plan,
    suite,
    psk,
    index,
    kex: sel.kex,
    group: sel.group,
    transcript,
    chts,
    cats,
    sats,
    ems,
    earlyData,
    alpn,
    serverName: ch.serverName,
    helloRetry: retry !== null,
  };
  if (earlyData === 'accepted') {
    io.setReadKeys(suite, earlySecret!);
    io.acceptEarlyData(plan.maxEarlyData);
    wipe(earlySecret);
    return new ExpectEndOfEarlyData(negotiated);
  }
  wipe(earlySecret);
  io.setReadKeys(suite, chts);
  if (earlyData === 'rejected') io.skipUndecryptableRecords(Math.max(plan.maxEarlyData, DEFAULT_EARLY_DATA_SKIP_LIMIT));
  return new ExpectClientFinished(negotiated);
}

function sendHelloRetryRequest(
  io: HandshakeIO,
  plan: ServerPlan,
  ch: ClientHello,
  psks: readonly (Psk | undefined)[],
  sel: Selection,
): HandshakeState {
  const E = ExtensionType;
  const cookie = (plan.options.helloRetryCookie ?? true) ? plan.crypto.random(32) : undefined;
  // Extension order as in RFC 8448 §5: key_share, cookie, supported_versions.
  const list: Extension[] = [ext(E.key_share, (w) => w.u16(groupId(sel.retryGroup!)))];
  if (cookie) list.push(ext(E.cookie, (w) => w.vec16(cookie)));
  list.push(supportedVersionsServer());
  const hrr = encodeServerHello({ random: HELLO_RETRY_REQUEST_RANDOM, sessionIdEcho: ch.sessionId, cipherSuite: sel.suite.id, extensions: list });
  const transcript = new Transcript(plan.crypto, sel.suite.hash).add(ch.raw).replaceWithMessageHash().add(hrr);
  io.sendHandshake(hrr);
  if (ch.sessionId.length > 0) io.sendChangeCipherSpec();
  // §4.2.10: 0-RTT data sent with the first ClientHello is skipped after a HelloRetryRequest.
  if (ch.earlyData) io.skipEarlyApplicationRecords(Math.max(plan.maxEarlyData, DEFAULT_EARLY_DATA_SKIP_LIMIT));
  const resolved = new Map<string, Psk>();
  ch.psks!.identities.forEach((id, i) => {
    const p = psks[i];
    if (p) resolved.set(toHex(id.identity), p);
  });
  return new ExpectSecondClientHello(plan, { transcript, suite: sel.suite, group: sel.retryGroup!, cookie, ch1: ch, resolved });
}

/** §4.1.2: expects the ClientHello that answers our HelloRetryRequest. */
class ExpectSecondClientHello implements HandshakeState {
  readonly name = 'ExpectSecondClientHello';
  constructor(
    private readonly plan: ServerPlan,
    private readonly retry: RetryState,
  ) {}

  handle(io: HandshakeIO, m: HandshakeMessageBytes): HandshakeState {
    if (m.type !== HandshakeType.client_hello) {
      throw new TlsError('UnexpectedMessage', `expected the second ClientHello, got ${nameOf(HandshakeType, m.type, 2)}`);
    }
    const ch = decodeClientHello(m.raw);
    checkClientHello(ch);
    const r = this.retry;
    const mismatch = (what: string): never => {
      throw new TlsError('ClientHelloRetryMismatch', `second ClientHello changed ${what} (RFC 8446 §4.1.2)`);
    };
    // §4.1.2: the client sends the same ClientHello, with only these changes: one key share for the
    // requested group, the cookie, no early_data, and updated PSKs.
    if (!equalConstantTime(ch.random, r.ch1.random)) mismatch('the random');
    if (!equalConstantTime(ch.sessionId, r.ch1.sessionId)) mismatch('legacy_session_id');
    if (!ch.cipherSuites.includes(r.suite.id)) mismatch('the cipher suites');
    if (ch.earlyData) throw new TlsError('IllegalParameter', 'early_data in the second ClientHello (RFC 8446 §4.2.10)');
    if (!ch.keyShares || ch.keyShares.length !== 1 || ch.keyShares[0].group !== groupId(r.group)) {
      throw new TlsError('IllegalParameter', `second ClientHello must carry exactly one key share, for ${r.group} (RFC 8446 §4.2.8)`);
    }
    if (r.cookie && !(ch.cookie && equalConstantTime(ch.cookie, r.cookie))) {
      throw new TlsError('BadCookie', 'second ClientHello does not echo our cookie (RFC 8446 §4.2.2)');
    }
    const psks = ch.psks!.identities.map((id) => {
      const p = r.resolved.get(toHex(id.identity));
      // A PSK not offered in the first ClientHello is not looked up again: keys are fetched once.
      if (!p && !r.ch1.psks!.identities.some((o) => equalConstantTime(o.identity, id.identity))) mismatch('the PSK identities');
      return p;
    });
    return respond(io, this.plan, ch, psks, r);
  }
}

interface NegotiatedServer {
  readonly plan: ServerPlan;
  readonly suite: SuiteInfo;
  readonly psk: Psk;
  readonly index: number;
  readonly kex: KexMode;
  readonly group: GroupName | null;
  readonly transcript: Transcript;
  readonly chts: Uint8Array;
  readonly cats: Uint8Array;
  readonly sats: Uint8Array;
  readonly ems: Uint8Array;
  readonly earlyData: EarlyDataStatus;
  readonly alpn?: string;
  readonly serverName?: string;
  readonly helloRetry: boolean;
}

function destroyNegotiated(n: NegotiatedServer): void {
  wipe(n.chts, n.cats, n.sats, n.ems);
}

/** §4.5: 0-RTT accepted — application data (delivered as early data) until EndOfEarlyData. */
class ExpectEndOfEarlyData implements HandshakeState {
  readonly name = 'ExpectEndOfEarlyData';
  constructor(private readonly n: NegotiatedServer) {}
  destroy(): void {
    destroyNegotiated(this.n);
  }

  handle(io: HandshakeIO, m: HandshakeMessageBytes): HandshakeState {
    if (m.type !== HandshakeType.end_of_early_data) {
      throw new TlsError('UnexpectedMessage', `expected EndOfEarlyData, got ${nameOf(HandshakeType, m.type, 2)}`);
    }
    decodeEndOfEarlyData(m.body);
    this.n.transcript.add(m.raw);
    io.setReadKeys(this.n.suite, this.n.chts);
    return new ExpectClientFinished(this.n);
  }
}

/** §4.4.4: expects the client's Finished. */
class ExpectClientFinished implements HandshakeState {
  readonly name = 'ExpectClientFinished';
  constructor(private readonly n: NegotiatedServer) {}
  destroy(): void {
    destroyNegotiated(this.n);
  }

  handle(io: HandshakeIO, m: HandshakeMessageBytes): HandshakeState {
    const n = this.n;
    if (m.type !== HandshakeType.finished) {
      throw new TlsError('UnexpectedMessage', `expected the client Finished, got ${nameOf(HandshakeType, m.type, 2)}`);
    }
    const received = decodeFinished(m.body, n.suite.hashLength);
    const expected = finishedVerifyData(n.plan.crypto, n.suite.hash, n.chts, n.transcript.current());
    const ok = equalConstantTime(expected, received);
    wipe(expected, n.chts);
    if (!ok) throw new TlsError('IncorrectFinished', 'client Finished does not verify (RFC 8446 §4.4.4)');
    io.setReadKeys(n.suite, n.cats);
    io.complete(
      handshakeInfo(n),
      { suite: n.suite, clientSecret: n.cats, serverSecret: n.sats, exporterMasterSecret: n.ems },
    );
    return new ExpectPostHandshake(false, (io2, requested) => io2.keyUpdateReceived(requested), () => {});
  }
}
