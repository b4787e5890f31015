#include "controller/decode/decode.h"

#include <cstdio>
#include <ctime>

namespace flowlb::controller {
namespace {

// Thrown by the field readers below; decode*() turn it into a DecodeProblem.
struct Bad {
  std::string what;
  int line;
};

[[noreturn]] void bad(const Doc& at, std::string what) {
  throw Bad{std::move(what), at.line()};
}

std::string str(const Doc* v, const std::string& what) {
  if (!v) return "";
  if (!v->isString()) bad(*v, what + " must be a string");
  return v->asString();
}

bool boolean(const Doc* v, const std::string& what, bool fallback) {
  if (!v) return fallback;
  if (v->kind() != Doc::Kind::kBool) bad(*v, what + " must be true or false");
  return v->asBool();
}

int64_t integer(const Doc* v, const std::string& what, int64_t min, int64_t max) {
  if (!v) return 0;
  if (v->kind() != Doc::Kind::kInt) bad(*v, what + " must be an integer");
  const int64_t x = v->asInt();
  if (x < min || x > max) {
    bad(*v, what + " must be in " + std::to_string(min) + ".." + std::to_string(max));
  }
  return x;
}

const std::vector<Doc>& list(const Doc* v, const std::string& what) {
  static const std::vector<Doc> kEmpty;
  if (!v) return kEmpty;
  if (!v->isList()) bad(*v, what + " must be a list");
  return v->items();
}

std::map<std::string, std::string> stringMap(const Doc* v, const std::string& what) {
  std::map<std::string, std::string> out;
  if (!v) return out;
  if (!v->isMap()) bad(*v, what + " must be a mapping");
  for (const auto& [k, x] : v->fields()) {
    if (x.isNull()) continue;
    out[k] = str(&x, what + "." + k);
  }
  return out;
}

IpAddr address(const Doc* v, const std::string& what) {
  auto a = IpAddr::parse(str(v, what));
  if (!a) bad(*v, what + ": " + a.error());
  return *a;
}

uint8_t protocol(const Doc* v) {
  const std::string p = v ? str(v, "protocol") : "TCP";
  if (p == "TCP") return 6;
  if (p == "UDP") return 17;
  if (p == "SCTP") return 132;
  bad(*v, "protocol '" + p + "' is not TCP, UDP or SCTP");
}

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

template <typename T, typename F>
Decoded<T> guarded(F&& f) {
  Decoded<T> out;
  try {
    out.value = f();
    out.ok = true;
  } catch (const Bad& b) {
    out.problem = {b.what, b.line};
  }
  return out;
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
    for (const Doc& x : list(obj.get("endpoints"), "endpoints")) {
      Endpoint ep;
      for (const Doc& a : list(x.get("addresses"), "endpoints[].addresses")) {
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

namespace {

bool number(const std::string& t, uint64_t max, uint64_t* out) {
  if (t.empty() || t.size() > 10) return false;
  uint64_t v = 0;
  for (char c : t) {
    if (c < '0' || c > '9') return false;
    v = v * 10 + static_cast<uint64_t>(c - '0');
  }
  if (v > max) return false;
  *out = v;
  return true;
}

std::vector<std::string> splitColons(const std::string& t) {
  std::vector<std::string> out(1);
  for (char c : t) {
    if (c == ':') {
      out.emplace_back();
    } else {
      out.back() += c;
    }
  }
  return out;
}

uint32_t asn(const Doc* v, const Doc& at, const std::string& what) {
  if (!v) bad(at, what + " is required");
  return static_cast<uint32_t>(integer(v, what, 1, 4294967295LL));
}

Labels matchLabels(const Doc* selector, const std::string& what) {
  if (!selector) return {};
  if (!selector->isMap()) bad(*selector, what + " must be a mapping");
  if (selector->get("matchExpressions")) {
    bad(*selector, what + ".matchExpressions is not supported (use matchLabels)");
  }
  return stringMap(selector->get("matchLabels"), what + ".matchLabels");
}

std::vector<std::string> strings(const Doc* v, const std::string& what) {
  std::vector<std::string> out;
  for (const Doc& x : list(v, what)) out.push_back(str(&x, what + "[]"));
  return out;
}

}  // namespace

bool parseCommunity(const std::string& text, uint32_t* out) {
  static const std::map<std::string, uint32_t> kNamed = {
      {"no-export", 0xffffff01}, {"no-advertise", 0xffffff02}, {"no-export-subconfed", 0xffffff03},
      {"no-peer", 0xffffff04},   {"blackhole", 0xffff029a},    {"graceful-shutdown", 0xffff0000}};
  if (auto it = kNamed.find(text); it != kNamed.end()) {
    *out = it->second;
    return true;
  }
  const auto parts = splitColons(text);
  uint64_t a = 0, b = 0;
  if (parts.size() == 2 && number(parts[0], 0xffff, &a) && number(parts[1], 0xffff, &b)) {
    *out = static_cast<uint32_t>(a << 16 | b);
    return true;
  }
  if (parts.size() == 1 && number(parts[0], 0xffffffff, &a)) {
    *out = static_cast<uint32_t>(a);
    return true;
  }
  return false;
}

bool parseLargeCommunity(const std::string& text, LargeCommunityValue* out) {
  const auto parts = splitColons(text);
  uint64_t g = 0, l1 = 0, l2 = 0;
  if (parts.size() != 3 || !number(parts[0], 0xffffffff, &g) ||
      !number(parts[1], 0xffffffff, &l1) || !number(parts[2], 0xffffffff, &l2)) {
    return false;
  }
  *out = {static_cast<uint32_t>(g), static_cast<uint32_t>(l1), static_cast<uint32_t>(l2)};
  return true;
}

Decoded<BgpPeerSpec> decodeBgpPeer(const Doc& obj) {
  return guarded<BgpPeerSpec>([&] {
    BgpPeerSpec p;
    p.name = meta(obj, false).name;
    const Doc* spec = obj.get("spec");
    if (!spec || !spec->isMap()) bad(obj, "spec is required");
    if (!spec->get("peerAddress")) bad(*spec, "spec.peerAddress is required");
    p.address = address(spec->get("peerAddress"), "spec.peerAddress");
    p.peer_asn = asn(spec->get("peerASN"), *spec, "spec.peerASN");
    p.local_asn = asn(spec->get("myASN"), *spec, "spec.myASN");
    if (const Doc* s = spec->get("sourceAddress")) {
      p.source = address(s, "spec.sourceAddress");
      if (p.source->isV4() != p.address.isV4()) {
        bad(*s, "spec.sourceAddress is not of the family of spec.peerAddress");
      }
    }
    if (const Doc* port = spec->get("port")) {
      p.port = static_cast<uint16_t>(integer(port, "spec.port", 1, 65535));
    }
    if (const Doc* h = spec->get("holdTimeSeconds")) {
      const int64_t v = integer(h, "spec.holdTimeSeconds", 0, 65535);
      if (v == 1 || v == 2) bad(*h, "spec.holdTimeSeconds must be 0 or at least 3 (RFC 4271)");
      p.hold_time_s = static_cast<uint16_t>(v);
    }
    if (spec->get("passwordSecretRef")) {
      bad(*spec->get("passwordSecretRef"),
          "spec.passwordSecretRef is not supported yet: TCP-MD5 passwords are set in the agent "
          "file's bgp section");
    }
    if (const Doc* b = spec->get("bfdProfile")) {
      if (!b->isMap()) bad(*b, "spec.bfdProfile must be a mapping");
      BfdSpec bfd;
      if (const Doc* x = b->get("transmitIntervalMs")) {
        bfd.min_tx_ms =
            static_cast<uint32_t>(integer(x, "spec.bfdProfile.transmitIntervalMs", 10, 60000));
      }
      if (const Doc* x = b->get("receiveIntervalMs")) {
        bfd.min_rx_ms =
            static_cast<uint32_t>(integer(x, "spec.bfdProfile.receiveIntervalMs", 10, 60000));
      }
      if (const Doc* x = b->get("detectMultiplier")) {
        bfd.multiplier =
            static_cast<uint32_t>(integer(x, "spec.bfdProfile.detectMultiplier", 1, 255));
      }
      p.bfd = bfd;
    }
    if (boolean(spec->get("enableGracefulRestart"), "spec.enableGracefulRestart", false)) {
      p.graceful_restart_s = 120;
      if (const Doc* t = spec->get("gracefulRestartTimeSeconds")) {
        p.graceful_restart_s =
            static_cast<uint16_t>(integer(t, "spec.gracefulRestartTimeSeconds", 1, 4095));
      }
    }
    p.node_selector = matchLabels(spec->get("nodeSelector"), "spec.nodeSelector");
    return p;
  });
}

Decoded<BgpAdvertisementSpec> decodeBgpAdvertisement(const Doc& obj) {
  return guarded<BgpAdvertisementSpec>([&] {
    BgpAdvertisementSpec a;
    a.route.name = meta(obj, false).name;
    const Doc* spec = obj.get("spec");
    if (spec && !spec->isMap()) bad(*spec, "spec must be a mapping");
    static const Doc kEmpty = Doc::map();
    if (!spec) spec = &kEmpty;
    a.pools = strings(spec->get("ipPools"), "spec.ipPools");
    a.pool_selector = matchLabels(spec->get("ipPoolSelector"), "spec.ipPoolSelector");
    a.route.peers = strings(spec->get("peers"), "spec.peers");
    for (const Doc& c : list(spec->get("communities"), "spec.communities")) {
      const std::string t = str(&c, "spec.communities[]");
      uint32_t v = 0;
      if (!parseCommunity(t, &v)) {
        bad(c, "spec.communities: '" + t +
                   "' is not a community (ASN:VALUE with 16-bit parts, a 32-bit number, or "
                   "no-export, no-advertise, no-export-subconfed, no-peer, blackhole, "
                   "graceful-shutdown)");
      }
      a.route.communities.push_back(v);
    }
    for (const Doc& c : list(spec->get("largeCommunities"), "spec.largeCommunities")) {
      const std::string t = str(&c, "spec.largeCommunities[]");
      LargeCommunityValue v;
      if (!parseLargeCommunity(t, &v)) {
        bad(c, "spec.largeCommunities: '" + t +
                   "' is not a large community (GLOBAL:LOCAL1:LOCAL2, 32-bit numbers)");
      }
      a.route.large_communities.push_back(v);
    }
    if (const Doc* l = spec->get("localPref")) {
      a.route.local_pref = static_cast<uint32_t>(integer(l, "spec.localPref", 0, 4294967295LL));
    }
    if (const Doc* l = spec->get("aggregationLength")) {
      a.route.aggregation_v4 = static_cast<uint8_t>(integer(l, "spec.aggregationLength", 1, 32));
    }
    if (const Doc* l = spec->get("aggregationLengthV6")) {
      a.route.aggregation_v6 = static_cast<uint8_t>(integer(l, "spec.aggregationLengthV6", 1, 128));
    }
    return a;
  });
}

}  // namespace flowlb::controller
