/**
 * The QKD network simulator: BB84 links with physical parameters, trusted-node key relay, a routing
 * controller, intercept-resend eavesdroppers, ETSI GS QKD 014 at every node, and a picture of it all.
 * Runtime-neutral core ({@link QkdNetwork}, {@link bb84Rates}, {@link networkSvg}, {@link parseTopology},
 * {@link handleNetworkKmeRequest}): no `node:` imports. The Node HTTP(S) server is in ./node.ts.
 */
export { binaryEntropy, bb84Rates, DEFAULT_LINK_PHYSICS, linkPhysics, withInterceptResend, type LinkPhysics, type LinkRates } from './physics.js';
export { simulateDetections, UniformSource, type DetectionModel, type DetectionSample } from './detection.js';
export { DEFAULT_BLOCK_SECONDS, DEFAULT_CAPACITY_BITS, DEFAULT_QBER_THRESHOLD, DEFAULT_SAMPLES_PER_BLOCK, MAX_CAPACITY_BITS, type LinkState } from './link.js';
export { findLink, parseTopology, TOPOLOGY_LIMITS, type Topology, type TopologyEavesdropper, type TopologyLink, type TopologyNode } from './topology.js';
export {
  QkdNetwork,
  type LinkBlocker,
  type LinkSnapshot,
  type NetworkEvent,
  type NetworkSnapshot,
  type QkdNetworkOptions,
  type RelayLedger,
  type RelayResult,
} from './network.js';
export { DEFAULT_NETWORK_KME_LIMITS, handleNetworkKmeRequest, nodeEncKeysUrl, nodeKmeUrl } from './kme.js';
export { networkSvg } from './svg.js';
