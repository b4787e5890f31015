// BGP configuration as the controller reads it from BGPPeer and
// BGPAdvertisement objects (flowlb.io/v1alpha1), and the pure decision of
// what each node is sent: the peers whose nodeSelector matches it, and per
// VIP the advertisements that select its pool. Decoding is
// controller/decode/decode_bgp.cc; the wire form is controller/grpc/.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "common/ip_addr.h"

namespace flowlb::controller {

using Labels = std::map<std::string, std::string>;

// Every label of `selector` is on `labels` (Kubernetes matchLabels; an
// empty selector matches everything).
bool matchesLabels(const Labels& selector, const Labels& labels);

struct BfdSpec {
  uint32_t min_tx_ms = 300;
  uint32_t min_rx_ms = 300;
  uint32_t multiplier = 3;
  bool operator==(const BfdSpec&) const = default;
};

// A key of a Secret in the controller's namespace.
struct SecretKeyRef {
  std::string name;
  std::string key = "password";
  bool operator==(const SecretKeyRef&) const = default;
};

// TCP-MD5 keys are at most 80 bytes (TCP_MD5SIG_MAXKEYLEN).
inline constexpr size_t kMaxBgpPasswordBytes = 80;

// One BGPPeer (cluster-scoped; its name names the session on every node).
struct BgpPeerSpec {
  std::string name;
  std::string uid;  // metadata.uid (Events name the object by it); "" from a file
  IpAddr address;
  uint16_t port = 179;
  uint32_t peer_asn = 0;
  uint32_t local_asn = 0;  // spec.myASN
  std::optional<IpAddr> source;
  std::optional<uint16_t> hold_time_s;  // unset: 90
  std::optional<BfdSpec> bfd;
  uint16_t graceful_restart_s = 0;  // 0: off
  Labels node_selector;             // matchLabels; empty: every node
  // spec.passwordSecretRef, and the TCP-MD5 password the reconcile read
  // from it (sent to the agents over the mTLS stream; never logged).
  std::optional<SecretKeyRef> password_secret;
  std::string password;
  bool operator==(const BgpPeerSpec&) const = default;
};

struct LargeCommunityValue {
  uint32_t global_admin = 0;
  uint32_t local_data_1 = 0;
  uint32_t local_data_2 = 0;
  bool operator==(const LargeCommunityValue&) const = default;
};

// What a route carries, and to whom, for one BGPAdvertisement.
struct BgpRouteSpec {
  std::string name;                // the BGPAdvertisement
  std::vector<std::string> peers;  // BGPPeer names; empty: every peer
  uint8_t aggregation_v4 = 32;
  uint8_t aggregation_v6 = 128;
  std::vector<uint32_t> communities;
  std::vector<LargeCommunityValue> large_communities;
  std::optional<uint32_t> local_pref;
  bool operator==(const BgpRouteSpec&) const = default;
};

// One BGPAdvertisement (cluster-scoped).
struct BgpAdvertisementSpec {
  BgpRouteSpec route;
  std::vector<std::string> pools;  // spec.ipPools: IPPool names
  Labels pool_selector;            // spec.ipPoolSelector.matchLabels
  // Neither pools nor a selector: every pool.
  bool selects(const std::string& pool, const Labels& pool_labels) const;
  bool operator==(const BgpAdvertisementSpec&) const = default;
};

// What the agents are sent about BGP: the same for every agent but for
// the peers, which depend on the node's labels.
struct BgpDesired {
  // Per node (every node the controller knows, ready or not): its peers,
  // sorted by name. A node with no matching peer has no entry.
  std::map<std::string, std::vector<BgpPeerSpec>> peers_by_node;
  // Per VIP whose pool a BGPAdvertisement selects: those advertisements,
  // by name. Such a VIP is announced in mode BGP (no L2 announcer) to
  // BGP-capable agents.
  std::map<IpAddr, std::vector<BgpRouteSpec>> vips;
  // Any BGPPeer or BGPAdvertisement exists: BGP-capable agents are sent a
  // BgpConfig (possibly empty); otherwise nothing, as before BGP.
  bool configured = false;
  const std::vector<BgpPeerSpec>* peersOf(const std::string& node) const;
  const std::vector<BgpRouteSpec>* routesOf(const IpAddr& vip) const;
  bool operator==(const BgpDesired&) const = default;
};

struct BgpNode {
  std::string name;
  Labels labels;
};
struct BgpPool {
  std::string name;
  Labels labels;
};
// A VIP with the pool it was allocated from.
struct BgpVip {
  IpAddr vip;
  std::string pool;
};

// The one decision of who gets which BGP settings.
BgpDesired planBgp(const std::vector<BgpPeerSpec>& peers,
                   const std::vector<BgpAdvertisementSpec>& advertisements,
                   const std::vector<BgpPool>& pools, const std::vector<BgpNode>& nodes,
                   const std::vector<BgpVip>& vips);

}  // namespace flowlb::controller
