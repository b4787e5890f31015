// The agent's Prometheus metrics, declared in one place and served on
// --metrics-address with /healthz and /readyz (common/endpoints.h). Values
// are copied from the datapath's status once per update(); the workers never
// touch prometheus-cpp.
#pragma once

#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/registry.h>

#include <chrono>
#include <map>
#include <memory>
#include <set>
#include <string>

#include "agent/announce/bgp/speaker.h"
#include "agent/announce/l2_announcer.h"
#include "agent/control/flow_sync.h"
#include "agent/datapath/datapath.h"
#include "agent/health/prober.h"
#include "common/health.h"
#include "common/http_server.h"
#include "common/status.h"

namespace flowlb::agent {

class AgentMetrics {
 public:
  // `health` backs /healthz and /readyz; it must outlive the metrics.
  static Result<std::unique_ptr<AgentMetrics>> serve(const std::string& address,
                                                     const HealthChecks* health);

  // The port /metrics is served on (the one chosen for a port 0 address).
  int port() const { return server_->port(); }

  void update(const DatapathStatus& st);
  // Flow sync (--nat-source=vip): the control thread's side; the workers'
  // (shared, ring_full, adopted) come with update(DatapathStatus).
  void update(const FlowSyncCounters& c);
  // The services and backends of the desired state in force: per-service and
  // per-backend series of names no longer in it are removed once they stop
  // counting (a draining flow may still add to them), so a rolling update
  // does not leave series behind for good.
  void desiredState(const DesiredState& d);
  // The VIPs this node answers ARP/NDP for (one series each, 1).
  void announcedVips(const std::vector<IpAddr>& vips);
  void update(const AnnouncerStats& st);
  // BGP sessions and BFD, one series per peer (removed with the peer).
  void update(const bgp::SpeakerStatus& st);
  void configReload(bool ok);
  // The services the last apply refused (one series each, removed when the
  // service is applied again or leaves the state).
  void refusedServices(const std::vector<ServiceError>& refused);
  // The controller link: connected, streams ended, when the last desired state arrived.
  void controllerLink(bool connected, uint64_t resets,
                      std::chrono::system_clock::time_point last_update);
  // Health checks: probe counts, targets, and one series per probed
  // backend (removed when the target goes).
  void healthChecks(const std::vector<health::TargetStatus>& statuses,
                    const health::ProberCounters& counters);
  // The interfaces in use and how they were chosen (flag or detected).
  void interfaces(const std::vector<std::pair<std::string, std::string>>& name_and_role,
                  const std::string& source);

 private:
  AgentMetrics() = default;
  static void setCounter(prometheus::Counter& c, double value);
  // The backend label: "10.0.0.1:8080", "[fd00::1]:8080" (as the workers name them).
  static std::string backendLabel(const IpAddr& addr, uint16_t port);
  struct TrafficSeries {
    const char* label;
    prometheus::Family<prometheus::Counter>* packets;
    prometheus::Family<prometheus::Counter>* bytes;
    prometheus::Family<prometheus::Counter>* new_flows;
    std::set<std::string> present;          // names in the desired state in force
    std::map<std::string, uint64_t> shown;  // names with series: packets last published
    std::map<std::string, uint64_t> gone;   // names whose series were removed: packets then
  };
  static void publish(TrafficSeries& ts,
                      const std::map<std::string, WorkerReport::Traffic>& by_name);

