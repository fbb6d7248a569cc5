/**
 * The asynchronous key-agreement pause (RFC 8446 §4.2.8, §7.4): when the provider has an asynchronous
 * implementation of a group (CryptoProvider.asyncGroup, e.g. WebCrypto's X25519 and ECDH), a state machine does
 * not await it. It starts the work, moves to a state that waits for its result ({@link AwaitKeyAgreement}, named
 * for what it expects), and the connection exposes the work as a {@link KeyAgreementRequest} that the transport
 * runs and answers (Connection.provideKeyAgreement / failKeyAgreement), as the server's PSK lookup does.
 *
 * Where the handshake pauses:
 * - client, before its first ClientHello (the key shares: 'start'), and before the second one after a
 *   HelloRetryRequest (the new share: 'start'); the ClientHello goes out after the pause;
 * - client, after the ServerHello (the shared secret: 'complete');
 * - server, after the ClientHello and any PSK lookup (its share and the shared secret: 'respond').
 *
 * Randomness is drawn from the provider at the same point, in the same order, and in the same amounts as on the
 * synchronous path, so that a handshake is byte for byte the same whichever path a group takes.
 */
import type { AsyncKeyExchangeGroup, CryptoProvider, GroupName } from '../crypto/provider.js';
import { TlsError } from '../errors.js';
import type { KeyAgreementRequest, KeyAgreementResult, KeyAgreementStep } from '../config/events.js';
import type { HandshakeIO, HandshakeState } from './io.js';

export type { KeyAgreementRequest, KeyAgreementResult, KeyAgreementStep };

/** A state that waits for a key agreement rather than for a message. */
export interface AwaitingKeyAgreement extends HandshakeState {
  readonly keyAgreement: KeyAgreementRequest;
  /** Whether `result` answers {@link keyAgreement} (and not another request). */
  accepts(result: KeyAgreementResult): boolean;
  /** Continues the handshake with the result of {@link keyAgreement} (which it {@link accepts}). */
  resume(io: HandshakeIO, result: KeyAgreementResult): HandshakeState;
}

export function isAwaitingKeyAgreement(s: HandshakeState): s is AwaitingKeyAgreement {
  return (s as AwaitingKeyAgreement).keyAgreement !== undefined;
}

/** The asynchronous implementation of `group`, if the provider has one (else the synchronous path runs). */
export function asyncGroupOf(crypto: CryptoProvider, group: GroupName): AsyncKeyExchangeGroup | undefined {
  return crypto.asyncGroup?.(group);
}

/** How a paused step continues: the next state from the value, and how to dispose of what is no longer used. */
export interface KeyAgreementContinuation<T> {
  readonly name: 'AwaitKeyShares' | 'AwaitSharedSecret';
  readonly step: KeyAgreementStep;
  readonly groups: readonly GroupName[];
  /** The handshake after the pause (may throw a TlsError, as the synchronous path would at that point). */
  next(io: HandshakeIO, value: T): HandshakeState;
  /** Wipes a value that arrives after the handshake ended (a late private key or shared secret). */
  discard(value: T): void;
  /** Wipes the secrets the paused handshake holds (the handshake failed or was destroyed during the pause). */
  release(): void;
  /** What the paused state does before a fatal alert is sent during the pause (HandshakeState.beforeAlert). */
  beforeAlert?(io: HandshakeIO): void;
}

type Outcome<T> = { readonly ok: true; readonly value: T } | { readonly ok: false; readonly error: unknown };

/** Waits for a key agreement; a handshake message meanwhile is impossible (the connection does not read). */
export class AwaitKeyAgreement<T> implements AwaitingKeyAgreement {
  readonly name: KeyAgreementContinuation<T>['name'];
  readonly keyAgreement: KeyAgreementRequest;
  private readonly outcome: Promise<Outcome<T>>;
  private over = false;

  constructor(
    work: Promise<T>,
    private readonly how: KeyAgreementContinuation<T>,
  ) {
    this.name = how.name;
    // Settled at once, so that a failure is never an unhandled rejection, whoever runs the request and when.
    this.outcome = work.then(
      (value) => ({ ok: true, value }),
      (error: unknown) => ({ ok: false, error }),
    );
    const request: KeyAgreementRequest = {
      step: how.step,
      groups: how.groups,
      run: () => result,
    };
    const result: Promise<KeyAgreementResult> = this.outcome.then((o) => {
      if (!o.ok) throw o.error;
      return new Answer(request, o.value);
    });
    result.catch(() => {}); // a request nobody runs (the connection was destroyed) must not report a rejection
    this.keyAgreement = request;
  }

  handle(): HandshakeState {
    throw new TlsError('InternalError', 'handshake message received during the key agreement');
  }

  beforeAlert(io: HandshakeIO): void {
    this.how.beforeAlert?.(io);
  }

  accepts(result: KeyAgreementResult): boolean {
    return result instanceof Answer && result.request === this.keyAgreement;
  }

  resume(io: HandshakeIO, result: KeyAgreementResult): HandshakeState {
    if (!this.accepts(result)) throw new TypeError('the result answers another key agreement request');
    this.over = true;
    try {
      return this.how.next(io, (result as Answer<T>).value);
    } catch (e) {
      this.how.release();
      throw e;
    }
  }

  destroy(): void {
    if (this.over) return;
    this.over = true;
    this.how.release();
    // What the work still produces is nobody's: wipe it when it arrives.
    void this.outcome.then((o) => o.ok && this.how.discard(o.value));
  }
}

class Answer<T> implements KeyAgreementResult {
  constructor(
    readonly request: KeyAgreementRequest,
    readonly value: T,
  ) {}
}

/**
 * All of `works`, in order; if one fails, the values of the others are disposed of (`discard`) and the first
 * failure is reported. For the client's several key shares of a first ClientHello.
 */
export function allOrNothing<T>(works: readonly Promise<T>[], discard: (value: T) => void): Promise<T[]> {
  return Promise.allSettled(works).then((outcomes) => {
    const failed = outcomes.find((o): o is PromiseRejectedResult => o.status === 'rejected');
    if (!failed) return outcomes.map((o) => (o as PromiseFulfilledResult<T>).value);
    for (const o of outcomes) if (o.status === 'fulfilled') discard(o.value);
    throw failed.reason;
  });
}
