/**
 * qkd-tls/proxy: model 2 — a stunnel-like proxy that carries plain TCP between unmodified applications over
 * TLS 1.3 with keys from a key source (for example a QKD key manager), with its configuration file reader
 * and connection log.
 */
export * from './proxy.js';
export {
  ConfigError,
  parseConfig,
  readConfigFile,
  type ConfigFile,
  type ConfigSchema,
  type ConfigSection,
  type ConfigValue,
  type FieldSpec,
} from './config-file.js';
export { createLogger, silentLogger } from './log.js';
export { startWebSocketBridge, targetName, type BridgeRecord, type BridgeTarget, type WebSocketBridgeOptions } from './ws-bridge.js';
