/**
 * The time options of the command line, one parser for all of them (found in a README walkthrough: the proxy's
 * --idle-timeout, --connect-timeout and --drain-timeout took "30s" or "5m", --kme-timeout and --key-lifetime only
 * milliseconds, --handshake-timeout only seconds).
 *
 * Every time option takes a number with an explicit unit: 500ms, 30s, 5m, 1h. A bare number keeps the unit that
 * option always had, so that a command line or a configuration file that works today means what it meant:
 * seconds for --handshake-timeout, milliseconds for the others. Help and errors say which.
 */
import { UsageError } from './usage-error.js';

/** What one time option takes. */
export interface TimeOption {
  /** The unit of a bare number. */
  readonly bareUnit: 'ms' | 's';
  /** The least, in milliseconds; 0 allowed when `zero` says what it means. */
  readonly minMs: number;
  readonly maxMs: number;
  /** What 0 means ("no limit", "never"), when 0 is allowed. */
  readonly zero?: string;
}

const UNIT_MS: Readonly<Record<string, number>> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/** The explicit units every time option takes, as help texts and errors show them. */
export const TIME_UNITS = '500ms, 30s, 5m, 1h';

/**
 * `--NAME v` in milliseconds: "500ms", "30s", "5m", "1h", or a bare number in the option's own unit (decimals
 * allowed, ".5" and "5." too; rounded to a millisecond). Throws a UsageError naming the option, the unit of a bare
 * number and the range.
 */
export function parseTime(name: string, v: string, option: TimeOption): number {
  // ".5" and "5." as well: --handshake-timeout took any decimal Number() reads, and ".5" (half a second) worked.
  const m = /^(\d+(?:\.\d*)?|\.\d+)(ms|s|m|h)?$/.exec(v.trim());
  const exact = m ? Number(m[1]) * UNIT_MS[m[2] ?? option.bareUnit] : NaN;
  const ms = Math.round(exact);
  const zeroOk = option.zero !== undefined && exact === 0;
  if (!Number.isFinite(exact) || ms > option.maxMs || (!zeroOk && (exact < 1 || ms < option.minMs))) {
    const bare = option.bareUnit === 's' ? 'seconds' : 'milliseconds';
    const from = option.zero !== undefined ? `0 (${option.zero})` : formatMs(Math.max(option.minMs, 1));
    throw new UsageError(`--${name}: expected a number of ${bare}, or a number with a unit (${TIME_UNITS}), from ${from} to ${formatMs(option.maxMs)}; got "${v}"`);
  }
  return zeroOk ? 0 : ms;
}

/** 600000 -> "10m", 1500 -> "1500ms": the largest unit that states it exactly. */
export function formatMs(ms: number): string {
  for (const unit of ['h', 'm', 's'] as const) if (ms > 0 && ms % UNIT_MS[unit] === 0) return `${ms / UNIT_MS[unit]}${unit}`;
  return `${ms}ms`;
}
