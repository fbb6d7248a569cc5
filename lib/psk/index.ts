/**
 * External PSKs and where they come from: the RFC 9258 importer, key-source interfaces and the static source,
 * and how a QKD key ID travels in a PSK identity. Runtime-neutral; the sources that do I/O (key files, ETSI
 * GS QKD 014 key managers) are in lib/qkd/ (`qkd-tls/qkd`), the key manager simulator in lib/tools/kme/. The key
 * file's text format is parsed here (key-file.ts: `parseKeyFile`, exported from `qkd-tls/qkd` and
 * `qkd-tls/browser`, not from the root), its reader `fileKeySource` in lib/qkd/file-source.ts.
 */
export { MIN_PSK_BYTES, type Psk, type PskRequest, type PskResolver } from './types.js';
export { identityText } from './identity-text.js';
export {
  ALL_TARGET_KDFS,
  acceptImportedIdentities,
  contextBytes,
  decodeImportedIdentity,
  deriveAcceptedImports,
  deriveImportedPsk,
  encodeImportedIdentity,
  importedResolver,
  importPsk,
  MAX_IDENTITY_LENGTH,
  TARGET_KDF_HASH,
  TargetKdf,
  targetKdfForHash,
  targetKdfsForHashes,
  TargetProtocol,
  type AcceptedImport,
  type ExternalPsk,
  type ImportAcceptOptions,
  type ImportedIdentity,
  type ImportOptions,
  type TargetKdfName,
} from './importer.js';
export {
  byPriority,
  plainPsk,
  serverPskResolver,
  StaticKeySource,
  takePsks,
  type ClientKeySource,
  type KeyRequest,
  type PskLease,
  type PskOffer,
  type ServerKeySource,
  type ServerResolverOptions,
  type SourcedKey,
  type StaticKeySourceOptions,
  type TakePsksOptions,
} from './source.js';
export { decodeKeyIdIdentity, encodeKeyIdIdentity, type KeyIdIdentity } from './key-id.js';
