#include "controller/k8s/decode.h"

#include <cstdio>
#include <ctime>

#include "controller/k8s/json_doc.h"

namespace flowlb::controller::k8s {
namespace {

template <typename T>
Result<T> fromJson(const web::json::value& obj, const char* kind,
                   Decoded<T> (*decode)(const Doc&)) {
  const Doc doc = toDoc(obj);
  Decoded<T> d = decode(doc);
  if (!d.ok) return Status::error(describeObject(doc, kind) + ": " + d.problem.what);
  return std::move(d.value);
}

}  // namespace

Result<ObjectMeta> decodeMeta(const web::json::value& obj, bool namespaced) {
  const Doc doc = toDoc(obj);
  Decoded<ObjectMeta> d = controller::decodeMeta(doc, namespaced);
  if (!d.ok) return Status::error(describeObject(doc, "object") + ": " + d.problem.what);
  return std::move(d.value);
}

Result<ServiceObject> decodeService(const web::json::value& obj) {
  return fromJson<ServiceObject>(obj, "Service", &controller::decodeService);
}

Result<EndpointSliceObject> decodeEndpointSlice(const web::json::value& obj) {
  return fromJson<EndpointSliceObject>(obj, "EndpointSlice", &controller::decodeEndpointSlice);
}

Result<NodeEntry> decodeNode(const web::json::value& obj) {
  return fromJson<NodeEntry>(obj, "Node", &controller::decodeNode);
}

Result<PoolObject> decodePool(const web::json::value& obj) {
  return fromJson<PoolObject>(obj, "IPPool", &controller::decodePool);
}

Result<SecretObject> decodeSecret(const web::json::value& obj) {
  return fromJson<SecretObject>(obj, "Secret", &controller::decodeSecret);
}

Result<BgpPeerSpec> decodeBgpPeer(const web::json::value& obj) {
  return fromJson<BgpPeerSpec>(obj, "BGPPeer", &controller::decodeBgpPeer);
}

Result<BgpAdvertisementSpec> decodeBgpAdvertisement(const web::json::value& obj) {
  return fromJson<BgpAdvertisementSpec>(obj, "BGPAdvertisement",
                                        &controller::decodeBgpAdvertisement);
}

uint64_t resourceVersionNumber(const std::string& rv) {
  uint64_t n = 0;
  for (const char c : rv) {
    if (c < '0' || c > '9') return 0;
    n = n * 10 + static_cast<uint64_t>(c - '0');
  }
  return n;
}

std::string rfc3339(int64_t unix_seconds) {
  const std::time_t t = static_cast<std::time_t>(unix_seconds);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

std::string rfc3339Micro(std::chrono::system_clock::time_point t) {
  const auto us =
      std::chrono::duration_cast<std::chrono::microseconds>(t.time_since_epoch()).count();
  const std::time_t secs = static_cast<std::time_t>(us / 1000000);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[48];
  const size_t n = std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
  std::snprintf(buf + n, sizeof buf - n, ".%06lldZ", static_cast<long long>(us % 1000000));
  return buf;
}

}  // namespace flowlb::controller::k8s
