// The forwarder's PROXY protocol v2 (split from forwarder.cc): the header in
// front of a flow's first bytes to the backend, sequence numbers moved to
// make room, and the backend's acknowledgements moved back.
#include "agent/lb/forwarder.h"
#include "agent/packet/proxy_protocol.h"

namespace flowlb::agent {

DropReason Forwarder::proxyForward(uint8_t* frame, ParsedPacket& p, FlowEntry& e, bool new_flow,
                                   Action* a) {
  if (e.peer == kNoPeer) return DropReason::kProxyFlowUnknown;
  FlowEntry& reply = *conntrack_.at(e.peer);
  const FlowTuple& t = p.tuple;
  uint8_t hdr[kProxyV2MaxHeader];
  const auto header = [&] {
    return writeProxyV2(hdr, ProxyCommand::kProxy, t.proto, IpAddr{e.key.src}, e.key.sport,
                        IpAddr{e.key.dst}, e.key.dport);
  };
  size_t len = p.len;
  if (t.proto == kProtoUDP) {  // every datagram carries one
    if (!insertProxyHeader(frame, &len, capacity_, p, hdr, header())) {
      return DropReason::kProxyNoRoom;
    }
    a->len = static_cast<uint32_t>(len);
    return DropReason::kNone;
  }
  const uint32_t seq = tcpSeq(frame, p);
  if (new_flow) {
    // Only a flow seen from its SYN has a known origin.
    if ((p.tcp_flags & (kTcpSyn | kTcpAck)) != kTcpSyn) return DropReason::kProxyFlowUnknown;
    e.flags |= kFlowProxyV2;
    proxySeq(reply) = seq + 1;
    return DropReason::kNone;
  }
  if (!(e.flags & kFlowProxyV2)) return DropReason::kProxyFlowUnknown;
  const uint32_t origin = proxySeq(reply);
  if (seq == origin && !(p.tcp_flags & kTcpSyn)) {
    // The segment at the origin (the handshake's last ACK, the first data,
    // or their retransmission) carries the header in front.
    if (!insertProxyHeader(frame, &len, capacity_, p, hdr, header())) {
      return DropReason::kProxyNoRoom;
    }
    a->len = static_cast<uint32_t>(len);
  } else if (static_cast<int32_t>(seq - origin) > 0) {
    addTcpSeq(frame, p, static_cast<uint32_t>(proxyV2Length(IpAddr{e.key.src}.isV4())));
  }
  return DropReason::kNone;
}

void Forwarder::proxyReply(uint8_t* frame, const ParsedPacket& p, FlowEntry& forward,
                           FlowEntry& reply) {
  if (p.tuple.proto != kProtoTCP) return;
  const auto hlen = static_cast<uint16_t>(proxyV2Length(IpAddr{forward.key.src}.isV4()));
  if ((p.tcp_flags & (kTcpSyn | kTcpAck)) == (kTcpSyn | kTcpAck)) shrinkTcpMss(frame, p, hlen);
  unshiftTcpAcks(frame, p, proxySeq(reply), hlen);
}

}  // namespace flowlb::agent
