/**
 * The HTTP side of an ETSI GS QKD 014 key manager, shared by the single-link simulator (simulator.ts) and the
 * QKD network's server (lib/tools/network/server.ts): what is asked and who is calling, reading a bounded request body, and
 * turning a {@link KmeResponse} into the HTTP answer (keys base64-encoded in a Key container, clause 6.3, and
 * wiped once encoded).
 */
import type { IncomingMessage } from 'node:http';
import type { TLSSocket } from 'node:tls';
import { wipe } from '../../codec/bytes.js';
import { type Etsi014KeyContainer, SAE_ID_HEADER } from '../../qkd/etsi014-api.js';
import { saeIdFromCertificate } from './certificates.js';
import type { KmeResponse } from './handler.js';

/** What a key manager reads off every request before routing it. */
export interface KmeRequestLine {
  readonly method: string;
  /** The path without its query. */
  readonly path: string;
  readonly query: URLSearchParams;
  /** See {@link identifyCaller}. */
  readonly callerSaeId: string | undefined;
  /** The Content-Type header, if any. */
  readonly contentType: string | undefined;
}

/** The method, path, query and calling SAE of a request. */
export function requestLine(req: IncomingMessage, insecureHttp: boolean): KmeRequestLine {
  const rawUrl = req.url ?? '/';
  const q = rawUrl.indexOf('?');
  return {
    method: req.method ?? 'GET',
    path: q < 0 ? rawUrl : rawUrl.slice(0, q),
    query: new URLSearchParams(q < 0 ? '' : rawUrl.slice(q + 1)),
    callerSaeId: identifyCaller(req, insecureHttp),
    contentType: req.headers['content-type'],
  };
}

/** The calling SAE: the TLS client certificate's CN, or (plain HTTP on loopback) the X-SAE-ID header. */
export function identifyCaller(req: IncomingMessage, insecureHttp: boolean): string | undefined {
  if (insecureHttp) {
    const h = req.headers[SAE_ID_HEADER];
    const v = Array.isArray(h) ? h[0] : h;
    return v === undefined || v === '' ? undefined : v;
  }
  const socket = req.socket as TLSSocket;
  if (!socket.authorized) return undefined;
  return saeIdFromCertificate(socket.getPeerCertificate());
}

/**
 * Reads the request body up to `maxBytes` and hands it to `done` as text. A body declared or found larger
 * calls `tooLarge` once (answer 413 there) and nothing is kept; an aborted upload calls neither.
 */
export function readBody(req: IncomingMessage, maxBytes: number, tooLarge: (message: string) => void, done: (body: string) => void): void {
  const message = `request body too large (at most ${maxBytes} bytes)`;
  if (Number(req.headers['content-length'] ?? 0) > maxBytes) return tooLarge(message);
  const chunks: Buffer[] = [];
  let size = 0;
  let rejected = false;
  req.on('data', (chunk: Buffer) => {
    if (rejected) return;
    size += chunk.length;
    if (size > maxBytes) {
      rejected = true;
      chunks.length = 0;
      tooLarge(message);
      req.pause();
      return;
    }
    chunks.push(chunk);
  });
  req.on('error', () => {}); // an aborted upload: nothing to answer, nothing changed
  req.on('end', () => {
    if (!rejected) done(Buffer.concat(chunks).toString('utf8'));
  });
}

/** A {@link KmeResponse} as HTTP: status, JSON body, extra headers, how many keys it carries, a log message. */
export interface KmeHttpAnswer {
  readonly status: number;
  readonly body: string;
  readonly headers: Record<string, string>;
  readonly keyCount: number;
  readonly message?: string;
}

/** Encodes an answer; the keys it carries are wiped once base64-encoded. */
export function kmeHttpAnswer(answer: KmeResponse, insecureHttp: boolean): KmeHttpAnswer {
  if ('keys' in answer) {
    const container: Etsi014KeyContainer = {
      keys: answer.keys.map((k) => ({ key_ID: k.keyId, key: Buffer.from(k.key.buffer, k.key.byteOffset, k.key.byteLength).toString('base64') })),
    };
    const body = JSON.stringify(container);
    for (const k of answer.keys) wipe(k.key);
    return { status: 200, body, headers: {}, keyCount: answer.keys.length };
  }
  if (answer.status === 200) return { status: 200, body: JSON.stringify(answer.json), headers: {}, keyCount: 0 };
  const headers: Record<string, string> = answer.allow ? { allow: answer.allow } : {};
  // RFC 9110 §11.6.1: a 401 names how to authenticate.
  if (answer.status === 401) headers['www-authenticate'] = insecureHttp ? 'X-SAE-ID' : 'TLS client certificate';
  return { status: answer.status, body: JSON.stringify(answer.json), headers, keyCount: 0, message: answer.json.message };
}

/** A listening host as it goes in a URL: the wildcard addresses become loopback, IPv6 in brackets. */
export function urlHost(host: string): string {
  if (host === '0.0.0.0') return '127.0.0.1';
  if (host === '::') return '[::1]';
  return host.includes(':') ? `[${host}]` : host;
}
