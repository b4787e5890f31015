// VIP allocation: a pure function from the IP pools and the LoadBalancer
// Services (with the addresses their status already holds) to each
// Service's addresses or the reason it has none. Allocations live only in
// Service status, so a restarted controller calls this again with what the
// API server says and gets the same answer: an address held by a running
// Service stays with it, and no address is ever given to two Services
// (unless they share it by sharing key without a port clash).
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "common/ip_addr.h"
#include "common/status.h"

namespace flowlb::controller {

// An inclusive range of addresses of one family.
struct AddressRange {
  IpAddr first;
  IpAddr last;

  // "10.0.0.0/24", "10.0.0.10-10.0.0.20", "2001:db8::/120" or one address.
  static Result<AddressRange> parse(std::string_view text);
  bool contains(const IpAddr& a) const;
  // Addresses in the range, saturated at 2^64 (IPv6 ranges are large).
  uint64_t size() const;
  bool operator==(const AddressRange&) const = default;
};

struct IpPool {
  std::string name;
  std::vector<AddressRange> ranges;
  bool auto_assign = true;
  // Skip IPv4 addresses ending in .0 and .255. (IPv6 addresses whose
  // interface identifier is zero, the subnet-router anycast address of
  // their /64, are never given out automatically.)
  bool avoid_buggy_ips = false;
  std::map<std::string, std::string> service_selector;  // matchLabels; empty: any
  std::vector<std::string> namespaces;                  // empty: any
  // Address entries that could not be read ("'10.0.0.0/33': ..."): left out of
  // `ranges`, reported on the IPPool (condition flowlb.io/Valid) and in the
  // reason of a Service that gets nothing from it.
  std::vector<std::string> invalid;
  std::map<std::string, std::string> labels;  // BGPAdvertisement ipPoolSelector
  bool operator==(const IpPool&) const = default;
};

struct ServicePort {
  uint8_t proto = 6;
  uint16_t port = 0;
  friend auto operator<=>(const ServicePort&, const ServicePort&) = default;
};

enum class Family : uint8_t { kV4, kV6 };

struct LbService {
  std::string ns;
  std::string name;
  int64_t created = 0;  // creationTimestamp, seconds: older Services win conflicts
  std::map<std::string, std::string> labels;
  std::vector<Family> families = {Family::kV4};  // one address per family wanted
  bool require_all_families = false;             // ipFamilyPolicy: RequireDualStack
  std::string pool;                              // flowlb.io/pool
  std::vector<IpAddr> requested;                 // flowlb.io/ips or spec.loadBalancerIP
  std::string sharing_key;                       // flowlb.io/sharing-key
  std::vector<ServicePort> ports;
  std::vector<IpAddr> current;  // status.loadBalancer.ingress as the API server has it
  // A Service that stopped being ours (class or type changed) and still
  // shows our address: it keeps the pool addresses of its status until the
  // controller has cleared them, so no one else is given an address that a
  // Service still shows, and takes nothing new.
  bool hold_only = false;

  std::string key() const { return ns + "/" + name; }
};

// Why a Service has no (or not all of its) addresses; the words a user
// sees in the Event and the status condition.
enum class Reason : uint8_t {
  kAllocated,
  kUnknownPool,
  kNoMatchingPool,
  kPoolExhausted,
  kRequestedIpNotInPool,
  kRequestedIpTaken,
  kPortConflict,
  kAddressConflict,  // the status held an address an older Service holds
  kInvalidPool,      // the pool it names has no address that could be read
};
const char* reasonName(Reason r);

struct Allocation {
  std::vector<IpAddr> ips;  // one per family obtained, in the Service's family order
  std::string pool;         // pool of the first address
  bool satisfied = false;   // every wanted family has an address
  Reason reason = Reason::kAllocated;
  std::string message;  // for the Event: what went wrong and what to do
  // Addresses the status held but an older Service holds (reported as
  // AddressConflict Events). Not the reason: once the status says what was
  // allocated instead, the conflict is history, and a condition naming it
  // would be replaced a moment later.
  std::vector<std::string> conflicts;
};

struct PoolUsage {
  uint64_t used = 0;
  uint64_t free = 0;                 // saturated for large IPv6 pools
  std::vector<std::string> invalid;  // IpPool::invalid
};

class Allocator {
 public:
  // Every Service gets an entry, keyed by namespace/name.
  static std::map<std::string, Allocation> allocate(const std::vector<IpPool>& pools,
                                                    const std::vector<LbService>& services);
  static std::map<std::string, PoolUsage> usage(const std::vector<IpPool>& pools,
                                                const std::map<std::string, Allocation>& allocs);
};

}  // namespace flowlb::controller
