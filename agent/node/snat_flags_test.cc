#include "agent/node/snat_flags.h"

#include <gtest/gtest.h>

namespace flowlb::agent {
namespace {

TEST(SnatFlagsTest, AddressesAndPortsAreTaken) {
  SnatConfig snat;
  ASSERT_TRUE(parseSnatFlags("192.0.2.10", "2001:db8::10", "40000-40999", &snat));
  EXPECT_TRUE(snat.has_v4);
  EXPECT_EQ(snat.v4, *IpAddr::parse("192.0.2.10"));
  EXPECT_TRUE(snat.has_v6);
  EXPECT_EQ(snat.v6, *IpAddr::parse("2001:db8::10"));
  EXPECT_EQ(snat.port_min, 40000);
  EXPECT_EQ(snat.port_max, 40999);
}

TEST(SnatFlagsTest, EmptyAddressesLeaveTheirFamilyUnset) {
  SnatConfig snat;
  ASSERT_TRUE(parseSnatFlags("", "", "61000-65535", &snat));
  EXPECT_FALSE(snat.has_v4);
  EXPECT_FALSE(snat.has_v6);
  EXPECT_EQ(snat.port_max, 65535);
}

TEST(SnatFlagsTest, ErrorsNameTheFlag) {
  SnatConfig snat;
  EXPECT_EQ(parseSnatFlags("2001:db8::1", "", "1-2", &snat).message(),
            "--snat-ipv4 2001:db8::1 is not an IPv4 address");
  EXPECT_EQ(parseSnatFlags("", "192.0.2.1", "1-2", &snat).message(),
            "--snat-ipv6 192.0.2.1 is not an IPv6 address");
  for (const char* bad : {"", "100", "0-10", "20-10", "1-65536", "a-b"}) {
    EXPECT_EQ(parseSnatFlags("", "", bad, &snat).message(),
              std::string("--snat-ports ") + bad + " is not MIN-MAX")
        << bad;
  }
}

}  // namespace
}  // namespace flowlb::agent
