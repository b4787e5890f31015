#include "agent/node/interface_discovery.h"

#include <algorithm>

namespace flowlb::agent {
namespace {

const HostInterface* find(const HostNetwork& host, const std::string& name) {
  for (const HostInterface& i : host.interfaces) {
    if (i.name == name) return &i;
  }
  return nullptr;
}

const HostInterface* carrying(const HostNetwork& host, const IpAddr& a) {
  for (const HostInterface& i : host.interfaces) {
    for (const HostAddress& h : i.addresses) {
      if (h.addr == a) return &i;
    }
  }
  return nullptr;
}

void addUnique(std::vector<std::string>* v, const std::string& s) {
  if (!s.empty() && std::find(v->begin(), v->end(), s) == v->end()) v->push_back(s);
}

std::string join(const std::vector<std::string>& v) {
  std::string out;
  for (const std::string& s : v) out += (out.empty() ? "" : ",") + s;
  return out;
}

// A permanent global address of the family on the interface.
std::optional<IpAddr> addressOn(const HostInterface& i, bool v4) {
  for (const HostAddress& h : i.addresses) {
    if (h.addr.isV4() == v4 && h.usable && h.global) return h.addr;
  }
  return std::nullopt;
}

}  // namespace

Result<InterfaceChoice> chooseInterfaces(const DiscoveryInput& in, const HostNetwork& host) {
  InterfaceChoice out;
  std::vector<std::string> why;
  // The node IP's interface, if the node IP is on this host at all.
  const HostInterface* node_if = nullptr;
  std::string node_ip_text;
  for (const IpAddr& ip : in.node_ips) {
    if (const HostInterface* i = carrying(host, ip)) {
      node_if = i;
      node_ip_text = ip.toString();
      break;
    }
  }
  if (!in.node_ips.empty() && node_if == nullptr) {
    std::string ips;
    for (const IpAddr& ip : in.node_ips) ips += (ips.empty() ? "" : ",") + ip.toString();
    return Status::error("no interface carries the node IP " + ips +
                         " (is the agent in the host network namespace?); give --interface");
  }
  if (!in.interfaces.empty()) {
    for (const std::string& name : in.interfaces) {
      if (find(host, name) == nullptr) return Status::error("no interface named " + name);
      addUnique(&out.xdp, name);
    }
    out.source = "flag";
    why.push_back("xdp on " + join(out.xdp) + " (--interface)");
  } else {
    out.source = "detected";
    if (node_if) {
      addUnique(&out.xdp, node_if->name);
      why.push_back(node_if->name + " carries the node IP " + node_ip_text);
    }
    for (const std::string* route : {&host.default_route_v4, &host.default_route_v6}) {
      if (route->empty() || find(host, *route) == nullptr) continue;
      const bool is_new = std::find(out.xdp.begin(), out.xdp.end(), *route) == out.xdp.end();
      addUnique(&out.xdp, *route);
      why.push_back(*route + (is_new ? " carries " : " also carries ") + "the " +
                    (route == &host.default_route_v4 ? "IPv4" : "IPv6") + " default route");
    }
    if (out.xdp.empty()) {
      return Status::error(
          "cannot find the node's interface: no --node-ip on this host and no default route; "
          "give --interface");
    }
  }
  for (const std::string& name : out.xdp) {
    const HostInterface* i = find(host, name);
    if (i->loopback) return Status::error(name + " is a loopback interface");
  }
  if (!in.announce_interfaces.empty()) {
    for (const std::string& name : in.announce_interfaces) {
      if (find(host, name) == nullptr) return Status::error("no interface named " + name);
      addUnique(&out.announce, name);
    }
  } else if (in.announce) {
    addUnique(&out.announce, node_if ? node_if->name : out.xdp.front());
  }
  if (!out.announce.empty()) {
    why.push_back("announce on " + join(out.announce));
  }
  // NAT source addresses: flag, else the node IP of the family, else the
  // chosen interface's own (the first XDP interface carrying one).
  for (const bool v4 : {true, false}) {
    std::optional<IpAddr>& snat = v4 ? out.snat_v4 : out.snat_v6;
    std::string& from = v4 ? out.snat_v4_from : out.snat_v6_from;
    const std::optional<IpAddr>& flag = v4 ? in.snat_v4 : in.snat_v6;
    if (flag) {
      snat = flag;
      from = "flag";
      continue;
    }
    for (const IpAddr& ip : in.node_ips) {
      if (ip.isV4() == v4) {
        snat = ip;
        from = "node IP";
        break;
      }
    }
    if (snat) continue;
    std::vector<std::string> order;
    if (node_if) order.push_back(node_if->name);
    for (const std::string& x : out.xdp) addUnique(&order, x);
    for (const std::string& name : order) {
      if (auto a = addressOn(*find(host, name), v4)) {
        snat = a;
        from = "interface " + name;
        break;
      }
    }
  }
  for (const bool v4 : {true, false}) {
    if (!in.snat) break;
    const std::optional<IpAddr>& snat = v4 ? out.snat_v4 : out.snat_v6;
    const std::string& from = v4 ? out.snat_v4_from : out.snat_v6_from;
    why.push_back(std::string(v4 ? "IPv4" : "IPv6") + " NAT source " +
                  (snat ? snat->toString() + " (" + from + ")" : "none"));
  }
  for (const std::string& w : why) out.reason += (out.reason.empty() ? "" : "; ") + w;
  return out;
}

}  // namespace flowlb::agent
