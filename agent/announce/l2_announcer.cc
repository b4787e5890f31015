#include "agent/announce/l2_announcer.h"

#include <arpa/inet.h>
#include <linux/filter.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <poll.h>
#include <spdlog/spdlog.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstring>

#include "agent/packet/checksum.h"
#include "agent/packet/packet.h"

namespace flowlb::agent {
namespace l2 {
namespace {

constexpr std::array<uint8_t, 6> kBroadcast = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff};

void put(std::vector<uint8_t>& f, size_t at, const uint8_t* p, size_t n) {
  std::memcpy(&f[at], p, n);
}

std::vector<uint8_t> arp(uint16_t op, const std::array<uint8_t, 6>& eth_dst,
                         const std::array<uint8_t, 6>& sha, const IpAddr& spa,
                         const std::array<uint8_t, 6>& tha, const IpAddr& tpa) {
  std::vector<uint8_t> f(60, 0);  // minimum Ethernet frame
  put(f, 0, eth_dst.data(), 6);
  put(f, 6, sha.data(), 6);
  storeBe16(&f[12], kEthP_ARP);
  storeBe16(&f[14], 1);  // Ethernet
  storeBe16(&f[16], kEthP_IPv4);
  f[18] = 6;
  f[19] = 4;
  storeBe16(&f[20], op);
  put(f, 22, sha.data(), 6);
  put(f, 28, spa.v4(), 4);
  put(f, 32, tha.data(), 6);
  put(f, 38, tpa.v4(), 4);
  return f;
}

}  // namespace

std::vector<uint8_t> arpReply(const std::array<uint8_t, 6>& our_mac, const IpAddr& vip,
                              const std::array<uint8_t, 6>& peer_mac, const IpAddr& peer_ip) {
  return arp(2, peer_mac, our_mac, vip, peer_mac, peer_ip);
}

std::vector<uint8_t> gratuitousArp(const std::array<uint8_t, 6>& our_mac, const IpAddr& vip) {
  return arp(1, kBroadcast, our_mac, vip, std::array<uint8_t, 6>{}, vip);
}

std::vector<uint8_t> neighborAdvert(const std::array<uint8_t, 6>& our_mac, const IpAddr& vip,
                                    const std::array<uint8_t, 6>& dst_mac, const IpAddr& dst_ip,
                                    bool solicited) {
  std::vector<uint8_t> f(14 + 40 + 32, 0);
  put(f, 0, dst_mac.data(), 6);
  put(f, 6, our_mac.data(), 6);
  storeBe16(&f[12], kEthP_IPv6);
  f[14] = 0x60;
  storeBe16(&f[18], 32);
  f[20] = kProtoICMPv6;
  f[21] = 255;  // NDP requires hop limit 255
  put(f, 22, vip.bytes.data(), 16);
  put(f, 38, dst_ip.bytes.data(), 16);
  uint8_t* icmp = &f[54];
  icmp[0] = 136;                                // Neighbor Advertisement
  icmp[4] = solicited ? 0x60 : 0x20;            // S|O or O
  std::memcpy(icmp + 8, vip.bytes.data(), 16);  // target
  icmp[24] = 2;                                 // option: target link-layer address
  icmp[25] = 1;
  std::memcpy(icmp + 26, our_mac.data(), 6);
  L3L4 l;
  l.l3 = 14;
  l.l4 = 54;
  l.l4_len = 32;
  l.v4 = false;
  l.has_l4 = true;
  FlowTuple t{vip, dst_ip, 0, 0, kProtoICMPv6};
  storeBe16(icmp + 2, l4Checksum(f.data(), l, t));
  return f;
}

bool parseQuestion(const uint8_t* frame, size_t len, Question* q) {
  if (len < 14) return false;
  const uint16_t type = loadBe16(frame + 12);
  if (type == kEthP_ARP) {
    if (len < 42 || loadBe16(frame + 14) != 1 || loadBe16(frame + 16) != kEthP_IPv4 ||
        frame[18] != 6 || frame[19] != 4 || loadBe16(frame + 20) != 1) {
      return false;
    }
    q->v6 = false;
    std::memcpy(q->asker_mac.data(), frame + 22, 6);
    q->asker = IpAddr::fromV4(frame + 28);
    q->target = IpAddr::fromV4(frame + 38);
    return true;
  }
  if (type != kEthP_IPv6 || len < 14 + 40 + 24) return false;
  const uint8_t* ip = frame + 14;
  if ((ip[0] >> 4) != 6 || ip[6] != kProtoICMPv6 || ip[7] != 255) return false;
  const uint8_t* icmp = ip + 40;
  if (icmp[0] != 135 || icmp[1] != 0) return false;  // Neighbor Solicitation
  q->v6 = true;
  q->asker = IpAddr::fromV6(ip + 8);
  q->target = IpAddr::fromV6(icmp + 8);
  std::memcpy(q->asker_mac.data(), frame + 6, 6);
  // A source link-layer address option, when present, names the asker.
  const size_t payload = std::min<size_t>(loadBe16(ip + 4), len - 54);
  for (size_t off = 24; off + 8 <= payload;) {
    const uint8_t opt = icmp[off], units = icmp[off + 1];
    if (units == 0) break;
    if (opt == 1 && units == 1) std::memcpy(q->asker_mac.data(), icmp + off + 2, 6);
    off += size_t{units} * 8;
  }
  return true;
}

}  // namespace l2

