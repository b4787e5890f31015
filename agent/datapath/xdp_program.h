// The flowlb XDP program on this node's interfaces: loaded once from the
// object built with clang -target bpf, configured through its rodata,
// attached to every configured interface (native mode preferred, generic
// as fallback) and detached when this object goes away. A stale flowlb
// program left by a crash is replaced; a foreign program is an error.
#pragma once

#include <cstdint>
#include <set>
#include <string>
#include <vector>

#include "agent/bpf/flowlb_abi.h"
#include "agent/lb/snapshot.h"
#include "agent/lb/steering.h"
#include "common/status.h"

struct xdp_program;

namespace flowlb::agent {

enum class XdpMode : uint8_t { kAuto, kNative, kGeneric };

struct Interface {
  std::string name;
  int ifindex = 0;
};

class XdpProgram {
 public:
  struct Attached {
    Interface iface;
    std::string mode;  // "native" or "generic"
    bool replaced_stale = false;
  };

  // `max_vip_entries` sizes the VIP map (the kernel allocates it at load).
  static Result<std::unique_ptr<XdpProgram>> load(const std::string& object_path,
                                                  const std::vector<Interface>& interfaces,
                                                  XdpMode mode, uint16_t snat_port_min,
                                                  uint16_t snat_port_max, uint32_t max_vip_entries);
  ~XdpProgram();
  XdpProgram(const XdpProgram&) = delete;
  XdpProgram& operator=(const XdpProgram&) = delete;

  const std::vector<Attached>& attached() const { return attached_; }
  bool dispatcherUsed() const { return dispatcher_; }

  // Points the socket slot of (ifindex, queue) at an AF_XDP socket.
  Status setSocket(int ifindex, uint32_t queue, int xsk_fd);
  // Makes the VIP map steer exactly these keys (steeringKeys() of a
  // snapshot). All or nothing: on a failed write the entries this call
  // added are removed again and the map is as it was.
  Status syncVips(const std::set<SteerKey>& keys);
  // Per-CPU counters summed, indexed by enum flowlb_stat.
  std::vector<uint64_t> counters() const;

  static uint32_t socketSlot(int ifindex, uint32_t queue) {
    return static_cast<uint32_t>(ifindex % FLOWLB_XSK_IFINDEX_SLOTS) * FLOWLB_XSK_MAX_QUEUES +
           queue % FLOWLB_XSK_MAX_QUEUES;
  }

 private:
  XdpProgram() = default;

  struct xdp_program* prog_ = nullptr;
  std::vector<Attached> attached_;
  int vips_fd_ = -1;
  int xsks_fd_ = -1;
  int stats_fd_ = -1;
  bool dispatcher_ = false;
  std::set<SteerKey> installed_;
};

}  // namespace flowlb::agent
