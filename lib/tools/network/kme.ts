/**
 * ETSI GS QKD 014 at every node of a simulated QKD network: node N's key manager (KME) serves the SAEs
 * attached to N. An SAE at node A calls `enc_keys` with the ID of an SAE at node C; the network relays fresh
 * keys from A to C over the route its controller picks; the SAE at C calls `dec_keys` at node C's KME with the
 * master SAE's ID and the key IDs, and gets the same keys, each once.
 *
 * The request checks and answers are those of the single-link simulator ({@link handleKmeRequest}): for each
 * request this module frames the caller and the SAE named in the path as the master/slave pair of a "link"
 * whose key store is the network's relay for that pair. When the network cannot relay (no route: a link cut,
 * compromised or out of key) `enc_keys` answers 503 with an Error body (clause 6.5) saying why.
 *
 * Runtime-neutral: no `node:` imports.
 */
import { clip } from '../../codec/text.js';
import { etsi014Path } from '../../qkd/etsi014-api.js';
import { handleKmeRequest, type KmeEndpoint, type KmeKeyStore, type KmeLimits, type KmeRequest, type KmeResponse } from '../kme/handler.js';
import type { IssueResult, RedeemResult } from '../kme/store.js';
import type { QkdNetwork } from './network.js';

/** Limits of every node's KME (the single-link simulator's defaults, with max_key_count per SAE pair). */
export const DEFAULT_NETWORK_KME_LIMITS: Readonly<KmeLimits> = Object.freeze({
  keySize: 256,
  minKeySize: 64,
  maxKeySize: 1024,
  maxKeysPerRequest: 128,
  maxKeyCount: 1024,
});

const ROUTE_RE = /^\/api\/v1\/keys\/([^/]*)\/(status|enc_keys|dec_keys)$/;
/** Stands in for an SAE the network does not know, so the handler's checks answer 401 "no QKD link". */
const UNKNOWN_PEER = '\u0000unknown SAE';

/** One request to node `node`'s KME; `req.path` is the path below the node's base URL. */
export function handleNetworkKmeRequest(network: QkdNetwork, node: string, req: KmeRequest, limits: KmeLimits = DEFAULT_NETWORK_KME_LIMITS): KmeResponse {
  const m = ROUTE_RE.exec(req.path);
  const op = m?.[2];
  let pathSae = '';
  try {
    pathSae = m ? decodeURIComponent(m[1]) : '';
  } catch {
    // the handler answers 400 for bad percent-encoding
  }
  const caller = req.callerSaeId;
  const own = caller !== undefined && network.nodeOfSae(caller) === node ? caller : (network.saesOf(node)[0] ?? '\u0000no SAE');
  const peerKnown = pathSae !== '' && network.nodeOfSae(pathSae) !== undefined && pathSae !== own;
  // An unknown SAE in the path gets a stand-in that can never equal it, so the handler answers 401.
  const unknownPeer = pathSae === UNKNOWN_PEER ? `${UNKNOWN_PEER}!` : UNKNOWN_PEER;
  const peer = peerKnown ? pathSae : pathSae === own || pathSae.trim() === '' ? pathSae : unknownPeer;
  const role = op === 'dec_keys' ? 'slave' : 'master';
  const masterSaeId = role === 'master' ? own : peer;
  const slaveSaeId = role === 'master' ? peer : own;
  const kme: KmeEndpoint = {
    role,
    kmeId: node,
    peerKmeId: (peerKnown && network.nodeOfSae(pathSae)) || 'unknown',
    masterSaeId,
    slaveSaeId,
    limits,
  };
  const store = new PairStore(network, masterSaeId, slaveSaeId, limits.keySize);
  const answer = handleKmeRequest(kme, store, req);
  if (answer.status === 503 && store.refusal) {
    return { status: 503, op: answer.op, json: { message: store.refusal.message, details: store.refusal.details } };
  }
  if (answer.status === 401 && peer === unknownPeer && own === caller) {
    return { ...answer, json: { message: `no SAE '${clip(pathSae, 64)}' in this QKD network (node ${node}'s KME serves ${network.saesOf(node).map((s) => `'${s}'`).join(', ') || 'no SAE'})` } };
  }
  return answer;
}

/** The ETSI 014 base URL of node `node` below a server's base URL (e.g. http://127.0.0.1:8443/A). */
export function nodeKmeUrl(serverUrl: string, node: string): string {
  return `${serverUrl.replace(/\/+$/, '')}/${encodeURIComponent(node)}`;
}

/** The full enc_keys URL an SAE at some node uses to reach `peerSaeId`. */
export function nodeEncKeysUrl(serverUrl: string, node: string, peerSaeId: string): string {
  return nodeKmeUrl(serverUrl, node) + etsi014Path(peerSaeId, 'enc_keys');
}

/** The network's relay for one master/slave SAE pair, shaped as the key store the handler expects. */
class PairStore implements KmeKeyStore {
  refusal: { message: string; details: Record<string, unknown>[] } | undefined;

  constructor(
    private readonly network: QkdNetwork,
    private readonly masterSaeId: string,
    private readonly slaveSaeId: string,
    private readonly keySize: number,
  ) {}

  get config(): { rateBitsPerSecond: number } {
    const r = this.known() ? this.network.currentRoute(this.masterSaeId, this.slaveSaeId, this.keySize) : undefined;
    return { rateBitsPerSecond: r ? Math.round(Math.min(r.bottleneckRateBps, Number.MAX_SAFE_INTEGER)) : 0 };
  }

  storedKeyCount(): number {
    const r = this.known() ? this.network.currentRoute(this.masterSaeId, this.slaveSaeId, this.keySize) : undefined;
    return r ? Math.floor(Math.min(r.bottleneckBits, Number.MAX_SAFE_INTEGER) / this.keySize) : 0;
  }

  pendingKeyCount(): number {
    return this.known() ? this.network.pendingCount(this.masterSaeId, this.slaveSaeId) : 0;
  }

  issue(count: number, sizeBits: number): IssueResult {
    const r = this.network.relay(this.masterSaeId, this.slaveSaeId, count, sizeBits);
    if (r.ok) return { ok: true, keys: r.keys };
    if (r.reason === 'no_route') {
      this.refusal = {
        message: r.message,
        details: [{ reason: 'no_route', needed_bits: r.neededBits }, ...r.blockers.map((b) => ({ link: b.link, state: b.state, pool_bits: b.poolBits, why: b.why }))],
      };
      return { ok: false, reason: 'insufficient_key_material', neededBits: r.neededBits, availableBits: 0 };
    }
    this.refusal = { message: r.message, details: [{ reason: r.reason, pending: r.pending, limit: r.limit }] };
    return { ok: false, reason: 'too_many_pending_keys', pending: r.pending, limit: r.limit };
  }

  redeem(keyIds: readonly string[]): RedeemResult {
    return this.network.redeem(this.masterSaeId, this.slaveSaeId, keyIds);
  }

  private known(): boolean {
    return this.network.nodeOfSae(this.masterSaeId) !== undefined && this.network.nodeOfSae(this.slaveSaeId) !== undefined;
  }
}

