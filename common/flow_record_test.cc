#include "common/flow_record.h"

#include <gtest/gtest.h>

namespace flowlb {
namespace {

IpAddr ip(const char* s) {
  return *IpAddr::parse(s);
}

FlowRecord sample() {
  FlowRecord r;
  r.proto = 6;
  r.flags = kFlowRecordProxyV2;
  r.proxy_seq = 0xdeadbeef;
  r.client = ip("192.0.2.7");
  r.vip = ip("10.10.1.100");
  r.backend = ip("10.10.2.11");
  r.client_port = 40001;
  r.vip_port = 80;
  r.backend_port = 8080;
  r.nat_port = 61003;
  return r;
}

TEST(FlowRecord, RoundTripsBothFamiliesAndOps) {
  FlowRecord v6 = sample();
  v6.op = FlowRecordOp::kDelete;
  v6.proto = 17;
  v6.flags = 0;
  v6.client = ip("fd10:1::2");
  v6.vip = ip("fd10:1::100");
  v6.backend = ip("fd10:2::11");
  std::string wire;
  appendFlowRecord(&wire, sample());
  appendFlowRecord(&wire, v6);
  ASSERT_EQ(wire.size(), 2 * kFlowRecordBytes);
  auto got = decodeFlowRecords(wire, 16);
  ASSERT_TRUE(got) << got.error();
  ASSERT_EQ(got->size(), 2u);
  EXPECT_EQ((*got)[0], sample());
  EXPECT_EQ((*got)[1], v6);
}

TEST(FlowRecord, LayoutIsNetworkOrderAtFixedOffsets) {
  std::string wire;
  appendFlowRecord(&wire, sample());
  const auto* p = reinterpret_cast<const uint8_t*>(wire.data());
  EXPECT_EQ(p[0], 1);
  EXPECT_EQ(p[1], 6);
  EXPECT_EQ(p[4], 0xde);
  EXPECT_EQ(p[7], 0xef);
  EXPECT_EQ(p[24 + 12], 10);  // the VIP, IPv4 mapped
  EXPECT_EQ(p[58], 0);        // VIP port 80
  EXPECT_EQ(p[59], 80);
  EXPECT_EQ((p[62] << 8) | p[63], 61003);
}

TEST(FlowRecord, RefusesTheWholeBatchForOneBadRecord) {
  std::string good;
  appendFlowRecord(&good, sample());
  struct Case {
    size_t offset;
    uint8_t value;
    const char* why;
  };
  const Case cases[] = {
      {0, 3, "unknown op"}, {1, 1, "neither TCP nor UDP"},     {2, 0x80, "unknown flags"},
      {3, 1, "reserved"},   {8 + 10, 0, "different families"},  // client no longer IPv4 mapped
      {62, 0, "zero port"},                                     // with 63 below
  };
  for (const Case& c : cases) {
    std::string bad = good;
    bad[c.offset] = static_cast<char>(c.value);
    if (c.offset == 62) bad[63] = 0;
    std::string batch = good + bad;
    auto got = decodeFlowRecords(batch, 16);
    ASSERT_FALSE(got) << c.why;
    EXPECT_NE(got.error().find(c.why), std::string::npos) << got.error();
    EXPECT_NE(got.error().find("record 1"), std::string::npos) << got.error();
  }
}

TEST(FlowRecord, RefusesTornAndOversizedBatches) {
  std::string wire;
  for (int i = 0; i < 3; ++i) appendFlowRecord(&wire, sample());
  EXPECT_FALSE(decodeFlowRecords(std::string_view(wire).substr(0, 100), 16));
  EXPECT_FALSE(decodeFlowRecords(wire, 2));
  EXPECT_TRUE(decodeFlowRecords(wire, 3));
  EXPECT_TRUE(decodeFlowRecords("", 0));
}

TEST(FlowRecord, RefusesAnUnspecifiedAddress) {
  FlowRecord r = sample();
  r.backend = ip("0.0.0.0");
  std::string wire;
  appendFlowRecord(&wire, r);
  auto got = decodeFlowRecords(wire, 1);
  ASSERT_FALSE(got);
  EXPECT_NE(got.error().find("unspecified"), std::string::npos);
}

}  // namespace
}  // namespace flowlb
