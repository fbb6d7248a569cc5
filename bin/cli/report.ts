/**
 * How the commands report on stderr: one line per completed handshake and per failure, human-readable or
 * (with --json) one JSON object per line. Key material never appears here. A value may come from the peer (an
 * identity, a key ID, an error's text): each is printed through clip/fieldText/jsonText, so that it cannot forge a
 * field or a line, or rewrite the terminal.
 */
import { clip, type EarlyDataRejection, fieldText, type HandshakeInfo, jsonText, TlsError } from 'qkd-tls';
import type { KmeLogEvent } from 'qkd-tls/kme';

/** Why a server rejected 0-RTT data, in words (HandshakeInfo.earlyDataRejection; RFC 8446 §4.2.10, §8). */
const REJECTION_TEXT = {
  disabled: 'not accepted here: --max-early-data',
  'not-first-psk': "not under the client's first PSK",
  'hello-retry': '0-RTT goes with the first ClientHello only',
  'not-provisioned': 'suite or ALPN not provisioned with the PSK',
  replay: 'replay: this ClientHello had its 0-RTT accepted before, or the replay register is full',
} satisfies Record<EarlyDataRejection, string>;

export class Reporter {
  constructor(readonly json: boolean) {}

  /** `{"event":"handshake","version":"TLSv1.3","suite":...,"kex":...,"group":...,"identity":...,"earlyData":...}` */
  handshake(info: HandshakeInfo, extra: Record<string, unknown> = {}): void {
    const o = {
      event: 'handshake',
      version: info.version,
      suite: info.suite,
      kex: info.kex,
      group: info.group,
      identity: info.identity,
      earlyData: info.earlyData,
      ...(info.earlyDataRejection !== undefined ? { earlyDataRejection: info.earlyDataRejection } : {}),
      ...(info.pskLabel !== undefined ? { keyId: info.pskLabel } : {}),
      ...(info.alpn !== undefined ? { alpn: info.alpn } : {}),
      ...(info.helloRetry ? { helloRetry: true } : {}),
      ...extra,
    };
    if (this.json) this.write(o);
    else {
      process.stderr.write(
        `handshake: ${info.version} ${info.suite} ${info.kex}${info.group ? ' ' + info.group : ''} identity=${fieldText(info.identity)}` +
          `${info.pskLabel !== undefined ? ' keyId=' + fieldText(info.pskLabel) : ''} early-data=${info.earlyData}${info.earlyDataRejection !== undefined ? ` (${REJECTION_TEXT[info.earlyDataRejection]})` : ''}${info.helloRetry ? ' (after HelloRetryRequest)' : ''}` +
          Object.entries(extra)
            .map(([k, v]) => ` ${k}=${fieldText(String(v))}`)
            .join('') +
          '\n',
      );
    }
  }

  /**
   * A failure: `tls alert: decrypt_error (51) sent: ...` or a plain error. A `hint` (what the user can do about it)
   * follows the message after a colon, or goes in a "hint" field with --json. A TlsError's own hint (TlsError.hint,
   * which ends its message when it has no detail) goes in that field too with --json, before the command's.
   */
  failure(err: unknown, extra: Record<string, unknown> = {}, hint?: string): void {
    const e = err instanceof Error ? err : new Error(String(err));
    if (this.json) {
      const own = e instanceof TlsError ? e.hint : undefined;
      const message = own && e.message.endsWith(`: ${own}`) ? e.message.slice(0, -own.length - 2) : e.message;
      const hints = [own, hint].filter((h): h is string => h !== undefined && h !== '').join('; ');
      const o: Record<string, unknown> = { event: 'error', message, ...extra, ...(hints ? { hint: hints } : {}) };
      if (e instanceof TlsError) Object.assign(o, { alert: e.alert, alertCode: e.alertCode, direction: e.remote ? 'received' : e.alertSent ? 'sent' : 'not sent', reason: e.reason });
      this.write(o);
    } else {
      const where = Object.entries(extra)
        .map(([k, v]) => `${k}=${fieldText(String(v))}`)
        .join(' ');
      process.stderr.write(`${clip(e.message, 1000)}${hint ? `: ${hint}` : ''}${where ? ` (${where})` : ''}\n`);
    }
  }

  /**
   * A failure that ends the command: `qkd-tls COMMAND: message; hint` (the message, Node's own "listen EADDRINUSE:
   * ...", may hold a colon already), or with --json an error event with the hint in its "hint" field, as failure() does.
   */
  fatal(command: string, failure: { message: string; hint?: string | undefined }): void {
    const { message, hint } = failure;
    if (this.json) this.write({ event: 'error', message, ...(hint ? { hint } : {}) });
    else process.stderr.write(`qkd-tls ${command}: ${clip(message, 1000)}${hint ? `; ${hint}` : ''}\n`);
  }

  event(name: string, fields: Record<string, unknown>): void {
    if (this.json) this.write({ event: name, ...fields });
    else
      process.stderr.write(
        `${name}: ${Object.entries(fields)
          .map(([k, v]) => `${k}=${typeof v === 'string' ? fieldText(v) : jsonText(v)}`)
          .join(' ')}\n`,
      );
  }

