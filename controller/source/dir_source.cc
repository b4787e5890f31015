#include "controller/source/dir_source.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <sstream>

namespace flowlb::controller {
namespace {

struct DocError {
  std::string message;
};

// n[a][b]... or an undefined node when any step is missing (yaml-cpp
// throws when indexing a missing node).
YAML::Node at(const YAML::Node& n, std::initializer_list<const char*> path) {
  YAML::Node cur = n;
  for (const char* k : path) {
    if (!cur || !cur.IsMap()) return YAML::Node(YAML::NodeType::Undefined);
    YAML::Node next = cur[k];
    if (!next) return YAML::Node(YAML::NodeType::Undefined);
    cur.reset(next);  // rebind; operator= would overwrite the node's content
  }
  return cur;
}

[[noreturn]] void bad(const YAML::Node& n, const std::string& what) {
  throw DocError{"line " + std::to_string(n.Mark().line + 1) + ": " + what};
}

std::string str(const YAML::Node& n, const std::string& field) {
  if (!n.IsScalar()) bad(n, field + " must be a string");
  return n.Scalar();
}

long long num(const YAML::Node& n, const std::string& field, long long min, long long max) {
  try {
    const long long v = n.as<long long>();
    if (v < min || v > max)
      bad(n, field + " must be in " + std::to_string(min) + ".." + std::to_string(max));
    return v;
  } catch (const YAML::Exception&) {
    bad(n, field + " must be a number");
  }
}

bool boolean(const YAML::Node& n, const std::string& field, bool fallback) {
  if (!n) return fallback;
  try {
    return n.as<bool>();
  } catch (const YAML::Exception&) {
    bad(n, field + " must be true or false");
  }
}

IpAddr address(const YAML::Node& n, const std::string& field) {
  auto a = IpAddr::parse(str(n, field));
  if (!a) bad(n, field + ": " + a.error());
  return *a;
}

uint8_t protocol(const YAML::Node& n) {
  if (!n) return 6;
  const std::string p = str(n, "protocol");
  if (p == "TCP") return 6;
  if (p == "UDP") return 17;
  if (p == "SCTP") return 132;
  bad(n, "protocol '" + p + "' is not TCP, UDP or SCTP");
}

std::map<std::string, std::string> stringMap(const YAML::Node& n, const std::string& field) {
  std::map<std::string, std::string> out;
  if (!n) return out;
  if (!n.IsMap()) bad(n, field + " must be a mapping");
  for (const auto& kv : n) out[kv.first.as<std::string>()] = str(kv.second, field);
  return out;
}

int64_t timestamp(const YAML::Node& n) {
  if (!n) return 0;
  std::tm tm{};
  std::istringstream in(str(n, "metadata.creationTimestamp"));
  in >> std::get_time(&tm, "%Y-%m-%dT%H:%M:%SZ");
  if (in.fail()) bad(n, "metadata.creationTimestamp must look like 2024-01-31T12:00:00Z");
  return static_cast<int64_t>(timegm(&tm));
}

ObjectMeta meta(const YAML::Node& doc, bool namespaced) {
  const YAML::Node m = at(doc, {"metadata"});
  if (!m || !at(m, {"name"})) bad(doc, "metadata.name is required");
  ObjectMeta out;
  out.name = str(m["name"], "metadata.name");
  out.ns =
      namespaced ? (m["namespace"] ? str(m["namespace"], "metadata.namespace") : "default") : "";
  out.labels = stringMap(at(m, {"labels"}), "metadata.labels");
  out.annotations = stringMap(at(m, {"annotations"}), "metadata.annotations");
  out.created = timestamp(at(m, {"creationTimestamp"}));
  return out;
}

std::vector<ServicePortSpec> ports(const YAML::Node& n) {
  std::vector<ServicePortSpec> out;
  if (!n) return out;
  if (!n.IsSequence()) bad(n, "ports must be a list");
  for (const auto& p : n) {
    ServicePortSpec s;
    if (p["name"]) s.name = str(p["name"], "ports[].name");
    s.proto = protocol(p["protocol"]);
    if (!p["port"]) bad(p, "ports[].port is required");
    s.port = static_cast<uint16_t>(num(p["port"], "ports[].port", 1, 65535));
    out.push_back(s);
  }
  return out;
}

ServiceObject service(const YAML::Node& doc) {
  ServiceObject s;
  s.meta = meta(doc, true);
  const YAML::Node spec = doc["spec"];
  if (!spec) bad(doc, "spec is required");
  if (spec["type"]) s.type = str(spec["type"], "spec.type");
  if (spec["loadBalancerClass"])
    s.load_balancer_class = str(spec["loadBalancerClass"], "spec.loadBalancerClass");
  s.ports = ports(spec["ports"]);
  if (spec["loadBalancerIP"])
    s.load_balancer_ip = str(spec["loadBalancerIP"], "spec.loadBalancerIP");
  if (const YAML::Node f = spec["ipFamilies"]) {
    s.ip_families.clear();
    for (const auto& x : f) {
      const std::string v = str(x, "spec.ipFamilies[]");
      if (v == "IPv4") {
        s.ip_families.push_back(Family::kV4);
      } else if (v == "IPv6") {
        s.ip_families.push_back(Family::kV6);
      } else {
        bad(x, "spec.ipFamilies: '" + v + "' is not IPv4 or IPv6");
      }
    }
  }
  if (spec["ipFamilyPolicy"])
    s.ip_family_policy = str(spec["ipFamilyPolicy"], "spec.ipFamilyPolicy");
  if (spec["externalTrafficPolicy"]) {
    s.external_traffic_local =
        str(spec["externalTrafficPolicy"], "spec.externalTrafficPolicy") == "Local";
  }
  if (spec["sessionAffinity"]) {
    s.session_affinity_client_ip =
        str(spec["sessionAffinity"], "spec.sessionAffinity") == "ClientIP";
  }
  if (const YAML::Node t = at(spec, {"sessionAffinityConfig", "clientIP", "timeoutSeconds"})) {
    s.session_affinity_timeout_s = static_cast<uint32_t>(num(t, "timeoutSeconds", 1, 86400));
  }
  if (const YAML::Node r = spec["loadBalancerSourceRanges"]) {
    for (const auto& x : r) {
      auto p = IpPrefix::parse(str(x, "spec.loadBalancerSourceRanges[]"));
      if (!p) bad(x, "spec.loadBalancerSourceRanges: " + p.error());
      s.source_ranges.push_back(*p);
    }
  }
  if (const YAML::Node ingress = at(doc, {"status", "loadBalancer", "ingress"})) {
    for (const auto& i : ingress) {
      if (i["ip"]) s.status_ips.push_back(address(i["ip"], "status.loadBalancer.ingress[].ip"));
    }
  }
  return s;
}

EndpointSliceObject endpointSlice(const YAML::Node& doc) {
  EndpointSliceObject e;
  e.meta = meta(doc, true);
  auto it = e.meta.labels.find("kubernetes.io/service-name");
  if (it == e.meta.labels.end()) bad(doc, "metadata.labels needs kubernetes.io/service-name");
  e.service = it->second;
  e.ports = ports(doc["ports"]);
  if (const YAML::Node eps = doc["endpoints"]) {
    for (const auto& x : eps) {
      Endpoint ep;
      for (const auto& a : x["addresses"])
        ep.addresses.push_back(address(a, "endpoints[].addresses[]"));
      ep.ready = boolean(at(x, {"conditions", "ready"}), "conditions.ready", true);
      ep.serving = boolean(at(x, {"conditions", "serving"}), "conditions.serving", ep.ready);
      ep.terminating =
          boolean(at(x, {"conditions", "terminating"}), "conditions.terminating", false);
      if (x["nodeName"]) ep.node = str(x["nodeName"], "endpoints[].nodeName");
      if (x["zone"]) ep.zone = str(x["zone"], "endpoints[].zone");
      e.endpoints.push_back(std::move(ep));
    }
  }
  return e;
}

IpPool ipPool(const YAML::Node& doc) {
  IpPool p;
  p.name = meta(doc, false).name;
  const YAML::Node spec = doc["spec"];
  if (!spec || !spec["addresses"] || !spec["addresses"].IsSequence())
    bad(doc, "spec.addresses (a list) is required");
  for (const auto& a : spec["addresses"]) {
    const std::string text = str(a, "spec.addresses[]");
    auto r = AddressRange::parse(text);
    if (!r) {  // the pool stays, without it, and says why
      p.invalid.push_back("'" + text + "': " + r.error());
      continue;
    }
    p.ranges.push_back(*r);
  }
  p.auto_assign = boolean(spec["autoAssign"], "spec.autoAssign", true);
  p.avoid_buggy_ips = boolean(spec["avoidBuggyIPs"], "spec.avoidBuggyIPs", false);
  p.service_selector =
      stringMap(at(spec, {"serviceSelector", "matchLabels"}), "spec.serviceSelector.matchLabels");
  if (const YAML::Node ns = spec["namespaces"]) {
    for (const auto& n : ns) p.namespaces.push_back(str(n, "spec.namespaces[]"));
  }
  return p;
}

NodeObject node(const YAML::Node& doc) {
  NodeObject n;
  n.name = meta(doc, false).name;
  n.ready = true;  // a Node listed without conditions is taken as ready
  if (const YAML::Node cs = at(doc, {"status", "conditions"})) {
    for (const auto& c : cs) {
      if (c["type"] && c["type"].as<std::string>() == "Ready") {
        n.ready = c["status"] && c["status"].as<std::string>() == "True";
      }
    }
  }
  return n;
}

}  // namespace

void parseDocuments(const std::string& text, const std::string& file, SourceSnapshot* out) {
  std::vector<YAML::Node> docs;
  try {
    docs = YAML::LoadAll(text);
  } catch (const YAML::Exception& e) {
    out->problems.push_back(file + ":" + std::to_string(e.mark.line + 1) + ": " + e.msg);
    return;
  }
  for (const YAML::Node& doc : docs) {
    if (!doc || doc.IsNull()) continue;
    std::string kind = "?", name = "?";
    try {
      if (!doc.IsMap() || !doc["kind"]) bad(doc, "not a Kubernetes object (no kind)");
      kind = doc["kind"].as<std::string>();
      if (const YAML::Node n = at(doc, {"metadata", "name"})) name = n.as<std::string>();
      if (kind == "Service") {
        out->services.push_back(service(doc));
      } else if (kind == "EndpointSlice") {
        out->slices.push_back(endpointSlice(doc));
      } else if (kind == "IPPool") {
        out->pools.push_back(ipPool(doc));
        for (const std::string& w : out->pools.back().invalid) {
          out->problems.push_back(file + ": IPPool/" + out->pools.back().name + ": address " + w +
                                  " (left out of the pool)");
        }
      } else if (kind == "Node") {
        out->nodes.push_back(node(doc));
      }  // other kinds belong to someone else
    } catch (const DocError& e) {
      out->problems.push_back(file + ": " + kind + "/" + name + ": " + e.message);
    } catch (const YAML::Exception& e) {
      out->problems.push_back(file + ":" + std::to_string(e.mark.line + 1) + ": " + kind + "/" +
                              name + ": " + e.msg);
    }
  }
}

Result<SourceSnapshot> readDirectory(const std::string& dir) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return Status::error("no directory " + dir);
  std::vector<fs::path> files;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    const std::string ext = entry.path().extension().string();
    if (entry.is_regular_file() && (ext == ".yaml" || ext == ".yml" || ext == ".json")) {
      files.push_back(entry.path());
    }
  }
  std::sort(files.begin(), files.end());
  SourceSnapshot snap;
  for (const fs::path& f : files) {
    std::ifstream in(f);
    std::stringstream ss;
    ss << in.rdbuf();
    parseDocuments(ss.str(), f.filename().string(), &snap);
  }
  return snap;
}