  std::shared_ptr<prometheus::Registry> registry_;
  prometheus::Family<prometheus::Counter>* handoffs_ = nullptr;
  prometheus::Family<prometheus::Counter>* flow_sync_records_ = nullptr;
  prometheus::Family<prometheus::Counter>* flow_sync_bytes_ = nullptr;
  prometheus::Family<prometheus::Counter>* flow_sync_refused_ = nullptr;
  prometheus::Family<prometheus::Gauge>* flow_sync_entries_ = nullptr;
  std::unique_ptr<HttpServer> server_;
  prometheus::Family<prometheus::Counter>* service_packets_ = nullptr;
  prometheus::Family<prometheus::Counter>* service_bytes_ = nullptr;
  prometheus::Family<prometheus::Counter>* service_new_flows_ = nullptr;
  prometheus::Family<prometheus::Counter>* backend_packets_ = nullptr;
  prometheus::Family<prometheus::Counter>* backend_bytes_ = nullptr;
  prometheus::Family<prometheus::Counter>* backend_new_flows_ = nullptr;
  TrafficSeries service_series_{};
  TrafficSeries backend_series_{};
  prometheus::Family<prometheus::Gauge>* announced_ = nullptr;
  std::vector<prometheus::Gauge*> announced_series_;
  prometheus::Family<prometheus::Counter>* drops_ = nullptr;
  prometheus::Family<prometheus::Counter>* unhandled_ = nullptr;
  prometheus::Family<prometheus::Counter>* xdp_packets_ = nullptr;
  prometheus::Family<prometheus::Gauge>* conntrack_entries_ = nullptr;
  prometheus::Family<prometheus::Gauge>* conntrack_capacity_ = nullptr;
  prometheus::Family<prometheus::Counter>* conntrack_evictions_ = nullptr;
  prometheus::Family<prometheus::Counter>* xsk_ring_ = nullptr;
  prometheus::Family<prometheus::Gauge>* frames_ = nullptr;
  prometheus::Family<prometheus::Gauge>* attach_ = nullptr;
  prometheus::Family<prometheus::Gauge>* bind_ = nullptr;
  prometheus::Family<prometheus::Counter>* neighbor_ = nullptr;
  prometheus::Family<prometheus::Gauge>* generation_ = nullptr;
  prometheus::Family<prometheus::Counter>* reloads_ = nullptr;
  prometheus::Family<prometheus::Counter>* l2_ = nullptr;
  prometheus::Family<prometheus::Counter>* kernel_path_ = nullptr;
  prometheus::Family<prometheus::Gauge>* refused_ = nullptr;
  std::vector<prometheus::Gauge*> refused_series_;
  prometheus::Family<prometheus::Gauge>* vip_map_ = nullptr;
  prometheus::Family<prometheus::Gauge>* table_bytes_ = nullptr;
  prometheus::Family<prometheus::Gauge>* local_vips_ = nullptr;
  prometheus::Family<prometheus::Gauge>* adopted_ = nullptr;
  prometheus::Family<prometheus::Gauge>* bgp_state_ = nullptr;
  prometheus::Family<prometheus::Gauge>* bgp_up_ = nullptr;
  prometheus::Family<prometheus::Counter>* bgp_flaps_ = nullptr;
  prometheus::Family<prometheus::Gauge>* bgp_advertised_ = nullptr;
  prometheus::Family<prometheus::Counter>* bgp_received_ = nullptr;
  prometheus::Family<prometheus::Counter>* bgp_updates_ = nullptr;
  prometheus::Family<prometheus::Counter>* bgp_malformed_ = nullptr;
  prometheus::Family<prometheus::Counter>* bgp_notifications_ = nullptr;
  prometheus::Family<prometheus::Gauge>* bfd_up_ = nullptr;
  prometheus::Family<prometheus::Counter>* bfd_downs_ = nullptr;
  prometheus::Counter* bfd_discarded_ = nullptr;
  std::set<std::string> bgp_peers_;  // peers with series, to remove those that leave
  prometheus::Family<prometheus::Counter>* health_probes_ = nullptr;
  prometheus::Counter* health_pass_ = nullptr;
  prometheus::Counter* health_fail_ = nullptr;
  prometheus::Family<prometheus::Gauge>* backend_health_ = nullptr;
  std::map<health::TargetKey, prometheus::Gauge*> backend_health_series_;
  prometheus::Gauge* health_targets_ = nullptr;
  prometheus::Gauge* health_refused_ = nullptr;
  prometheus::Gauge* link_connected_ = nullptr;
  prometheus::Counter* link_resets_ = nullptr;
  prometheus::Gauge* link_last_update_ = nullptr;
  prometheus::Family<prometheus::Gauge>* interface_ = nullptr;
};

}  // namespace flowlb::agent
