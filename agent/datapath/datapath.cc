#include "agent/datapath/datapath.h"

#include <malloc.h>
#include <net/if.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>

#include "common/file.h"

namespace flowlb::agent {
namespace {

// This boot's identity: conntrack timestamps are CLOCK_MONOTONIC, valid
// only within it.
std::string bootId() {
  auto id = readFile("/proc/sys/kernel/random/boot_id");
  std::string s = id ? *id : "";
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}

Status makeStateDir(const std::string& dir) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return Status::error("cannot create the state directory " + dir + ": " + ec.message());
  return Status::ok();
}

Status writeFileAtomically(const std::string& path, const std::string& bytes) {
  const std::string tmp = path + ".new";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    if (!out) return Status::error("cannot write " + tmp);
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) return Status::error("cannot rename " + tmp + ": " + ec.message());
  return Status::ok();
}

uint64_t nowMs() {
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                   std::chrono::steady_clock::now().time_since_epoch())
                                   .count());
}

}  // namespace

Result<std::unique_ptr<Datapath>> Datapath::start(const DatapathConfig& config) {
  std::unique_ptr<Datapath> dp(new Datapath());
  dp->config_ = config;
  if (config.interfaces.empty()) return Status::error("no --interface given");
  if (config.queues == 0 || config.queues > FLOWLB_XSK_MAX_QUEUES) {
    return Status::error("--queues must be 1.." + std::to_string(FLOWLB_XSK_MAX_QUEUES));
  }
  std::vector<Interface> ifaces;
  std::set<uint32_t> slots;
  for (const std::string& name : config.interfaces) {
    const unsigned idx = if_nametoindex(name.c_str());
    if (idx == 0) return Status::error("no interface named '" + name + "'");
    if (!slots.insert(XdpProgram::socketSlot(static_cast<int>(idx), 0)).second) {
      return Status::error("interface " + name + " shares an XSKMAP slot with another (ifindex " +
                           std::to_string(idx) + " modulo " +
                           std::to_string(FLOWLB_XSK_IFINDEX_SLOTS) + ")");
    }
    ifaces.push_back({name, static_cast<int>(idx)});
  }
  auto program = XdpProgram::load(config.bpf_object, ifaces, config.xdp_mode, config.snat_port_min,
                                  config.snat_port_max, config.max_vip_entries);
  if (!program) return program.status();
  dp->program_ = std::move(*program);
  BuildLimits limits = config.limits;
  limits.max_steering_keys = config.max_vip_entries;
  dp->builder_ = SnapshotBuilder({}, limits);
  const bool persist = !config.state_dir.empty();
  if (persist) {
    if (Status st = makeStateDir(config.state_dir); !st) return st;
    // Backend ids before anything else: adopted conntrack entries point at them.
    if (auto bytes = readFile(config.state_dir + "/backends")) {
      auto saved = decodeRegistry(*bytes);
      if (saved && dp->builder_.adoptRegistry(*saved)) {
        spdlog::info("event=state_adopted what=backend_ids slots={}", saved->size());
      } else {
        spdlog::warn("event=state_discarded what=backend_ids reason=\"{}\"",
                     saved ? "inconsistent" : saved.error());
        dp->adoption_.registry_discarded = true;
      }
    }
  }
  if (config.kernel_path) {
    KernelPathConfig kc = config.kernel;
    kc.queues = config.queues;
    kc.snat_port_min = config.snat_port_min;
    kc.snat_port_max = config.snat_port_max;
    kc.keep_on_exit = persist;
    if (config.snat.has_v4) kc.snat_addresses.push_back(config.snat.v4);
    if (config.snat.has_v6) kc.snat_addresses.push_back(config.snat.v6);
    // The kernel's own source NAT stays out of the ports our workers own.
    kc.masquerade_port_min = 1024;
    kc.masquerade_port_max = static_cast<uint16_t>(config.snat_port_min - 1);
    dp->snat_addresses_ = kc.snat_addresses;
    auto kernel = KernelPath::create(kc);
    if (!kernel) return Status::error("kernel exception path: " + kernel.error());
    dp->kernel_ = std::move(*kernel);
  }
  std::vector<int> attached;
  for (const Interface& i : ifaces) attached.push_back(i.ifindex);
  auto hops = KernelNextHops::create(config.queues, attached);
  if (!hops) return hops.status();
  dp->next_hops_ = std::move(*hops);
  dp->snapshots_ = std::make_unique<SnapshotPublisher>(config.queues);
  if (config.queues > 1) dp->handoffs_ = std::make_unique<HandoffMesh>(config.queues);

  for (uint32_t q = 0; q < config.queues; ++q) {
    Queue queue;
    auto umem = Umem::create(config.umem_frames);
    if (!umem) return umem.status();
    queue.umem = std::move(*umem);
    std::vector<XskSocket*> raw;
    for (size_t i = 0; i < ifaces.size(); ++i) {
      auto sock = XskSocket::create(*queue.umem, ifaces[i], q, config.bind_mode, i == 0,
                                    config.xsk_busy_poll);
      if (!sock) return sock.status();
      if (Status st = dp->program_->setSocket(ifaces[i].ifindex, q, (*sock)->fd()); !st) return st;
      raw.push_back(sock->get());
      queue.sockets.push_back(std::move(*sock));
    }
    WorkerConfig wc;
    wc.index = q;
    wc.queue = q;
    wc.busy_poll = config.busy_poll;
    wc.busy_poll_sockets = config.xsk_busy_poll;
    if (dp->handoffs_) wc.handoffs = dp->handoffs_->links(q);
    wc.cpu = q < config.cpus.size() ? config.cpus[q] : -1;
    wc.forwarder.conntrack_entries = config.conntrack_entries;
    wc.forwarder.worker = q;
    wc.forwarder.workers = config.queues;
    wc.forwarder.kernel_path = dp->kernel_ != nullptr;
    wc.forwarder.flow_sync = config.flow_sync;
    wc.forwarder.flow_export = q < config.flow_export.size() ? config.flow_export[q] : nullptr;
    if (dp->kernel_) wc.kernel = dp->kernel_->fds(q);
    wc.kernel_flow_sent_ms = &dp->kernel_flow_sent_ms_;
    std::unique_ptr<ConnTrack> ct;
    if (persist) {
      ConntrackOwner owner;
      owner.worker = q;
      owner.workers = config.queues;
      owner.snat_port_min = config.snat_port_min;
      owner.snat_port_max = config.snat_port_max;
      owner.boot_id = bootId();
      ConntrackAdoption a;
      const std::string path = config.state_dir + "/conntrack-" + std::to_string(q);
      auto opened = ConnTrack::openFile(path, config.conntrack_entries, wc.forwarder.conntrack_seed,
                                        owner, &a);
      if (!opened) return opened.status();
      ct = std::move(*opened);
      if (a.adopted) {
        spdlog::info("event=state_adopted what=conntrack worker={} entries={} discarded={}", q,
                     a.entries, a.discarded);
        dp->adoption_.entries += a.entries;
        dp->adoption_.entries_discarded += a.discarded;
      } else if (!a.why_not.empty()) {
        spdlog::warn("event=state_discarded what=conntrack worker={} reason=\"{}\"", q, a.why_not);
        ++dp->adoption_.tables_discarded;
      }
    } else {
      ct = std::make_unique<ConnTrack>(config.conntrack_entries, wc.forwarder.conntrack_seed);
    }
    queue.worker = std::make_unique<Worker>(wc, *queue.umem, raw, *dp->snapshots_, *dp->next_hops_,
                                            std::move(ct));
    dp->queues_.push_back(std::move(queue));
  }
  for (Queue& q : dp->queues_) {
    Worker* w = q.worker.get();
    q.thread = std::thread([w, stop = &dp->stop_] { w->run(*stop); });
  }
  return dp;
}

