#include "agent/packet/parser.h"

#include <gtest/gtest.h>

#include <memory>
#include <vector>

#include "agent/packet/builder.h"
#include "agent/testing/test_specs.h"

namespace flowlb::agent {
namespace {

using test_specs::ip;
using test_specs::tuple;

std::vector<uint8_t> frame(const FlowTuple& t, size_t payload = 0) {
  FrameSpec s;
  s.tuple = t;
  s.payload = payload;
  return buildFrame(s);
}

ParseOutcome parse(const std::vector<uint8_t>& f, ParsedPacket& p) {
  return parsePacket(f.data(), f.size(), p);
}

void expectTuple(const FlowTuple& got, const FlowTuple& want) {
  EXPECT_EQ(got.src, want.src) << got.src.toString();
  EXPECT_EQ(got.dst, want.dst) << got.dst.toString();
  EXPECT_EQ(got.sport, want.sport);
  EXPECT_EQ(got.dport, want.dport);
  EXPECT_EQ(got.proto, want.proto);
}

// An IPv6 TCP frame with `count` destination-options headers (8 bytes each)
// between the IPv6 header and TCP. Checksums are not fixed: the parser does
// not verify them.
std::vector<uint8_t> ipv6WithExtHeaders(int count) {
  std::vector<uint8_t> f = frame(tuple("2001:db8::1", 40000, "2001:db8::2", 443, kProtoTCP));
  const size_t l3 = 14;
  const size_t ext_at = l3 + 40;
  std::vector<uint8_t> ext(static_cast<size_t>(count) * 8, 0);
  for (int i = 0; i < count; ++i) ext[static_cast<size_t>(i) * 8] = i + 1 < count ? 60 : kProtoTCP;
  f.insert(f.begin() + static_cast<long>(ext_at), ext.begin(), ext.end());
  if (count > 0) f[l3 + 6] = 60;
  storeBe16(&f[l3 + 4], static_cast<uint16_t>(f.size() - ext_at));
  return f;
}

TEST(ParserTest, Ipv4TcpGivesTupleFlagsAndOffsets) {
  const FlowTuple t = tuple("198.51.100.7", 51000, "192.0.2.10", 80, kProtoTCP);
  FrameSpec s;
  s.tuple = t;
  s.tcp_flags = kTcpSyn;
  s.payload = 10;
  const auto f = buildFrame(s);
  ParsedPacket p;
  const ParseOutcome r = parse(f, p);
  ASSERT_EQ(r.status, ParseStatus::kOk);
  EXPECT_EQ(r.reason, DropReason::kNone);
  expectTuple(p.tuple, t);
  EXPECT_EQ(p.tcp_flags, kTcpSyn);
  EXPECT_FALSE(p.vlan);
  EXPECT_TRUE(p.outer.v4);
  EXPECT_EQ(p.outer.l3, 14u);
  EXPECT_EQ(p.outer.l4, 34u);
  EXPECT_EQ(p.outer.l4_len, 30u);
  EXPECT_TRUE(p.outer.has_l4);
  EXPECT_FALSE(p.outer.is_fragment);
  EXPECT_FALSE(p.icmp_error);
  EXPECT_EQ(p.len, f.size());
}

TEST(ParserTest, Ipv4AndIpv6Udp) {
  for (const FlowTuple& t : {tuple("198.51.100.7", 5353, "192.0.2.30", 53, kProtoUDP),
                             tuple("2001:db8::7", 5353, "2001:db8::53", 53, kProtoUDP)}) {
    const auto f = frame(t, 33);
    ParsedPacket p;
    ASSERT_EQ(parse(f, p).status, ParseStatus::kOk) << t.src.toString();
    expectTuple(p.tuple, t);
    EXPECT_EQ(p.outer.v4, t.src.isV4());
    EXPECT_EQ(p.outer.l4, t.src.isV4() ? 34u : 54u);
    EXPECT_EQ(p.outer.l4_len, 8u + 33u);
  }
}

TEST(ParserTest, VlanTaggedFrameRecordsTagAndShiftsOffsets) {
  FrameSpec s;
  s.tuple = tuple("198.51.100.7", 51000, "192.0.2.10", 80, kProtoTCP);
  s.vlan = 100;
  const auto f = buildFrame(s);
  ParsedPacket p;
  ASSERT_EQ(parse(f, p).status, ParseStatus::kOk);
  EXPECT_TRUE(p.vlan);
  EXPECT_EQ(p.vlan_tci & 0x0fff, 100);
  EXPECT_EQ(p.outer.l3, 18u);
  EXPECT_EQ(p.outer.l4, 38u);
  expectTuple(p.tuple, s.tuple);
}

TEST(ParserTest, Ipv4OptionsAreSkipped) {
  FrameSpec s;
  s.tuple = tuple("198.51.100.7", 51000, "192.0.2.10", 80, kProtoTCP);
  s.ipv4_options = 8;
  const auto f = buildFrame(s);
  ParsedPacket p;
  ASSERT_EQ(parse(f, p).status, ParseStatus::kOk);
  EXPECT_EQ(p.outer.l4, 14u + 28u);
  EXPECT_EQ(p.outer.l4_len, 20u);
  expectTuple(p.tuple, s.tuple);
}

TEST(ParserTest, Ipv6DestinationOptionsHeaderIsSkipped) {
  FrameSpec s;
  s.tuple = tuple("2001:db8::7", 51000, "2001:db8::10", 443, kProtoTCP);
  s.ipv6_ext_header = true;
  const auto f = buildFrame(s);
  ParsedPacket p;
  ASSERT_EQ(parse(f, p).status, ParseStatus::kOk);
  EXPECT_FALSE(p.outer.v4);
  EXPECT_EQ(p.outer.l4, 14u + 48u);
  EXPECT_EQ(p.outer.l4_len, 20u);
  expectTuple(p.tuple, s.tuple);
}

TEST(ParserTest, ArpIsNotIp) {
  std::vector<uint8_t> f(42, 0);
  storeBe16(&f[12], kEthP_ARP);
  ParsedPacket p;
  EXPECT_EQ(parse(f, p).status, ParseStatus::kNotIp);
}

TEST(ParserTest, IcmpFragNeededQuotesTheTcpFlow) {
  const FlowTuple quoted_flow = tuple("192.0.2.10", 80, "198.51.100.7", 51000, kProtoTCP);
  const auto quoted = frame(quoted_flow, 100);
  // 28 bytes: the minimum RFC 792 quote (IP header + 8 bytes), and the whole packet.
  for (size_t quote_bytes : {size_t{28}, size_t{1000}}) {
    const auto f = buildIcmpError(ip("203.0.113.1"), ip("192.0.2.10"), 3, 4, quoted, quote_bytes);
    ParsedPacket p;
    ASSERT_EQ(parse(f, p).status, ParseStatus::kOk) << quote_bytes;
    EXPECT_TRUE(p.icmp_error);
    EXPECT_EQ(p.icmp_type, 3);
    EXPECT_EQ(p.icmp_code, 4);
    EXPECT_EQ(p.tuple.proto, kProtoICMP);
    EXPECT_EQ(p.tuple.src, ip("203.0.113.1"));
    EXPECT_TRUE(p.inner.v4);
    EXPECT_TRUE(p.inner.has_l4);
    EXPECT_EQ(p.inner.l3, 14u + 20u + 8u);
    expectTuple(p.inner_tuple, quoted_flow);
  }
}

TEST(ParserTest, Icmpv6PacketTooBigQuotesTheTcpFlow) {
  const FlowTuple quoted_flow = tuple("2001:db8::10", 443, "2001:db8:1::7", 52000, kProtoTCP);
  const auto quoted = frame(quoted_flow, 64);
  const auto f = buildIcmpError(ip("2001:db8:ff::1"), ip("2001:db8::10"), 2, 0, quoted, 48);
  ParsedPacket p;
  ASSERT_EQ(parse(f, p).status, ParseStatus::kOk);
  EXPECT_TRUE(p.icmp_error);
  EXPECT_EQ(p.icmp_type, 2);
  EXPECT_EQ(p.tuple.proto, kProtoICMPv6);
  EXPECT_FALSE(p.inner.v4);
  expectTuple(p.inner_tuple, quoted_flow);
}

TEST(ParserTest, IcmpEchoIsNotAnError) {
  const auto quoted = frame(tuple("192.0.2.10", 80, "198.51.100.7", 51000, kProtoTCP));
  const auto f = buildIcmpError(ip("203.0.113.1"), ip("192.0.2.10"), 8, 0, quoted, 28);
  ParsedPacket p;
  ASSERT_EQ(parse(f, p).status, ParseStatus::kOk);
  EXPECT_FALSE(p.icmp_error);
  EXPECT_EQ(p.icmp_type, 8);
}

TEST(ParserTest, Ipv4FragmentsOnlyTheFirstHasPorts) {
  for (uint8_t proto : {kProtoTCP, kProtoUDP}) {
    const FlowTuple t = tuple("198.51.100.7", 51000, "192.0.2.10", 80, proto);
    const auto frags = fragmentIpv4(frame(t, 200), 24);
    ASSERT_EQ(frags.size(), 2u);
    ParsedPacket first, second;
    ASSERT_EQ(parse(frags[0], first).status, ParseStatus::kOk);
    EXPECT_TRUE(first.outer.is_fragment);
    EXPECT_TRUE(first.outer.first_fragment);
    EXPECT_TRUE(first.outer.more_fragments);
    EXPECT_TRUE(first.outer.has_l4);
    expectTuple(first.tuple, t);

    ASSERT_EQ(parse(frags[1], second).status, ParseStatus::kOk);
    EXPECT_TRUE(second.outer.is_fragment);
    EXPECT_FALSE(second.outer.first_fragment);
    EXPECT_FALSE(second.outer.more_fragments);
    EXPECT_FALSE(second.outer.has_l4);
    EXPECT_EQ(second.tuple.sport, 0);
    EXPECT_EQ(second.tuple.dport, 0);
    EXPECT_EQ(second.tuple.src, t.src);
    EXPECT_EQ(second.outer.frag_id, first.outer.frag_id);
  }
}

TEST(ParserTest, EveryTruncationIsRejectedWithoutReadingPastTheEnd) {
  std::vector<std::vector<uint8_t>> frames;
  FrameSpec s;
  s.tuple = tuple("198.51.100.7", 51000, "192.0.2.10", 80, kProtoTCP);
  s.payload = 5;
  frames.push_back(buildFrame(s));
  s.vlan = 42;
  s.ipv4_options = 8;
  frames.push_back(buildFrame(s));
  s = FrameSpec{};
  s.tuple = tuple("2001:db8::7", 53, "2001:db8::53", 53, kProtoUDP);
  s.ipv6_ext_header = true;
  frames.push_back(buildFrame(s));
  frames.push_back(buildIcmpError(ip("203.0.113.1"), ip("198.51.100.7"), 3, 4, frames[0], 28));
  frames.push_back(buildIcmpError(ip("2001:db8::1"), ip("2001:db8::7"), 2, 0, frames[2], 200));
  for (auto& frag : fragmentIpv4(frames[0], 24)) frames.push_back(frag);
  frames.push_back(ipv6WithExtHeaders(3));
  std::vector<uint8_t> arp(42, 0);
  storeBe16(&arp[12], kEthP_ARP);
  frames.push_back(arp);

  for (const auto& f : frames) {
    ParsedPacket p;
    const ParseStatus whole = parse(f, p).status;
    ASSERT_NE(whole, ParseStatus::kMalformed);
    for (size_t len = 0; len < f.size(); ++len) {
      // An exact-size heap copy, so AddressSanitizer sees any read past `len`.
      auto copy = std::make_unique<uint8_t[]>(len == 0 ? 1 : len);
      std::copy(f.begin(), f.begin() + static_cast<long>(len), copy.get());
      const ParseOutcome r = parsePacket(copy.get(), len, p);
      // A cut IP frame is malformed; a cut ARP frame is still not IP (or too short).
      if (whole == ParseStatus::kOk) {
        EXPECT_EQ(r.status, ParseStatus::kMalformed)
            << "frame of " << f.size() << " cut at " << len;
      } else {
        EXPECT_NE(r.status, ParseStatus::kOk) << "ARP frame cut at " << len;
      }
      if (r.status == ParseStatus::kMalformed) {
        EXPECT_NE(r.reason, DropReason::kNone);
      }
    }
  }
}

TEST(ParserTest, HeaderLengthBelowTwentyIsRejected) {
  auto f = frame(tuple("198.51.100.7", 51000, "192.0.2.10", 80, kProtoTCP));
  f[14] = 0x44;  // IHL 4: 16 bytes
  ParsedPacket p;
  const ParseOutcome r = parse(f, p);
  EXPECT_EQ(r.status, ParseStatus::kMalformed);
  EXPECT_EQ(r.reason, DropReason::kBadIpHeaderLength);
}

TEST(ParserTest, TotalLengthBeyondTheFrameIsRejected) {
  auto f4 = frame(tuple("198.51.100.7", 51000, "192.0.2.10", 80, kProtoTCP));
  storeBe16(&f4[16], static_cast<uint16_t>(f4.size() - 14 + 1));
  auto f6 = frame(tuple("2001:db8::7", 51000, "2001:db8::10", 80, kProtoTCP));
  storeBe16(&f6[18], static_cast<uint16_t>(f6.size() - 54 + 1));
  for (const auto* f : {&f4, &f6}) {
    ParsedPacket p;
    const ParseOutcome r = parse(*f, p);
    EXPECT_EQ(r.status, ParseStatus::kMalformed);
    EXPECT_EQ(r.reason, DropReason::kBadIpTotalLength);
  }
}

TEST(ParserTest, EthertypeAndIpVersionMustAgree) {
  auto f = frame(tuple("198.51.100.7", 51000, "192.0.2.10", 80, kProtoTCP));
  storeBe16(&f[12], kEthP_IPv6);
  ParsedPacket p;
  EXPECT_EQ(parse(f, p).status, ParseStatus::kMalformed);
}

TEST(ParserTest, NineIpv6ExtensionHeadersAreTooMany) {
  ParsedPacket p;
  const auto eight = ipv6WithExtHeaders(8);
  ASSERT_EQ(parse(eight, p).status, ParseStatus::kOk);
  EXPECT_EQ(p.tuple.dport, 443);
  EXPECT_EQ(p.outer.l4, 14u + 40u + 64u);

  const ParseOutcome r = parse(ipv6WithExtHeaders(9), p);
  EXPECT_EQ(r.status, ParseStatus::kMalformed);
  EXPECT_EQ(r.reason, DropReason::kTooManyExtHeaders);
}

}  // namespace
}  // namespace flowlb::agent
