/**
 * The TLS 1.3 client handshake for external PSKs (RFC 8446 §2, §4), one class per state, each named for the
 * message it expects next:
 *
 * ```
 *  startClient ──ClientHello──▶ ExpectServerHello ──HRR──▶ ClientHello2 ──▶ ExpectServerHello (no second HRR)
 *                                      │ServerHello
 *                                      ▼
 *                          ExpectEncryptedExtensions ──▶ ExpectServerFinished ──[EndOfEarlyData] Finished──▶ connected
 * ```
 *
 * Randomness is drawn from the provider in a fixed order (client random, legacy_session_id, key shares), so a
 * replay with injected randomness reproduces a trace byte for byte.
 *
 * With an asynchronous group (lib/handshake/key-agreement.ts) the handshake pauses where it would call it:
 * AwaitKeyShares before each ClientHello (which goes out after the pause), AwaitSharedSecret after the
 * ServerHello. The bytes are the same either way.
 */
import { ExtensionType, HandshakeType, nameOf, ProtocolVersion, PskKeyExchangeMode } from '../codec/enums.js';
import { copyBytes, equalConstantTime, utf8, wipe } from '../codec/bytes.js';
import { clip } from '../codec/text.js';
import type { AsyncClientKeyShare, AsyncKeyExchangeGroup, ClientKeyShare, CryptoProvider, GroupName } from '../crypto/provider.js';
import { groupSpec } from '../crypto/groups.js';
import { TlsError } from '../errors.js';
import { Transcript } from '../keyschedule/transcript.js';
import { finishedVerifyData, type EarlySecret, type HandshakeSecret } from '../keyschedule/schedule.js';
import { ext, type Extension } from '../messages/extensions.js';
import { decodeServerHello, encodeClientHello, patchBinders, type ServerHello } from '../messages/hello.js';
import {
  decodeEncryptedExtensions,
  decodeFinished,
  type EncryptedExtensions,
  decodeNewSessionTicket,
  encodeEndOfEarlyData,
  encodeFinished,
} from '../messages/post-hello.js';
import { earlyDataSuiteName, pskShapeProblem, releasedPskProblem, shortPskProblem, type Psk } from '../psk/types.js';
import type { HandshakeMessageBytes } from '../record/handshake-joiner.js';
import { SUITES, suiteById, type SuiteInfo } from '../suites.js';
import {
  DEFAULT_CLIENT_KEX_MODES,
  DEFAULT_GROUPS,
  serverNameProblem,
  sniHostName,
  type ClientOptions,
  type KexMode,
} from '../config/options.js';
import type { EarlyDataStatus } from '../config/events.js';
import {
  alpnExtension,
  computeBinder,
  deriveApplicationTraffic,
  deriveEarlyTraffic,
  deriveHandshakeTraffic,
  earlySecretFor,
  ExpectPostHandshake,
  groupId,
  groupName,
  handshakeInfo,
  ownPsks,
  resolveCommonOptions,
  verifyFinished,
  wipePsks,
} from './common.js';
import type { HandshakeIO, HandshakeState } from './io.js';
import { allOrNothing, asyncGroupOf, AwaitKeyAgreement } from './key-agreement.js';

/** Everything the client decided before sending its first ClientHello. */
interface ClientPlan {
  readonly crypto: CryptoProvider;
  readonly options: ClientOptions;
  readonly suites: readonly SuiteInfo[];
  readonly groups: readonly GroupName[];
  readonly modes: readonly KexMode[];
  readonly random: Uint8Array;
  readonly sessionId: Uint8Array;
  /** The server_name's HostName as sent: `options.serverName` without its trailing dot (RFC 6066 §3). */
  readonly serverName?: string;
  /**
   * Extensions of our latest ClientHello: a server may only answer these (§4.2). After a HelloRetryRequest, those of
   * the second ClientHello, which the ServerHello and EncryptedExtensions answer (no early_data, §4.2.10).
   */
  readonly offered: Set<number>;
  ccsSent: boolean;
}

