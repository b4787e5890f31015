// The one mapping from Kubernetes objects (as a Doc tree, whatever format
// they came in) to the controller's domain objects, used by both sources:
// the API client (JSON) and the directory of YAML. An object that does not
// decode is reported with the reason and skipped by the caller; it never
// stops the others.
#pragma once

#include <string>

#include "common/status.h"
#include "controller/bgp/bgp_config.h"
#include "controller/decode/doc.h"
#include "controller/reconciler/objects.h"

namespace flowlb::controller {

// An IPPool with the status last written to it.
struct PoolObject {
  IpPool pool;
  ObjectMeta meta;
  bool has_status = false;
  uint64_t used = 0;
  uint64_t free = 0;
  bool has_valid_condition = false;  // flowlb.io/Valid
  std::string valid_message;         // its message when False, else ""
  bool operator==(const PoolObject&) const = default;
};

// A Secret (only the controller's namespace's are read: BGPPeer passwords).
struct SecretObject {
  ObjectMeta meta;
  std::string type;
  std::map<std::string, std::string> data;  // decoded bytes
  bool operator==(const SecretObject&) const = default;
};

struct NodeEntry {
  NodeObject node;
  ObjectMeta meta;
  bool operator==(const NodeEntry&) const = default;
};

// Why an object did not decode: `what` names the field ("spec.ports[].port
// must be in 1..65535"), `line` is its line in the source text (0: none).
struct DecodeProblem {
  std::string what;
  int line = 0;
};

template <typename T>
struct Decoded {
  bool ok = false;
  T value;
  DecodeProblem problem;
};

Decoded<ObjectMeta> decodeMeta(const Doc& obj, bool namespaced);
Decoded<ServiceObject> decodeService(const Doc& obj);
Decoded<EndpointSliceObject> decodeEndpointSlice(const Doc& obj);
Decoded<NodeEntry> decodeNode(const Doc& obj);
Decoded<PoolObject> decodePool(const Doc& obj);
// BGPPeer and BGPAdvertisement (flowlb.io/v1alpha1, cluster-scoped).
Decoded<BgpPeerSpec> decodeBgpPeer(const Doc& obj);
Decoded<BgpAdvertisementSpec> decodeBgpAdvertisement(const Doc& obj);
Decoded<SecretObject> decodeSecret(const Doc& obj);

// "65000:100" (16-bit halves), a 32-bit number, or an RFC 1997/7999 name
// (no-export, no-advertise, no-export-subconfed, no-peer, blackhole,
// graceful-shutdown); "65000:1:2" (32-bit parts) for a large community.
// False when the text is neither.
bool parseCommunity(const std::string& text, uint32_t* out);
bool parseLargeCommunity(const std::string& text, LargeCommunityValue* out);

// "Kind ns/name" of an object, from whatever of its metadata is readable.
std::string describeObject(const Doc& obj, const char* kind);

// RFC 3339 ("2026-11-27T06:00:00Z", fractions and offsets accepted) to Unix
// seconds; false when the text is not a timestamp.
bool parseRfc3339(const std::string& text, int64_t* unix_seconds);

}  // namespace flowlb::controller
