// The node-local source NAT of an agent with a controller, from its flags
// (--snat-ipv4, --snat-ipv6, --snat-ports; standalone, the file gives them).
// Pure: an error names the flag and says what is wrong with it.
#pragma once

#include <string>

#include "agent/lb/service.h"
#include "common/status.h"

namespace flowlb::agent {

// Empty addresses leave their family unset; `ports` is MIN-MAX.
Status parseSnatFlags(const std::string& v4, const std::string& v6, const std::string& ports,
                      SnatConfig* snat);

}  // namespace flowlb::agent
