// flowlb-agent: the per-node agent. It attaches the XDP program to the
// given interfaces and forwards VIP traffic with AF_XDP workers, and answers
// ARP/NDP for the VIPs it announces. Its desired state comes from the
// controller (--controller-address, the Sync stream) or from a standalone
// configuration file reloaded on change or SIGHUP. With --check it only
// validates the file (and can push synthetic flows through the forwarding
// core).
#include <fmt/ranges.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <optional>

#include "agent/control/certificate_bootstrap.h"
#include "agent/control/controller_link.h"
#include "agent/control/flow_sync.h"
#include "agent/datapath/datapath.h"
#include "agent/health.h"
#include "agent/health/prober.h"
#include "agent/lb/snapshot.h"
#include "agent/node/interface_discovery.h"
#include "agent/node/node_agent.h"
#include "agent/node/snat_flags.h"
#include "agent/source/config_check.h"
#include "agent/source/config_file.h"
#include "agent/source/file_watch.h"
#include "common/cli.h"
#include "common/file.h"
#include "common/waker.h"

namespace {

using namespace flowlb;
using namespace flowlb::agent;

struct Flags {
  std::string config;
  bool check = false;
  uint32_t dry_run_flows = 0;
  std::string node_name;
  std::vector<std::string> interfaces;
  std::string xdp_mode = "auto";
  std::string bind_mode = "auto";
  std::string poll_mode = "wakeup";
  bool xsk_busy_poll = false;
  std::vector<int> cpus;
  uint32_t queues = 1;
  uint32_t umem_frames = 8192;
  std::string bpf_object;
  size_t conntrack_entries = 1 << 20;
  std::string nat_source = "node";  // node | vip (flow sync)
  size_t flow_sync_entries = 262144;
  bool kernel_path = true;
  std::string kernel_path_mark = "0x1000";
  uint32_t kernel_path_table = 61707;
  uint32_t kernel_path_rule_priority = 3300;
  uint32_t max_vip_entries = 65536;
  uint32_t table_memory_mb = 256;
  uint32_t previous_table_grace_s = 120;
  uint32_t health_max_targets = 20000;
  uint32_t health_max_in_flight = 256;
  std::string state_dir;
  std::string controller_address;
  bool plaintext = false;
  std::string tls_cert, tls_key, tls_ca;
  std::string bootstrap_token_file;
  std::string snat_v4, snat_v6;
  std::string snat_ports = std::to_string(FLOWLB_SNAT_PORT_MIN_DEFAULT) + "-" +
                           std::to_string(FLOWLB_SNAT_PORT_MAX_DEFAULT);
  std::vector<std::string> announce_interfaces;
  std::string metrics_address = "0.0.0.0:9464";
  std::string log_level = "info";
  std::vector<std::string> node_ips;  // --node-ip: status.hostIPs
  // Filled by resolveInterfaces(): how the interfaces were chosen.
  std::string interface_choice;  // shown in /readyz
  std::string interface_source;  // flag | detected
};

// Fills f.interfaces (and, with a controller, the announce interfaces and
// NAT sources in `local`) from the flags or, where they are silent, from the
// host (agent/node/interface_discovery.h). Returns false after logging why not.
bool resolveInterfaces(Flags& f, AgentConfigFile* local, bool with_controller) {
  DiscoveryInput in;
  in.interfaces = f.interfaces;
  in.announce_interfaces = f.announce_interfaces;
  in.announce = with_controller;
  in.snat = with_controller;  // standalone: the configuration file gives them
  for (const std::string& text : f.node_ips) {
    auto a = IpAddr::parse(text);
    if (!a) {
      spdlog::error("event=start reason=usage msg=\"--node-ip {} is not an address\"", text);
      return false;
    }
    in.node_ips.push_back(*a);
  }
  if (local->snat.has_v4) in.snat_v4 = local->snat.v4;
  if (local->snat.has_v6) in.snat_v6 = local->snat.v6;
  auto host = readHostNetwork();
  auto c = host ? chooseInterfaces(in, *host) : Result<InterfaceChoice>(host.status());
  if (!c) {
    spdlog::error("event=start reason=interfaces msg=\"{}\"", c.error());
    return false;
  }
  // --metrics-address node-ip:PORT binds to the node's own address only.
  if (f.metrics_address.rfind("node-ip:", 0) == 0) {
    if (in.node_ips.empty()) {
      spdlog::error(
          "event=start reason=usage msg=\"--metrics-address node-ip:... needs --node-ip\"");
      return false;
    }
    const IpAddr& ip = in.node_ips.front();
    f.metrics_address = ip.toHost() + f.metrics_address.substr(f.metrics_address.find(':'));
  }
  f.interfaces = c->xdp;
  f.interface_source = c->source;
  f.interface_choice = c->reason;
  if (with_controller) {
    local->announce_interfaces = c->announce;
    local->snat.has_v4 = c->snat_v4.has_value();
    if (c->snat_v4) local->snat.v4 = *c->snat_v4;
    local->snat.has_v6 = c->snat_v6.has_value();
    if (c->snat_v6) local->snat.v6 = *c->snat_v6;
  }
  spdlog::info(
      "event=interfaces source={} xdp={} announce={} msg=\"{}\"", c->source, fmt::join(c->xdp, ","),
      fmt::join(with_controller ? c->announce : local->announce_interfaces, ","), c->reason);
  return true;
}

std::atomic<bool> g_stop{false};
std::atomic<bool> g_reload{false};
// Wakes the main loop, which otherwise sleeps until its own events (netlink,
// the file, a drain deadline) or the next once-a-second chore: rung by the
// controller link when a desired state arrives and by the signal handler.
std::optional<Waker> g_waker;
std::atomic<int> g_wake_fd{-1};
// Set by the health prober's thread when a backend's status changed.
std::atomic<bool> g_health_changed{false};

void onSignal(int sig) {
  if (sig == SIGHUP) {
    g_reload.store(true);
  } else {
    g_stop.store(true);
  }
  if (const int fd = g_wake_fd.load(); fd >= 0) {
    const uint64_t one = 1;
    (void)!write(fd, &one, sizeof one);  // async-signal-safe
  }
}

bool startWaker() {
  auto w = Waker::create();
  if (!w) {
    spdlog::error("event=start reason=main_loop msg=\"{}\"", w.error());
    return false;
  }
  g_waker.emplace(std::move(*w));
  g_wake_fd.store(g_waker->fd());
  return true;
}

std::string defaultBpfObject() {
  std::error_code ec;
  const auto exe = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (!ec) {
    const auto beside = exe.parent_path() / "flowlb_xdp_steer.o";
    if (std::filesystem::exists(beside)) return beside.string();
  }
  return "/usr/lib/flowlb/flowlb_xdp_steer.o";
}

std::string nodeName(const Flags& f) {
  if (!f.node_name.empty()) return f.node_name;
  char host[256] = {};
  gethostname(host, sizeof host - 1);
  return host;
}

// Set by the controller link's thread when the controller asks for a dump
// of this node's shared flows (a node joined).
std::atomic<bool> g_flow_sync_dump{false};

NodeAgentOptions agentOptions(const Flags& f, const AgentConfigFile& initial, FlowSync* flow_sync) {
  NodeAgentOptions o;
  DatapathConfig& dc = o.datapath;
  dc.bpf_object = f.bpf_object.empty() ? defaultBpfObject() : f.bpf_object;
  dc.interfaces = f.interfaces;
  dc.xdp_mode = f.xdp_mode == "native"    ? XdpMode::kNative
                : f.xdp_mode == "generic" ? XdpMode::kGeneric
                                          : XdpMode::kAuto;
  dc.bind_mode = f.bind_mode == "zerocopy" ? BindMode::kZeroCopy
                 : f.bind_mode == "copy"   ? BindMode::kCopy
                                           : BindMode::kAuto;
  dc.busy_poll = f.poll_mode == "busy";
  dc.xsk_busy_poll = f.xsk_busy_poll;
  dc.queues = f.queues;
  dc.umem_frames = f.umem_frames;
  dc.conntrack_entries = f.conntrack_entries;
  dc.snat_port_min = initial.snat.port_min;
  dc.snat_port_max = initial.snat.port_max;
  dc.max_vip_entries = f.max_vip_entries;
  dc.limits.table_budget_bytes = size_t{f.table_memory_mb} << 20;
  dc.limits.previous_table_grace_ms = uint64_t{f.previous_table_grace_s} * 1000;
  dc.kernel_path = f.kernel_path;
  dc.state_dir = f.state_dir;
  dc.snat = initial.snat;
  if (flow_sync != nullptr) {
    dc.flow_sync = &flow_sync->table();
    for (uint32_t q = 0; q < f.queues; ++q) dc.flow_export.push_back(flow_sync->ring(q));
  }
  dc.kernel.mark = static_cast<uint32_t>(std::strtoul(f.kernel_path_mark.c_str(), nullptr, 0));
  dc.kernel.table = f.kernel_path_table;
  dc.kernel.rule_priority = f.kernel_path_rule_priority;
  dc.cpus = f.cpus;
  o.node = nodeName(f);
  o.interface_choice = f.interface_choice;
  o.interface_source = f.interface_source;
  o.metrics_address = f.metrics_address;
  o.poll_mode = f.poll_mode;
  o.config = f.config;
  o.health_max_targets = f.health_max_targets;
  o.health_max_in_flight = f.health_max_in_flight;
  o.on_health_change = [] {
    g_health_changed.store(true);
    g_waker->wake();
  };
  return o;
}

int runDatapath(const Flags& f, const AgentConfigFile& initial,
                std::unique_ptr<ControllerLink> link, FlowSync* flow_sync = nullptr) {
  const NodeAgentOptions options = agentOptions(f, initial, flow_sync);
  struct sigaction sa {};
  sa.sa_handler = onSignal;
  sigaction(SIGTERM, &sa, nullptr);
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGHUP, &sa, nullptr);
  auto started = NodeAgent::start(options, initial, std::move(link), flow_sync);
  if (!started) return 1;  // logged
  NodeAgent& agent = **started;
  auto last_metrics = std::chrono::steady_clock::now() - std::chrono::seconds(1);
  while (!g_stop.load()) {
    agent.beat();
    // Sleep until something happens: a desired state or a signal (the
    // waker), a change to the file, a kernel link/route/neighbour event, a
    // next-hop miss or a drain deadline (inside poll), or the next
    // once-a-second metrics refresh; while the file settles, its period.
    const auto before = std::chrono::steady_clock::now();
    const auto sleep = std::min(std::chrono::duration_cast<std::chrono::milliseconds>(
                                    last_metrics + std::chrono::seconds(1) - before),
                                agent.longestSleep());
    agent.poll(static_cast<int>(std::clamp<int64_t>(sleep.count(), 0, 1000)), g_waker->fd());
    g_waker->drain();
    const auto now = std::chrono::steady_clock::now();
    agent.syncFlows(g_flow_sync_dump);
    agent.applyFromController();
    agent.checkLinkHealth();
    agent.reloadFile(now, g_reload.exchange(false));
    if (g_health_changed.exchange(false)) agent.onHealthChanged();
    if (now - last_metrics >= std::chrono::seconds(1)) {
      last_metrics = now;
      agent.refreshMetrics();
    }
  }
  agent.stop();
  return 0;
}

