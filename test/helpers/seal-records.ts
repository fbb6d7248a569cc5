/** Application-data records sealed by hand with WebCrypto, as a peer of an offloading connection would send them. */
import { importRecordKey, sealRecord } from '../../lib/transport/webcrypto-records.js';

/** Seals `contents` as application_data records with `conn`'s write handle (taken from its offloadWrite()). */
export async function sealAll(conn: { offloadWrite(): { key: Uint8Array; reserve(): Uint8Array | null } | null }, contents: readonly Uint8Array[]): Promise<Uint8Array[]> {
  const h = conn.offloadWrite()!;
  const key = await importRecordKey(h.key);
  const out: Uint8Array[] = [];
  for (const c of contents) {
    const inner = new Uint8Array(c.length + 1);
    inner.set(c);
    inner[c.length] = 23;
    out.push(await sealRecord(key, h.reserve()!, inner));
  }
  return out;
}
