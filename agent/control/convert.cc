#include "agent/control/convert.h"

namespace flowlb::agent {

namespace pb = flowlb::v1;

Result<IpAddr> pbAddress(const pb::IpAddress& a) {
  const std::string& b = a.addr();
  if (b.size() == 4) return IpAddr::fromV4(reinterpret_cast<const uint8_t*>(b.data()));
  if (b.size() == 16) return IpAddr::fromV6(reinterpret_cast<const uint8_t*>(b.data()));
  return Status::error("an address of " + std::to_string(b.size()) + " bytes");
}

HealthCheckSpec convertHealthCheck(const pb::HealthCheck& h) {
  HealthCheckSpec out;  // 0 on the wire: the default
  switch (h.kind()) {
    case pb::HEALTH_CHECK_KIND_TCP: out.kind = HealthCheckKind::kTcp; break;
    case pb::HEALTH_CHECK_KIND_HTTP: out.kind = HealthCheckKind::kHttp; break;
    case pb::HEALTH_CHECK_KIND_HTTPS: out.kind = HealthCheckKind::kHttps; break;
    case pb::HEALTH_CHECK_KIND_UDP_DNS: out.kind = HealthCheckKind::kUdpDns; break;
    default: return HealthCheckSpec{};  // UNSPECIFIED (or unknown to this agent): off
  }
  if (!h.path().empty()) out.path = h.path();
  if (h.interval_ms() > 0) out.interval_ms = h.interval_ms();
  if (h.timeout_ms() > 0) out.timeout_ms = h.timeout_ms();
  if (h.unhealthy_threshold() > 0) out.unhealthy_threshold = h.unhealthy_threshold();
  if (h.healthy_threshold() > 0) out.healthy_threshold = h.healthy_threshold();
  return out;
}

HealthProbers convertHealthProbers(const pb::HealthProbers& p) {
  HealthProbers out;
  out.nodes.assign(p.nodes().begin(), p.nodes().end());
  out.per_backend = p.probers_per_backend();
  return out;
}

ConvertedService convertService(const pb::VirtualService& vs, const std::string& node) {
  ConvertedService out;
  const auto problem = [&out](const pb::VirtualService& v, ApplyErrorCode code,
                              const std::string& what) {
    out.problems.push_back({v.key(), code, "service '" + v.key() + "': " + what});
  };
  const auto address = pbAddress;

  ServiceSpec s;
  s.name = vs.key();
  auto vip = address(vs.vip());
  if (!vip) {
    problem(vs, ApplyErrorCode::kInvalidArgument, "vip: " + vip.error());
    return out;
  }
  s.vip = *vip;
  if (vs.port() == 0 || vs.port() > 65535) {
    problem(vs, ApplyErrorCode::kInvalidArgument,
            "port " + std::to_string(vs.port()) + " out of range");
    return out;
  }
  s.port = static_cast<uint16_t>(vs.port());
  switch (vs.protocol()) {
    case pb::PROTOCOL_TCP: s.proto = 6; break;
    case pb::PROTOCOL_UDP: s.proto = 17; break;
    default:
      problem(vs, ApplyErrorCode::kUnsupported, "protocol not supported by this agent");
      return out;
  }
  s.mode =
      vs.forwarding_mode() == pb::FORWARDING_MODE_DSR ? ForwardingMode::kDsr : ForwardingMode::kNat;
  s.client_ip_affinity = vs.session_affinity() == pb::SESSION_AFFINITY_CLIENT_IP;
  s.keep_client_address = vs.external_traffic_policy() == pb::EXTERNAL_TRAFFIC_POLICY_LOCAL;
  if (vs.proxy_protocol() == pb::PROXY_PROTOCOL_V2) s.proxy_protocol = ProxyProtocol::kV2;
  if (vs.session_affinity_timeout_seconds() > 0) {
    s.affinity_timeout_s = vs.session_affinity_timeout_seconds();
  }
  s.idle_timeout_s = vs.idle_timeout_seconds();
  // 0: the contract's default (300 s), not "no deadline".
  if (vs.drain_timeout_seconds() > 0) s.drain_timeout_s = vs.drain_timeout_seconds();
  if (vs.maglev_table_size() > 0) s.maglev_size = vs.maglev_table_size();
  s.hash_seed = vs.hash_seed();
  s.health = convertHealthCheck(vs.health_check());
  bool bad = false;
  for (const pb::IpPrefix& p : vs.source_ranges()) {
    auto a = address(p.address());
    const uint32_t max = a && a->isV4() ? 32 : 128;
    if (!a || p.prefix_length() > max) {
      problem(vs, ApplyErrorCode::kInvalidArgument, "a malformed source range");
      bad = true;
      break;
    }
    s.source_ranges.push_back({*a, static_cast<uint8_t>(p.prefix_length())});
  }
  if (bad) return out;
  for (int i = 0; i < vs.backends_size(); ++i) {
    const pb::Backend& b = vs.backends(i);
    auto a = address(b.address());
    if (!a || b.port() == 0 || b.port() > 65535) {
      problem(vs, ApplyErrorCode::kInvalidArgument,
              "backend " + (b.key().empty() ? "#" + std::to_string(i) : b.key()) +
                  " is malformed; skipped (the others serve)");
      continue;
    }
    // Local: only this node's endpoints (their replies pass through it).
    if (s.keep_client_address && !node.empty() && !b.node_name().empty() && b.node_name() != node) {
      continue;
    }
    BackendSpec bs;
    bs.addr = *a;
    bs.port = static_cast<uint16_t>(b.port());
    // Weighted Maglev is not built yet: every weight counts as 1, and 0
    // ("no new flows") as draining.
    bs.state = b.state() == pb::BACKEND_STATE_DRAINING || b.weight() == 0 ? BackendState::kDraining
               : b.state() == pb::BACKEND_STATE_UNHEALTHY                 ? BackendState::kUnhealthy
                                                                          : BackendState::kActive;
    bs.node = b.node_name();
    bs.zone = b.zone();
    s.backends.push_back(std::move(bs));
  }
  out.spec = std::move(s);
  return out;
}

ReceivedState convertDesiredState(const pb::DesiredState& in, const std::string& node) {
  ReceivedState out;
  out.desired.generation = in.generation();
  if (in.has_health_probers())
    out.desired.health_probers = convertHealthProbers(in.health_probers());
  for (const pb::VirtualService& vs : in.services()) {
    ConvertedService c = convertService(vs, node);
    out.problems.insert(out.problems.end(), c.problems.begin(), c.problems.end());
    if (c.spec) out.desired.services.push_back(std::move(*c.spec));
  }
  for (const pb::Announcement& a : in.announcements()) {
    if (!a.announcer()) continue;
    auto vip = pbAddress(a.vip());
    if (!vip) {
      out.other_problems.push_back("announcement: " + vip.error());
      continue;
    }
    out.announce.push_back(*vip);
  }
  return out;
}

}  // namespace flowlb::agent
