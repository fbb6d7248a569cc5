/**
 * Every HKDF label of TLS 1.3 (RFC 8446 §7.1, §7.3, §7.5, §4.4.4, §4.6.1, §4.6.3) and of the RFC 9258
 * importer, written once. HKDF-Expand-Label prefixes them with "tls13 ".
 */
export const Label = {
  /** §7.1 binder key for an external PSK. */
  extBinder: 'ext binder',
  /** §7.1 binder key for a resumption PSK. */
  resBinder: 'res binder',
  /** RFC 9258 §5.2 / §7: binder key for an imported PSK. */
  impBinder: 'imp binder',
  clientEarlyTraffic: 'c e traffic',
  earlyExporterMaster: 'e exp master',
  derived: 'derived',
  clientHandshakeTraffic: 'c hs traffic',
  serverHandshakeTraffic: 's hs traffic',
  clientApplicationTraffic: 'c ap traffic',
  serverApplicationTraffic: 's ap traffic',
  exporterMaster: 'exp master',
  resumptionMaster: 'res master',
  /** §7.3 traffic key and IV. */
  key: 'key',
  iv: 'iv',
  /** §4.4.4 finished_key. */
  finished: 'finished',
  /** §7.2 next application traffic secret (KeyUpdate). */
  trafficUpdate: 'traffic upd',
  /** §7.5 exporters. */
  exporter: 'exporter',
  /** §4.6.1 PSK from a resumption ticket. */
  resumption: 'resumption',
  /** RFC 9258 §5.1 ipskx derivation ("derived psk"). */
  derivedPsk: 'derived psk',
} as const;

export type LabelName = (typeof Label)[keyof typeof Label];
