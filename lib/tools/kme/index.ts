/**
 * qkd-tls/kme: a simulator of a QKD network's key managers (KMEs) serving ETSI GS QKD 014 over HTTPS with
 * mutual TLS — for demos and tests, not a key manager: its "quantum" keys come from a random generator.
 */
export {
  MAX_KEY_BITS_PER_ANSWER,
  MAX_KEYS_PER_ANSWER,
  startKmeSimulator,
  type KmeEndpointInfo,
  type KmeLogEvent,
  type KmeSimulator,
  type KmeSimulatorOptions,
  type KmeSimulatorStats,
} from './simulator.js';
export {
  ensureKmeCertificates,
  makeKmeCertificates,
  saeIdFromCertificate,
  type KmeCertificateRequest,
  type KmeCertificateSet,
  type PemFiles,
  type PemPair,
} from './certificates.js';
