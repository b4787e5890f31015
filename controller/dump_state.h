// --dump-state: the allocations, the pool usage and every node's desired
// state (VIPs, backends ACTIVE/DRAINING, which node announces each VIP) as
// text on stdout, after each reconcile.
#pragma once

#include <cstdio>

#include "controller/reconciler/reconciler.h"

namespace flowlb::controller {

void dumpState(const Reconciled& r, std::FILE* out = stdout);

}  // namespace flowlb::controller
