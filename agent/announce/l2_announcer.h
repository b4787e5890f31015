// L2 announcement: this node answers ARP requests (IPv4) and Neighbor
// Solicitations (IPv6) for the VIPs it announces, on the configured
// interfaces, with the interface's own MAC, and sends gratuitous ARP /
// unsolicited Neighbor Advertisements when it takes a VIP over, so peers
// update their caches at once instead of after a timeout. A VIP it stops
// announcing is no longer answered from the next packet on.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "common/ip_addr.h"
#include "common/status.h"
#include "common/unique_fd.h"

namespace flowlb::agent {

struct AnnouncerStats {
  uint64_t arp_replies = 0;
  uint64_t na_replies = 0;
  uint64_t gratuitous = 0;  // GARP and unsolicited NA sent
  uint64_t ignored = 0;     // requests for addresses we do not announce
};

// Builds the frames (pure; tested without sockets).
namespace l2 {
// An ARP reply (or, with `gratuitous`, a broadcast ARP request for `vip`
// from `vip`), 60 bytes.
std::vector<uint8_t> arpReply(const std::array<uint8_t, 6>& our_mac, const IpAddr& vip,
                              const std::array<uint8_t, 6>& peer_mac, const IpAddr& peer_ip);
std::vector<uint8_t> gratuitousArp(const std::array<uint8_t, 6>& our_mac, const IpAddr& vip);
// A Neighbor Advertisement for `vip` (solicited: to the asker; unsolicited:
// to all nodes, with the Override flag).
std::vector<uint8_t> neighborAdvert(const std::array<uint8_t, 6>& our_mac, const IpAddr& vip,
                                    const std::array<uint8_t, 6>& dst_mac, const IpAddr& dst_ip,
                                    bool solicited);
// What a received frame asks: the target address of an ARP request or a
// Neighbor Solicitation, and who asked. False for anything else.
struct Question {
  bool v6 = false;
  IpAddr target;
  IpAddr asker;
  std::array<uint8_t, 6> asker_mac{};
};
bool parseQuestion(const uint8_t* frame, size_t len, Question* q);
}  // namespace l2

class L2Announcer {
 public:
  // One raw socket per interface, a thread answering on them.
  static Result<std::unique_ptr<L2Announcer>> start(const std::vector<std::string>& interfaces);
  ~L2Announcer();

  // The VIPs to announce from now on; newly added ones are announced
  // gratuitously (3 times, 200 ms apart).
  void setVips(const std::vector<IpAddr>& vips);
  AnnouncerStats stats() const;

 private:
  L2Announcer() = default;
  void run();
  void answer(size_t iface, const uint8_t* frame, size_t len);
  void announce(const IpAddr& vip);

  struct Iface {
    std::string name;
    int ifindex = 0;
    UniqueFd fd;
    std::array<uint8_t, 6> mac{};
  };
  std::vector<Iface> ifaces_;
  mutable std::mutex mu_;  // guards vips_, pending_, stats_
  std::set<IpAddr> vips_;
  std::vector<std::pair<IpAddr, int>> pending_;  // gratuitous announcements left to send
  AnnouncerStats stats_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

}  // namespace flowlb::agent
