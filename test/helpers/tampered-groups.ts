/** A hostile peer for key-exchange tests: a provider whose group sends edited key shares. */
import type { ClientKeyShare, CryptoProvider, GroupName, KeyExchangeGroup } from '../../lib/crypto/provider.js';

/** What to do to the shares of a group: the client's (in its ClientHello), the server's (in its ServerHello). */
export interface ShareEdits {
  readonly client?: (share: Uint8Array) => Uint8Array;
  readonly server?: (share: Uint8Array) => Uint8Array;
}

/** `crypto`, whose synchronous group `name` sends its shares through `edit` (the rest of the exchange unchanged). */
export function tamperedShares(crypto: CryptoProvider, name: GroupName, edit: ShareEdits): CryptoProvider {
  return {
    ...crypto,
    group: (n) => {
      const g = crypto.group(n);
      if (!g || n !== name) return g;
      const out: KeyExchangeGroup = {
        name: g.name,
        randomLength: g.randomLength,
        start(r) {
          const c = g.start(r);
          const share = edit.client ? edit.client(c.share) : c.share;
          const wrapped: ClientKeyShare = { group: c.group, share, complete: (s) => c.complete(s), destroy: () => c.destroy() };
          return wrapped;
        },
        respond(cs, r) {
          const res = g.respond(cs, r);
          return { share: edit.server ? edit.server(res.share) : res.share, sharedSecret: res.sharedSecret };
        },
      };
      return out;
    },
  };
}
