// The Kubernetes objects the controller reads, as domain structs. The API
// client and the standalone directory source convert their JSON/YAML into
// these at the edge; the reconciler never sees a document.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/ip_addr.h"
#include "controller/allocator/allocator.h"

namespace flowlb::controller {

struct ObjectMeta {
  std::string ns;
  std::string name;
  int64_t created = 0;
  std::map<std::string, std::string> labels;
  std::map<std::string, std::string> annotations;
  // Set by the API source (empty from the directory source).
  std::string uid;
  std::string resource_version;
  int64_t generation = 0;
  std::string key() const { return ns.empty() ? name : ns + "/" + name; }
  bool operator==(const ObjectMeta&) const = default;
};

struct ServicePortSpec {
  std::string name;
  uint8_t proto = 6;
  uint16_t port = 0;
  bool operator==(const ServicePortSpec&) const = default;
};

// A metav1.Condition in Service status.
struct Condition {
  std::string type;
  std::string status;  // "True" | "False" | "Unknown"
  std::string reason;
  std::string message;
  std::string last_transition;  // RFC 3339
  int64_t observed_generation = 0;
  bool operator==(const Condition&) const = default;
};

// Everything of a Service's spec that flowlb reads. A field added here is
// compared by the defaulted operator== and so decides, without a list kept
// by hand, whether a change to a Service needs a full reconcile.
struct ServiceSpec {
  std::string type = "ClusterIP";
  std::optional<std::string> load_balancer_class;
  std::vector<ServicePortSpec> ports;
  std::string load_balancer_ip;
  std::vector<Family> ip_families = {Family::kV4};
  std::string ip_family_policy = "SingleStack";
  bool external_traffic_local = false;
  bool session_affinity_client_ip = false;
  uint32_t session_affinity_timeout_s = 10800;
  std::vector<IpPrefix> source_ranges;
  bool operator==(const ServiceSpec&) const = default;
};

struct ServiceStatus {
  std::vector<IpAddr> ips;             // status.loadBalancer.ingress[].ip
  std::vector<std::string> hostnames;  // ingress[].hostname (never ours; kept when we clear)
  std::vector<Condition> conditions;   // status.conditions (everyone's)
  bool operator==(const ServiceStatus&) const = default;
};

struct ServiceObject {
  ObjectMeta meta;
  ServiceSpec spec;
  ServiceStatus status;
  bool operator==(const ServiceObject&) const = default;
};

// Services and EndpointSlices as the sources hand them out: shared, never
// changed once made (an update is a new object). A full reconcile reads
// every one of them; a copy of 10k Services and their slices, on top of the
// informers' own, was a fifth of the controller's memory at its peak.
using ServicePtr = std::shared_ptr<const ServiceObject>;

struct Endpoint {
  std::vector<IpAddr> addresses;
  bool ready = true;
  bool serving = true;
  bool terminating = false;
  std::string node;
  std::string zone;
  bool operator==(const Endpoint&) const = default;
};

struct EndpointSliceObject {
  ObjectMeta meta;
  std::string service;                 // label kubernetes.io/service-name
  std::vector<ServicePortSpec> ports;  // target ports, by name
  std::vector<Endpoint> endpoints;
  std::string serviceKey() const { return meta.ns + "/" + service; }
  bool operator==(const EndpointSliceObject&) const = default;
};
using SlicePtr = std::shared_ptr<const EndpointSliceObject>;

// Objects made shareable (tests, the directory source, benches).
template <class T>
std::vector<std::shared_ptr<const T>> shareAll(std::vector<T> objects) {
  std::vector<std::shared_ptr<const T>> out;
  out.reserve(objects.size());
  for (T& o : objects) out.push_back(std::make_shared<const T>(std::move(o)));
  return out;
}

struct NodeObject {
  std::string name;
  // Ready, and not labelled node.kubernetes.io/exclude-from-external-load-balancers.
  bool ready = true;
  std::map<std::string, std::string> labels;  // BGPPeer nodeSelector
  bool operator==(const NodeObject&) const = default;
};

}  // namespace flowlb::controller