Datapath::~Datapath() {
  stop_.store(true);
  for (Queue& q : queues_) {
    if (q.thread.joinable()) q.thread.join();
  }
  // The devices go first, and with them the NAT VIPs local on flowlb-keep:
  // once the sockets are closed the program passes VIP frames to the kernel,
  // which answers a segment to a local address without a socket with a RST,
  // and that RST would cut a flow the next agent is about to adopt.
  kernel_.reset();   // devices; rules and nftables tables unless kept
  queues_.clear();   // sockets before their UMEM, both before the program
  program_.reset();  // detaches
}

Result<ApplyReport> Datapath::apply(const DesiredState& desired, const SnatConfig& snat) {
  if (snat.port_min < config_.snat_port_min || snat.port_max > config_.snat_port_max) {
    return Status::error(
        "SNAT ports " + std::to_string(snat.port_min) + "-" + std::to_string(snat.port_max) +
        " are outside the range the XDP program steers (" + std::to_string(config_.snat_port_min) +
        "-" + std::to_string(config_.snat_port_max) + "); restart the agent to change it");
  }
  auto outcome = builder_.prepare(desired, snat, nowMs());
  if (!outcome) return outcome.status();
  // Steer the new VIPs before the workers know them: a packet for a VIP the
  // workers do not know yet goes to the kernel, never to a wrong backend.
  const std::set<SteerKey> keys = steeringKeys(*outcome->snapshot);
  if (Status st = program_->syncVips(keys); !st) return st;  // rolled back: nothing changed
  if (kernel_) {
    // A DSR VIP stays foreign to this node: its backends' replies may be
    // routed through it, and the kernel drops packets from its own addresses.
    std::set<IpAddr> nat, dsr, vip_sources;
    for (const ServiceRuntime& s : outcome->snapshot->services) {
      (s.spec.mode == ForwardingMode::kDsr ? dsr : nat).insert(s.spec.vip);
      if (s.spec.mode == ForwardingMode::kNat && snat.vip_source && !s.spec.announced_by_bgp) {
        vip_sources.insert(s.spec.vip);
      }
    }
    std::vector<IpAddr> vips;
    for (const IpAddr& v : nat) {
      if (!dsr.count(v)) vips.push_back(v);
    }
    if (Status st = kernel_->syncVips(vips); !st) {
      // Forwarding is unaffected; only the kernel's answers for unused ports are.
      outcome->warnings.push_back(st.message());
    }
    // The SNAT addresses whose SNAT ports the kernel drops while no worker
    // steers them (an agent restarting or killed): the node's, and the VIPs
    // that are NAT sources (--nat-source=vip). Without the VIPs, a backend's
    // segment reaching a killed agent's node before the new announcer's ARP
    // would meet the still-local VIP and be answered with a RST, which cuts
    // the flow the new announcer is about to adopt.
    std::vector<IpAddr> addrs;
    if (snat.has_v4) addrs.push_back(snat.v4);
    if (snat.has_v6) addrs.push_back(snat.v6);
    for (const IpAddr& v : vip_sources) {
      if (!dsr.count(v)) addrs.push_back(v);
    }
    if (addrs != snat_addresses_) {
      if (Status st = kernel_->setSnatAddresses(addrs); !st) {
        outcome->warnings.push_back(st.message());
      } else {
        snat_addresses_ = std::move(addrs);
      }
    }
  }
  std::vector<TableFingerprint> tables;
  {
    std::map<std::string, const MaglevTable*> before;
    if (auto prev = snapshots_->current()) {
      for (const ServiceRuntime& s : prev->services) before[s.spec.name] = s.table.get();
    }
    for (const ServiceRuntime& s : outcome->snapshot->services) {
      TableFingerprint t;
      t.service = s.spec.name;
      t.fingerprint = s.table->fingerprint();
      t.size = s.table->size();
      for (uint32_t n : s.table->slotCounts()) t.backends_with_slots += n > 0 ? 1 : 0;
      const auto it = before.find(s.spec.name);
      t.built = it == before.end() || it->second != s.table.get();
      tables.push_back(std::move(t));
    }
  }
  builder_.commit(*outcome);
  saveRegistry();
  steering_keys_ = keys.size();
  snapshots_->publish(outcome->snapshot);
  // The backends' next hops are computed with each view of the routes, not
  // per packet (a packet to another address still scans the routes).
  std::vector<IpAddr> dsts;
  for (const BackendRuntime& b : outcome->snapshot->backends) {
    if (b.addr != IpAddr{}) dsts.push_back(b.addr);  // removed ones too: flows keep them
  }
  next_hops_->setDestinations(std::move(dsts));
  trim_pending_ = true;
  if (&desired != &desired_) desired_ = desired;
  if (&snat != &snat_) snat_ = snat;
  for (const std::string& d : outcome->drained) spdlog::info("event=drained backend=\"{}\"", d);
  ApplyReport report;
  report.generation = desired.generation;
  report.errors = std::move(outcome->errors);
  report.warnings = std::move(outcome->warnings);
  report.tables = std::move(tables);
  return report;
}