/** Builds and sends the first ClientHello (and 0-RTT data when asked); returns the first state. */
export function startClient(io: HandshakeIO, options: ClientOptions): HandshakeState {
  const crypto = io.crypto;
  const { suites: configured, modes, groups } = resolveCommonOptions('client', crypto, options, DEFAULT_CLIENT_KEX_MODES, DEFAULT_GROUPS);
  if (!Array.isArray(options.psks)) throw new TypeError(`client: psks is required: an array of PSKs ({ identity, secret, hash }), got ${options.psks === undefined ? 'none' : typeof options.psks}`);
  for (const p of options.psks) {
    const problem = pskShapeProblem(p);
    if (problem) throw new TypeError(`client: ${problem}`);
  }
  // A secret a lease's release wiped is all zeros: offered, it puts a binder computed under zeros on the wire (RFC
  // 8446 §4.2.11.2), which the server refuses with decrypt_error a round trip later. Refused here, before anything
  // is drawn or sent, as the server refuses it (PskUnavailable); nothing was sent, so no alert either (as for a
  // failed key agreement before the first ClientHello). Every configured PSK, as for the length rule below.
  for (const p of options.psks) {
    const wiped = releasedPskProblem(p, 'client');
    if (wiped) throw new TlsError('PskUnavailable', `client: ${wiped}`, { alertNotSent: true });
  }
  // RFC 9257 §6: "Each PSK ... MUST be at least 128 bits long" (a shorter one falls to an offline search
  // against the binder we send); every configured PSK, not only those offered with these suites.
  if (!options.dangerouslyAllowShortPsks) {
    for (const p of options.psks) {
      const problem = shortPskProblem(p);
      if (problem) throw new TypeError(`client: ${problem}`);
    }
  }
  // §4.2.11: a PSK can only be used with a suite of its hash; offer only the usable ones.
  const usablePsks = options.psks.filter((p) => configured.some((s) => s.hash === p.hash));
  if (usablePsks.length === 0) throw new TypeError('client: no PSK usable with the configured cipher suites');
  for (const p of usablePsks) {
    if (p.identity.length === 0 || p.identity.length > 0xffff) throw new TypeError('client: a PSK identity must be 1..65535 bytes');
  }
  // Suites that an offered PSK can use go first (otherwise in the configured order): servers such as OpenSSL
  // pick the suite before the PSK, and a PSK-only handshake on a suite of another hash cannot complete (§4.2.11).
  const usable = (s: SuiteInfo): boolean => usablePsks.some((p) => p.hash === s.hash);
  const suites = [...configured.filter(usable), ...configured.filter((s) => !usable(s))];

  const random = crypto.random(32);
  const compat = options.middleboxCompatibility ?? true;
  const sessionId = compat ? crypto.random(32) : new Uint8Array(0);
  const dhe = modes.includes('psk_dhe_ke');
  const wanted = dhe ? (options.keyShareGroups ?? groups.slice(0, 1)) : [];
  // §4.2.8: "Clients MUST NOT offer multiple KeyShareEntry values for the same group".
  if (new Set(wanted).size !== wanted.length) throw new TypeError('client: keyShareGroups names a group twice (RFC 8446 §4.2.8)');
  for (const g of wanted) if (!groups.includes(g)) throw new TypeError(`client: key share group ${g} is not among the configured groups`);
  // RFC 6066 §3: an ASCII DNS host name (RFC 1035 §2.3.4: labels up to 63 bytes, 253 in all), sent without the
  // trailing dot of a fully qualified name; dangerouslyAllowLongServerName: up to MAX_SERVER_NAME_BYTES.
  const nameProblem = options.serverName === undefined ? undefined : serverNameProblem(options.serverName, options);
  if (nameProblem) throw new TypeError(`client: serverName: ${nameProblem}`);
  const serverName = options.serverName === undefined ? undefined : sniHostName(options.serverName);
  // Our own copy, as write() queues one: the data is sent later (after an asynchronous key agreement) and sent
  // again after the handshake when the server rejects it (§4.2.10), and the caller may reuse its buffer meanwhile.
  const earlyData = options.earlyData && options.earlyData.length > 0 ? copyBytes(options.earlyData) : undefined;
  // §4.2.10: 0-RTT data is protected with the first PSK and the suite provisioned with it, whose hash is the
  // PSK's (§4.2.11: "the PSK MUST be used with a cipher suite ... of the same hash").
  if (earlyData && SUITES[earlyDataSuiteName(usablePsks[0])].hash !== usablePsks[0].hash) {
    throw new TypeError(`client: the PSK's earlyDataSuite ${earlyDataSuiteName(usablePsks[0])} does not use the PSK's hash ${usablePsks[0].hash} (RFC 8446 §4.2.10, §4.2.11)`);
  }
  if (earlyData && !suites.includes(SUITES[earlyDataSuiteName(usablePsks[0])])) {
    throw new TypeError(`client: 0-RTT under this PSK uses ${earlyDataSuiteName(usablePsks[0])} (RFC 8446 §4.2.10), which is not among the offered suites`);
  }

  const plan: ClientPlan = {
    crypto,
    options,
    suites,
    groups,
    modes,
    random,
    sessionId,
    serverName,
    offered: new Set<number>(),
    ccsSent: false,
  };
  // §4.2.8: the shares "MUST appear in the same order" as their groups in supported_groups, whatever order
  // keyShareGroups lists them in.
  const shareGroups = groups.filter((g) => wanted.includes(g));
  checkClientHelloFits(plan, usablePsks, shareGroups, earlyData !== undefined);
  // Secrets of our own: after a HelloRetryRequest the second ClientHello needs them again, and by then the
  // caller may have wiped its PSKs (a key source's lease released); wiped once the ServerHello is processed.
  const psks = ownPsks(usablePsks);
  let shares: OfferedShare[] | Promise<OfferedShare[]>;
  try {
    shares = startShares(crypto, shareGroups);
  } catch (e) {
    wipePsks(psks);
    throw e;
  }
  if (!(shares instanceof Promise)) {
    try {
      return sendFirstClientHello(io, plan, psks, shares, earlyData);
    } catch (e) {
      destroyShares(shares);
      wipePsks(psks);
      throw e;
    }
  }
  return new AwaitKeyAgreement(shares, {
    name: 'AwaitKeyShares',
    step: 'start',
    groups: shareGroups,
    next: (io2, ready) => sendFirstClientHello(io2, plan, psks, ready, earlyData),
    discard: destroyShares,
    release: () => wipePsks(psks),
  });
}

/** Sends the first ClientHello (and 0-RTT data when asked); returns the state that expects the ServerHello. */
function sendFirstClientHello(
  io: HandshakeIO,
  plan: ClientPlan,
  psks: readonly Psk[],
  shares: readonly OfferedShare[],
  earlyData: Uint8Array | undefined,
): HandshakeState {
  const { crypto, random } = plan;
  const compat = plan.options.middleboxCompatibility ?? true;
  const hello = buildClientHello(plan, psks, shares, { earlyData: earlyData !== undefined }, null);
  io.sendHandshake(hello.raw);

  let early: EarlyState | null = null;
  if (earlyData) {
    // §4.2.10: 0-RTT data is protected with the first PSK and the suite provisioned with it.
    const psk = psks[0];
    const suite = SUITES[earlyDataSuiteName(psk)];
    const es = hello.earlySecrets[0];
    const secret = deriveEarlyTraffic(io, es, crypto.hash(psk.hash).digest(hello.raw), random);
    if (compat) {
      // §D.4: with early data, the dummy ChangeCipherSpec goes right after the first ClientHello.
      io.sendChangeCipherSpec();
      plan.ccsSent = true;
    }
    io.setWriteKeys(suite, secret);
    io.sendEarlyData(earlyData);
    wipe(secret);
    early = { suite, data: earlyData };
  }
  return new ExpectServerHello(plan, psks, shares, hello, early, null);
}

