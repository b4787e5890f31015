#include "agent/announce/net/vip_hold.h"

#include <linux/rtnetlink.h>
#include <netlink/route/route.h>
#include <netlink/socket.h>

#include <memory>

namespace flowlb::agent::net {
namespace {

struct SockFree {
  void operator()(nl_sock* s) const { nl_socket_free(s); }
};
struct RouteFree {
  void operator()(rtnl_route* r) const { rtnl_route_put(r); }
};
struct AddrFree {
  void operator()(nl_addr* a) const { nl_addr_put(a); }
};
struct CacheFree {
  void operator()(nl_cache* c) const { nl_cache_free(c); }
};

Result<std::unique_ptr<nl_sock, SockFree>> open() {
  std::unique_ptr<nl_sock, SockFree> s(nl_socket_alloc());
  if (!s) return Status::error("netlink: out of memory");
  if (int err = nl_connect(s.get(), NETLINK_ROUTE); err < 0) {
    return Status::error(std::string("netlink: ") + nl_geterror(err));
  }
  return s;
}

}  // namespace

Status holdPrefixes(const std::vector<IpPrefix>& prefixes) {
  auto s = open();
  if (!s) return s.status();
  for (const IpPrefix& p : prefixes) {
    const bool v4 = p.addr.isV4();
    std::unique_ptr<nl_addr, AddrFree> dst(nl_addr_build(
        v4 ? AF_INET : AF_INET6, v4 ? p.addr.v4() : p.addr.bytes.data(), v4 ? 4 : 16));
    std::unique_ptr<rtnl_route, RouteFree> r(rtnl_route_alloc());
    if (!dst || !r) return Status::error("netlink: out of memory");
    nl_addr_set_prefixlen(dst.get(), p.length);
    rtnl_route_set_family(r.get(), v4 ? AF_INET : AF_INET6);
    rtnl_route_set_dst(r.get(), dst.get());
    rtnl_route_set_type(r.get(), RTN_BLACKHOLE);
    rtnl_route_set_table(r.get(), RT_TABLE_MAIN);
    rtnl_route_set_protocol(r.get(), kVipHoldProtocol);
    if (int err = rtnl_route_add(s->get(), r.get(), NLM_F_CREATE | NLM_F_REPLACE); err < 0) {
      return Status::error("blackhole route for " + p.toString() + ": " + nl_geterror(err));
    }
  }
  return Status::ok();
}

Result<size_t> releaseHeldPrefixes() {
  auto s = open();
  if (!s) return s.status();
  nl_cache* raw = nullptr;
  if (int err = rtnl_route_alloc_cache(s->get(), AF_UNSPEC, 0, &raw); err < 0) {
    return Status::error(std::string("netlink: route dump: ") + nl_geterror(err));
  }
  std::unique_ptr<nl_cache, CacheFree> cache(raw);
  size_t removed = 0;
  for (nl_object* o = nl_cache_get_first(cache.get()); o; o = nl_cache_get_next(o)) {
    auto* r = reinterpret_cast<rtnl_route*>(o);
    if (rtnl_route_get_protocol(r) != kVipHoldProtocol || rtnl_route_get_type(r) != RTN_BLACKHOLE) {
      continue;
    }
    if (rtnl_route_delete(s->get(), r, 0) >= 0) ++removed;
  }
  return removed;
}

}  // namespace flowlb::agent::net
