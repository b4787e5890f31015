#include "controller/grpc/proto_encode.h"

#include <google/protobuf/unknown_field_set.h>

#include "common/maglev_sizing.h"
#include "controller/health/verdict.h"

namespace flowlb::controller {
namespace {

namespace pb = flowlb::v1;

void setAddress(const IpAddr& a, pb::IpAddress* out) {
  if (a.isV4()) {
    out->set_addr(std::string(reinterpret_cast<const char*>(a.v4()), 4));
  } else {
    out->set_addr(std::string(reinterpret_cast<const char*>(a.bytes.data()), 16));
  }
}

// Every field said explicitly (the agents' defaults are the same, but
// the controller's are what the user was shown).
void encodeHealthCheck(const HealthCheckSettings& h, pb::HealthCheck* out) {
  switch (h.kind) {
    case HealthCheckKind::kNone: return;
    case HealthCheckKind::kTcp: out->set_kind(pb::HEALTH_CHECK_KIND_TCP); break;
    case HealthCheckKind::kHttp: out->set_kind(pb::HEALTH_CHECK_KIND_HTTP); break;
    case HealthCheckKind::kHttps: out->set_kind(pb::HEALTH_CHECK_KIND_HTTPS); break;
    case HealthCheckKind::kUdpDns: out->set_kind(pb::HEALTH_CHECK_KIND_UDP_DNS); break;
  }
  out->set_path(h.path);
  out->set_interval_ms(h.interval_ms);
  out->set_timeout_ms(h.timeout_ms);
  out->set_unhealthy_threshold(h.unhealthy_threshold);
  out->set_healthy_threshold(h.healthy_threshold);
}

// DesiredState.services, whose entries are spliced in as bytes.
constexpr int kServicesField = pb::DesiredState::kServicesFieldNumber;

}  // namespace

std::string encodeVirtualService(const DesiredService& d, bool backend_keys) {
  pb::VirtualService vs;
  vs.set_key(d.key);
  setAddress(d.vip, vs.mutable_vip());
  vs.set_port(d.port);
  vs.set_protocol(d.proto == 17    ? pb::PROTOCOL_UDP
                  : d.proto == 132 ? pb::PROTOCOL_SCTP
                                   : pb::PROTOCOL_TCP);
  if (d.mode == ForwardingMode::kDsr) vs.set_forwarding_mode(pb::FORWARDING_MODE_DSR);
  if (d.external_traffic_local) vs.set_external_traffic_policy(pb::EXTERNAL_TRAFFIC_POLICY_LOCAL);
  if (d.client_ip_affinity) {
    vs.set_session_affinity(pb::SESSION_AFFINITY_CLIENT_IP);
    if (d.affinity_timeout_s != 10800)
      vs.set_session_affinity_timeout_seconds(d.affinity_timeout_s);
  }
  // The Maglev table size for the backend count, said explicitly so that
  // every node (and every agent version during an upgrade) builds the same
  // table (common/maglev_sizing.h); hash_seed 0: cluster-wide.
  vs.set_maglev_table_size(maglevSizeFor(d.backends.size()));
  if (d.proxy_protocol_v2) vs.set_proxy_protocol(pb::PROXY_PROTOCOL_V2);
  if (d.health.kind != HealthCheckKind::kNone)
    encodeHealthCheck(d.health, vs.mutable_health_check());
  for (const IpPrefix& p : d.source_ranges) {
    pb::IpPrefix* out = vs.add_source_ranges();
    setAddress(p.addr, out->mutable_address());
    out->set_prefix_length(p.length);  // in the family's terms, as IpPrefix keeps it
  }
  vs.set_idle_timeout_seconds(d.idle_timeout_s);
  if (d.drain_timeout_s != 300) vs.set_drain_timeout_seconds(d.drain_timeout_s);
  for (const DesiredBackend& b : d.backends) {
    pb::Backend* pbb = vs.add_backends();
    if (backend_keys) pbb->set_key(backendKeyOf(b));
    setAddress(b.addr, pbb->mutable_address());
    pbb->set_port(b.port);
    pbb->set_weight(1);
    if (b.state == BackendState::kDraining) pbb->set_state(pb::BACKEND_STATE_DRAINING);
    if (b.state == BackendState::kUnhealthy) pbb->set_state(pb::BACKEND_STATE_UNHEALTHY);
    if (d.external_traffic_local) pbb->set_node_name(b.node);
    pbb->set_zone(b.zone);
  }
  return vs.SerializeAsString();
}

pb::ControllerMessage desiredStateMessage(const NodeUpdate& u, const std::string& node,
                                          const MessageOptions& o) {
  pb::ControllerMessage msg;
  pb::DesiredState* ds = msg.mutable_desired_state();
  ds->set_generation(u.generation);
  ds->set_kind(u.full ? pb::DESIRED_STATE_KIND_FULL : pb::DESIRED_STATE_KIND_INCREMENTAL);
  if (!u.full) ds->set_base_generation(u.base);
  // Each service's bytes as the distribution encoded them once: an unknown
  // field of the right number is written out verbatim, and the agent reads
  // it as DesiredState.services.
  google::protobuf::UnknownFieldSet* raw = ds->GetReflection()->MutableUnknownFields(ds);
  for (const Entry* e : u.upserts) {
    raw->AddLengthDelimited(kServicesField,
                            o.backend_keys ? e->encodedWithBackendKeys() : e->encoded());
  }
  for (const std::string& k : u.removed) ds->add_removed_service_keys(k);
  // BGP only to agents that take it; to the others every VIP stays L2.
  const BgpDesired* bgp = o.bgp && u.view ? u.view->bgp.get() : nullptr;
  if (o.bgp && (u.full ? u.bgp != nullptr : u.bgp_changed)) {
    encodeBgpConfig(u.bgp ? u.bgp->peersOf(node) : nullptr, ds->mutable_bgp());
  }
  for (const AnnouncerEntry& a : u.announcements) {
    pb::Announcement* out = ds->add_announcements();
    setAddress(a.vip, out->mutable_vip());
    if (const std::vector<BgpRouteSpec>* routes = bgp ? bgp->routesOf(a.vip) : nullptr) {
      out->set_mode(pb::ANNOUNCEMENT_MODE_BGP);  // every eligible node, no ARP/NDP
      encodeBgpAnnouncement(*routes, out->mutable_bgp());
      continue;
    }
    out->set_mode(pb::ANNOUNCEMENT_MODE_L2);
    out->set_announcer(!a.node.empty() && a.node == node);
    out->set_announcer_node(a.node);
  }
  for (const IpAddr& vip : u.removed_vips) setAddress(vip, ds->add_removed_announcement_vips());
  // Who probes, only to agents that probe: with FULL, and when it changed.
  if (o.health && u.probers && (u.full || u.probers_changed)) {
    pb::HealthProbers* hp = ds->mutable_health_probers();
    for (const std::string& n : *u.probers) hp->add_nodes(n);
    if (o.probers_per_backend != 0) hp->set_probers_per_backend(o.probers_per_backend);
  }
  return msg;
}

void encodeBgpConfig(const std::vector<BgpPeerSpec>* peers, pb::BgpConfig* out) {
  out->Clear();
  if (!peers) return;
  for (const BgpPeerSpec& p : *peers) {
    pb::BgpPeer* pp = out->add_peers();
    pp->set_name(p.name);
    setAddress(p.address, pp->mutable_address());
    if (p.port != 179) pp->set_port(p.port);
    pp->set_peer_asn(p.peer_asn);
    pp->set_local_asn(p.local_asn);
    if (p.source) setAddress(*p.source, pp->mutable_source_address());
    if (p.hold_time_s) pp->set_hold_time_seconds(*p.hold_time_s);
    if (p.bfd) {
      pp->mutable_bfd()->set_min_tx_ms(p.bfd->min_tx_ms);
      pp->mutable_bfd()->set_min_rx_ms(p.bfd->min_rx_ms);
      pp->mutable_bfd()->set_detect_multiplier(p.bfd->multiplier);
    }
    pp->set_graceful_restart_seconds(p.graceful_restart_s);
    pp->set_password(p.password);
  }
}

void encodeBgpAnnouncement(const std::vector<BgpRouteSpec>& routes, pb::BgpAnnouncement* out) {
  for (const BgpRouteSpec& r : routes) {
    pb::BgpRouteAdvertisement* a = out->add_advertisements();
    a->set_name(r.name);
    for (const std::string& p : r.peers) a->add_peers(p);
    a->set_aggregation_length_v4(r.aggregation_v4 == 32 ? 0 : r.aggregation_v4);
    a->set_aggregation_length_v6(r.aggregation_v6 == 128 ? 0 : r.aggregation_v6);
    for (uint32_t c : r.communities) a->add_communities(c);
    for (const LargeCommunityValue& c : r.large_communities) {
      pb::LargeCommunity* l = a->add_large_communities();
      l->set_global_admin(c.global_admin);
      l->set_local_data_1(c.local_data_1);
      l->set_local_data_2(c.local_data_2);
    }
    if (r.local_pref) a->set_local_pref(*r.local_pref);
  }
}

}  // namespace flowlb::controller
