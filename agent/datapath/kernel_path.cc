#include "agent/datapath/kernel_path.h"

#include <fcntl.h>
#include <linux/fib_rules.h>
#include <linux/if_tun.h>
#include <linux/ip.h>
#include <linux/rtnetlink.h>
#include <net/if.h>
#include <netlink/netlink.h>
#include <netlink/route/addr.h>
#include <netlink/route/link.h>
#include <netlink/route/link/inet.h>
#include <netlink/route/link/inet6.h>
#include <netlink/route/route.h>
#include <netlink/route/rule.h>
#include <nftables/libnftables.h>
#include <spdlog/spdlog.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <set>

namespace flowlb::agent {
namespace {

std::string errnoText(int err) {
  return std::strerror(err);
}

// libnftables behind one call: runs a script atomically, returns its errors.
Status runNft(const std::string& script) {
  struct nft_ctx* ctx = nft_ctx_new(NFT_CTX_DEFAULT);
  if (ctx == nullptr) return Status::error("cannot create an nftables context");
  nft_ctx_buffer_output(ctx);
  nft_ctx_buffer_error(ctx);
  const int rc = nft_run_cmd_from_buffer(ctx, script.c_str());
  std::string err = nft_ctx_get_error_buffer(ctx);
  nft_ctx_free(ctx);
  if (rc != 0) {
    while (!err.empty() && err.back() == '\n') err.pop_back();
    return Status::error("nftables: " + err);
  }
  return Status::ok();
}

// A netlink route socket, closed on scope exit.
class RouteSocket {
 public:
  RouteSocket() : sk_(nl_socket_alloc()) {
    if (sk_ != nullptr && nl_connect(sk_, NETLINK_ROUTE) < 0) {
      nl_socket_free(sk_);
      sk_ = nullptr;
    }
  }
  ~RouteSocket() {
    if (sk_ != nullptr) nl_socket_free(sk_);
  }
  RouteSocket(const RouteSocket&) = delete;
  RouteSocket& operator=(const RouteSocket&) = delete;
  struct nl_sock* get() const {
    return sk_;
  }

