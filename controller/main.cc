// flowlb-controller: watches Services, EndpointSlices, Nodes and IPPools,
// allocates VIPs and computes each node's desired state. Two sources: the
// Kubernetes API (--source=kubernetes: informers, Service status, Events,
// IPPool status, leader election) and a directory of YAML (--source=dir:PATH:
// allocations kept in a status file, Events logged). --dump-state prints
// every node's desired state. The gRPC server streams each node's desired
// state to its agent. /metrics, /healthz and /readyz are served on
// --metrics-address.
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <random>
#include <thread>

#include "common/cli.h"
#include "common/health.h"
#include "common/watchdog.h"
#include "controller/agent_link.h"
#include "controller/config/annotations.h"
#include "controller/dump_state.h"
#include "controller/grpc/sync_server.h"
#include "controller/k8s/kube_controller.h"
#include "controller/metrics.h"
#include "controller/source/dir_objects.h"
#include "controller/status/bgp_peer_report.h"

namespace {

struct Flags {
  std::string source = "kubernetes";
  std::string kubeconfig;
  bool default_class = false;
  std::string lb_class = "flowlb.io/lb";
  std::string metrics_address = "0.0.0.0:9465";
  bool leader_elect = true;
  std::string lease_namespace = "flowlb-system";
  std::string lease_name = "flowlb-controller";
  flowlb::controller::AgentLinkFlags link;
  std::string agent_cert_validity = "24h";
  std::string log_level = "info";
  std::string status_file;
  bool once = false;
  bool dump_state = false;
  double api_qps = 50;
  int api_burst = 100;
  std::string identity;
  std::string advertise_address;
  std::string lease_duration = "15s";
  std::string renew_deadline = "10s";
  std::string retry_period = "2s";
  int watch_timeout_s = 300;
  int writers = 4;
};

using namespace flowlb;
using namespace flowlb::controller;

// Blocks SIGINT and SIGTERM in every thread started after this, so that
// waitForSignal() receives them.
void blockStopSignals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
}

void waitForSignal() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  int sig = 0;
  sigwait(&set, &sig);
  spdlog::info("event=stopping signal={}", sig);
}

// What every reconcile's result goes to: the agents, the log, --dump-state.
ReconcileLoop::Published publisher(const Flags& f, SyncServer* server,
                                   std::function<bool()> is_leader) {
  return [dump = f.dump_state, server, is_leader](const Reconciled& r, uint64_t version) {
    if (server) server->publish(r);
    size_t ok = 0;
    for (const ServiceOutcome& s : r.services) ok += s.satisfied ? 1 : 0;
    spdlog::info("event=desired_state version={} services={} satisfied={} nodes={} leader={}",
                 version, r.services.size(), ok, r.nodes.size(), !is_leader || is_leader());
    if (dump) {
      // Who announces: the distribution's decision, or without agents (no
      // gRPC server) the nominal one.
      dumpState(r, server ? server->announcers() : assignAnnouncers(r.vips, {}, {}, false));
      std::fflush(stdout);
    }
  };
}

std::chrono::milliseconds durationFlag(const std::string& text) {
  uint32_t s = 0;
  parseDuration(text, &s);  // validated by the flag's check
  return std::chrono::milliseconds(int64_t{s} * 1000);
}

// The agents' link (the gRPC Sync server, its TLS, the certificate
// bootstrap); nullptr when neither TLS nor --plaintext was given.
std::unique_ptr<AgentLink> startAgentLink(const Flags& f, const k8s::ClusterConfig* cluster,
                                          ControllerMetrics* metrics,
                                          std::function<bool()> is_leader,
                                          std::function<std::string()> leader_address,
                                          bool* failed) {
  *failed = false;
  if (!agentLinkWanted(f.link)) return nullptr;
  AgentLinkFlags lf = f.link;
  lf.ns = f.lease_namespace;
  lf.agent_cert_validity =
      std::chrono::duration_cast<std::chrono::seconds>(durationFlag(f.agent_cert_validity));
  auto link = AgentLink::start(lf, cluster, metrics, std::move(is_leader),
                               std::move(leader_address), [metrics](std::string_view result) {
                                 if (metrics) metrics->certificateRequest(result);
                               });
  if (!link) {
    spdlog::error("event=start reason=grpc msg=\"{}\"", link.error());
    *failed = true;
    return nullptr;
  }
  return std::move(*link);
}

