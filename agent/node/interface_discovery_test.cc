#include "agent/node/interface_discovery.h"

#include <gtest/gtest.h>

namespace flowlb::agent {
namespace {

IpAddr ip(const char* s) {
  return *IpAddr::parse(s);
}

HostAddress addr(const char* s, bool usable = true, bool global = true) {
  HostAddress h;
  h.addr = ip(s);
  h.usable = usable;
  h.global = global;
  return h;
}

// A typical node: loopback, the NIC with the node IP (dual-stack), a CNI
// bridge, and the default routes on the NIC.
HostNetwork node() {
  HostNetwork h;
  h.interfaces.push_back({"lo", true, true, {addr("127.0.0.1", true, false)}});
  h.interfaces.push_back({"ens5",
                          true,
                          false,
                          {addr("10.0.0.5"), addr("fe80::1", true, false),
                           addr("2001:db8::99", false), addr("2001:db8::5")}});
  h.interfaces.push_back({"cni0", true, false, {addr("10.244.1.1")}});
  h.default_route_v4 = "ens5";
  h.default_route_v6 = "ens5";
  return h;
}

TEST(InterfaceDiscoveryTest, TheNodeIpsInterfaceCarryingTheDefaultRouteIsChosen) {
  DiscoveryInput in;
  in.node_ips = {ip("10.0.0.5")};
  auto c = chooseInterfaces(in, node());
  ASSERT_TRUE(c) << c.error();
  EXPECT_EQ(c->xdp, std::vector<std::string>{"ens5"});
  EXPECT_EQ(c->announce, std::vector<std::string>{"ens5"});
  EXPECT_EQ(c->source, "detected");
  EXPECT_NE(c->reason.find("ens5 carries the node IP 10.0.0.5"), std::string::npos) << c->reason;
  EXPECT_NE(c->reason.find("ens5 also carries the IPv4 default route"), std::string::npos);
  ASSERT_TRUE(c->snat_v4);
  EXPECT_EQ(*c->snat_v4, ip("10.0.0.5"));
  EXPECT_EQ(c->snat_v4_from, "node IP");
}

// Issue 10: agents had no IPv6 source address. With status.hostIPs the
// node's IPv6 address is the source of IPv6 NAT flows.
TEST(InterfaceDiscoveryTest, IPv6SourceComesFromTheNodesHostIPs) {
  DiscoveryInput in;
  in.node_ips = {ip("10.0.0.5"), ip("2001:db8::5")};
  auto c = chooseInterfaces(in, node());
  ASSERT_TRUE(c);
  ASSERT_TRUE(c->snat_v6);
  EXPECT_EQ(*c->snat_v6, ip("2001:db8::5"));
  EXPECT_EQ(c->snat_v6_from, "node IP");
}

// Without an IPv6 node IP (older clusters give only status.hostIP), the
// interface's permanent global IPv6 address is used: not the link-local,
// not the deprecated/tentative one.
TEST(InterfaceDiscoveryTest, IPv6SourceIsDetectedOnTheInterfaceWhenHostIPsHasNone) {
  DiscoveryInput in;
  in.node_ips = {ip("10.0.0.5")};
  auto c = chooseInterfaces(in, node());
  ASSERT_TRUE(c);
  ASSERT_TRUE(c->snat_v6);
  EXPECT_EQ(*c->snat_v6, ip("2001:db8::5"));
  EXPECT_EQ(c->snat_v6_from, "interface ens5");
}

TEST(InterfaceDiscoveryTest, ASingleStackNodeHasNoIPv6Source) {
  HostNetwork h = node();
  h.interfaces[1].addresses = {addr("10.0.0.5"), addr("fe80::1", true, false)};
  h.default_route_v6.clear();
  DiscoveryInput in;
  in.node_ips = {ip("10.0.0.5")};
  auto c = chooseInterfaces(in, h);
  ASSERT_TRUE(c);
  EXPECT_FALSE(c->snat_v6);
  EXPECT_NE(c->reason.find("IPv6 NAT source none"), std::string::npos) << c->reason;
}

TEST(InterfaceDiscoveryTest, ADefaultRouteOnAnotherInterfaceIsAttachedToo) {
  HostNetwork h = node();
  h.interfaces.push_back({"ens6", true, false, {addr("192.168.7.2")}});
  h.default_route_v4 = "ens6";
  DiscoveryInput in;
  in.node_ips = {ip("10.0.0.5")};
  auto c = chooseInterfaces(in, h);
  ASSERT_TRUE(c);
  EXPECT_EQ(c->xdp, (std::vector<std::string>{"ens5", "ens6"}));
  EXPECT_EQ(c->announce, std::vector<std::string>{"ens5"});  // the node's LAN
}

TEST(InterfaceDiscoveryTest, WithoutANodeIpTheDefaultRouteDecides) {
  DiscoveryInput in;
  auto c = chooseInterfaces(in, node());
  ASSERT_TRUE(c);
  EXPECT_EQ(c->xdp, std::vector<std::string>{"ens5"});
  EXPECT_EQ(*c->snat_v4, ip("10.0.0.5"));
  EXPECT_EQ(c->snat_v4_from, "interface ens5");
}

TEST(InterfaceDiscoveryTest, FlagsWinAndUnknownNamesAreRefused) {
  DiscoveryInput in;
  in.interfaces = {"cni0"};
  in.announce_interfaces = {"ens5"};
  in.snat_v4 = ip("10.0.0.77");
  auto c = chooseInterfaces(in, node());
  ASSERT_TRUE(c);
  EXPECT_EQ(c->xdp, std::vector<std::string>{"cni0"});
  EXPECT_EQ(c->announce, std::vector<std::string>{"ens5"});
  EXPECT_EQ(c->source, "flag");
  EXPECT_EQ(*c->snat_v4, ip("10.0.0.77"));
  in.interfaces = {"eth0"};
  auto bad = chooseInterfaces(in, node());
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error(), "no interface named eth0");
}

TEST(InterfaceDiscoveryTest, ANodeIpNotOnThisHostIsAClearError) {
  DiscoveryInput in;
  in.node_ips = {ip("10.9.9.9")};
  auto c = chooseInterfaces(in, node());
  ASSERT_FALSE(c);
  EXPECT_NE(c.error().find("no interface carries the node IP 10.9.9.9"), std::string::npos);
  HostNetwork bare;
  bare.interfaces.push_back({"lo", true, true, {addr("127.0.0.1", true, false)}});
  auto none = chooseInterfaces(DiscoveryInput{}, bare);
  ASSERT_FALSE(none);
  EXPECT_NE(none.error().find("give --interface"), std::string::npos);
}

TEST(InterfaceDiscoveryTest, ParsesProcNetRoutes) {
  const std::string v4 =
      "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n"
      "ens5\t000200C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n"
      "ens5\t00000000\t010200C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\n";
  EXPECT_EQ(defaultRouteV4(v4), "ens5");
  EXPECT_EQ(defaultRouteV4(v4.substr(0, v4.rfind("ens5"))), "");
  const std::string v6 =
      "00000000000000000000000000000000 00 00000000000000000000000000000000 00 "
      "00000000000000000000000000000000 ffffffff 00000001 00000000 00200200       lo\n"
      "20010db8000000000000000000000000 40 00000000000000000000000000000000 00 "
      "00000000000000000000000000000000 00000100 00000001 00000000 00000001     ens5\n"
      "00000000000000000000000000000000 00 00000000000000000000000000000000 00 "
      "20010db8000000000000000000000001 00000400 00000002 00000000 00000003     ens5\n";
  EXPECT_EQ(defaultRouteV6(v6), "ens5");
  EXPECT_EQ(defaultRouteV6(v6.substr(0, v6.find("20010db8"))), "");  // only lo's reject route
  const auto addrs = parseIfInet6(
      "20010db8000000000000000000000005 02 40 00 80     ens5\n"
      "20010db8000000000000000000000099 02 40 00 20     ens5\n"
      "fe800000000000000000000000000001 02 40 20 80     ens5\n");
  ASSERT_EQ(addrs.size(), 3u);
  EXPECT_EQ(addrs[0].second.addr, ip("2001:db8::5"));
  EXPECT_TRUE(addrs[0].second.usable && addrs[0].second.global);
  EXPECT_FALSE(addrs[1].second.usable);  // deprecated
  EXPECT_FALSE(addrs[2].second.global);  // link-local
  EXPECT_EQ(addrs[0].second.prefix_len, 64);
}

}  // namespace
}  // namespace flowlb::agent
