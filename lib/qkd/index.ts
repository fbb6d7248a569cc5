/**
 * qkd-tls/qkd: key sources that fetch keys over I/O — a key file, and ETSI GS QKD 014 key managers (the REST
 * client, and client/server sources with a prefetch pool and a replay cache). The key manager simulator is in
 * qkd-tls/kme. `parseKeyFile` (a key file's text to keys) is runtime-neutral and in qkd-tls/browser too.
 */
export { fileKeySource } from './file-source.js';
export { parseKeyFile } from '../psk/key-file.js';
export { FileTooLargeError, MAX_OPTION_FILE_BYTES, readFileBounded, readTextFileBounded } from './bounded-file.js';
export {
  Etsi014ClientSource,
  Etsi014ServerSource,
  releaseAfter,
  type Etsi014ClientSourceOptions,
  type Etsi014KeyClient,
  type Etsi014ServerSourceOptions,
  type Etsi014SourceEvent,
  type RefusalReason,
} from './etsi014-source.js';
export { Etsi014Client, Etsi014Error, type Etsi014ClientOptions, type Etsi014Key } from './etsi014-client.js';
export { etsi014Path, type Etsi014Operation } from './etsi014-api.js';
