#include "agent/datapath/kernel_next_hops.h"

#include <arpa/inet.h>
#include <linux/neighbour.h>
#include <linux/rtnetlink.h>
#include <net/if.h>
// After net/if.h: linux/libc-compat.h then leaves out what glibc defined.
#include <linux/if.h>
#include <netlink/cache.h>
#include <netlink/netlink.h>
#include <netlink/route/link.h>
#include <netlink/route/neighbour.h>
#include <netlink/route/route.h>
#include <poll.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>

#include "common/unique_fd.h"

namespace flowlb::agent {

void KernelNextHops::onCacheChange(struct nl_cache*, struct ::nl_object*, int, void* self) {
  static_cast<KernelNextHops*>(self)->dirty_.store(true);
}

namespace {

bool toIp(struct nl_addr* a, IpAddr* out) {
  if (a == nullptr) return false;
  const auto* bytes = static_cast<const uint8_t*>(nl_addr_get_binary_addr(a));
  if (nl_addr_get_family(a) == AF_INET && nl_addr_get_len(a) == 4) {
    *out = IpAddr::fromV4(bytes);
    return true;
  }
  if (nl_addr_get_family(a) == AF_INET6 && nl_addr_get_len(a) == 16) {
    *out = IpAddr::fromV6(bytes);
    return true;
  }
  return false;
}

uint64_t nowMs() {
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                   std::chrono::steady_clock::now().time_since_epoch())
                                   .count());
}

}  // namespace

Result<std::unique_ptr<KernelNextHops>> KernelNextHops::create(size_t readers,
                                                               std::vector<int> attached) {
  std::unique_ptr<KernelNextHops> k(new KernelNextHops(readers, std::move(attached)));
  k->missed_.reserve(kMaxMisses);
  auto waker = Waker::create();
  if (!waker) return waker.status();
  k->miss_waker_.emplace(std::move(*waker));
  k->sock_ = nl_socket_alloc();
  if (k->sock_ == nullptr) return Status::error("cannot allocate a netlink socket");
  int rc = nl_cache_mngr_alloc(k->sock_, NETLINK_ROUTE, NL_AUTO_PROVIDE, &k->mngr_);
  if (rc < 0) return Status::error(std::string("netlink cache manager: ") + nl_geterror(rc));
  struct {
    const char* name;
    struct nl_cache** cache;
  } caches[] = {
      {"route/link", &k->links_}, {"route/route", &k->routes_}, {"route/neigh", &k->neighs_}};
  for (auto& c : caches) {
    rc = nl_cache_mngr_add(k->mngr_, c.name, &onCacheChange, k.get(), c.cache);
    if (rc < 0)
      return Status::error(std::string("netlink cache ") + c.name + ": " + nl_geterror(rc));
  }
  k->rebuild();
  return k;
}

KernelNextHops::~KernelNextHops() {
  if (mngr_ != nullptr) nl_cache_mngr_free(mngr_);  // frees the caches it manages
  if (sock_ != nullptr) nl_socket_free(sock_);
}

