/**
 * Waiting with an AbortSignal on a promise whose maker may not honour it (an application's fetch or key-manager
 * client, a benchmark running in another runtime). Runtime-neutral.
 */

/**
 * `p`, or a rejection with `signal`'s reason as soon as it fires. What `p` settles with later is dropped (it is
 * handled: no unhandled rejection), so a caller whose `p` may still deliver secrets after the abort wipes them
 * itself (etsi014-source.ts). The abort listener is removed once either settles.
 */
export function untilAborted<T>(p: Promise<T>, signal: AbortSignal): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => reject(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
    p.then(
      (v) => {
        signal.removeEventListener('abort', onAbort);
        resolve(v);
      },
      (e: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(e);
      },
    );
    if (signal.aborted) onAbort();
  });
}
