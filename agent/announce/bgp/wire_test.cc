#include "agent/announce/bgp/wire.h"

#include <gtest/gtest.h>

#include <set>

#include "agent/announce/bgp/update_packer.h"

namespace flowlb::agent::bgp {
namespace {

IpPrefix pfx(const char* s) {
  return *IpPrefix::parse(s);
}
IpAddr ip(const char* s) {
  return *IpAddr::parse(s);
}

// Bytes written out by hand from the RFC layouts: an independent oracle.
std::vector<uint8_t> header(uint16_t len, uint8_t type) {
  std::vector<uint8_t> h(16, 0xff);
  h.push_back(static_cast<uint8_t>(len >> 8));
  h.push_back(static_cast<uint8_t>(len));
  h.push_back(type);
  return h;
}
std::vector<uint8_t> cat(std::vector<uint8_t> a, const std::vector<uint8_t>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

TEST(BgpWireTest, OpenMatchesTheRfcLayoutByteForByte) {
  OpenMessage o;
  o.asn = 4200000001;  // 4-octet: AS_TRANS in the 2-octet field
  o.hold_time_s = 90;
  o.router_id = 0x0a000001;
  o.four_octet_as = true;
  o.multiprotocol = {kIpv4Unicast, kIpv6Unicast};
  o.route_refresh = true;
  o.graceful_restart = GracefulRestart{true, false, 120, {{kIpv4Unicast, true}}};
  const std::vector<uint8_t> body = {
      4,  0x5b, 0xa0, 0,    90,   10,   0, 0,    1,  // version, AS_TRANS, hold, id
      30, 2,    28,                                  // opt params length, Capabilities, length
      1,  4,    0,    1,    0,    1,                 // MP IPv4 unicast
      1,  4,    0,    2,    0,    1,                 // MP IPv6 unicast
      2,  0,                                         // route refresh
      64, 6,    0x80, 120,  0,    1,    1, 0x80,     // GR: R, 120 s; IPv4 unicast, F
      65, 4,    0xfa, 0x56, 0xea, 0x01,              // 4-octet AS 4200000001
  };
  EXPECT_EQ(encodeOpen(o), cat(header(19 + 40, 1), body));

  const auto d = decodeOpen(body);
  ASSERT_TRUE(d.ok()) << d.error.reason;
  EXPECT_EQ(d.value->asn, 4200000001u);
  EXPECT_TRUE(d.value->four_octet_as);
  EXPECT_EQ(d.value->hold_time_s, 90);
  EXPECT_EQ(d.value->router_id, 0x0a000001u);
  EXPECT_EQ(d.value->multiprotocol, (std::vector<Family>{kIpv4Unicast, kIpv6Unicast}));
  EXPECT_TRUE(d.value->route_refresh);
  EXPECT_EQ(d.value->graceful_restart, o.graceful_restart);
}

TEST(BgpWireTest, OpenWithExtendedOptionalParametersIsRead) {
  // RFC 9072: length 255, type 255, then 2-octet lengths.
  const std::vector<uint8_t> body = {4, 0xfd, 0xe8, 0, 3, 1,  2, 3, 4, 255,  255,
                                     0, 9,    2,    0, 6, 65, 4, 0, 0, 0xfd, 0xe9};
  const auto d = decodeOpen(body);
  ASSERT_TRUE(d.ok()) << d.error.reason;
  EXPECT_EQ(d.value->asn, 65001u);
  EXPECT_EQ(d.value->hold_time_s, 3);
}

struct OpenCase {
  const char* name;
  std::vector<uint8_t> body;
  uint8_t code, subcode;
};

TEST(BgpWireTest, BadOpensNameTheRfcErrorCode) {
  const std::vector<OpenCase> cases = {
      {"version 3", {3, 0xfd, 0xe8, 0, 90, 1, 2, 3, 4, 0}, 2, 1},
      {"hold time 2", {4, 0xfd, 0xe8, 0, 2, 1, 2, 3, 4, 0}, 2, 6},
      {"identifier 0", {4, 0xfd, 0xe8, 0, 90, 0, 0, 0, 0, 0}, 2, 3},
      {"unknown parameter", {4, 0xfd, 0xe8, 0, 90, 1, 2, 3, 4, 2, 9, 0}, 2, 4},
      {"parameter overruns", {4, 0xfd, 0xe8, 0, 90, 1, 2, 3, 4, 2, 2, 5}, 2, 0},
      {"length mismatch", {4, 0xfd, 0xe8, 0, 90, 1, 2, 3, 4, 7}, 2, 0},
      {"short MP capability", {4, 0xfd, 0xe8, 0, 90, 1, 2, 3, 4, 5, 2, 3, 1, 1, 0}, 2, 0},
  };
  for (const auto& c : cases) {
    const auto d = decodeOpen(c.body);
    ASSERT_FALSE(d.ok()) << c.name;
    EXPECT_EQ(d.error.notification.code, c.code) << c.name;
    EXPECT_EQ(d.error.notification.subcode, c.subcode) << c.name;
    EXPECT_FALSE(d.error.treat_as_withdraw) << c.name;
  }
  // Unsupported version names the version we speak.
  EXPECT_EQ(decodeOpen(cases[0].body).error.notification.data, (std::vector<uint8_t>{0, 4}));
}

TEST(BgpWireTest, FramingRejectsBadMarkerLengthAndType) {
  auto ka = encodeKeepalive();
  EXPECT_EQ(*frameLength(ka).value, 19u);
  EXPECT_EQ(*frameLength(std::span(ka).first(10)).value, 0u);  // wait for more
  auto bad = ka;
  bad[3] = 0;
  EXPECT_EQ(frameLength(bad).error.notification.subcode, 1);  // not synchronised
  bad = ka;
  bad[17] = 18;
  EXPECT_EQ(frameLength(bad).error.notification.subcode, 2);  // length 18
  bad = ka;
  bad[17] = 20;
  EXPECT_EQ(frameLength(bad).error.notification.subcode, 2);  // KEEPALIVE must be 19
  bad = ka;
  bad[18] = 9;
  EXPECT_EQ(frameLength(bad).error.notification.subcode, 3);
  EXPECT_EQ(frameLength(bad).error.notification.data, (std::vector<uint8_t>{9}));
  bad = ka;
  bad[16] = 0x10;
  bad[17] = 0x01;  // 4097
  EXPECT_EQ(frameLength(bad).error.notification.subcode, 2);
}

TEST(BgpWireTest, Ipv4UpdateMatchesTheRfcLayoutByteForByte) {
  UpdateMessage u;
  u.has_attributes = true;
  u.attributes.as_path = {65001};
  u.attributes.next_hop = ip("10.0.0.1");
  u.attributes.med = 5;
  u.attributes.local_pref = 200;
  u.attributes.communities = {0xfde90064};  // 65001:100
  u.attributes.large_communities = {{65001, 1, 2}};
  u.nlri = {pfx("192.0.2.10/32"), pfx("198.51.100.0/24")};
  const std::vector<uint8_t> body = {
      0,    0,                                            // no withdrawals
      0,    56,                                           // attribute bytes
      0x40, 1,   1,  0,                                   // ORIGIN IGP
      0x40, 2,   6,  2,    1,    0,    0,    0xfd, 0xe9,  // AS_PATH: sequence [65001]
      0x40, 3,   4,  10,   0,    0,    1,                 // NEXT_HOP
      0x80, 4,   4,  0,    0,    0,    5,                 // MED
      0x40, 5,   4,  0,    0,    0,    200,               // LOCAL_PREF
      0xc0, 8,   4,  0xfd, 0xe9, 0,    100,               // COMMUNITIES
      0xc0, 32,  12, 0,    0,    0xfd, 0xe9, 0,    0,    0, 1, 0, 0, 0, 2,  // LARGE_COMMUNITY
      32,   192, 0,  2,    10,                                              // 192.0.2.10/32
      24,   198, 51, 100,                                                   // 198.51.100.0/24
  };
  EXPECT_EQ(encodeUpdate(u, true), cat(header(static_cast<uint16_t>(19 + body.size()), 2), body));
  const auto d = decodeUpdate(body, {});
  ASSERT_TRUE(d.ok()) << d.error.reason;
  EXPECT_EQ(d.value->attributes, u.attributes);
  EXPECT_EQ(d.value->nlri, u.nlri);
  EXPECT_EQ(d.value->routeCount(), 2u);
}

TEST(BgpWireTest, Ipv6TravelsInMpReachAndMpUnreach) {
  UpdateMessage u;
  u.has_attributes = true;
  u.attributes.as_path = {64512, 4200000001};
  u.mp_reach = MpReach{kIpv6Unicast, ip("2001:db8::1"), ip("fe80::1"), {pfx("2001:db8:10::/48")}};
  u.mp_unreach = MpUnreach{kIpv6Unicast, {pfx("2001:db8:99::7/128")}};
  const auto wire = encodeUpdate(u, true);
  const auto d = decodeMessage(wire, {});
  ASSERT_TRUE(d.ok()) << d.error.reason;
  const UpdateMessage& r = d.value->update;
  ASSERT_TRUE(r.mp_reach);
  EXPECT_EQ(r.mp_reach->next_hop, ip("2001:db8::1"));
  EXPECT_EQ(r.mp_reach->link_local_hop, ip("fe80::1"));
  EXPECT_EQ(r.mp_reach->nlri, u.mp_reach->nlri);
  EXPECT_EQ(r.mp_unreach->withdrawn, u.mp_unreach->withdrawn);
  EXPECT_EQ(r.attributes.as_path, u.attributes.as_path);
  EXPECT_FALSE(r.endOfRib());
}

// bgp_fuzz: an IPv6 prefix under ::ffff:0:0/96 (IpAddr's IPv4 form) was
// encoded as IPv4, reading up to 16 bytes from the last 4 of the address.
TEST(BgpWireTest, AnIpv6PrefixThatLooksLikeIpv4TravelsWhole) {
  UpdateMessage u;
  u.has_attributes = true;
  u.attributes.as_path = {64512};
  // IpPrefix::parse takes these for IPv4 prefixes too long: built by hand.
  const auto v6 = [](const char* a, uint8_t len) { return IpPrefix{ip(a), len}; };
  u.mp_reach = MpReach{kIpv6Unicast,
                       ip("2001:db8::1"),
                       std::nullopt,
                       {v6("::ffff:10.0.0.0", 104), v6("::ffff:0.0.0.0", 96)}};
  u.mp_unreach = MpUnreach{kIpv6Unicast, {v6("::ffff:192.0.2.1", 128)}};
  const auto d = decodeMessage(encodeUpdate(u, true), {});
  ASSERT_TRUE(d.ok()) << d.error.reason;
  EXPECT_EQ(d.value->update.mp_reach->nlri, u.mp_reach->nlri);
  EXPECT_EQ(d.value->update.mp_unreach->withdrawn, u.mp_unreach->withdrawn);
}

TEST(BgpWireTest, TwoOctetPeersGetAsTransAndAs4Path) {
  UpdateMessage u;
  u.has_attributes = true;
  u.attributes.as_path = {4200000001};
  u.attributes.next_hop = ip("10.0.0.1");
  u.nlri = {pfx("192.0.2.1/32")};
  const auto wire = encodeUpdate(u, false);
  DecodeContext two;
  two.four_octet_as = false;
  const auto d = decodeMessage(wire, two);
  ASSERT_TRUE(d.ok()) << d.error.reason;
  EXPECT_EQ(d.value->update.attributes.as_path, (std::vector<uint32_t>{kAsTrans}));
  // AS4_PATH (type 17, optional transitive) carries the real AS.
  const std::vector<uint8_t> as4 = {0xc0, 17, 6, 2, 1, 0xfa, 0x56, 0xea, 0x01};
  EXPECT_NE(std::search(wire.begin(), wire.end(), as4.begin(), as4.end()), wire.end());
  // A 4-octet peer gets no AS4_PATH.
  const auto four = encodeUpdate(u, true);
  EXPECT_EQ(std::search(four.begin(), four.end(), as4.begin(), as4.end()), four.end());
}

TEST(BgpWireTest, EndOfRibIsRecognisedPerFamily) {
  for (Family f : {kIpv4Unicast, kIpv6Unicast}) {
    const auto d = decodeMessage(encodeEndOfRib(f), {});
    ASSERT_TRUE(d.ok());
    EXPECT_EQ(d.value->update.endOfRib(), f);
  }
  EXPECT_EQ(encodeEndOfRib(kIpv4Unicast).size(), 23u);
}

struct UpdateCase {
  const char* name;
  std::vector<uint8_t> body;
  uint8_t subcode;
  bool treat_as_withdraw;
};

TEST(BgpWireTest, BadUpdatesAreWithdrawnOrResetAsRfc7606Says) {
  const std::vector<uint8_t> ok_attrs = {0x40, 1, 1, 0, 0x40, 2, 0, 0x40, 3, 4, 10, 0, 0, 1};
  auto with = [&](std::vector<uint8_t> attrs, std::vector<uint8_t> nlri = {32, 1, 2, 3, 4}) {
    std::vector<uint8_t> b = {0, 0, 0, static_cast<uint8_t>(attrs.size())};
    b.insert(b.end(), attrs.begin(), attrs.end());
    b.insert(b.end(), nlri.begin(), nlri.end());
    return b;
  };
  auto replace = [&](size_t at, uint8_t v) {
    auto a = ok_attrs;
    a[at] = v;
    return a;
  };
  ASSERT_TRUE(decodeUpdate(with(ok_attrs), {}).ok());
  const std::vector<UpdateCase> cases = {
      {"ORIGIN 7", with(replace(3, 7)), 6, true},
      {"ORIGIN flagged optional", with(replace(0, 0xc0)), 4, true},
      {"NEXT_HOP of 3 bytes", with({0x40, 1, 1, 0, 0x40, 2, 0, 0x40, 3, 3, 10, 0, 0}), 5, true},
      {"missing NEXT_HOP", with({0x40, 1, 1, 0, 0x40, 2, 0}), 3, true},
      {"missing AS_PATH", with({0x40, 1, 1, 0, 0x40, 3, 4, 10, 0, 0, 1}), 3, true},
      {"AS_PATH segment type 9",
       with(cat({0x40, 2, 6, 9, 1, 0, 0, 0, 1}, {0x40, 1, 1, 0, 0x40, 3, 4, 1, 1, 1, 1})), 11,
       true},
      {"COMMUNITIES of 3 bytes", with(cat(ok_attrs, {0xc0, 8, 3, 1, 2, 3})), 5, true},
      {"LARGE_COMMUNITY of 8 bytes", with(cat(ok_attrs, {0xc0, 32, 8, 0, 0, 0, 0, 0, 0, 0, 0})), 5,
       true},
      {"attribute repeated", with(cat(ok_attrs, {0x40, 1, 1, 0})), 1, true},
      {"attribute overruns", with(cat(ok_attrs, {0xc0, 8, 40, 1})), 1, true},
      {"unknown well-known", with(cat(ok_attrs, {0x40, 99, 0})), 2, false},
      {"withdrawn length overruns", {0, 9, 24, 1, 2}, 1, false},
      {"prefix /33", with(ok_attrs, {33, 1, 2, 3, 4, 5}), 10, false},
      {"MP_REACH next hop of 5 bytes",
       with(cat(ok_attrs, {0x80, 14, 10, 0, 2, 1, 5, 1, 2, 3, 4, 5, 0})), 9, false},
  };
  for (const auto& c : cases) {
    const auto d = decodeUpdate(c.body, {});
    ASSERT_FALSE(d.ok()) << c.name;
    EXPECT_EQ(d.error.notification.code, 3) << c.name;
    EXPECT_EQ(d.error.notification.subcode, c.subcode) << c.name << ": " << d.error.reason;
    EXPECT_EQ(d.error.treat_as_withdraw, c.treat_as_withdraw) << c.name;
  }
  // An unknown optional attribute is skipped and counted.
  const auto d = decodeUpdate(with(cat(ok_attrs, {0xc0, 99, 2, 7, 7})), {});
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d.value->unknown_attributes, 1u);
}

TEST(BgpWireTest, NotificationRoundTripsAndIsDescribed) {
  Notification n{6, kCeaseAdminShutdown, {3, 'b', 'y', 'e'}};
  const auto d = decodeMessage(encodeNotification(n), {});
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d.value->notification.data, n.data);
  EXPECT_EQ(describe(n), "Cease / Administrative Shutdown");
  EXPECT_EQ(describe({2, 2, {}}), "OPEN Message Error / Bad Peer AS");
}

TEST(BgpWireTest, PackerFillsMessagesUpTo4096BytesAndLosesNothing) {
  std::vector<OutRoute> routes;
  for (int i = 0; i < 3000; ++i) {
    OutRoute r;
    r.prefix =
        pfx(("10." + std::to_string(i / 256) + "." + std::to_string(i % 256) + ".1/32").c_str());
    r.next_hop = ip("10.255.0.1");
    r.attributes.communities = {static_cast<uint32_t>(i % 2)};  // two attribute groups
    routes.push_back(r);
  }
  for (int i = 0; i < 500; ++i) {
    OutRoute r;
    r.prefix = pfx(("2001:db8::" + std::to_string(i) + "/128").c_str());
    r.next_hop = ip("2001:db8:ff::1");
    routes.push_back(r);
  }
  const std::vector<IpPrefix> withdraw = {pfx("192.0.2.0/24"), pfx("2001:db8:1::/64")};
  const auto msgs = packUpdates(withdraw, routes, true);
  std::set<IpPrefix> seen, gone;
  for (const auto& m : msgs) {
    ASSERT_LE(m.size(), kMaxMessageSize);
    const auto d = decodeMessage(m, {});
    ASSERT_TRUE(d.ok()) << d.error.reason;
    const UpdateMessage& u = d.value->update;
    for (const auto& p : u.nlri) EXPECT_TRUE(seen.insert(p).second);
    if (u.mp_reach) {
      for (const auto& p : u.mp_reach->nlri) EXPECT_TRUE(seen.insert(p).second);
    }
    for (const auto& p : u.withdrawn) gone.insert(p);
    if (u.mp_unreach) gone.insert(u.mp_unreach->withdrawn.begin(), u.mp_unreach->withdrawn.end());
  }
  EXPECT_EQ(seen.size(), routes.size());
  EXPECT_EQ(gone, std::set<IpPrefix>(withdraw.begin(), withdraw.end()));
  EXPECT_LT(msgs.size(), 30u);  // ~4 KiB each, not one per route
}

}  // namespace
}  // namespace flowlb::agent::bgp
