#include "agent/source/config_check.h"

#include <cstdio>
#include <map>
#include <random>

#include "agent/lb/forwarder.h"
#include "agent/lb/maglev.h"
#include "agent/packet/builder.h"
#include "agent/packet/packet.h"

namespace flowlb::agent {

void printSnapshot(const Snapshot& snap) {
  std::printf("generation %llu: %zu virtual service(s)\n",
              static_cast<unsigned long long>(snap.generation), snap.services.size());
  for (const ServiceRuntime& s : snap.services) {
    const ServiceSpec& spec = s.spec;
    std::printf("  %s  %s:%u/%s  mode=%s  table=%u  fingerprint=%016llx\n", spec.name.c_str(),
                spec.vip.toString().c_str(), spec.port, spec.proto == kProtoTCP ? "tcp" : "udp",
                spec.mode == ForwardingMode::kNat ? "nat" : "dsr", s.table->size(),
                static_cast<unsigned long long>(s.table->fingerprint()));
    const auto counts = s.table->slotCounts();
    for (size_t i = 0; i < s.table->backends().size(); ++i) {
      const BackendRuntime* b = snap.backend(s.ids[i]);
      std::printf("    backend %-24s weight=%-3u %-8s slots=%u (%.1f%%)\n",
                  s.table->backends()[i].key.c_str(), s.table->backends()[i].weight,
                  b && b->state == BackendState::kDraining ? "draining" : "active", counts[i],
                  100.0 * counts[i] / s.table->size());
    }
  }
}

int dryRun(const Snapshot& snap, uint32_t flows, size_t conntrack_entries) {
  StaticNextHops hops;
  NextHop hop;
  hop.resolved = true;
  hop.ifindex = 1;
  hops.setDefault(true, hop);
  hops.setDefault(false, hop);
  ForwarderConfig fc;
  fc.conntrack_entries = conntrack_entries;
  Forwarder fwd(fc, hops);
  std::mt19937_64 rng(42);
  for (const ServiceRuntime& s : snap.services) {
    std::map<uint32_t, uint32_t> per_backend;
    uint32_t dropped = 0;
    for (uint32_t i = 0; i < flows; ++i) {
      FrameSpec spec;
      spec.tuple.proto = s.spec.proto;
      spec.tuple.dst = s.spec.vip;
      spec.tuple.dport = s.spec.port;
      spec.tuple.sport = static_cast<uint16_t>(1024 + rng() % 60000);
      spec.tcp_flags = kTcpSyn;
      uint8_t client[16];
      for (auto& byte : client) byte = static_cast<uint8_t>(rng());
      spec.tuple.src = s.spec.vip.isV4() ? IpAddr::fromV4(client) : IpAddr::fromV6(client);
      auto frame = buildFrame(spec);
      const Action a = fwd.process(frame.data(), frame.size(), snap, 0);
      if (a.kind == ActionKind::kTransmit) {
        ++per_backend[a.backend];
      } else {
        ++dropped;
      }
    }
    std::printf("  %s: %u synthetic flows ->", s.spec.name.c_str(), flows);
    for (auto [id, n] : per_backend) {
      const BackendRuntime* b = snap.backend(id);
      std::printf(" %s:%u=%u", b ? b->addr.toString().c_str() : "?", b ? b->port : 0, n);
    }
    std::printf(" dropped=%u\n", dropped);
  }
  std::printf("  conntrack: %zu entries of %zu\n", fwd.conntrack().size(),
              fwd.conntrack().capacity());
  return 0;
}

}  // namespace flowlb::agent
