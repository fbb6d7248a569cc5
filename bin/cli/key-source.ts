/**
 * Where the commands get their pre-shared keys:
 *
 *  - static:  `--psk HEX --identity STR` (repeatable, paired in order), or `--psk-file F` (one key a line);
 *             `--psk-hash` SHA-256 (default, as OpenSSL and GnuTLS assume) or SHA-384. Long-term keys.
 *  - QKD:     `--kme URL --sae-id ID --peer-sae-id ID [--kme-ca F --kme-cert F --kme-key F]`: one fresh key per
 *             connection from an ETSI GS QKD 014 key manager; the client gets it with enc_keys and names its
 *             key ID in the PSK identity, the server fetches the same key with dec_keys.
 *  - `--importer [--context STR]` imports each key with RFC 9258 (one PSK per target KDF of the offered suites).
 *
 * QKD keys are wiped once the handshake is over (after the handshake timeout at the latest).
 */
import { statSync } from 'node:fs';
import { type AsyncPskResolver, createNodeProvider } from 'qkd-tls/node';
import {
  type CryptoProvider,
  DEFAULT_SUITES,
  type HashName,
  importedResolver,
  type ImportOptions,
  importPsk,
  nobleProvider,
  plainPsk,
  type Psk,
  type PskLease,
  MIN_PSK_BYTES,
  type SourcedKey,
  SUITES,
  type SupportedSuiteName,
  takePsks,
  targetKdfsForHashes,
} from 'qkd-tls';
import {
  Etsi014Client,
  Etsi014ClientSource,
  Etsi014ServerSource,
  type Etsi014SourceEvent,
  MAX_OPTION_FILE_BYTES,
  parseKeyFile,
  readTextFileBounded,
  releaseAfter,
} from 'qkd-tls/qkd';
import { Reporter } from './report.js';
import { parseTime, TIME_UNITS } from './duration.js';
import { handshakeTimeoutMs, UsageError } from './tls-options.js';
import { releasingServerResolver } from './server-key-release.js';

export const KEY_SOURCE_OPTION_SPEC = {
  psk: { type: 'string', multiple: true },
  identity: { type: 'string', multiple: true },
  'psk-hash': { type: 'string' },
  'psk-file': { type: 'string' },
  kme: { type: 'string' },
  'sae-id': { type: 'string' },
  'peer-sae-id': { type: 'string', multiple: true },
  'kme-ca': { type: 'string' },
  'kme-cert': { type: 'string' },
  'kme-key': { type: 'string' },
  'kme-timeout': { type: 'string' },
  'kme-pool': { type: 'string' },
  'key-lifetime': { type: 'string' },
  'key-bits': { type: 'string' },
  'offer-keys': { type: 'string' },
  importer: { type: 'boolean' },
  context: { type: 'string' },
} as const;

export const KEY_SOURCE_HELP = `Key source (one of):
  --psk HEX --identity STR   a static pre-shared key (hex, at least 16 bytes: RFC 9257 §6) and the identity
                             that names it; repeat both to offer (client) or accept (server) several
  --psk-file FILE            static keys from FILE, one "IDENTITY HEXKEY [SHA-256|SHA-384] [PRIORITY]" a line
                             (each key at least 16 bytes)
  --kme URL                  QKD keys from this ETSI GS QKD 014 key manager (KME): the client's own KME
                             (enc_keys), or the server's own KME (dec_keys)
    --sae-id ID              this endpoint's SAE ID at its KME
    --peer-sae-id ID         the other endpoint's SAE ID (a server may repeat it to accept several clients)
    --kme-ca F --kme-cert F --kme-key F
                             mutual TLS with an https:// KME: its CA (default: the system's), this SAE's
                             certificate and key (PEM files); plain http:// only to a loopback KME (a simulator)
    --kme-timeout T          give up on a KME request after T, retries included: milliseconds, or with a
                             unit: ${TIME_UNITS} (default 5s; at most 10m)
    --kme-pool N             (client) keep N keys fetched ahead of time (default 0: fetch per connection)
    --key-lifetime T         (client) wipe a pooled key not used within T: milliseconds, or with a unit:
                             ${TIME_UNITS} (default 60s; at most 24h)
    --key-bits N             (client) key size to ask the KME for, in bits (at least 128, RFC 9257 §6; default: the KME's)
    --offer-keys N           (client) offer N keys per connection; the server uses the first it can get (default 1)
  --psk-hash NAME            the hash the keys are bound to: SHA-256 (default) or SHA-384 (with
                             --psk-file: of the lines that name no hash of their own)
  --importer                 import each key with RFC 9258 (one identity per target KDF of the offered
                             suites); both sides must use it
  --context STR              the RFC 9258 ImportedIdentity context (sent in clear; both sides must agree)`;