interface EarlyState {
  readonly suite: SuiteInfo;
  readonly data: Uint8Array;
}

interface BuiltHello {
  readonly raw: Uint8Array;
  readonly truncatedLength: number;
  /** One early secret per offered PSK, in order. */
  readonly earlySecrets: EarlySecret[];
}

interface RetryContext {
  /** Transcript over message_hash(ClientHello1) and the HelloRetryRequest. */
  readonly transcript: Transcript;
  readonly cookie?: Uint8Array;
}

function buildClientHello(
  plan: ClientPlan,
  psks: readonly Psk[],
  shares: readonly OfferedShare[],
  flags: { earlyData: boolean },
  retry: RetryContext | null,
): BuiltHello {
  const { options, crypto } = plan;
  let list = clientHelloExtensions(plan, shares, flags, retry?.cookie);
  if (options.dangerousClientHelloExtensions) list = options.dangerousClientHelloExtensions(list);
  // §4.2: the server answers the ClientHello it accepts. After a HelloRetryRequest that is the second one, so an
  // extension only the first carried (early_data) is no longer offered: a response to it is unsupported_extension.
  plan.offered.clear();
  for (const e of list) plan.offered.add(e.type);
  plan.offered.add(ExtensionType.pre_shared_key);

  let encoded: { raw: Uint8Array; truncatedLength: number };
  try {
    encoded = encodeHello(plan, list, psks);
  } catch (e) {
    // §4.2.2: the second ClientHello echoes the HelloRetryRequest's cookie<1..2^16-1>; one so long that our
    // extensions<8..2^16-1> cannot hold it with the rest is the server's fault, not an internal error.
    if (retry?.cookie && e instanceof RangeError) {
      throw new TlsError('HelloRetryRequestCookieTooLong', `the HelloRetryRequest's cookie of ${retry.cookie.length} bytes does not fit in the second ClientHello (RFC 8446 §4.2.2)`);
    }
    // The first ClientHello was checked without dangerousClientHelloExtensions (checkClientHelloFits): what that
    // hook added is the caller's too, and nothing has been sent yet.
    if (!retry && e instanceof RangeError) throw tooLongClientHello(options.dangerousClientHelloExtensions ? ', as dangerousClientHelloExtensions rewrote them' : '', e);
    throw e;
  }
  // §4.2.11.2: each binder covers the transcript up to and including the identities (the truncated
  // ClientHello), after message_hash(ClientHello1) || HelloRetryRequest when there was a retry.
  const truncated = encoded.raw.subarray(0, encoded.truncatedLength);
  const earlySecrets = psks.map((p) => earlySecretFor(crypto, p));
  const binders = psks.map((p, i) => {
    const h = retry ? retry.transcript.currentWith(truncated) : crypto.hash(p.hash).digest(truncated);
    return computeBinder(crypto, earlySecrets[i], p, h);
  });
  patchBinders(encoded.raw, encoded.truncatedLength, binders);
  return { raw: encoded.raw, truncatedLength: encoded.truncatedLength, earlySecrets };
}

/**
 * The ClientHello's extensions in the order we send them, all but pre_shared_key (which encodeClientHello puts
 * last, §4.2.11) and before dangerousClientHelloExtensions.
 */
function clientHelloExtensions(
  plan: ClientPlan,
  shares: readonly { readonly group: GroupName; readonly share: Uint8Array }[],
  flags: { earlyData: boolean },
  cookie: Uint8Array | undefined,
): Extension[] {
  const { options } = plan;
  const E = ExtensionType;
  const dhe = plan.modes.includes('psk_dhe_ke');
  const list: Extension[] = [];
  if (plan.serverName !== undefined) {
    const host = utf8(plan.serverName);
    list.push(ext(E.server_name, (w) => w.vec16((l) => l.u8(0).vec16(host))));
  }
  if (dhe) {
    list.push(ext(E.supported_groups, (w) => w.vec16((l) => plan.groups.forEach((g) => l.u16(groupId(g))))));
    list.push(ext(E.key_share, (w) => w.vec16((l) => shares.forEach((s) => l.u16(groupId(s.group)).vec16(s.share)))));
  }
  if (flags.earlyData) list.push(ext(E.early_data));
  list.push(ext(E.supported_versions, (w) => w.vec8((l) => l.u16(ProtocolVersion.TLSv1_3))));
  list.push(ext(E.psk_key_exchange_modes, (w) => w.vec8((l) => plan.modes.forEach((m) => l.u8(PskKeyExchangeMode[m])))));
  if (options.recordSizeLimit !== undefined) list.push(ext(E.record_size_limit, (w) => w.u16(options.recordSizeLimit!)));
  if (options.alpn && options.alpn.length > 0) list.push(alpnExtension(options.alpn));
  if (cookie) list.push(ext(E.cookie, (w) => w.vec16(cookie)));
  return list;
}

