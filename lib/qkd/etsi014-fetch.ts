/**
 * An ETSI GS QKD 014 V1.1.1 key-delivery client built on `fetch`, for where Node's http/https are not: a
 * web page, a Worker, Deno, Bun. Same methods, same checks, same errors (`Etsi014Error` with its reason) as
 * the Node client (lib/qkd/etsi014-client.ts); the request building and answer validation are shared
 * (lib/qkd/etsi014-api.ts).
 *
 * Who may call: a KME identifies the calling SAE by its TLS client certificate (clause 4). `fetch` has no
 * portable way to present one, so mutual TLS is left to the runtime: a browser presents a certificate the user
 * has installed, but only on a request with credentials (the Fetch standard's credentials are cookies and TLS
 * client certificates alike): pass `fetchInit: { credentials: 'include' }`, and the KME must allow the page's
 * origin with credentials (CORS); the default, 'omit', sends neither. Deno takes
 * `fetchInit: { client: Deno.createHttpClient({ cert, key }) }`, Bun `fetchInit: { tls: { cert, key } }`, a Worker
 * an mTLS binding (pass its `fetch` as `fetch`). A KME whose certificate is from a CA of its own (`qkd-tls kme`
 * makes one) needs that CA too: `caCerts: [ca]` beside Deno's `cert`, `ca` beside Bun's (both checked against the
 * simulator). Plain HTTP is accepted to a loopback KME only (the simulator's test mode), where `saeId` travels in
 * the X-SAE-ID header. A baseUrl with a user name or password is refused when the client is made (fetch refuses
 * such a URL); other credentials go in `fetchInit.headers`.
 * A page calling a KME on another origin needs that KME to allow it (CORS); the simulator does on loopback.
 * In Node, use the Node client (lib/qkd/etsi014-client.ts) instead: Node's `fetch` presents no client certificate,
 * and it follows NODE_TLS_REJECT_UNAUTHORIZED, which set to 0 turns off the check of the KME's certificate; the
 * Node client always checks it.
 *
 * The calls, their deadline, retries and checks are the shared {@link Etsi014ClientBase}'s (etsi014-calls.ts),
 * as for the Node client; this file carries them over `fetch`.
 *
 * Runtime-neutral: no `node:` imports.
 */
import { thrownMessage } from '../callbacks.js';
import { clip } from '../codec/text.js';
import { Etsi014Error, type Etsi014Operation } from './etsi014-api.js';
import { AnswerCutOffError, AnswerNotHttpError, AnswerTooLargeError, type Etsi014Answer, Etsi014ClientBase, type Etsi014CommonOptions, type Etsi014Request, httpParserFailure, MAX_RESPONSE_BYTES } from './etsi014-calls.js';

export { Etsi014Error, type Etsi014CallOptions, type Etsi014EncKeysRequest, type Etsi014Key } from './etsi014-api.js';

export interface Etsi014FetchClientOptions extends Etsi014CommonOptions {
  /** The fetch to use (default globalThis.fetch): e.g. a Worker's mTLS binding's fetch. */
  readonly fetch?: typeof fetch;
  /**
   * Extra init merged into every request (runtime-specific mTLS: Deno's `client`, Bun's `tls`; a page's
   * `credentials: 'include'`); its `headers`, in any form fetch takes, go out beside the request's own, which win.
   * method, body, signal and redirect are always the client's own; `credentials` is 'omit' unless given here.
   */
  readonly fetchInit?: RequestInit & Record<string, unknown>;
}

export class Etsi014FetchClient extends Etsi014ClientBase {
  private readonly fetchFn: typeof fetch;
  private readonly fetchInit: (RequestInit & Record<string, unknown>) | undefined;

