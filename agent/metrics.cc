#include "agent/metrics.h"

#include <prometheus/family.h>

#include "agent/bpf/flowlb_abi.h"
#include "common/endpoints.h"

namespace flowlb::agent {
namespace {

template <typename Builder>
auto& family(Builder b, const char* name, const char* help, prometheus::Registry& r) {
  return b.Name(name).Help(help).Register(r);
}

}  // namespace

Result<std::unique_ptr<AgentMetrics>> AgentMetrics::serve(const std::string& address,
                                                          const HealthChecks* health) {
  std::unique_ptr<AgentMetrics> m(new AgentMetrics());
  m->registry_ = std::make_shared<prometheus::Registry>();
  auto& r = *m->registry_;
  registerBuildInfo(r, "agent");
  using prometheus::BuildCounter;
  using prometheus::BuildGauge;
  m->service_packets_ = &family(BuildCounter(), "flowlb_agent_service_packets_total",
                                "Packets forwarded per virtual service", r);
  m->service_bytes_ = &family(BuildCounter(), "flowlb_agent_service_bytes_total",
                              "Bytes forwarded per virtual service", r);
  m->service_new_flows_ = &family(BuildCounter(), "flowlb_agent_service_new_flows_total",
                                  "Flows created per virtual service", r);
  m->backend_packets_ = &family(BuildCounter(), "flowlb_agent_backend_packets_total",
                                "Packets forwarded per backend", r);
  m->backend_bytes_ =
      &family(BuildCounter(), "flowlb_agent_backend_bytes_total", "Bytes forwarded per backend", r);
  m->backend_new_flows_ = &family(BuildCounter(), "flowlb_agent_backend_new_flows_total",
                                  "Flows created per backend", r);
  m->service_series_ = {
      "service", m->service_packets_, m->service_bytes_, m->service_new_flows_, {}, {}, {}};
  m->backend_series_ = {
      "backend", m->backend_packets_, m->backend_bytes_, m->backend_new_flows_, {}, {}, {}};
  m->announced_ = &family(BuildGauge(), "flowlb_agent_announced_vip_info",
                          "VIPs this node answers ARP/NDP for (1 each)", r);
  m->drops_ = &family(BuildCounter(), "flowlb_agent_datapath_drops_total",
                      "Frames dropped by the forwarding decision, by reason", r);
  m->unhandled_ =
      &family(BuildCounter(), "flowlb_agent_datapath_unhandled_total",
              "Frames the workers could neither transmit nor hand to the kernel (TX ring full, no "
              "exception path)",
              r);
  m->handoffs_ = &family(BuildCounter(), "flowlb_agent_datapath_handoffs_total",
                         "Frames a worker received for a flow another worker holds (several "
                         "queues), by result: handed_off to that worker's ring, ring_full "
                         "(dropped), received from another worker",
                         r);
  m->flow_sync_records_ = &family(
      BuildCounter(), "flowlb_agent_flow_sync_records_total",
      "Flow sync (--nat-source=vip) records, by event: shared by the workers, ring_full (not "
      "shared: the export ring was full), sent to the controller, received from other nodes, "
      "table_full (another node's flow refused: no room), expired (its delete never came), "
      "adopted (another node's flow taken over here after its VIP moved)",
      r);
  m->flow_sync_bytes_ = &family(BuildCounter(), "flowlb_agent_flow_sync_sent_bytes_total",
                                "Bytes of flow records sent to the controller", r);
  m->flow_sync_refused_ = &family(BuildCounter(), "flowlb_agent_flow_sync_batches_refused_total",
                                  "Relayed flow sync batches refused whole (malformed)", r);
  m->flow_sync_entries_ = &family(
      BuildGauge(), "flowlb_agent_flow_sync_entries",
      "Flow sync tables: others (other nodes' flows held for adoption), others_capacity, own "
      "(this node's live shared flows, kept for a dump)",
      r);
  m->xdp_packets_ = &family(BuildCounter(), "flowlb_agent_xdp_packets_total",
                            "What the XDP program did, by action", r);
  m->conntrack_entries_ = &family(BuildGauge(), "flowlb_agent_conntrack_entries",
                                  "Live conntrack entries per worker", r);
  m->conntrack_capacity_ = &family(BuildGauge(), "flowlb_agent_conntrack_capacity_entries",
                                   "Conntrack capacity per worker", r);
  m->conntrack_evictions_ = &family(BuildCounter(), "flowlb_agent_conntrack_evictions_total",
                                    "Conntrack entries evicted to make room, by reason", r);
  m->xsk_ring_ = &family(BuildCounter(), "flowlb_agent_xsk_ring_events_total",
                         "AF_XDP ring statistics per socket (XDP_STATISTICS)", r);
  m->frames_ = &family(BuildGauge(), "flowlb_agent_xsk_frames",
                       "UMEM frames per worker: free (pool and fill rings), in_tx, total", r);
  m->attach_ = &family(BuildGauge(), "flowlb_agent_xdp_attach_info",
                       "XDP attach mode per interface (1 = in use)", r);
  m->bind_ =
      &family(BuildGauge(), "flowlb_agent_xsk_bind_info", "AF_XDP bind mode (1 = in use)", r);
  m->neighbor_ = &family(
      BuildCounter(), "flowlb_agent_neighbor_events_total",
      "Next-hop lookups that found no resolved neighbour (misses) and resolution probes sent", r);
  m->generation_ = &family(BuildGauge(), "flowlb_agent_config_generation",
                           "Generation of the desired state in force", r);
  m->reloads_ = &family(BuildCounter(), "flowlb_agent_config_reloads_total",
                        "Desired-state updates, by result", r);
  m->l2_ = &family(BuildCounter(), "flowlb_agent_l2_announcements_total",
                   "ARP replies, NDP advertisements and gratuitous announcements sent; requests "
                   "for addresses not announced (ignored)",
                   r);
  m->kernel_path_ = &family(BuildCounter(), "flowlb_agent_kernel_path_packets_total",
                            "The kernel exception path: packets handed to the kernel "
                            "(direction=to_kernel, by reason) and replies read back from it "
                            "(direction=from_kernel)",
                            r);
  m->refused_ = &family(BuildGauge(), "flowlb_agent_service_refused",
                        "1 for each virtual service the last desired state could not apply, by "
                        "reason (the rest of the state applied)",
                        r);
  m->vip_map_ = &family(BuildGauge(), "flowlb_agent_xdp_vip_map_entries",
                        "Entries of the XDP program's VIP map: used and capacity", r);
  m->table_bytes_ = &family(BuildGauge(), "flowlb_agent_maglev_table_bytes",
                            "Bytes held by Maglev tables (current and previous generations)", r);
  m->local_vips_ = &family(BuildGauge(), "flowlb_agent_kernel_path_local_vips",
                           "VIPs that are local addresses of this node (so the kernel answers "
                           "what no service claims)",
                           r);
  m->adopted_ = &family(BuildGauge(), "flowlb_agent_state_adopted",
                        "What this agent took over at start from the one before it (--state-dir): "
                        "conntrack entries adopted and discarded, conntrack tables and backend-id "
                        "registries found incompatible",
                        r);
  m->bgp_state_ = &family(BuildGauge(), "flowlb_agent_bgp_session_state",
                          "BGP session state per peer (1 for the current state)", r);
  m->bgp_up_ = &family(BuildGauge(), "flowlb_agent_bgp_session_up",
                       "1 while the BGP session with the peer is Established", r);
  m->bgp_flaps_ = &family(BuildCounter(), "flowlb_agent_bgp_session_flaps_total",
                          "Times the BGP session with the peer left Established", r);
  m->bgp_advertised_ = &family(BuildGauge(), "flowlb_agent_bgp_routes_advertised",
                               "Routes this node announces to the peer now", r);
  m->bgp_received_ = &family(BuildCounter(), "flowlb_agent_bgp_routes_received_total",
                             "Routes the peer announced to us (counted, never installed)", r);
  m->bgp_updates_ =
      &family(BuildCounter(), "flowlb_agent_bgp_updates_total", "UPDATE messages, by direction", r);
  m->bgp_malformed_ =
      &family(BuildCounter(), "flowlb_agent_bgp_malformed_updates_total",
              "UPDATEs from the peer dropped as malformed (RFC 7606 treat-as-withdraw)", r);
  m->bgp_notifications_ = &family(BuildCounter(), "flowlb_agent_bgp_notifications_total",
                                  "NOTIFICATION messages, by direction", r);
  m->bfd_up_ = &family(BuildGauge(), "flowlb_agent_bfd_session_up",
                       "1 while the BFD session with the peer is Up", r);
  m->bfd_downs_ = &family(BuildCounter(), "flowlb_agent_bfd_session_downs_total",
                          "BFD sessions that went from Up to Down", r);
  m->bfd_discarded_ = &BuildCounter()
                           .Name("flowlb_agent_bfd_discarded_packets_total")
                           .Help("BFD packets discarded (TTL not 255, malformed, no session)")
                           .Register(r)
                           .Add({});
  m->health_probes_ = &family(BuildCounter(), "flowlb_agent_health_probes_total",
                              "Health probes this agent ran, by result (pass, fail)", r);
  m->health_pass_ = &m->health_probes_->Add({{"result", "pass"}});
  m->health_fail_ = &m->health_probes_->Add({{"result", "fail"}});
  m->backend_health_ = &family(BuildGauge(), "flowlb_agent_backend_health",
                               "This agent's verdict on each backend it probes: 1 healthy, 0 "
                               "unhealthy, -1 unknown (not probed enough yet)",
                               r);
  m->health_targets_ = &BuildGauge()
                            .Name("flowlb_agent_health_targets")
                            .Help("Backends this agent probes")
                            .Register(r)
                            .Add({});
  m->health_refused_ = &BuildGauge()
                            .Name("flowlb_agent_health_targets_refused")
                            .Help("Backends to probe beyond --health-max-targets, not probed")
                            .Register(r)
                            .Add({});
  m->link_connected_ = &BuildGauge()
                            .Name("flowlb_agent_controller_connected")
                            .Help("1 while the Sync stream to the controller is up")
                            .Register(r)
                            .Add({});
  m->link_resets_ = &BuildCounter()
                         .Name("flowlb_agent_controller_stream_resets_total")
                         .Help("Sync streams to the controller that ended")
                         .Register(r)
                         .Add({});
  m->link_last_update_ =
      &BuildGauge()
           .Name("flowlb_agent_controller_last_update_timestamp_seconds")
           .Help(
               "When the last desired state from the controller arrived (Unix time; the agent's "
               "start before the first)")
           .Register(r)
           .Add({});
  m->interface_ = &family(BuildGauge(), "flowlb_agent_interface_info",
                          "Interfaces in use (1), by role (xdp, announce) and how they were "
                          "chosen (flag, detected)",
                          r);
  HttpServerOptions o;
  o.address = address;
  auto server = serveEndpoints(o, m->registry_, health);
  if (!server) return Status::error("cannot serve metrics on " + address + ": " + server.error());
  m->server_ = std::move(*server);
  return m;
}

void AgentMetrics::setCounter(prometheus::Counter& c, double value) {
  const double delta = value - c.Value();
  if (delta > 0) c.Increment(delta);
}

std::string AgentMetrics::backendLabel(const IpAddr& addr, uint16_t port) {
  return (addr.isV4() ? addr.toString() : "[" + addr.toString() + "]") + ":" + std::to_string(port);
}

void AgentMetrics::desiredState(const DesiredState& d) {
  service_series_.present.clear();
  backend_series_.present.clear();
  for (const ServiceSpec& s : d.services) {
    service_series_.present.insert(s.name);
    for (const BackendSpec& b : s.backends)
      backend_series_.present.insert(backendLabel(b.addr, b.port));
  }
}

void AgentMetrics::announcedVips(const std::vector<IpAddr>& vips) {
  for (prometheus::Gauge* g : announced_series_) announced_->Remove(g);
  announced_series_.clear();
  std::set<std::string> seen;
  for (const IpAddr& v : vips) {
    if (!seen.insert(v.toString()).second) continue;  // one VIP, several ports
    prometheus::Gauge& g = announced_->Add({{"vip", v.toString()}});
    g.Set(1);
    announced_series_.push_back(&g);
  }
}

void AgentMetrics::publish(TrafficSeries& ts,
                           const std::map<std::string, WorkerReport::Traffic>& by_name) {
  for (const auto& [name, t] : by_name) {
    const prometheus::Labels labels{{ts.label, name}};
    if (ts.present.count(name) == 0) {
      auto shown = ts.shown.find(name);
      if (shown != ts.shown.end() && shown->second == t.packets) {
        // Gone from the desired state and no longer counting: drop its series.
        ts.packets->Remove(&ts.packets->Add(labels));
        ts.bytes->Remove(&ts.bytes->Add(labels));
        ts.new_flows->Remove(&ts.new_flows->Add(labels));
        ts.gone[name] = t.packets;
        ts.shown.erase(shown);
        continue;
      }
      auto gone = ts.gone.find(name);
      if (gone != ts.gone.end() && gone->second == t.packets) continue;
    }
    ts.gone.erase(name);
    ts.shown[name] = t.packets;
    setCounter(ts.packets->Add(labels), static_cast<double>(t.packets));
    setCounter(ts.bytes->Add(labels), static_cast<double>(t.bytes));
    setCounter(ts.new_flows->Add(labels), static_cast<double>(t.new_flows));
  }
}

void AgentMetrics::update(const AnnouncerStats& st) {
  setCounter(l2_->Add({{"kind", "arp_reply"}}), static_cast<double>(st.arp_replies));
  setCounter(l2_->Add({{"kind", "na_reply"}}), static_cast<double>(st.na_replies));
  setCounter(l2_->Add({{"kind", "gratuitous"}}), static_cast<double>(st.gratuitous));
  setCounter(l2_->Add({{"kind", "ignored"}}), static_cast<double>(st.ignored));
}

void AgentMetrics::update(const bgp::SpeakerStatus& st) {
  std::set<std::string> now;
  for (const bgp::PeerStatus& p : st.peers) {
    now.insert(p.name);
    const bgp::SessionStats& s = p.session;
    for (auto state : {bgp::State::kIdle, bgp::State::kConnect, bgp::State::kOpenSent,
                       bgp::State::kOpenConfirm, bgp::State::kEstablished}) {
      bgp_state_->Add({{"peer", p.name}, {"state", bgp::stateName(state)}})
          .Set(s.state == state ? 1 : 0);
    }
    bgp_up_->Add({{"peer", p.name}}).Set(s.state == bgp::State::kEstablished ? 1 : 0);
    setCounter(bgp_flaps_->Add({{"peer", p.name}}), static_cast<double>(p.flaps));
    bgp_advertised_->Add({{"peer", p.name}}).Set(static_cast<double>(s.routes_advertised));
    setCounter(bgp_received_->Add({{"peer", p.name}}), static_cast<double>(s.routes_received));
    setCounter(bgp_updates_->Add({{"peer", p.name}, {"direction", "received"}}),
               static_cast<double>(s.updates_received));
    setCounter(bgp_updates_->Add({{"peer", p.name}, {"direction", "sent"}}),
               static_cast<double>(s.updates_sent));
    setCounter(bgp_malformed_->Add({{"peer", p.name}}), static_cast<double>(s.malformed_updates));
    setCounter(bgp_notifications_->Add({{"peer", p.name}, {"direction", "received"}}),
               static_cast<double>(s.notifications_received));
    setCounter(bgp_notifications_->Add({{"peer", p.name}, {"direction", "sent"}}),
               static_cast<double>(s.notifications_sent));
    if (p.bfd_enabled) {
      bfd_up_->Add({{"peer", p.name}}).Set(p.bfd_state == bfd::State::kUp ? 1 : 0);
      setCounter(bfd_downs_->Add({{"peer", p.name}}), static_cast<double>(p.bfd_downs));
    }
  }
  for (const std::string& gone : bgp_peers_) {
    if (now.count(gone)) continue;
    for (auto state : {bgp::State::kIdle, bgp::State::kConnect, bgp::State::kOpenSent,
                       bgp::State::kOpenConfirm, bgp::State::kEstablished}) {
      bgp_state_->Remove(&bgp_state_->Add({{"peer", gone}, {"state", bgp::stateName(state)}}));
    }
    bgp_up_->Remove(&bgp_up_->Add({{"peer", gone}}));
    bgp_advertised_->Remove(&bgp_advertised_->Add({{"peer", gone}}));
    bfd_up_->Remove(&bfd_up_->Add({{"peer", gone}}));
  }
  bgp_peers_ = std::move(now);
  setCounter(*bfd_discarded_, static_cast<double>(st.bfd_discarded));
}

void AgentMetrics::controllerLink(bool connected, uint64_t resets,
                                  std::chrono::system_clock::time_point last_update) {
  link_connected_->Set(connected ? 1 : 0);
  setCounter(*link_resets_, static_cast<double>(resets));
  link_last_update_->Set(std::chrono::duration<double>(last_update.time_since_epoch()).count());
}

void AgentMetrics::healthChecks(const std::vector<health::TargetStatus>& statuses,
                                const health::ProberCounters& c) {
  setCounter(*health_pass_, static_cast<double>(c.passed));
  setCounter(*health_fail_, static_cast<double>(c.failed));
  health_targets_->Set(static_cast<double>(c.targets));
  health_refused_->Set(static_cast<double>(c.refused));
  std::map<health::TargetKey, prometheus::Gauge*> next;
  for (const health::TargetStatus& t : statuses) {
    auto it = backend_health_series_.find(t.key);
    prometheus::Gauge* g =
        it != backend_health_series_.end()
            ? it->second
            : &backend_health_->Add({{"service", t.key.service}, {"backend", t.key.backend}});
    g->Set(t.status == health::HealthStatus::kHealthy     ? 1
           : t.status == health::HealthStatus::kUnhealthy ? 0
                                                          : -1);
    next.emplace(t.key, g);
  }
  for (const auto& [key, g] : backend_health_series_) {
    if (!next.count(key)) backend_health_->Remove(g);  // the target went
  }
  backend_health_series_ = std::move(next);
}

void AgentMetrics::interfaces(const std::vector<std::pair<std::string, std::string>>& name_and_role,
                              const std::string& source) {
  for (const auto& [name, role] : name_and_role) {
    interface_->Add({{"interface", name}, {"role", role}, {"source", source}}).Set(1);
  }
}

void AgentMetrics::configReload(bool ok) {
  reloads_->Add({{"result", ok ? "applied" : "rejected"}}).Increment();
}

void AgentMetrics::refusedServices(const std::vector<ServiceError>& refused) {
  for (prometheus::Gauge* g : refused_series_) refused_->Remove(g);
  refused_series_.clear();
  for (const ServiceError& e : refused) {
    prometheus::Gauge& g =
        refused_->Add({{"service", e.service}, {"reason", applyErrorCodeName(e.code)}});
    g.Set(1);
    refused_series_.push_back(&g);
  }
}

void AgentMetrics::update(const DatapathStatus& st) {
  // Sum worker figures (the reports are cumulative since start).
  std::map<std::string, WorkerReport::Traffic> services, backends;
  std::array<uint64_t, static_cast<size_t>(DropReason::kCount)> drops{};
  std::array<uint64_t, static_cast<size_t>(EvictReason::kCount)> evictions{};
  uint64_t unhandled = 0;
  uint64_t handed_off = 0, handoff_ring_full = 0, handoffs_received = 0;
  std::array<uint64_t, static_cast<size_t>(KernelHandoff::kCount)> to_kernel{};
  uint64_t from_kernel = 0;
  for (size_t w = 0; w < st.workers.size(); ++w) {
    const WorkerReport& r = st.workers[w];
    for (size_t i = 0; i < to_kernel.size(); ++i) to_kernel[i] += r.to_kernel[i];
    from_kernel += r.from_kernel;
    for (const auto& [k, v] : r.services) services[k] += v;
    for (const auto& [k, v] : r.backends) backends[k] += v;
    for (size_t i = 0; i < drops.size(); ++i) drops[i] += r.forwarder.drops[i];
    for (size_t i = 0; i < evictions.size(); ++i) evictions[i] += r.conntrack.evictions[i];
    unhandled += r.unhandled + r.tx_ring_full;
    handed_off += r.handed_off;
    handoff_ring_full += r.handoff_ring_full;
    handoffs_received += r.handoffs_received;
    const std::string worker = std::to_string(w);
    conntrack_entries_->Add({{"worker", worker}}).Set(static_cast<double>(r.conntrack_entries));
    conntrack_capacity_->Add({{"worker", worker}}).Set(static_cast<double>(r.conntrack_capacity));
    frames_->Add({{"worker", worker}, {"state", "free"}}).Set(static_cast<double>(r.frames_free));
    frames_->Add({{"worker", worker}, {"state", "in_tx"}}).Set(static_cast<double>(r.frames_in_tx));
    frames_->Add({{"worker", worker}, {"state", "total"}}).Set(static_cast<double>(r.frames_total));
  }
  publish(service_series_, services);
  publish(backend_series_, backends);
  for (size_t i = 1; i < drops.size(); ++i) {
    setCounter(drops_->Add({{"reason", dropReasonName(static_cast<DropReason>(i))}}),
               static_cast<double>(drops[i]));
  }
  for (size_t i = 0; i < evictions.size(); ++i) {
    setCounter(
        conntrack_evictions_->Add({{"reason", evictReasonName(static_cast<EvictReason>(i))}}),
        static_cast<double>(evictions[i]));
  }
  setCounter(unhandled_->Add({}), static_cast<double>(unhandled));
  {
    uint64_t shared = 0, dropped = 0, adopted = 0;
    for (const WorkerReport& r : st.workers) {
      shared += r.forwarder.flow_exports;
      dropped += r.forwarder.flow_export_dropped;
      adopted += r.forwarder.flows_adopted;
    }
    if (shared + dropped + adopted > 0) {
      setCounter(flow_sync_records_->Add({{"event", "shared"}}), static_cast<double>(shared));
      setCounter(flow_sync_records_->Add({{"event", "ring_full"}}), static_cast<double>(dropped));
      setCounter(flow_sync_records_->Add({{"event", "adopted"}}), static_cast<double>(adopted));
    }
  }
  setCounter(handoffs_->Add({{"result", "handed_off"}}), static_cast<double>(handed_off));
  setCounter(handoffs_->Add({{"result", "ring_full"}}), static_cast<double>(handoff_ring_full));
  setCounter(handoffs_->Add({{"result", "received"}}), static_cast<double>(handoffs_received));
  static const char* kXdpActions[] = {"seen", "redirected", "passed", "no_socket"};
  for (size_t i = 0; i < st.xdp_counters.size() && i < std::size(kXdpActions); ++i) {
    setCounter(xdp_packets_->Add({{"action", kXdpActions[i]}}),
               static_cast<double>(st.xdp_counters[i]));
  }
  for (const auto& [sock, s] : st.sockets) {
    const std::pair<const char*, uint64_t> events[] = {
        {"rx_dropped", s.rx_dropped},     {"rx_invalid", s.rx_invalid},
        {"rx_ring_full", s.rx_ring_full}, {"fill_ring_empty", s.fill_ring_empty},
        {"tx_invalid", s.tx_invalid},     {"tx_ring_empty", s.tx_ring_empty}};
    for (const auto& [event, value] : events) {
      setCounter(xsk_ring_->Add({{"socket", sock}, {"event", event}}), static_cast<double>(value));
    }
  }
  for (const auto& a : st.attached) {
    attach_
        ->Add({{"interface", a.iface.name},
               {"mode", a.mode},
               {"path", st.dispatcher ? "dispatcher" : "legacy"}})
        .Set(1);
  }
  bind_->Add({{"mode", st.zero_copy ? "zerocopy" : "copy"}}).Set(1);
  setCounter(neighbor_->Add({{"event", "miss"}}), static_cast<double>(st.neighbor_misses));
  setCounter(neighbor_->Add({{"event", "probe"}}), static_cast<double>(st.neighbor_probes));
  generation_->Add({}).Set(static_cast<double>(st.generation));
  for (size_t i = 0; i < to_kernel.size(); ++i) {
    setCounter(kernel_path_->Add({{"direction", "to_kernel"},
                                  {"reason", kernelHandoffName(static_cast<KernelHandoff>(i))}}),
               static_cast<double>(to_kernel[i]));
  }
  setCounter(kernel_path_->Add({{"direction", "from_kernel"}, {"reason", "reply"}}),
             static_cast<double>(from_kernel));
  vip_map_->Add({{"state", "used"}}).Set(static_cast<double>(st.steering_keys));
  vip_map_->Add({{"state", "capacity"}}).Set(static_cast<double>(st.max_steering_keys));
  table_bytes_->Add({}).Set(static_cast<double>(st.table_bytes));
  local_vips_->Add({}).Set(static_cast<double>(st.local_vips));
  adopted_->Add({{"what", "conntrack_entries"}}).Set(static_cast<double>(st.adoption.entries));
  adopted_->Add({{"what", "conntrack_entries_discarded"}})
      .Set(static_cast<double>(st.adoption.entries_discarded));
  adopted_->Add({{"what", "conntrack_tables_discarded"}})
      .Set(static_cast<double>(st.adoption.tables_discarded));
  adopted_->Add({{"what", "backend_ids_discarded"}}).Set(st.adoption.registry_discarded ? 1 : 0);
}

void AgentMetrics::update(const FlowSyncCounters& c) {
  const auto records = [this](const char* event, uint64_t v) {
    setCounter(flow_sync_records_->Add({{"event", event}}), static_cast<double>(v));
  };
  records("sent", c.records_sent);
  records("received", c.records_received);
  records("table_full", c.table.refused_full);
  records("expired", c.table.expired);
  setCounter(flow_sync_bytes_->Add({}), static_cast<double>(c.bytes_sent));
  setCounter(flow_sync_refused_->Add({}), static_cast<double>(c.batches_refused));
  flow_sync_entries_->Add({{"table", "others"}}).Set(static_cast<double>(c.table_size));
  flow_sync_entries_->Add({{"table", "others_capacity"}})
      .Set(static_cast<double>(c.table_capacity));
  flow_sync_entries_->Add({{"table", "own"}}).Set(static_cast<double>(c.own_size));
}

}  // namespace flowlb::agent
