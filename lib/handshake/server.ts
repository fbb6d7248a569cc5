/**
 * The TLS 1.3 server handshake for external PSKs (RFC 8446 §2, §4), one class per state, each named for what
 * it expects next:
 *
 * ```
 *  ExpectClientHello ──▶ AwaitPsks (while the PSKs are looked up, possibly asynchronously)
 *        │                  │
 *        │     HelloRetryRequest ──▶ ExpectSecondClientHello ──▶ (as below, no second HRR)
 *        ▼                  ▼
 *   [AwaitSharedSecret] (while an asynchronous group answers the client's key share, lib/handshake/key-agreement.ts)
 *        ▼
 *   ServerHello, EncryptedExtensions, Finished ──▶ [ExpectEndOfEarlyData] ──▶ ExpectClientFinished ──▶ connected
 * ```
 *
 * A ClientHello is answered in named steps ({@link answerClientHello}, as Go's serverHandshakeStateTLS13 reads):
 * selectSuiteAndPsk, selectKeyShareOrRetry (or sendHelloRetryRequest), verifySelectedBinder, selectAlpn,
 * decideEarlyData, sendServerHello, the handshake keys, sendEncryptedExtensions, sendServerFinished, the
 * application keys, expectClientFlight.
 *
 * Policy, in the server's preference order: the cipher suite (one that the client offers and that some
 * offered, known PSK can use), then the first such PSK in the client's order, then the key-exchange mode, then
 * the group (a HelloRetryRequest when the client sent no share for it). Randomness is drawn in a fixed order
 * (server random, key share), so a replay with injected randomness reproduces a trace byte for byte.
 */
import { ExtensionType, HandshakeType, nameOf, ProtocolVersion, PskKeyExchangeMode } from '../codec/enums.js';
import { equalConstantTime, toHex, wipe } from '../codec/bytes.js';
import { clip, fieldText } from '../codec/text.js';
import type { CryptoProvider, GroupName } from '../crypto/provider.js';
import { TlsError } from '../errors.js';
import { Transcript } from '../keyschedule/transcript.js';
import { finishedVerifyData, type EarlySecret, type HandshakeSecret } from '../keyschedule/schedule.js';
import { ext, type Extension, type KeyShareEntry } from '../messages/extensions.js';
import { decodeClientHello, encodeServerHello, HELLO_RETRY_REQUEST_RANDOM, type ClientHello } from '../messages/hello.js';
import { decodeEndOfEarlyData, decodeFinished, encodeEncryptedExtensions, encodeFinished } from '../messages/post-hello.js';
import { identityText } from '../psk/identity-text.js';
import { earlyDataSuiteName, pskShapeProblem, releasedPskProblem, shortPskProblem, type Psk, type PskRequest, type PskResolver } from '../psk/types.js';
import { isThenable, thrownMessage } from '../callbacks.js';
import type { HandshakeMessageBytes } from '../record/handshake-joiner.js';
import { SUITES, type SuiteInfo } from '../suites.js';
import {
  DEFAULT_SERVER_GROUPS,
  DEFAULT_SERVER_KEX_MODES,
  hostNameProblem,
  isHostAndPort,
  isIpLiteral,
  sniHostName,
  type KexMode,
  type ServerOptions,
} from '../config/options.js';
import type { EarlyDataRejection, EarlyDataStatus } from '../config/events.js';
import type { EarlyDataReplayGuard } from '../config/anti-replay.js';
import {
  alpnExtension,
  deriveApplicationTraffic,
  deriveEarlyTraffic,
  deriveHandshakeTraffic,
  earlySecretFor,
  ExpectPostHandshake,
  groupId,
  handshakeInfo,
  ownPsks,
  resolveCommonOptions,
  supportedVersionsServer,
  verifyBinder,
  verifyFinished,
  wipePsks,
} from './common.js';
import type { HandshakeIO, HandshakeState } from './io.js';
import { asyncGroupOf, AwaitKeyAgreement } from './key-agreement.js';

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
  /** Consulted before 0-RTT is accepted (RFC 8446 §8.2); undefined only with dangerouslyAcceptReplayedEarlyData. */
  readonly replayGuard: EarlyDataReplayGuard | undefined;
}

/** The first server state. */
export function startServer(io: HandshakeIO, options: ServerOptions): HandshakeState {
  const { suites, modes, groups } = resolveCommonOptions('server', io.crypto, options, DEFAULT_SERVER_KEX_MODES, DEFAULT_SERVER_GROUPS);
  const maxEarlyData = options.maxEarlyDataSize ?? 0;
  // §4.2.10: the limit is a uint32 (max_early_data_size); anything else (NaN, a negative or fractional number)
  // would make the skipping of rejected 0-RTT data unbounded or meaningless.
  if (!(Number.isInteger(maxEarlyData) && maxEarlyData >= 0 && maxEarlyData <= 0xffffffff)) {
    throw new TypeError(`server: maxEarlyDataSize must be an integer from 0 to 2^32 - 1 (RFC 8446 §4.2.10), got ${maxEarlyData}`);
  }
  const replayGuard = replayGuardOf(options, maxEarlyData);
  // RFC 9257 §6: "Each PSK ... MUST be at least 128 bits long". A static list is checked now; what a lookup
  // answers is checked when a PSK is selected (selectSuiteAndPsk).
  if (Array.isArray(options.psks)) {
    for (const p of options.psks as readonly unknown[]) {
      const problem = pskShapeProblem(p);
      if (problem) throw new TypeError(`server: ${problem}`);
    }
  }
  if (Array.isArray(options.psks) && !options.dangerouslyAllowShortPsks) {
    for (const p of options.psks as readonly Psk[]) {
      const problem = shortPskProblem(p);
      if (problem) throw new TypeError(`server: ${problem}`);
    }
  }
  return new ExpectClientHello({ crypto: io.crypto, options, suites, groups, modes, maxEarlyData, replayGuard });
}

