/**
 * A client for the ETSI GS QKD 014 V1.1.1 key delivery API: how an application endpoint (an SAE) gets
 * QKD keys from its key manager (KME).
 *
 * The TLS client is the MASTER SAE: `encKeys(serverSaeId)` asks its KME for new keys, which come back with
 * key IDs; it names those IDs to the server in-band (in the PSK identity). The TLS server is the SLAVE SAE:
 * `decKeys(clientSaeId, ids)` asks its own KME for the same keys by ID. A KME hands each key to each side
 * once. The channel is HTTPS with a client certificate that names the SAE (clause 4); plain HTTP is accepted
 * only to a loopback address (the simulator's test mode, where `saeId` travels in the X-SAE-ID header).
 *
 * The calls, their deadline, retries and checks are the shared {@link Etsi014ClientBase}'s (etsi014-calls.ts);
 * this file carries them over node:http/https with the SAE's client certificate. Connections are kept alive
 * and reused; call `close()` when done.
 */
import { Agent as HttpAgent, request as httpRequest, type IncomingMessage } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import { X509Certificate } from 'node:crypto';
import { createSecureContext } from 'node:tls';
import { Etsi014Error, type Etsi014Operation } from './etsi014-api.js';
import { AnswerCutOffError, AnswerNotHttpError, AnswerTooLargeError, type Etsi014Answer, Etsi014ClientBase, type Etsi014CommonOptions, type Etsi014Request, httpParserFailure, MAX_RESPONSE_BYTES } from './etsi014-calls.js';

export {
  Etsi014Error,
  type Etsi014CallOptions,
  type Etsi014EncKeysRequest,
  type Etsi014FailureReason,
  type Etsi014Key,
} from './etsi014-api.js';

export interface Etsi014ClientOptions extends Etsi014CommonOptions {
  /**
   * CA certificate(s) that issued the KME's server certificate, PEM. Default: Node's public CAs. One that holds no
   * certificate (an empty file read) is a TypeError, never taken as the default.
   */
  readonly ca?: string | Buffer | (string | Buffer)[];
  /** This SAE's client certificate and its private key, PEM: the KME reads the SAE ID from it. */
  readonly cert?: string | Buffer;
  readonly key?: string | Buffer;
  /** Most connections kept open to the KME (default 4). */
  readonly maxSockets?: number;
}

export class Etsi014Client extends Etsi014ClientBase {
  private readonly agent: HttpAgent;

  constructor(options: Etsi014ClientOptions) {
    super('Etsi014Client', options);
    if ((options.cert === undefined) !== (options.key === undefined)) {
      throw new TypeError('Etsi014Client: cert and key go together (the SAE client certificate and its private key)');
    }
    // A certificate and key that do not go together (or are not PEM) are refused now: each request failed on them,
    // after its retries, as "cannot reach the KME ... key values mismatch" (found in a README walkthrough).
    if (this.secure && options.cert !== undefined) checkCertAndKey(options.cert, options.key!);
    // A ca that holds no certificate is refused now: Node takes an empty one ('': an empty --kme-ca file) as no ca at
    // all and checks the KME against its public CAs instead (a silent fallback from the CA named to every CA Node
    // trusts), and any other as an empty trust store (each request failed as "self-signed certificate in chain").
    if (this.secure && options.ca !== undefined) checkCa(options.ca);
    const maxSockets = Math.floor(this.positive(options.maxSockets, 4, 'maxSockets', 1));
    // rejectUnauthorized is said, not left to its default: Node's default follows NODE_TLS_REJECT_UNAUTHORIZED, and with
    // that set to 0 (for some other tool, in a shell or a container) keys were fetched from a KME whose certificate
    // nothing had checked, a man in the middle's included (clause 4: keys travel to the SAE over the authenticated
    // channel to its own KME).
    this.agent = this.secure
      ? new HttpsAgent({ keepAlive: true, maxSockets, ca: options.ca, cert: options.cert, key: options.key, minVersion: 'TLSv1.2', rejectUnauthorized: true })
      : new HttpAgent({ keepAlive: true, maxSockets });
  }

