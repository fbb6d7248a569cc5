/**
 * 0-RTT anti-replay for a server (RFC 8446 §8).
 *
 * Early data (0-RTT) travels in the client's first flight, before the server has said anything, so nothing in it
 * is fresh: whoever records a client's first flight (its ClientHello and early data) can send it again, and a
 * server that accepts early data would hand the same data to its application once per copy. RFC 8446 §8: "The
 * server MUST ensure that any instance of it ... would accept 0-RTT for the same 0-RTT handshake at most once".
 * This file is the "ClientHello recording" of §8.2: the server remembers the PSK binder of every ClientHello whose
 * early data it accepted, and rejects the early data of a ClientHello whose binder it has seen (the handshake goes
 * on without 0-RTT, and the client may send the data again once the handshake is complete).
 *
 * The binder is an HMAC under the PSK over the whole ClientHello (RFC 8446 §4.2.11.2), so it is unique to one
 * ClientHello and cannot be forged without the key; the server consults the guard only after the binder has been
 * verified, so a forged ClientHello never fills the register. Keying on the binder rather than the ClientHello's
 * bytes also catches a copy whose other, unverified binders were altered.
 *
 * The time window of §8.2 (a register that forgets ClientHellos older than a few seconds, because their ticket age
 * would be out of range) does not apply to external PSKs: their obfuscated_ticket_age is 0 (§4.2.11), so a
 * recorded first flight under a static key can be replayed at any time later. This register therefore never
 * forgets; it is bounded instead, and when full it answers "repeat" for everything new (early data rejected, the
 * handshake goes on), never forgetting an entry whose replay would then be accepted. A long-running server with a
 * static PSK thus eventually stops accepting 0-RTT; keys used for one handshake only (a QKD key fetched from a key
 * manager, which never comes back) are the real answer, since early data under a key never seen again cannot be
 * replayed to a server that no longer has the key. The server does not consult the guard for such a key
 * (Psk.singleUse, lib/psk/types.ts), so that a QKD server's register does not fill up with binders that can never
 * come back.
 *
 * Synchronous and runtime-neutral: a guard is consulted inside the handshake state machine. One register protects
 * the servers that share it: all the connections of one server share one guard (createServer in qkd-tls/node and
 * the `qkd-tls server` command make one), and several server processes that accept the same PSKs need a register
 * they share (an implementation of {@link EarlyDataReplayGuard} of the application's own) or 0-RTT off.
 */

/**
 * Answers, for the PSK binder of a ClientHello whose early data the server would accept, whether this is the first
 * time (RFC 8446 §8.2). The server calls it only after the binder has been verified and only when every other
 * condition for accepting 0-RTT holds (§4.2.10).
 */
export interface EarlyDataReplayGuard {
  /**
   * True the first time `binder` is seen (the guard records it); false for a repeat, and for anything a guard cannot
   * tell apart from one (e.g. a register that is full): a false answer only rejects the early data, the handshake
   * goes on (§8.2: a server whose register gives false positives "MUST respond to apparent replay by rejecting
   * 0-RTT but MUST NOT abort the handshake"). Must answer synchronously with a boolean: a guard that throws or
   * answers anything else fails that handshake (EarlyDataReplayGuardFailed, internal_error).
   */
  firstUse(binder: Uint8Array): boolean;
}

/** The in-memory guard of {@link createEarlyDataReplayGuard}: the register's size and bound. */
export interface BoundedEarlyDataReplayGuard extends EarlyDataReplayGuard {
  /** How many ClientHellos are recorded. */
  readonly size: number;
  /** The most it records; once {@link size} reaches it, every new ClientHello's early data is rejected. */
  readonly maxEntries: number;
  /** True once the register is full (0-RTT is rejected from then on). */
  readonly full: boolean;
}

export interface EarlyDataReplayGuardOptions {
  /**
   * How many ClientHellos to remember (each about 55 bytes in V8: a 16-byte key in a Set). Default
   * {@link DEFAULT_REPLAY_GUARD_ENTRIES}. A positive integer, else a TypeError.
   */
  readonly maxEntries?: number;
}

/** The default bound of {@link createEarlyDataReplayGuard}: 100,000 ClientHellos, about 5.5 MB. */
export const DEFAULT_REPLAY_GUARD_ENTRIES = 100_000;

/**
 * How many bytes of a binder are recorded: 128 bits, so that two different ClientHellos collide with a chance of
 * about n^2 / 2^129 among n recorded (a collision only rejects early data that was fresh).
 */
export const REPLAY_GUARD_KEY_BYTES = 16;

/**
 * An in-memory register of the binders of the ClientHellos whose early data was accepted (RFC 8446 §8.2), bounded
 * by `maxEntries`: when full it answers "repeat" for every new binder (early data rejected, never an abort) rather
 * than forget one. Give the same guard to every connection of a server (`earlyDataReplayGuard`).
 */
export function createEarlyDataReplayGuard(options: EarlyDataReplayGuardOptions = {}): BoundedEarlyDataReplayGuard {
  const maxEntries = options.maxEntries ?? DEFAULT_REPLAY_GUARD_ENTRIES;
  if (!(Number.isSafeInteger(maxEntries) && maxEntries > 0)) {
    throw new TypeError(`createEarlyDataReplayGuard: maxEntries must be a positive integer, got ${String(maxEntries)}`);
  }
  // Each key is the binder's first 16 bytes as a one-byte (latin1) string: a flat V8 string of 32 bytes.
  const seen = new Set<string>();
  return {
    maxEntries,
    get size() {
      return seen.size;
    },
    get full() {
      return seen.size >= maxEntries;
    },
    firstUse(binder: Uint8Array): boolean {
      if (!(binder instanceof Uint8Array) || binder.length === 0) throw new TypeError('EarlyDataReplayGuard.firstUse: the binder must be a non-empty Uint8Array');
      const key = String.fromCharCode(...binder.subarray(0, REPLAY_GUARD_KEY_BYTES));
      if (seen.has(key)) return false;
      // Full: answer "repeat" rather than evict an entry whose replay would then be accepted (§8: "at most once").
      if (seen.size >= maxEntries) return false;
      seen.add(key);
      return true;
    },
  };
}