  constructor(options: Etsi014FetchClientOptions) {
    super('Etsi014FetchClient', options);
    // The Fetch standard refuses a request whose URL carries a user name or password, and the runtimes that follow it
    // quote that URL in their error (kept as the cause of every failure): refused here, without quoting it. A KME
    // identifies its SAE by the TLS client certificate (ETSI GS QKD 014 clause 4); other credentials go in
    // fetchInit.headers.
    if (this.baseUrl.username !== '' || this.baseUrl.password !== '') {
      throw new TypeError(
        `Etsi014FetchClient: baseUrl must not hold a user name or password (fetch refuses such a URL): ${this.baseUrl.origin}; ` +
          'a KME knows its SAE by its TLS client certificate, and other credentials go in fetchInit.headers',
      );
    }
    const fetchFn = options.fetch ?? globalThis.fetch;
    if (typeof fetchFn !== 'function') throw new TypeError('Etsi014FetchClient: this runtime has no fetch; pass options.fetch');
    // Called as a plain function: a browser's fetch throws "Illegal invocation" when called as a method.
    this.fetchFn = (input, init) => fetchFn(input, init);
    this.fetchInit = options.fetchInit;
  }

  /** Nothing to release (fetch pools its own connections); here for the same shape as the Node client. */
  close(): void {}

  protected async send({ url, method, headers, body, signal }: Etsi014Request): Promise<Etsi014Answer> {
    let res: Response;
    try {
      res = await this.fetchFn(url, {
        ...this.fetchInit,
        method,
        headers: mergedHeaders(this.fetchInit?.headers, headers),
        body: body ?? null,
        signal,
        // No cookies to a KME by default. In a browser 'omit' withholds the user's TLS client certificate too (Fetch:
        // credentials are both), so a page whose KME wants that certificate passes credentials: 'include' in fetchInit
        // (the doc said the browser used it, with 'omit' always sent; found in a library walkthrough).
        credentials: this.fetchInit?.credentials ?? 'omit',
        // A 3xx is an answer like any other (http_status), never followed, as node:http does for the Node client:
        // following it would fetch keys from a URL nobody checked (plain HTTP off loopback included; ETSI GS QKD
        // 014 clause 4: keys go to the SAE over the authenticated channel to its own KME). Not overridable.
        redirect: 'manual',
      });
    } catch (e) {
      // An answer the runtime's HTTP parser refused (undici: HPE_*, a header section over its bound) is an invalid answer,
      // not a connection failure (etsi014-calls.ts: AnswerNotHttpError); other runtimes' fetch may say only "failed".
      const parser = signal.aborted ? undefined : httpParserFailure(e);
      throw parser === undefined ? e : new AnswerNotHttpError(parser, e);
    }
    try {
      return { status: res.status, text: await readCapped(res, res.status, signal) };
    } catch (e) {
      // Broken once the answer began: the KME has taken the request (not sent again for dec_keys, etsi014-calls.ts).
      if (e instanceof AnswerTooLargeError || signal.aborted) throw e;
      const parser = httpParserFailure(e);
      if (parser !== undefined) throw new AnswerNotHttpError(parser, e);
      throw new AnswerCutOffError(res.status, e);
    }
  }

  /**
   * fetch reports a refused connection, a DNS failure, a TLS failure and a CORS refusal alike. An application's
   * `fetch` may reject with anything, not only an Error (lib/callbacks.ts).
   */
  protected transportFailure(op: Etsi014Operation, e: unknown, attempts: number): Etsi014Error {
    return new Etsi014Error('connection', `cannot reach the KME at ${this.baseUrl.origin} for ${op} (${attempts} attempt(s)): ${failureText(e)}`, op, undefined, undefined, attempts, { cause: e });
  }
}

/**
 * `text` with the user name and password of every URL in it taken out. fetch refuses a URL that carries them and
 * quotes it whole (Node: "Request cannot be constructed from a URL that includes credentials: https://sae:PASSWORD@kme/
 * api/v1/keys/..."; the Fetch standard refuses such a request), and runtimes name the URL in their causes (Deno: "error
 * sending request for url (...)"), so a baseUrl with a password put that password in every failure's message and in
 * whatever logs it. The constructor refuses such a baseUrl now; this stays for URLs a runtime's causes quote.
 */
