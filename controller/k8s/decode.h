// Kubernetes JSON (as the API server sends it) to the controller's domain
// objects, and the JSON the controller writes back. An object that does not
// decode is reported with the reason and skipped; it never stops the others.
#pragma once

#include <cpprest/json.h>

#include <chrono>
#include <string>
#include <vector>

#include "common/status.h"
#include "controller/reconciler/objects.h"

namespace flowlb::controller::k8s {

// An IPPool with the status last written to it.
struct PoolObject {
  IpPool pool;
  ObjectMeta meta;
  bool has_status = false;
  uint64_t used = 0;
  uint64_t free = 0;
  bool has_valid_condition = false;  // flowlb.io/Valid
  std::string valid_message;         // its message when False, else ""
};

struct NodeEntry {
  NodeObject node;
  ObjectMeta meta;
};

Result<ObjectMeta> decodeMeta(const web::json::value& obj, bool namespaced);
Result<ServiceObject> decodeService(const web::json::value& obj);
Result<EndpointSliceObject> decodeEndpointSlice(const web::json::value& obj);
Result<NodeEntry> decodeNode(const web::json::value& obj);
Result<PoolObject> decodePool(const web::json::value& obj);

// RFC 3339 UTC with seconds ("2026-11-27T06:00:00Z") and with microseconds
// (metav1.MicroTime, as Leases carry).
std::string rfc3339(int64_t unix_seconds);

// metadata.resourceVersion as a number, to order versions (0 when it is not
// a decimal number: the API calls it opaque, and etcd-less servers make it so).
uint64_t resourceVersionNumber(const std::string& rv);
std::string rfc3339Micro(std::chrono::system_clock::time_point t);

}  // namespace flowlb::controller::k8s
