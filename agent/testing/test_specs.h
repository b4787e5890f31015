// Small builders shared by the agent's tests: addresses, tuples, backends
// and the node's SNAT settings written as literals.
#pragma once

#include "agent/lb/service.h"
#include "agent/packet/packet.h"

namespace flowlb::agent::test_specs {

inline IpAddr ip(const char* s) {
  return *IpAddr::parse(s);
}

inline FlowTuple tuple(const char* src, uint16_t sport, const char* dst, uint16_t dport,
                       uint8_t proto) {
  return FlowTuple{ip(src), ip(dst), sport, dport, proto};
}

inline BackendSpec backend(const char* addr, uint16_t port = 8080,
                           BackendState state = BackendState::kActive) {
  BackendSpec b;
  b.addr = ip(addr);
  b.port = port;
  b.state = state;
  return b;
}

// SNAT 10.0.0.1 and fd00::1 with the default port range.
inline SnatConfig snat() {
  SnatConfig c;
  c.v4 = ip("10.0.0.1");
  c.v6 = ip("fd00::1");
  c.has_v4 = c.has_v6 = true;
  return c;
}

}  // namespace flowlb::agent::test_specs
