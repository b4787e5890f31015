#include "agent/packet/proxy_protocol.h"

#include <gtest/gtest.h>

#include <vector>

#include "agent/packet/builder.h"
#include "agent/packet/checksum.h"
#include "agent/packet/parser.h"
#include "agent/testing/test_specs.h"

namespace flowlb::agent {
namespace {

using test_specs::ip;

ParsedPacket parse(const std::vector<uint8_t>& f) {
  ParsedPacket p;
  EXPECT_EQ(parsePacket(f.data(), f.size(), p).status, ParseStatus::kOk);
  return p;
}

// The transport checksum the frame carries equals a full computation.
void expectChecksumsValid(const std::vector<uint8_t>& f) {
  const ParsedPacket p = parse(f);
  if (p.outer.v4) {
    EXPECT_EQ(ipv4HeaderChecksum(f.data(), p.outer), loadBe16(&f[p.outer.l3 + 10]));
  }
  const size_t off = l4ChecksumOffset(p.tuple.proto, p.outer.v4);
  EXPECT_EQ(l4Checksum(f.data(), p.outer, p.tuple), loadBe16(&f[p.outer.l4 + off]));
}

// The examples of the specification, section 2.2: the signature, version 2
// and PROXY, the family and transport, the length, addresses then ports.
TEST(ProxyV2Test, HeaderFollowsTheSpecificationForEachFamily) {
  uint8_t h[kProxyV2MaxHeader];
  ASSERT_EQ(writeProxyV2(h, ProxyCommand::kProxy, kProtoTCP, ip("203.0.113.7"), 56324,
                         ip("198.51.100.2"), 443),
            28u);
  const std::vector<uint8_t> v4(h, h + 28);
  const std::vector<uint8_t> expected = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51,
                                         0x55, 0x49, 0x54, 0x0A,  // signature
                                         0x21,                    // v2, PROXY
                                         0x11,                    // INET, STREAM
                                         0x00, 0x0C,              // 12 bytes follow
                                         203,  0,    113,  7,    198,  51,   100,  2,  // src, dst
                                         0xDC, 0x04, 0x01, 0xBB};                      // 56324, 443
  EXPECT_EQ(v4, expected);

  ASSERT_EQ(writeProxyV2(h, ProxyCommand::kProxy, kProtoUDP, ip("2001:db8::7"), 5353,
                         ip("2001:db8::53"), 53),
            52u);
  EXPECT_EQ(h[13], 0x22);  // INET6, DGRAM
  EXPECT_EQ(loadBe16(h + 14), 36);
  EXPECT_EQ(h[16 + 15], 7);
  EXPECT_EQ(h[32 + 15], 0x53);
  EXPECT_EQ(loadBe16(h + 48), 5353);
  EXPECT_EQ(loadBe16(h + 50), 53);