// The directory source through the same reconcile loop as the API.
int runDirectory(const Flags& f, const std::string& dir, const ReconcilerConfig& cfg) {
  auto status = StatusFile::load(f.status_file);
  if (!status) {
    spdlog::error(
        "event=start reason=status_file_unreadable msg=\"{}; refusing to start, which would "
        "replace the allocations it holds: fix or remove it\"",
        status.error());
    return 1;
  }
  DirObjects objects(dir);
  StatusFileSink status_sink(std::move(*status));
  LogEventSink event_log;
  EventRecorder events(&event_log);
  Watchdog watchdog;  // before the checks and the server that read it
  HealthChecks health;
  // Liveness: the reconcile loop keeps turning.
  health.add("watchdog", [&watchdog] {
    const Watchdog::Verdict v = watchdog.check();
    return v.ok ? HealthCheck::pass(v.detail) : HealthCheck::fail(v.detail);
  });
  std::atomic<bool> reconciled{false};
  health.addReadiness("source", [&reconciled, dir] {
    return reconciled ? HealthCheck::pass("dir:" + dir)
                      : HealthCheck::fail("dir:" + dir + " not reconciled yet");
  });
  std::unique_ptr<ControllerMetrics> metrics;
  std::unique_ptr<AgentLink> link;
  SyncServer* server = nullptr;
  if (!f.once) {
    bool failed = false;
    link = startAgentLink(f, nullptr, nullptr, nullptr, nullptr, &failed);
    if (failed) return 2;
    if (link) server = link->server();
    if (!server) {
      spdlog::info(
          "event=grpc_disabled msg=\"no agent link: give --tls-cert/--tls-key, --tls-ca-key or "
          "--plaintext to serve agents\"");
    }
    auto m = ControllerMetrics::serve(f.metrics_address, &health);
    if (!m) {
      spdlog::error("event=start reason=metrics msg=\"{}\"", m.error());
      return 2;
    }
    metrics = std::move(*m);
    metrics->leader(true);
    if (server) metrics->sampleAgents(server);
  }
  auto problem = [&metrics](const std::string&) {
    if (metrics) metrics->rejectedObject("file");
  };
  auto first = objects.refresh(problem);
  if (!first) {
    spdlog::error("event=source_failed msg=\"{}\"", first.error());
    return 1;
  }
  ReconcileLoopOptions lo;
  lo.reconciler = cfg;
  lo.watchdog = &watchdog;
  auto published = publisher(f, server, nullptr);
  ReconcileLoop loop(
      lo, &objects, &status_sink, &events,
      [&published, &reconciled](const Reconciled& r, uint64_t version) {
        published(r, version);
        reconciled = true;
      },
      metrics.get());
  if (server) server->onFeedback([&loop](const auto& changed) { loop.feedback(changed); });
  LogBgpStatusSink bgp_status_log;
  BgpPeerReporter bgp_reporter(&events, &bgp_status_log, nullptr);
  if (server) {
    server->onBgpStatus([&bgp_reporter, &metrics](const BgpPeerSessions& sessions) {
      bgp_reporter.update(sessions);
      if (metrics) metrics->bgpSessions(bgp_reporter.perState());
    });
  }
  loop.everythingChanged();
  if (f.once) {
    loop.runOnce();
    return 0;
  }
  blockStopSignals();
  auto watcher = DirWatcher::start(dir, [&] {
    auto c = objects.refresh(problem);
    if (!c) {
      spdlog::error("event=source_failed msg=\"{}\"", c.error());
      return;
    }
    if (c->others) loop.everythingChanged();
    for (const std::string& k : c->services) loop.serviceChanged(k);
    for (const std::string& k : c->slices) loop.slicesChanged(k);
  });
  if (!watcher) {
    spdlog::error("event=watch_failed dir={} msg=\"{}\"", dir, watcher.error());
    link.reset();  // its threads call into the loop and the BGP reporter
    return 1;
  }
  loop.start();
  spdlog::info("event=watching dir={}", dir);
  waitForSignal();
  watcher->reset();
  loop.stop();
  if (metrics) metrics->stopSampling();
  link.reset();  // its threads call into the loop and the BGP reporter: gone first
  return 0;
}

std::string defaultIdentity() {
  char host[256] = {};
  gethostname(host, sizeof host - 1);
  std::random_device rd;
  char suffix[9];
  std::snprintf(suffix, sizeof suffix, "%08x", rd());
  return std::string(host) + "_" + suffix;
}

