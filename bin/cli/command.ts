/**
 * The part every subcommand shares: parse the arguments, answer --help, turn the values into a plan, and
 * report a usage error (exit code 2) the same way everywhere.
 */
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { UsageError } from './tls-options.js';

type OptionsSpec = NonNullable<ParseArgsConfig['options']>;
type ValuesOf<O extends OptionsSpec> = ReturnType<typeof parseArgs<{ args: string[]; options: O; strict: true }>>['values'];

/**
 * Reports a usage error the same way in every command: one line naming the command and the problem, then where
 * the options are described (the whole --help after a typo buried the message). Returns the exit code, 2.
 */
export function usageError(command: string, message: string, helpCommand: string = command): number {
  process.stderr.write(`qkd-tls ${command}: ${message}\n(run qkd-tls ${helpCommand} --help for the options)\n`);
  return 2;
}

/**
 * Parses `argv` for `qkd-tls <command>` (with `--help`/`-h` added), then runs `interpret`. Returns the exit
 * code to use now (`{ exit }`: 0 after --help, 2 after a usage error), or the values and the interpretation.
 */
export function parseCommandLine<O extends OptionsSpec, T>(
  command: string,
  argv: string[],
  options: O,
  help: string,
  interpret: (values: ValuesOf<O>) => T,
  helpCommand: string = command,
): { exit: number } | { values: ValuesOf<O>; plan: T } {
  let values: ValuesOf<O>;
  try {
    values = parseArgs({ args: argv, options: { ...options, help: { type: 'boolean', short: 'h' } }, strict: true }).values as ValuesOf<O>;
  } catch (e) {
    return { exit: usageError(command, (e as Error).message, helpCommand) };
  }
  if ((values as { help?: boolean }).help) {
    process.stdout.write(help + '\n');
    return { exit: 0 };
  }
  try {
    return { values, plan: interpret(values) };
  } catch (e) {
    if (e instanceof UsageError) {
      process.stderr.write(`qkd-tls ${command}: ${e.message}\n`);
      return { exit: 2 };
    }
    throw e;
  }
}

/** Resolves at the first SIGINT or SIGTERM (Ctrl-C, a service manager's stop); both listeners are then removed. */
export function untilStopSignal(): Promise<void> {
  return new Promise<void>((resolve) => {
    const stop = (): void => {
      process.off('SIGINT', stop);
      process.off('SIGTERM', stop);
      resolve();
    };
    process.on('SIGINT', stop);
    process.on('SIGTERM', stop);
  });
}
