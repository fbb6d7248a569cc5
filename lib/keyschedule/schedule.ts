/**
 * The TLS 1.3 key schedule (RFC 8446 §7.1) as a chain of types, so that a secret cannot be used out of order:
 *
 * ```
 *   EarlySecret.fromPsk(psk)          binder keys, client_early_traffic_secret, early_exporter_master_secret
 *     .intoHandshake(ecdhe | null)    HandshakeSecret: {client,server}_handshake_traffic_secret
 *       .intoMaster()                 MasterSecret: application traffic, exporter and resumption secrets
 * ```
 *
 * Each stage wipes its own secret when it hands over to the next one.
 */
import { wipe } from '../codec/bytes.js';
import type { CryptoProvider, HashName } from '../crypto/provider.js';
import { hashLength } from '../suites.js';
import { deriveSecret, deriveSecretWithApplicationLabel, expandLabel } from './hkdf-label.js';
import { Label } from './labels.js';

/** Which binder label a PSK uses (§4.2.11.2; RFC 9258 §5.2 for imported PSKs). */
export type BinderKind = 'external' | 'resumption' | 'imported';

const BINDER_LABEL = {
  external: Label.extBinder,
  resumption: Label.resBinder,
  imported: Label.impBinder,
} as const satisfies Record<BinderKind, string>;

const emptyHashCache = new WeakMap<CryptoProvider, Map<HashName, Uint8Array>>();

/** Hash of the empty string: the context of "derived" and of the binder keys (§7.1). */
export function emptyHash(crypto: CryptoProvider, hash: HashName): Uint8Array {
  let m = emptyHashCache.get(crypto);
  if (!m) emptyHashCache.set(crypto, (m = new Map()));
  let h = m.get(hash);
  if (!h) m.set(hash, (h = crypto.hash(hash).digest(new Uint8Array(0))));
  return h;
}

abstract class Stage {
  constructor(
    protected readonly crypto: CryptoProvider,
    readonly hash: HashName,
    protected secret: Uint8Array,
  ) {}

  protected derive(label: (typeof Label)[keyof typeof Label], transcriptHash: Uint8Array): Uint8Array {
    return deriveSecret(this.crypto, this.hash, this.secret, label, transcriptHash);
  }

  /** The secret of this stage, for test vectors and key logs only. */
  dangerousSecret(): Uint8Array {
    return this.secret;
  }

  /** Wipes this stage's secret. */
  destroy(): void {
    wipe(this.secret);
  }

  /** Derive-Secret(., "derived", "") then HKDF-Extract with `ikm` (the next stage's secret). */
  protected next(ikm: Uint8Array): Uint8Array {
    const salt = this.derive(Label.derived, emptyHash(this.crypto, this.hash));
    const out = this.crypto.hkdfExtract(this.hash, salt, ikm);
    wipe(salt);
    this.destroy();
    return out;
  }
}

/** Early Secret = HKDF-Extract(0, PSK) (§7.1). */
export class EarlySecret extends Stage {
  static fromPsk(crypto: CryptoProvider, hash: HashName, psk: Uint8Array | null): EarlySecret {
    const zeros = new Uint8Array(hashLength(hash));
    return new EarlySecret(crypto, hash, crypto.hkdfExtract(hash, zeros, psk ?? zeros));
  }

  /** binder_key = Derive-Secret(Early Secret, "ext binder" | "res binder" | "imp binder", "") */
  binderKey(kind: BinderKind): Uint8Array {
    return this.derive(BINDER_LABEL[kind], emptyHash(this.crypto, this.hash));
  }

  /** client_early_traffic_secret = Derive-Secret(Early Secret, "c e traffic", ClientHello) */
  clientEarlyTrafficSecret(clientHelloHash: Uint8Array): Uint8Array {
    return this.derive(Label.clientEarlyTraffic, clientHelloHash);
  }

  /** early_exporter_master_secret = Derive-Secret(Early Secret, "e exp master", ClientHello) */
  earlyExporterMasterSecret(clientHelloHash: Uint8Array): Uint8Array {
    return this.derive(Label.earlyExporterMaster, clientHelloHash);
  }

  /** Handshake Secret = HKDF-Extract(Derive-Secret(., "derived", ""), (EC)DHE or zeros for psk_ke). Consumes this stage. */
  intoHandshake(sharedSecret: Uint8Array | null): HandshakeSecret {
    const ikm = sharedSecret ?? new Uint8Array(hashLength(this.hash));
    return new HandshakeSecret(this.crypto, this.hash, this.next(ikm));
  }
}