  /** Closes the kept-alive connections. */
  close(): void {
    this.agent.destroy();
  }

  /** Sends one request and reads the whole answer (capped at 4 MiB). */
  protected send({ url, method, headers, body, signal }: Etsi014Request): Promise<Etsi014Answer> {
    const payload = body === undefined ? undefined : Buffer.from(body);
    const all: Record<string, string | number> = { ...headers, 'user-agent': 'qkd-tls' };
    if (payload) all['content-length'] = payload.length;
    const request = this.secure ? httpsRequest : httpRequest;
    return new Promise((resolve, reject) => {
      const chunks: Buffer[] = [];
      // The part of an answer read before it failed (cut off, reset, past the deadline) may carry keys (base64), as a
      // whole one does: wiped. An answer node:http's parser refused (HPE_*, on the request or on the answer) is an
      // invalid answer, not a connection failure (etsi014-calls.ts: AnswerNotHttpError).
      const fail = (e: unknown): void => {
        for (const k of chunks.splice(0)) k.fill(0);
        const parser = httpParserFailure(e);
        reject(parser === undefined ? e : new AnswerNotHttpError(parser, e));
      };
      const req = request(url, { method, headers: all, agent: this.agent, signal }, (res: IncomingMessage) => {
        let size = 0;
        res.on('data', (c: Buffer) => {
          size += c.length;
          if (size > MAX_RESPONSE_BYTES) {
            c.fill(0);
            fail(new AnswerTooLargeError(res.statusCode ?? 0)); // an invalid answer, not retried (etsi014-calls.ts)
            res.destroy();
            return;
          }
          chunks.push(c);
        });
        // Broken once the answer began: the KME has taken the request (not sent again for dec_keys, etsi014-calls.ts).
        const cutOff = (e: unknown): void => fail(new AnswerCutOffError(res.statusCode ?? 0, e));
        res.on('error', cutOff);
        res.on('end', () => {
          const buf = Buffer.concat(chunks);
          const text = buf.toString('utf8');
          buf.fill(0); // the answer may carry keys (base64)
          for (const c of chunks) c.fill(0);
          resolve({ status: res.statusCode ?? 0, text });
        });
        res.on('close', () => {
          if (!res.complete) cutOff(new Error('the connection closed before the whole answer arrived'));
        });
      });
      req.on('error', fail);
      req.end(payload);
    });
  }

  /** A TLS failure (not retried: a wrong CA or certificate will not fix itself) or a connection failure. */
  protected transportFailure(op: Etsi014Operation, e: unknown, attempts: number): Etsi014Error {
    const origin = this.baseUrl.origin;
    const err = e as NodeJS.ErrnoException & { reason?: unknown };
    const code = typeof err?.code === 'string' ? err.code : '';
    if (TLS_CODES.test(code)) {
      // OpenSSL errors carry a short `reason` ("tlsv13 alert certificate required"); the message is a dump.
      const why = typeof err.reason === 'string' ? err.reason : err.message;
      return new Etsi014Error('tls', `TLS with the KME at ${origin} failed: ${why} (${code}); check ca, cert and key`, op, undefined, undefined, attempts, { cause: e });
    }
    // The scheme that does not match the KME's (found in a README walkthrough: `qkd-tls kme` speaks HTTPS unless
    // --insecure-http): a plain HTTP request to an HTTPS KME is hung up on; a TLS hello to a plain HTTP KME fails
    // with OpenSSL's "wrong version number" and a dump of its internals.
    if (this.secure && code === 'EPROTO' && /wrong version number/i.test(String(err.message))) {
      return new Etsi014Error('tls', `TLS with the KME at ${origin} failed: it does not answer in TLS (wrong version number); is it a plain http:// KME?`, op, undefined, undefined, attempts, { cause: e });
    }
    const what = code ? `${code}: ${err.message}` : String(err?.message ?? e);
    const scheme = !this.secure && code === 'ECONNRESET' ? '; if the KME speaks HTTPS, use an https:// URL' : '';
    return new Etsi014Error('connection', `cannot reach the KME at ${origin} for ${op} (${attempts} attempt(s)): ${what}${scheme}`, op, undefined, undefined, attempts, { cause: e });
  }
}

