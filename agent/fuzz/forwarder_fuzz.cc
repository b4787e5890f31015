// libFuzzer target for the parser and the forwarding decision: any byte
// string is a frame; it must never read or write out of bounds, crash or
// trip UBSan, whatever the tables hold. Each input is processed twice (the
// second time the possibly rewritten frame, as if it came back) against
// NAT, DSR, IPv6, affinity and source-range services. A second forwarder
// source-NATs to the VIP with flow sync (docs/flow-sync.md): the input is
// also read as a batch of flow records (applied when it decodes), and what
// that forwarder shares is fed back to its sync table, so adoption runs on
// records of any content.
#include <cstdint>
#include <cstring>
#include <vector>

#include "agent/lb/forwarder.h"

namespace {

using namespace flowlb;
using namespace flowlb::agent;

struct World {
  explicit World(bool vip_source) {
    SnatConfig snat;
    snat.vip_source = vip_source;
    snat.v4 = *IpAddr::parse("10.0.0.1");
    snat.v6 = *IpAddr::parse("fd00::1");
    snat.has_v4 = snat.has_v6 = true;
    DesiredState d;
    auto svc = [](const char* vip, uint16_t port, uint8_t proto, ForwardingMode mode,
                  std::vector<const char*> backends) {
      ServiceSpec s;
      s.name = vip;
      s.vip = *IpAddr::parse(vip);
      s.port = port;
      s.proto = proto;
      s.mode = mode;
      s.maglev_size = 97;
      for (const char* b : backends) {
        BackendSpec bs;
        bs.addr = *IpAddr::parse(b);
        bs.port = port;
        s.backends.push_back(bs);
      }
      return s;
    };
    d.services.push_back(
        svc("192.0.2.10", 80, kProtoTCP, ForwardingMode::kNat, {"10.1.0.1", "10.1.0.2"}));
    d.services.push_back(svc("192.0.2.10", 53, kProtoUDP, ForwardingMode::kNat, {"10.1.0.1"}));
    d.services.push_back(svc("192.0.2.20", 80, kProtoTCP, ForwardingMode::kDsr, {"10.1.0.3"}));
    d.services.push_back(svc("2001:db8::10", 80, kProtoTCP, ForwardingMode::kNat, {"fd00:1::1"}));
    d.services.push_back(svc("2001:db8::10", 53, kProtoUDP, ForwardingMode::kDsr, {"fd00:1::2"}));
    d.services[1].client_ip_affinity = true;
    d.services[3].source_ranges.push_back(*IpPrefix::parse("2001:db8::/32"));
    snap = builder.build(d, snat)->snapshot;
    NextHop hop;
    hop.resolved = true;
    hops.setDefault(true, hop);
    hops.setDefault(false, hop);
  }
  SnapshotBuilder builder;
  std::shared_ptr<const Snapshot> snap;
  StaticNextHops hops;
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static World world(false);
  static Forwarder fwd(ForwarderConfig{.conntrack_entries = 1024, .fragment_entries = 64},
                       world.hops);
  static World vip_world(true);
  static FlowSyncTable table(256, 1, 1'000'000);
  static FlowExportRing ring(64);
  static Forwarder vip_fwd(ForwarderConfig{.conntrack_entries = 1024,
                                           .fragment_entries = 64,
                                           .flow_sync = &table,
                                           .flow_export = &ring},
                           vip_world.hops);
  static uint32_t now = 0;
  now += 997;
  // Exactly `size` bytes on the heap, so ASan sees any read past the frame.
  std::vector<uint8_t> frame(data, data + size);
  fwd.process(frame.data(), frame.size(), *world.snap, now);
  fwd.process(frame.data(), frame.size(), *world.snap, now);

  if (auto records =
          decodeFlowRecords(std::string_view(reinterpret_cast<const char*>(data), size), 1024)) {
    for (const FlowRecord& r : *records) table.apply(r, now);
  }
  std::vector<uint8_t> again(data, data + size);
  vip_fwd.process(again.data(), again.size(), *vip_world.snap, now);
  vip_fwd.process(again.data(), again.size(), *vip_world.snap, now);
  FlowRecord shared;
  while (ring.pop(&shared)) table.apply(shared, now);
  table.expire(now);
  return 0;
}
