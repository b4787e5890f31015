#include "agent/packet/checksum.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <random>
#include <string>
#include <vector>

#include "agent/packet/builder.h"
#include "agent/packet/parser.h"
#include "agent/packet/rewrite.h"
#include "agent/testing/test_specs.h"

namespace flowlb::agent {
namespace {

using test_specs::ip;
using test_specs::tuple;

IpAddr randomAddr(std::mt19937& rng, bool v4) {
  uint8_t b[16];
  for (auto& x : b) x = static_cast<uint8_t>(rng());
  if (v4) return IpAddr::fromV4(b);
  b[0] = 0x20 | (b[0] & 0x0f);  // never IPv4-mapped
  return IpAddr::fromV6(b);
}

uint16_t storedL4Checksum(const std::vector<uint8_t>& f, const ParsedPacket& p) {
  return loadBe16(&f[p.outer.l4 + l4ChecksumOffset(p.tuple.proto, p.outer.v4)]);
}

// The oracle, written from RFC 1071 §1 and shared with no production code
// (not csumAdd/csumFold): the 16-bit one's-complement sum of the bytes read as
// big-endian words, an odd last byte padded with a zero byte, the carries
// added back in. A correct checksum field makes the sum over everything it
// covers 0xffff.
uint16_t rfc1071Sum(const std::vector<uint8_t>& bytes) {
  uint64_t sum = 0;
  for (size_t i = 0; i < bytes.size(); i += 2) {
    const uint64_t hi = bytes[i];
    const uint64_t lo = i + 1 < bytes.size() ? bytes[i + 1] : 0;
    sum += hi * 256 + lo;
  }
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >> 16);
  return static_cast<uint16_t>(sum);
}

// The pseudo-header the transport checksum covers, as bytes: RFC 793 §3.1 /
// RFC 768 for IPv4 (source, destination, zero, protocol, 16-bit length),
// RFC 8200 §8.1 for IPv6 (source, destination, 32-bit length, three zero
// bytes, next header).
std::vector<uint8_t> pseudoHeader(const FlowTuple& t, bool v4, size_t l4_len) {
  std::vector<uint8_t> h;
  const auto append = [&h](const uint8_t* p, size_t n) { h.insert(h.end(), p, p + n); };
  if (v4) {
    append(t.src.v4(), 4);
    append(t.dst.v4(), 4);
    h.push_back(0);
    h.push_back(t.proto);
    h.push_back(static_cast<uint8_t>(l4_len >> 8));
    h.push_back(static_cast<uint8_t>(l4_len));
  } else {
    append(t.src.bytes.data(), 16);
    append(t.dst.bytes.data(), 16);
    for (int shift = 24; shift >= 0; shift -= 8) h.push_back(static_cast<uint8_t>(l4_len >> shift));
    h.insert(h.end(), {0, 0, 0, t.proto});
  }
  return h;
}

// Pseudo-header and segment, checksum included: 0xffff when the checksum is right.
uint16_t l4VerifySum(const std::vector<uint8_t>& f, const ParsedPacket& p) {
  std::vector<uint8_t> covered = pseudoHeader(p.tuple, p.outer.v4, p.outer.l4_len);
  covered.insert(covered.end(), f.begin() + static_cast<std::ptrdiff_t>(p.outer.l4),
                 f.begin() + static_cast<std::ptrdiff_t>(p.outer.l4 + p.outer.l4_len));
  return rfc1071Sum(covered);
}

uint16_t ipv4VerifySum(const std::vector<uint8_t>& f, const ParsedPacket& p) {
  return rfc1071Sum(std::vector<uint8_t>(f.begin() + static_cast<std::ptrdiff_t>(p.outer.l3),
                                         f.begin() + static_cast<std::ptrdiff_t>(p.outer.l4)));
}

// Checks the checksums in `f` against full recomputation; `what` names the
// step for failure messages. Returns false on the first mismatch.
bool checksumsMatch(const std::vector<uint8_t>& f, const ParsedPacket& p, const std::string& what) {
  if (p.outer.v4) {
    const uint16_t stored = loadBe16(&f[p.outer.l3 + 10]);
    EXPECT_EQ(stored, ipv4HeaderChecksum(f.data(), p.outer)) << what;
    EXPECT_EQ(ipv4VerifySum(f, p), 0xffff) << what;
    if (stored != ipv4HeaderChecksum(f.data(), p.outer)) return false;
  }
  const uint16_t stored = storedL4Checksum(f, p);
  const uint16_t full = l4Checksum(f.data(), p.outer, p.tuple);
  if (p.tuple.proto == kProtoUDP) {
    EXPECT_NE(stored, 0) << what << ": UDP checksum 0 means none";
  }
  EXPECT_EQ(stored, full) << what;
  EXPECT_EQ(l4VerifySum(f, p), 0xffff) << what;
  return stored == full && l4VerifySum(f, p) == 0xffff;
}

TEST(ChecksumTest, Ipv4HeaderKnownAnswer) {
  // The classic example header: 4500 0073 0000 4000 4011 b861 c0a8 0001 c0a8 00c7.
  const std::vector<uint8_t> h = {0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11,
                                  0xb8, 0x61, 0xc0, 0xa8, 0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7};
  L3L4 l;
  l.l3 = 0;
  EXPECT_EQ(ipv4HeaderChecksum(h.data(), l), 0xb861);
  EXPECT_EQ(rfc1071Sum(h), 0xffff);
  EXPECT_EQ(csumFold(csumAdd(h.data(), h.size(), 0)), 0xffff);
}

TEST(ChecksumTest, OracleKnownAnswers) {
  // RFC 1071 §3's worked example: the words 0001 f203 f4f5 f6f7 sum to ddf2.
  EXPECT_EQ(rfc1071Sum({0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7}), 0xddf2);
  EXPECT_EQ(rfc1071Sum({}), 0x0000);
  EXPECT_EQ(rfc1071Sum({0xab}), 0xab00);                    // odd byte padded
  EXPECT_EQ(rfc1071Sum({0xff, 0xff, 0x00, 0x01}), 0x0001);  // end-around carry
}

TEST(ChecksumTest, CsumAddAndFoldMatchTheOracleOnRandomBuffers) {
  std::mt19937 rng(1071);
  for (int i = 0; i < 2000; ++i) {
    std::vector<uint8_t> b(rng() % 1601);
    for (auto& x : b) x = static_cast<uint8_t>(rng());
    // Chained over even-length pieces, as the datapath adds headers and payload.
    uint32_t sum = 0;
    size_t at = 0;
    while (at < b.size()) {
      const size_t piece = std::min(b.size() - at, 2 * (1 + rng() % 100));
      sum = csumAdd(b.data() + at, piece, sum);
      at += piece;
    }
    ASSERT_EQ(csumFold(sum), rfc1071Sum(b)) << "buffer " << i << " of " << b.size() << " bytes";
  }
}

TEST(ChecksumTest, IncrementalUpdateMatchesRfc1624Example) {
  // RFC 1624 section 4: HC = 0xdd2f, m = 0x5555 -> m' = 0x3285 gives 0x0000.
  uint8_t c[2];
  storeBe16(c, 0xdd2f);
  uint8_t field[2];
  storeBe16(field, 0x5555);
  CsumDelta d;
  d.replace16(field, 0x3285);
  d.apply(c);
  EXPECT_EQ(loadBe16(c), 0x0000);
}

TEST(ChecksumTest, OddLengthIsPaddedWithZero) {
  const uint8_t odd[3] = {0x12, 0x34, 0x56};
  const uint8_t even[4] = {0x12, 0x34, 0x56, 0x00};
  EXPECT_EQ(csumAdd(odd, 3, 0), csumAdd(even, 4, 0));
  EXPECT_EQ(csumFold(csumAdd(odd, 3, 0)), rfc1071Sum({0x12, 0x34, 0x56}));
}

TEST(ChecksumTest, BuiltFramesVerify) {
  FrameSpec s;
  s.tuple = tuple("198.51.100.7", 51000, "192.0.2.10", 80, kProtoTCP);
  s.payload = 7;
  const auto f = buildFrame(s);
  ParsedPacket p;
  ASSERT_EQ(parsePacket(f.data(), f.size(), p).status, ParseStatus::kOk);
  EXPECT_EQ(ipv4VerifySum(f, p), 0xffff);
  EXPECT_EQ(l4VerifySum(f, p), 0xffff);
  // A flipped payload bit must break verification.
  auto bad = f;
  bad.back() ^= 0x01;
  EXPECT_NE(l4VerifySum(bad, p), 0xffff);
}

TEST(ChecksumTest, IncrementalRewritesMatchFullRecomputeOnRandomPackets) {
  std::mt19937 rng(20240517);
  constexpr int kPackets = 6000;
  int checked = 0;
  for (int i = 0; i < kPackets; ++i) {
    const bool v4 = rng() % 2 == 0;
    FrameSpec s;
    s.tuple.proto = rng() % 2 == 0 ? kProtoTCP : kProtoUDP;
    s.tuple.src = randomAddr(rng, v4);
    s.tuple.dst = randomAddr(rng, v4);
    s.tuple.sport = static_cast<uint16_t>(rng());
    s.tuple.dport = static_cast<uint16_t>(rng());
    s.payload = rng() % 201;
    if (v4 && rng() % 4 == 0) s.ipv4_options = 4 * (1 + rng() % 10);
    if (!v4) s.ipv6_ext_header = rng() % 4 == 0;
    auto f = buildFrame(s);
    ParsedPacket p;
    ASSERT_EQ(parsePacket(f.data(), f.size(), p).status, ParseStatus::kOk) << "packet " << i;
    const std::string id = "packet " + std::to_string(i);
    ASSERT_TRUE(checksumsMatch(f, p, id + " as built"));

    // The four rewrites in a random order, checking after each.
    int order[4] = {0, 1, 2, 3};
    std::shuffle(order, order + 4, rng);
    for (int step : order) {
      const Endpoint which = step % 2 == 0 ? Endpoint::kSource : Endpoint::kDestination;
      if (step < 2) {
        rewriteAddress(f.data(), p.outer, p.tuple, which, randomAddr(rng, v4));
      } else {
        rewritePort(f.data(), p.outer, p.tuple, which, static_cast<uint16_t>(rng()));
      }
      ASSERT_TRUE(checksumsMatch(f, p, id + " after step " + std::to_string(step)));
    }
    // The NAT fast path: all four fields in one pass.
    rewriteFlow(f.data(), p.outer, p.tuple, randomAddr(rng, v4), static_cast<uint16_t>(rng()),
                randomAddr(rng, v4), static_cast<uint16_t>(rng()));
    ASSERT_TRUE(checksumsMatch(f, p, id + " after rewriteFlow"));
    // The rewritten frame parses to the tuple the rewrites reported.
    ParsedPacket again;
    ASSERT_EQ(parsePacket(f.data(), f.size(), again).status, ParseStatus::kOk);
    EXPECT_EQ(again.tuple.src, p.tuple.src);
    EXPECT_EQ(again.tuple.dst, p.tuple.dst);
    EXPECT_EQ(again.tuple.sport, p.tuple.sport);
    EXPECT_EQ(again.tuple.dport, p.tuple.dport);
    ++checked;
  }
  EXPECT_EQ(checked, kPackets);
}

TEST(ChecksumTest, UdpChecksumNeverBecomesZeroAfterRewrite) {
  // Search for a port change after which the true sum is 0x0000: it must be
  // sent as 0xffff, since 0 means "no checksum" (RFC 768).
  FrameSpec s;
  s.tuple = tuple("198.51.100.7", 5353, "192.0.2.30", 53, kProtoUDP);
  s.payload = 12;
  const auto base = buildFrame(s);
  ParsedPacket p;
  ASSERT_EQ(parsePacket(base.data(), base.size(), p).status, ParseStatus::kOk);
  const uint16_t c = storedL4Checksum(base, p);
  // Changing sport by d changes the sum by d; the checksum is ~sum, so the
  // sum becomes 0xffff (checksum 0) when d == c (mod 0xffff).
  const uint16_t port = static_cast<uint16_t>((uint32_t{s.tuple.sport} + c) % 0xffff);
  auto f = base;
  rewritePort(f.data(), p.outer, p.tuple, Endpoint::kSource, port);
  EXPECT_EQ(storedL4Checksum(f, p), 0xffff);
  EXPECT_TRUE(checksumsMatch(f, p, "zero-sum rewrite"));
}

TEST(ChecksumTest, Ipv4UdpWithoutChecksumStaysWithout) {
  FrameSpec s;
  s.tuple = tuple("198.51.100.7", 5353, "192.0.2.30", 53, kProtoUDP);
  s.payload = 20;
  s.udp_zero_checksum = true;
  auto f = buildFrame(s);
  ParsedPacket p;
  ASSERT_EQ(parsePacket(f.data(), f.size(), p).status, ParseStatus::kOk);
  ASSERT_EQ(storedL4Checksum(f, p), 0);
  rewriteAddress(f.data(), p.outer, p.tuple, Endpoint::kDestination, ip("10.1.0.11"));
  rewriteAddress(f.data(), p.outer, p.tuple, Endpoint::kSource, ip("10.0.0.1"));
  rewritePort(f.data(), p.outer, p.tuple, Endpoint::kDestination, 5353);
  rewritePort(f.data(), p.outer, p.tuple, Endpoint::kSource, 40001);
  EXPECT_EQ(storedL4Checksum(f, p), 0);
  EXPECT_EQ(loadBe16(&f[p.outer.l3 + 10]), ipv4HeaderChecksum(f.data(), p.outer));
  EXPECT_EQ(loadBe16(&f[p.outer.l3 + 16]), 0x0a01);  // 10.1.x.x
  EXPECT_EQ(p.tuple.dport, 5353);
}

}  // namespace
}  // namespace flowlb::agent
