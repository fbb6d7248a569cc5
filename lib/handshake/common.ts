/**
 * Pieces both handshake sides share: PSK binders (RFC 8446 §4.2.11.2), extension builders, and the
 * post-handshake state.
 */
import { ExtensionType, HandshakeType, NamedGroup, nameOf, ProtocolVersion } from '../codec/enums.js';
import { copyBytes, equalConstantTime, utf8, wipe } from '../codec/bytes.js';
import { GROUP_SPECS } from '../crypto/groups.js';
import type { CryptoProvider, GroupName, HashName } from '../crypto/provider.js';
import { TlsError } from '../errors.js';
import { EarlySecret, finishedVerifyData, type HandshakeSecret } from '../keyschedule/schedule.js';
import type { Transcript } from '../keyschedule/transcript.js';
import { ext, type Extension } from '../messages/extensions.js';
import { decodeKeyUpdate as decodeKeyUpdateBody } from '../messages/post-hello.js';
import type { Psk } from '../psk/types.js';
import type { HandshakeMessageBytes } from '../record/handshake-joiner.js';
import type { HandshakeIO, HandshakeState } from './io.js';
import type { EarlyDataRejection, EarlyDataStatus, HandshakeInfo } from '../config/events.js';
import { DEFAULT_SUITES, MAX_ALPN_NAME_BYTES, type CommonOptions, type KexMode } from '../config/options.js';
import { SUITES, type SuiteInfo } from '../suites.js';
import { identityText } from '../psk/identity-text.js';

/** binder = HMAC(finished_key(binder_key), Transcript-Hash(Truncate(ClientHello)) (§4.2.11.2). */
export function computeBinder(crypto: CryptoProvider, early: EarlySecret, psk: Psk, truncatedHash: Uint8Array): Uint8Array {
  const binderKey = early.binderKey(psk.binderKind ?? 'external');
  const binder = finishedVerifyData(crypto, early.hash, binderKey, truncatedHash);
  wipe(binderKey);
  return binder;
}

/** Verifies a received binder in constant time; throws IncorrectBinder (decrypt_error) on mismatch. */
export function verifyBinder(
  crypto: CryptoProvider,
  early: EarlySecret,
  psk: Psk,
  truncatedHash: Uint8Array,
  received: Uint8Array,
): void {
  const expected = computeBinder(crypto, early, psk, truncatedHash);
  // A binder of another length was made with another hash: the two sides bound the key to different hashes (a
  // --psk-hash on one side only), not a wrong key, which the message said (found in a README walkthrough).
  const hashes: Record<number, string> = { 32: 'SHA-256', 48: 'SHA-384' };
  const detail =
    received.length !== expected.length && hashes[received.length]
      ? `PSK binder does not verify: the client bound the key to ${hashes[received.length]}, this side to ${psk.hash} (the two sides must agree on the PSK's hash) (RFC 8446 §4.2.11.2)`
      : 'PSK binder does not verify (wrong key?) (RFC 8446 §4.2.11.2)';
  // What the server's user can check (TlsError.hint); the detail above already ends the message with it in short.
  verifyMac(expected, received, 'IncorrectBinder', detail, 'the client holds another key for this identity, or binds it to another hash (RFC 8446 §4.2.11.2)');
}

/**
 * §4.4.4: verifies the peer's Finished, verify_data = HMAC(finished_key(baseKey), transcriptHash), in constant
 * time; throws IncorrectFinished (decrypt_error) on mismatch. `baseKey` is the peer's handshake traffic secret.
 */
export function verifyFinished(
  crypto: CryptoProvider,
  hash: HashName,
  baseKey: Uint8Array,
  transcriptHash: Uint8Array,
  received: Uint8Array,
  peer: 'client' | 'server',
): void {
  const expected = finishedVerifyData(crypto, hash, baseKey, transcriptHash);
  verifyMac(expected, received, 'IncorrectFinished', `${peer} Finished does not verify (RFC 8446 §4.4.4)`);
}

/** Compares a MAC we computed (wiped here) with the received one in constant time. */
function verifyMac(expected: Uint8Array, received: Uint8Array, reason: 'IncorrectBinder' | 'IncorrectFinished', detail: string, hint?: string): void {
  const ok = equalConstantTime(expected, received);
  wipe(expected);
  if (!ok) throw new TlsError(reason, detail, hint ? { hint } : undefined);
}

/** Starts the key schedule of `psk` on a private copy of its secret (the caller's buffer is left alone). */
export function earlySecretFor(crypto: CryptoProvider, psk: Psk): EarlySecret {
  const secret = copyBytes(psk.secret);
  const es = EarlySecret.fromPsk(crypto, psk.hash, secret);
  wipe(secret);
  return es;
}

