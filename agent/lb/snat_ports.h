// The SNAT ports shared out between the workers (one per receive queue):
// port p belongs to worker p % workers. A worker source-NATs new flows only
// on its own ports, so the destination port of a NAT reply names the worker
// that holds the flow, whichever queue the NIC put the reply on (see
// docs/datapath.md, "Several queues"). Interleaving rather than cutting the
// range into blocks keeps a port's owner the same whatever the configured
// range (a range changed at run time moves no flow), and with a power-of-two
// number of workers the owner is the port's low bits, which a NIC's ntuple
// filter with a mask can match.
#pragma once

#include <cstdint>

namespace flowlb::agent {

inline uint32_t snatPortOwner(uint16_t port, uint32_t workers) {
  return workers <= 1 ? 0 : port % workers;
}

// The ports of [min, max] that one worker owns: first, first + stride, ...
// (count of them; 0 when the range is narrower than the workers).
struct SnatPortShare {
  uint32_t first = 0;
  uint32_t count = 0;
  uint32_t stride = 1;
  uint16_t at(uint32_t k) const { return static_cast<uint16_t>(first + k * stride); }
};

inline SnatPortShare snatPortShare(uint16_t min, uint16_t max, uint32_t worker, uint32_t workers) {
  SnatPortShare s;
  if (workers == 0) workers = 1;
  if (max < min || worker >= workers) return s;
  s.stride = workers;
  s.first = min + (worker + workers - min % workers) % workers;
  if (s.first > max) return s;
  s.count = (max - s.first) / workers + 1;
  return s;
}

}  // namespace flowlb::agent
