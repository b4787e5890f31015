// --dump-state: the allocations, the pool usage and every node's desired
// state (VIPs, backends ACTIVE/DRAINING, which node announces each VIP) as
// text on stdout, after each reconcile.
#pragma once

#include <cstdio>

#include "controller/distribution/announcer_policy.h"
#include "controller/reconciler/reconciler.h"

namespace flowlb::controller {

// `announcers`: who announces each VIP, as the distribution decided.
void dumpState(const Reconciled& r, const AnnouncerMap& announcers, std::FILE* out = stdout);

}  // namespace flowlb::controller