void KernelNextHops::rebuild() {
  dirty_.store(false);
  auto view = std::make_shared<NextHopView>();
  view->attached = attached_;
  view->kernel_hop.kernel = true;
  view->kernel_hop.resolved = true;
  for (auto* o = nl_cache_get_first(links_); o != nullptr; o = nl_cache_get_next(o)) {
    auto* link = reinterpret_cast<struct rtnl_link*>(o);
    struct nl_addr* ll = rtnl_link_get_addr(link);
    std::array<uint8_t, 6> mac{};
    if (ll != nullptr && nl_addr_get_len(ll) == 6)
      std::memcpy(mac.data(), nl_addr_get_binary_addr(ll), 6);
    const int ifindex = rtnl_link_get_ifindex(link);
    view->link_macs[ifindex] = mac;
    NextHop pending;
    pending.ifindex = static_cast<uint32_t>(ifindex);
    pending.src_mac = mac;
    pending.resolved = false;
    view->unresolved[ifindex] = pending;
  }
  for (auto* o = nl_cache_get_first(neighs_); o != nullptr; o = nl_cache_get_next(o)) {
    auto* n = reinterpret_cast<struct rtnl_neigh*>(o);
    IpAddr addr;
    if (!toIp(rtnl_neigh_get_dst(n), &addr)) continue;
    const int ifindex = rtnl_neigh_get_ifindex(n);
    const int state = rtnl_neigh_get_state(n);
    struct nl_addr* ll = rtnl_neigh_get_lladdr(n);
    NextHop hop;
    hop.ifindex = static_cast<uint32_t>(ifindex);
    hop.src_mac = view->link_macs[ifindex];
    hop.resolved =
        ll != nullptr && nl_addr_get_len(ll) == 6 &&
        (state & (NUD_REACHABLE | NUD_STALE | NUD_DELAY | NUD_PROBE | NUD_PERMANENT | NUD_NOARP));
    if (hop.resolved) std::memcpy(hop.dst_mac.data(), nl_addr_get_binary_addr(ll), 6);
    view->neighbors[ifindex][addr] = hop;
  }
  for (auto* o = nl_cache_get_first(routes_); o != nullptr; o = nl_cache_get_next(o)) {
    auto* r = reinterpret_cast<struct rtnl_route*>(o);
    if (rtnl_route_get_table(r) == RT_TABLE_LOCAL && rtnl_route_get_type(r) == RTN_LOCAL) {
      IpAddr a;
      if (toIp(rtnl_route_get_dst(r), &a)) view->local[a] = true;
      continue;
    }
    if (rtnl_route_get_table(r) != RT_TABLE_MAIN || rtnl_route_get_type(r) != RTN_UNICAST) continue;
    if (rtnl_route_get_nnexthops(r) < 1) continue;
    struct nl_addr* dst = rtnl_route_get_dst(r);
    NextHopView::Route route;
    const int family = rtnl_route_get_family(r);
    if (dst == nullptr || nl_addr_get_len(dst) == 0) {
      route.prefix = *IpPrefix::parse(family == AF_INET ? "0.0.0.0/0" : "::/0");
    } else {
      IpAddr a;
      if (!toIp(dst, &a)) continue;
      route.prefix.addr = a;
      route.prefix.length = static_cast<uint8_t>(nl_addr_get_prefixlen(dst));
      // Canonicalise through the parser (clears host bits).
      auto p = IpPrefix::parse(a.toString() + "/" + std::to_string(route.prefix.length));
      if (!p) continue;
      route.prefix = *p;
    }
    route.priority = rtnl_route_get_priority(r);
    struct rtnl_nexthop* nh = rtnl_route_nexthop_n(r, 0);
    route.ifindex = rtnl_route_nh_get_ifindex(nh);
    IpAddr gw;
    if (toIp(rtnl_route_nh_get_gateway(nh), &gw)) {
      route.gateway = true;
      route.gateway_addr = gw;
      auto it = view->neighbors[route.ifindex].find(gw);
      route.via =
          it != view->neighbors[route.ifindex].end() ? it->second : view->unresolved[route.ifindex];
      route.via.on_link = false;
    }
    view->routes.push_back(route);
  }
  std::stable_sort(view->routes.begin(), view->routes.end(), [](const auto& a, const auto& b) {
    const int la = a.prefix.length + (a.prefix.addr.isV4() ? 96 : 0);
    const int lb = b.prefix.length + (b.prefix.addr.isV4() ? 96 : 0);
    return la != lb ? la > lb : a.priority < b.priority;
  });
  {
    std::lock_guard<std::mutex> lock(dest_mu_);
    view->precompute(destinations_);
  }
  views_.publish(std::move(view));
  views_.reclaim();
}

void KernelNextHops::noteMiss(int ifindex, const IpAddr& addr) const {
  misses_.fetch_add(1, std::memory_order_relaxed);
  std::unique_lock<std::mutex> lock(miss_mu_, std::try_to_lock);
  if (!lock.owns_lock() || missed_.size() >= kMaxMisses) return;
  const bool first = missed_.empty();
  missed_.emplace_back(ifindex, addr);
  if (first) miss_waker_->wake();  // one write per probe round, not per packet
}

const NextHop* KernelNextHops::lookup(const IpAddr& dst) const {
  const NextHopView* v = views_.acquire();
  if (v == nullptr) return nullptr;
  const NextHopView::Answer a = v->find(dst);
  if (a.miss) noteMiss(a.miss_ifindex, a.miss_addr);
  return a.hop;
}

