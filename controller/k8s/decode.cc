#include "controller/k8s/decode.h"

#include <ctime>
#include <iomanip>
#include <sstream>

namespace flowlb::controller::k8s {
namespace {

using web::json::value;

// Throws a message; decode*() turn it into a Status naming the object.
struct Bad {
  std::string what;
};

const value* field(const value& v, const char* name) {
  if (!v.is_object()) return nullptr;
  const auto& o = v.as_object();
  auto it = o.find(name);
  if (it == o.end() || it->second.is_null()) return nullptr;
  return &it->second;
}

const value* path(const value& v, std::initializer_list<const char*> names) {
  const value* cur = &v;
  for (const char* n : names) {
    cur = field(*cur, n);
    if (!cur) return nullptr;
  }
  return cur;
}

std::string str(const value* v, const std::string& what) {
  if (!v) return "";
  if (!v->is_string()) throw Bad{what + " must be a string"};
  return v->as_string();
}

bool boolean(const value* v, const std::string& what, bool fallback) {
  if (!v) return fallback;
  if (!v->is_boolean()) throw Bad{what + " must be true or false"};
  return v->as_bool();
}

int64_t integer(const value* v, const std::string& what, int64_t min, int64_t max) {
  if (!v) return 0;
  if (!v->is_integer()) throw Bad{what + " must be an integer"};
  const int64_t x = v->as_number().to_int64();
  if (x < min || x > max) {
    throw Bad{what + " must be in " + std::to_string(min) + ".." + std::to_string(max)};
  }
  return x;
}

const web::json::array& arr(const value* v, const std::string& what) {
  static const web::json::array kEmpty = value::array().as_array();
  if (!v) return kEmpty;
  if (!v->is_array()) throw Bad{what + " must be a list"};
  return v->as_array();
}

std::map<std::string, std::string> stringMap(const value* v, const std::string& what) {
  std::map<std::string, std::string> out;
  if (!v) return out;
  if (!v->is_object()) throw Bad{what + " must be a mapping"};
  for (const auto& [k, x] : v->as_object()) out[k] = str(&x, what + "." + k);
  return out;
}

IpAddr address(const value* v, const std::string& what) {
  auto a = IpAddr::parse(str(v, what));
  if (!a) throw Bad{what + ": " + a.error()};
  return *a;
}

uint8_t protocol(const value* v) {
  const std::string p = v ? str(v, "protocol") : "TCP";
  if (p == "TCP") return 6;
  if (p == "UDP") return 17;
  if (p == "SCTP") return 132;
  throw Bad{"protocol '" + p + "' is not TCP, UDP or SCTP"};
}

int64_t parseTime(const std::string& s) {
  if (s.empty()) return 0;
  std::tm tm{};
  std::istringstream in(s);
  in >> std::get_time(&tm, "%Y-%m-%dT%H:%M:%S");
  if (in.fail()) throw Bad{"timestamp '" + s + "' is not RFC 3339"};
  return static_cast<int64_t>(timegm(&tm));
}

ObjectMeta meta(const value& obj, bool namespaced) {
  const value* m = field(obj, "metadata");
  if (!m || !m->is_object()) throw Bad{"metadata is required"};
  ObjectMeta out;
  out.name = str(field(*m, "name"), "metadata.name");
  if (out.name.empty()) throw Bad{"metadata.name is required"};
  if (namespaced) {
    out.ns = str(field(*m, "namespace"), "metadata.namespace");
    if (out.ns.empty()) out.ns = "default";
  }
  out.labels = stringMap(field(*m, "labels"), "metadata.labels");
  out.annotations = stringMap(field(*m, "annotations"), "metadata.annotations");
  out.created = parseTime(str(field(*m, "creationTimestamp"), "metadata.creationTimestamp"));
  out.uid = str(field(*m, "uid"), "metadata.uid");
  out.resource_version = str(field(*m, "resourceVersion"), "metadata.resourceVersion");
  out.generation = integer(field(*m, "generation"), "metadata.generation", 0, INT64_MAX);
  return out;
}

std::vector<ServicePortSpec> ports(const value* v, const std::string& what, bool service) {
  std::vector<ServicePortSpec> out;
  for (const value& p : arr(v, what)) {
    ServicePortSpec s;
    s.name = str(field(p, "name"), what + "[].name");
    s.proto = protocol(field(p, "protocol"));
    const value* port = field(p, "port");
    if (!port) {
      if (service) throw Bad{what + "[].port is required"};
      continue;  // an EndpointSlice port without a number: "all ports", not ours
    }
    s.port = static_cast<uint16_t>(integer(port, what + "[].port", 1, 65535));
    out.push_back(s);
  }
  return out;
}

template <typename T, typename F>
Result<T> guarded(const value& obj, const char* kind, F&& f) {
  try {
    return f();
  } catch (const Bad& b) {
    std::string name = "?";
    if (const value* n = path(obj, {"metadata", "name"}); n && n->is_string())
      name = n->as_string();
    if (const value* ns = path(obj, {"metadata", "namespace"}); ns && ns->is_string()) {
      name = ns->as_string() + "/" + name;
    }
    return Status::error(std::string(kind) + " " + name + ": " + b.what);
  } catch (const web::json::json_exception& e) {
    return Status::error(std::string(kind) + ": " + e.what());
  }
}

}  // namespace

Result<ObjectMeta> decodeMeta(const value& obj, bool namespaced) {
  return guarded<ObjectMeta>(obj, "object", [&] { return meta(obj, namespaced); });
}

Result<ServiceObject> decodeService(const value& obj) {
  return guarded<ServiceObject>(obj, "Service", [&] {
    ServiceObject s;
    s.meta = meta(obj, true);
    const value* spec = field(obj, "spec");
    if (!spec || !spec->is_object()) throw Bad{"spec is required"};
    if (const value* t = field(*spec, "type")) s.type = str(t, "spec.type");
    if (const value* c = field(*spec, "loadBalancerClass")) {
      s.load_balancer_class = str(c, "spec.loadBalancerClass");
    }
    s.ports = ports(field(*spec, "ports"), "spec.ports", true);
    s.load_balancer_ip = str(field(*spec, "loadBalancerIP"), "spec.loadBalancerIP");
    if (const value* f = field(*spec, "ipFamilies")) {
      s.ip_families.clear();
      for (const value& x : arr(f, "spec.ipFamilies")) {
        const std::string fam = str(&x, "spec.ipFamilies[]");
        if (fam == "IPv4") {
          s.ip_families.push_back(Family::kV4);
        } else if (fam == "IPv6") {
          s.ip_families.push_back(Family::kV6);
        } else {
          throw Bad{"spec.ipFamilies: '" + fam + "' is not IPv4 or IPv6"};
        }
      }
      if (s.ip_families.empty()) s.ip_families = {Family::kV4};
    }
    if (const value* p = field(*spec, "ipFamilyPolicy")) {
      s.ip_family_policy = str(p, "spec.ipFamilyPolicy");
    }
    s.external_traffic_local =
        str(field(*spec, "externalTrafficPolicy"), "spec.externalTrafficPolicy") == "Local";
    s.session_affinity_client_ip =
        str(field(*spec, "sessionAffinity"), "spec.sessionAffinity") == "ClientIP";
    if (const value* t = path(*spec, {"sessionAffinityConfig", "clientIP", "timeoutSeconds"})) {
      s.session_affinity_timeout_s = static_cast<uint32_t>(
          integer(t, "spec.sessionAffinityConfig.clientIP.timeoutSeconds", 1, 86400));
    }
    for (const value& r :
         arr(field(*spec, "loadBalancerSourceRanges"), "spec.loadBalancerSourceRanges")) {
      auto p = IpPrefix::parse(str(&r, "spec.loadBalancerSourceRanges[]"));
      if (!p) throw Bad{"spec.loadBalancerSourceRanges: " + p.error()};
      s.source_ranges.push_back(*p);
    }
    if (const value* st = field(obj, "status")) {
      for (const value& i :
           arr(path(*st, {"loadBalancer", "ingress"}), "status.loadBalancer.ingress")) {
        // Another implementation may publish a hostname; only IPs are ours.
        if (field(i, "ip")) s.status_ips.push_back(address(field(i, "ip"), "ingress[].ip"));
      }
      for (const value& c : arr(field(*st, "conditions"), "status.conditions")) {
        Condition cond;
        cond.type = str(field(c, "type"), "conditions[].type");
        cond.status = str(field(c, "status"), "conditions[].status");
        cond.reason = str(field(c, "reason"), "conditions[].reason");
        cond.message = str(field(c, "message"), "conditions[].message");
        cond.last_transition =
            str(field(c, "lastTransitionTime"), "conditions[].lastTransitionTime");
        cond.observed_generation = integer(field(c, "observedGeneration"),
                                           "conditions[].observedGeneration", 0, INT64_MAX);
        s.conditions.push_back(std::move(cond));
      }
    }
    return s;
  });
}

Result<EndpointSliceObject> decodeEndpointSlice(const value& obj) {
  return guarded<EndpointSliceObject>(obj, "EndpointSlice", [&] {
    EndpointSliceObject e;
    e.meta = meta(obj, true);
    auto it = e.meta.labels.find("kubernetes.io/service-name");
    if (it == e.meta.labels.end()) throw Bad{"metadata.labels needs kubernetes.io/service-name"};
    e.service = it->second;
    e.ports = ports(field(obj, "ports"), "ports", false);
    for (const value& x : arr(field(obj, "endpoints"), "endpoints")) {
      Endpoint ep;
      for (const value& a : arr(field(x, "addresses"), "endpoints[].addresses")) {
        ep.addresses.push_back(address(&a, "endpoints[].addresses[]"));
      }
      const value* c = field(x, "conditions");
      // Unset conditions: ready and serving are "unknown", taken as true,
      // as kube-proxy does; terminating unset is false.
      ep.ready = boolean(c ? field(*c, "ready") : nullptr, "conditions.ready", true);
      ep.serving = boolean(c ? field(*c, "serving") : nullptr, "conditions.serving", ep.ready);
      ep.terminating =
          boolean(c ? field(*c, "terminating") : nullptr, "conditions.terminating", false);
      ep.node = str(field(x, "nodeName"), "endpoints[].nodeName");
      ep.zone = str(field(x, "zone"), "endpoints[].zone");
      e.endpoints.push_back(std::move(ep));
    }
    return e;
  });
}

Result<NodeEntry> decodeNode(const value& obj) {
  return guarded<NodeEntry>(obj, "Node", [&] {
    NodeEntry n;
    n.meta = meta(obj, false);
    n.node.name = n.meta.name;
    n.node.ready = true;  // a Node without conditions is taken as ready
    for (const value& c : arr(path(obj, {"status", "conditions"}), "status.conditions")) {
      if (str(field(c, "type"), "conditions[].type") == "Ready") {
        n.node.ready = str(field(c, "status"), "conditions[].status") == "True";
      }
    }
    // A cordoned node keeps serving its VIPs; an excluded one does not (as
    // kube-proxy and MetalLB treat this label).
    if (n.meta.labels.count("node.kubernetes.io/exclude-from-external-load-balancers")) {
      n.node.ready = false;
    }
    return n;
  });
}

Result<PoolObject> decodePool(const value& obj) {
  return guarded<PoolObject>(obj, "IPPool", [&] {
    PoolObject p;
    p.meta = meta(obj, false);
    p.pool.name = p.meta.name;
    const value* spec = field(obj, "spec");
    const value* addrs = spec ? field(*spec, "addresses") : nullptr;
    if (!addrs || !addrs->is_array()) throw Bad{"spec.addresses (a list) is required"};
    for (const value& a : addrs->as_array()) {
      const std::string text = str(&a, "spec.addresses[]");
      auto r = AddressRange::parse(text);
      if (!r) {  // the pool stays, without it, and says why (condition flowlb.io/Valid)
        p.pool.invalid.push_back("'" + text + "': " + r.error());
        continue;
      }
      p.pool.ranges.push_back(*r);
    }
    p.pool.auto_assign = boolean(field(*spec, "autoAssign"), "spec.autoAssign", true);
    p.pool.avoid_buggy_ips = boolean(field(*spec, "avoidBuggyIPs"), "spec.avoidBuggyIPs", false);
    p.pool.service_selector = stringMap(path(*spec, {"serviceSelector", "matchLabels"}),
                                        "spec.serviceSelector.matchLabels");
    for (const value& n : arr(field(*spec, "namespaces"), "spec.namespaces")) {
      p.pool.namespaces.push_back(str(&n, "spec.namespaces[]"));
    }
    if (const value* st = field(obj, "status")) {
      p.has_status = field(*st, "used") != nullptr;
      p.used = static_cast<uint64_t>(integer(field(*st, "used"), "status.used", 0, INT64_MAX));
      p.free = static_cast<uint64_t>(integer(field(*st, "free"), "status.free", 0, INT64_MAX));
      for (const value& c : arr(field(*st, "conditions"), "status.conditions")) {
        if (str(field(c, "type"), "type") != "flowlb.io/Valid") continue;
        p.has_valid_condition = true;
        if (str(field(c, "status"), "status") == "False") {
          p.valid_message = str(field(c, "message"), "message");
        }
      }
    }
    return p;
  });
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
