#include "agent/packet/proxy_protocol.h"

#include <cstring>

#include "agent/packet/checksum.h"

namespace flowlb::agent {
namespace {

constexpr uint8_t kSignature[12] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
                                    0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};

void storeBe32(uint8_t* p, uint32_t v) {
  p[0] = static_cast<uint8_t>(v >> 24);
  p[1] = static_cast<uint8_t>(v >> 16);
  p[2] = static_cast<uint8_t>(v >> 8);
  p[3] = static_cast<uint8_t>(v);
}

// a - b as a signed distance in sequence space.
int32_t seqDiff(uint32_t a, uint32_t b) {
  return static_cast<int32_t>(a - b);
}

size_t tcpHeaderLength(const uint8_t* frame, const ParsedPacket& p) {
  return static_cast<size_t>(frame[p.outer.l4 + 12] >> 4) * 4;
}

// Replaces the 32-bit field at `field` with `value`, recording the change.
void setTcp32(uint8_t* field, uint32_t value, CsumDelta* delta) {
  uint8_t next[4];
  storeBe32(next, value);
  delta->replace32(field, next);
  std::memcpy(field, next, 4);
}

}  // namespace

size_t writeProxyV2(uint8_t* out, ProxyCommand cmd, uint8_t proto, const IpAddr& client,
                    uint16_t client_port, const IpAddr& vip, uint16_t vip_port) {
  std::memcpy(out, kSignature, sizeof kSignature);
  out[12] = static_cast<uint8_t>(0x20 | static_cast<uint8_t>(cmd));  // version 2
  if (cmd == ProxyCommand::kLocal) {
    out[13] = 0x00;  // UNSPEC: the receiver uses the connection's own addresses
    storeBe16(out + 14, 0);
    return 16;
  }
  const bool v4 = client.isV4();
  const uint8_t family = v4 ? 0x10 : 0x20;                     // AF_INET / AF_INET6
  const uint8_t transport = proto == kProtoUDP ? 0x02 : 0x01;  // DGRAM / STREAM
  out[13] = family | transport;
  const size_t addr = v4 ? 4 : 16;
  storeBe16(out + 14, static_cast<uint16_t>(2 * addr + 4));
  uint8_t* a = out + 16;
  std::memcpy(a, v4 ? client.v4() : client.bytes.data(), addr);
  std::memcpy(a + addr, v4 ? vip.v4() : vip.bytes.data(), addr);
  storeBe16(a + 2 * addr, client_port);
  storeBe16(a + 2 * addr + 2, vip_port);
  return 16 + 2 * addr + 4;
}

bool insertProxyHeader(uint8_t* frame, size_t* len, size_t capacity, ParsedPacket& p,
                       const uint8_t* hdr, size_t hlen) {
  L3L4& l = p.outer;
  if (!l.has_l4 || l.is_fragment) return false;
  const bool tcp = p.tuple.proto == kProtoTCP;
  const size_t thl = tcp ? tcpHeaderLength(frame, p) : 8;
  if (thl > l.l4_len) return false;
  const size_t payload = l.l4 + thl;
  const size_t ip_end = l.l4 + l.l4_len;  // Ethernet padding beyond it is dropped
  if (ip_end + hlen > capacity || ip_end > *len) return false;
  std::memmove(frame + payload + hlen, frame + payload, ip_end - payload);
  std::memcpy(frame + payload, hdr, hlen);
  l.l4_len += hlen;
  if (l.v4) {
    storeBe16(frame + l.l3 + 2, static_cast<uint16_t>(loadBe16(frame + l.l3 + 2) + hlen));
    storeBe16(frame + l.l3 + 10, ipv4HeaderChecksum(frame, l));
  } else {
    storeBe16(frame + l.l3 + 4, static_cast<uint16_t>(loadBe16(frame + l.l3 + 4) + hlen));
  }
  const size_t csum = l.l4 + l4ChecksumOffset(p.tuple.proto, l.v4);
  if (!tcp) {
    storeBe16(frame + l.l4 + 4, static_cast<uint16_t>(l.l4_len));
    if (l.v4 && loadBe16(frame + csum) == 0) {  // IPv4 UDP without a checksum stays so
      *len = ip_end + hlen;
      p.len = *len;
      return true;
    }
  }
  storeBe16(frame + csum, l4Checksum(frame, l, p.tuple));
  *len = ip_end + hlen;
  p.len = *len;
  return true;
}

