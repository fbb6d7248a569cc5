/** Timers in tests: what a piece of code arms, without waiting for it. */

/** The delays of the timers `fn` arms (synchronously) with the global setTimeout, which the transports use. */
export function timersArmedBy(fn: () => void): number[] {
  const armed: number[] = [];
  const real = globalThis.setTimeout;
  globalThis.setTimeout = ((cb: () => void, ms?: number) => {
    armed.push(ms ?? 0);
    return real(cb, ms);
  }) as typeof setTimeout;
  try {
    fn();
  } finally {
    globalThis.setTimeout = real;
  }
  return armed;
}