/** Encodes a ClientHello with `list` and placeholder binders for `psks` (filled in by patchBinders). */
function encodeHello(plan: ClientPlan, list: readonly Extension[], psks: readonly Psk[]): { raw: Uint8Array; truncatedLength: number } {
  return encodeClientHello({
    random: plan.random,
    sessionId: plan.sessionId,
    cipherSuites: plan.suites.map((s) => s.id),
    extensions: list,
    psks: {
      identities: psks.map((p) => ({ identity: p.identity, obfuscatedTicketAge: p.obfuscatedTicketAge ?? 0 })),
      binderLengths: psks.map((p) => plan.crypto.hash(p.hash).outputLength),
    },
  });
}

/**
 * §4.1.2: extensions<8..2^16-1>. What the options put in the ClientHello as it is (server_name up to
 * MAX_SERVER_NAME_BYTES with dangerouslyAllowLongServerName, ALPN names, PSK identities up to 65535 bytes each)
 * must also fit there together: checked when the connection is made, before anything is drawn for the key shares
 * or sent, by encoding the ClientHello with placeholder key shares of their exact lengths
 * (KexSpec.clientShareLength). Also a second ClientHello (§4.1.4) with the largest share a HelloRetryRequest may
 * ask for; its cookie is the server's choice (HelloRetryRequestCookieTooLong). When the extensions fit, so does
 * the message's uint24 length.
 */
function checkClientHelloFits(plan: ClientPlan, psks: readonly Psk[], shareGroups: readonly GroupName[], earlyData: boolean): void {
  if (clientHelloExtensionsBound(plan, psks) <= 0xffff) return; // (the usual case: no second encoding)
  const placeholders = (gs: readonly GroupName[]) => gs.map((group) => ({ group, share: new Uint8Array(groupSpec(group)!.clientShareLength) }));
  try {
    encodeHello(plan, clientHelloExtensions(plan, placeholders(shareGroups), { earlyData }, undefined), psks);
  } catch (e) {
    if (e instanceof RangeError) throw tooLongClientHello('', e);
    throw e;
  }
  if (!plan.modes.includes('psk_dhe_ke')) return;
  const others = plan.groups.filter((g) => !shareGroups.includes(g));
  if (others.length === 0) return;
  const largest = others.reduce((a, b) => (groupSpec(b)!.clientShareLength > groupSpec(a)!.clientShareLength ? b : a));
  try {
    encodeHello(plan, clientHelloExtensions(plan, placeholders([largest]), { earlyData: false }, undefined), psks);
  } catch (e) {
    if (e instanceof RangeError) throw tooLongClientHello(` in the second ClientHello, with the key share for ${largest} that a HelloRetryRequest may ask for (RFC 8446 §4.1.4)`, e);
    throw e;
  }
}

/**
 * More than the ClientHello's extensions can take up, first or second, with any key share of the offered groups:
 * each variable part counted with every length prefix and header it could have, the fixed ones generously.
 */
function clientHelloExtensionsBound(plan: ClientPlan, psks: readonly Psk[]): number {
  const FIXED = 256; // supported_versions, psk_key_exchange_modes, early_data, record_size_limit, headers
  let n = FIXED;
  if (plan.serverName !== undefined) n += 9 + 3 * plan.serverName.length; // a UTF-16 unit is at most 3 UTF-8 bytes
  for (const a of plan.options.alpn ?? []) n += 1 + 3 * a.length;
  n += 6 + 2 * plan.groups.length;
  for (const g of plan.groups) n += 4 + groupSpec(g)!.clientShareLength;
  n += 6 + 4; // pre_shared_key: header, identities and binders lengths
  for (const p of psks) n += 2 + p.identity.length + 4 + 1 + plan.crypto.hash(p.hash).outputLength;
  return n;
}

function tooLongClientHello(where: string, cause: RangeError): TypeError {
  return new TypeError(
    `client: serverName, ALPN names and PSK identities together make the ClientHello's extensions longer than 65535 bytes${where} (RFC 8446 §4.1.2)`,
    { cause },
  );
}

/** §4.1.3, §4.1.4: expects a ServerHello, or (after the first ClientHello only) a HelloRetryRequest. */
class ExpectServerHello implements HandshakeState {
  readonly name = 'ExpectServerHello';

  destroy(): void {
    for (const es of this.hello.earlySecrets) es.destroy();
    destroyShares(this.shares);
    wipePsks(this.psks);
  }

  constructor(
    private readonly plan: ClientPlan,
    private readonly psks: readonly Psk[],
    private readonly shares: readonly OfferedShare[],
    private readonly hello: BuiltHello,
    private readonly early: EarlyState | null,
    /** Set after a HelloRetryRequest: the transcript so far, the suite and group it named. */
    private readonly retried: { transcript: Transcript; suite: SuiteInfo; group?: number } | null,
  ) {}

  /**
   * §4.2.10: with our 0-RTT data in flight the server reads either the early keys (0-RTT accepted) or the handshake
   * keys, skipping what fails to decrypt (rejected): an alert under the early keys is skipped then, and the server
   * waits for a Finished that never comes. Before a ServerHello is accepted we have no handshake keys, so the alert
   * goes in plaintext, which a server reads in both cases while it waits for our flight (as ours does, and
   * OpenSSL's, which allows plaintext alerts once it has sent its ServerHello).
   */
  beforeAlert(io: HandshakeIO): void {
    if (this.early) io.clearWriteKeys();
  }

