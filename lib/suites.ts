/**
 * TLS 1.3 cipher suites (RFC 8446 §B.4): each names an AEAD and the hash used by HKDF and the transcript.
 */
import { CipherSuite, type CipherSuiteName } from './codec/enums.js';
import type { AeadName, HashName } from './crypto/provider.js';

export interface SuiteInfo {
  readonly name: SupportedSuiteName;
  readonly id: number;
  readonly hash: HashName;
  readonly hashLength: number;
  readonly aead: AeadName;
  readonly keyLength: number;
  /** RFC 8446 §5.3: the per-record nonce is max(8, N_MIN) = 12 bytes for every TLS 1.3 AEAD here. */
  readonly ivLength: number;
}

export type SupportedSuiteName = Extract<
  CipherSuiteName,
  'TLS_AES_128_GCM_SHA256' | 'TLS_AES_256_GCM_SHA384' | 'TLS_CHACHA20_POLY1305_SHA256'
>;

export const SUITES: Readonly<Record<SupportedSuiteName, SuiteInfo>> = {
  TLS_AES_128_GCM_SHA256: {
    name: 'TLS_AES_128_GCM_SHA256',
    id: CipherSuite.TLS_AES_128_GCM_SHA256,
    hash: 'SHA-256',
    hashLength: 32,
    aead: 'AES-128-GCM',
    keyLength: 16,
    ivLength: 12,
  },
  TLS_AES_256_GCM_SHA384: {
    name: 'TLS_AES_256_GCM_SHA384',
    id: CipherSuite.TLS_AES_256_GCM_SHA384,
    hash: 'SHA-384',
    hashLength: 48,
    aead: 'AES-256-GCM',
    keyLength: 32,
    ivLength: 12,
  },
  TLS_CHACHA20_POLY1305_SHA256: {
    name: 'TLS_CHACHA20_POLY1305_SHA256',
    id: CipherSuite.TLS_CHACHA20_POLY1305_SHA256,
    hash: 'SHA-256',
    hashLength: 32,
    aead: 'CHACHA20-POLY1305',
    keyLength: 32,
    ivLength: 12,
  },
};

/** Default preference: AES-128-GCM first (fast everywhere, and OpenSSL's default), then ChaCha20, then AES-256. */
export const DEFAULT_SUITES: readonly SupportedSuiteName[] = [
  'TLS_AES_128_GCM_SHA256',
  'TLS_CHACHA20_POLY1305_SHA256',
  'TLS_AES_256_GCM_SHA384',
];

export function suiteById(id: number): SuiteInfo | undefined {
  for (const s of Object.values(SUITES)) if (s.id === id) return s;
  return undefined;
}

export function suiteByName(name: string): SuiteInfo | undefined {
  return (SUITES as Record<string, SuiteInfo>)[name];
}

export function hashLength(hash: HashName): number {
  return hash === 'SHA-256' ? 32 : 48;
}