export class HandshakeSecret extends Stage {
  /** client_handshake_traffic_secret = Derive-Secret(., "c hs traffic", ClientHello...ServerHello) */
  clientHandshakeTrafficSecret(helloHash: Uint8Array): Uint8Array {
    return this.derive(Label.clientHandshakeTraffic, helloHash);
  }
  /** server_handshake_traffic_secret = Derive-Secret(., "s hs traffic", ClientHello...ServerHello) */
  serverHandshakeTrafficSecret(helloHash: Uint8Array): Uint8Array {
    return this.derive(Label.serverHandshakeTraffic, helloHash);
  }
  /** Master Secret = HKDF-Extract(Derive-Secret(., "derived", ""), 0). Consumes this stage. */
  intoMaster(): MasterSecret {
    return new MasterSecret(this.crypto, this.hash, this.next(new Uint8Array(hashLength(this.hash))));
  }
}

export class MasterSecret extends Stage {
  /** client_application_traffic_secret_0 = Derive-Secret(., "c ap traffic", ClientHello...server Finished) */
  clientApplicationTrafficSecret(handshakeHash: Uint8Array): Uint8Array {
    return this.derive(Label.clientApplicationTraffic, handshakeHash);
  }
  /** server_application_traffic_secret_0 = Derive-Secret(., "s ap traffic", ClientHello...server Finished) */
  serverApplicationTrafficSecret(handshakeHash: Uint8Array): Uint8Array {
    return this.derive(Label.serverApplicationTraffic, handshakeHash);
  }
  /** exporter_master_secret = Derive-Secret(., "exp master", ClientHello...server Finished) */
  exporterMasterSecret(handshakeHash: Uint8Array): Uint8Array {
    return this.derive(Label.exporterMaster, handshakeHash);
  }
  /** resumption_master_secret = Derive-Secret(., "res master", ClientHello...client Finished) */
  resumptionMasterSecret(fullHash: Uint8Array): Uint8Array {
    return this.derive(Label.resumptionMaster, fullHash);
  }
}

/** §7.3: [sender]_write_key and [sender]_write_iv from a traffic secret. */
export function trafficKeys(
  crypto: CryptoProvider,
  hash: HashName,
  secret: Uint8Array,
  keyLength: number,
  ivLength: number,
): { key: Uint8Array; iv: Uint8Array } {
  const empty = new Uint8Array(0);
  return {
    key: expandLabel(crypto, hash, secret, Label.key, empty, keyLength),
    iv: expandLabel(crypto, hash, secret, Label.iv, empty, ivLength),
  };
}

/** §4.4.4: finished_key = HKDF-Expand-Label(BaseKey, "finished", "", Hash.length). */
export function finishedKey(crypto: CryptoProvider, hash: HashName, baseKey: Uint8Array): Uint8Array {
  return expandLabel(crypto, hash, baseKey, Label.finished, new Uint8Array(0), hashLength(hash));
}

/** §4.4.4: verify_data = HMAC(finished_key, Transcript-Hash(Handshake Context, Certificate*, CertificateVerify*)). */
export function finishedVerifyData(
  crypto: CryptoProvider,
  hash: HashName,
  baseKey: Uint8Array,
  transcriptHash: Uint8Array,
): Uint8Array {
  const fk = finishedKey(crypto, hash, baseKey);
  const out = crypto.hmac(hash, fk, transcriptHash);
  wipe(fk);
  return out;
}

/** §7.2: application_traffic_secret_N+1 = HKDF-Expand-Label(application_traffic_secret_N, "traffic upd", "", Hash.length). */
export function nextTrafficSecret(crypto: CryptoProvider, hash: HashName, secret: Uint8Array): Uint8Array {
  return expandLabel(crypto, hash, secret, Label.trafficUpdate, new Uint8Array(0), hashLength(hash));
}

/**
 * §7.5: TLS-Exporter(label, context_value, key_length) =
 *   HKDF-Expand-Label(Derive-Secret(Secret, label, ""), "exporter", Hash(context_value), key_length)
 * `label` is the application's exporter label (not prefixed further than HKDF-Expand-Label does).
 */
export function exportKeyingMaterial(
  crypto: CryptoProvider,
  hash: HashName,
  exporterMasterSecret: Uint8Array,
  label: string,
  context: Uint8Array,
  length: number,
): Uint8Array {
  const h = crypto.hash(hash);
  const inner = deriveSecretWithApplicationLabel(crypto, hash, exporterMasterSecret, label, emptyHash(crypto, hash));
  const out = expandLabel(crypto, hash, inner, Label.exporter, h.digest(context), length);
  wipe(inner);
  return out;
}

/** §4.6.1: PSK = HKDF-Expand-Label(resumption_master_secret, "resumption", ticket_nonce, Hash.length). */
export function resumptionPsk(crypto: CryptoProvider, hash: HashName, resumptionMaster: Uint8Array, ticketNonce: Uint8Array): Uint8Array {
  return expandLabel(crypto, hash, resumptionMaster, Label.resumption, ticketNonce, hashLength(hash));
}
