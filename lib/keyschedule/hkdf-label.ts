/**
 * RFC 8446 §7.1 HKDF-Expand-Label and Derive-Secret.
 */
import { Writer } from '../codec/writer.js';
import { utf8 } from '../codec/bytes.js';
import type { CryptoProvider, HashName } from '../crypto/provider.js';
import type { LabelName } from './labels.js';

const LABEL_PREFIX = 'tls13 ';
const labelCache = new Map<string, Uint8Array>();

function labelBytes(label: LabelName): Uint8Array {
  let b = labelCache.get(label);
  if (!b) {
    b = utf8(LABEL_PREFIX + label);
    labelCache.set(label, b);
  }
  return b;
}

/** The HkdfLabel structure (§7.1): uint16 length, opaque label<7..255> = "tls13 " + Label, opaque context<0..255>. */
export function hkdfLabel(label: LabelName, context: Uint8Array, length: number): Uint8Array {
  return encodeHkdfLabel(labelBytes(label), context, length);
}

function encodeHkdfLabel(fullLabel: Uint8Array, context: Uint8Array, length: number): Uint8Array {
  if (fullLabel.length > 255 || context.length > 255) throw new RangeError('HkdfLabel: label or context longer than 255 bytes');
  const w = new Writer(2 + 1 + fullLabel.length + 1 + context.length);
  w.u16(length).vec8(fullLabel).vec8(context);
  return w.finish();
}

/**
 * Derive-Secret with an application-chosen label (the exporter label of §7.5, e.g. "EXPERIMENTAL my-app").
 * Protocol code uses {@link deriveSecret} with a {@link LabelName} instead.
 */
export function deriveSecretWithApplicationLabel(
  crypto: CryptoProvider,
  hash: HashName,
  secret: Uint8Array,
  applicationLabel: string,
  transcriptHash: Uint8Array,
): Uint8Array {
  const info = encodeHkdfLabel(utf8(LABEL_PREFIX + applicationLabel), transcriptHash, transcriptHash.length);
  return crypto.hkdfExpand(hash, secret, info, transcriptHash.length);
}

/** HKDF-Expand-Label(Secret, Label, Context, Length) = HKDF-Expand(Secret, HkdfLabel, Length). */
export function expandLabel(
  crypto: CryptoProvider,
  hash: HashName,
  secret: Uint8Array,
  label: LabelName,
  context: Uint8Array,
  length: number,
): Uint8Array {
  return crypto.hkdfExpand(hash, secret, hkdfLabel(label, context, length), length);
}

/** Derive-Secret(Secret, Label, Messages) = HKDF-Expand-Label(Secret, Label, Transcript-Hash(Messages), Hash.length). */
export function deriveSecret(
  crypto: CryptoProvider,
  hash: HashName,
  secret: Uint8Array,
  label: LabelName,
  transcriptHash: Uint8Array,
): Uint8Array {
  return expandLabel(crypto, hash, secret, label, transcriptHash, transcriptHash.length);
}