Status writeStatusFile(const std::string& path, const Reconciled& r) {
  YAML::Emitter y;
  y << YAML::BeginMap << YAML::Key << "services" << YAML::Value << YAML::BeginMap;
  for (const ServiceOutcome& s : r.services) {
    y << YAML::Key << s.key << YAML::Value << YAML::BeginMap;
    y << YAML::Key << "ingress" << YAML::Value << YAML::Flow << YAML::BeginSeq;
    for (const IpAddr& a : s.ips) y << a.toString();
    y << YAML::EndSeq;
    y << YAML::Key << "pool" << YAML::Value << s.pool;
    y << YAML::Key << "satisfied" << YAML::Value << s.satisfied;
    y << YAML::Key << "reason" << YAML::Value << s.reason;
    y << YAML::Key << "message" << YAML::Value << s.message;
    y << YAML::EndMap;
  }
  y << YAML::EndMap << YAML::EndMap;
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp);
    if (!out) return Status::error("cannot write " + tmp);
    out << y.c_str() << "\n";
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);  // atomic: readers never see half a file
  if (ec) return Status::error("cannot replace " + path + ": " + ec.message());
  return Status::ok();
}

Status applyStatusFile(const std::string& path, std::vector<ServiceObject>* services) {
  if (!std::filesystem::exists(path)) return Status::ok();
  try {
    const YAML::Node root = YAML::LoadFile(path);
    const YAML::Node all = root["services"];
    for (ServiceObject& s : *services) {
      const YAML::Node entry = all[s.meta.key()];
      if (!entry || !s.status_ips.empty()) continue;  // the object's own status wins
      for (const auto& ip : entry["ingress"]) {
        if (auto a = IpAddr::parse(ip.as<std::string>())) s.status_ips.push_back(*a);
      }
    }
  } catch (const YAML::Exception& e) {
    return Status::error(path + ":" + std::to_string(e.mark.line + 1) + ": " + e.msg);
  }
  return Status::ok();
}

}  // namespace flowlb::controller
