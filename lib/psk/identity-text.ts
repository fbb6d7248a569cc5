/**
 * How a PSK identity is printed in logs and in {@link HandshakeInfo.identity}.
 */
import { fromUtf8, toHex } from '../codec/bytes.js';
import { nameOf } from '../codec/enums.js';
import { decodeImportedIdentity, TargetKdf, TargetProtocol } from './importer.js';

/**
 * Prints an identity for logs: as text when it is printable ASCII; an RFC 9258 ImportedIdentity as its
 * external identity and target KDF (`alice (imported for HKDF_SHA256)`); anything else as hex.
 */
export function identityText(identity: Uint8Array): string {
  // (Not String.fromCharCode(...identity): one argument per byte, up to 65535 of them, can overflow a smaller stack;
  // printable ASCII is valid UTF-8.)
  if (isPrintable(identity)) return fromUtf8(identity);
  const imported = decodeImportedIdentity(identity);
  if (imported && imported.targetProtocol === TargetProtocol.TLS13) {
    const kdf = nameOf(TargetKdf, imported.targetKdf);
    const ext = isPrintable(imported.externalIdentity) ? fromUtf8(imported.externalIdentity) : toHex(imported.externalIdentity);
    return `${ext} (imported for ${kdf})`;
  }
  return toHex(identity);
}

function isPrintable(b: Uint8Array): boolean {
  if (b.length === 0) return false;
  for (const c of b) if (c < 0x20 || c > 0x7e) return false;
  return true;
}
