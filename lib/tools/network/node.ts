/**
 * The QKD network simulator for Node: the runtime-neutral core ({@link ./index.ts}) plus the HTTP(S) server
 * that serves ETSI GS QKD 014 at every node, /network and /network.svg, and the topology file loader.
 */
export * from './index.js';
export { loadTopology, NETWORK_KME_ID, TopologyFileError, startQkdNetworkServer, type QkdNetworkServer, type QkdNetworkServerOptions } from './server.js';