/**
 * Copies of `psks` with secrets of their own, for a handshake that needs them after it has given control back
 * (a HelloRetryRequest pending): Psk.secret is the caller's, who may wipe it at any time (a lease released), and
 * a handshake that read it again later would use a zero key — which anyone can compute a binder with. Wiped
 * with {@link wipePsks}.
 */
export function ownPsks(psks: readonly Psk[]): Psk[] {
  return psks.map((p) => ({ ...p, secret: copyBytes(p.secret) }));
}

/** Wipes the secrets of PSKs made by {@link ownPsks}. */
export function wipePsks(psks: Iterable<Psk>): void {
  for (const p of psks) wipe(p.secret);
}

export function groupId(name: GroupName): number {
  return NamedGroup[name];
}

const GROUP_BY_ID: ReadonlyMap<number, GroupName> = new Map(
  (Object.keys(GROUP_SPECS) as GroupName[]).map((g) => [NamedGroup[g], g]),
);

/** The group a NamedGroup value names, when it is one this stack can implement. */
export function groupName(id: number): GroupName | undefined {
  return GROUP_BY_ID.get(id);
}

export const supportedVersionsServer = (): Extension =>
  ext(ExtensionType.supported_versions, (w) => w.u16(ProtocolVersion.TLSv1_3));

export function alpnExtension(names: readonly string[]): Extension {
  return ext(ExtensionType.application_layer_protocol_negotiation, (w) =>
    w.vec16((l) => {
      for (const n of names) l.vec8(utf8(n));
    }),
  );
}

/**
 * After the handshake: KeyUpdate for both sides (§4.6.3), NewSessionTicket tolerated and ignored by a client
 * that does not resume (§4.6.1), anything else is unexpected_message.
 */
export class ExpectPostHandshake implements HandshakeState {
  readonly name = 'ExpectPostHandshake';
  constructor(
    private readonly isClient: boolean,
    private readonly onKeyUpdate: (io: HandshakeIO, requestUpdate: boolean) => void,
    private readonly onTicket: (body: Uint8Array) => void,
  ) {}

  handle(io: HandshakeIO, m: HandshakeMessageBytes): HandshakeState {
    if (m.type === HandshakeType.key_update) {
      this.onKeyUpdate(io, decodeKeyUpdateBody(m.body));
      return this;
    }
    if (m.type === HandshakeType.new_session_ticket && this.isClient) {
      this.onTicket(m.body);
      return this;
    }
    throw new TlsError('UnexpectedMessage', `${nameOf(HandshakeType, m.type, 2)} after the handshake`);
  }
}

/** The summary both sides report when the handshake completes. */
export function handshakeInfo(n: {
  readonly suite: SuiteInfo;
  readonly kex: KexMode;
  readonly group: GroupName | null;
  readonly psk: Psk;
  readonly index: number;
  readonly earlyData: EarlyDataStatus;
  readonly earlyDataRejection?: EarlyDataRejection;
  readonly earlyDataResent?: boolean;
  readonly alpn?: string;
  readonly serverName?: string;
  readonly helloRetry: boolean;
}): HandshakeInfo {
  return {
    version: 'TLSv1.3',
    suite: n.suite.name,
    kex: n.kex,
    group: n.group,
    identity: identityText(n.psk.identity),
    identityBytes: n.psk.identity,
    identityIndex: n.index,
    pskLabel: n.psk.label,
    earlyData: n.earlyData,
    ...(n.earlyDataRejection !== undefined ? { earlyDataRejection: n.earlyDataRejection } : {}),
    ...(n.earlyDataResent !== undefined ? { earlyDataResent: n.earlyDataResent } : {}),
    alpn: n.alpn,
    serverName: n.serverName,
    helloRetry: n.helloRetry,
  };
}

/** RFC 8449 §4: a record_size_limit is at least 64 and at most 2^14 + 1 in TLS 1.3. */
export function checkRecordSizeLimit(side: 'client' | 'server', limit: number | undefined): void {
  if (limit !== undefined && !(Number.isInteger(limit) && limit >= 64 && limit <= 16385)) {
    throw new TypeError(`${side}: recordSizeLimit must be an integer from 64 to 16385 (RFC 8449 §4), got ${limit}`);
  }
}

/**
 * §7.1, early stage: client_early_traffic_secret over the ClientHello (returned), and the early exporter
 * master secret (only logged: 0-RTT exporters are not offered).
 */
export function deriveEarlyTraffic(io: HandshakeIO, early: EarlySecret, clientHelloHash: Uint8Array, clientRandom: Uint8Array): Uint8Array {
  const secret = early.clientEarlyTrafficSecret(clientHelloHash);
  io.logSecret('CLIENT_EARLY_TRAFFIC_SECRET', clientRandom, secret);
  const exporter = early.earlyExporterMasterSecret(clientHelloHash);
  io.logSecret('EARLY_EXPORTER_SECRET', clientRandom, exporter);
  wipe(exporter);
  return secret;
}

