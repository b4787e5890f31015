#include "controller/decode/decode.h"

#include <cstdio>
#include <ctime>

#include "controller/decode/fields.h"

namespace flowlb::controller {

using namespace decode_fields;  // NOLINT: the readers every decoder shares

namespace decode_fields {

ObjectMeta meta(const Doc& obj, bool namespaced) {
  if (!obj.isMap()) bad(obj, "not an object");
  const Doc* m = obj.get("metadata");
  if (!m || !m->isMap()) bad(obj, "metadata is required");
  ObjectMeta out;
  out.name = str(m->get("name"), "metadata.name");
  if (out.name.empty()) bad(*m, "metadata.name is required");
  if (namespaced) {
    out.ns = str(m->get("namespace"), "metadata.namespace");
    if (out.ns.empty()) out.ns = "default";
  }
  out.labels = stringMap(m->get("labels"), "metadata.labels");
  out.annotations = stringMap(m->get("annotations"), "metadata.annotations");
  if (const Doc* t = m->get("creationTimestamp")) {
    const std::string text = str(t, "metadata.creationTimestamp");
    if (!parseRfc3339(text, &out.created)) {
      bad(*t, "metadata.creationTimestamp '" + text + "' is not RFC 3339 (2024-01-31T12:00:00Z)");
    }
  }
  out.uid = str(m->get("uid"), "metadata.uid");
  out.resource_version = str(m->get("resourceVersion"), "metadata.resourceVersion");
  out.generation = integer(m->get("generation"), "metadata.generation", 0, INT64_MAX);
  return out;
}

}  // namespace decode_fields

namespace {

uint8_t protocol(const Doc* v) {
  const std::string p = v ? str(v, "protocol") : "TCP";
  if (p == "TCP") return 6;
  if (p == "UDP") return 17;
  if (p == "SCTP") return 132;
  bad(*v, "protocol '" + p + "' is not TCP, UDP or SCTP");
}

std::vector<ServicePortSpec> ports(const Doc* v, const std::string& what, bool service) {
  std::vector<ServicePortSpec> out;
  for (const Doc& p : list(v, what)) {
    ServicePortSpec s;
    s.name = str(p.get("name"), what + "[].name");
    s.proto = protocol(p.get("protocol"));
    const Doc* port = p.get("port");
    if (!port) {
      if (service) bad(p, what + "[].port is required");
      continue;  // an EndpointSlice port without a number: "all ports", not ours
    }
    s.port = static_cast<uint16_t>(integer(port, what + "[].port", 1, 65535));
    out.push_back(s);
  }
  return out;
}

Condition condition(const Doc& c) {
  Condition cond;
  cond.type = str(c.get("type"), "conditions[].type");
  cond.status = str(c.get("status"), "conditions[].status");
  cond.reason = str(c.get("reason"), "conditions[].reason");
  cond.message = str(c.get("message"), "conditions[].message");
  cond.last_transition = str(c.get("lastTransitionTime"), "conditions[].lastTransitionTime");
  cond.observed_generation =
      integer(c.get("observedGeneration"), "conditions[].observedGeneration", 0, INT64_MAX);
  return cond;
}

ServiceSpec serviceSpec(const Doc& spec) {
  ServiceSpec s;
  if (const Doc* t = spec.get("type")) s.type = str(t, "spec.type");
  if (const Doc* c = spec.get("loadBalancerClass")) {
    s.load_balancer_class = str(c, "spec.loadBalancerClass");
  }
  s.ports = ports(spec.get("ports"), "spec.ports", true);
  s.load_balancer_ip = str(spec.get("loadBalancerIP"), "spec.loadBalancerIP");
  if (const Doc* f = spec.get("ipFamilies")) {
    s.ip_families.clear();
    for (const Doc& x : list(f, "spec.ipFamilies")) {
      const std::string fam = str(&x, "spec.ipFamilies[]");
      if (fam == "IPv4") {
        s.ip_families.push_back(Family::kV4);
      } else if (fam == "IPv6") {
        s.ip_families.push_back(Family::kV6);
      } else {
        bad(x, "spec.ipFamilies: '" + fam + "' is not IPv4 or IPv6");
      }
    }
    // An empty list is what the API server fills in later: IPv4 until then.
    if (s.ip_families.empty()) s.ip_families = {Family::kV4};
  }
  if (const Doc* p = spec.get("ipFamilyPolicy")) s.ip_family_policy = str(p, "spec.ipFamilyPolicy");
  s.external_traffic_local =
      str(spec.get("externalTrafficPolicy"), "spec.externalTrafficPolicy") == "Local";
  s.session_affinity_client_ip =
      str(spec.get("sessionAffinity"), "spec.sessionAffinity") == "ClientIP";
  if (const Doc* t = spec.path({"sessionAffinityConfig", "clientIP", "timeoutSeconds"})) {
    s.session_affinity_timeout_s = static_cast<uint32_t>(
        integer(t, "spec.sessionAffinityConfig.clientIP.timeoutSeconds", 1, 86400));
  }
  for (const Doc& r : list(spec.get("loadBalancerSourceRanges"), "spec.loadBalancerSourceRanges")) {
    auto p = IpPrefix::parse(str(&r, "spec.loadBalancerSourceRanges[]"));
    if (!p) bad(r, "spec.loadBalancerSourceRanges: " + p.error());
    s.source_ranges.push_back(*p);
  }
  return s;
}

}  // namespace

std::string describeObject(const Doc& obj, const char* kind) {
  std::string name = "?";
  if (const Doc* n = obj.path({"metadata", "name"}); n && n->isString()) name = n->asString();
  if (const Doc* ns = obj.path({"metadata", "namespace"}); ns && ns->isString()) {
    name = ns->asString() + "/" + name;
  }
  return std::string(kind) + " " + name;
}

bool parseRfc3339(const std::string& text, int64_t* unix_seconds) {
  int y = 0, mo = 0, d = 0, h = 0, mi = 0, s = 0, consumed = 0;
  if (std::sscanf(text.c_str(), "%4d-%2d-%2dT%2d:%2d:%2d%n", &y, &mo, &d, &h, &mi, &s, &consumed) !=
      6) {
    return false;
  }
  size_t i = static_cast<size_t>(consumed);
  if (i < text.size() && text[i] == '.') {
    ++i;
    while (i < text.size() && text[i] >= '0' && text[i] <= '9') ++i;
  }
  int64_t offset = 0;
  if (i < text.size() && (text[i] == 'Z' || text[i] == 'z')) {
    ++i;
  } else if (i < text.size() && (text[i] == '+' || text[i] == '-')) {
    int oh = 0, om = 0;
    if (std::sscanf(text.c_str() + i + 1, "%2d:%2d", &oh, &om) != 2) return false;
    offset = (text[i] == '+' ? 1 : -1) * (oh * 3600 + om * 60);
    i += 6;
  } else {
    return false;
  }
  if (i != text.size() || mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || s > 60) {
    return false;
  }
  std::tm tm{};
  tm.tm_year = y - 1900;
  tm.tm_mon = mo - 1;
  tm.tm_mday = d;
  tm.tm_hour = h;
  tm.tm_min = mi;
  tm.tm_sec = s;
  *unix_seconds = static_cast<int64_t>(timegm(&tm)) - offset;
  return true;
}

Decoded<ObjectMeta> decodeMeta(const Doc& obj, bool namespaced) {
  return guarded<ObjectMeta>([&] { return meta(obj, namespaced); });
}

Decoded<ServiceObject> decodeService(const Doc& obj) {
  return guarded<ServiceObject>([&] {
    ServiceObject s;
    s.meta = meta(obj, true);
    const Doc* spec = obj.get("spec");
    if (!spec || !spec->isMap()) bad(obj, "spec is required");
    s.spec = serviceSpec(*spec);
    if (const Doc* st = obj.get("status")) {
      for (const Doc& i :
           list(st->path({"loadBalancer", "ingress"}), "status.loadBalancer.ingress")) {
        // Another implementation may publish a hostname; only IPs are ours.
        if (i.get("ip")) {
          s.status.ips.push_back(address(i.get("ip"), "status.loadBalancer.ingress[].ip"));
        } else if (i.get("hostname")) {
          s.status.hostnames.push_back(
              str(i.get("hostname"), "status.loadBalancer.ingress[].hostname"));
        }
      }
      for (const Doc& c : list(st->get("conditions"), "status.conditions")) {
        s.status.conditions.push_back(condition(c));
      }
    }
    return s;
  });
}

Decoded<EndpointSliceObject> decodeEndpointSlice(const Doc& obj) {
  return guarded<EndpointSliceObject>([&] {
    EndpointSliceObject e;
    e.meta = meta(obj, true);
    auto it = e.meta.labels.find("kubernetes.io/service-name");
    if (it == e.meta.labels.end()) bad(obj, "metadata.labels needs kubernetes.io/service-name");
    e.service = it->second;
    e.ports = ports(obj.get("ports"), "ports", false);
    const std::vector<Doc>& endpoints = list(obj.get("endpoints"), "endpoints");
    e.endpoints.reserve(endpoints.size());  // kept for the object's life: no growth slack
    for (const Doc& x : endpoints) {
      Endpoint ep;
      const std::vector<Doc>& addresses = list(x.get("addresses"), "endpoints[].addresses");
      ep.addresses.reserve(addresses.size());
      for (const Doc& a : addresses) {
        ep.addresses.push_back(address(&a, "endpoints[].addresses[]"));
      }
      const Doc* c = x.get("conditions");
      // Unset conditions: ready and serving are "unknown", taken as true,
      // as kube-proxy does; terminating unset is false.
      ep.ready = boolean(c ? c->get("ready") : nullptr, "conditions.ready", true);
      ep.serving = boolean(c ? c->get("serving") : nullptr, "conditions.serving", ep.ready);
      ep.terminating =
          boolean(c ? c->get("terminating") : nullptr, "conditions.terminating", false);
      ep.node = str(x.get("nodeName"), "endpoints[].nodeName");
      ep.zone = str(x.get("zone"), "endpoints[].zone");
      e.endpoints.push_back(std::move(ep));
    }
    return e;
  });
}

Decoded<NodeEntry> decodeNode(const Doc& obj) {
  return guarded<NodeEntry>([&] {
    NodeEntry n;
    n.meta = meta(obj, false);
    n.node.name = n.meta.name;
    n.node.labels = n.meta.labels;
    n.node.ready = true;  // a Node without conditions is taken as ready
    for (const Doc& c : list(obj.path({"status", "conditions"}), "status.conditions")) {
      if (str(c.get("type"), "conditions[].type") == "Ready") {
        n.node.ready = str(c.get("status"), "conditions[].status") == "True";
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

Decoded<PoolObject> decodePool(const Doc& obj) {
  return guarded<PoolObject>([&] {
    PoolObject p;
    p.meta = meta(obj, false);
    p.pool.name = p.meta.name;
    p.pool.labels = p.meta.labels;
    const Doc* spec = obj.get("spec");
    const Doc* addrs = spec ? spec->get("addresses") : nullptr;
    if (!addrs || !addrs->isList()) bad(obj, "spec.addresses (a list) is required");
    for (const Doc& a : addrs->items()) {
      const std::string text = str(&a, "spec.addresses[]");
      auto r = AddressRange::parse(text);
      if (!r) {  // the pool stays, without it, and says why (condition flowlb.io/Valid)
        p.pool.invalid.push_back("'" + text + "': " + r.error());
        continue;
      }
      p.pool.ranges.push_back(*r);
    }
    p.pool.auto_assign = boolean(spec->get("autoAssign"), "spec.autoAssign", true);
    p.pool.avoid_buggy_ips = boolean(spec->get("avoidBuggyIPs"), "spec.avoidBuggyIPs", false);
    p.pool.service_selector = stringMap(spec->path({"serviceSelector", "matchLabels"}),
                                        "spec.serviceSelector.matchLabels");
    for (const Doc& n : list(spec->get("namespaces"), "spec.namespaces")) {
      p.pool.namespaces.push_back(str(&n, "spec.namespaces[]"));
    }
    if (const Doc* st = obj.get("status")) {
      p.has_status = st->get("used") != nullptr;
      p.used = static_cast<uint64_t>(integer(st->get("used"), "status.used", 0, INT64_MAX));
      p.free = static_cast<uint64_t>(integer(st->get("free"), "status.free", 0, INT64_MAX));
      for (const Doc& c : list(st->get("conditions"), "status.conditions")) {
        if (str(c.get("type"), "type") != "flowlb.io/Valid") continue;
        p.has_valid_condition = true;
        if (str(c.get("status"), "status") == "False") {
          p.valid_message = str(c.get("message"), "message");
        }
      }
    }
    return p;
  });
}

}  // namespace flowlb::controller
