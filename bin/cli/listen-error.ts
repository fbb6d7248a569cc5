/**
 * A --listen (or --accept) that fails, said the same way in every command: which address, what went wrong, and
 * what to do. Node's own text ("listen EADDRINUSE: address already in use 127.0.0.1:8443") came alone, without the
 * command's name, and the commands each said it differently (found in a README walkthrough, where the sections
 * reuse ports and a command of an earlier section may still run).
 */
import { hostPortText } from './address.js';

/** What to do about a listen failure, from its error code (also when only the message carries it); '' if unknown. */
export function listenHint(e: unknown): string {
  const err = e as { code?: unknown; syscall?: unknown; message?: unknown; cause?: { code?: unknown; syscall?: unknown } } | undefined;
  // Only a failure of `listen` itself: the same codes from another call (EACCES from mkdir for kme's --certs, from
  // open for a file) are not about the port, and "ports below 1024 need privileges" would send the reader astray.
  const other = (s: unknown): boolean => s !== undefined && s !== 'listen';
  if (other(err?.syscall) || other(err?.cause?.syscall)) return '';
  const text = `${String(err?.code ?? '')} ${String(err?.cause?.code ?? '')} ${String(err?.message ?? '')}`;
  if (/\bEADDRINUSE\b/.test(text)) return 'another program (perhaps a qkd-tls command still running) listens on that port: stop it, or pick another port (0 picks a free one)';
  if (/\bEADDRNOTAVAIL\b/.test(text)) return 'this machine has no such address (127.0.0.1 is this machine)';
  if (/\bEACCES\b/.test(text)) return 'not allowed to listen there (ports below 1024 need privileges)';
  return '';
}

/** True when `e` is a failure to listen (an error of the `listen` call, or one of the codes above). */
export function isListenError(e: unknown): boolean {
  return (e as { syscall?: unknown } | undefined)?.syscall === 'listen' || listenHint(e) !== '';
}

/**
 * `cannot listen on HOST:PORT: <Node's message>`, and what to do (undefined when there is nothing to add), apart: with
 * --json the hint goes in its own "hint" field, as for any other failure (Reporter.fatal, Reporter.failure).
 */
export function listenFailure(host: string, port: number, e: unknown): { message: string; hint: string | undefined } {
  return { message: `cannot listen on ${hostPortText(host, port)}: ${e instanceof Error ? e.message : String(e)}`, hint: listenHint(e) || undefined };
}
