#include "controller/config/annotations.h"

#include <algorithm>
#include <cctype>
#include <sstream>

namespace flowlb::controller {
namespace {

std::string trim(const std::string& s) {
  const auto b = s.find_first_not_of(" \t");
  if (b == std::string::npos) return "";
  return s.substr(b, s.find_last_not_of(" \t") - b + 1);
}

}  // namespace

bool parseDurationMs(const std::string& text, uint64_t* ms) {
  const std::string t = trim(text);
  if (t.empty()) return false;
  uint64_t total = 0;
  size_t i = 0;
  bool any = false;
  while (i < t.size()) {
    if (!std::isdigit(static_cast<unsigned char>(t[i]))) return false;
    uint64_t n = 0;
    while (i < t.size() && std::isdigit(static_cast<unsigned char>(t[i]))) {
      n = n * 10 + static_cast<uint64_t>(t[i] - '0');
      if (n > 100'000'000) return false;
      ++i;
    }
    uint64_t unit = 1000;
    if (i < t.size()) {
      if (t.compare(i, 2, "ms") == 0) {
        unit = 1;
        i += 2;
      } else {
        switch (t[i]) {
          case 's': unit = 1000; break;
          case 'm': unit = 60'000; break;
          case 'h': unit = 3'600'000; break;
          default: return false;
        }
        ++i;
      }
    } else if (any) {
      return false;  // "1s500" is ambiguous
    }
    total += n * unit;
    any = true;
  }
  if (total > 24ull * 24 * 3600 * 1000) return false;
  *ms = total;
  return true;
}

bool parseDuration(const std::string& text, uint32_t* seconds) {
  // Whole units of s, m and h only: the same grammar as parseDurationMs
  // without its "ms".
  uint64_t ms = 0;
  if (text.find("ms") != std::string::npos || !parseDurationMs(text, &ms)) return false;
  *seconds = static_cast<uint32_t>(ms / 1000);
  return true;
}

namespace {

// flowlb.io/health-check and its four settings; the check stays off when
// any of them is invalid (the agents would refuse the whole Service).
void parseHealthCheck(const std::map<std::string, std::string>& annotations, ServiceSettings* s) {
  const auto get = [&](const char* key) -> const std::string* {
    auto it = annotations.find(key);
    return it == annotations.end() ? nullptr : &it->second;
  };
  const std::string* kind = get(kAnnotationHealthCheck);
  const std::string k = kind ? trim(*kind) : "";
  if (k.empty() || k == "none") return;
  HealthCheckSettings h;
  const size_t before = s->errors.size();
  const auto fail = [&](const char* key, const std::string& why) {
    s->errors.push_back(std::string(key) + ": " + why + "; health checking is off");
  };
  if (k == "tcp") {
    h.kind = HealthCheckKind::kTcp;
  } else if (k == "udp-dns") {
    h.kind = HealthCheckKind::kUdpDns;
  } else if (k.rfind("http:", 0) == 0 || k.rfind("https:", 0) == 0) {
    const bool tls = k[4] == 's';
    h.kind = tls ? HealthCheckKind::kHttps : HealthCheckKind::kHttp;
    h.path = k.substr(tls ? 6 : 5);
    if (h.path.empty() || h.path[0] != '/' ||
        h.path.find_first_of(" \t\r\n") != std::string::npos || h.path.size() > 1024) {
      fail(kAnnotationHealthCheck, "the path in '" + k + "' must start with '/' and hold no space");
    }
  } else {
    fail(kAnnotationHealthCheck, "'" + k + "' is not one of tcp, http:/path, https:/path, udp-dns");
  }
  for (auto [key, field] : {std::pair{kAnnotationHealthInterval, &h.interval_ms},
                            std::pair{kAnnotationHealthTimeout, &h.timeout_ms}}) {
    const std::string* v = get(key);
    if (v == nullptr) continue;
    uint64_t ms = 0;
    if (!parseDurationMs(*v, &ms) || ms > 3'600'000) {
      fail(key, "'" + *v + "' is not a duration like 500ms, 5s or 1m (up to 1h)");
      continue;
    }
    *field = static_cast<uint32_t>(ms);
  }
  for (auto [key, field] : {std::pair{kAnnotationHealthUnhealthy, &h.unhealthy_threshold},
                            std::pair{kAnnotationHealthHealthy, &h.healthy_threshold}}) {
    const std::string* v = get(key);
    if (v == nullptr) continue;
    const std::string t = trim(*v);
    uint32_t n = 0;
    bool ok = !t.empty() && t.size() <= 3;
    for (char c : t) ok = ok && std::isdigit(static_cast<unsigned char>(c));
    if (ok) n = static_cast<uint32_t>(std::stoul(t));
    if (!ok || n < 1 || n > 100) {
      fail(key, "'" + *v + "' is not a whole number from 1 to 100");
      continue;
    }
    *field = n;
  }
  // Without a timeout, the default (2 s) or half a shorter interval.
  if (get(kAnnotationHealthTimeout) == nullptr) h.timeout_ms = std::min(2000u, h.interval_ms / 2);
  if (s->errors.size() == before) {
    if (h.interval_ms < 100) {
      fail(kAnnotationHealthInterval, "the interval must be at least 100ms");
    } else if (h.timeout_ms < 10 || h.timeout_ms >= h.interval_ms) {
      fail(kAnnotationHealthTimeout, "the timeout (" + std::to_string(h.timeout_ms) +
                                         " ms) must be at least 10ms and below the interval (" +
                                         std::to_string(h.interval_ms) + " ms)");
    }
  }
  if (s->errors.size() == before) s->health = h;
}

}  // namespace

ServiceSettings parseServiceSettings(const std::map<std::string, std::string>& annotations,
                                     const std::string& load_balancer_ip) {
  ServiceSettings s;
  const auto get = [&](const char* key) -> const std::string* {
    auto it = annotations.find(key);
    return it == annotations.end() ? nullptr : &it->second;
  };
  if (const std::string* v = get(kAnnotationPool)) s.pool = trim(*v);

  std::string ips = load_balancer_ip;
  std::string source = "spec.loadBalancerIP";
  if (const std::string* v = get(kAnnotationIps)) {
    ips = *v;
    source = kAnnotationIps;
  }
  std::stringstream list(ips);
  bool have_v4 = false, have_v6 = false;
  for (std::string item; std::getline(list, item, ',');) {
    item = trim(item);
    if (item.empty()) continue;
    auto a = IpAddr::parse(item);
    if (!a) {
      s.errors.push_back(source + ": '" + item + "' is not an IP address");
      continue;
    }
    bool& seen = a->isV4() ? have_v4 : have_v6;
    if (seen) {
      s.errors.push_back(source + ": more than one " + std::string(a->isV4() ? "IPv4" : "IPv6") +
                         " address; give at most one per family");
      continue;
    }
    seen = true;
    s.ips.push_back(*a);
  }

  if (const std::string* v = get(kAnnotationSharingKey)) s.sharing_key = trim(*v);
  if (const std::string* v = get(kAnnotationForwardingMode)) {
    const std::string m = trim(*v);
    if (m == "nat") {
      s.mode = ForwardingMode::kNat;
    } else if (m == "dsr") {
      s.mode = ForwardingMode::kDsr;
    } else {
      s.errors.push_back(std::string(kAnnotationForwardingMode) + ": '" + m +
                         "' is not one of nat, dsr; using nat");
    }
  }
  if (const std::string* v = get(kAnnotationProxyProtocol)) {
    const std::string m = trim(*v);
    if (m == "v2") {
      s.proxy_protocol_v2 = true;
    } else if (m != "none" && !m.empty()) {
      s.errors.push_back(std::string(kAnnotationProxyProtocol) + ": '" + m +
                         "' is not one of v2, none; sending no PROXY header");
    }
  }
  for (auto [key, field] : {std::pair{kAnnotationIdleTimeout, &s.idle_timeout_s},
                            std::pair{kAnnotationDrainTimeout, &s.drain_timeout_s}}) {
    const std::string* v = get(key);
    if (v == nullptr) continue;
    uint32_t seconds = 0;
    if (!parseDuration(*v, &seconds) || (key == kAnnotationIdleTimeout && seconds == 0)) {
      s.errors.push_back(std::string(key) + ": '" + *v +
                         "' is not a duration like 90s, 15m or 1h30m (up to 24 days" +
                         (key == kAnnotationIdleTimeout ? ", more than 0" : "") + ")");
      continue;
    }
    *field = seconds;
  }
  parseHealthCheck(annotations, &s);
  return s;
}

}  // namespace flowlb::controller