 private:
  struct nl_sock* sk_;
};

struct NlAddr {
  explicit NlAddr(const IpAddr& a, int prefix) {
    addr =
        a.isV4() ? nl_addr_build(AF_INET, a.v4(), 4) : nl_addr_build(AF_INET6, a.bytes.data(), 16);
    nl_addr_set_prefixlen(addr, prefix);
  }
  ~NlAddr() { nl_addr_put(addr); }
  NlAddr(const NlAddr&) = delete;
  NlAddr& operator=(const NlAddr&) = delete;
  struct nl_addr* addr;
};

std::string readSysctl(const std::string& path) {
  std::ifstream in(path);
  std::string v;
  in >> v;
  return v;
}

// The policy rule of each family, exactly once: kept if already there (an
// agent restarting leaves it, so replies keep their route meanwhile), added
// if missing; other rules pointing at our table (older settings) go.
Status ensureRules(struct nl_sock* sk, const KernelPathConfig& c, bool remove_all) {
  struct nl_cache* cache = nullptr;
  if (const int rc = rtnl_rule_alloc_cache(sk, AF_UNSPEC, &cache); rc < 0) {
    return Status::error(std::string("cannot list policy rules: ") + nl_geterror(rc));
  }
  bool have[2] = {false, false};
  for (auto* o = nl_cache_get_first(cache); o != nullptr; o = nl_cache_get_next(o)) {
    auto* r = reinterpret_cast<struct rtnl_rule*>(o);
    if (rtnl_rule_get_table(r) != c.table) continue;
    const int fam = rtnl_rule_get_family(r) == AF_INET ? 0 : 1;
    const bool ours = !remove_all && rtnl_rule_get_prio(r) == c.rule_priority &&
                      rtnl_rule_get_mark(r) == c.mark && rtnl_rule_get_mask(r) == c.mark &&
                      rtnl_rule_get_action(r) == FR_ACT_TO_TBL && !have[fam];
    if (ours) {
      have[fam] = true;
    } else {
      rtnl_rule_delete(sk, r, 0);
    }
  }
  nl_cache_free(cache);
  if (remove_all) return Status::ok();
  for (int fam : {AF_INET, AF_INET6}) {
    if (have[fam == AF_INET ? 0 : 1]) continue;
    struct rtnl_rule* r = rtnl_rule_alloc();
    rtnl_rule_set_family(r, fam);
    rtnl_rule_set_prio(r, c.rule_priority);
    rtnl_rule_set_mark(r, c.mark);
    rtnl_rule_set_mask(r, c.mark);
    rtnl_rule_set_table(r, c.table);
    rtnl_rule_set_action(r, FR_ACT_TO_TBL);
    const int rc = rtnl_rule_add(sk, r, NLM_F_CREATE);
    rtnl_rule_put(r);
    if (rc < 0) return Status::error(std::string("cannot add the reply rule: ") + nl_geterror(rc));
  }
  return Status::ok();
}

Status addDefaultRoute(struct nl_sock* sk, int family, int ifindex, uint32_t table) {
  struct rtnl_route* rt = rtnl_route_alloc();
  rtnl_route_set_family(rt, static_cast<uint8_t>(family));
  rtnl_route_set_table(rt, table);
  rtnl_route_set_scope(rt, RT_SCOPE_LINK);
  const uint8_t zero[16] = {};
  struct nl_addr* dst = nl_addr_build(family, zero, family == AF_INET ? 4 : 16);
  nl_addr_set_prefixlen(dst, 0);
  rtnl_route_set_dst(rt, dst);
  struct rtnl_nexthop* nh = rtnl_route_nh_alloc();
  rtnl_route_nh_set_ifindex(nh, ifindex);
  rtnl_route_add_nexthop(rt, nh);
  const int rc = rtnl_route_add(sk, rt, NLM_F_CREATE | NLM_F_REPLACE);
  nl_addr_put(dst);
  rtnl_route_put(rt);
  if (rc < 0) return Status::error(std::string("cannot add the reply route: ") + nl_geterror(rc));
  return Status::ok();
}

// One queue of a multi-queue TUN device; the device exists while a queue is open.
Result<UniqueFd> openTunQueue(const char* name) {
  UniqueFd tun(open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC));
  const int fd = tun.get();
  if (fd < 0) return Status::error(std::string("cannot open /dev/net/tun: ") + errnoText(errno));
  struct ifreq ifr {};
  std::strncpy(ifr.ifr_name, name, IFNAMSIZ - 1);
  ifr.ifr_flags = IFF_TUN | IFF_NO_PI | IFF_MULTI_QUEUE;
  if (ioctl(fd, TUNSETIFF, &ifr) != 0) {
    const int err = errno;
    return Status::error(std::string("cannot create TUN device ") + name + ": " + errnoText(err));
  }
  return tun;
}

// Through rtnetlink, not /proc/sys (read-only in a container): packets
// enter with the client's (or a VIP's) source, so no reverse-path check and
// local sources allowed; a point-to-point device needs no IPv6 link-local
// address, so the kernel sends nothing of its own (router solicitations,
// MLD) into it. Then the MTU, and up.
Status configureDevice(const char* name, uint32_t mtu) {
  RouteSocket sk;
  if (sk.get() == nullptr) return Status::error("cannot open a netlink route socket");
  struct rtnl_link* link = nullptr;
  int rc = rtnl_link_get_kernel(sk.get(), 0, name, &link);
  if (rc < 0) return Status::error(std::string("no device ") + name + ": " + nl_geterror(rc));
  // Settings first, then up: the kernel applies IFLA_AF_SPEC after the
  // flags, and a device that comes up first gets its link-local at once.
  struct rtnl_link* settings = rtnl_link_alloc();
  rtnl_link_inet_set_conf(settings, IPV4_DEVCONF_RP_FILTER, 0);
  rtnl_link_inet_set_conf(settings, IPV4_DEVCONF_ACCEPT_LOCAL, 1);
  rtnl_link_inet6_set_addr_gen_mode(settings, rtnl_link_inet6_str2addrgenmode("none"));
  rtnl_link_set_mtu(settings, mtu);
  rc = rtnl_link_change(sk.get(), link, settings, 0);
  rtnl_link_put(settings);
  if (rc >= 0) {
    struct rtnl_link* up = rtnl_link_alloc();
    rtnl_link_set_flags(up, IFF_UP);
    rc = rtnl_link_change(sk.get(), link, up, 0);
    rtnl_link_put(up);
  }
  rtnl_link_put(link);
  if (rc < 0)
    return Status::error(std::string("cannot configure ") + name + ": " + nl_geterror(rc));
  return Status::ok();
}

std::string hex(uint32_t v) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "0x%x", v);
  return buf;
}

}  // namespace

