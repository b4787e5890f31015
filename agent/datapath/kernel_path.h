// The kernel exception path (rule 9 of docs/architecture.md): what the AF_XDP workers
// cannot transmit themselves goes to the kernel, and the replies of the
// flows they sent that way come back to them. See docs/datapath.md for the
// drawing.
//
// Three TUN devices owned by the agent, one queue per worker:
//   flowlb-snat  NAT flows to a backend behind the kernel (a pod on this
//                node, a pod behind an overlay, a local address): the worker
//                rewrites the destination; the kernel masquerades the source
//                (ports outside the agent's SNAT range) and routes.
//   flowlb-keep  the same for externalTrafficPolicy: Local (the backend sees
//                the client's address).
//   flowlb-pass  frames no service claims, and rewritten frames whose next
//                hop is behind the kernel: routed as if received.
// The kernel's conntrack marks the flows entering from flowlb-snat and
// flowlb-keep (ct mark); a reply of such a flow gets the mark as its fwmark
// (prerouting, and output for local backends), and a policy rule sends it to
// a table whose default route is flowlb-snat, where the worker reads it.
// VIPs are local addresses on flowlb-keep (so the kernel answers what no
// service claims, e.g. a RST for an unused port), and the kernel's own ARP
// answers for them are suppressed (the announcer decides who answers).
//
// Everything is created idempotently (leftovers of a crashed or restarted
// agent are replaced in one transaction) and removed on destruction, unless
// config.keep_on_exit asks to hold flows for the next agent; the devices
// vanish with the process either way.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "agent/bpf/flowlb_abi.h"
#include "agent/lb/forwarder.h"
#include "common/ip_addr.h"
#include "common/status.h"
#include "common/unique_fd.h"

namespace flowlb::agent {

struct KernelPathConfig {
  uint32_t queues = 1;
  uint32_t mtu = 1500;
  // Two adjacent conntrack/packet mark bits: the lower marks a kernel-path
  // flow (and routes its replies), the upper asks for source NAT. Keep them
  // clear of kube-proxy's (0xc000), Cilium's (0x0f00) and Calico's (upper 16).
  uint32_t mark = 0x1000;
  uint32_t table = 61707;         // routing table of the reply route
  uint32_t rule_priority = 3300;  // before "main" (32766)
  // The kernel's own source NAT uses these ports, outside the agent's.
  uint16_t masquerade_port_min = 1024;
  uint16_t masquerade_port_max = 60999;
  // The agent's own SNAT ports: while no worker steers them (an agent
  // restarting), the kernel drops what arrives for them instead of
  // answering with a RST that would end the flow.
  uint16_t snat_port_min = FLOWLB_SNAT_PORT_MIN_DEFAULT;
  uint16_t snat_port_max = FLOWLB_SNAT_PORT_MAX_DEFAULT;
  std::vector<IpAddr> snat_addresses;
  // On exit, leave the rules that hold flows through a restart (the SNAT
  // port drop, the drop of kernel-path replies while no agent reads them,
  // the reply rule) for the next agent, which replaces them. Off: remove
  // everything.
  bool keep_on_exit = false;
};

class KernelPath {
 public:
  static Result<std::unique_ptr<KernelPath>> create(const KernelPathConfig& config);
  ~KernelPath();
  KernelPath(const KernelPath&) = delete;
  KernelPath& operator=(const KernelPath&) = delete;

  // The descriptors of worker `queue` (non-blocking): where a handoff is
  // written, and where replies are read.
  struct QueueFds {
    int snat = -1, keep = -1, pass = -1;
    int reply = -1;  // == snat: replies are routed to flowlb-snat
    int forHandoff(KernelHandoff h) const {
      return h == KernelHandoff::kFlowSnat ? snat : h == KernelHandoff::kFlowKeep ? keep : pass;
    }
  };
  QueueFds fds(uint32_t queue) const { return fds_.at(queue); }

  // Makes the VIPs local addresses (and keeps the kernel from answering ARP
  // for them); the previous set is replaced. Errors are per address and do
  // not stop the others.
  Status syncVips(const std::vector<IpAddr>& vips);
  // The SNAT addresses whose SNAT ports are dropped while no agent runs:
  // the node's, and the VIPs that are NAT sources (--nat-source=vip).
  Status setSnatAddresses(const std::vector<IpAddr>& addrs);
  size_t vipCount() const { return vips_.size(); }

  static constexpr const char* kSnatDevice = "flowlb-snat";
  static constexpr const char* kKeepDevice = "flowlb-keep";
  static constexpr const char* kPassDevice = "flowlb-pass";

 private:
  explicit KernelPath(const KernelPathConfig& c) : config_(c) {}
  Status setUp();
  void tearDown();

  KernelPathConfig config_;
  std::vector<QueueFds> fds_;
  std::vector<UniqueFd> all_fds_;  // owns what fds_ names
  int keep_ifindex_ = 0;
  int snat_ifindex_ = 0;
  std::vector<IpAddr> vips_;
  std::vector<IpAddr> snat_;
};

}  // namespace flowlb::agent