export interface KeySource {
  /** Client: the keys to offer on one new connection. */
  clientPsks(): Promise<readonly Psk[]>;
  /** Server: static keys, or an asynchronous lookup by identity. */
  readonly server: readonly Psk[] | AsyncPskResolver;
  /** One line for logs (never key material). */
  readonly description: string;
  /** Client: wipes the keys of a list that `clientPsks()` returned, once its handshake is over (optional). */
  release?(psks: readonly Psk[]): void;
  close(): void;
}

export interface KeySourceHooks {
  /** The crypto backend for the importer (default: from --provider, as the TLS options). */
  readonly crypto?: CryptoProvider;
  /** Receives the key manager events (default: refusals reported on stderr). */
  readonly onKmeEvent?: (event: Etsi014SourceEvent) => void;
  /** The side the keys are for, when known: a client's options are then checked at once, not at its first key. */
  readonly role?: 'client' | 'server';
  /**
   * Which of `values` were set for this endpoint itself (default: all, as flags are). A proxy config's global
   * section holds defaults for services with any key source: those are not refused below.
   */
  readonly given?: (field: string) => boolean;
}

/** The options that only a key manager source (--kme) uses: indented under --kme in the help. */
const KME_ONLY_OPTIONS = ['sae-id', 'peer-sae-id', 'kme-ca', 'kme-cert', 'kme-key', 'kme-timeout', 'kme-pool', 'key-lifetime', 'key-bits', 'offer-keys'] as const;

export function parseKeySource(values: Record<string, unknown>, hooks: KeySourceHooks = {}): KeySource {
  const str = (k: string): string | undefined => values[k] as string | undefined;
  const hashName = str('psk-hash') ?? 'SHA-256';
  if (hashName !== 'SHA-256' && hashName !== 'SHA-384') throw new UsageError('--psk-hash must be SHA-256 or SHA-384');
  const hash: HashName = hashName;
  const kinds = [(values.psk as string[] | undefined)?.length ? '--psk' : '', str('psk-file') ? '--psk-file' : '', str('kme') ? '--kme' : ''].filter(Boolean);
  if (kinds.length === 0) throw new UsageError('a key source is required: --psk HEX --identity STR, --psk-file FILE, or --kme URL');
  if (kinds.length > 1) throw new UsageError(`give one key source, not ${kinds.join(' and ')}`);
  // With static keys they were accepted and ignored without a word (`--psk ... --kme-pool 8` ran with no pool).
  const given = hooks.given ?? (() => true);
  const kmeOnly = kinds[0] === '--kme' ? undefined : KME_ONLY_OPTIONS.find((f) => values[f] !== undefined && given(f));
  if (kmeOnly) throw new UsageError(`--${kmeOnly} goes with --kme (keys from a key manager); the keys here come from ${kinds[0]}`);
  const importer = flag(values.importer);
  if (str('context') !== undefined && !importer) throw new UsageError('--context goes with --importer');
  const importOptions: ImportOptions | undefined = importer
    ? { context: str('context') ?? '', targetKdfs: targetKdfsForHashes(suiteHashes(str('suites'))) }
    : undefined;
  const crypto = hooks.crypto ?? (str('provider') === 'noble' || (str('provider') === undefined && process.env.QKD_TLS_CRYPTO === 'noble') ? nobleProvider : createNodeProvider());
  if (str('kme')) return kmeKeySource(values, hash, importOptions, crypto, hooks);

  let keys: SourcedKey[];
  if (str('psk-file')) {
    for (const f of ['psk', 'identity']) if (values[f] !== undefined) throw new UsageError(`--${f} does not go with --psk-file`);
    try {
      // --psk-hash is the hash of the lines that name none; a line's own stays (it was overridden without a word).
      keys = parseKeyFile(readTextFileBounded(str('psk-file')!, MAX_OPTION_FILE_BYTES), str('psk-file'), hash);
    } catch (e) {
      throw new UsageError(`--psk-file: ${(e as Error).message}`);
    }
    for (const k of keys) {
      if (k.secret.length < MIN_PSK_BYTES) {
        const problem = `--psk-file: the key of '${k.label}' ${tooShort(k.secret)}`;
        for (const w of keys) w.secret.fill(0);
        throw new UsageError(problem);
      }
    }
    const exposed = keyFileExposure(str('psk-file')!);
    if (exposed) new Reporter(values.json === true).event('warning', { option: '--psk-file', file: str('psk-file')!, message: exposed });
  } else {
    keys = staticKeys(values, hash);
  }
  const names = keys.map((k) => k.label!).join(', ');
  if (importOptions) {
    // Long-term keys imported once: the same PSKs for every connection (RFC 9258 §4: only through the importer).
    const psks = keys.flatMap((k) => importPsk(crypto, k, importOptions));
    const resolve = importedResolver(crypto, keys, { context: importOptions.context });
    return {
      clientPsks: async () => psks,
      server: async (request) => resolve(request),
      description: `static key${keys.length > 1 ? 's' : ''} (${names}), imported (RFC 9258)`,
      close() {},
    };
  }
  const psks = keys.map(plainPsk);
  return {
    clientPsks: async () => psks,
    server: psks,
    description: `static PSK${psks.length > 1 ? 's' : ''} (${names})`,
    close() {},
  };
}

