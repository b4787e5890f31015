// flowlb-agent --check: what a standalone configuration builds, printed for
// a person (each service's Maglev table and its backends' shares of it),
// and, with --dry-run-flows, synthetic client flows pushed through the
// forwarding core (no interface is touched) to show where they go.
#pragma once

#include <cstddef>
#include <cstdint>

#include "agent/lb/snapshot.h"

namespace flowlb::agent {

void printSnapshot(const Snapshot& snap);
// `flows` synthetic flows per service, through a Forwarder with
// `conntrack_entries` entries; prints each backend's count.
int dryRun(const Snapshot& snap, uint32_t flows, size_t conntrack_entries);

}  // namespace flowlb::agent