function withoutUrlCredentials(text: string): string {
  return text.replace(/([A-Za-z][A-Za-z0-9+.-]*:\/\/)[^\s/?#]*@/g, '$1');
}

/**
 * What a failed fetch says, with its causes: Node's and Deno's fetch reject with "fetch failed" alone and put what
 * happened in `cause` ("invalid peer certificate: UnknownIssuer", "connect ECONNREFUSED ..."), so the message said
 * nothing a user could act on (found in a library walkthrough in Deno, with the simulator's private CA). The
 * distinct messages (or codes) down the cause chain, at most four, joined with ': ', without the credentials of any
 * URL they quote (withoutUrlCredentials).
 */
function failureText(e: unknown): string {
  const parts = [withoutUrlCredentials(thrownMessage(e))];
  let cause = e instanceof Error ? e.cause : undefined;
  for (let depth = 0; cause !== undefined && cause !== null && depth < 3; depth++) {
    const code = (cause as { code?: unknown }).code;
    // (Credentials out before clipping: a URL cut short before its "@" would keep part of its password.)
    const said = cause instanceof Error ? cause.message || (typeof code === 'string' ? code : '') : thrownMessage(cause);
    const text = withoutUrlCredentials(said);
    if (text && !parts.some((p) => p.includes(text))) parts.push(clip(text, 500));
    cause = cause instanceof Error ? cause.cause : undefined;
  }
  return parts.join(': ');
}

/**
 * fetchInit's headers in any form fetch takes (a Headers, a list of pairs, a record), under the request's own:
 * spreading a Headers or a list as a record would drop them.
 */
function mergedHeaders(extra: RequestInit['headers'], own: Record<string, string>): Headers {
  const merged = new Headers(extra);
  for (const [name, value] of Object.entries(own)) merged.set(name, value);
  return merged;
}

/**
 * Reads the body as text, refusing more than MAX_RESPONSE_BYTES (an invalid answer, not retried: etsi014-calls.ts);
 * the bytes (which may hold keys) are wiped, also those of an answer that fails part way (cut off, past the deadline).
 * When `signal` fires the body is cancelled: a body that does not end with the signal (an application's fetch, a
 * Response of its own making) was read without end, and what it had delivered was never wiped.
 */
async function readCapped(res: Response, status: number, signal: AbortSignal): Promise<string> {
  if (!res.body) return '';
  const reader = res.body.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  const cancel = (): void => void reader.cancel(signal.reason).catch(() => {});
  signal.addEventListener('abort', cancel, { once: true });
  try {
    for (;;) {
      const read = reader.read();
      // A fetch that does not pass the signal on may answer after it fired (the call has failed with 'timeout'
      // already): the listener above never runs then, and a body that stalls was read without end. It is cancelled
      // here, after the read is asked for: a chunk the body holds goes to that read (and is wiped below); cancelling
      // first would drop it unwiped.
      if (signal.aborted) cancel();
      const { value, done } = await read;
      // (A body cancelled by the signal ends as if whole: what it delivered is wiped, not taken for the answer.)
      if (signal.aborted) {
        value?.fill(0);
        throw signal.reason;
      }
      if (done) break;
      size += value.length;
      if (size > MAX_RESPONSE_BYTES) {
        value.fill(0);
        await reader.cancel();
        throw new AnswerTooLargeError(status);
      }
      chunks.push(value);
    }
  } catch (e) {
    for (const c of chunks) c.fill(0);
    throw e;
  } finally {
    signal.removeEventListener('abort', cancel);
  }
  const all = new Uint8Array(size);
  let at = 0;
  for (const c of chunks) {
    all.set(c, at);
    at += c.length;
    c.fill(0);
  }
  const text = new TextDecoder().decode(all);
  all.fill(0);
  return text;
}