  private write(o: Record<string, unknown>): void {
    process.stderr.write(jsonText(o) + '\n');
  }
}

/**
 * What a client can do about a failure it did not see the cause of: an alert from the server (whose own log says
 * `sent: PSK binder does not verify (wrong key?)`, where the client saw only `decrypt_error (51) received`), or a
 * server that does not answer. `qkdKeys`: the keys come from a KME (--kme), not from --psk. `keysObtained`: the key
 * source had answered (the handshake had started); a timeout before that is the KME's, not the server's. Undefined
 * when there is nothing to add.
 *
 * For a received alert the library says what to check in the message already (TlsError.hint, from
 * receivedAlertHint); this adds only what names the command's own options, so that the line does not say it twice.
 */
export function clientFailureHint(err: unknown, qkdKeys = false, keysObtained = true): string | undefined {
  if (err instanceof TlsError) {
    if (err.reason === 'HandshakeTimeout' && !keysObtained) {
      return qkdKeys ? 'no QKD key from the KME in time, so nothing was sent to the server (is the KME answering? --kme-timeout)' : undefined;
    }
    if (err.reason === 'HandshakeTimeout') return 'the server did not answer in time (is it a TLS server? its log, or its key manager, may say why)';
    if (!err.remote || err.hint === undefined) return undefined;
    // The binder did not verify (RFC 8446 §4.2.11.2). With QKD keys there is no key of ours to mistype: the server's
    // KME gave it another key under that key ID (KMEs that do not share their keys), or the two sides bind it to other hashes.
    if (err.alert === 'decrypt_error' && qkdKeys) return 'did its KME give it another key for that key ID? --psk-hash on one side only?';
    if (err.alert === 'decrypt_error') return 'check --psk, and --psk-hash on both sides';
    // (The same, as OpenSSL before 3.4, GnuTLS and tlslite-ng say it; GnuTLS for an unknown identity too.)
    if (err.alert === 'illegal_parameter' && qkdKeys) return 'did its KME give it another key for that key ID, or none? --psk-hash on one side only?';
    if (err.alert === 'illegal_parameter') return 'check --psk and --identity, and --psk-hash on both sides';
    // The binder's length is its hash's: a server that binds the key to SHA-256 (OpenSSL, Node) cannot parse a SHA-384 one.
    if (err.alert === 'decode_error') return '--psk-hash on one side only? (OpenSSL and Node take SHA-256 only)';
    // OpenSSL (Node too) accepted none of our PSKs: no key for the identity (the ID of a QKD key), or another hash.
    if (err.alert === 'missing_extension' && qkdKeys) return 'another --peer-sae-id on its side? a KME that does not share this key? --psk-hash on one side only?';
    if (err.alert === 'missing_extension') return 'a wrong --identity? --importer or --context on one side only? --psk-hash on one side only?';
    // No suite, key-exchange mode or group in common, an identity it does not know (tlslite-ng), or its key source
    // failed (RFC 8446 §6.2): the options that choose them, or with QKD keys its KME.
    if (err.alert === 'handshake_failure' && qkdKeys) return 'could its KME not give it this key (its log says)? or --suites, --kex-modes or --groups it does not allow?';
    if (err.alert === 'handshake_failure') return '--suites, --kex-modes or --groups it does not allow? a wrong --identity?';
    // With QKD keys the identity is the key's ID: the server's KME did not give it that key.
    if (err.alert === 'unknown_psk_identity' && qkdKeys) return 'another --peer-sae-id on its side? a KME that does not share this key?';
    if (err.alert === 'unknown_psk_identity') return 'a wrong --identity? --importer or --context on one side only?';
    return undefined;
  }
  const code = (err as { code?: unknown } | undefined)?.code;
  if (code === 'ECONNREFUSED') return 'nothing listens there (is the server running?)';
  if (code === 'ECONNRESET' || code === 'EPIPE') return 'the server reset the connection (did it stop?); what arrived may be incomplete';
  if (code === 'ENOTFOUND' || code === 'EAI_AGAIN') return 'no such host name';
  return undefined;
}

/**
 * A KME simulator's log line (`qkd-tls kme`, also with --network): `TIME KME CALLER METHOD PATH -> STATUS RESULT`. The
 * caller's SAE ID (over plain HTTP, the X-SAE-ID header: any text) and the path are quoted when not plain, a message
 * is escaped, so that a request cannot forge a field or a line.
 */
export function kmeLogLine(e: KmeLogEvent): string {
  const at = new Date().toISOString();
  if (e.type === 'tls_error') return `${at} ${e.kmeId} TLS handshake failed: ${clip(e.message, 1000)}`;
  const result = e.status === 200 ? (e.keyCount > 0 ? `${e.keyCount} key(s)` : 'ok') : clip(e.message ?? '', 1000);
  return `${at} ${e.kmeId} ${e.callerSaeId === undefined ? '(unidentified)' : fieldText(e.callerSaeId, 200)} ${fieldText(e.method)} ${fieldText(e.path)} -> ${e.status} ${result}`;
}
