/**
 * What every transport does with a handshake that pauses for an asynchronous key agreement
 * (Connection.pendingKeyAgreement, lib/handshake/key-agreement.ts): run it and answer the connection. Shared by
 * the streams transport (browsers, Deno, Bun, Workers, WebSocket) and the Node transport. Runtime-neutral.
 */
import type { Connection } from '../connection/connection.js';
import type { KeyAgreementRequest, KeyAgreementResult } from '../config/events.js';
import type { CryptoProvider } from '../crypto/provider.js';
import { withWebCryptoKeyShares } from '../crypto/webcrypto.js';

/**
 * Runs `request` and answers `conn` with its result (provideKeyAgreement) or its failure (failKeyAgreement);
 * resolves once the connection has it. Never rejects. A connection destroyed or failed meanwhile ignores the
 * answer (and wipes it); one that failed or was destroyed already is not waited for; and an answer to a request
 * that is no longer the pending one (a caller that ran one twice) is given to nobody.
 */
export async function runKeyAgreement(conn: Connection, request: KeyAgreementRequest): Promise<void> {
  // A connection that failed after announcing the request (in the same read: too much data during the pause)
  // would only ignore the answer: do not wait for work whose outcome nobody needs, and that may never come.
  if (conn.phase === 'failed' || conn.phase === 'closed') return;
  let outcome: { ok: true; result: KeyAgreementResult } | { ok: false; error: unknown };
  try {
    outcome = { ok: true, result: await request.run() };
  } catch (error) {
    outcome = { ok: false, error };
  }
  // Failed or destroyed meanwhile, or already answered: nobody waits for this answer (the handshake state that made
  // the request wipes its late values when it is left).
  if (conn.pendingKeyAgreement !== request) return;
  if (outcome.ok) conn.provideKeyAgreement(outcome.result);
  else conn.failKeyAgreement(outcome.error, request);
}

/**
 * The provider a transport's connection uses: `crypto` with its X25519 and P-256 key shares in WebCrypto
 * (lib/crypto/webcrypto.ts) when `webCryptoKeyShares` says so, else `crypto` itself. Undefined takes
 * `byDefault`.
 */
export function keyShareProvider(crypto: CryptoProvider, webCryptoKeyShares: boolean | undefined, byDefault: boolean): CryptoProvider {
  return (webCryptoKeyShares ?? byDefault) ? withWebCryptoKeyShares(crypto) : crypto;
}
