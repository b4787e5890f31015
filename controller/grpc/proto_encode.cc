#include "controller/grpc/proto_encode.h"

#include <google/protobuf/unknown_field_set.h>

#include "common/maglev_sizing.h"

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

std::string backendKey(const DesiredBackend& b) {
  return (b.addr.isV4() ? b.addr.toString() : "[" + b.addr.toString() + "]") + ":" +
         std::to_string(b.port);
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
  for (const IpPrefix& p : d.source_ranges) {
    pb::IpPrefix* out = vs.add_source_ranges();
    setAddress(p.addr, out->mutable_address());
    out->set_prefix_length(p.length);  // in the family's terms, as IpPrefix keeps it
  }
  vs.set_idle_timeout_seconds(d.idle_timeout_s);
  if (d.drain_timeout_s != 300) vs.set_drain_timeout_seconds(d.drain_timeout_s);
  for (const DesiredBackend& b : d.backends) {
    pb::Backend* pbb = vs.add_backends();
    if (backend_keys) pbb->set_key(backendKey(b));
    setAddress(b.addr, pbb->mutable_address());
    pbb->set_port(b.port);
    pbb->set_weight(1);
    if (b.state == BackendState::kDraining) pbb->set_state(pb::BACKEND_STATE_DRAINING);
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
  for (const AnnouncerEntry& a : u.announcements) {
    pb::Announcement* out = ds->add_announcements();
    setAddress(a.vip, out->mutable_vip());
    out->set_mode(pb::ANNOUNCEMENT_MODE_L2);
    out->set_announcer(!a.node.empty() && a.node == node);
    out->set_announcer_node(a.node);
  }
  for (const IpAddr& vip : u.removed_vips) setAddress(vip, ds->add_removed_announcement_vips());
  return msg;
}

}  // namespace flowlb::controller