  handle(io: HandshakeIO, m: HandshakeMessageBytes): HandshakeState {
    if (m.type !== HandshakeType.server_hello) {
      throw new TlsError('UnexpectedMessage', `expected ServerHello, got ${nameOf(HandshakeType, m.type, 2)}`);
    }
    const sh = decodeServerHello(m.raw);
    // §4.1.4, §4.2.10: a HelloRetryRequest rejects our 0-RTT data; its server reads plaintext again (the second
    // ClientHello) and skips application_data records. Drop the early keys now, before any check below, so that an
    // alert we send is one it can read rather than one it skips while it waits.
    if (sh.isHelloRetryRequest && this.early) io.clearWriteKeys();
    // RFC 8446 Appendix D.5: a Hello with legacy_version 0x0300 (or lower) "MUST abort the handshake with a
    // "protocol_version" alert", before anything else is read from it.
    if (sh.legacyVersion <= 0x0300) {
      throw new TlsError('ServerHelloLegacyVersionSsl3', `ServerHello.legacy_version 0x${sh.legacyVersion.toString(16).padStart(4, '0')} is 0x0300 or lower (RFC 8446 Appendix D.5)`);
    }
    // §4.1.3 / §4.2.1: a TLS 1.3 server selects 0x0304 in supported_versions.
    if (sh.supportedVersion === undefined) {
      throw new TlsError('UnsupportedVersion', 'server did not negotiate TLS 1.3 (no supported_versions)');
    }
    if (sh.supportedVersion !== ProtocolVersion.TLSv1_3) {
      throw new TlsError('ServerSelectedUnofferedVersion', `server selected version 0x${sh.supportedVersion.toString(16)}, which was not offered (RFC 8446 §4.2.1)`);
    }
    if (sh.legacyVersion !== ProtocolVersion.TLSv1_2) {
      throw new TlsError('LegacyVersionNot0303', 'ServerHello.legacy_version must be 0x0303 (RFC 8446 §4.1.3)');
    }
    // §4.1.3: a legacy_session_id_echo that differs from what we sent is illegal_parameter.
    if (!equalConstantTime(sh.sessionIdEcho, this.plan.sessionId)) {
      throw new TlsError('SessionIdEchoMismatch', 'legacy_session_id_echo does not match (RFC 8446 §4.1.3)');
    }
    const suite = suiteById(sh.cipherSuite);
    if (!suite || !this.plan.suites.includes(suite)) {
      throw new TlsError('ServerSelectedUnofferedSuite', `server selected cipher suite 0x${sh.cipherSuite.toString(16)}`);
    }
    return sh.isHelloRetryRequest ? this.onHelloRetryRequest(io, sh, suite) : this.onServerHello(io, sh, suite);
  }

  private onHelloRetryRequest(io: HandshakeIO, hrr: ServerHello, suite: SuiteInfo): HandshakeState {
    const E = ExtensionType;
    // §4.1.4: a second HelloRetryRequest is unexpected_message.
    if (this.retried) throw new TlsError('SecondHelloRetryRequest', 'a second HelloRetryRequest (RFC 8446 §4.1.4)');
    hrr.extensions.requireSubsetOf(new Set([E.supported_versions, E.key_share, E.cookie]), 'HelloRetryRequest');
    let retryGroup: GroupName | undefined;
    if (hrr.selectedGroup !== undefined) {
      const name = groupName(hrr.selectedGroup);
      // §4.1.4, §4.2: a key_share in the HelloRetryRequest answers ours; without psk_dhe_ke we sent none.
      if (!this.plan.modes.includes('psk_dhe_ke')) {
        throw new TlsError('UnsolicitedKeyShare', 'HelloRetryRequest carries key_share, but we offered no (EC)DHE (RFC 8446 §4.1.4)');
      }
      // §4.2.8: the selected group must be one we support, and not one we already sent a share for.
      if (!name || !this.plan.groups.includes(name)) {
        throw new TlsError('HelloRetryRequestBadGroup', `HelloRetryRequest asks for group ${nameOf({}, hrr.selectedGroup)} we did not offer`);
      }
      if (this.shares.some((s) => s.group === name)) {
        throw new TlsError('HelloRetryRequestBadGroup', `HelloRetryRequest asks for ${name}, for which we already sent a key share`);
      }
      retryGroup = name;
    } else if (hrr.cookie === undefined) {
      // §4.1.4: an HRR that would not change the ClientHello is illegal_parameter.
      throw new TlsError('HelloRetryRequestUseless', 'HelloRetryRequest changes nothing in the ClientHello');
    }
    // §4.1.4: in the second ClientHello offer only PSKs whose hash is that of the selected suite (checked before
    // the new key share is made, so that this failure leaves no private key behind).
    const psks = this.psks.filter((p) => p.hash === suite.hash);
    if (psks.length === 0) throw new TlsError('NoCommonCipherSuite', `no offered PSK is usable with ${suite.name}`);
    let newShares: readonly OfferedShare[] | Promise<OfferedShare[]> = this.shares;
    if (retryGroup) {
      destroyShares(this.shares);
      newShares = startShares(this.plan.crypto, [retryGroup]);
    }
    for (const es of this.hello.earlySecrets) es.destroy();
    wipePsks(this.psks.filter((p) => !psks.includes(p))); // not offered again
    if (!(newShares instanceof Promise)) return this.sendSecondClientHello(io, hrr, suite, psks, newShares);
    return new AwaitKeyAgreement(newShares, {
      name: 'AwaitKeyShares',
      step: 'start',
      groups: [retryGroup!],
      next: (io2, ready) => this.sendSecondClientHello(io2, hrr, suite, psks, ready),
      discard: destroyShares,
      release: () => wipePsks(psks),
    });
  }