Result<std::unique_ptr<KernelPath>> KernelPath::create(const KernelPathConfig& config) {
  if (config.mark == 0 || (config.mark & (config.mark - 1)) != 0 || (config.mark << 1) == 0) {
    return Status::error("--kernel-path-mark must be a single bit (its next bit is used too)");
  }
  std::unique_ptr<KernelPath> k(new KernelPath(config));
  if (Status st = k->setUp(); !st) {
    k->tearDown();
    return st;
  }
  return k;
}

KernelPath::~KernelPath() {
  tearDown();
}

Status KernelPath::setUp() {
  const char* devices[] = {kSnatDevice, kKeepDevice, kPassDevice};
  fds_.resize(config_.queues);
  for (uint32_t q = 0; q < config_.queues; ++q) {
    int* slots[] = {&fds_[q].snat, &fds_[q].keep, &fds_[q].pass};
    for (size_t d = 0; d < 3; ++d) {
      auto fd = openTunQueue(devices[d]);
      if (!fd) return fd.status();
      *slots[d] = fd->get();
      all_fds_.push_back(std::move(*fd));
    }
    fds_[q].reply = fds_[q].snat;
  }
  for (const char* dev : devices) {
    if (Status st = configureDevice(dev, config_.mtu); !st) return st;
  }
  if (readSysctl("/proc/sys/net/ipv4/conf/all/rp_filter") == "1") {
    spdlog::warn(
        "event=kernel_path_rp_filter reason=strict msg=\"net.ipv4.conf.all.rp_filter is 1 "
        "(strict): packets of kernel-path flows carry the client's address and would be "
        "dropped; set it to 0 or 2\"");
  }
  if (readSysctl("/proc/sys/net/ipv4/ip_forward") != "1") {
    spdlog::warn(
        "event=kernel_path_forwarding reason=off msg=\"net.ipv4.ip_forward is 0: the kernel "
        "will not forward kernel-path flows to backends\"");
  }
  snat_ifindex_ = static_cast<int>(if_nametoindex(kSnatDevice));
  keep_ifindex_ = static_cast<int>(if_nametoindex(kKeepDevice));
  if (snat_ifindex_ == 0 || keep_ifindex_ == 0) {
    return Status::error("the kernel-path devices vanished while being set up");
  }

  const std::string flow = hex(config_.mark);
  const std::string both = hex(config_.mark | config_.mark << 1);
  const std::string keep_mask = hex(~(config_.mark | config_.mark << 1));
  const std::string ports = std::to_string(config_.masquerade_port_min) + "-" +
                            std::to_string(config_.masquerade_port_max);
  const std::string snat_ports =
      std::to_string(config_.snat_port_min) + "-" + std::to_string(config_.snat_port_max);
  std::string snat4, snat6;
  for (const IpAddr& a : config_.snat_addresses) {
    std::string& list = a.isV4() ? snat4 : snat6;
    list += (list.empty() ? "" : ", ") + a.toString();
  }
  snat_ = config_.snat_addresses;
  const std::string script =
      // Replace whatever a previous agent left, in one transaction.
      "table inet flowlb {}\n"
      "delete table inet flowlb\n"
      "table arp flowlb {}\n"
      "delete table arp flowlb\n"
      "table inet flowlb {\n"
      "  set snat4 { type ipv4_addr; " +
      (snat4.empty() ? "" : "elements = { " + snat4 + " }; ") +
      "}\n"
      "  set snat6 { type ipv6_addr; " +
      (snat6.empty() ? "" : "elements = { " + snat6 + " }; ") +
      "}\n"
      // While no worker steers the SNAT ports (the agent restarting), what
      // arrives for them is dropped, not answered with a RST: the flows
      // retransmit and the next agent (which adopts their state) carries on.
      // Frames a worker hands back come through the flowlb devices.
      "  chain input {\n"
      "    type filter hook input priority filter; policy accept;\n"
      "    iifname { \"" +
      std::string(kSnatDevice) + "\", \"" + std::string(kKeepDevice) + "\", \"" +
      std::string(kPassDevice) +
      "\" } accept\n"
      "    ip daddr @snat4 meta l4proto { tcp, udp } th dport " +
      snat_ports +
      " drop\n"
      "    ip6 daddr @snat6 meta l4proto { tcp, udp } th dport " +
      snat_ports +
      " drop\n"
      "  }\n"
      // Replies of kernel-path flows leave only into the agent; while no
      // agent reads them they are dropped (retransmitted later), never sent
      // to the client from the backend's own address.
      "  chain reply_hold {\n"
      "    type filter hook postrouting priority filter; policy accept;\n"
      "    ct direction reply ct mark & " +
      flow + " == " + flow + " oifname != \"" + std::string(kSnatDevice) +
      "\" drop\n"
      "  }\n"
      "  chain prerouting {\n"
      "    type filter hook prerouting priority mangle; policy accept;\n"
      "    iifname \"" +
      std::string(kSnatDevice) + "\" ct state new ct mark set ct mark & " + keep_mask + " | " +
      both +
      "\n"
      "    iifname \"" +
      std::string(kKeepDevice) + "\" ct state new ct mark set ct mark & " + keep_mask + " | " +
      flow +
      "\n"
      "    ct direction reply ct mark & " +
      flow + " == " + flow + " meta mark set meta mark | " + flow +
      "\n"
      "  }\n"
      "  chain output {\n"
      "    type route hook output priority mangle; policy accept;\n"
      "    ct direction reply ct mark & " +
      flow + " == " + flow + " meta mark set meta mark | " + flow +
      "\n"
      "  }\n"
      "  chain postrouting {\n"
      "    type nat hook postrouting priority srcnat; policy accept;\n"
      "    ct direction original ct mark & " +
      both + " == " + both + " meta l4proto { tcp, udp } masquerade to :" + ports +
      "\n"
      "    ct direction original ct mark & " +
      both + " == " + both +
      " masquerade\n"
      "  }\n"
      "}\n"
      "table arp flowlb {\n"
      "  set vips4 { type ipv4_addr; }\n"
      "  chain input {\n"
      "    type filter hook input priority filter; policy accept;\n"
      "    arp operation request arp daddr ip @vips4 drop\n"
      "  }\n"
      "}\n";
  if (Status st = runNft(script); !st) return st;

  RouteSocket sk;
  if (sk.get() == nullptr) return Status::error("cannot open a netlink route socket");
  for (int family : {AF_INET, AF_INET6}) {
    if (Status st = addDefaultRoute(sk.get(), family, snat_ifindex_, config_.table); !st) return st;
  }
  if (Status st = ensureRules(sk.get(), config_, false); !st) return st;
  spdlog::info(
      "event=kernel_path_ready devices={},{},{} queues={} mark={} table={} rule_priority={} "
      "masquerade_ports={}",
      kSnatDevice, kKeepDevice, kPassDevice, config_.queues, flow, config_.table,
      config_.rule_priority, ports);
  return Status::ok();
}