/**
 * RFC 8446 §8: "The server MUST ensure that any instance of it ... would accept 0-RTT for the same 0-RTT handshake
 * at most once". A server that accepts 0-RTT (maxEarlyDataSize above 0) needs a replay guard shared by all its
 * connections, which a connection cannot make for itself: without one (and without the explicit, dangerous opt-out)
 * the options are refused, rather than accepting replayed early data unnoticed.
 */
function replayGuardOf(options: ServerOptions, maxEarlyData: number): EarlyDataReplayGuard | undefined {
  const guard = options.earlyDataReplayGuard as unknown;
  if (guard !== undefined && typeof (guard as Partial<EarlyDataReplayGuard> | null)?.firstUse !== 'function') {
    throw new TypeError('server: earlyDataReplayGuard must have a firstUse(binder) method, e.g. createEarlyDataReplayGuard() (RFC 8446 §8.2)');
  }
  if (maxEarlyData > 0 && guard === undefined && options.dangerouslyAcceptReplayedEarlyData !== true) {
    throw new TypeError(
      'server: maxEarlyDataSize above 0 accepts 0-RTT data, which an attacker can replay (RFC 8446 §8): pass ' +
        'earlyDataReplayGuard: createEarlyDataReplayGuard(), one guard shared by every connection of this server ' +
        "(qkd-tls/node's createServer makes one), or dangerouslyAcceptReplayedEarlyData: true to accept replays",
    );
  }
  return guard as EarlyDataReplayGuard | undefined;
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
    const ch = withCheckedServerName(decodeClientHello(m.raw));
    // Only the first few identities are looked up: a client cannot make us query a key manager without end.
    const identities = ch.psks!.identities.slice(0, MAX_LOOKED_UP_IDENTITIES).map((i) => i.identity);
    const request: PskRequest = { identities, serverName: ch.serverName };
    const source = this.plan.options.psks;
    if (source === undefined) return new AwaitPsks(this.plan, ch, request);
    const found = typeof source === 'function' ? lookUp(source, request) : identities.map((id) => source.find((p) => equalConstantTime(p.identity, id)));
    return answerClientHello(io, this.plan, ch, found.slice(0, identities.length), null);
  }
}

/**
 * Calls the application's synchronous PSK lookup. A lookup that throws, or answers something other than a list,
 * fails this handshake with PskLookupThrew (internal_error, RFC 8446 §6.2: a local failure), naming it
 * (lib/callbacks.ts); a TlsError it throws (a named reason, e.g. importedResolver's PskTooShort) is kept as it is.
 */
function lookUp(resolver: PskResolver, request: PskRequest): readonly (Psk | undefined)[] {
  let found: readonly (Psk | undefined)[];
  try {
    found = resolver(request);
  } catch (e) {
    // A TlsError is a named reason the lookup chose (importedResolver's PskTooShort): it keeps its own alert.
    if (e instanceof TlsError) throw e;
    throw new TlsError('PskLookupThrew', `the psks lookup function threw: ${thrownMessage(e)}`, { cause: e });
  }
  if (!Array.isArray(found)) {
    // (A promise's rejection would be unhandled: this handshake has failed already, with the reason below.)
    if (isThenable(found)) found.then(undefined, () => {});
    // (Naming where an asynchronous lookup goes: a user of the streams transport who gave `psks` a function returning
    // a promise, as the Node transport takes it, was not told of lookupPsks; found in a library walkthrough in Deno.)
    const promise =
      'a promise (a synchronous lookup must answer a list; an asynchronous one goes to the lookupPsks option of ' +
      "tlsServerOverStreams, to the psks option of qkd-tls/node's createServer, or to Connection.providePsks after the psk-request event)";
    throw new TlsError('PskLookupThrew', `the psks lookup function answered ${isThenable(found) ? promise : typeof found}, not a list`);
  }
  return found;
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
      throw new TlsError('PskLookupWrongCount', `PSK lookup answered ${psks.length} entries for ${this.pskRequest.identities.length} identities`);
    }
    return answerClientHello(
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
  // RFC 8446 Appendix D.5: "Implementations MUST NOT send a ClientHello.legacy_version ... set to 0x0300 or
  // less. Any endpoint receiving a Hello message with ClientHello.legacy_version ... set to 0x0300 MUST abort
  // the handshake with a "protocol_version" alert." Values below 0x0300 (SSL 2 and garbage) go the same way,
  // whatever supported_versions says.
  if (ch.legacyVersion <= 0x0300) {
    throw new TlsError('ClientHelloLegacyVersionSsl3', `ClientHello.legacy_version 0x${ch.legacyVersion.toString(16).padStart(4, '0')} is 0x0300 or lower (RFC 8446 Appendix D.5)`);
  }
  if (!ch.supportedVersions?.includes(ProtocolVersion.TLSv1_3)) {
    throw new TlsError('UnsupportedVersion', 'client does not offer TLS 1.3');
  }
  if (!ch.psks) {
    // §9.2: a ClientHello without pre_shared_key "MUST contain both a "signature_algorithms" extension and a
    // "supported_groups" extension", else missing_extension. One that has both asks for the certificate handshake
    // this server cannot do: handshake_failure.
    const missing = [E.signature_algorithms, E.supported_groups].filter((type) => !ch.extensions.has(type));
    if (missing.length > 0) {
      throw new TlsError('NoPskNorCertificateExtensions', `client offered no PSK, nor ${missing.map((type) => nameOf(ExtensionType, type)).join(' and ')} for a certificate handshake (RFC 8446 §9.2)`);
    }
    throw new TlsError('NoPskOffered', 'client offered no PSK (this server authenticates with PSKs only)');
  }
  // §4.2.9: a pre_shared_key without psk_key_exchange_modes is missing_extension.
  if (!ch.pskModes) throw new TlsError('PskModesMissing', 'pre_shared_key without psk_key_exchange_modes (RFC 8446 §4.2.9)');
  // §9.2: key_share requires supported_groups, and each share must be for a group the client lists.
  if (ch.keyShares) {
    if (!ch.supportedGroups) throw new TlsError('KeyShareWithoutSupportedGroups', 'key_share without supported_groups (RFC 8446 §9.2)');
    // A Set, not supportedGroups.includes per share: thousands of shares times thousands of groups fit in one
    // ClientHello, and the product cost ~0.3 s of CPU per hostile ClientHello.
    const offered = new Set(ch.supportedGroups);
    for (const k of ch.keyShares) {
      if (!offered.has(k.group)) {
        throw new TlsError('KeyShareGroupNotOffered', `key share for group 0x${k.group.toString(16)} not in supported_groups (RFC 8446 §4.2.8)`);
      }
    }
  }
  if (ch.extensions.has(E.supported_groups) && !ch.keyShares) {
    throw new TlsError('SupportedGroupsWithoutKeyShare', 'supported_groups without key_share (RFC 8446 §9.2)');
  }
}