  /** §4.1.2: the second ClientHello, with the new key share (if the HelloRetryRequest asked for one). */
  private sendSecondClientHello(io: HandshakeIO, hrr: ServerHello, suite: SuiteInfo, psks: readonly Psk[], newShares: readonly OfferedShare[]): HandshakeState {
    const transcript = new Transcript(this.plan.crypto, suite.hash).add(this.hello.raw).replaceWithMessageHash().add(hrr.raw);
    let hello: BuiltHello;
    try {
      hello = buildClientHello(this.plan, psks, newShares, { earlyData: false }, { transcript, cookie: hrr.cookie });
    } catch (e) {
      // The new key share is not yet held by any state: wipe it here (this.shares are wiped by destroy()).
      if (newShares !== this.shares) destroyShares(newShares);
      throw e;
    }
    if (this.early) io.emit({ type: 'early-data', status: 'rejected' });
    // §D.4: the dummy ChangeCipherSpec goes before the second flight if it was not sent yet.
    if ((this.plan.options.middleboxCompatibility ?? true) && !this.plan.ccsSent) {
      io.sendChangeCipherSpec();
      this.plan.ccsSent = true;
    }
    if (this.early) io.clearWriteKeys(); // the second ClientHello goes in plaintext
    io.sendHandshake(hello.raw);
    transcript.add(hello.raw);
    return new ExpectServerHello(this.plan, psks, newShares, hello, this.early, {
      transcript,
      suite,
      group: hrr.selectedGroup,
    });
  }

  private onServerHello(io: HandshakeIO, sh: ServerHello, suite: SuiteInfo): HandshakeState {
    const E = ExtensionType;
    const plan = this.plan;
    // §4.2: a ServerHello may carry only responses to what we offered.
    sh.extensions.requireSubsetOf(new Set([E.supported_versions, E.key_share, E.pre_shared_key]), 'ServerHello');
    if (this.retried && suite !== this.retried.suite) {
      // §4.1.4: the ServerHello must select the suite the HelloRetryRequest named.
      throw new TlsError('ServerHelloSuiteDiffersFromRetry', 'ServerHello selects a different cipher suite than the HelloRetryRequest (RFC 8446 §4.1.4)');
    }
    // This client authenticates with PSKs only: a server that did not select one cannot be authenticated.
    if (sh.selectedIdentity === undefined) {
      throw new TlsError('PskNotSelected', 'server did not select a PSK (certificate authentication is not supported)');
    }
    const index = sh.selectedIdentity;
    if (index >= this.psks.length) {
      throw new TlsError('ServerSelectedUnofferedPsk', `server selected PSK ${index} of ${this.psks.length} (RFC 8446 §4.2.11)`);
    }
    const psk = this.psks[index];
    if (psk.hash !== suite.hash) {
      throw new TlsError('PskHashMismatchesSuite', `server selected a ${psk.hash} PSK with ${suite.name} (RFC 8446 §4.2.11)`);
    }

    let kex: KexMode;
    let groupNameSel: GroupName | null = null;
    let shared: Uint8Array | null = null;
    if (sh.keyShare) {
      if (!plan.modes.includes('psk_dhe_ke')) throw new TlsError('UnsolicitedKeyShare', 'key_share in ServerHello but psk_dhe_ke was not offered (RFC 8446 §4.2)');
      const name = groupName(sh.keyShare.group);
      const share = name ? this.shares.find((s) => s.group === name) : undefined;
      if (!share || (this.retried?.group !== undefined && sh.keyShare.group !== this.retried.group)) {
        throw new TlsError('ServerSelectedUnofferedGroup', `server key share for group 0x${sh.keyShare.group.toString(16)}, which we did not send`);
      }
      if (share.asyncGroup) {
        const serverShare = sh.keyShare.keyExchange;
        try {
          // §4.2.8.2: what can be checked without the private key is checked before the pause.
          share.asyncGroup.checkPeerShare('server', serverShare);
        } catch (e) {
          destroyShares(this.shares);
          throw e;
        }
        return new AwaitKeyAgreement(share.key.complete(serverShare), {
          name: 'AwaitSharedSecret',
          step: 'complete',
          groups: [share.group],
          next: (io2, secret) => this.afterKeyExchange(io2, sh, suite, index, 'psk_dhe_ke', share.group, secret),
          discard: (secret) => wipe(secret),
          release: () => this.destroy(),
          // Still no handshake keys: an alert (the key agreement failed or timed out) goes as after a refused ServerHello.
          beforeAlert: (io2) => this.beforeAlert(io2),
        });
      }
      try {
        shared = share.key.complete(sh.keyShare.keyExchange);
      } catch (e) {
        destroyShares(this.shares);
        throw e;
      }
      kex = 'psk_dhe_ke';
      groupNameSel = share.group;
    } else {
      // §4.2.11: without a key_share the server chose psk_ke, which must have been offered (illegal_parameter).
      if (!plan.modes.includes('psk_ke')) throw new TlsError('ServerKeyShareMissing', 'ServerHello has no key_share but psk_ke was not offered (RFC 8446 §4.2.11)');
      kex = 'psk_ke';
    }
    return this.afterKeyExchange(io, sh, suite, index, kex, groupNameSel, shared);
  }

