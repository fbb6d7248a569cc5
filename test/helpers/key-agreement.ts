/**
 * Test helpers for the asynchronous key-agreement pause (lib/handshake/key-agreement.ts): a {@link Pair} pumped
 * to the end with every pause run and answered, as a transport does, and each pause recorded.
 */
import type { KeyAgreementStep } from '../../lib/config/events.js';
import type { GroupName } from '../../lib/crypto/provider.js';
import { runKeyAgreement } from '../../lib/transport/key-agreement.js';
import type { Pair, PumpOptions, Side } from './pair.js';

export interface Pause {
  readonly side: Side;
  readonly state: string;
  readonly step: KeyAgreementStep;
  readonly groups: readonly GroupName[];
}

/**
 * Pumps `p` until neither side sends anything nor waits for a key agreement; runs every pending key agreement
 * (answering the connection) in between. Returns the pauses in the order they happened.
 */
export async function settle(p: Pair, options: PumpOptions = {}): Promise<Pause[]> {
  const pauses: Pause[] = [];
  for (let round = 0; round < 64; round++) {
    p.pump(options);
    let paused = false;
    for (const side of ['client', 'server'] as const) {
      const conn = side === 'client' ? p.client : p.server;
      const request = conn.pendingKeyAgreement;
      if (!request) continue;
      paused = true;
      pauses.push({ side, state: conn.stateName, step: request.step, groups: request.groups });
      await runKeyAgreement(conn, request);
    }
    if (!paused) return pauses;
  }
  throw new Error('the exchange did not settle in 64 pauses');
}