function staticKeys(values: Record<string, unknown>, hash: HashName): SourcedKey[] {
  const hexes = (values.psk as string[] | undefined) ?? [];
  const ids = (values.identity as string[] | undefined) ?? [];
  if (hexes.length !== ids.length) throw new UsageError(`${hexes.length} --psk but ${ids.length} --identity: give them in pairs`);
  // The identity is how the server finds the key (RFC 8446 §4.2.11): a second key under the same one was never
  // used (a server looked up the first; a client offered both, and the server checked the first's binder). A
  // --psk-file refuses it (lib/psk/key-file.ts); the flags took it without a word.
  const twice = ids.findIndex((id, i) => ids.indexOf(id) !== i);
  if (twice >= 0) throw new UsageError(`--identity #${twice + 1}: '${ids[twice]}' is given twice (each --psk needs an identity of its own)`);
  return hexes.map((h, i) => {
    let secret: Uint8Array;
    const digits = h.replace(/\s+/g, '');
    if (digits.length % 2 !== 0 || /[^0-9a-fA-F]/.test(digits)) throw new UsageError(`--psk #${i + 1}: not hex`);
    // Our own array; the decoded Buffer is wiped: a small one comes from Node's shared pool, where it would stay.
    const decoded = Buffer.from(digits, 'hex');
    secret = new Uint8Array(decoded);
    decoded.fill(0);
    if (secret.length === 0) throw new UsageError(`--psk #${i + 1} is empty`);
    if (secret.length < MIN_PSK_BYTES) throw new UsageError(`--psk #${i + 1} ${tooShort(secret)}`);
    if (ids[i].length === 0) throw new UsageError(`--identity #${i + 1} is empty`);
    return { identity: new TextEncoder().encode(ids[i]), secret, hash, label: ids[i] };
  });
}

/**
 * What is wrong with the permissions of a key file (`--psk-file`, or a proxy configuration file holding `psk` lines:
 * `file` names it in the message), or undefined: its keys authenticate this endpoint
 * and every peer that holds them, so a file that any user of the machine can read (a key file written with the
 * default umask is mode 0644), or that others than its owner can write (and so replace the keys), gives them away.
 * The file was used without a word (lib/qkd/file-source.ts: "should be readable by its owner only"). A warning, not
 * a refusal, as stunnel and wg warn (a group that must read it, mode 0640, is not warned about). POSIX modes only.
 */