int runKubernetes(const Flags& f, const ReconcilerConfig& cfg) {
  auto cluster = k8s::resolveClusterConfig(f.kubeconfig);
  if (!cluster) {
    spdlog::error("event=start reason=no_api_config msg=\"{}\"", cluster.error());
    return 2;
  }
  HealthChecks health;
  auto metrics = ControllerMetrics::serve(f.metrics_address, &health);
  if (!metrics) {
    spdlog::error("event=start reason=metrics msg=\"{}\"", metrics.error());
    return 2;
  }
  k8s::KubeControllerOptions o;
  o.cluster = *cluster;
  o.api.qps = f.api_qps;
  o.api.burst = f.api_burst;
  o.reconciler = cfg;
  o.leader_elect = f.leader_elect;
  o.leader.ns = f.lease_namespace;
  o.secret_namespace = f.lease_namespace;  // the controller's own namespace
  o.leader.name = f.lease_name;
  o.leader.identity = f.identity.empty() ? defaultIdentity() : f.identity;
  o.leader.lease_duration = durationFlag(f.lease_duration);
  o.leader.renew_deadline = durationFlag(f.renew_deadline);
  o.leader.retry_period = durationFlag(f.retry_period);
  if (o.leader.renew_deadline >= o.leader.lease_duration) {
    spdlog::error(
        "event=start reason=bad_lease msg=\"--lease-renew-deadline must be shorter than "
        "--lease-duration, or two leaders could write at once\"");
    return 2;
  }
  o.watch_timeout_min_s = f.watch_timeout_s;
  o.watch_timeout_max_s = f.watch_timeout_s * 2;
  o.writers = f.writers;
  o.leader.advertise_address = f.advertise_address;
  if (o.leader.advertise_address.empty()) {
    if (const char* pod_ip = std::getenv("POD_IP"); pod_ip && *pod_ip) {
      const std::string ip = pod_ip;
      o.leader.advertise_address = (ip.find(':') != std::string::npos ? "[" + ip + "]" : ip) +
                                   f.link.grpc_address.substr(f.link.grpc_address.rfind(':'));
    }
  }
  k8s::KubeController controller(o, metrics->get());
  // Ready once every informer has listed (before that, the desired state
  // would be built from a partial cache) and while leader election has no
  // problem only the operator can fix (no Lease namespace, RBAC).
  health.addReadiness("informers-synced", [&controller] {
    if (!controller.synced()) {
      return HealthCheck::fail("Services, EndpointSlices, Nodes and IPPools not all listed yet");
    }
    return HealthCheck::pass(controller.isLeader() ? "leader" : "follower");
  });
  // Liveness: every informer, the reconcile loop and the API client's
  // thread pool keep moving (issue 17.10: a hung controller kept serving
  // metrics and gRPC); a stuck part gets the pod restarted.
  health.add("watchdog", [&controller] {
    const Watchdog::Verdict v = controller.health();
    return v.ok ? HealthCheck::pass(v.detail) : HealthCheck::fail(v.detail);
  });
  health.addReadiness("leader-election", [&controller] {
    const std::string problem = controller.problem();
    return problem.empty() ? HealthCheck::pass() : HealthCheck::fail(problem);
  });
  auto is_leader = [&controller] { return controller.isLeader(); };
  bool failed = false;
  std::unique_ptr<AgentLink> link = startAgentLink(
      f, &*cluster, metrics->get(), is_leader, [&controller] { return controller.leaderAddress(); },
      &failed);
  if (failed) {
    metrics->reset();
    return 2;
  }
  SyncServer* server = link ? link->server() : nullptr;
  if (server) (*metrics)->sampleAgents(server);
  blockStopSignals();
  spdlog::info("event=start source=kubernetes api={} via=\"{}\" identity={} leader_elect={}",
               cluster->server, cluster->origin, o.leader.identity, f.leader_elect);
  controller.start(publisher(f, server, is_leader));
  if (server) {  // after start: the listeners call into the controller's parts
    server->onFeedback([&controller](const auto& changed) { controller.feedback(changed); });
    server->onBgpStatus([&controller, m = metrics->get()](const BgpPeerSessions& sessions) {
      m->bgpSessions(controller.bgpStatus(sessions));
    });
  }
  waitForSignal();
  (*metrics)->stopSampling();
  link.reset();  // agents reconnect to the next leader
  controller.stop();
  metrics->reset();  // no /readyz or /healthz may ask `controller` once it is gone
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  // glibc gives each thread that allocates its own arena (up to 8 per core),
  // and memory freed in one arena cannot serve another: with the informer,
  // writer and gRPC threads that was 10 MB of the 158 MB the controller held
  // with 10k Services (bench/run.sh controller). Two arenas (each thread
  // still has its own cache of small blocks) cost nothing measurable there.
  // MALLOC_ARENA_MAX in the environment still decides when set.
  if (!std::getenv("MALLOC_ARENA_MAX")) mallopt(M_ARENA_MAX, 2);
  CLI::App app{"flowlb-controller: allocates LoadBalancer VIPs and programs flowlb agents"};
  Flags f;
  addVersionFlag(app, "flowlb-controller");
  auto duration = [](const std::string& v) -> std::string {
    uint32_t secs = 0;
    return parseDuration(v, &secs) && secs > 0 ? "" : "'" + v + "' is not a duration like 15s";
  };

  app.add_option("--source", f.source,
                 "Where Services, EndpointSlices and IPPools come from: 'kubernetes' (the API "
                 "server) or 'dir:PATH' (a directory of Kubernetes YAML, watched for changes)")
      ->check([](const std::string& s) -> std::string {
        if (s == "kubernetes") return {};
        if (s.rfind("dir:", 0) == 0) {
          return std::filesystem::is_directory(s.substr(4)) ? "" : "no directory " + s.substr(4);
        }
        return "must be 'kubernetes' or 'dir:PATH'";
      });
  app.add_option("--kubeconfig", f.kubeconfig,
                 "kubeconfig file (default: $KUBECONFIG, then in-cluster service account)");
  app.add_flag("--default-class", f.default_class,
               "Also serve LoadBalancer Services that set no spec.loadBalancerClass");
  app.add_option("--load-balancer-class", f.lb_class, "spec.loadBalancerClass served");
  app.add_option("--grpc-address", f.link.grpc_address, "Listen address for agents' Sync streams")
      ->check(hostPortValidator());
  app.add_option("--metrics-address", f.metrics_address, "Prometheus metrics listen address")
      ->check(hostPortValidator());
  app.add_option("--leader-elect", f.leader_elect,
                 "Elect a leader through a coordination.k8s.io Lease (only it writes)");
  app.add_option("--lease-namespace", f.lease_namespace,
                 "The controller's namespace: its leader Lease, and the basic-auth Secrets that "
                 "BGPPeer passwordSecretRef names");
  app.add_option("--lease-name", f.lease_name, "Name of the leader Lease");
  auto* cert =
      app.add_option("--tls-cert", f.link.tls_cert, "Server certificate for the gRPC link (PEM)")
          ->check(CLI::ExistingFile);
  auto* key = app.add_option("--tls-key", f.link.tls_key, "Server private key (PEM)")
                  ->check(CLI::ExistingFile);
  app.add_option("--tls-ca", f.link.tls_ca,
                 "CA of the agents' client certificates (mutual TLS): an agent is served only "
                 "as the node its certificate names")
      ->check(CLI::ExistingFile);
  app.add_option("--tls-ca-key", f.link.tls_ca_key,
                 "That CA's private key: sign agents' certificates (the bootstrap, authorised by "
                 "their ServiceAccount tokens) and, without --tls-cert, issue our own serving "
                 "certificate for --tls-server-name")
      ->check(CLI::ExistingFile);
  app.add_option("--ca-secret", f.link.ca_secret,
                 "Instead of --tls-ca/--tls-ca-key: the CA in this Secret of --lease-namespace, "
                 "generated there at first start if it holds none (static manifests)");
  app.add_option("--ca-bundle-configmap", f.link.ca_bundle_configmap,
                 "Write the CA certificate (public) into this ConfigMap of --lease-namespace, "
                 "for the agents to trust");
  app.add_option("--tls-server-name", f.link.server_names,
                 "DNS name for the self-issued serving certificate (repeatable), e.g. "
                 "flowlb-controller.flowlb-system.svc");
  app.add_option("--agent-cert-validity", f.agent_cert_validity,
                 "Lifetime of the agents' certificates; they renew at about 60 %")
      ->check(duration);
  app.add_option("--bootstrap-audience", f.link.audience,
                 "Audience the agents' projected ServiceAccount tokens must carry");
  app.add_option("--agent-namespace", f.link.agent_namespace,
                 "Namespace of the agents' Pods and ServiceAccount");
  app.add_option("--agent-service-account", f.link.agent_service_account,
                 "ServiceAccount of the agents' Pods (the only one whose tokens get certificates)");
  cert->needs(key);
  key->needs(cert);
  app.add_flag("--plaintext", f.link.plaintext,
               "Serve the gRPC link without TLS (explicit opt-in; tests and labs only: any "
               "client can speak for any node)")
      ->excludes(cert);
  app.add_flag("--allow-unauthenticated-agents", f.link.allow_unauthenticated_agents,
               "With --tls-cert but no --tls-ca: accept agents without a client certificate "
               "(they cannot be told apart; refused without this flag)");
  app.add_option("--status-file", f.status_file,
                 "With dir: sources, where allocations are kept (read on start, written after "
                 "each reconcile), as Service status keeps them in a cluster");
  app.add_flag("--once", f.once, "With dir: sources, reconcile once and exit");
  app.add_flag("--dump-state", f.dump_state,
               "Print the allocations and every node's desired state after each reconcile");
  app.add_option("--log-level", f.log_level, "Log level")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error"}));
  app.add_option("--kube-api-qps", f.api_qps,
                 "Client-side rate limit on Kubernetes API requests (per second; watches excluded)")
      ->check(CLI::Range(0.1, 100000.0));
  app.add_option("--kube-api-burst", f.api_burst,
                 "Requests allowed in a burst above --kube-api-qps")
      ->check(CLI::Range(1, 100000));
  app.add_option("--grpc-keepalive-ms", f.link.keepalive_ms,
                 "Ping each agent this often; with the timeout below, how soon a silent agent "
                 "is taken for dead and its VIPs move")
      ->check(CLI::Range(10, 3600000));
  app.add_option("--grpc-keepalive-timeout-ms", f.link.keepalive_timeout_ms,
                 "An agent that does not answer a ping within this is taken for dead")
      ->check(CLI::Range(10, 3600000));
  app.add_option("--grpc-max-streams", f.link.max_streams,
                 "Sync streams served at once (more are refused)")
      ->check(CLI::Range(1, 1000000));
  app.add_option("--grpc-max-streams-per-source", f.link.max_streams_per_source,
                 "Sync streams served at once from one source address (one agent per node; "
                 "room for reconnects)")
      ->check(CLI::Range(1, 1000000));
  app.add_option("--health-probers-per-backend", f.link.health_probers_per_backend,
                 "Agents that probe each backend of a Service with flowlb.io/health-check; a "
                 "backend is down when a majority of them say so")
      ->check(CLI::Range(1, 15));
  app.add_option("--flow-sync-max-records-per-second", f.link.flow_sync_max_records_per_second,
                 "Flow sync records one agent may send a second (burst: one second's worth); "
                 "batches over it are dropped and counted")
      ->check(CLI::Range(1.0, 100000000.0));
  app.add_option("--advertise-address", f.advertise_address,
                 "HOST:PORT agents reach this instance's gRPC server at; the leader publishes it "
                 "on its Lease and followers send agents there (default: $POD_IP and the "
                 "--grpc-address port, when POD_IP is set)");
  app.add_option("--identity", f.identity,
                 "Leader-election identity (default: hostname_random); unique per instance");
  app.add_option("--lease-duration", f.lease_duration,
                 "How long followers wait after the leader's last renewal before taking over")
      ->check(duration);
  app.add_option("--lease-renew-deadline", f.renew_deadline,
                 "A leader that has not renewed for this long stops writing (< lease duration)")
      ->check(duration);
  app.add_option("--lease-retry-period", f.retry_period, "How often the Lease is renewed or tried")
      ->check(duration);
  app.add_option("--watch-timeout-seconds", f.watch_timeout_s,
                 "Watches are renewed after a random time between this and twice this")
      ->check(CLI::Range(1, 3600));
  app.add_option("--api-writers", f.writers, "Concurrent status/Event writers")
      ->check(CLI::Range(1, 64));
  if (const int rc = parseCommandLine(app, argc, argv); rc >= 0) return rc;
  spdlog::set_level(spdlog::level::from_str(f.log_level));
  if (const std::string usage = agentLinkUsageError(f.link); !usage.empty()) {
    spdlog::error("event=start reason=usage msg=\"{}\"", usage);
    return 2;
  }

  ReconcilerConfig cfg;
  cfg.load_balancer_class = f.lb_class;
  cfg.default_class = f.default_class;
  if (f.source.rfind("dir:", 0) == 0) return runDirectory(f, f.source.substr(4), cfg);

  if (!agentLinkWanted(f.link)) {
    spdlog::error(
        "event=start reason=no_tls msg=\"give --tls-cert/--tls-key or --tls-ca/--tls-ca-key, or "
        "--plaintext\"");
    return 2;
  }
  return runKubernetes(f, cfg);
}
