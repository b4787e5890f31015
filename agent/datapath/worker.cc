#include "agent/datapath/worker.h"

#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>
#include <ctime>

namespace flowlb::agent {
namespace {

constexpr uint32_t kBurst = 64;
constexpr uint32_t kFillTarget = kRingSize / 2;
// Passes of the loop that may skip reading an idle reply device: a busy
// loop pass takes about a microsecond, one with a full burst tens. While no
// kernel-path flow has sent anything for kKernelQuietMs (no pod on this
// node, no overlay backend in use), replies are rare (a backend speaking
// after a long silence) and the skip grows further: an empty read of the
// device took about 30 % of a busy worker in a profile of the DSR new-flow
// case.
constexpr uint32_t kMaxKernelSkip = 8;
constexpr uint32_t kMaxKernelSkipQuiet = 256;
constexpr uint32_t kKernelQuietMs = 1000;

// Milliseconds for conntrack ages and flush intervals. The coarse clock is
// read from the vDSO without touching the clock source (a few ms of
// resolution): on paravirtualised guests the precise one costs a large
// share of a busy-polling loop.
uint32_t nowMs() {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
  return static_cast<uint32_t>(static_cast<uint64_t>(ts.tv_sec) * 1000 +
                               static_cast<uint64_t>(ts.tv_nsec) / 1'000'000);
}

std::string backendName(const BackendRuntime& b) {
  return b.addr.withPort(b.port);
}

}  // namespace

Worker::Worker(const WorkerConfig& config, Umem& umem, std::vector<XskSocket*> sockets,
               SnapshotPublisher& snapshots, KernelNextHops& next_hops,
               std::unique_ptr<ConnTrack> conntrack)
    : config_(config),
      umem_(umem),
      sockets_(std::move(sockets)),
      snapshots_(snapshots),
      next_hops_(next_hops),
      forwarder_(config.forwarder, next_hops, std::move(conntrack)),
      pool_(umem.frames()) {
  if (config_.kernel_flow_sent_ms == nullptr)
    config_.kernel_flow_sent_ms = &own_kernel_flow_sent_ms_;
}

XskSocket* Worker::socketFor(uint32_t ifindex) {
  for (XskSocket* s : sockets_) {
    if (static_cast<uint32_t>(s->iface().ifindex) == ifindex) return s;
  }
  return nullptr;
}

void Worker::refill(XskSocket& s) {
  const uint32_t want = std::min<uint32_t>(static_cast<uint32_t>(pool_.size()),
                                           s.in_fill < kFillTarget ? kFillTarget - s.in_fill : 0);
  if (want == 0) return;
  uint32_t idx = 0;
  const uint32_t got = xsk_ring_prod__reserve(s.fill(), want, &idx);
  for (uint32_t i = 0; i < got; ++i) *xsk_ring_prod__fill_addr(s.fill(), idx + i) = pool_.take();
  xsk_ring_prod__submit(s.fill(), got);
  s.in_fill += got;
  if (got > 0 && xsk_ring_prod__needs_wakeup(s.fill())) {
    recvfrom(s.fd(), nullptr, 0, MSG_DONTWAIT, nullptr, nullptr);
  }
}

void Worker::completions(XskSocket& s) {
  uint32_t idx = 0;
  const uint32_t done = xsk_ring_cons__peek(s.comp(), kRingSize, &idx);
  for (uint32_t i = 0; i < done; ++i) pool_.give(*xsk_ring_cons__comp_addr(s.comp(), idx + i));
  xsk_ring_cons__release(s.comp(), done);
  s.in_tx -= done;
}

void Worker::kick(XskSocket& s) {
  // Copy mode transmits at most a budget of descriptors (32 by default) per
  // sendto: kick until the ring is drained, reaping completions between.
  for (int round = 0; round < 16 && s.in_tx > 0; ++round) {
    if (s.zeroCopy() && !xsk_ring_prod__needs_wakeup(s.tx())) return;
    const uint32_t before = s.in_tx;
    sendto(s.fd(), nullptr, 0, MSG_DONTWAIT, nullptr, 0);
    completions(s);
    if (s.in_tx == before) return;  // nothing moved: the device is busy, retry next pass
  }
}

void Worker::account(const Snapshot& snap, const Action& a, size_t len) {
  unflushed_ = true;
  const WorkerReport::Traffic one{1, len, a.new_flow ? 1u : 0u};
  if (a.service >= 0 && static_cast<size_t>(a.service) < service_counts_.size()) {
    service_counts_[static_cast<size_t>(a.service)] += one;
  }
  const uint32_t bi = a.backend & kBackendIndexMask;
  if (snap.backend(a.backend) != nullptr && bi < backend_counts_.size()) backend_counts_[bi] += one;
}

bool Worker::toKernel(const Action& a, const uint8_t* frame, size_t len) {
  const int fd = config_.kernel.forHandoff(a.handoff);
  // The kernel takes IP packets: the frame without its link-layer header.
  if (fd < 0 || a.l3 == 0 || a.l3 >= len) return false;
  if (write(fd, frame + a.l3, len - a.l3) < 0) return false;
  ++to_kernel_[static_cast<size_t>(a.handoff)];
  if (a.handoff == KernelHandoff::kFlowSnat || a.handoff == KernelHandoff::kFlowKeep) {
    // Its replies come back on the reply device. Stored only when the
    // coarse clock has moved: the line is shared by every worker.
    std::atomic<uint32_t>& sent = *config_.kernel_flow_sent_ms;
    if (sent.load(std::memory_order_relaxed) != now_ms_) {
      sent.store(now_ms_, std::memory_order_relaxed);
    }
  }
  return true;
}

bool Worker::dispatch(const Snapshot& snap, const Action& a, uint64_t addr, size_t len,
                      uint32_t origin, bool from_kernel) {
  if (a.len != 0) len = a.len;  // the decision grew the frame (a PROXY protocol header)
  if (a.kind == ActionKind::kHandOff) {
    // Copied: the frame is free again either way.
    HandoffRing* ring =
        a.worker < config_.handoffs.out.size() ? config_.handoffs.out[a.worker] : nullptr;
    if (ring != nullptr &&
        ring->push(umem_.data(addr), static_cast<uint32_t>(len), origin, from_kernel)) {
      ++handed_off_;
      bells_due_ |= uint64_t{1} << a.worker;
      unflushed_ = true;
    } else {
      ++handoff_ring_full_;
    }
    return false;
  }
  if (a.kind == ActionKind::kTransmit) {
    XskSocket* out = socketFor(a.ifindex);
    uint32_t tx_idx = 0;
    if (out != nullptr && xsk_ring_prod__reserve(out->tx(), 1, &tx_idx) == 1) {
      struct xdp_desc* d = xsk_ring_prod__tx_desc(out->tx(), tx_idx);
      d->addr = addr;
      d->len = static_cast<uint32_t>(len);
      xsk_ring_prod__submit(out->tx(), 1);
      ++out->in_tx;
      account(snap, a, len);
      return true;
    }
    ++tx_ring_full_;  // or an egress interface we do not serve
  } else if (a.kind == ActionKind::kPass) {
    // Copied into the kernel: the frame is free again either way.
    if (toKernel(a, umem_.data(addr), len)) {
      account(snap, a, len);
    } else {
      ++unhandled_;
    }
  }
  return false;
}

void Worker::handleBurst(XskSocket& s, const Snapshot& snap, uint32_t now_ms) {
  uint32_t idx = 0;
  const uint32_t n = xsk_ring_cons__peek(s.rx(), kBurst, &idx);
  if (n == 0) {
    // Busy polling: the system call runs the device queue's NAPI here.
    if (config_.busy_poll_sockets) recvfrom(s.fd(), nullptr, 0, MSG_DONTWAIT, nullptr, nullptr);
    return;
  }
  ++rx_batches_;
  uint64_t addrs[kBurst];
  Forwarder::Frame frames[kBurst];
  for (uint32_t i = 0; i < n; ++i) {
    const struct xdp_desc* d = xsk_ring_cons__rx_desc(s.rx(), idx + i);
    addrs[i] = d->addr;
    frames[i] = {umem_.data(d->addr), d->len, kFrameSize - d->addr % kFrameSize};
  }
  xsk_ring_cons__release(s.rx(), n);
  s.in_fill -= n;

  Action actions[kBurst];
  forwarder_.processBatch(frames, n, snap, now_ms, actions);
  for (uint32_t i = 0; i < n; ++i) {
    if (!dispatch(snap, actions[i], addrs[i], frames[i].len, config_.index, false)) {
      pool_.give(addrs[i]);
    }
  }
}

void Worker::handleKernelReplies(const Snapshot& snap, uint32_t now_ms) {
  if (config_.kernel.reply < 0) return;
  if (kernel_skip_ > 0) {
    --kernel_skip_;
    return;
  }
  constexpr size_t kEth = 14;
  for (uint32_t i = 0; i < kBurst && !pool_.empty(); ++i) {
    const uint64_t addr = pool_.take();
    uint8_t* frame = umem_.data(addr);
    const ssize_t got = read(config_.kernel.reply, frame + kEth, kFrameSize - kEth);
    if (got <= 0) {
      pool_.give(addr);
      if (i == 0) {  // idle: skip the next passes, more of them each time
        const bool quiet =
            now_ms - config_.kernel_flow_sent_ms->load(std::memory_order_relaxed) > kKernelQuietMs;
        kernel_backoff_ = std::min(quiet ? kMaxKernelSkipQuiet : kMaxKernelSkip,
                                   std::max(1u, kernel_backoff_ * 2));
        kernel_skip_ = kernel_backoff_;
      }
      return;  // EAGAIN: nothing more now
    }
    kernel_backoff_ = 0;
    if (i == 0) ++rx_batches_;
    // A link-layer header for the parser; the MACs are set on transmit.
    std::memset(frame, 0, 12);
    storeBe16(frame + 12, (frame[kEth] >> 4) == 6 ? kEthP_IPv6 : kEthP_IPv4);
    const size_t len = kEth + static_cast<size_t>(got);
    ++from_kernel_;
    Action a = forwarder_.processFromKernel(frame, len, snap, now_ms, kFrameSize);
    if (a.kind == ActionKind::kPass && a.handoff != KernelHandoff::kRouted) {
      a.kind = ActionKind::kDrop;  // never hand the kernel back what it gave us
    }
    if (!dispatch(snap, a, addr, len, config_.index, true)) pool_.give(addr);
  }
}

void Worker::handleHandoffs(const Snapshot& snap, uint32_t now_ms) {
  for (HandoffRing* ring : config_.handoffs.in) {
    // A frame waits in the ring while the pool is empty: back-pressure, not a drop.
    for (uint32_t i = 0; i < kBurst && !pool_.empty(); ++i) {
      const HandoffRing::Slot* s = ring->front();
      if (s == nullptr) break;
      if (i == 0) ++rx_batches_;
      const uint64_t addr = pool_.take();
      uint8_t* frame = umem_.data(addr);
      const size_t len = s->len;
      const uint32_t origin = s->origin;
      const bool from_kernel = s->from_kernel != 0;
      std::memcpy(frame, s->data, len);
      ring->pop();
      ++handoffs_received_;
      Action a =
          forwarder_.processHandedOff(frame, len, snap, now_ms, kFrameSize, origin, from_kernel);
      if (from_kernel && a.kind == ActionKind::kPass && a.handoff != KernelHandoff::kRouted) {
        a.kind = ActionKind::kDrop;  // never hand the kernel back what it gave us
      }
      if (!dispatch(snap, a, addr, len, origin, from_kernel)) pool_.give(addr);
    }
  }
}

void Worker::ringBells() {
  for (uint32_t w = 0; bells_due_ != 0; ++w, bells_due_ >>= 1) {
    if ((bells_due_ & 1) != 0 && w < config_.handoffs.bells.size()) {
      config_.handoffs.bells[w]->ring();
    }
  }
}

bool Worker::handoffsWaiting() const {
  for (const HandoffRing* ring : config_.handoffs.in) {
    if (!ring->empty()) return true;
  }
  return false;
}

void Worker::flush(const Snapshot* snap) {
  unflushed_ = false;
  std::lock_guard<std::mutex> lock(report_mu_);
  if (snap != nullptr) {
    for (size_t i = 0; i < service_counts_.size() && i < snap->services.size(); ++i) {
      report_.services[snap->services[i].spec.name] += service_counts_[i];
    }
    for (size_t i = 0; i < backend_counts_.size() && i < snap->backends.size(); ++i) {
      if (backend_counts_[i].packets != 0) {
        report_.backends[backendName(snap->backends[i])] += backend_counts_[i];
      }
    }
  }
  std::fill(service_counts_.begin(), service_counts_.end(), WorkerReport::Traffic{});
  std::fill(backend_counts_.begin(), backend_counts_.end(), WorkerReport::Traffic{});
  report_.forwarder = forwarder_.stats();
  report_.conntrack = forwarder_.conntrack().stats();
  report_.conntrack_entries = forwarder_.conntrack().size();
  report_.conntrack_capacity = forwarder_.conntrack().capacity();
  report_.tx_ring_full = tx_ring_full_;
  report_.unhandled = unhandled_;
  report_.to_kernel = to_kernel_;
  report_.from_kernel = from_kernel_;
  report_.rx_batches = rx_batches_;
  report_.handed_off = handed_off_;
  report_.handoff_ring_full = handoff_ring_full_;
  report_.handoffs_received = handoffs_received_;
  size_t in_fill = 0, in_tx = 0;
  for (const XskSocket* s : sockets_) {
    in_fill += s->in_fill;
    in_tx += s->in_tx;
  }
  report_.frames_free = pool_.size() + in_fill;
  report_.frames_in_tx = in_tx;
  report_.frames_total = umem_.frames();
}

WorkerReport Worker::report() const {
  std::lock_guard<std::mutex> lock(report_mu_);
  return report_;
}

void Worker::run(const std::atomic<bool>& stop) {
  if (config_.cpu >= 0) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(config_.cpu, &set);
    if (pthread_setaffinity_np(pthread_self(), sizeof set, &set) != 0) {
      spdlog::warn("event=cpu_pin_failed worker={} cpu={}", config_.index, config_.cpu);
    }
  }
  std::vector<struct pollfd> fds;
  for (XskSocket* s : sockets_) fds.push_back({s->fd(), POLLIN, 0});
  if (config_.kernel.reply >= 0) fds.push_back({config_.kernel.reply, POLLIN, 0});
  Doorbell* bell = config_.handoffs.bell;
  if (bell != nullptr) fds.push_back({bell->fd(), POLLIN, 0});
  const Snapshot* current = nullptr;
  uint32_t last_flush = nowMs();
  snapshots_.quiescent(config_.index);
  next_hops_.quiescent(config_.index);
  while (!stop.load(std::memory_order_relaxed)) {
    const Snapshot* snap = snapshots_.acquire();
    const uint32_t now = nowMs();
    now_ms_ = now;
    if (snap != current) {  // counts of the old one were flushed before it could go
      current = snap;
      if (snap != nullptr) {
        service_counts_.assign(snap->services.size(), {});
        backend_counts_.assign(snap->backends.size(), {});
      }
    }
    const uint64_t batches_before = rx_batches_;
    for (XskSocket* s : sockets_) {
      completions(*s);
      refill(*s);
    }
    if (snap != nullptr) {
      for (XskSocket* s : sockets_) handleBurst(*s, *snap, now);
      handleKernelReplies(*snap, now);
      handleHandoffs(*snap, now);
    }
    if (bells_due_ != 0) ringBells();
    for (XskSocket* s : sockets_) kick(*s);
    // Flush while `current` is still protected: before reporting
    // quiescence, when a new snapshot is out (the old one may be freed
    // after that) or every 250 ms.
    const bool worked = rx_batches_ != batches_before;
    const bool sleeping_next = !worked && !config_.busy_poll;
    if (snapshots_.acquire() != current || now - last_flush >= 250 ||
        (sleeping_next && unflushed_)) {
      flush(current);
      last_flush = now;
      forwarder_.conntrack().sweepPaced(now);  // busy or not, dead flows go
    }
    snapshots_.quiescent(config_.index);
    next_hops_.quiescent(config_.index);
    if (worked || config_.busy_poll) continue;

    // Idle: expire a slice of conntrack, then sleep until a socket has
    // frames (holding no RCU-protected object meanwhile).
    forwarder_.conntrack().sweep(now, 256);
    bool tx_pending = false;
    for (const XskSocket* s : sockets_) tx_pending = tx_pending || s->in_tx > 0;
    snapshots_.offline(config_.index);
    next_hops_.offline(config_.index);
    // Announce the sleep, then look once more: a frame handed to this
    // worker in between is seen here, or its producer sees the announcement
    // and rings.
    if (bell != nullptr) bell->sleeping(true);
    const bool sleep = bell == nullptr || !handoffsWaiting();
    if (sleep) ::poll(fds.data(), fds.size(), tx_pending ? 1 : 20);
    if (bell != nullptr) {
      bell->sleeping(false);
      if (sleep && (fds.back().revents & POLLIN) != 0) bell->clear();
    }
    const size_t reply_fd = fds.size() - (bell != nullptr ? 2 : 1);
    if (sleep && config_.kernel.reply >= 0 && (fds[reply_fd].revents & POLLIN) != 0) {
      kernel_skip_ = 0;
    }
    snapshots_.quiescent(config_.index);
    next_hops_.quiescent(config_.index);
  }
  snapshots_.offline(config_.index);
  next_hops_.offline(config_.index);
}

}  // namespace flowlb::agent