void Datapath::saveRegistry() {
  if (config_.state_dir.empty()) return;
  const std::string path = config_.state_dir + "/backends";
  if (Status st = writeFileAtomically(path, encodeRegistry(builder_.registry())); !st) {
    spdlog::warn("event=state_save_failed what=backend_ids msg=\"{}\"", st.message());
  }
}

void Datapath::poll(int timeout_ms, const std::vector<int>& also) {
  const uint64_t now = nowMs();
  const uint64_t deadline = builder_.nextDeadlineMs();
  if (deadline != UINT64_MAX) {
    timeout_ms = static_cast<int>(std::min<uint64_t>(static_cast<uint64_t>(std::max(timeout_ms, 0)),
                                                     deadline > now ? deadline - now : 0));
  }
  next_hops_->poll(timeout_ms, also);
  if (nowMs() >= builder_.nextDeadlineMs()) {  // a drain deadline, a previous table's end
    if (auto r = apply(desired_, snat_); !r) {
      spdlog::error("event=rebuild_failed msg=\"{}\"", r.error());
    }
  }
  if (snapshots_->reclaim() == 0 && trim_pending_) {
    // The replaced snapshot (and whatever parsing the state took) is free
    // now: give the pages back rather than keep the peak for good.
    malloc_trim(0);
    trim_pending_ = false;
  }
}

bool Datapath::interfaceUp(const std::string& name) const {
  return next_hops_->linkUp(name);
}

DatapathStatus Datapath::status() const {
  DatapathStatus st;
  st.attached = program_->attached();
  st.dispatcher = program_->dispatcherUsed();
  st.xdp_counters = program_->counters();
  for (const Queue& q : queues_) {
    st.workers.push_back(q.worker->report());
    for (const auto& s : q.sockets) {
      st.zero_copy = st.zero_copy || s->zeroCopy();
      st.sockets.emplace_back(s->iface().name + "/" + std::to_string(&q - queues_.data()),
                              s->stats());
    }
  }
  st.neighbor_misses = next_hops_->misses();
  st.neighbor_probes = next_hops_->probes();
  if (auto cur = snapshots_->current()) {
    st.generation = cur->generation;
    st.table_bytes = cur->tableBytes();
  }
  st.kernel_path = kernel_ != nullptr;
  st.local_vips = kernel_ ? kernel_->vipCount() : 0;
  st.steering_keys = steering_keys_;
  st.max_steering_keys = config_.max_vip_entries;
  st.adoption = adoption_;
  return st;
}

}  // namespace flowlb::agent
