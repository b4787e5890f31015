#include "agent/datapath/xsk.h"

#include <linux/if_xdp.h>
#include <spdlog/spdlog.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>

#include <cstring>
#include <utility>

namespace flowlb::agent {
namespace {

constexpr int kXdpMaxTxSkbBudget = 9;  // linux/if_xdp.h, 6.17+
constexpr int kTxBudget = 256;
// Socket busy polling (include/uapi/asm-generic/socket.h; glibc may lack
// the newer names).
constexpr int kSoBusyPoll = 46;
constexpr int kSoPreferBusyPoll = 69;
constexpr int kSoBusyPollBudget = 70;
constexpr int kBusyPollUsecs = 20;
constexpr int kBusyPollBudget = 64;  // the worker's RX burst

// Sets the busy-poll options; false (after a warning naming the option the
// kernel refused and why) when any is refused.
bool setBusyPoll(int fd, const std::string& iface) {
  const std::pair<const char*, std::pair<int, int>> opts[] = {
      {"SO_PREFER_BUSY_POLL", {kSoPreferBusyPoll, 1}},
      {"SO_BUSY_POLL", {kSoBusyPoll, kBusyPollUsecs}},
      {"SO_BUSY_POLL_BUDGET", {kSoBusyPollBudget, kBusyPollBudget}}};
  bool all = true;
  for (const auto& [name, opt] : opts) {
    const int value = opt.second;
    if (setsockopt(fd, SOL_SOCKET, opt.first, &value, sizeof value) != 0) {
      spdlog::warn(
          "event=busy_poll_refused iface={} option={} reason=\"{}\" msg=\"the socket works "
          "without it: the kernel runs the queue in softirq as usual\"",
          iface, name, std::strerror(errno));
      all = false;
    }
  }
  return all;
}

}  // namespace

Result<std::unique_ptr<Umem>> Umem::create(uint32_t frames) {
  // UMEM pages are charged to RLIMIT_MEMLOCK unless we hold CAP_IPC_LOCK
  // (root does). Raising the limit may fail in a container: not fatal.
  struct rlimit unlimited = {RLIM_INFINITY, RLIM_INFINITY};
  if (setrlimit(RLIMIT_MEMLOCK, &unlimited) != 0) {
    spdlog::warn(
        "event=memlock_limit reason=\"{}\" msg=\"UMEM needs CAP_IPC_LOCK or a large "
        "RLIMIT_MEMLOCK\"",
        std::strerror(errno));
  }
  std::unique_ptr<Umem> u(new Umem());
  u->frames_ = frames;
  u->size_ = size_t{frames} * kFrameSize;
  u->area_ = mmap(nullptr, u->size_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (u->area_ == MAP_FAILED) {
    u->area_ = nullptr;
    return Status::error(std::string("cannot map UMEM: ") + std::strerror(errno));
  }
  struct xsk_umem_config cfg = {};
  cfg.fill_size = kRingSize;
  cfg.comp_size = kRingSize;
  cfg.frame_size = kFrameSize;
  cfg.frame_headroom = 0;
  cfg.flags = 0;
  const int rc = xsk_umem__create(&u->umem_, u->area_, u->size_, &u->fill_, &u->comp_, &cfg);
  if (rc != 0) return Status::error(std::string("cannot create UMEM: ") + std::strerror(-rc));
  return u;
}

Umem::~Umem() {
  if (umem_ != nullptr) xsk_umem__delete(umem_);
  if (area_ != nullptr) munmap(area_, size_);
}

Result<std::unique_ptr<XskSocket>> XskSocket::create(Umem& umem, const Interface& iface,
                                                     uint32_t queue, BindMode mode, bool first,
                                                     bool busy_poll) {
  std::unique_ptr<XskSocket> s(new XskSocket());
  s->iface_ = iface;
  s->fill_ = first ? umem.firstFill() : &s->own_fill_;
  s->comp_ = first ? umem.firstComp() : &s->own_comp_;
  int rc = -1;
  for (const bool zc : {true, false}) {
    if ((zc && mode == BindMode::kCopy) || (!zc && mode == BindMode::kZeroCopy)) continue;
    struct xsk_socket_config cfg = {};
    cfg.rx_size = kRingSize;
    cfg.tx_size = kRingSize;
    cfg.libxdp_flags = XSK_LIBXDP_FLAGS__INHIBIT_PROG_LOAD;  // our program, our map
    cfg.bind_flags = static_cast<uint16_t>(XDP_USE_NEED_WAKEUP | (zc ? XDP_ZEROCOPY : XDP_COPY));
    rc = xsk_socket__create_shared(&s->xsk_, iface.name.c_str(), queue, umem.handle(), &s->rx_,
                                   &s->tx_, s->fill_, s->comp_, &cfg);
    if (rc == 0) {
      // A socket sharing a UMEM inherits its mode: ask the kernel.
      struct xdp_options opts = {};
      socklen_t len = sizeof opts;
      s->zero_copy_ = getsockopt(xsk_socket__fd(s->xsk_), SOL_XDP, XDP_OPTIONS, &opts, &len) == 0
                          ? (opts.flags & XDP_OPTIONS_ZEROCOPY) != 0
                          : zc;
      break;
    }
    spdlog::info("event=xsk_bind_failed iface={} mode={} reason=\"{}\"", iface.name,
                 zc ? "zerocopy" : "copy", std::strerror(-rc));
  }
  if (rc != 0) {
    return Status::error("cannot bind an AF_XDP socket to " + iface.name + " queue " +
                         std::to_string(queue) + ": " + std::strerror(-rc));
  }
  if (!s->zero_copy_) {
    // Copy mode sends at most XDP_MAX_TX_SKB_BUDGET (32 by default)
    // descriptors per sendto; system calls are dear, so ask for more where
    // the kernel has the option (6.17+). Older kernels refuse: not fatal.
    const int budget = kTxBudget;
    if (setsockopt(s->fd(), SOL_XDP, kXdpMaxTxSkbBudget, &budget, sizeof budget) == 0) {
      s->tx_budget_ = budget;
    }
  }
  if (busy_poll) s->busy_poll_ = setBusyPoll(s->fd(), iface.name);
  spdlog::info("event=xsk_bound iface={} queue={} mode={} tx_budget={} busy_poll={}", iface.name,
               queue, s->zero_copy_ ? "zerocopy" : "copy", s->tx_budget_, s->busy_poll_);
  return s;
}

XskSocket::~XskSocket() {
  if (xsk_ != nullptr) xsk_socket__delete(xsk_);
}

XskSocket::Stats XskSocket::stats() const {
  struct xdp_statistics st = {};
  socklen_t len = sizeof st;
  Stats out;
  if (getsockopt(fd(), SOL_XDP, XDP_STATISTICS, &st, &len) == 0) {
    out.rx_dropped = st.rx_dropped;
    out.rx_invalid = st.rx_invalid_descs;
    out.tx_invalid = st.tx_invalid_descs;
    out.rx_ring_full = st.rx_ring_full;
    out.fill_ring_empty = st.rx_fill_ring_empty_descs;
    out.tx_ring_empty = st.tx_ring_empty_descs;
  }
  return out;
}

}  // namespace flowlb::agent
