/**
 * The inputs of RFC 8448 §4 (the resumed 0-RTT handshake) for replaying it through the real state machines
 * (test/rfc8448-handshake.test.ts, test/rfc8448-offload.test.ts): the RFC's messages and randomness, the §3
 * resumption PSK, a scripted random source, and NSS's ClientHello extension list.
 */
import { ExtensionType } from '../../lib/codec/enums.js';
import type { CryptoProvider, RandomSource } from '../../lib/crypto/provider.js';
import { resumptionPsk } from '../../lib/keyschedule/schedule.js';
import type { Extension } from '../../lib/messages/extensions.js';
import { decodeClientHello } from '../../lib/messages/hello.js';
import { decodeEncryptedExtensions, decodeNewSessionTicket } from '../../lib/messages/post-hello.js';
import { step, value } from '../../vectors/rfc8448.js';

export const chMessage = value(step('4', 'client', 'send handshake record', 0), 'payload');
export const clientHello = decodeClientHello(chMessage);
export const serverHello = value(step('4', 'server', 'construct a ServerHello handshake message'), 'ServerHello');
export const clientRandom = clientHello.random;
export const serverRandom = serverHello.subarray(6, 38);
export const clientPrivate = value(step('4', 'client', 'create an ephemeral x25519 key pair'), 'private key');
export const serverPrivate = value(step('4', 'server', 'create an ephemeral x25519 key pair'), 'private key');
export const rfcEncryptedExtensions = decodeEncryptedExtensions(
  value(step('4', 'server', 'construct an EncryptedExtensions handshake message'), 'EncryptedExtensions').subarray(4),
);
export const clientAppStep = step('4', 'client', 'send application_data record', 1);
export const serverAppStep = step('4', 'server', 'send application_data record', 0);
export const clientAlertRecord = value(step('4', 'client', 'send alert record'), 'complete record');
export const serverAlertRecord = value(step('4', 'server', 'send alert record'), 'complete record');

/** §3: the ticket and the PSK it names, recomputed from §3's resumption_master_secret and ticket_nonce. */
export function resumptionFromSection3(crypto: CryptoProvider): { identity: Uint8Array; secret: Uint8Array } {
  const nst = decodeNewSessionTicket(value(step('3', 'server', 'construct a NewSessionTicket handshake message'), 'NewSessionTicket').subarray(4));
  const rms = value(step('3', 'client', 'derive secret "tls13 res master"'), 'expanded');
  return { identity: nst.ticket.slice(), secret: resumptionPsk(crypto, 'SHA-256', rms, nst.nonce) };
}

/** A random source that hands out exactly these chunks, in order, and fails loudly on any other request. */
export function scripted(what: string, chunks: Uint8Array[]): RandomSource & { remaining(): number } {
  const queue = chunks.map((c) => c.slice());
  const source = (n: number): Uint8Array => {
    const next = queue.shift();
    if (!next) throw new Error(`${what}: unexpected request for ${n} random bytes (script exhausted)`);
    if (next.length !== n) throw new Error(`${what}: asked for ${n} random bytes, the script has ${next.length}`);
    return next;
  };
  return Object.assign(source, { remaining: () => queue.length });
}

/**
 * The §4 ClientHello extension list, in NSS's order: ours where we produce the extension (server_name,
 * key_share, early_data, supported_versions, psk_key_exchange_modes, record_size_limit), the RFC's bytes for
 * what NSS sends and we do not. pre_shared_key is not in the list: the client appends it last (§4.2.11).
 */
export function nssClientHelloExtensions(ours: Extension[]): Extension[] {
  const OURS_KEPT = new Set<number>([
    ExtensionType.server_name,
    ExtensionType.key_share,
    ExtensionType.early_data,
    ExtensionType.supported_versions,
    ExtensionType.psk_key_exchange_modes,
    ExtensionType.record_size_limit,
  ]);
  return clientHello.extensions.list
    .filter((e) => e.type !== ExtensionType.pre_shared_key)
    .map((rfc) => {
      if (!OURS_KEPT.has(rfc.type)) return rfc; // renegotiation_info, supported_groups, signature_algorithms, padding
      const mine = ours.find((e) => e.type === rfc.type);
      if (!mine) throw new Error(`the client did not produce extension ${rfc.type}`);
      return mine;
    });
}
