#include "agent/source/config_file.h"

#include <yaml-cpp/yaml.h>

#include <fstream>
#include <set>
#include <sstream>

#include "agent/announce/bgp/config_yaml.h"
#include "agent/packet/packet.h"

namespace flowlb::agent {
namespace {

// Thrown inside this file only and turned into a Status at the boundary.
struct ConfigError {
  std::string message;
};

[[noreturn]] void fail(const YAML::Node& n, const std::string& field, const std::string& what) {
  const int line = n.Mark().line >= 0 ? n.Mark().line + 1 : 0;
  throw ConfigError{"line " + std::to_string(line) + ": " + field + ": " + what};
}

void checkKeys(const YAML::Node& n, const std::string& where, const std::set<std::string>& known) {
  if (!n.IsMap()) fail(n, where, "must be a mapping");
  for (const auto& kv : n) {
    const auto k = kv.first.as<std::string>();
    if (!known.count(k)) fail(kv.first, where + "." + k, "unknown field");
  }
}

template <typename T>
T number(const YAML::Node& n, const std::string& field, T min, T max) {
  if (!n.IsScalar()) fail(n, field, "must be a number");
  long long v = 0;
  try {
    size_t used = 0;
    const auto s = n.Scalar();
    v = std::stoll(s, &used, 10);
    if (used != s.size()) throw std::invalid_argument(s);
  } catch (const std::exception&) {
    fail(n, field, "'" + n.Scalar() + "' is not an integer");
  }
  if (v < static_cast<long long>(min) || v > static_cast<long long>(max)) {
    fail(n, field,
         std::to_string(v) + " is outside " + std::to_string(min) + ".." + std::to_string(max));
  }
  return static_cast<T>(v);
}

IpAddr address(const YAML::Node& n, const std::string& field) {
  if (!n.IsScalar()) fail(n, field, "must be an IP address");
  auto a = IpAddr::parse(n.Scalar());
  if (!a) fail(n, field, a.error());
  return *a;
}

std::string text(const YAML::Node& n, const std::string& field) {
  if (!n.IsScalar()) fail(n, field, "must be a string");
  return n.Scalar();
}

BackendSpec backend(const YAML::Node& n, const std::string& where) {
  checkKeys(n, where, {"address", "port", "weight", "state", "node", "zone"});
  BackendSpec b;
  if (!n["address"]) fail(n, where + ".address", "is required");
  b.addr = address(n["address"], where + ".address");
  if (!n["port"]) fail(n, where + ".port", "is required");
  b.port = number<uint16_t>(n["port"], where + ".port", 1, 65535);
  if (n["weight"]) b.weight = number<uint32_t>(n["weight"], where + ".weight", 0, 65535);
  if (n["state"]) {
    const auto s = text(n["state"], where + ".state");
    if (s == "active") {
      b.state = BackendState::kActive;
    } else if (s == "draining") {
      b.state = BackendState::kDraining;
    } else {
      fail(n["state"], where + ".state", "'" + s + "' is not one of active, draining");
    }
  }
  if (n["node"]) b.node = text(n["node"], where + ".node");
  if (n["zone"]) b.zone = text(n["zone"], where + ".zone");
  return b;
}

// A duration: a whole number followed by "ms" or "s", e.g. 500ms, 2s.
uint32_t durationMs(const YAML::Node& n, const std::string& field, uint32_t min_ms,
                    uint32_t max_ms) {
  if (!n.IsScalar()) fail(n, field, "must be a duration such as 500ms or 2s");
  const std::string& s = n.Scalar();
  size_t digits = 0;
  while (digits < s.size() && s[digits] >= '0' && s[digits] <= '9') ++digits;
  const std::string unit = s.substr(digits);
  if (digits == 0 || digits > 9 || (unit != "ms" && unit != "s")) {
    fail(n, field, "'" + s + "' is not a duration such as 500ms or 2s");
  }
  const uint64_t v = std::stoull(s.substr(0, digits)) * (unit == "s" ? 1000 : 1);
  if (v < min_ms || v > max_ms) {
    fail(n, field,
         "'" + s + "' is outside " + std::to_string(min_ms) + "ms.." + std::to_string(max_ms) +
             "ms");
  }
  return static_cast<uint32_t>(v);
}

HealthCheckSpec healthCheck(const YAML::Node& n, const std::string& where) {
  checkKeys(n, where,
            {"type", "path", "interval", "timeout", "unhealthyThreshold", "healthyThreshold"});
  HealthCheckSpec h;
  if (!n["type"]) fail(n, where + ".type", "is required (tcp, http, https or udp-dns)");
  const auto t = text(n["type"], where + ".type");
  if (t == "tcp") {
    h.kind = HealthCheckKind::kTcp;
  } else if (t == "http") {
    h.kind = HealthCheckKind::kHttp;
  } else if (t == "https") {
    h.kind = HealthCheckKind::kHttps;
  } else if (t == "udp-dns") {
    h.kind = HealthCheckKind::kUdpDns;
  } else {
    fail(n["type"], where + ".type", "'" + t + "' is not one of tcp, http, https, udp-dns");
  }
  if (n["path"]) {
    if (h.kind != HealthCheckKind::kHttp && h.kind != HealthCheckKind::kHttps) {
      fail(n["path"], where + ".path", "is for http and https checks only");
    }
    h.path = text(n["path"], where + ".path");
    if (h.path.empty() || h.path[0] != '/' ||
        h.path.find_first_of(" \r\n\t") != std::string::npos) {
      fail(n["path"], where + ".path", "'" + h.path + "' must start with '/' and hold no space");
    }
  }
  if (n["interval"]) h.interval_ms = durationMs(n["interval"], where + ".interval", 100, 3600000);
  if (n["timeout"]) h.timeout_ms = durationMs(n["timeout"], where + ".timeout", 10, 3600000);
  if (h.timeout_ms >= h.interval_ms) {
    fail(n, where + ".timeout",
         std::to_string(h.timeout_ms) + "ms must be below the interval (" +
             std::to_string(h.interval_ms) + "ms)");
  }
  if (n["unhealthyThreshold"]) {
    h.unhealthy_threshold =
        number<uint32_t>(n["unhealthyThreshold"], where + ".unhealthyThreshold", 1, 100);
  }
  if (n["healthyThreshold"]) {
    h.healthy_threshold =
        number<uint32_t>(n["healthyThreshold"], where + ".healthyThreshold", 1, 100);
  }
  return h;
}

ServiceSpec service(const YAML::Node& n, const std::string& where) {
  checkKeys(n, where,
            {"name", "vip", "port", "protocol", "mode", "sessionAffinity", "affinityTimeoutSeconds",
             "idleTimeoutSeconds", "drainTimeoutSeconds", "sourceRanges", "maglevTableSize",
             "hashSeed", "externalTrafficPolicy", "proxyProtocol", "healthCheck", "backends"});
  ServiceSpec s;
  for (const char* required : {"name", "vip", "port", "backends"}) {
    if (!n[required]) fail(n, where + "." + required, "is required");
  }
  s.name = text(n["name"], where + ".name");
  s.vip = address(n["vip"], where + ".vip");
  s.port = number<uint16_t>(n["port"], where + ".port", 1, 65535);
  if (n["protocol"]) {
    const auto p = text(n["protocol"], where + ".protocol");
    if (p == "tcp" || p == "TCP") {
      s.proto = kProtoTCP;
    } else if (p == "udp" || p == "UDP") {
      s.proto = kProtoUDP;
    } else {
      fail(n["protocol"], where + ".protocol", "'" + p + "' is not one of tcp, udp");
    }
  }
  if (n["mode"]) {
    const auto m = text(n["mode"], where + ".mode");
    if (m == "nat") {
      s.mode = ForwardingMode::kNat;
    } else if (m == "dsr") {
      s.mode = ForwardingMode::kDsr;
    } else {
      fail(n["mode"], where + ".mode", "'" + m + "' is not one of nat, dsr");
    }
  }
  if (n["sessionAffinity"]) {
    const auto a = text(n["sessionAffinity"], where + ".sessionAffinity");
    if (a == "ClientIP") {
      s.client_ip_affinity = true;
    } else if (a != "None") {
      fail(n["sessionAffinity"], where + ".sessionAffinity",
           "'" + a + "' is not one of None, ClientIP");
    }
  }
  if (n["externalTrafficPolicy"]) {
    const auto p = text(n["externalTrafficPolicy"], where + ".externalTrafficPolicy");
    if (p == "Local") {
      s.keep_client_address = true;
    } else if (p != "Cluster") {
      fail(n["externalTrafficPolicy"], where + ".externalTrafficPolicy",
           "'" + p + "' is not one of Cluster, Local");
    }
  }
  if (n["proxyProtocol"]) {
    const auto v = text(n["proxyProtocol"], where + ".proxyProtocol");
    if (v == "v2") {
      s.proxy_protocol = ProxyProtocol::kV2;
    } else if (v != "none") {
      fail(n["proxyProtocol"], where + ".proxyProtocol", "'" + v + "' is not one of none, v2");
    }
  }
  const uint32_t day = 86400;
  if (n["affinityTimeoutSeconds"]) {
    s.affinity_timeout_s =
        number<uint32_t>(n["affinityTimeoutSeconds"], where + ".affinityTimeoutSeconds", 1, day);
  }
  if (n["idleTimeoutSeconds"]) {
    s.idle_timeout_s =
        number<uint32_t>(n["idleTimeoutSeconds"], where + ".idleTimeoutSeconds", 1, 24 * day);
  }
  if (n["drainTimeoutSeconds"]) {
    s.drain_timeout_s =
        number<uint32_t>(n["drainTimeoutSeconds"], where + ".drainTimeoutSeconds", 0, day);
  }
  if (n["maglevTableSize"]) {
    s.maglev_size =
        number<uint32_t>(n["maglevTableSize"], where + ".maglevTableSize", 3, kMaxMaglevSize);
    if (!isPrime(s.maglev_size))
      fail(n["maglevTableSize"], where + ".maglevTableSize", "must be prime (e.g. 65537)");
  }
  if (n["hashSeed"])
    s.hash_seed = number<uint64_t>(n["hashSeed"], where + ".hashSeed", 0, INT64_MAX);
  if (const auto& ranges = n["sourceRanges"]) {
    if (!ranges.IsSequence()) fail(ranges, where + ".sourceRanges", "must be a list of CIDRs");
    for (size_t i = 0; i < ranges.size(); ++i) {
      const auto field = where + ".sourceRanges[" + std::to_string(i) + "]";
      auto p = IpPrefix::parse(text(ranges[i], field));
      if (!p) fail(ranges[i], field, p.error());
      s.source_ranges.push_back(*p);
    }
  }
  const auto& bs = n["backends"];
  if (!bs.IsSequence()) fail(bs, where + ".backends", "must be a list");
  for (size_t i = 0; i < bs.size(); ++i) {
    s.backends.push_back(backend(bs[i], where + ".backends[" + std::to_string(i) + "]"));
  }
  return s;
}

void snat(const YAML::Node& n, SnatConfig& out) {
  checkKeys(n, "snat", {"ipv4", "ipv6", "portMin", "portMax", "source"});
  if (n["source"]) {
    const std::string src = n["source"].IsScalar() ? n["source"].as<std::string>() : "";
    if (src != "node" && src != "vip") fail(n["source"], "snat.source", "must be node or vip");
    out.vip_source = src == "vip";
  }
  if (n["ipv4"]) {
    out.v4 = address(n["ipv4"], "snat.ipv4");
    if (!out.v4.isV4()) fail(n["ipv4"], "snat.ipv4", "must be an IPv4 address");
    out.has_v4 = true;
  }
  if (n["ipv6"]) {
    out.v6 = address(n["ipv6"], "snat.ipv6");
    if (out.v6.isV4()) fail(n["ipv6"], "snat.ipv6", "must be an IPv6 address");
    out.has_v6 = true;
  }
  if (n["portMin"]) out.port_min = number<uint16_t>(n["portMin"], "snat.portMin", 1024, 65535);
  if (n["portMax"]) out.port_max = number<uint16_t>(n["portMax"], "snat.portMax", 1024, 65535);
  if (out.port_min > out.port_max) fail(n, "snat", "portMin is above portMax");
}

}  // namespace

Result<AgentConfigFile> parseAgentConfig(const std::string& content) {
  try {
    const YAML::Node root = YAML::Load(content);
    if (!root.IsMap()) return Status::error("line 1: the file must be a mapping with 'services'");
    checkKeys(root, "(top)", {"generation", "snat", "services", "announce", "bgp"});
    AgentConfigFile cfg;
    if (root["generation"])
      cfg.desired.generation = number<uint64_t>(root["generation"], "generation", 0, INT64_MAX);
    if (root["snat"]) snat(root["snat"], cfg.snat);
    if (const auto& an = root["announce"]) {
      if (!an.IsSequence()) fail(an, "announce", "must be a list of interface names");
      for (size_t i = 0; i < an.size(); ++i) {
        cfg.announce_interfaces.push_back(text(an[i], "announce[" + std::to_string(i) + "]"));
      }
    }
    if (const auto& b = root["bgp"]) {
      auto bgp = bgp::parseBgpYaml(b);
      if (!bgp) return bgp.status();
      cfg.bgp = std::move(*bgp);
    }
    if (const auto& ss = root["services"]) {
      if (!ss.IsSequence()) fail(ss, "services", "must be a list");
      for (size_t i = 0; i < ss.size(); ++i) {
        const std::string where = "services[" + std::to_string(i) + "]";
        ServiceSpec s = service(ss[i], where);
        // A bad health check refuses its service alone (as from the controller).
        if (const auto& hc = ss[i]["healthCheck"]) {
          try {
            s.health = healthCheck(hc, where + ".healthCheck");
          } catch (const ConfigError& e) {
            cfg.refused.push_back({s.name, ApplyErrorCode::kInvalidArgument,
                                   "service '" + s.name + "': " + e.message});
            continue;
          }
        }
        cfg.desired.services.push_back(std::move(s));
      }
    }
    // ECMP spreads a flow's replies over every node, before its flow could
    // be shared: VIP-sourced NAT is for L2 announcement only.
    if (cfg.snat.vip_source && !cfg.bgp.peers.empty()) {
      return Status::error(
          "snat.source: vip cannot be combined with bgp: routers spread NAT replies to the VIP "
          "over every node (docs/flow-sync.md); keep source: node");
    }
    return cfg;
  } catch (const ConfigError& e) {
    return Status::error(e.message);
  } catch (const YAML::Exception& e) {
    return Status::error("line " + std::to_string(e.mark.line + 1) + ": " + e.msg);
  }
}

Result<AgentConfigFile> loadAgentConfig(const std::string& path) {
  std::ifstream in(path);
  if (!in) return Status::error("cannot read " + path);
  std::stringstream ss;
  ss << in.rdbuf();
  auto r = parseAgentConfig(ss.str());
  if (!r) return Status::error(path + ": " + r.error());
  return r;
}

}  // namespace flowlb::agent