// Node-local settings from flags, the services from the controller.
int runWithController(Flags f) {
  if (f.tls_cert.empty() && f.tls_ca.empty() && !f.plaintext) {
    spdlog::error(
        "event=start reason=no_tls msg=\"give --tls-ca (and --tls-cert/--tls-key for "
        "mutual TLS), or --plaintext\"");
    return 2;
  }
  if (f.plaintext) {
    spdlog::warn(
        "event=insecure_controller_link reason=plaintext msg=\"no TLS to the controller: the "
        "desired state is not authenticated. Use it for tests and labs only\"");
  }
  AgentConfigFile local;
  if (Status st = parseSnatFlags(f.snat_v4, f.snat_v6, f.snat_ports, &local.snat); !st) {
    spdlog::error("event=start reason=usage msg=\"{}\"", st.message());
    return 2;
  }
  const unsigned lo = local.snat.port_min, hi = local.snat.port_max;
  // Replies to the node's own connections (this agent's link to the
  // controller among them) must not look like NAT flows.
  {
    std::ifstream in("/proc/sys/net/ipv4/ip_local_port_range");
    unsigned own_lo = 0, own_hi = 0;
    if (in >> own_lo >> own_hi && own_lo <= hi && lo <= own_hi) {
      spdlog::warn(
          "event=snat_port_overlap snat={}-{} ip_local_port_range={}-{} msg=\"the node's "
          "own connections may use SNAT ports; their replies would be taken for NAT "
          "flows. Move --snat-ports or net.ipv4.ip_local_port_range apart\"",
          lo, hi, own_lo, own_hi);
    }
  }
  if (!resolveInterfaces(f, &local, true)) return 2;
  local.snat.vip_source = f.nat_source == "vip";
  ControllerLinkOptions o;
  o.address = f.controller_address;
  o.plaintext = f.plaintext;
  o.tls_ca = f.tls_ca;
  o.tls_cert = f.tls_cert;
  o.tls_key = f.tls_key;
  o.node_name = nodeName(f);
  if (!startWaker()) return 1;
  o.on_state = [] { g_waker->wake(); };
  // Flow sync goes with VIP-sourced NAT: a node's flows can only be adopted
  // by another node if their replies follow the VIP.
  std::unique_ptr<FlowSync> flow_sync;
  if (local.snat.vip_source) {
    FlowSyncOptions fo;
    fo.table_entries = f.flow_sync_entries;
    fo.own_entries = f.flow_sync_entries;
    flow_sync = std::make_unique<FlowSync>(fo, f.queues);
    o.on_flow_sync = [fs = flow_sync.get()](const std::string& records, const std::string& origin,
                                            bool dump) {
      if (Status st = fs->applyRelayed(records, origin, monotonicMs()); !st) {
        spdlog::warn("event=flow_sync_refused origin=\"{}\" dump={} reason=\"{}\"", origin, dump,
                     st.message());
      }
    };
    o.on_flow_sync_dump = [](const std::string& for_node) {
      spdlog::info("event=flow_sync_dump_requested for_node=\"{}\"", for_node);
      g_flow_sync_dump.store(true);
      g_waker->wake();
    };
  }
  std::unique_ptr<CertificateBootstrap> bootstrap;  // outlives the link that uses it
  if (!f.bootstrap_token_file.empty()) {
    CertificateBootstrapOptions bo;
    bo.address = f.controller_address;
    bo.token_file = f.bootstrap_token_file;
    bo.node_name = o.node_name;
    if (auto ca = readFile(f.tls_ca)) bo.ca_pem = *ca;
    auto b = CertificateBootstrap::start(bo);
    if (!b) {
      spdlog::error("event=start reason=certificate_bootstrap msg=\"{}\"", b.error());
      return 2;
    }
    bootstrap = std::move(*b);
    o.client_identity = [b = bootstrap.get()] { return b->current(); };
  } else if (!o.plaintext && f.tls_cert.empty()) {
    spdlog::warn(
        "event=no_client_certificate msg=\"no --tls-cert or --bootstrap-token-file: a "
        "controller that authenticates agents (--tls-ca) will refuse this one\"");
  }
  auto link = ControllerLink::start(o, 0);
  if (!link) {
    spdlog::error("event=start reason=controller_link msg=\"{}\"", link.error());
    return 2;
  }
  spdlog::info("event=controller_link address={} node={} tls={}", o.address, o.node_name,
               !o.plaintext);
  spdlog::info("event=nat_source source={} flow_sync={}", f.nat_source, flow_sync ? "on" : "off");
  return runDatapath(f, local, std::move(*link), flow_sync.get());
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"flowlb-agent: forwards VIP traffic on this node (Maglev + conntrack)"};
  Flags f;
  addVersionFlag(app, "flowlb-agent");
  app.add_option("--config", f.config,
                 "Standalone configuration (YAML or JSON): virtual services, backends, SNAT")
      ->check(CLI::ExistingFile);
  app.add_flag("--check", f.check,
               "Load and validate --config, build the Maglev tables, print them and exit");
  app.add_option("--dry-run-flows", f.dry_run_flows,
                 "With --check: send N synthetic client flows per service through the "
                 "forwarding core (no interface is touched) and print where they went");
  app.add_option("--node-name", f.node_name, "This node's name (default: the host name)");
  app.add_option("--interface", f.interfaces,
                 "Interface to attach the XDP program to (repeatable). Default: the one carrying "
                 "--node-ip and the one carrying the default route");
  app.add_option("--xdp-mode", f.xdp_mode, "XDP attach mode")
      ->check(CLI::IsMember({"auto", "native", "generic"}));
  app.add_option("--bind-mode", f.bind_mode, "AF_XDP bind mode: auto tries zero-copy, then copy")
      ->check(CLI::IsMember({"auto", "zerocopy", "copy"}));
  app.add_option("--poll-mode", f.poll_mode,
                 "Workers: 'busy' polls without sleeping (one core each, lowest latency); "
                 "'wakeup' sleeps when idle")
      ->check(CLI::IsMember({"busy", "wakeup"}));
  app.add_flag("--xsk-busy-poll", f.xsk_busy_poll,
               "Set SO_PREFER_BUSY_POLL, SO_BUSY_POLL and SO_BUSY_POLL_BUDGET on the AF_XDP "
               "sockets, so the device queue is processed in the workers' system calls; a "
               "kernel that refuses them is logged (event=busy_poll_refused), not fatal");
  app.add_option("--cpus", f.cpus, "Comma-separated CPUs to pin workers to, in queue order")
      ->delimiter(',')
      ->check(cpuValidator());
  app.add_option("--queues", f.queues, "Receive queues (one worker each) per interface")
      ->check(CLI::Range(1, 16));
  app.add_option("--umem-frames", f.umem_frames, "4 KiB UMEM frames per worker")
      ->check(CLI::Range(1024u, 1u << 20));
  app.add_option("--bpf-object", f.bpf_object,
                 "The XDP object (default: flowlb_xdp_steer.o beside the binary, then "
                 "/usr/lib/flowlb/)");
  app.add_option("--nat-source", f.nat_source,
                 "Source address of NAT flows to backends: 'node' (this node's SNAT address) or "
                 "'vip' (the VIP itself: replies follow the VIP to whichever node announces it, "
                 "and NAT flows are shared with the other LB nodes through the controller so "
                 "they survive a VIP move; docs/flow-sync.md)")
      ->check(CLI::IsMember({"node", "vip"}));
  app.add_option("--flow-sync-entries", f.flow_sync_entries,
                 "With --nat-source=vip: other nodes' NAT flows this node can hold for adoption "
                 "(about 150 bytes each), and as many of its own for a dump")
      ->check(CLI::Range(size_t{1024}, size_t{1} << 24));
  app.add_option("--conntrack-entries", f.conntrack_entries,
                 "Connection tracking entries per worker (64 bytes each), fixed at start")
      ->check(CLI::Range(size_t{1024}, size_t{1} << 28));
  app.add_option("--kernel-path", f.kernel_path,
                 "Hand the kernel what the workers cannot transmit (backends on this node or "
                 "behind an overlay, frames no service claims) through the flowlb-snat/-keep/-pass "
                 "devices, and take their replies back (true/false)");
  app.add_option("--kernel-path-mark", f.kernel_path_mark,
                 "Packet/conntrack mark bit of kernel-path flows (the next bit asks for source "
                 "NAT); keep it clear of the marks your CNI and kube-proxy use")
      ->check(numberValidator(0x7fffffff));
  app.add_option("--kernel-path-table", f.kernel_path_table,
                 "Routing table that sends kernel-path replies back to the agent")
      ->check(CLI::Range(1u, 0xfffffff0u));
  app.add_option("--kernel-path-rule-priority", f.kernel_path_rule_priority,
                 "Priority of the policy rule for that table (before main, 32766)")
      ->check(CLI::Range(1u, 32765u));
  app.add_option("--state-dir", f.state_dir,
                 "Keep flow state (conntrack, SNAT ports, backend ids) in files here, on tmpfs "
                 "(e.g. /run/flowlb), so a restarted agent carries on with its flows; on exit the "
                 "rules that hold flows meanwhile stay for the next agent. Empty: in memory only");
  app.add_option("--max-vip-entries", f.max_vip_entries,
                 "Entries of the XDP program's VIP map (each VIP:port:protocol, plus one per VIP "
                 "for fragments and ICMP); services beyond it are refused with a reason")
      ->check(CLI::Range(64u, 1u << 22));
  app.add_option("--table-memory-mb", f.table_memory_mb,
                 "Memory budget for Maglev tables, MiB; services beyond it are refused with a "
                 "reason")
      ->check(CLI::Range(1u, 1u << 20));
  app.add_option("--previous-table-grace", f.previous_table_grace_s,
                 "Seconds a service's previous Maglev table is kept after it changes, to place "
                 "mid-flow packets that lost their state")
      ->check(CLI::Range(0u, 86400u));
  app.add_option("--health-max-targets", f.health_max_targets,
                 "Most backends this agent probes (health checks); more are refused with a log "
                 "line (event=health_targets_refused) and flowlb_agent_health_targets_refused")
      ->check(CLI::Range(1u, 1u << 22));
  app.add_option("--health-max-in-flight", f.health_max_in_flight,
                 "Most health probes open at once; the others wait their turn")
      ->check(CLI::Range(1u, 65536u));
  auto* ctl = app.add_option("--controller-address", f.controller_address,
                             "flowlb-controller gRPC address host:port: take the desired state "
                             "from the controller (instead of --config)")
                  ->check(hostPortValidator());
  auto* cert = app.add_option("--tls-cert", f.tls_cert,
                              "Client certificate for the controller link (PEM, mutual TLS)")
                   ->check(CLI::ExistingFile);
  auto* key =
      app.add_option("--tls-key", f.tls_key, "Client private key (PEM)")->check(CLI::ExistingFile);
  app.add_option("--tls-ca", f.tls_ca, "CA that signed the controller's certificate (PEM)")
      ->check(CLI::ExistingFile);
  cert->needs(key);
  key->needs(cert);
  app.add_option("--bootstrap-token-file", f.bootstrap_token_file,
                 "Get this node's client certificate from the controller (a new key at every "
                 "start, renewed before expiry), proving the node with this projected "
                 "ServiceAccount token (re-read each time; needs --tls-ca)")
      ->check(CLI::ExistingFile)
      ->excludes(cert)
      ->needs(app.get_option("--tls-ca"));
  app.add_flag("--plaintext", f.plaintext,
               "Talk to the controller without TLS (explicit opt-in; tests and labs only)");
  app.add_option("--node-ip", f.node_ips,
                 "This node's addresses (comma-separated or repeated; the chart passes "
                 "status.hostIPs). Without --interface, XDP goes on the interface carrying the "
                 "first one and on the default route's; they are the NAT sources of their family "
                 "unless --snat-ipv4/--snat-ipv6 say otherwise")
      ->delimiter(',');
  app.add_option("--snat-ipv4", f.snat_v4,
                 "With --controller-address: this node's IPv4 source address for NAT flows "
                 "(default: the IPv4 --node-ip, else the interface's)");
  app.add_option("--snat-ipv6", f.snat_v6,
                 "With --controller-address: this node's IPv6 source address for NAT flows "
                 "(default: the IPv6 --node-ip, else the interface's permanent global address)");
  app.add_option("--snat-ports", f.snat_ports, "Source ports for NAT flows, MIN-MAX");
  app.add_option("--announce-interface", f.announce_interfaces,
                 "With --controller-address: answer ARP/NDP on this interface for the VIPs the "
                 "controller has this node announce (repeatable; default: the interface carrying "
                 "--node-ip, else the first XDP interface)");
  ctl->excludes(app.get_option("--config"));
  app.add_option("--metrics-address", f.metrics_address,
                 "Listen address of /metrics, /healthz and /readyz (HOST:PORT; node-ip:PORT binds "
                 "to the first --node-ip)")
      ->check(hostPortValidator());
  app.add_option("--log-level", f.log_level, "Log level")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error"}));
  if (const int rc = parseCommandLine(app, argc, argv); rc >= 0) return rc;
  spdlog::set_level(spdlog::level::from_str(f.log_level));

  if (!f.controller_address.empty()) {
    if (f.check) {
      spdlog::error("event=start reason=usage msg=\"--check needs --config\"");
      return 2;
    }
    return runWithController(f);
  }
  if (f.config.empty()) {
    spdlog::error(
        "event=start reason=no_config msg=\"give --config FILE or --controller-address "
        "HOST:PORT\"");
    return 2;
  }
  auto cfg = loadAgentConfig(f.config);
  if (!cfg) {
    spdlog::error("event=config_rejected reason=invalid msg=\"{}\"", cfg.error());
    return 1;
  }
  BuildLimits limits;
  limits.max_steering_keys = f.max_vip_entries;
  limits.table_budget_bytes = size_t{f.table_memory_mb} << 20;
  SnapshotBuilder builder({}, limits);
  auto built = builder.build(cfg->desired, cfg->snat);
  if (!built) {
    spdlog::error("event=config_rejected reason=invalid msg=\"{}: {}\"", f.config, built.error());
    return 1;
  }
  if (!f.check) {
    if (f.nat_source == "vip" && !cfg->snat.vip_source) {
      spdlog::error(
          "event=start reason=usage msg=\"standalone, the file sets the NAT source: "
          "'snat: {{source: vip}}' (flow sync needs a controller)\"");
      return 2;
    }
    if (!resolveInterfaces(f, &*cfg, false)) return 2;
    if (!startWaker()) return 1;
    return runDatapath(f, *cfg, nullptr);
  }
  ApplyReport report;
  report.warnings = built->warnings;
  built->errors.insert(built->errors.end(), cfg->refused.begin(), cfg->refused.end());
  logApplyReport(report, built->errors);
  printSnapshot(*built->snapshot);
  for (const ServiceError& e : built->errors) {
    std::printf("  REFUSED %s (%s): %s\n", e.service.c_str(), applyErrorCodeName(e.code),
                e.message.c_str());
  }
  if (f.dry_run_flows > 0) dryRun(*built->snapshot, f.dry_run_flows, f.conntrack_entries);
  return built->errors.empty() ? 0 : 1;
}