void KernelPath::tearDown() {
  if (!config_.keep_on_exit) {
    RouteSocket sk;
    if (sk.get() != nullptr) ensureRules(sk.get(), config_, true);
    if (Status st = runNft("table inet flowlb {}\ndelete table inet flowlb\n"
                           "table arp flowlb {}\ndelete table arp flowlb\n");
        !st) {
      spdlog::warn("event=kernel_path_teardown reason=nft msg=\"{}\"", st.message());
    }
  } else {
    spdlog::info("event=kernel_path_kept msg=\"rules left for the next agent\"");
  }
  all_fds_.clear();  // closed: the devices, their addresses and routes go with them
  fds_.clear();
}

Status KernelPath::setSnatAddresses(const std::vector<IpAddr>& addrs) {
  std::string v4, v6;
  for (const IpAddr& a : addrs) {
    std::string& list = a.isV4() ? v4 : v6;
    list += (list.empty() ? "" : ", ") + a.toString();
  }
  std::string script = "flush set inet flowlb snat4\nflush set inet flowlb snat6\n";
  if (!v4.empty()) script += "add element inet flowlb snat4 { " + v4 + " }\n";
  if (!v6.empty()) script += "add element inet flowlb snat6 { " + v6 + " }\n";
  if (Status st = runNft(script); !st) return st;
  snat_ = addrs;
  return Status::ok();
}

