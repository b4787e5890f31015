// The API server's JSON to the controller's domain objects: the JSON is
// turned into a Doc tree and read by the one decoder both sources share
// (controller/decode/). An object that does not decode is reported with
// its name and the reason, and skipped; it never stops the others.
// encode.h is the mirror: every body the controller writes.
#pragma once

#include <cpprest/json.h>

#include <chrono>
#include <string>

#include "common/status.h"
#include "controller/decode/decode.h"

namespace flowlb::controller::k8s {

Result<ObjectMeta> decodeMeta(const web::json::value& obj, bool namespaced);
Result<ServiceObject> decodeService(const web::json::value& obj);
Result<EndpointSliceObject> decodeEndpointSlice(const web::json::value& obj);
Result<NodeEntry> decodeNode(const web::json::value& obj);
Result<PoolObject> decodePool(const web::json::value& obj);
Result<BgpPeerSpec> decodeBgpPeer(const web::json::value& obj);
Result<BgpAdvertisementSpec> decodeBgpAdvertisement(const web::json::value& obj);
Result<SecretObject> decodeSecret(const web::json::value& obj);

// RFC 3339 UTC with seconds ("2026-11-27T06:00:00Z") and with microseconds
// (metav1.MicroTime, as Leases carry).
std::string rfc3339(int64_t unix_seconds);
std::string rfc3339Micro(std::chrono::system_clock::time_point t);

// metadata.resourceVersion as a number, to order versions (0 when it is not
// a decimal number: the API calls it opaque, and etcd-less servers make it so).
uint64_t resourceVersionNumber(const std::string& rv);

}  // namespace flowlb::controller::k8s
