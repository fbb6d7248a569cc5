/**
 * The Node-only key sources: a key file, ETSI GS QKD 014 key managers (client, sources with a prefetch pool
 * and a replay cache) and the key manager simulator.
 */
export { fileKeySource, parseKeyFile } from './file-source.js';
export {
  Etsi014ClientSource,
  Etsi014ServerSource,
  releaseAfter,
  type Etsi014ClientSourceOptions,
  type Etsi014ServerSourceOptions,
  type Etsi014SourceEvent,
  type RefusalReason,
} from './etsi014-source.js';
export { Etsi014Client, Etsi014Error, type Etsi014ClientOptions, type Etsi014Key } from './etsi014-client.js';
export { startKmeSimulator, type KmeSimulator, type KmeSimulatorOptions } from './kme-simulator.js';