void KernelNextHops::setDestinations(std::vector<IpAddr> dsts) {
  std::sort(dsts.begin(), dsts.end());
  dsts.erase(std::unique(dsts.begin(), dsts.end()), dsts.end());
  std::lock_guard<std::mutex> lock(dest_mu_);
  if (dsts == destinations_) return;
  destinations_ = std::move(dsts);
  dirty_.store(true);
}

void KernelNextHops::probeMisses() {
  std::vector<std::pair<int, IpAddr>> todo;
  todo.reserve(kMaxMisses);  // becomes the workers' queue: reserved here, not by them
  {
    std::lock_guard<std::mutex> lock(miss_mu_);
    todo.swap(missed_);
  }
  const uint64_t now = nowMs();
  for (const auto& [ifindex, addr] : todo) {
    uint64_t& last = last_probe_ms_[addr];
    if (last != 0 && now - last < 1000) continue;
    last = now;
    // A datagram to the discard port makes the kernel resolve the neighbour.
    const bool v4 = addr.isV4();
    const UniqueFd sock(socket(v4 ? AF_INET : AF_INET6, SOCK_DGRAM | SOCK_CLOEXEC, 0));
    const int fd = sock.get();
    if (fd < 0) continue;
    char name[IF_NAMESIZE] = {};
    if (if_indextoname(static_cast<unsigned>(ifindex), name) != nullptr) {
      setsockopt(fd, SOL_SOCKET, SO_BINDTODEVICE, name, static_cast<socklen_t>(strlen(name)));
    }
    if (v4) {
      sockaddr_in sa{};
      sa.sin_family = AF_INET;
      sa.sin_port = htons(9);
      std::memcpy(&sa.sin_addr, addr.v4(), 4);
      sendto(fd, "", 0, MSG_DONTWAIT, reinterpret_cast<sockaddr*>(&sa), sizeof sa);
    } else {
      sockaddr_in6 sa{};
      sa.sin6_family = AF_INET6;
      sa.sin6_port = htons(9);
      std::memcpy(&sa.sin6_addr, addr.bytes.data(), 16);
      sendto(fd, "", 0, MSG_DONTWAIT, reinterpret_cast<sockaddr*>(&sa), sizeof sa);
    }
    ++probes_;
    spdlog::debug("event=neighbor_probe addr={} ifindex={}", addr.toString(), ifindex);
  }
}

void KernelNextHops::poll(int timeout_ms, const std::vector<int>& also) {
  if (dirty_.load()) rebuild();  // new destinations: before sleeping, not after
  std::vector<pollfd> fds;
  fds.reserve(2 + also.size());
  fds.push_back({nl_cache_mngr_get_fd(mngr_), POLLIN, 0});
  const uint64_t now = nowMs();
  const bool misses_wake = now >= miss_quiet_until_ms_;
  if (misses_wake) {
    fds.push_back({miss_waker_->fd(), POLLIN, 0});
  } else {  // misses noted in the quiet window are probed when it ends, not a timeout later
    timeout_ms = std::min<int>(timeout_ms, static_cast<int>(miss_quiet_until_ms_ - now));
  }
  for (int fd : also) {
    if (fd >= 0) fds.push_back({fd, POLLIN, 0});
  }
  if (::poll(fds.data(), fds.size(), std::max(timeout_ms, 0)) > 0) {
    if (fds[0].revents != 0) nl_cache_mngr_data_ready(mngr_);
    if (misses_wake && fds[1].revents != 0) {
      miss_waker_->drain();
      miss_quiet_until_ms_ = nowMs() + kMissQuietMs;
    }
  }
  probeMisses();
  if (dirty_.load()) rebuild();
  views_.reclaim();
}

bool KernelNextHops::linkUp(const std::string& name) const {
  struct rtnl_link* link = rtnl_link_get_by_name(links_, name.c_str());
  if (link == nullptr) return false;
  const uint8_t oper = rtnl_link_get_operstate(link);
  const bool admin_up = (rtnl_link_get_flags(link) & IFF_UP) != 0;
  rtnl_link_put(link);
  return admin_up && (oper == IF_OPER_UP || oper == IF_OPER_UNKNOWN);
}

}  // namespace flowlb::agent
