// Every request path and body the controller writes to the API server: the
// mirror of decode.h. Names go into paths percent-encoded (issue 17.13: a
// name "q?x=1" made the controller PATCH /services/q with query
// "x=1/status"); real API servers validate names, but the client must not
// depend on it.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "controller/bgp/peer_status.h"
#include "controller/status/event_recorder.h"
#include "controller/status/wanted.h"

namespace flowlb::controller::k8s {

// One path segment, percent-encoded (everything but RFC 3986 unreserved).
std::string pathSegment(std::string_view s);

// "ns/name" -> /api/v1/namespaces/ns/services/name
std::string servicePath(const std::string& service_key);
std::string serviceStatusPath(const std::string& service_key);
std::string eventsPath(const std::string& ns);
std::string eventPath(const std::string& ns, const std::string& name);
std::string poolStatusPath(const std::string& pool);
std::string bgpPeerStatusPath(const std::string& peer);
std::string leasesPath(const std::string& ns);
std::string leasePath(const std::string& ns, const std::string& name);

// A merge patch of status.loadBalancer.ingress and status.conditions,
// carrying the resourceVersion it was based on: a concurrent change gets
// 409, never lost.
std::string serviceStatusPatch(const std::string& resource_version, const StatusUpdate& u);
// A merge patch of one annotation; nullopt removes it.
std::string annotationPatch(const std::string& key, const std::optional<std::string>& value);

// A new Event about a Service.
std::string eventBody(const EventPost& e, const std::string& reporting_instance,
                      const std::string& now_rfc3339);
// The same Event again: its count and last time.
std::string eventCountPatch(int count, const std::string& now_rfc3339);

// `invalid`: the pool's unreadable address entries, joined ("" none), for
// its condition flowlb.io/Valid; `now` its lastTransitionTime.
std::string poolStatusPatch(uint64_t used, uint64_t free, const std::string& invalid,
                            const std::string& now);

// A merge patch of a BGPPeer's status: per node its session (the list is
// replaced whole), and how many are Established.
std::string bgpPeerStatusPatch(const std::vector<BgpNodeSession>& sessions);

// The annotation on the leader Lease naming the leader's gRPC address, so
// followers can send agents there (NotLeader.leader_address).
inline constexpr const char* kLeaderAddressAnnotation = "flowlb.io/leader-grpc-address";

struct LeaseWrite {
  std::string holder;
  int duration_s = 15;
  std::string acquire;  // RFC 3339 with microseconds
  std::string renew;
  int transitions = 0;
  std::string leader_address;  // "" leaves no annotation
};
// A new coordination.k8s.io/v1 Lease.
std::string leaseCreateBody(const std::string& ns, const std::string& name, const LeaseWrite& w);
// The Lease as read, with its spec and our annotation replaced (it keeps
// the resourceVersion it was read at: a concurrent writer gets 409). ""
// when `read_body` is not a Lease.
std::string leaseUpdateBody(const std::string& read_body, const LeaseWrite& w);

}  // namespace flowlb::controller::k8s