/**
 * Checks a ClientHello (checkClientHello), then its server_name: `ch`, with the server name as the application
 * sees it. RFC 6066 §3: HostName "contains the fully qualified DNS hostname of the server ... represented as a
 * byte string using ASCII encoding without a trailing dot", and "Literal IPv4 and IPv6 addresses are not
 * permitted". A client's IP literal is ignored, as if it had sent no server_name (no acknowledgement, nothing for
 * the PSK lookup), as rustls' (InvalidSniPolicy's default) and LibreSSL's servers do: some clients put there the
 * address they connected to. A trailing dot ("example.com.", sent by clients that pass a fully qualified name on
 * as it is, as Node's and OpenSSL's do) is dropped, as a client of this library drops it: rustls' and OpenSSL's
 * servers accept such a name. The name is lowercased (DNS names are case-insensitive, RFC 4343 §3; rustls' server
 * lowercases too), so the PSK lookup sees one form of each name: "KME.Example." is "kme.example". Any other name
 * that is not a DNS host name (a character other than ASCII letters, digits, "-", "_" and ".", an empty label, a
 * label that starts or ends with "-" or a last label of digits only: RFC 1123 §2.1, a label over 63 bytes or over
 * 253 in all: RFC 1035 §2.3.4; the client's own rule, hostNameProblem) fails the handshake with illegal_parameter
 * (RFC 8446 §6.2: "A field in the handshake was incorrect"), as rustls and LibreSSL answer. RFC 6066 names no
 * alert for this: its unrecognized_name is for a well-formed name the server does not serve.
 * So what the application sees (PskRequest.serverName, HandshakeInfo.serverName) is always a checked host name.
 */
function withCheckedServerName(ch: ClientHello): ClientHello {
  checkClientHello(ch);
  const name = ch.serverName;
  if (name === undefined) return ch;
  const host = sniHostName(name);
  // (A host and a port, "beef:443" as much as "kme.example:443", is no IP literal: refused below, as a client's
  // serverName is.)
  if (isIpLiteral(host) && !isHostAndPort(host)) return { ...ch, serverName: undefined };
  const problem = hostNameProblem(host, false, name);
  if (problem) throw new TlsError('ServerNameNotHostName', `the client's server_name "${clip(name, 80)}" ${problem}: not a DNS host name (RFC 6066 §3)`);
  // (Checked: ASCII only, so toLowerCase changes only the letters A-Z.)
  const seen = host.toLowerCase();
  return seen === name ? ch : { ...ch, serverName: seen };
}

/** What a HelloRetryRequest fixed, for checking the second ClientHello (§4.1.2, §4.1.4). */
interface RetryState {
  readonly transcript: Transcript;
  readonly suite: SuiteInfo;
  readonly group: GroupName;
  readonly cookie?: Uint8Array;
  readonly ch1: ClientHello;
  /**
   * The PSKs resolved for the first ClientHello, by identity (keys are never fetched twice): copies of our own
   * (the looked-up ones may be wiped by their owner before the second ClientHello), wiped once it is answered.
   */
  readonly resolved: ReadonlyMap<string, Psk>;
}

/**
 * Answers a ClientHello whose PSKs have been looked up: a HelloRetryRequest, or the whole server flight. Each
 * step is a function of its own, in the order they run (as Go's serverHandshakeStateTLS13 reads).
 */