  /** §7.1: the handshake keys from the PSK and the (EC)DHE secret (null for psk_ke); expects EncryptedExtensions. */
  private afterKeyExchange(
    io: HandshakeIO,
    sh: ServerHello,
    suite: SuiteInfo,
    index: number,
    kex: KexMode,
    groupNameSel: GroupName | null,
    shared: Uint8Array | null,
  ): HandshakeState {
    const plan = this.plan;
    const psk = this.psks[index];
    destroyShares(this.shares);

    const transcript = this.retried ? this.retried.transcript : new Transcript(plan.crypto, suite.hash).add(this.hello.raw);
    transcript.add(sh.raw);
    const es = this.hello.earlySecrets[index];
    this.hello.earlySecrets.forEach((other, i) => i !== index && other.destroy());
    wipePsks(this.psks); // our copies: the Early Secret holds what the handshake still needs of the PSK
    const { hs, chts, shts } = deriveHandshakeTraffic(io, es, shared, transcript, plan.random);
    io.setReadKeys(suite, shts);

    // 0-RTT survives only if the server picked the first PSK with the suite we used for it (§4.2.10).
    const earlyPossible = this.early !== null && this.retried === null && index === 0 && this.early.suite === suite;
    // From here on the server reads our handshake keys — unless 0-RTT may still be accepted (then it reads the
    // early keys until EndOfEarlyData) — so anything we send, an alert included, uses them. When 0-RTT cannot
    // be accepted (another PSK or suite), the server already skips what it cannot decrypt under its handshake
    // keys: an alert under the early keys would be skipped too, and the server left waiting.
    const earlyPending = earlyPossible;
    if (!earlyPending) io.setWriteKeys(suite, chts);
    return new ExpectEncryptedExtensions(plan, {
      suite,
      psk,
      index,
      kex,
      group: groupNameSel,
      transcript,
      hs,
      chts,
      shts,
      early: this.early,
      earlyPossible,
      helloRetry: this.retried !== null,
      handshakeWriteKeys: !earlyPending,
    });
  }
}

interface NegotiatedClient {
  readonly suite: SuiteInfo;
  readonly psk: Psk;
  readonly index: number;
  readonly kex: KexMode;
  readonly group: GroupName | null;
  readonly transcript: Transcript;
  readonly hs: HandshakeSecret;
  readonly chts: Uint8Array;
  readonly shts: Uint8Array;
  readonly early: EarlyState | null;
  readonly earlyPossible: boolean;
  readonly helloRetry: boolean;
  /** Whether our write keys are already the handshake keys. */
  handshakeWriteKeys: boolean;
}

/** A key share we sent: made synchronously, or by an asynchronous group (whose checks run before the pause). */
type OfferedShare =
  | { readonly group: GroupName; readonly share: Uint8Array; readonly key: ClientKeyShare; readonly asyncGroup?: undefined }
  | { readonly group: GroupName; readonly share: Uint8Array; readonly key: AsyncClientKeyShare; readonly asyncGroup: AsyncKeyExchangeGroup };

/**
 * §4.2.8: a key share per group, each from fresh randomness drawn in the groups' order (whichever path a group
 * takes), wiped once the group has taken its private key from it. A promise when any group is asynchronous.
 */
function startShares(crypto: CryptoProvider, groups: readonly GroupName[]): OfferedShare[] | Promise<OfferedShare[]> {
  const shares: (OfferedShare | Promise<OfferedShare>)[] = [];
  try {
    for (const g of groups) {
      const asyncGroup = asyncGroupOf(crypto, g);
      const group = crypto.group(g)!;
      const randomness = crypto.random(group.randomLength);
      try {
        if (asyncGroup) {
          shares.push(asyncGroup.start(randomness).then((key) => ({ group: g, share: key.share, key, asyncGroup })));
        } else {
          const key = group.start(randomness);
          shares.push({ group: g, share: key.share, key });
        }
      } finally {
        wipe(randomness);
      }
    }
  } catch (e) {
    // A later share could not be made (the random source failed): the ones made already hold private keys.
    for (const s of shares) {
      if (s instanceof Promise) s.then((x) => x.key.destroy(), () => {});
      else s.key.destroy();
    }
    throw e;
  }
  if (!shares.some((s) => s instanceof Promise)) return shares as OfferedShare[];
  return allOrNothing(shares.map((s) => Promise.resolve(s)), (s) => s.key.destroy());
}

function destroyShares(shares: readonly OfferedShare[]): void {
  for (const s of shares) s.key.destroy();
}

function destroyNegotiated(n: NegotiatedClient): void {
  n.hs.destroy();
  wipe(n.chts, n.shts);
}

/** §4.3.1: expects EncryptedExtensions. */
class ExpectEncryptedExtensions implements HandshakeState {
  readonly name = 'ExpectEncryptedExtensions';
  destroy(): void {
    destroyNegotiated(this.n);
  }
  constructor(
    private readonly plan: ClientPlan,
    private readonly n: NegotiatedClient,
  ) {}

  /** Whether the EncryptedExtensions were decoded (then handle chose the write keys for an alert itself). */
  private decoded = false;

  /**
   * A failure before the EncryptedExtensions could be read (their record fails to decrypt, §5.2; they do not decode):
   * no telling whether 0-RTT was accepted. A server that rejected it reads the handshake keys and skips what fails
   * to decrypt (§4.2.10): our alert under the early keys would be skipped and leave it waiting. Under the handshake
   * keys it is read, or (by a server that accepted 0-RTT) fails to decrypt, which is fatal too: the handshake ends
   * on both sides either way.
   */
  beforeAlert(io: HandshakeIO): void {
    if (!this.decoded) this.useHandshakeWriteKeys(io);
  }

  /** Client with 0-RTT pending: from now on, send under the handshake keys (not the early ones). */
  private useHandshakeWriteKeys(io: HandshakeIO): void {
    if (this.n.early && !this.n.handshakeWriteKeys) {
      io.setWriteKeys(this.n.suite, this.n.chts);
      this.n.handshakeWriteKeys = true;
    }
  }