Result<std::unique_ptr<L2Announcer>> L2Announcer::start(
    const std::vector<std::string>& interfaces) {
  std::unique_ptr<L2Announcer> a(new L2Announcer());
  // ARP, and IPv6 ICMPv6 type 135 (Neighbor Solicitation) without extension headers.
  static struct sock_filter code[] = {
      BPF_STMT(BPF_LD | BPF_H | BPF_ABS, 12),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, ETHERTYPE_ARP, 5, 0),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, ETHERTYPE_IPV6, 0, 5),
      BPF_STMT(BPF_LD | BPF_B | BPF_ABS, 20),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 58, 0, 3),
      BPF_STMT(BPF_LD | BPF_B | BPF_ABS, 54),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 135, 0, 1),
      BPF_STMT(BPF_RET | BPF_K, 0xffff),
      BPF_STMT(BPF_RET | BPF_K, 0),
  };
  struct sock_fprog prog = {static_cast<unsigned short>(std::size(code)), code};
  for (const std::string& name : interfaces) {
    Iface i;
    i.name = name;
    i.ifindex = static_cast<int>(if_nametoindex(name.c_str()));
    if (i.ifindex == 0) return Status::error("announce: no interface named '" + name + "'");
    i.fd.reset(socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, htons(ETH_P_ALL)));
    if (!i.fd.valid())
      return Status::error(std::string("announce: raw socket: ") + std::strerror(errno));
    a->ifaces_.push_back(std::move(i));
    Iface& added = a->ifaces_.back();
    struct ifreq ifr {};
    std::strncpy(ifr.ifr_name, name.c_str(), IFNAMSIZ - 1);
    if (ioctl(added.fd.get(), SIOCGIFHWADDR, &ifr) != 0) {
      return Status::error("announce: cannot read the MAC of " + name);
    }
    std::memcpy(added.mac.data(), ifr.ifr_hwaddr.sa_data, 6);
    if (setsockopt(added.fd.get(), SOL_SOCKET, SO_ATTACH_FILTER, &prog, sizeof prog) != 0) {
      return Status::error(std::string("announce: filter: ") + std::strerror(errno));
    }
    struct sockaddr_ll sll {};
    sll.sll_family = AF_PACKET;
    sll.sll_protocol = htons(ETH_P_ALL);
    sll.sll_ifindex = added.ifindex;
    if (bind(added.fd.get(), reinterpret_cast<sockaddr*>(&sll), sizeof sll) != 0) {
      return Status::error("announce: cannot bind to " + name + ": " + std::strerror(errno));
    }
    spdlog::info("event=announcer_ready iface={} mac={:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
                 name, added.mac[0], added.mac[1], added.mac[2], added.mac[3], added.mac[4],
                 added.mac[5]);
  }
  a->thread_ = std::thread([p = a.get()] { p->run(); });
  return a;
}