function answerClientHello(
  io: HandshakeIO,
  plan: ServerPlan,
  ch: ClientHello,
  psks: readonly (Psk | undefined)[],
  retry: RetryState | null,
): HandshakeState {
  // A key a lease's release wiped is all zeros: a handshake under it would accept anyone who names the identity
  // (RFC 8446 §4.2.11.2: the binder proves only knowledge of the key). Refused as a failed lookup (§6.2).
  for (const p of psks) {
    const wiped = p ? releasedPskProblem(p) : undefined;
    if (wiped) throw new TlsError('PskUnavailable', wiped);
  }
  const { suite, psk, index } = selectSuiteAndPsk(plan, ch, psks, retry?.suite);
  const keyShare = selectKeyShareOrRetry(plan, ch);
  if (keyShare.kind === 'retry') {
    if (retry) {
      throw new TlsError('ClientHelloRetryMismatch', `second ClientHello has no key share for ${keyShare.group} (RFC 8446 §4.1.2)`);
    }
    return sendHelloRetryRequest(io, plan, ch, psks, suite, keyShare.group);
  }
  const early = verifySelectedBinder(plan.crypto, ch, suite, psk, index, retry);
  // Every secret derived from the PSK from here on: wiped if the handshake fails before a state holds them (no
  // ALPN in common, a bad key share), so that no secret of a QKD key outlives a failed handshake.
  const derived: Uint8Array[] = [];
  const release = (): void => {
    early.destroy();
    wipe(...derived);
  };
  try {
    const transcript = retry ? retry.transcript : new Transcript(plan.crypto, suite.hash);
    transcript.add(ch.raw);
    const alpn = selectAlpn(plan, ch);
    // (After verifySelectedBinder: a ClientHello whose binder does not verify never reaches the replay guard.)
    const { earlyData, earlyDataRejection } = decideEarlyData(plan, ch, suite, psk, index, alpn, retry);
    // §7.1: the client's early traffic secret, over the ClientHello, when it sent 0-RTT data we may read or skip.
    const earlySecret = ch.earlyData && !retry ? deriveEarlyTraffic(io, early, transcript.current(), ch.random) : null;
    if (earlySecret) derived.push(earlySecret);
    const agreed: AgreedKeys = { plan, ch, suite, psk, index, keyShare, transcript, retry, alpn, earlyData, earlyDataRejection, early, earlySecret, derived };

    // Randomness in a fixed order on either path: the server random, then the key share's.
    const random = plan.crypto.random(32);
    if (keyShare.kind === 'psk_ke') return sendServerFlight(io, agreed, random, null);
    const asyncGroup = asyncGroupOf(plan.crypto, keyShare.group);
    const group = plan.crypto.group(keyShare.group)!;
    const clientShare = keyShare.clientShare.keyExchange;
    // §4.2.8.2: what can be checked without a private key is checked before the pause.
    asyncGroup?.checkPeerShare('client', clientShare);
    const randomness = plan.crypto.random(group.randomLength);
    let work: Promise<KeyExchangeResult>;
    try {
      if (!asyncGroup) return sendServerFlight(io, agreed, random, group.respond(clientShare, randomness));
      work = asyncGroup.respond(clientShare, randomness);
    } finally {
      wipe(randomness); // the group keeps its own copy of the private key only as long as it needs it
    }
    return new AwaitKeyAgreement(work, {
      name: 'AwaitSharedSecret',
      step: 'respond',
      groups: [keyShare.group],
      next: (io2, exchanged) => sendServerFlight(io2, agreed, random, exchanged),
      discard: (exchanged) => wipe(exchanged.sharedSecret),
      release,
    });
  } catch (e) {
    release();
    throw e;
  }
}

/** The (EC)DHE exchange's outcome on the server: its key_exchange bytes and the shared secret (RFC 8446 §7.4). */
interface KeyExchangeResult {
  readonly share: Uint8Array;
  readonly sharedSecret: Uint8Array;
}

/** What {@link answerClientHello} settled before the key exchange, for {@link sendServerFlight}. */
interface AgreedKeys {
  readonly plan: ServerPlan;
  readonly ch: ClientHello;
  readonly suite: SuiteInfo;
  readonly psk: Psk;
  readonly index: number;
  readonly keyShare: Exclude<KeyShareChoice, { kind: 'retry' }>;
  readonly transcript: Transcript;
  readonly retry: RetryState | null;
  readonly alpn: string | undefined;
  readonly earlyData: EarlyDataStatus;
  readonly earlyDataRejection: EarlyDataRejection | undefined;
  readonly early: EarlySecret;
  readonly earlySecret: Uint8Array | null;
  /** Every secret derived from the PSK so far, wiped if the handshake fails. */
  readonly derived: Uint8Array[];
}

/**
 * The server's flight once the key exchange is done (`exchanged` null for psk_ke): ServerHello,
 * EncryptedExtensions, Finished, the application keys; then the state that expects the client's flight.
 */
