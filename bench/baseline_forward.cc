// The limits of this machine for bench/run.sh datapath (root, lab only; not
// part of flowlb):
//   baseline_forward afxdp IN OUT SNAT_IP BACKEND_IP BACKEND_MAC SECONDS CPU
//     a minimal AF_XDP forwarder: the agent's own UMEM, rings, bind mode
//     (zero-copy, else copy) and kick loop (agent/datapath/xsk.h), busy-polling
//     CPU, with no load-balancing logic: every IPv4 UDP frame to port 53 that
//     arrives on IN gets the NAT rewrite to one fixed backend (addresses,
//     IPv4 checksum, MACs) and is sent out of OUT from the same UMEM.
//   baseline_forward xdp IN OUT VIP SNAT_IP BACKEND_IP BACKEND_MAC SECONDS
//     the same rewrite in an XDP program on IN (native mode), sent with
//     XDP_REDIRECT out of OUT: the in-kernel ceiling.
// Both print "forwarded N" when SECONDS have passed (or on SIGTERM).
#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <linux/if_link.h>
#include <net/if.h>
#include <pthread.h>
#include <sched.h>
#include <sys/socket.h>
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "agent/datapath/xsk.h"
#include "bench/bpf_counter.h"

namespace {

using flowlb::bench::readCounter;

using flowlb::agent::BindMode;
using flowlb::agent::FramePool;
using flowlb::agent::Interface;
using flowlb::agent::kFrameSize;
using flowlb::agent::kRingSize;
using flowlb::agent::Umem;
using flowlb::agent::XskSocket;

volatile sig_atomic_t g_stop = 0;
void onSignal(int) {
  g_stop = 1;
}

// The agent's figures (agent/datapath/worker.cc, datapath.h).
constexpr uint32_t kBurst = 64;
constexpr uint32_t kFillTarget = kRingSize / 2;
constexpr uint32_t kUmemFrames = 8192;

struct NatTarget {
  uint8_t snat[4], backend[4], src_mac[6], dst_mac[6];
};

std::string objectPath() {
  char exe[4096] = {};
  if (readlink("/proc/self/exe", exe, sizeof exe - 1) < 0) return "flowlb_bench_baseline.o";
  std::string dir(exe);
  return dir.substr(0, dir.rfind('/')) + "/flowlb_bench_baseline.o";
}

// The object's only read-only data: `struct nat_cfg` of baseline.bpf.c.
struct NatCfg {
  uint32_t vip, backend, snat, out_ifindex;
  uint8_t src_mac[6], dst_mac[6];
  uint16_t port, pad;
};

struct bpf_object* openObject(const NatCfg& nat) {
  struct bpf_object* obj = bpf_object__open_file(objectPath().c_str(), nullptr);
  if (libbpf_get_error(obj)) return nullptr;
  struct bpf_map* m = nullptr;
  bpf_object__for_each_map(m, obj) {
    const std::string name = bpf_map__name(m);
    if (name.size() > 7 && name.substr(name.size() - 7) == ".rodata") {
      size_t size = 0;
      bpf_map__initial_value(m, &size);
      if (size != sizeof nat) return nullptr;
      bpf_map__set_initial_value(m, &nat, sizeof nat);
    }
  }
  if (bpf_object__load(obj) != 0) return nullptr;
  return obj;
}

bool parseMac(const char* s, uint8_t* mac) {
  unsigned m[6];
  if (sscanf(s, "%x:%x:%x:%x:%x:%x", &m[0], &m[1], &m[2], &m[3], &m[4], &m[5]) != 6) return false;
  for (int i = 0; i < 6; ++i) mac[i] = static_cast<uint8_t>(m[i]);
  return true;
}

bool linkMac(const char* ifname, uint8_t* mac) {
  const std::string path = std::string("/sys/class/net/") + ifname + "/address";
  FILE* f = fopen(path.c_str(), "r");
  if (f == nullptr) return false;
  char buf[32] = {};
  const bool ok = fgets(buf, sizeof buf, f) != nullptr && parseMac(buf, mac);
  fclose(f);
  return ok;
}

// RFC 1624 incremental update of a checksum (network order) for a 32-bit
// word that changed.
uint16_t csumReplace4(uint16_t check, const uint8_t* from, const uint8_t* to) {
  uint32_t sum = static_cast<uint16_t>(~ntohs(check));
  for (int i = 0; i < 4; i += 2) {
    sum += static_cast<uint16_t>(~(from[i] << 8 | from[i + 1]));
    sum += static_cast<uint32_t>(to[i] << 8 | to[i + 1]);
  }
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return htons(static_cast<uint16_t>(~sum));
}

// The NAT rewrite, on a frame the steering program checked (IPv4, UDP).
void rewrite(uint8_t* f, const NatTarget& t) {
  std::memcpy(f, t.dst_mac, 6);
  std::memcpy(f + 6, t.src_mac, 6);
  uint8_t* ip = f + 14;
  uint16_t check;
  std::memcpy(&check, ip + 10, 2);
  check = csumReplace4(csumReplace4(check, ip + 12, t.snat), ip + 16, t.backend);
  uint16_t ucheck;
  std::memcpy(&ucheck, ip + 26, 2);
  if (ucheck != 0) {
    ucheck = csumReplace4(csumReplace4(ucheck, ip + 12, t.snat), ip + 16, t.backend);
    std::memcpy(ip + 26, &ucheck, 2);
  }
  std::memcpy(ip + 10, &check, 2);
  std::memcpy(ip + 12, t.snat, 4);
  std::memcpy(ip + 16, t.backend, 4);
}

// The agent's ring handling (agent/datapath/worker.cc), without its decisions.
class MinimalForwarder {
 public:
  MinimalForwarder(Umem& umem, XskSocket& in, XskSocket& out, const NatTarget& t)
      : umem_(umem), in_(in), out_(out), target_(t), pool_(umem.frames()) {}

