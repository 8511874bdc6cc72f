// What the peer exchange reports (SidecarMetrics implements it; tests record it).

// The `direction` label of wasm_epp_sidecar_peer_records_total: prefix records exported by the own
// filter, sent to peers (once per peer), received from peers, imported into the own filter; LOAD
// sections (one replica's load of one pool) sent to peers (once per peer) and received from them.
export const DIRECTIONS = ["exported", "sent", "received", "imported", "load_sent", "load_received"] as const;
export type Direction = (typeof DIRECTIONS)[number];

// The `reason` label of wasm_epp_sidecar_peer_errors_total. Outgoing requests (to a peer, or to
// the own filter under peer="filter"): timeout, unreachable, unauthorized, too_large, rejected,
// http_status, bad_reply, sharing_off; records dropped for a peer that cannot keep up: queue_full.
// Incoming requests (peer = the sender's address when it is a known peer, else "other"):
// inbound_unauthorized, inbound_too_large, inbound_malformed.
export const PEER_ERROR_REASONS = [
  "timeout", "unreachable", "unauthorized", "too_large", "rejected", "http_status", "bad_reply", "sharing_off", "queue_full",
  "inbound_unauthorized", "inbound_too_large", "inbound_malformed",
] as const;
export type PeerErrorReason = (typeof PEER_ERROR_REASONS)[number];

// Label values besides peer addresses.
export const FILTER_PEER = "filter";
export const OTHER_PEER = "other";

export interface PeerObserver {
  peerSent(peer: string, bytes: number): void;
  peerReceived(peer: string, bytes: number): void;
  peerRecords(direction: Direction, n: number): void;
  peerError(peer: string, reason: PeerErrorReason): void;
  peerCounts(known: number, reachable: number): void;
  peerStoreBytes(bytes: number): void;
  journalLost(n: number): void;
  // A peer left: its per-peer series go.
  forgetPeer(peer: string): void;
}

export const nullObserver: PeerObserver = {
  peerSent() {},
  peerReceived() {},
  peerRecords() {},
  peerError() {},
  peerCounts() {},
  peerStoreBytes() {},
  journalLost() {},
  forgetPeer() {},
};