/**
 * Throws a TypeError when OpenSSL cannot use `cert` with `key` (not PEM, or the key is not the certificate's), or when
 * either is empty: Node takes an empty one ('': an empty --kme-cert or --kme-key file) as none given and presents no
 * client certificate, so the KME (clause 4: it knows the SAE by that certificate) turned each request away with only
 * "certificate required".
 */
function checkCertAndKey(cert: string | Buffer, key: string | Buffer): void {
  for (const [name, v] of [['cert', cert], ['key', key]] as const) {
    if ((typeof v === 'string' ? v : Buffer.from(v).toString('latin1')).trim() === '') {
      throw new TypeError(`Etsi014Client: ${name} is empty: give this SAE's client certificate and its private key, PEM (the KME knows the SAE by them)`);
    }
  }
  try {
    createSecureContext({ cert, key });
  } catch (e) {
    const err = e as { code?: unknown; reason?: unknown; message?: unknown };
    const why = typeof err.reason === 'string' ? err.reason : String(err.message);
    const hint = err.code === 'ERR_OSSL_X509_KEY_VALUES_MISMATCH' ? 'the key is not the certificate\'s' : 'both must be PEM: the certificate, then its private key';
    throw new TypeError(`Etsi014Client: cert and key cannot be used: ${why} (${hint})`);
  }
}

/**
 * Throws a TypeError unless every entry of `ca` holds a PEM certificate and every certificate in it can be read
 * (ETSI GS QKD 014 clause 4: the SAE authenticates its KME; the CA given is the one that decides).
 */
function checkCa(ca: string | Buffer | (string | Buffer)[]): void {
  const entries = Array.isArray(ca) ? ca : [ca];
  if (entries.length === 0) throw new TypeError('Etsi014Client: ca is an empty list: give the CA certificate(s) that issued the KME\'s certificate, PEM (or no ca for Node\'s public CAs)');
  entries.forEach((entry, i) => {
    const which = entries.length > 1 ? ` entry #${i + 1}` : '';
    const text = typeof entry === 'string' ? entry : entry instanceof Uint8Array ? Buffer.from(entry).toString('latin1') : '';
    // The PEM types OpenSSL reads a CA from (PEM_read_bio_X509_AUX, as Node does): CERTIFICATE, X509 CERTIFICATE and
    // TRUSTED CERTIFICATE (`openssl x509 -trustout`); the first is the usual one and is read here as a check.
    const blocks = text.match(/-----BEGIN (?:X509 |TRUSTED )?CERTIFICATE-----[^-]*-----END (?:X509 |TRUSTED )?CERTIFICATE-----/g) ?? [];
    if (blocks.length === 0) {
      throw new TypeError(
        `Etsi014Client: ca${which} holds no PEM certificate (-----BEGIN CERTIFICATE-----)${text.trim() === '' ? ', it is empty' : ''}: ` +
          'give the CA certificate that issued the KME\'s certificate (an empty ca would have Node trust its public CAs instead)',
      );
    }
    for (const block of blocks.filter((b) => b.startsWith('-----BEGIN CERTIFICATE-----'))) {
      try {
        new X509Certificate(block);
      } catch (e) {
        throw new TypeError(`Etsi014Client: ca${which} holds a certificate that cannot be read: ${(e as Error).message}`);
      }
    }
  });
}

const TLS_CODES = /^(ERR_SSL_|ERR_TLS_|UNABLE_TO_|CERT_|DEPTH_ZERO_SELF_SIGNED_CERT|SELF_SIGNED_CERT_IN_CHAIN|HOSTNAME_MISMATCH)/;