  void refill(XskSocket& s) {
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

  void completions(XskSocket& s) {
    uint32_t idx = 0;
    const uint32_t done = xsk_ring_cons__peek(s.comp(), kRingSize, &idx);
    for (uint32_t i = 0; i < done; ++i) pool_.give(*xsk_ring_cons__comp_addr(s.comp(), idx + i));
    xsk_ring_cons__release(s.comp(), done);
    s.in_tx -= done;
  }

  void kick(XskSocket& s) {
    for (int round = 0; round < 16 && s.in_tx > 0; ++round) {
      if (s.zeroCopy() && !xsk_ring_prod__needs_wakeup(s.tx())) return;
      const uint32_t before = s.in_tx;
      sendto(s.fd(), nullptr, 0, MSG_DONTWAIT, nullptr, 0);
      completions(s);
      if (s.in_tx == before) return;
    }
  }

  // Frames from IN go out of OUT; anything arriving on OUT is recycled.
  void burst(XskSocket& s) {
    uint32_t idx = 0;
    const uint32_t n = xsk_ring_cons__peek(s.rx(), kBurst, &idx);
    if (n == 0) return;
    uint64_t addrs[kBurst];
    uint32_t lens[kBurst];
    for (uint32_t i = 0; i < n; ++i) {
      const struct xdp_desc* d = xsk_ring_cons__rx_desc(s.rx(), idx + i);
      addrs[i] = d->addr;
      lens[i] = d->len;
    }
    xsk_ring_cons__release(s.rx(), n);
    s.in_fill -= n;
    uint32_t sent = 0;
    if (&s == &in_) {
      uint32_t tx_idx = 0;
      sent = xsk_ring_prod__reserve(out_.tx(), n, &tx_idx);
      for (uint32_t i = 0; i < sent; ++i) {
        rewrite(umem_.data(addrs[i]), target_);
        struct xdp_desc* d = xsk_ring_prod__tx_desc(out_.tx(), tx_idx + i);
        d->addr = addrs[i];
        d->len = lens[i];
      }
      xsk_ring_prod__submit(out_.tx(), sent);
      out_.in_tx += sent;
      forwarded += sent;
    }
    for (uint32_t i = sent; i < n; ++i) pool_.give(addrs[i]);
  }

  void run() {
    XskSocket* socks[2] = {&in_, &out_};
    while (!g_stop) {
      for (XskSocket* s : socks) {
        completions(*s);
        refill(*s);
      }
      for (XskSocket* s : socks) burst(*s);
      for (XskSocket* s : socks) kick(*s);
    }
  }

  uint64_t forwarded = 0;

 private:
  Umem& umem_;
  XskSocket& in_;
  XskSocket& out_;
  NatTarget target_;
  FramePool pool_;
};

bool pin(int cpu) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  return pthread_setaffinity_np(pthread_self(), sizeof set, &set) == 0;
}

void stopAfter(const char* seconds) {
  signal(SIGTERM, onSignal);
  signal(SIGINT, onSignal);
  signal(SIGALRM, onSignal);
  alarm(static_cast<unsigned>(atoi(seconds)));
}

int afxdp(char** a) {
  const Interface in{a[0], static_cast<int>(if_nametoindex(a[0]))};
  const Interface out{a[1], static_cast<int>(if_nametoindex(a[1]))};
  NatTarget t{};
  if (in.ifindex == 0 || out.ifindex == 0 || inet_pton(AF_INET, a[2], t.snat) != 1 ||
      inet_pton(AF_INET, a[3], t.backend) != 1 || !parseMac(a[4], t.dst_mac) ||
      !linkMac(a[1], t.src_mac)) {
    fprintf(stderr, "bad interface, address or MAC\n");
    return 2;
  }
  auto umem = Umem::create(kUmemFrames);
  if (!umem) {
    fprintf(stderr, "%s\n", umem.error().c_str());
    return 1;
  }
  auto sin = XskSocket::create(**umem, in, 0, BindMode::kAuto, true);
  if (!sin) {
    fprintf(stderr, "%s\n", sin.error().c_str());
    return 1;
  }
  auto sout = XskSocket::create(**umem, out, 0, BindMode::kAuto, false);
  if (!sout) {
    fprintf(stderr, "%s\n", sout.error().c_str());
    return 1;
  }
  struct bpf_object* obj = openObject(NatCfg{});
  if (obj == nullptr) {
    fprintf(stderr, "cannot load %s\n", objectPath().c_str());
    return 1;
  }
  const int map = bpf_object__find_map_fd_by_name(obj, "xsks");
  const int prog = bpf_program__fd(bpf_object__find_program_by_name(obj, "flowlb_min_steer"));
  int rc = 0;
  std::vector<int> attached;
  for (const XskSocket* s : {sin->get(), sout->get()}) {
    const uint32_t key = static_cast<uint32_t>(s->iface().ifindex) % 1024;
    const int fd = s->fd();
    if (bpf_map_update_elem(map, &key, &fd, BPF_ANY) != 0 ||
        bpf_xdp_attach(s->iface().ifindex, prog, XDP_FLAGS_DRV_MODE, nullptr) != 0) {
      perror("steer");
      rc = 1;
      break;
    }
    attached.push_back(s->iface().ifindex);
  }
  if (rc == 0) {
    fprintf(stderr, "bound mode=%s tx_budget=%d\n", (*sin)->zeroCopy() ? "zerocopy" : "copy",
            (*sin)->txBudget());
    if (!pin(atoi(a[6]))) fprintf(stderr, "cannot pin to CPU %s\n", a[6]);
    MinimalForwarder fwd(**umem, **sin, **sout, t);
    stopAfter(a[5]);
    fwd.run();
    printf("forwarded %llu\n", static_cast<unsigned long long>(fwd.forwarded));
  }
  for (int ifindex : attached) bpf_xdp_detach(ifindex, XDP_FLAGS_DRV_MODE, nullptr);
  bpf_object__close(obj);
  return rc;
}

int xdp(char** a) {
  const int in = static_cast<int>(if_nametoindex(a[0]));
  NatCfg cfg{};
  cfg.out_ifindex = if_nametoindex(a[1]);
  cfg.port = htons(53);
  if (in == 0 || cfg.out_ifindex == 0 || inet_pton(AF_INET, a[2], &cfg.vip) != 1 ||
      inet_pton(AF_INET, a[3], &cfg.snat) != 1 || inet_pton(AF_INET, a[4], &cfg.backend) != 1 ||
      !parseMac(a[5], cfg.dst_mac) || !linkMac(a[1], cfg.src_mac)) {
    fprintf(stderr, "bad interface, address or MAC\n");
    return 2;
  }
  struct bpf_object* obj = openObject(cfg);
  if (obj == nullptr) {
    fprintf(stderr, "cannot load %s\n", objectPath().c_str());
    return 1;
  }
  const int prog = bpf_program__fd(bpf_object__find_program_by_name(obj, "flowlb_xdp_nat"));
  if (bpf_xdp_attach(in, prog, XDP_FLAGS_DRV_MODE, nullptr) != 0) {
    perror("attach");
    bpf_object__close(obj);
    return 1;
  }
  stopAfter(a[6]);
  while (!g_stop) pause();
  printf("forwarded %llu\n", static_cast<unsigned long long>(readCounter(obj)));
  bpf_xdp_detach(in, XDP_FLAGS_DRV_MODE, nullptr);
  bpf_object__close(obj);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc == 9 && std::string(argv[1]) == "afxdp") return afxdp(argv + 2);
  if (argc == 9 && std::string(argv[1]) == "xdp") return xdp(argv + 2);
  fprintf(stderr,
          "usage: baseline_forward afxdp IN OUT SNAT_IP BACKEND_IP BACKEND_MAC SECONDS CPU\n"
          "       baseline_forward xdp IN OUT VIP SNAT_IP BACKEND_IP BACKEND_MAC SECONDS\n");
  return 2;
}
