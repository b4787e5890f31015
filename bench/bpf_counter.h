// The packet counter the bench XDP programs (bench/bpf/*.bpf.c) keep in a
// per-CPU array map named "counter": its sum over every CPU.
#pragma once

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include <cstdint>
#include <vector>

namespace flowlb::bench {

inline uint64_t readCounter(struct bpf_object* obj) {
  const int fd = bpf_object__find_map_fd_by_name(obj, "counter");
  std::vector<uint64_t> per_cpu(static_cast<size_t>(libbpf_num_possible_cpus()));
  uint32_t zero = 0;
  if (bpf_map_lookup_elem(fd, &zero, per_cpu.data()) != 0) return 0;
  uint64_t sum = 0;
  for (uint64_t v : per_cpu) sum += v;
  return sum;
}

}  // namespace flowlb::bench