Status KernelPath::syncVips(const std::vector<IpAddr>& vips) {
  std::set<IpAddr> want(vips.begin(), vips.end());
  std::set<IpAddr> have(vips_.begin(), vips_.end());
  RouteSocket sk;
  if (sk.get() == nullptr) return Status::error("cannot open a netlink route socket");
  std::string failed;
  auto change = [&](const IpAddr& a, bool add) {
    struct rtnl_addr* ra = rtnl_addr_alloc();
    NlAddr local(a, a.isV4() ? 32 : 128);
    rtnl_addr_set_ifindex(ra, keep_ifindex_);
    rtnl_addr_set_local(ra, local.addr);
    rtnl_addr_set_flags(ra, IFA_F_NODAD);
    const int rc =
        add ? rtnl_addr_add(sk.get(), ra, NLM_F_REPLACE) : rtnl_addr_delete(sk.get(), ra, 0);
    rtnl_addr_put(ra);
    if (rc < 0 && !(add && rc == -NLE_EXIST)) {
      failed += (failed.empty() ? "" : ", ") + a.toString() + " (" + nl_geterror(rc) + ")";
      return false;
    }
    return true;
  };
  std::vector<IpAddr> now;
  for (const IpAddr& a : have) {
    if (!want.count(a) && !change(a, false)) now.push_back(a);
  }
  for (const IpAddr& a : want) {
    if (have.count(a) || change(a, true)) now.push_back(a);
  }
  vips_ = std::move(now);
  // The kernel answers ARP for local addresses on every interface: not for
  // VIPs, whose announcer is chosen by the controller.
  std::string elements;
  for (const IpAddr& a : vips_) {
    if (a.isV4()) elements += (elements.empty() ? "" : ", ") + a.toString();
  }
  std::string script = "flush set arp flowlb vips4\n";
  if (!elements.empty()) script += "add element arp flowlb vips4 { " + elements + " }\n";
  if (Status st = runNft(script); !st) return st;
  if (!failed.empty()) return Status::error("cannot change local VIP addresses: " + failed);
  return Status::ok();
}

}  // namespace flowlb::agent
