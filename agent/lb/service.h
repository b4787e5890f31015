// Desired state of the datapath in domain terms: virtual services and their
// backends. Filled from the standalone config file or from the controller's
// gRPC messages (converted at the edge); the core never sees either format.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "agent/bpf/flowlb_abi.h"
#include "agent/lb/conntrack.h"
#include "agent/lb/maglev.h"
#include "common/ip_addr.h"

namespace flowlb::agent {

enum class ForwardingMode : uint8_t { kNat, kDsr };
// kUnhealthy: failed its health check (the controller's verdict for the
// cluster, or this agent's in standalone mode): no new flows, pinned flows
// go on without deadline; if no backend of a service takes new flows and
// some are unhealthy, those take them (fail open).
enum class BackendState : uint8_t { kActive, kDraining, kUnhealthy };

// Active health checking of a service's backends (the contract's
// HealthCheck; kNone: off).
enum class HealthCheckKind : uint8_t { kNone, kTcp, kHttp, kHttps, kUdpDns };
struct HealthCheckSpec {
  HealthCheckKind kind = HealthCheckKind::kNone;
  std::string path = "/";  // HTTP and HTTPS
  uint32_t interval_ms = 5000;
  uint32_t timeout_ms = 2000;
  uint32_t unhealthy_threshold = 3;
  uint32_t healthy_threshold = 2;
  bool operator==(const HealthCheckSpec&) const = default;
};
const char* healthCheckKindName(HealthCheckKind k);
// PROXY protocol (HAProxy) header in front of what the backend receives, so a
// backend behind NAT learns the client's address (flowlb.io/proxy-protocol).
enum class ProxyProtocol : uint8_t { kNone, kV2 };

struct BackendSpec {
  IpAddr addr;
  uint16_t port = 0;
  uint32_t weight = 1;
  BackendState state = BackendState::kActive;
  std::string node;
  std::string zone;

  // Maglev key: the same on every node for the same backend.
  std::string key() const { return addr.toString() + "|" + std::to_string(port); }
};

struct ServiceSpec {
  std::string name;  // e.g. "default/web:http"
  IpAddr vip;
  uint16_t port = 0;
  uint8_t proto = 6;  // IPPROTO_TCP / IPPROTO_UDP
  ForwardingMode mode = ForwardingMode::kNat;
  bool client_ip_affinity = false;
  uint32_t affinity_timeout_s = 10800;  // Kubernetes' default
  uint32_t idle_timeout_s = 0;          // 0: the agent's established/UDP default
  uint32_t drain_timeout_s = 300;
  std::vector<IpPrefix> source_ranges;  // empty: every client allowed
  // externalTrafficPolicy: Local. Backends reached through the kernel (pods
  // on this node) see the client's address; others are still source-NATed.
  bool keep_client_address = false;
  ProxyProtocol proxy_protocol = ProxyProtocol::kNone;  // NAT only
  // Its VIP is announced over BGP: routers spread its flows, and their
  // replies, over every node by ECMP, so a reply may reach a node that has
  // not heard of its flow yet. Its NAT flows keep the node's source address
  // whatever --nat-source says (flow sync is for L2 VIPs; docs/flow-sync.md).
  bool announced_by_bgp = false;
  uint32_t maglev_size = 0;  // 0: flowlb::maglevSizeFor(backends.size())
  uint64_t hash_seed = 0;    // cluster-wide
  HealthCheckSpec health;
  std::vector<BackendSpec> backends;
};

// Why one service of a desired state was not applied (the contract's
// ApplyErrorCode): the rest of the state applies without it.
enum class ApplyErrorCode : uint8_t {
  kInvalidArgument,    // a field is missing or out of range
  kUnsupported,        // valid, but this node cannot do it
  kResourceExhausted,  // does not fit a map or the memory budget
  kConflict,           // same VIP, port and protocol as a service with a smaller key
  kInternal,
};
const char* applyErrorCodeName(ApplyErrorCode c);

struct ServiceError {
  std::string service;  // ServiceSpec::name
  ApplyErrorCode code = ApplyErrorCode::kInvalidArgument;
  std::string message;  // what went wrong, in words a user can act on
};

// Who probes backends of services with a health check
// (common/health_probers.h); no nodes: this agent probes them all.
struct HealthProbers {
  std::vector<std::string> nodes;
  uint32_t per_backend = 0;  // 0: kDefaultProbersPerBackend
  bool operator==(const HealthProbers&) const = default;
};

struct DesiredState {
  uint64_t generation = 0;
  std::vector<ServiceSpec> services;
  HealthProbers health_probers;
};

// This node's source NAT: replies come back to these addresses and ports.
struct SnatConfig {
  IpAddr v4;
  IpAddr v6;
  bool has_v4 = false;
  bool has_v6 = false;
  uint16_t port_min = FLOWLB_SNAT_PORT_MIN_DEFAULT;
  uint16_t port_max = FLOWLB_SNAT_PORT_MAX_DEFAULT;
  // --nat-source=vip: NAT flows are source-NATed to their VIP (on these
  // ports) instead of the node's address, so their replies follow the VIP
  // to whichever node announces it (flow sync, docs/flow-sync.md).
  bool vip_source = false;
  bool inPortRange(uint16_t port) const { return port >= port_min && port <= port_max; }
};

}  // namespace flowlb::agent
