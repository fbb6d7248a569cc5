/**
 * How `qkd-tls demo` and `qkd-tls demo --network` take down what they started: the TLS server (its open
 * connections too), both ends' key sources, and the keys still waiting to be wiped.
 */
import type { Etsi014ClientSource, Etsi014ServerSource, releaseAfter } from 'qkd-tls/qkd';
import type { QkdTlsServer } from 'qkd-tls/node';

export interface DemoParts {
  readonly server: QkdTlsServer | undefined;
  readonly clientKeys: Etsi014ClientSource | undefined;
  readonly serverKeys: Etsi014ServerSource | undefined;
  readonly wipeLater: ReturnType<typeof releaseAfter>;
}

/** Closes the server and the key sources and wipes the keys held back; the caller then closes its key managers. */
export async function closeDemoParts(parts: DemoParts): Promise<void> {
  await new Promise<void>((resolve) => {
    if (!parts.server) return resolve();
    parts.server.close(() => resolve());
    parts.server.destroyAll();
  });
  parts.clientKeys?.close();
  parts.serverKeys?.close();
  parts.wipeLater.releaseAll();
}