export function keyFileExposure(path: string, file = 'the key file'): string | undefined {
  if (process.platform === 'win32') return undefined;
  let mode: number;
  try {
    mode = statSync(path).mode;
  } catch {
    return undefined; // read a moment ago; gone since (its keys are read already)
  }
  const what = [mode & 0o004 ? 'read by any user of this machine' : '', mode & 0o022 ? 'written by others than its owner' : ''].filter(Boolean).join(' and ');
  if (!what) return undefined;
  return `${file} can be ${what} (mode ${(mode & 0o777).toString(8).padStart(4, '0')}): its keys authenticate this endpoint and its peers; chmod 600 it (640 for a group that must read it)`;
}

/**
 * RFC 9257 §6: "Each PSK ... MUST be at least 128 bits long" (a shorter one falls to an offline search against a
 * binder). The library refuses one too (dangerouslyAllowShortPsks); the command line has no way around it.
 */
function tooShort(secret: Uint8Array): string {
  return `is ${secret.length} bytes: a PSK must be at least ${MIN_PSK_BYTES} bytes (128 bits, RFC 9257 §6)`;
}

/** QKD keys from an ETSI 014 KME: the client source is made on first use, the server resolver at once. */
function kmeKeySource(
  values: Record<string, unknown>,
  hash: HashName,
  importOptions: ImportOptions | undefined,
  crypto: CryptoProvider,
  hooks: KeySourceHooks,
): KeySource {
  const str = (k: string): string | undefined => values[k] as string | undefined;
  for (const f of ['psk', 'identity']) if (values[f] !== undefined) throw new UsageError(`--${f} does not go with --kme`);
  const url = str('kme')!;
  // The URL's scheme first: `--kme 127.0.0.1:8443` was "Invalid URL", and `--kme localhost:8443` (which URL reads
  // as the scheme "localhost:") "baseUrl must be https: (got localhost:)".
  if (!/^https?:\/\/[^/]/i.test(url)) {
    throw new UsageError(`--kme: expected the KME's URL, https://HOST:PORT (or http://127.0.0.1:PORT for a simulator on this machine), got "${url.slice(0, 200)}"`);
  }
  const saeId = str('sae-id');
  const peers = (values['peer-sae-id'] as string[] | undefined) ?? [];
  if (!saeId) throw new UsageError('--kme needs --sae-id (this endpoint\'s SAE ID at its KME)');
  if (peers.length === 0 || peers.some((p) => p === '')) throw new UsageError('--kme needs --peer-sae-id (the other endpoint\'s SAE ID)');
  if (hooks.role === 'client' && peers.length > 1) throw new UsageError(ONE_PEER_FOR_A_CLIENT);
  const tlsFiles = ['kme-ca', 'kme-cert', 'kme-key'].filter((f) => str(f) !== undefined);
  const read = (f: string): string | undefined => {
    if (str(f) === undefined) return undefined;
    try {
      return readTextFileBounded(str(f)!, MAX_OPTION_FILE_BYTES); // --kme-key is a private key: its bytes are wiped
    } catch (e) {
      throw new UsageError(`--${f}: cannot read ${str(f)}: ${(e as Error).message}`);
    }
  };
  // Over plain HTTP they were read and then ignored without a word: a reader could believe the KME link was TLS.
  if (tlsFiles.length > 0 && /^http:/i.test(url)) {
    throw new UsageError(`${tlsFiles.map((f) => `--${f}`).join(', ')}: for an https:// KME; this one is http:// (plain HTTP, a simulator on this machine)`);
  }
  if (tlsFiles.length > 0 && (str('kme-cert') === undefined) !== (str('kme-key') === undefined)) {
    throw new UsageError('--kme-cert and --kme-key go together');
  }
  const timeoutMs = time(values, 'kme-timeout', 600_000) ?? 5000;
  const handshakeTimeout = handshakeTimeoutMs(values) || 30_000;
  // Read before the client is made: a file that cannot be read is its own option's error ("--kme: --kme-ca: ...").
  const [ca, cert, key] = [read('kme-ca'), read('kme-cert'), read('kme-key')];
  let client: Etsi014Client;
  try {
    client = new Etsi014Client({ baseUrl: url, saeId, ca, cert, key, timeoutMs });
  } catch (e) {
    throw new UsageError(`--kme: ${(e as Error).message}`);
  }
  const report = new Reporter(values.json === true);
  const onEvent =
    hooks.onKmeEvent ??
    ((e: Etsi014SourceEvent) => {
      if (e.type === 'refused') report.event('key-refused', { keyId: e.keyId, reason: e.reason, message: e.message });
    });
  // Keys are wiped when the handshake that used them is over (releasingServerResolver); this timer, a second past
  // the handshake timeout, is the backstop for a lease whose handshake ends unseen.
  const wipeLater = releaseAfter(handshakeTimeout + 1000);
  const leases = new Map<readonly Psk[], PskLease>();

  const poolSize = int(values, 'kme-pool', 0, 10_000) ?? 0;
  const keyBits = int(values, 'key-bits', 128, 1 << 16, 'bits');
  if (keyBits !== undefined && keyBits % 8 !== 0) throw new UsageError('--key-bits must be a multiple of 8');
  const offer = int(values, 'offer-keys', 1, 64) ?? 1;
  // Checked now: the client source is made at the first connection, where a bad value failed every connection.
  const keyLifetimeMs = time(values, 'key-lifetime', 86_400_000) ?? 60_000;
  let clientSource: Etsi014ClientSource | undefined;
  const clientSide = (): Etsi014ClientSource => {
    if (peers.length > 1) throw new UsageError(ONE_PEER_FOR_A_CLIENT);
    clientSource ??= new Etsi014ClientSource({
      client,
      peerSaeId: peers[0],
      saeId,
      keySize: keyBits,
      poolSize,
      keyLifetimeMs,
      hash,
      onEvent,
    });
    return clientSource;
  };
  const serverSource = new Etsi014ServerSource({ client, peerSaeIds: peers, hash, onEvent });
  // Wiped when the handshake that used them is over; wipeLater is the backstop.
  const resolver = releasingServerResolver(crypto, serverSource, {
    importer: importOptions ? { context: importOptions.context } : undefined,
    backstop: wipeLater,
  });

  return {
    async clientPsks() {
      const o = await takePsks(crypto, clientSide(), { count: offer, importer: importOptions });
      leases.set(o.psks, o);
      wipeLater({
        psks: o.psks,
        release: () => {
          leases.delete(o.psks);
          o.release();
        },
      });
      return o.psks;
    },
    server: resolver,
    description: `QKD keys from ${client.location} (SAE ${saeId}, peer ${peers.join(', ')})${importOptions ? ', imported (RFC 9258)' : ''}`,
    release(psks) {
      leases.get(psks)?.release();
      leases.delete(psks);
    },
    close() {
      clientSource?.close();
      serverSource.close();
      wipeLater.releaseAll();
      leases.clear();
      client.close();
    },
  };
}