/** §7.1: Handshake Secret from the early secret and the (EC)DHE secret (wiped), and both handshake traffic secrets. */
export function deriveHandshakeTraffic(
  io: HandshakeIO,
  early: EarlySecret,
  shared: Uint8Array | null,
  transcript: Transcript,
  clientRandom: Uint8Array,
): { hs: HandshakeSecret; chts: Uint8Array; shts: Uint8Array } {
  const hs = early.intoHandshake(shared);
  wipe(shared);
  const helloHash = transcript.current();
  const chts = hs.clientHandshakeTrafficSecret(helloHash);
  const shts = hs.serverHandshakeTrafficSecret(helloHash);
  io.logSecret('CLIENT_HANDSHAKE_TRAFFIC_SECRET', clientRandom, chts);
  io.logSecret('SERVER_HANDSHAKE_TRAFFIC_SECRET', clientRandom, shts);
  return { hs, chts, shts };
}

/**
 * §7.1: Master Secret (consumed here) and what the connection keeps from it: both application traffic secrets and
 * the exporter master secret, over ClientHello..server Finished. No resumption master secret: this stack does
 * not resume.
 */
export function deriveApplicationTraffic(
  io: HandshakeIO,
  hs: HandshakeSecret,
  transcript: Transcript,
  clientRandom: Uint8Array,
): { cats: Uint8Array; sats: Uint8Array; ems: Uint8Array } {
  const master = hs.intoMaster();
  const handshakeHash = transcript.current();
  const cats = master.clientApplicationTrafficSecret(handshakeHash);
  const sats = master.serverApplicationTrafficSecret(handshakeHash);
  const ems = master.exporterMasterSecret(handshakeHash);
  master.destroy();
  io.logSecret('CLIENT_TRAFFIC_SECRET_0', clientRandom, cats);
  io.logSecret('SERVER_TRAFFIC_SECRET_0', clientRandom, sats);
  io.logSecret('EXPORTER_SECRET', clientRandom, ems);
  return { cats, sats, ems };
}

/** The options both sides validate the same way, with their defaults applied. */
export function resolveCommonOptions(
  side: 'client' | 'server',
  crypto: CryptoProvider,
  options: CommonOptions,
  defaultModes: readonly KexMode[],
  defaultGroups: readonly GroupName[],
): { suites: SuiteInfo[]; modes: readonly KexMode[]; groups: readonly GroupName[] } {
  // (Own properties only: 'constructor' or 'toString' are no suites.)
  const names = options.suites ?? DEFAULT_SUITES;
  if (names.length === 0 || !names.every((n) => Object.hasOwn(SUITES, n))) throw new TypeError(`${side}: give at least one known cipher suite`);
  const suites = names.map((n) => SUITES[n]);
  const modes = options.kexModes ?? defaultModes;
  if (modes.length === 0) throw new TypeError(`${side}: at least one key-exchange mode is required`);
  // §4.2.9: the modes are psk_ke and psk_dhe_ke; anything else would go out as a mode the peer cannot know.
  for (const m of modes) if (m !== 'psk_ke' && m !== 'psk_dhe_ke') throw new TypeError(`${side}: unknown key-exchange mode ${String(m)} (RFC 8446 §4.2.9: psk_ke, psk_dhe_ke)`);
  // RFC 7301 §3.1: ProtocolName opaque<1..2^8-1>, "Empty strings MUST NOT be included".
  for (const p of options.alpn ?? []) {
    const n = typeof p === 'string' ? utf8(p).length : 0;
    if (n < 1 || n > MAX_ALPN_NAME_BYTES) throw new TypeError(`${side}: an ALPN protocol name must be 1 to ${MAX_ALPN_NAME_BYTES} bytes (RFC 7301 §3.1), got ${n}`);
  }
  const groups = options.groups ?? defaultGroups;
  for (const g of groups) if (!crypto.group(g)) throw new TypeError(`${side}: group ${g} is not supported by the ${crypto.name} provider`);
  // §4.2.7, §4.2.8: psk_dhe_ke needs a group; an empty supported_groups would only fail at the peer (decode_error).
  if (modes.includes('psk_dhe_ke') && groups.length === 0) throw new TypeError(`${side}: psk_dhe_ke needs at least one group`);
  // Each at most once: §4.2.8, "Clients MUST NOT offer multiple KeyShareEntry values for the same group" (the
  // shares follow the groups); a suite or mode twice says nothing more and lengthens the ClientHello.
  for (const [what, list] of [['cipher suite', names], ['key-exchange mode', modes], ['group', groups]] as [string, readonly string[]][]) {
    const twice = list.find((x, i) => list.indexOf(x) !== i);
    if (twice !== undefined) throw new TypeError(`${side}: ${what} ${twice} is listed twice`);
  }
  checkRecordSizeLimit(side, options.recordSizeLimit);
  return { suites, modes, groups };
}
