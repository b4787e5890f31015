// PROXY protocol version 2 (HAProxy, "The PROXY protocol", section 2.2) in a
// packet datapath: the binary header that tells a backend behind a NAT who
// the client was, and the in-place edits that put it in front of the first
// byte of a TCP stream (and of every UDP datagram) and keep the two ends'
// sequence numbers consistent afterwards.
//
// TCP, as the forwarder uses it: the header occupies the backend's sequence
// space [data_seq, data_seq + len) where data_seq is the client's ISN + 1.
// Every client segment that starts at data_seq (the handshake's final ACK,
// the first data, or their retransmissions) carries the header in front of
// its payload (the same bytes each time, so a duplicate is harmless); later
// client segments move up by len; the backend's acknowledgements and SACK
// blocks move down by len; and the MSS the backend announces shrinks by len,
// so a full client segment plus the header still fits the path.
#pragma once

#include <cstddef>
#include <cstdint>

#include "agent/packet/packet.h"

namespace flowlb::agent {

enum class ProxyCommand : uint8_t { kLocal = 0x0, kProxy = 0x1 };

inline constexpr size_t kProxyV2MaxHeader = 16 + 36;

// Writes the header for a connection from `client` to `vip` (addresses of
// one family, TCP or UDP per `proto`) into `out` (kProxyV2MaxHeader bytes);
// returns its length (28 for IPv4, 52 for IPv6, 16 for LOCAL).
size_t writeProxyV2(uint8_t* out, ProxyCommand cmd, uint8_t proto, const IpAddr& client,
                    uint16_t client_port, const IpAddr& vip, uint16_t vip_port);

// The header's length for a family (PROXY command).
inline size_t proxyV2Length(bool v4) {
  return v4 ? 28 : 52;
}

// Inserts `hdr` (hlen bytes) in front of the TCP/UDP payload of the packet
// `p` describes, growing the frame from *len to *len + hlen (which must fit
// `capacity`), and fixes the IP length, the IPv4 header checksum and the
// transport checksum (recomputed: this happens once per TCP flow). Updates
// *len and p's lengths. False (nothing changed) when it does not fit.
bool insertProxyHeader(uint8_t* frame, size_t* len, size_t capacity, ParsedPacket& p,
                       const uint8_t* hdr, size_t hlen);

// TCP sequence arithmetic on the packet in place, with incremental checksum
// updates. `seq` is moved by `delta` (mod 2^32).
void addTcpSeq(uint8_t* frame, const ParsedPacket& p, uint32_t delta);
// The backend's view back to the client's: the acknowledgement and every
// SACK edge at or beyond data_seq + hlen move down by hlen; those inside the
// header become data_seq. No-op without ACK.
void unshiftTcpAcks(uint8_t* frame, const ParsedPacket& p, uint32_t data_seq, uint32_t hlen);
// Lowers the MSS option of a SYN segment by `by` (not below 536).
void shrinkTcpMss(uint8_t* frame, const ParsedPacket& p, uint16_t by);

uint32_t tcpSeq(const uint8_t* frame, const ParsedPacket& p);
size_t tcpPayloadLength(const uint8_t* frame, const ParsedPacket& p);

}  // namespace flowlb::agent