function sendServerFlight(io: HandshakeIO, a: AgreedKeys, random: Uint8Array, exchanged: KeyExchangeResult | null): HandshakeState {
  const { plan, ch, suite, psk, index, keyShare, transcript, retry, alpn, earlyData, earlyDataRejection, early, earlySecret, derived } = a;
  let hs: HandshakeSecret | null = null;
  try {
    const shared = sendServerHello(io, ch, suite, index, keyShare, random, exchanged, transcript, retry !== null);
    // §7.1: the handshake traffic secrets; what the server sends from now on is protected.
    const handshakeTraffic = deriveHandshakeTraffic(io, early, shared, transcript, ch.random);
    const { chts, shts } = handshakeTraffic;
    hs = handshakeTraffic.hs;
    derived.push(chts, shts);
    io.setWriteKeys(suite, shts);
    sendEncryptedExtensions(io, plan, ch, alpn, earlyData, transcript);
    sendServerFinished(io, plan.crypto, suite, shts, transcript);
    const { cats, sats, ems } = deriveApplicationTraffic(io, hs, transcript, ch.random);
    derived.push(cats, sats, ems);
    wipe(shts);
    // The server's flight is complete: what it sends next (0.5-RTT data, alerts) uses the application keys.
    io.setWriteKeys(suite, sats);

    const negotiated: NegotiatedServer = {
      plan,
      suite,
      psk,
      index,
      kex: keyShare.kind,
      group: keyShare.kind === 'psk_dhe_ke' ? keyShare.group : null,
      transcript,
      chts,
      cats,
      sats,
      ems,
      earlyData,
      earlyDataRejection,
      alpn,
      serverName: ch.serverName,
      helloRetry: retry !== null,
    };
    return expectClientFlight(io, negotiated, earlySecret);
  } catch (e) {
    early.destroy();
    hs?.destroy();
    wipe(...derived);
    throw e;
  }
}

/**
 * Chooses the cipher suite (the server's preference among the client's, `fixedSuite` after a
 * HelloRetryRequest) together with the first offered PSK that can use it (§4.2.11: a PSK goes with a suite of
 * its hash). RFC 9257 §6: a PSK is at least 128 bits long; one that a lookup (resolver, providePsks) answers
 * shorter is passed over, as the importer passes over a short EPSK (lib/psk/importer.ts), and when only such
 * PSKs are left the handshake fails as a failed lookup does (PskTooShort, like PskUnavailable: handshake_failure,
 * RFC 8446 §6.2 "unable to negotiate an acceptable set of security parameters given the options available";
 * the peer did nothing wrong, yet this is no internal_error either: a policy refusal of the key we hold).
 */
function selectSuiteAndPsk(
  plan: ServerPlan,
  ch: ClientHello,
  psks: readonly (Psk | undefined)[],
  fixedSuite: SuiteInfo | undefined,
): { suite: SuiteInfo; psk: Psk; index: number } {
  const usable = (p: Psk | undefined): p is Psk => p !== undefined && (plan.options.dangerouslyAllowShortPsks === true || shortPskProblem(p) === undefined);
  for (const suite of fixedSuite ? [fixedSuite] : plan.suites) {
    if (!ch.cipherSuites.includes(suite.id)) continue;
    const index = psks.findIndex((p) => usable(p) && p.hash === suite.hash);
    if (index >= 0) return { suite, psk: psks[index]!, index };
  }
  if (psks.every((p) => p === undefined)) throw new TlsError('UnknownPskIdentity', `none of the offered PSK identities is known (${offeredIdentities(ch)})`);
  const short = psks.findIndex((p) => p !== undefined && !usable(p));
  if (short >= 0 && !psks.some(usable)) {
    throw new TlsError('PskTooShort', `the PSK lookup answered only PSKs too short to use, e.g. for identity #${short}: ${shortPskProblem(psks[short]!)}`);
  }
  throw new TlsError('NoCommonCipherSuite', 'no cipher suite in common that a known PSK can use');
}

/**
 * The identities a ClientHello offered, for the log of an unknown identity: the operator sees what the client sent
 * (a wrong identity, an RFC 9258 imported one when this server does not import, a QKD key ID), where the message
 * said only "none of the offered PSK identities is known" (found in a README walkthrough). The client's text: each
 * quoted as a log field (control characters escaped), at most three of them, each clipped.
 */
function offeredIdentities(ch: ClientHello): string {
  const all = ch.psks?.identities ?? [];
  const shown = all.slice(0, 3).map((i) => fieldText(identityText(i.identity), 80));
  return `offered: ${shown.join(', ')}${all.length > 3 ? ` and ${all.length - 3} more` : ''}`;
}

/** The key exchange: PSK only, (EC)DHE with the client's share for `group`, or a HelloRetryRequest for `group`. */
type KeyShareChoice =
  | { readonly kind: 'psk_ke' }
  | { readonly kind: 'psk_dhe_ke'; readonly group: GroupName; readonly clientShare: KeyShareEntry }
  | { readonly kind: 'retry'; readonly group: GroupName };

/**
 * Chooses the key-exchange mode (§4.2.9) and, for psk_dhe_ke, the group and the client's key share (§4.2.8), in
 * the server's preference order. A share the client already sent for one of our groups saves a round trip;
 * otherwise a HelloRetryRequest asks for our most preferred group among the client's supported_groups (§4.1.4).
 */
