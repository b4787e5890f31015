// libFuzzer target for the BGP wire decoder (OPEN and UPDATE above all) and
// for the session that consumes it: any byte string must decode to a
// message or an error with a NOTIFICATION code, never read out of bounds,
// crash or trip UBSan. The first byte picks the path: decodeOpen,
// decodeUpdate (4-octet or 2-octet AS), whole framed messages, or bytes
// streamed into an Established session (so reassembly, the FSM and the
// treat-as-withdraw path run too). Decoded OPENs and UPDATEs are encoded
// again and must decode to the same values.
#include <cstdint>
#include <cstdlib>
#include <span>

#include "agent/announce/bgp/session.h"
#include "agent/announce/bgp/wire.h"

namespace {

using namespace flowlb;
using namespace flowlb::agent::bgp;

void check(bool ok) {
  if (!ok) std::abort();
}

void roundTripUpdate(const UpdateMessage& u, bool four) {
  if (u.mp_reach && u.mp_reach->family != kIpv4Unicast && u.mp_reach->family != kIpv6Unicast)
    return;
  if (u.mp_unreach && u.mp_unreach->family != kIpv4Unicast &&
      u.mp_unreach->family != kIpv6Unicast) {
    return;
  }
  if (u.unknown_attributes || u.attributes.as_path.size() > 1000) return;
  const auto wire = encodeUpdate(u, true);
  if (wire.size() > kMaxMessageSize) return;
  DecodeContext ctx;
  const auto again = decodeMessage(wire, ctx);
  check(again.ok());
  check(again.value->update.nlri == u.nlri);
  check(again.value->update.withdrawn == u.withdrawn);
  if (four) check(again.value->update.attributes.communities == u.attributes.communities);
}

Session& established() {
  static Session* s = [] {
    PeerSettings p;
    p.name = "fuzz";
    p.address = *IpAddr::parse("10.0.0.2");
    p.peer_asn = 65000;
    p.local_asn = 65001;
    auto* session = new Session(p, Time{});
    return session;
  }();
  if (s->state() != State::kEstablished) {
    s->start(Time{});
    s->tick(Time{});
    s->connected(Time{}, *IpAddr::parse("10.0.0.1"));
    OpenMessage o;
    o.asn = 65000;
    o.hold_time_s = 90;
    o.router_id = 2;
    o.four_octet_as = true;
    o.multiprotocol = {kIpv4Unicast, kIpv6Unicast};
    s->received(Time{}, encodeOpen(o));
    s->received(Time{}, encodeKeepalive());
    s->takeOutput();
    s->takeEvents();
  }
  return *s;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const uint8_t mode = data[0] % 5;
  const std::span<const uint8_t> in(data + 1, size - 1);
  switch (mode) {
    case 0: {
      const auto o = decodeOpen(in);
      if (o.ok()) {
        const auto again = decodeMessage(encodeOpen(*o.value), {});
        check(again.ok());
        check(again.value->open.asn == o.value->asn);
        check(again.value->open.multiprotocol == o.value->multiprotocol);
        check(again.value->open.graceful_restart == o.value->graceful_restart);
      } else {
        check(o.error.notification.code >= 1 && o.error.notification.code <= 6);
      }
      break;
    }
    case 1:
    case 2: {
      DecodeContext ctx;
      ctx.four_octet_as = mode == 1;
      const auto u = decodeUpdate(in, ctx);
      if (u.ok()) {
        roundTripUpdate(*u.value, ctx.four_octet_as);
      } else {
        check(u.error.notification.code == 3);
      }
      break;
    }
    case 3: {
      std::span<const uint8_t> rest = in;
      while (!rest.empty()) {
        const auto len = frameLength(rest);
        if (!len.ok() || *len.value == 0 || *len.value > rest.size()) break;
        decodeMessage(rest.first(*len.value), {});
        rest = rest.subspan(*len.value);
      }
      break;
    }
    default: {
      Session& s = established();
      s.received(Time{}, in);
      s.takeOutput();
      s.takeEvents();
      break;
    }
  }
  return 0;
}