const ONE_PEER_FOR_A_CLIENT = 'a client takes one --peer-sae-id (the server\'s SAE)';

/** The hashes of the suites named by --suites (default: the default suites). */
function suiteHashes(list: string | undefined): HashName[] {
  const names = list === undefined ? DEFAULT_SUITES : (list.split(',').map((s) => s.trim()).filter(Boolean) as SupportedSuiteName[]);
  const hashes = names.filter((n) => Object.hasOwn(SUITES, n)).map((n) => SUITES[n].hash);
  return hashes.length > 0 ? hashes : ['SHA-256'];
}

function flag(v: unknown): boolean {
  return v === true || v === 'yes' || v === 'true' || v === '1';
}

/** `--NAME N`, an integer from min to max; the message names the unit. */
function int(values: Record<string, unknown>, name: string, min: number, max: number, unit?: string): number | undefined {
  const v = values[name] as string | undefined;
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isInteger(n) || n < min || n > max) throw new UsageError(`--${name} must be an integer from ${min} to ${max}${unit ? ` (${unit})` : ''}, got "${v}"`);
  return n;
}

/**
 * `--NAME T` in milliseconds, from 1 ms to `maxMs`: a bare number is milliseconds, as it always was; 5s, 1m ... as
 * every time option takes (`--kme-timeout 5s` was refused while the proxy's --idle-timeout took "5m").
 */
function time(values: Record<string, unknown>, name: string, maxMs: number): number | undefined {
  const v = values[name] as string | undefined;
  return v === undefined ? undefined : parseTime(name, v, { bareUnit: 'ms', minMs: 1, maxMs });
}
