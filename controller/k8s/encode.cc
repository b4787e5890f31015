#include "controller/k8s/encode.h"

#include <cpprest/json.h>

#include <algorithm>
#include <cstdio>

#include "controller/k8s/decode.h"

namespace flowlb::controller::k8s {
namespace {

using web::json::value;

std::pair<std::string, std::string> split(const std::string& key) {
  const auto slash = key.find('/');
  if (slash == std::string::npos) return {"", key};
  return {key.substr(0, slash), key.substr(slash + 1)};
}

int64_t clampJson(uint64_t v) {
  return v > static_cast<uint64_t>(INT64_MAX) ? INT64_MAX : static_cast<int64_t>(v);
}

}  // namespace

std::string pathSegment(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (const char ch : s) {
    const unsigned char c = static_cast<unsigned char>(ch);
    const bool unreserved = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                            (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_' || c == '~';
    if (unreserved) {
      out += ch;
    } else {
      char hex[4];
      std::snprintf(hex, sizeof hex, "%%%02X", c);
      out += hex;
    }
  }
  return out;
}

std::string servicePath(const std::string& service_key) {
  const auto [ns, name] = split(service_key);
  return "/api/v1/namespaces/" + pathSegment(ns) + "/services/" + pathSegment(name);
}

std::string serviceStatusPath(const std::string& service_key) {
  return servicePath(service_key) + "/status";
}

std::string eventsPath(const std::string& ns) {
  return "/api/v1/namespaces/" + pathSegment(ns) + "/events";
}

std::string eventPath(const std::string& ns, const std::string& name) {
  return eventsPath(ns) + "/" + pathSegment(name);
}

std::string poolStatusPath(const std::string& pool) {
  return "/apis/flowlb.io/v1alpha1/ippools/" + pathSegment(pool) + "/status";
}

std::string bgpPeerStatusPath(const std::string& peer) {
  return "/apis/flowlb.io/v1alpha1/bgppeers/" + pathSegment(peer) + "/status";
}

std::string leasesPath(const std::string& ns) {
  return "/apis/coordination.k8s.io/v1/namespaces/" + pathSegment(ns) + "/leases";
}

std::string leasePath(const std::string& ns, const std::string& name) {
  return leasesPath(ns) + "/" + pathSegment(name);
}

std::string serviceStatusPatch(const std::string& resource_version, const StatusUpdate& u) {
  value ingress = value::array();
  size_t i = 0;
  for (const IpAddr& ip : u.ips) {
    value e = value::object();
    e["ip"] = value::string(ip.toString());
    e["ipMode"] = value::string("VIP");
    ingress[i++] = e;
  }
  for (const std::string& h : u.hostnames) {
    value e = value::object();
    e["hostname"] = value::string(h);
    ingress[i++] = e;
  }
  value conds = value::array();
  for (size_t n = 0; n < u.conditions.size(); ++n) {
    const Condition& c = u.conditions[n];
    value v = value::object();
    v["type"] = value::string(c.type);
    v["status"] = value::string(c.status);
    v["reason"] = value::string(c.reason);
    v["message"] = value::string(c.message);
    v["lastTransitionTime"] = value::string(c.last_transition);
    if (c.observed_generation) v["observedGeneration"] = value::number(c.observed_generation);
    conds[n] = v;
  }
  value patch = value::object();
  patch["metadata"] = value::object();
  patch["metadata"]["resourceVersion"] = value::string(resource_version);
  patch["status"] = value::object();
  patch["status"]["loadBalancer"] = value::object();
  patch["status"]["loadBalancer"]["ingress"] = i == 0 ? value::null() : ingress;
  patch["status"]["conditions"] = u.conditions.empty() ? value::null() : conds;
  return patch.serialize();
}

std::string annotationPatch(const std::string& key, const std::optional<std::string>& v) {
  value patch = value::object();
  patch["metadata"] = value::object();
  patch["metadata"]["annotations"] = value::object();
  patch["metadata"]["annotations"][key] = v ? value::string(*v) : value::null();
  return patch.serialize();
}

std::string eventBody(const EventPost& e, const std::string& reporting_instance,
                      const std::string& now) {
  const InvolvedObject o = involvedObjectOf(e.service_key);
  value ev = value::object();
  ev["apiVersion"] = value::string("v1");
  ev["kind"] = value::string("Event");
  ev["metadata"] = value::object();
  ev["metadata"]["generateName"] = value::string(o.name + ".");
  ev["metadata"]["namespace"] = value::string(o.eventNamespace());
  ev["involvedObject"] = value::object();
  ev["involvedObject"]["apiVersion"] = value::string(o.api_version);
  ev["involvedObject"]["kind"] = value::string(o.kind);
  if (!o.ns.empty()) ev["involvedObject"]["namespace"] = value::string(o.ns);
  ev["involvedObject"]["name"] = value::string(o.name);
  ev["involvedObject"]["uid"] = value::string(e.uid);
  ev["type"] = value::string(e.warning ? "Warning" : "Normal");
  ev["reason"] = value::string(e.reason);
  ev["message"] = value::string(e.message);
  ev["source"] = value::object();
  ev["source"]["component"] = value::string("flowlb-controller");
  ev["reportingComponent"] = value::string("flowlb.io/controller");
  ev["reportingInstance"] = value::string(reporting_instance);
  ev["firstTimestamp"] = value::string(now);
  ev["lastTimestamp"] = value::string(now);
  ev["count"] = value::number(e.count);
  return ev.serialize();
}

std::string bgpPeerStatusPatch(const std::vector<BgpNodeSession>& sessions) {
  value nodes = value::array(sessions.size());
  size_t i = 0, established = 0;
  for (const BgpNodeSession& s : sessions) {
    value n = value::object();
    n["name"] = value::string(s.node);
    n["sessionState"] = value::string(s.state);
    n["lastTransitionTime"] = value::string(rfc3339(static_cast<int64_t>(s.since_unix_ms / 1000)));
    n["routesAdvertised"] = value::number(clampJson(s.routes_advertised));
    n["routesReceived"] = value::number(clampJson(s.routes_received));
    n["flaps"] = value::number(clampJson(s.flaps));
    if (!s.bfd.empty()) n["bfdState"] = value::string(s.bfd);
    if (!s.last_error.empty()) n["lastError"] = value::string(s.last_error);
    established += s.established() ? 1 : 0;
    nodes[i++] = std::move(n);
  }
  value patch = value::object();
  patch["status"] = value::object();
  patch["status"]["nodes"] = std::move(nodes);
  patch["status"]["establishedNodes"] = value::number(static_cast<uint64_t>(established));
  return patch.serialize();
}

std::string eventCountPatch(int count, const std::string& now) {
  value patch = value::object();
  patch["count"] = value::number(count);
  patch["lastTimestamp"] = value::string(now);
  return patch.serialize();
}

std::string poolStatusPatch(uint64_t used, uint64_t free, const std::string& invalid,
                            const std::string& now) {
  value patch = value::object();
  patch["status"] = value::object();
  patch["status"]["used"] = value::number(clampJson(used));
  patch["status"]["free"] = value::number(clampJson(free));
  // flowlb.io/Valid: whether every address entry could be read (those that
  // could not are listed, and left out of the pool).
  value c = value::object();
  c["type"] = value::string("flowlb.io/Valid");
  c["status"] = value::string(invalid.empty() ? "True" : "False");
  c["reason"] = value::string(invalid.empty() ? "AddressesValid" : "InvalidAddresses");
  c["message"] = value::string(invalid.empty() ? "every address entry is valid" : invalid);
  c["lastTransitionTime"] = value::string(now);
  value list = value::array();
  list[0] = c;
  patch["status"]["conditions"] = list;
  return patch.serialize();
}

namespace {

value leaseSpec(const LeaseWrite& w) {
  value spec = value::object();
  spec["holderIdentity"] = value::string(w.holder);
  spec["leaseDurationSeconds"] = value::number(std::max(1, w.duration_s));
  spec["acquireTime"] = value::string(w.acquire);
  spec["renewTime"] = value::string(w.renew);
  spec["leaseTransitions"] = value::number(w.transitions);
  return spec;
}

void leaderAnnotation(value& lease, const std::string& address) {
  if (!lease.has_object_field("metadata")) lease["metadata"] = value::object();
  value& meta = lease["metadata"];
  if (!meta.has_object_field("annotations")) meta["annotations"] = value::object();
  if (address.empty()) {
    if (meta["annotations"].has_field(kLeaderAddressAnnotation)) {
      meta["annotations"].erase(kLeaderAddressAnnotation);
    }
  } else {
    meta["annotations"][kLeaderAddressAnnotation] = value::string(address);
  }
}

}  // namespace

std::string leaseCreateBody(const std::string& ns, const std::string& name, const LeaseWrite& w) {
  value lease = value::object();
  lease["apiVersion"] = value::string("coordination.k8s.io/v1");
  lease["kind"] = value::string("Lease");
  lease["metadata"] = value::object();
  lease["metadata"]["name"] = value::string(name);
  lease["metadata"]["namespace"] = value::string(ns);
  leaderAnnotation(lease, w.leader_address);
  lease["spec"] = leaseSpec(w);
  return lease.serialize();
}

std::string leaseUpdateBody(const std::string& read_body, const LeaseWrite& w) {
  try {
    value lease = value::parse(read_body);
    if (!lease.is_object()) return "";
    leaderAnnotation(lease, w.leader_address);
    lease["spec"] = leaseSpec(w);
    return lease.serialize();
  } catch (const std::exception&) {
    return "";
  }
}

}  // namespace flowlb::controller::k8s