  handle(io: HandshakeIO, m: HandshakeMessageBytes): HandshakeState {
    // (No EncryptedExtensions we can read: beforeAlert picks the handshake keys for the alert.)
    if (m.type !== HandshakeType.encrypted_extensions) {
      throw new TlsError('UnexpectedMessage', `expected EncryptedExtensions, got ${nameOf(HandshakeType, m.type, 2)}`);
    }
    const ee: EncryptedExtensions = decodeEncryptedExtensions(m.body);
    this.decoded = true;
    // The server skips our 0-RTT records and reads the handshake keys (§4.2.10): switch now, before any
    // check below, so that an alert we send is one it can read.
    if (!ee.earlyDataAccepted) this.useHandshakeWriteKeys(io);
    // §4.2: only answers to what we offered; §4.2.7's supported_groups too (a psk_ke-only ClientHello has none), as
    // only the HelloRetryRequest's cookie may come unasked.
    ee.extensions.requireSubsetOf(this.plan.offered, 'EncryptedExtensions');
    if (ee.alpn !== undefined && !(this.plan.options.alpn ?? []).includes(ee.alpn)) {
      throw new TlsError('ServerSelectedUnofferedAlpn', `server selected ALPN "${clip(ee.alpn)}", which was not offered (RFC 7301 §3.2)`);
    }
    if (ee.earlyDataAccepted && !this.n.earlyPossible) {
      // §4.2.10: accepting early data with another PSK or suite than the client used is illegal_parameter.
      throw new TlsError('EarlyDataAcceptedWrongPsk', 'server accepted 0-RTT data it cannot have decrypted (RFC 8446 §4.2.10)');
    }
    if (ee.earlyDataAccepted && ee.alpn !== this.n.psk.earlyDataAlpn) {
      // §4.2.10: 0-RTT is accepted only under the ALPN protocol provisioned with the PSK.
      throw new TlsError('EarlyDataAcceptedWrongAlpn', `server accepted 0-RTT data under ALPN "${ee.alpn === undefined ? '(none)' : clip(ee.alpn)}", not the PSK's (RFC 8446 §4.2.10)`);
    }
    if (ee.recordSizeLimit !== undefined) io.setPeerRecordSizeLimit(ee.recordSizeLimit, this.plan.options.recordSizeLimit);
    this.n.transcript.add(m.raw);
    let earlyData: EarlyDataStatus = 'none';
    if (this.n.early) {
      earlyData = ee.earlyDataAccepted ? 'accepted' : 'rejected';
      // After a HelloRetryRequest the rejection was already reported.
      if (!this.n.helloRetry) io.emit({ type: 'early-data', status: earlyData });
    }
    return new ExpectServerFinished(this.plan, this.n, earlyData, ee.alpn, ee.serverNameAcknowledged);
  }
}

/** §4.4.4: expects the server's Finished, then sends [EndOfEarlyData] and our Finished. */
class ExpectServerFinished implements HandshakeState {
  readonly name = 'ExpectServerFinished';
  destroy(): void {
    destroyNegotiated(this.n);
  }
  constructor(
    private readonly plan: ClientPlan,
    private readonly n: NegotiatedClient,
    private readonly earlyData: EarlyDataStatus,
    private readonly alpn: string | undefined,
    private readonly serverNameAcknowledged: boolean,
  ) {}

  handle(io: HandshakeIO, m: HandshakeMessageBytes): HandshakeState {
    if (m.type !== HandshakeType.finished) {
      // Certificate, CertificateRequest: this client authenticates with PSKs only (§4.4).
      throw new TlsError('UnexpectedMessage', `expected Finished, got ${nameOf(HandshakeType, m.type, 2)}`);
    }
    const { crypto } = this.plan;
    const n = this.n;
    const hash = n.suite.hash;
    verifyFinished(crypto, hash, n.shts, n.transcript.current(), decodeFinished(m.body, n.suite.hashLength), 'server');
    n.transcript.add(m.raw);

    const { cats, sats, ems } = deriveApplicationTraffic(io, n.hs, n.transcript, this.plan.random);
    io.setReadKeys(n.suite, sats);

    if (this.earlyData === 'accepted') {
      // §4.5: EndOfEarlyData, still under the early traffic keys.
      const eoed = encodeEndOfEarlyData();
      io.sendHandshake(eoed);
      n.transcript.add(eoed);
    }
    if ((this.plan.options.middleboxCompatibility ?? true) && !this.plan.ccsSent) {
      io.sendChangeCipherSpec();
      this.plan.ccsSent = true;
    }
    if (!n.handshakeWriteKeys) io.setWriteKeys(n.suite, n.chts);
    const finished = encodeFinished(finishedVerifyData(crypto, hash, n.chts, n.transcript.current()));
    io.sendHandshake(finished);
    n.transcript.add(finished);
    io.setWriteKeys(n.suite, cats);
    wipe(n.chts, n.shts);

    // §4.2.10: never resend automatically unless asked to, and then only under the same ALPN protocol.
    const resend = this.earlyData === 'rejected' && n.early !== null && this.plan.options.resendRejectedEarlyData === true && this.alpn === n.psk.earlyDataAlpn;
    io.complete(
      handshakeInfo({
        ...n,
        earlyData: this.earlyData,
        ...(this.earlyData === 'rejected' ? { earlyDataResent: resend } : {}),
        alpn: this.alpn,
        serverName: this.serverNameAcknowledged ? this.plan.serverName : undefined,
      }),
      { suite: n.suite, clientSecret: cats, serverSecret: sats, exporterMasterSecret: ems },
      resend ? n.early!.data : undefined,
    );
    return new ExpectPostHandshake(
      true,
      (io2, requested) => io2.keyUpdateReceived(requested),
      (body) => void decodeNewSessionTicket(body), // parsed for validity, then ignored: no resumption
    );
  }
}
