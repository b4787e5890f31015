// libFuzzer target for the adoption of a conntrack file left by a previous
// agent (issue 15): whatever the bytes, opening it never crashes, and the
// table it yields is consistent (every live reply is linked both ways to a
// live forward entry) and usable.
#include <stdlib.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>

#include "agent/lb/conntrack.h"

using namespace flowlb;
using namespace flowlb::agent;

namespace {

constexpr size_t kCapacity = 64;  // 8 buckets of 8

std::string tempPath() {
  static std::string path = [] {
    char tmpl[] = "/tmp/flowlb-ct-fuzz-XXXXXX";
    const int fd = mkstemp(tmpl);
    if (fd >= 0) close(fd);
    return std::string(tmpl);
  }();
  return path;
}

ConntrackOwner owner() {
  ConntrackOwner o;
  o.workers = 1;
  o.snat_port_min = 40000;
  o.snat_port_max = 59999;
  o.boot_id = "fuzz";
  return o;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = tempPath();
  // A valid file of this capacity, its bytes then overwritten from the
  // input (header, signatures and entries alike), or the input as the
  // whole file when it comes with a flag byte of 0.
  {
    ConntrackAdoption a;
    auto ct = ConnTrack::openFile(path, kCapacity, 7, owner(), &a);
    if (!ct) return 0;
  }
  FILE* f = std::fopen(path.c_str(), size > 0 && data[0] == 0 ? "w" : "r+");
  if (f == nullptr) return 0;
  if (size > 1) {
    // Keep the header valid most of the time so entries are reached.
    std::fseek(f, size > 2 && data[1] & 1 ? 0 : 4096, SEEK_SET);
    std::fwrite(data + 2, 1, size > 2 ? size - 2 : 0, f);
  }
  std::fclose(f);
  ConntrackAdoption a;
  auto ct = ConnTrack::openFile(path, kCapacity, 7, owner(), &a);
  if (!ct) return 0;
  ConnTrack& t = **ct;
  size_t live = 0;
  for (uint32_t i = 0; i < t.capacity(); ++i) {
    const FlowEntry& e = *t.at(i);
    if (e.state == FlowState::kFree) continue;
    ++live;
    if (e.peer != kNoPeer) {
      if (e.peer >= t.capacity() || t.at(e.peer)->peer != i) __builtin_trap();
    } else if (isReplyKind(e.key.kind)) {
      __builtin_trap();
    }
  }
  if (a.adopted && live < t.size()) __builtin_trap();
  // Still usable: lookups, inserts and sweeps over whatever was adopted.
  for (uint32_t i = 0; i < t.capacity(); ++i) {
    FlowEntry e = *t.at(i);
    if (e.state != FlowState::kFree) t.find(e.key, t.hash(e.key), 5000);
  }
  FlowKey k;
  k.proto = 6;
  k.kind = FlowKind::kForward;
  for (uint16_t p = 0; p < 100; ++p) {
    k.sport = p;
    if (t.find(k, t.hash(k), 6000) == nullptr) t.insert(k, t.hash(k), 6000);
  }
  t.sweep(4'000'000'000u, 16);
  return 0;
}