function selectKeyShareOrRetry(plan: ServerPlan, ch: ClientHello): KeyShareChoice {
  const clientModes = ch.pskModes ?? [];
  let sawDhe = false;
  for (const mode of plan.modes) {
    if (!clientModes.includes(PskKeyExchangeMode[mode])) continue;
    if (mode === 'psk_ke') return { kind: 'psk_ke' };
    sawDhe = true;
    const choice = selectKeyShare(plan.groups, ch);
    if (!choice) continue;
    return 'clientShare' in choice ? { kind: 'psk_dhe_ke', ...choice } : { kind: 'retry', group: choice.retryGroup };
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

/**
 * §4.2.11.2: verifies the selected PSK's binder over the truncated ClientHello (after message_hash(ClientHello1)
 * and the HelloRetryRequest when there was one); returns the PSK's early secret.
 */
function verifySelectedBinder(
  crypto: CryptoProvider,
  ch: ClientHello,
  suite: SuiteInfo,
  psk: Psk,
  index: number,
  retry: RetryState | null,
): EarlySecret {
  const early = earlySecretFor(crypto, psk);
  const truncated = ch.raw.subarray(0, ch.truncatedLength);
  const truncatedHash = retry ? retry.transcript.currentWith(truncated) : crypto.hash(suite.hash).digest(truncated);
  try {
    verifyBinder(crypto, early, psk, truncatedHash, ch.psks!.binders[index]);
  } catch (e) {
    early.destroy();
    throw e;
  }
  return early;
}

/** RFC 7301 §3.2: the server's preference among the client's protocols, or no_application_protocol. */
function selectAlpn(plan: ServerPlan, ch: ClientHello): string | undefined {
  if (!plan.options.alpn || plan.options.alpn.length === 0 || !ch.alpn) return undefined;
  const alpn = plan.options.alpn.find((p) => ch.alpn!.includes(p));
  if (alpn === undefined) throw new TlsError('NoApplicationProtocol', `no ALPN protocol in common (client offered ${clip(ch.alpn.join(', '))})`);
  return alpn;
}

/** What {@link decideEarlyData} answers: the status, and on a rejection its reason. */
interface EarlyDataDecision {
  readonly earlyData: EarlyDataStatus;
  readonly earlyDataRejection: EarlyDataRejection | undefined;
}

/**
 * §4.2.10: 0-RTT is accepted only when configured, for the first PSK, without a retry, with the suite and the
 * ALPN protocol provisioned with the PSK; and then (§8, §8.2) only if the replay guard has not seen this
 * ClientHello's binder before. Called after the binder was verified (§8.2: "the server first verifies the PSK
 * binder"), so that only a ClientHello made with the key is recorded; the guard is consulted last, so that it
 * records only ClientHellos whose 0-RTT is accepted. A repeat rejects 0-RTT and the handshake goes on (§8.2: a
 * server "MUST respond to apparent replay by rejecting 0-RTT but MUST NOT abort the handshake" when its register
 * may give false positives, as a full one does); the early data is skipped as any rejected 0-RTT's.
 */
function decideEarlyData(
  plan: ServerPlan,
  ch: ClientHello,
  suite: SuiteInfo,
  psk: Psk,
  index: number,
  alpn: string | undefined,
  retry: RetryState | null,
): EarlyDataDecision {
  const rejected = (why: EarlyDataRejection): EarlyDataDecision => ({ earlyData: 'rejected', earlyDataRejection: why });
  if (!ch.earlyData) {
    // 0-RTT sent with the first ClientHello was skipped after the HelloRetryRequest.
    if (!retry?.ch1.earlyData) return { earlyData: 'none', earlyDataRejection: undefined };
    return rejected(plan.maxEarlyData === 0 ? 'disabled' : 'hello-retry');
  }
  if (plan.maxEarlyData === 0) return rejected('disabled');
  if (retry) return rejected('hello-retry'); // (a second ClientHello with early_data fails before, §4.2.10)
  if (index !== 0) return rejected('not-first-psk');
  if (SUITES[earlyDataSuiteName(psk)] !== suite || alpn !== psk.earlyDataAlpn) return rejected('not-provisioned');
  // (A single-use key, §8.1, cannot be replayed: its source never gives it out again. Recording its binder would
  // only fill the register.)
  if (plan.replayGuard && psk.singleUse !== true && !firstUse(plan.replayGuard, ch.psks!.binders[index])) return rejected('replay');
  return { earlyData: 'accepted', earlyDataRejection: undefined };
}

/**
 * Asks the replay guard (§8.2) about the selected PSK's binder. It is a callback the protocol depends on
 * (lib/callbacks.ts): one that throws, or answers anything but a boolean (a promise: guards are synchronous), fails
 * this handshake with EarlyDataReplayGuardFailed (internal_error, §6.2: a local failure).
 */
function firstUse(guard: EarlyDataReplayGuard, binder: Uint8Array): boolean {
  let answer: unknown;
  try {
    answer = guard.firstUse(binder);
  } catch (e) {
    throw new TlsError('EarlyDataReplayGuardFailed', `the earlyDataReplayGuard threw: ${thrownMessage(e)}`, { cause: e });
  }
  if (typeof answer !== 'boolean') {
    if (isThenable(answer)) answer.then(undefined, () => {});
    throw new TlsError('EarlyDataReplayGuardFailed', `the earlyDataReplayGuard answered ${isThenable(answer) ? 'a promise (a guard answers synchronously)' : typeof answer}, not true or false`);
  }
  return answer;
}

/**
 * §4.1.3: sends the ServerHello (and, in compatibility mode, the dummy ChangeCipherSpec of §D.4) with our
 * `random` and key share; returns the (EC)DHE shared secret, or null for psk_ke.
 */
function sendServerHello(
  io: HandshakeIO,
  ch: ClientHello,
  suite: SuiteInfo,
  index: number,
  keyShare: Exclude<KeyShareChoice, { kind: 'retry' }>,
  random: Uint8Array,
  exchanged: KeyExchangeResult | null,
  transcript: Transcript,
  afterRetry: boolean,
): Uint8Array | null {
  const E = ExtensionType;
  const serverShare = exchanged?.share;
  const shared = exchanged?.sharedSecret ?? null;
  // Extension order as in RFC 8448: pre_shared_key, key_share, supported_versions.
  const list: Extension[] = [ext(E.pre_shared_key, (w) => w.u16(index))];
  if (keyShare.kind === 'psk_dhe_ke') list.push(ext(E.key_share, (w) => w.u16(groupId(keyShare.group)).vec16(serverShare!)));
  list.push(supportedVersionsServer());
  const sh = encodeServerHello({ random, sessionIdEcho: ch.sessionId, cipherSuite: suite.id, extensions: list });
  io.sendHandshake(sh);
  transcript.add(sh);
  // §D.4: in compatibility mode (the client sent a session ID) a dummy ChangeCipherSpec follows our first message.
  if (!afterRetry && ch.sessionId.length > 0) io.sendChangeCipherSpec();
  return shared;
}

/**
 * §4.3.1: EncryptedExtensions, in RFC 8448's order: record_size_limit, server_name, ALPN, early_data. RFC 8448's
 * servers put supported_groups first; this one sends none (§4.2.7 has a server SHOULD send it when it prefers a group
 * the client sent no share for, a hint the client may keep for later connections; rustls and Go do not send it
 * either): `dangerousEncryptedExtensions` adds it where a test needs RFC 8448's bytes.
 */
function sendEncryptedExtensions(
  io: HandshakeIO,
  plan: ServerPlan,
  ch: ClientHello,
  alpn: string | undefined,
  earlyData: EarlyDataStatus,
  transcript: Transcript,
): void {
  const E = ExtensionType;
  let list: Extension[] = [];
  if (ch.recordSizeLimit !== undefined) {
    const own = plan.options.recordSizeLimit ?? 16385;
    list.push(ext(E.record_size_limit, (w) => w.u16(own)));
    io.setPeerRecordSizeLimit(ch.recordSizeLimit, own);
  }
  if (ch.serverName !== undefined) list.push(ext(E.server_name));
  if (alpn !== undefined) list.push(alpnExtension([alpn]));
  if (earlyData === 'accepted') list.push(ext(E.early_data));
  if (plan.options.dangerousEncryptedExtensions) list = plan.options.dangerousEncryptedExtensions(list);
  const ee = encodeEncryptedExtensions(list);
  io.sendHandshake(ee);
  transcript.add(ee);
}

/** §4.4.4: the server's Finished, keyed with its handshake traffic secret. */
function sendServerFinished(io: HandshakeIO, crypto: CryptoProvider, suite: SuiteInfo, shts: Uint8Array, transcript: Transcript): void {
  const finished = encodeFinished(finishedVerifyData(crypto, suite.hash, shts, transcript.current()));
  io.sendHandshake(finished);
  transcript.add(finished);
}

/**
 * Installs the read keys for the client's second flight: the early keys when 0-RTT is accepted (§4.2.10, until
 * EndOfEarlyData), else the client's handshake keys (skipping rejected 0-RTT records meanwhile).
 */
function expectClientFlight(io: HandshakeIO, n: NegotiatedServer, earlySecret: Uint8Array | null): HandshakeState {
  const { suite, plan } = n;
  if (n.earlyData === 'accepted') {
    io.setReadKeys(suite, earlySecret!);
    io.acceptEarlyData(plan.maxEarlyData);
    wipe(earlySecret);
    return new ExpectEndOfEarlyData(n);
  }
  wipe(earlySecret);
  io.setReadKeys(suite, n.chts);
  // §4.2.10: records that fail to decrypt are skipped only when this ServerHello rejects the 0-RTT data sent with
  // its ClientHello. After a HelloRetryRequest that data came before the second ClientHello (and was skipped as
  // application_data then): a record of the client's flight that fails to decrypt is bad_record_mac (§5.2).
  if (n.earlyData === 'rejected' && !n.helloRetry) io.skipUndecryptableRecords(Math.max(plan.maxEarlyData, DEFAULT_EARLY_DATA_SKIP_LIMIT));
  return new ExpectClientFinished(n);
}

/** §4.1.4: asks for a key share for `group`; the second ClientHello must change only what §4.1.2 allows. */
function sendHelloRetryRequest(
  io: HandshakeIO,
  plan: ServerPlan,
  ch: ClientHello,
  psks: readonly (Psk | undefined)[],
  suite: SuiteInfo,
  group: GroupName,
): HandshakeState {
  const E = ExtensionType;
  const cookie = (plan.options.helloRetryCookie ?? true) ? plan.crypto.random(32) : undefined;
  // Extension order as in RFC 8448 §5: key_share, cookie, supported_versions.
  const list: Extension[] = [ext(E.key_share, (w) => w.u16(groupId(group)))];
  if (cookie) list.push(ext(E.cookie, (w) => w.vec16(cookie)));
  list.push(supportedVersionsServer());
  const hrr = encodeServerHello({ random: HELLO_RETRY_REQUEST_RANDOM, sessionIdEcho: ch.sessionId, cipherSuite: suite.id, extensions: list });
  const transcript = new Transcript(plan.crypto, suite.hash).add(ch.raw).replaceWithMessageHash().add(hrr);
  io.sendHandshake(hrr);
  if (ch.sessionId.length > 0) io.sendChangeCipherSpec();
  // §4.2.10: 0-RTT data sent with the first ClientHello is skipped after a HelloRetryRequest.
  if (ch.earlyData) io.skipEarlyApplicationRecords(Math.max(plan.maxEarlyData, DEFAULT_EARLY_DATA_SKIP_LIMIT));
  const resolved = new Map<string, Psk>();
  ch.psks!.identities.forEach((id, i) => {
    const p = psks[i];
    if (p && !resolved.has(toHex(id.identity))) resolved.set(toHex(id.identity), ownPsks([p])[0]);
  });
  return new ExpectSecondClientHello(plan, { transcript, suite, group, cookie, ch1: ch, resolved });
}

/** §4.1.2: expects the ClientHello that answers our HelloRetryRequest. */
class ExpectSecondClientHello implements HandshakeState {
  readonly name = 'ExpectSecondClientHello';
  constructor(
    private readonly plan: ServerPlan,
    private readonly retry: RetryState,
  ) {}

  destroy(): void {
    wipePsks(this.retry.resolved.values());
  }

  handle(io: HandshakeIO, m: HandshakeMessageBytes): HandshakeState {
    if (m.type !== HandshakeType.client_hello) {
      throw new TlsError('UnexpectedMessage', `expected the second ClientHello, got ${nameOf(HandshakeType, m.type, 2)}`);
    }
    const ch = withCheckedServerName(decodeClientHello(m.raw));
    const r = this.retry;
    const mismatch = (what: string): never => {
      throw new TlsError('ClientHelloRetryMismatch', `second ClientHello changed ${what} (RFC 8446 §4.1.2)`);
    };
    // §4.1.2: the client sends the same ClientHello, with only these changes: one key share for the
    // requested group, the cookie, no early_data, and updated PSKs.
    if (!equalConstantTime(ch.random, r.ch1.random)) mismatch('the random');
    if (!equalConstantTime(ch.sessionId, r.ch1.sessionId)) mismatch('legacy_session_id');
    if (!sameNumbers(ch.cipherSuites, r.ch1.cipherSuites)) mismatch('the cipher suites');
    if (ch.earlyData) throw new TlsError('EarlyDataAfterHelloRetryRequest', 'early_data in the second ClientHello (RFC 8446 §4.2.10)');
    if (!ch.keyShares || ch.keyShares.length !== 1 || ch.keyShares[0].group !== groupId(r.group)) {
      throw new TlsError('RetryKeyShareWrongGroup', `second ClientHello must carry exactly one key share, for ${r.group} (RFC 8446 §4.2.8)`);
    }
    if (r.cookie && !(ch.cookie && equalConstantTime(ch.cookie, r.cookie))) {
      throw new TlsError('BadCookie', 'second ClientHello does not echo our cookie (RFC 8446 §4.2.2)');
    }
    // §4.1.2: nothing else may change; of the extensions, those the server negotiates with are compared (a
    // client changing its key-exchange modes, groups or ALPN list would renegotiate what the retry fixed).
    for (const type of UNCHANGED_AFTER_RETRY) {
      const before = r.ch1.extensions.get(type);
      const after = ch.extensions.get(type);
      if (!(before === undefined ? after === undefined : after !== undefined && equalConstantTime(before, after))) mismatch(nameOf(ExtensionType, type));
    }
    // The first ClientHello's identities (public, sent in clear) in a Set: searching its list once per identity of
    // the second cost ~70 ms of CPU for 1,400 identities, each one's binder still unchecked.
    const offeredFirst = new Set(r.ch1.psks!.identities.map((o) => toHex(o.identity)));
    const psks = ch.psks!.identities.map((id) => {
      const hex = toHex(id.identity);
      const p = r.resolved.get(hex);
      // A PSK not offered in the first ClientHello is not looked up again: keys are fetched once.
      if (!p && !offeredFirst.has(hex)) mismatch('the PSK identities');
      return p;
    });
    try {
      return answerClientHello(io, this.plan, ch, psks, r);
    } finally {
      this.destroy(); // the binder is verified (or not): the handshake keeps only what it derived
    }
  }
}

/**
 * §4.1.2: the extensions a second ClientHello must repeat unchanged, among those this server reads (key_share,
 * early_data, cookie, pre_shared_key and padding are the ones it may change).
 */
const UNCHANGED_AFTER_RETRY: readonly number[] = [
  ExtensionType.supported_versions,
  ExtensionType.supported_groups,
  ExtensionType.psk_key_exchange_modes,
  ExtensionType.server_name,
  ExtensionType.application_layer_protocol_negotiation,
  ExtensionType.record_size_limit,
];

function sameNumbers(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
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
  readonly earlyDataRejection: EarlyDataRejection | undefined;
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
    try {
      verifyFinished(n.plan.crypto, n.suite.hash, n.chts, n.transcript.current(), decodeFinished(m.body, n.suite.hashLength), 'client');
    } finally {
      wipe(n.chts);
    }
    io.setReadKeys(n.suite, n.cats);
    io.complete(
      handshakeInfo(n),
      { suite: n.suite, clientSecret: n.cats, serverSecret: n.sats, exporterMasterSecret: n.ems },
    );
    return new ExpectPostHandshake(false, (io2, requested) => io2.keyUpdateReceived(requested), () => {});
  }
}