uint32_t tcpSeq(const uint8_t* frame, const ParsedPacket& p) {
  return loadBe32(frame + p.outer.l4 + 4);
}

size_t tcpPayloadLength(const uint8_t* frame, const ParsedPacket& p) {
  const size_t thl = tcpHeaderLength(frame, p);
  return p.outer.l4_len > thl ? p.outer.l4_len - thl : 0;
}

void addTcpSeq(uint8_t* frame, const ParsedPacket& p, uint32_t delta) {
  uint8_t* tcp = frame + p.outer.l4;
  CsumDelta d;
  setTcp32(tcp + 4, loadBe32(tcp + 4) + delta, &d);
  d.apply(tcp + 16);
}

void unshiftTcpAcks(uint8_t* frame, const ParsedPacket& p, uint32_t data_seq, uint32_t hlen) {
  uint8_t* tcp = frame + p.outer.l4;
  if ((p.tcp_flags & kTcpAck) == 0) return;
  const auto back = [&](uint32_t x) -> uint32_t {
    if (seqDiff(x, data_seq + hlen) >= 0) return x - hlen;
    if (seqDiff(x, data_seq) > 0) return data_seq;  // inside the header
    return x;
  };
  CsumDelta d;
  bool odd = false;
  setTcp32(tcp + 8, back(loadBe32(tcp + 8)), &d);
  // SACK blocks (option 5): pairs of edges.
  const size_t thl = tcpHeaderLength(frame, p);
  for (size_t o = 20; o + 1 < thl;) {
    const uint8_t kind = tcp[o];
    if (kind == 0) break;
    if (kind == 1) {
      ++o;
      continue;
    }
    const uint8_t olen = tcp[o + 1];
    if (olen < 2 || o + olen > thl) break;
    if (kind == 5) {
      for (size_t e = o + 2; e + 4 <= o + olen; e += 4) {
        if (e & 1) odd = true;  // off the 16-bit grid: recomputed below
        setTcp32(tcp + e, back(loadBe32(tcp + e)), &d);
      }
    }
    o += olen;
  }
  if (odd) {
    storeBe16(tcp + 16, l4Checksum(frame, p.outer, p.tuple));
  } else {
    d.apply(tcp + 16);
  }
}

void shrinkTcpMss(uint8_t* frame, const ParsedPacket& p, uint16_t by) {
  uint8_t* tcp = frame + p.outer.l4;
  if ((p.tcp_flags & kTcpSyn) == 0) return;
  const size_t thl = tcpHeaderLength(frame, p);
  for (size_t o = 20; o + 1 < thl;) {
    const uint8_t kind = tcp[o];
    if (kind == 0) break;
    if (kind == 1) {
      ++o;
      continue;
    }
    const uint8_t olen = tcp[o + 1];
    if (olen < 2 || o + olen > thl) break;
    if (kind == 2 && olen == 4) {
      const uint16_t mss = loadBe16(tcp + o + 2);
      const uint16_t next = mss > 536 + by ? static_cast<uint16_t>(mss - by) : 536;
      if (next != mss) {
        CsumDelta d;
        d.replace16(tcp + o + 2, next);
        storeBe16(tcp + o + 2, next);
        if ((o & 1) == 0) {
          d.apply(tcp + 16);
        } else {  // off the 16-bit grid
          storeBe16(tcp + 16, l4Checksum(frame, p.outer, p.tuple));
        }
      }
      return;
    }
    o += olen;
  }
}

}  // namespace flowlb::agent
