#include "agent/announce/bgp/config_yaml.h"

#include <fstream>
#include <set>
#include <sstream>

namespace flowlb::agent::bgp {
namespace {

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

uint64_t number(const YAML::Node& n, const std::string& field, uint64_t min, uint64_t max) {
  if (!n.IsScalar()) fail(n, field, "must be a number");
  uint64_t v = 0;
  try {
    size_t used = 0;
    const auto& s = n.Scalar();
    if (!s.empty() && s[0] == '-') throw std::invalid_argument(s);
    v = std::stoull(s, &used, 10);
    if (used != s.size()) throw std::invalid_argument(s);
  } catch (const std::exception&) {
    fail(n, field, "'" + n.Scalar() + "' is not a non-negative integer");
  }
  if (v < min || v > max) {
    fail(n, field,
         std::to_string(v) + " is outside " + std::to_string(min) + ".." + std::to_string(max));
  }
  return v;
}

std::string text(const YAML::Node& n, const std::string& field) {
  if (!n.IsScalar()) fail(n, field, "must be a string");
  return n.Scalar();
}

bool boolean(const YAML::Node& n, const std::string& field) {
  const auto t = text(n, field);
  if (t == "true") return true;
  if (t == "false") return false;
  fail(n, field, "'" + t + "' is not true or false");
}

IpAddr address(const YAML::Node& n, const std::string& field) {
  auto a = IpAddr::parse(text(n, field));
  if (!a) fail(n, field, a.error());
  return *a;
}

std::vector<std::string> strings(const YAML::Node& n, const std::string& field) {
  if (!n.IsSequence()) fail(n, field, "must be a list");
  std::vector<std::string> out;
  for (size_t i = 0; i < n.size(); ++i)
    out.push_back(text(n[i], field + "[" + std::to_string(i) + "]"));
  return out;
}

uint32_t routerId(const YAML::Node& n, const std::string& field) {
  const IpAddr a = address(n, field);
  if (!a.isV4()) fail(n, field, "a router ID is written as an IPv4 address");
  const uint8_t* b = a.v4();
  const uint32_t id = uint32_t{b[0]} << 24 | uint32_t{b[1]} << 16 | uint32_t{b[2]} << 8 | b[3];
  if (id == 0) fail(n, field, "must not be 0.0.0.0");
  return id;
}

constexpr uint64_t kMaxAsn = 0xffffffff;

PeerSettings peer(const YAML::Node& n, const std::string& w, const YAML::Node& root) {
  checkKeys(n, w,
            {"name", "peerAddress", "peerASN", "myASN", "peerPort", "sourceAddress", "routerID",
             "holdTimeSeconds", "keepaliveTimeSeconds", "connectRetrySeconds", "password",
             "passwordFile", "families", "nextHopIPv4", "nextHopIPv6", "bfdProfile",
             "enableGracefulRestart", "gracefulRestartTimeSeconds"});
  PeerSettings p;
  for (const char* required : {"name", "peerAddress", "peerASN"}) {
    if (!n[required]) fail(n, w + "." + required, "is required");
  }
  p.name = text(n["name"], w + ".name");
  p.address = address(n["peerAddress"], w + ".peerAddress");
  p.peer_asn = static_cast<uint32_t>(number(n["peerASN"], w + ".peerASN", 1, kMaxAsn));
  if (n["myASN"]) {
    p.local_asn = static_cast<uint32_t>(number(n["myASN"], w + ".myASN", 1, kMaxAsn));
  } else if (root["myASN"]) {
    p.local_asn = static_cast<uint32_t>(number(root["myASN"], "bgp.myASN", 1, kMaxAsn));
  } else {
    fail(n, w + ".myASN", "is required (here or as bgp.myASN)");
  }
  if (n["peerPort"])
    p.port = static_cast<uint16_t>(number(n["peerPort"], w + ".peerPort", 1, 65535));
  if (n["sourceAddress"]) p.source = address(n["sourceAddress"], w + ".sourceAddress");
  if (n["routerID"]) {
    p.router_id = routerId(n["routerID"], w + ".routerID");
  } else if (root["routerID"]) {
    p.router_id = routerId(root["routerID"], "bgp.routerID");
  }
  if (n["holdTimeSeconds"]) {
    p.hold_time_s =
        static_cast<uint16_t>(number(n["holdTimeSeconds"], w + ".holdTimeSeconds", 0, 65535));
    if (p.hold_time_s == 1 || p.hold_time_s == 2) {
      fail(n["holdTimeSeconds"], w + ".holdTimeSeconds", "must be 0 or at least 3");
    }
  }
  if (n["keepaliveTimeSeconds"]) {
    p.keepalive_s = static_cast<uint16_t>(
        number(n["keepaliveTimeSeconds"], w + ".keepaliveTimeSeconds", 1, 21845));
  }
  if (n["connectRetrySeconds"]) {
    p.connect_retry_s = static_cast<uint16_t>(
        number(n["connectRetrySeconds"], w + ".connectRetrySeconds", 1, 3600));
  }
  if (n["password"] && n["passwordFile"]) fail(n, w, "give password or passwordFile, not both");
  if (n["password"]) p.password = text(n["password"], w + ".password");
  if (n["passwordFile"]) {
    const auto path = text(n["passwordFile"], w + ".passwordFile");
    std::ifstream in(path);
    if (!in) fail(n["passwordFile"], w + ".passwordFile", "cannot read " + path);
    std::getline(in, p.password);
  }
  if (p.password.size() > 80) fail(n, w + ".password", "TCP-MD5 keys are at most 80 bytes");
  if (n["families"]) {
    p.ipv4 = p.ipv6 = false;
    for (const auto& f : strings(n["families"], w + ".families")) {
      if (f == "ipv4") {
        p.ipv4 = true;
      } else if (f == "ipv6") {
        p.ipv6 = true;
      } else {
        fail(n["families"], w + ".families", "'" + f + "' is not one of ipv4, ipv6");
      }
    }
    if (!p.ipv4 && !p.ipv6) fail(n["families"], w + ".families", "is empty");
  }
  if (n["nextHopIPv4"]) {
    p.next_hop_v4 = address(n["nextHopIPv4"], w + ".nextHopIPv4");
    if (!p.next_hop_v4->isV4()) fail(n["nextHopIPv4"], w + ".nextHopIPv4", "must be IPv4");
  }
  if (n["nextHopIPv6"]) {
    p.next_hop_v6 = address(n["nextHopIPv6"], w + ".nextHopIPv6");
    if (p.next_hop_v6->isV4()) fail(n["nextHopIPv6"], w + ".nextHopIPv6", "must be IPv6");
  }
  if (n["bfdProfile"]) p.bfd_profile = text(n["bfdProfile"], w + ".bfdProfile");
  if (n["enableGracefulRestart"]) {
    p.graceful_restart = boolean(n["enableGracefulRestart"], w + ".enableGracefulRestart");
  }
  if (n["gracefulRestartTimeSeconds"]) {
    p.restart_time_s = static_cast<uint16_t>(
        number(n["gracefulRestartTimeSeconds"], w + ".gracefulRestartTimeSeconds", 1, 4095));
  }
  return p;
}

BfdProfile bfdProfile(const YAML::Node& n, const std::string& w) {
  checkKeys(n, w, {"name", "receiveIntervalMs", "transmitIntervalMs", "detectMultiplier"});
  if (!n["name"]) fail(n, w + ".name", "is required");
  BfdProfile b;
  b.name = text(n["name"], w + ".name");
  b.timers.required_min_rx = std::chrono::milliseconds(300);
  b.timers.desired_min_tx = std::chrono::milliseconds(300);
  if (n["receiveIntervalMs"]) {
    b.timers.required_min_rx = std::chrono::milliseconds(
        number(n["receiveIntervalMs"], w + ".receiveIntervalMs", 10, 60000));
  }
  if (n["transmitIntervalMs"]) {
    b.timers.desired_min_tx = std::chrono::milliseconds(
        number(n["transmitIntervalMs"], w + ".transmitIntervalMs", 10, 60000));
  }
  if (n["detectMultiplier"]) {
    b.timers.detect_mult =
        static_cast<uint8_t>(number(n["detectMultiplier"], w + ".detectMultiplier", 2, 255));
  }
  return b;
}

Advertisement advertisement(const YAML::Node& n, const std::string& w) {
  checkKeys(n, w,
            {"name", "prefixes", "peers", "aggregationLength", "aggregationLengthV6", "communities",
             "largeCommunities", "localPref", "med"});
  Advertisement a;
  if (n["name"]) a.name = text(n["name"], w + ".name");
  if (n["prefixes"]) {
    const auto list = strings(n["prefixes"], w + ".prefixes");
    for (size_t i = 0; i < list.size(); ++i) {
      auto p = IpPrefix::parse(list[i]);
      if (!p) fail(n["prefixes"][i], w + ".prefixes[" + std::to_string(i) + "]", p.error());
      a.prefixes.push_back(*p);
    }
  }
  if (n["peers"]) a.peers = strings(n["peers"], w + ".peers");
  if (n["aggregationLength"]) {
    a.aggregation_length_v4 =
        static_cast<uint8_t>(number(n["aggregationLength"], w + ".aggregationLength", 0, 32));
  }
  if (n["aggregationLengthV6"]) {
    a.aggregation_length_v6 =
        static_cast<uint8_t>(number(n["aggregationLengthV6"], w + ".aggregationLengthV6", 0, 128));
  }
  if (n["communities"]) {
    const auto list = strings(n["communities"], w + ".communities");
    for (size_t i = 0; i < list.size(); ++i) {
      auto c = parseCommunity(list[i]);
      if (!c) fail(n["communities"][i], w + ".communities[" + std::to_string(i) + "]", c.error());
      a.attributes.communities.push_back(*c);
    }
  }
  if (n["largeCommunities"]) {
    const auto list = strings(n["largeCommunities"], w + ".largeCommunities");
    for (size_t i = 0; i < list.size(); ++i) {
      auto c = parseLargeCommunity(list[i]);
      if (!c) {
        fail(n["largeCommunities"][i], w + ".largeCommunities[" + std::to_string(i) + "]",
             c.error());
      }
      a.attributes.large_communities.push_back(*c);
    }
  }
  if (n["localPref"]) {
    a.attributes.local_pref =
        static_cast<uint32_t>(number(n["localPref"], w + ".localPref", 0, kMaxAsn));
  }
  if (n["med"]) a.attributes.med = static_cast<uint32_t>(number(n["med"], w + ".med", 0, kMaxAsn));
  return a;
}

}  // namespace

Result<BgpSettings> parseBgpYaml(const YAML::Node& root) {
  try {
    checkKeys(root, "bgp", {"myASN", "routerID", "peers", "bfdProfiles", "advertisements"});
    BgpSettings s;
    if (const auto& bs = root["bfdProfiles"]) {
      if (!bs.IsSequence()) fail(bs, "bgp.bfdProfiles", "must be a list");
      for (size_t i = 0; i < bs.size(); ++i) {
        auto b = bfdProfile(bs[i], "bgp.bfdProfiles[" + std::to_string(i) + "]");
        if (!s.bfd_profiles.emplace(b.name, b).second) {
          fail(bs[i], "bgp.bfdProfiles[" + std::to_string(i) + "]",
               "name '" + b.name + "' repeated");
        }
      }
    }
    if (const auto& ps = root["peers"]) {
      if (!ps.IsSequence()) fail(ps, "bgp.peers", "must be a list");
      for (size_t i = 0; i < ps.size(); ++i) {
        s.peers.push_back(peer(ps[i], "bgp.peers[" + std::to_string(i) + "]", root));
      }
    }
    if (const auto& as = root["advertisements"]) {
      if (!as.IsSequence()) fail(as, "bgp.advertisements", "must be a list");
      for (size_t i = 0; i < as.size(); ++i) {
        s.advertisements.push_back(
            advertisement(as[i], "bgp.advertisements[" + std::to_string(i) + "]"));
      }
    }
    if (auto st = validate(s); !st) fail(root, "bgp", st.message());
    return s;
  } catch (const ConfigError& e) {
    return Status::error(e.message);
  } catch (const YAML::Exception& e) {
    return Status::error("line " + std::to_string(e.mark.line + 1) + ": " + e.msg);
  }
}

}  // namespace flowlb::agent::bgp