L2Announcer::~L2Announcer() {
  stop_.store(true);
  if (thread_.joinable()) thread_.join();
}

void L2Announcer::setVips(const std::vector<IpAddr>& vips) {
  std::lock_guard<std::mutex> lock(mu_);
  std::set<IpAddr> next(vips.begin(), vips.end());
  for (const IpAddr& v : next) {
    if (!vips_.count(v)) pending_.emplace_back(v, 3);
  }
  std::erase_if(pending_, [&](const auto& p) { return !next.count(p.first); });
  vips_ = std::move(next);
}

AnnouncerStats L2Announcer::stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  return stats_;
}

void L2Announcer::announce(const IpAddr& vip) {
  for (const Iface& i : ifaces_) {
    const auto frame = vip.isV4() ? l2::gratuitousArp(i.mac, vip)
                                  : l2::neighborAdvert(i.mac, vip, {0x33, 0x33, 0, 0, 0, 1},
                                                       *IpAddr::parse("ff02::1"), false);
    if (send(i.fd.get(), frame.data(), frame.size(), 0) > 0) ++stats_.gratuitous;
  }
}

void L2Announcer::answer(size_t index, const uint8_t* frame, size_t len) {
  l2::Question q;
  if (!l2::parseQuestion(frame, len, &q)) return;
  const Iface& i = ifaces_[index];
  std::lock_guard<std::mutex> lock(mu_);
  if (!vips_.count(q.target)) {
    ++stats_.ignored;
    return;
  }
  std::vector<uint8_t> reply;
  if (q.v6) {
    const bool dad = q.asker == IpAddr{};  // duplicate address detection: tell everyone
    reply = l2::neighborAdvert(i.mac, q.target,
                               dad ? std::array<uint8_t, 6>{0x33, 0x33, 0, 0, 0, 1} : q.asker_mac,
                               dad ? *IpAddr::parse("ff02::1") : q.asker, !dad);
  } else {
    reply = l2::arpReply(i.mac, q.target, q.asker_mac, q.asker);
  }
  if (send(i.fd.get(), reply.data(), reply.size(), 0) > 0)
    ++(q.v6 ? stats_.na_replies : stats_.arp_replies);
}

void L2Announcer::run() {
  std::vector<struct pollfd> fds;
  for (const Iface& i : ifaces_) fds.push_back({i.fd.get(), POLLIN, 0});
  auto next_gratuitous = std::chrono::steady_clock::now();
  uint8_t buf[2048];
  while (!stop_.load()) {
    const int n = ::poll(fds.data(), fds.size(), 50);
    for (size_t k = 0; n > 0 && k < fds.size(); ++k) {
      if (!(fds[k].revents & POLLIN)) continue;
      for (;;) {
        struct sockaddr_ll from {};
        socklen_t fl = sizeof from;
        const ssize_t got = recvfrom(fds[k].fd, buf, sizeof buf, MSG_DONTWAIT,
                                     reinterpret_cast<sockaddr*>(&from), &fl);
        if (got <= 0) break;
        if (from.sll_pkttype == PACKET_OUTGOING) continue;  // our own replies
        answer(k, buf, static_cast<size_t>(got));
      }
    }
    const auto now = std::chrono::steady_clock::now();
    if (now >= next_gratuitous) {
      std::lock_guard<std::mutex> lock(mu_);
      for (auto& [vip, left] : pending_) {
        announce(vip);
        --left;
      }
      std::erase_if(pending_, [](const auto& p) { return p.second <= 0; });
      next_gratuitous = now + std::chrono::milliseconds(200);
    }
  }
}

}  // namespace flowlb::agent
