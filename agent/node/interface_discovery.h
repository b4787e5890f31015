// Which interfaces the agent attaches to and announces on, and which
// addresses its NAT flows leave with, when the flags do not say.
//
// In a cluster the agent runs on every node of a DaemonSet whose nodes do
// not all name their NICs alike (eth0, ens5, bond0, enp1s0f0...), so by
// default it finds them: XDP goes on the interface that carries the node's
// InternalIP (the downward API's status.hostIPs, given as --node-ip) and on
// the one that carries the default route, when that is another; VIPs are
// announced on the InternalIP's interface (the node's LAN). The NAT source
// addresses are the node's IPs of each family, or, for a family the node IP
// list lacks, a permanent global address of that family on the chosen
// interface. What was chosen, and why, is logged, exported as
// flowlb_agent_interface_info and shown in /readyz.
//
// chooseInterfaces() is pure: it takes a snapshot of the host (HostNetwork)
// that readHostNetwork() builds from getifaddrs() and /proc/net, so tests
// pass fakes.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "common/ip_addr.h"
#include "common/status.h"

namespace flowlb::agent {

struct HostAddress {
  IpAddr addr;
  uint8_t prefix_len = 0;
  bool usable = true;  // IPv6: not tentative, deprecated, temporary or failed DAD
  bool global = true;  // not link-local (fe80::/10, 169.254/16) or loopback
};

struct HostInterface {
  std::string name;
  bool up = false;
  bool loopback = false;
  std::vector<HostAddress> addresses;
};

struct HostNetwork {
  std::vector<HostInterface> interfaces;
  std::string default_route_v4;  // interface of the IPv4 default route ("": none)
  std::string default_route_v6;
};

struct DiscoveryInput {
  std::vector<std::string> interfaces;           // --interface; empty: detect
  std::vector<std::string> announce_interfaces;  // --announce-interface; empty: detect
  bool announce = true;                          // false: no announce interfaces wanted
  bool snat = true;                              // false: NAT sources come from elsewhere
  std::vector<IpAddr> node_ips;                  // --node-ip (status.hostIPs)
  std::optional<IpAddr> snat_v4, snat_v6;        // --snat-ipv4 / --snat-ipv6
};

struct InterfaceChoice {
  std::vector<std::string> xdp;
  std::vector<std::string> announce;
  std::string source;  // "flag" or "detected"
  std::optional<IpAddr> snat_v4, snat_v6;
  std::string snat_v4_from, snat_v6_from;  // "flag", "node IP", "interface eth0", ""
  std::string reason;                      // one sentence for the log and /readyz
};

Result<InterfaceChoice> chooseInterfaces(const DiscoveryInput& in, const HostNetwork& host);

// The interface of the default route in /proc/net/route or
// /proc/net/ipv6_route text ("" when there is none).
std::string defaultRouteV4(const std::string& proc_net_route);
std::string defaultRouteV6(const std::string& proc_net_ipv6_route);
// IPv6 addresses from /proc/net/if_inet6 text, by interface name.
std::vector<std::pair<std::string, HostAddress>> parseIfInet6(const std::string& text);

// The running host (its network namespace): getifaddrs() and /proc/net.
Result<HostNetwork> readHostNetwork();

}  // namespace flowlb::agent