  ASSERT_EQ(writeProxyV2(h, ProxyCommand::kLocal, kProtoTCP, ip("10.0.0.1"), 1, ip("10.0.0.2"), 2),
            16u);
  EXPECT_EQ(h[12], 0x20);  // v2, LOCAL (health checks)
  EXPECT_EQ(h[13], 0x00);
  EXPECT_EQ(loadBe16(h + 14), 0);
}

TEST(ProxyV2Test, InsertingTheHeaderKeepsEveryLengthAndChecksumRight) {
  for (const char* family : {"v4", "v6"}) {
    const bool v4 = std::string(family) == "v4";
    FrameSpec s;
    s.tuple = v4 ? FlowTuple{ip("10.0.0.1"), ip("10.1.0.1"), 40000, 8080, kProtoTCP}
                 : FlowTuple{ip("fd00::1"), ip("fd00:1::1"), 40000, 8080, kProtoTCP};
    s.tcp_flags = kTcpAck;
    s.payload = v4 ? 0 : 100;  // a pure ACK (with Ethernet padding), or data
    auto f = buildFrame(s);
    if (v4) f.resize(60, 0);  // the minimum Ethernet frame: 6 bytes of padding
    const std::vector<uint8_t> data(f.end() - static_cast<long>(s.payload) - (v4 ? 6 : 0),
                                    f.end() - (v4 ? 6 : 0));
    ParsedPacket p = parse(f);
    uint8_t h[kProxyV2MaxHeader];
    const size_t hlen =
        writeProxyV2(h, ProxyCommand::kProxy, kProtoTCP, ip(v4 ? "203.0.113.7" : "2001:db8::7"),
                     5000, ip(v4 ? "192.0.2.10" : "2001:db8::10"), 80);
    size_t len = f.size();
    f.resize(f.size() + 64);
    ASSERT_TRUE(insertProxyHeader(f.data(), &len, f.size(), p, h, hlen)) << family;
    f.resize(len);
    expectChecksumsValid(f);
    const ParsedPacket q = parse(f);
    EXPECT_EQ(tcpPayloadLength(f.data(), q), hlen + s.payload) << family;
    const uint8_t* payload = f.data() + q.outer.l4 + 20;
    EXPECT_TRUE(std::equal(h, h + hlen, payload)) << family;
    EXPECT_TRUE(std::equal(data.begin(), data.end(), payload + hlen)) << family;
    // No room: nothing changes.
    auto g = buildFrame(s);
    ParsedPacket pg = parse(g);
    size_t glen = g.size();
    const auto before = g;
    EXPECT_FALSE(insertProxyHeader(g.data(), &glen, g.size(), pg, h, hlen));
    EXPECT_EQ(g, before);
  }
}

TEST(ProxyV2Test, AcksAndSackBlocksMoveBackAndTheMssShrinks) {
  const uint32_t origin = 1000;  // the client's ISN + 1
  const uint32_t hlen = 28;
  FrameSpec s;
  s.tuple = FlowTuple{ip("10.1.0.1"), ip("10.0.0.1"), 8080, 40000, kProtoTCP};
  s.tcp_flags = kTcpAck;
  s.ack = origin + hlen + 500;
  // NOP NOP SACK(2 blocks): one past the header, one inside it.
  s.tcp_options = {1, 1, 5, 18};
  for (uint32_t edge : {origin + hlen + 600, origin + hlen + 700, origin + 10, origin + hlen}) {
    s.tcp_options.push_back(static_cast<uint8_t>(edge >> 24));
    s.tcp_options.push_back(static_cast<uint8_t>(edge >> 16));
    s.tcp_options.push_back(static_cast<uint8_t>(edge >> 8));
    s.tcp_options.push_back(static_cast<uint8_t>(edge));
  }
  auto f = buildFrame(s);
  ParsedPacket p = parse(f);
  unshiftTcpAcks(f.data(), p, origin, hlen);
  expectChecksumsValid(f);
  const uint8_t* tcp = f.data() + p.outer.l4;
  EXPECT_EQ(loadBe32(tcp + 8), origin + 500);
  EXPECT_EQ(loadBe32(tcp + 24), origin + 600);
  EXPECT_EQ(loadBe32(tcp + 28), origin + 700);
  EXPECT_EQ(loadBe32(tcp + 32), origin);  // inside the header: the origin
  EXPECT_EQ(loadBe32(tcp + 36), origin);

  // The SYN-ACK's MSS, at an even and at an odd offset.
  for (bool odd : {false, true}) {
    FrameSpec syn = s;
    syn.tcp_flags = kTcpSyn | kTcpAck;
    syn.tcp_options =
        odd ? std::vector<uint8_t>{1, 2, 4, 0x05, 0xb4} : std::vector<uint8_t>{2, 4, 0x05, 0xb4};
    auto g = buildFrame(syn);
    ParsedPacket pg = parse(g);
    shrinkTcpMss(g.data(), pg, 28);
    expectChecksumsValid(g);
    EXPECT_EQ(loadBe16(g.data() + pg.outer.l4 + 20 + (odd ? 3 : 2)), 1460 - 28) << odd;
  }
}

TEST(ProxyV2Test, SequenceNumbersMoveUpWithTheirChecksum) {
  FrameSpec s;
  s.tuple = FlowTuple{ip("fd00::1"), ip("fd00:1::1"), 40000, 8080, kProtoTCP};
  s.seq = 0xfffffff0;  // wraps
  s.payload = 10;
  auto f = buildFrame(s);
  ParsedPacket p = parse(f);
  addTcpSeq(f.data(), p, 52);
  expectChecksumsValid(f);
  EXPECT_EQ(tcpSeq(f.data(), p), 0x24u);
}

}  // namespace
}  // namespace flowlb::agent
