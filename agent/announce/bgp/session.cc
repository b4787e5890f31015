#include "agent/announce/bgp/session.h"

#include <algorithm>
#include <set>
#include <utility>

#include "agent/announce/bgp/update_packer.h"
#include "common/hash.h"

namespace flowlb::agent::bgp {
namespace {

constexpr Millis kOpenHoldTime{240'000};  // RFC 4271 §8.2.2: "a large value"
constexpr Millis kMaxRetry{60'000};

Notification notification(ErrorCode code, uint8_t subcode, std::vector<uint8_t> data = {}) {
  return {static_cast<uint8_t>(code), subcode, std::move(data)};
}

// RFC 8203/9003 shutdown communication: a length byte and UTF-8 text.
std::vector<uint8_t> shutdownText(const std::string& why) {
  const size_t n = std::min<size_t>(why.size(), 255);
  std::vector<uint8_t> d{static_cast<uint8_t>(n)};
  d.insert(d.end(), why.begin(), why.begin() + static_cast<std::ptrdiff_t>(n));
  return d;
}

uint32_t v4Number(const IpAddr& a) {
  const uint8_t* b = a.v4();
  return uint32_t{b[0]} << 24 | uint32_t{b[1]} << 16 | uint32_t{b[2]} << 8 | b[3];
}

}  // namespace

const char* stateName(State s) {
  switch (s) {
    case State::kIdle: return "Idle";
    case State::kConnect: return "Connect";
    case State::kOpenSent: return "OpenSent";
    case State::kOpenConfirm: return "OpenConfirm";
    case State::kEstablished: return "Established";
  }
  return "?";
}

Session::Session(PeerSettings settings, Time) : s_(std::move(settings)) {}

void Session::start(Time now) {
  admin_up_ = true;
  if (state_ == State::kIdle) connect_at_ = now;
}

void Session::stop(Time now, StopMode mode, const std::string& why) {
  admin_up_ = false;
  connect_at_.reset();
  if (state_ == State::kIdle) return;
  if (mode == StopMode::kWithdraw && state_ != State::kConnect) {
    sendNotification(notification(ErrorCode::kCease, kCeaseAdminShutdown, shutdownText(why)));
  }
  drop(now, why, Millis{0});
}

void Session::enter(State next, Time, const std::string& why) {
  if (next == state_) return;
  events_.push_back({SessionEvent::Kind::kStateChanged, state_, next, why});
  state_ = next;
  stats_.state = next;
}

void Session::drop(Time now, const std::string& why, Millis retry) {
  out_.close = true;
  inbox_.clear();
  hold_deadline_.reset();
  keepalive_at_.reset();
  connect_deadline_.reset();
  advertised_.clear();
  stats_.routes_advertised = 0;
  stats_.families.clear();
  if (state_ != State::kEstablished) ++failures_;
  stats_.last_error = why;
  enter(State::kIdle, now, why);
  if (admin_up_) connect_at_ = now + retry;
}

void Session::fail(Time now, const Notification& n, const std::string& why) {
  sendNotification(n);
  drop(now, why, Millis{s_.connect_retry_s * 1000});
}

void Session::send(std::vector<uint8_t> bytes) {
  out_.send.insert(out_.send.end(), bytes.begin(), bytes.end());
}

void Session::sendNotification(const Notification& n) {
  send(encodeNotification(n));
  ++stats_.notifications_sent;
  events_.push_back({SessionEvent::Kind::kNotificationSent, state_, state_, describe(n)});
}

void Session::connected(Time now, const IpAddr& local_address) {
  if (state_ != State::kConnect) return;
  local_ = local_address;
  connect_deadline_.reset();
  send(encodeOpen(ourOpen()));
  enter(State::kOpenSent, now, "connected from " + local_.toString());
  hold_deadline_ = now + kOpenHoldTime;
}

void Session::connectFailed(Time now, const std::string& why) {
  if (state_ != State::kConnect) return;
  // 1 s, 2 s, 4 s ... up to connect_retry_s (and at least 1 s).
  const Millis cap{std::max<uint32_t>(1, s_.connect_retry_s) * 1000};
  const Millis backoff{1000 << std::min<uint32_t>(failures_, 6)};
  const Millis retry = std::min({cap, kMaxRetry, backoff});
  drop(now, "connect failed: " + why, retry);
}

void Session::closed(Time now, const std::string& why) {
  if (state_ == State::kIdle || state_ == State::kConnect) return;
  drop(now, "connection closed: " + why, Millis{1000});
}

void Session::bfdDown(Time now) {
  if (state_ == State::kIdle || state_ == State::kConnect) return;
  fail(now, notification(ErrorCode::kCease, kCeaseBfdDown), "BFD session down");
}

void Session::received(Time now, std::span<const uint8_t> bytes) {
  if (state_ == State::kIdle || state_ == State::kConnect) return;
  inbox_.insert(inbox_.end(), bytes.begin(), bytes.end());
  size_t at = 0;
  while (state_ != State::kIdle) {
    const auto rest = std::span<const uint8_t>(inbox_).subspan(at);
    const auto len = frameLength(rest);
    if (!len.ok()) {
      fail(now, len.error.notification, "bad message from peer: " + len.error.reason);
      return;
    }
    if (*len.value == 0 || *len.value > rest.size()) break;
    DecodeContext ctx;
    ctx.four_octet_as = peer_four_octet_;
    const auto m = decodeMessage(rest.first(*len.value), ctx);
    at += *len.value;
    if (m.ok()) {
      handle(now, *m.value);
    } else if (m.error.treat_as_withdraw && state_ == State::kEstablished) {
      ++stats_.updates_received;
      ++stats_.malformed_updates;
      if (stats_.hold_time_s) hold_deadline_ = now + Millis{stats_.hold_time_s * 1000};
      events_.push_back({SessionEvent::Kind::kUpdateMalformed, state_, state_, m.error.reason});
    } else {
      fail(now, m.error.notification, "bad message from peer: " + m.error.reason);
      return;
    }
  }
  if (state_ != State::kIdle)
    inbox_.erase(inbox_.begin(), inbox_.begin() + static_cast<std::ptrdiff_t>(at));
}

void Session::handle(Time now, const Message& m) {
  if (m.type == MessageType::kNotification) {
    ++stats_.notifications_received;
    const std::string d = describe(m.notification);
    events_.push_back({SessionEvent::Kind::kNotificationReceived, state_, state_, d});
    drop(now, "peer sent NOTIFICATION " + d, Millis{s_.connect_retry_s * 1000});
    return;
  }
  if (state_ == State::kOpenSent) {
    if (m.type != MessageType::kOpen) {
      fail(now, notification(ErrorCode::kFsm, 1), "unexpected message in OpenSent");
      return;
    }
    onOpen(now, m.open);
    return;
  }
  if (state_ == State::kOpenConfirm) {
    if (m.type != MessageType::kKeepalive) {
      fail(now, notification(ErrorCode::kFsm, 2), "unexpected message in OpenConfirm");
      return;
    }
    enter(State::kEstablished, now, "keepalive received");
    ++stats_.established_transitions;
    failures_ = 0;
    first_session_ = false;
    if (stats_.hold_time_s) hold_deadline_ = now + Millis{stats_.hold_time_s * 1000};
    syncRoutes(true);
    return;
  }
  // Established.
  switch (m.type) {
    case MessageType::kKeepalive:
      if (stats_.hold_time_s) hold_deadline_ = now + Millis{stats_.hold_time_s * 1000};
      break;
    case MessageType::kUpdate: onUpdate(now, m.update); break;
    case MessageType::kRouteRefresh: syncRoutes(true); break;
    default: fail(now, notification(ErrorCode::kFsm, 3), "unexpected OPEN in Established");
  }
}

void Session::onOpen(Time now, const OpenMessage& o) {
  if (o.asn != s_.peer_asn) {
    std::vector<uint8_t> data;
    if (o.asn <= 0xffff) data = {static_cast<uint8_t>(o.asn >> 8), static_cast<uint8_t>(o.asn)};
    fail(now, notification(ErrorCode::kOpen, 2, data),
         "peer AS " + std::to_string(o.asn) + ", configured " + std::to_string(s_.peer_asn));
    return;
  }
  const OpenMessage ours = ourOpen();
  if (o.router_id == ours.router_id && s_.peer_asn == s_.local_asn) {
    fail(now, notification(ErrorCode::kOpen, 3), "peer has our BGP identifier");
    return;
  }
  stats_.hold_time_s = std::min(o.hold_time_s, s_.hold_time_s);
  peer_four_octet_ = o.four_octet_as;
  stats_.families.clear();
  if (o.multiprotocol.empty()) {
    if (s_.ipv4) stats_.families.push_back(kIpv4Unicast);  // RFC 4760 §8: IPv4 implied
  } else {
    for (const Family& f : ours.multiprotocol) {
      if (std::find(o.multiprotocol.begin(), o.multiprotocol.end(), f) != o.multiprotocol.end()) {
        stats_.families.push_back(f);
      }
    }
  }
  stats_.peer_graceful_restart = o.graceful_restart.has_value();
  send(encodeKeepalive());
  enter(State::kOpenConfirm, now, "OPEN received");
  hold_deadline_.reset();
  keepalive_at_.reset();
  if (stats_.hold_time_s) {
    hold_deadline_ = now + Millis{stats_.hold_time_s * 1000};
    keepalive_at_ = now + keepaliveInterval();
  }
}

void Session::onUpdate(Time now, const UpdateMessage& u) {
  ++stats_.updates_received;
  stats_.routes_received += u.routeCount();
  if (stats_.hold_time_s) hold_deadline_ = now + Millis{stats_.hold_time_s * 1000};
}

Millis Session::keepaliveInterval() const {
  const Millis hold{stats_.hold_time_s * 1000};
  if (s_.keepalive_s && Millis{s_.keepalive_s * 1000} < hold) return Millis{s_.keepalive_s * 1000};
  return std::max(Millis{1000}, hold / 3);
}

bool Session::negotiated(Family f) const {
  return std::find(stats_.families.begin(), stats_.families.end(), f) != stats_.families.end();
}

OpenMessage Session::ourOpen() const {
  OpenMessage o;
  o.asn = s_.local_asn;
  o.hold_time_s = s_.hold_time_s;
  if (s_.router_id) {
    o.router_id = *s_.router_id;
  } else if (local_.isV4()) {
    o.router_id = v4Number(local_);
  } else {
    // An IPv6-only session without a configured identifier: derive a stable
    // one from the local address (never 0).
    o.router_id = static_cast<uint32_t>(hashBytes(local_.bytes.data(), 16, 0x62677069)) | 1u;
  }
  o.four_octet_as = true;
  o.route_refresh = true;
  if (s_.ipv4) o.multiprotocol.push_back(kIpv4Unicast);
  if (s_.ipv6) o.multiprotocol.push_back(kIpv6Unicast);
  if (s_.graceful_restart) {
    GracefulRestart gr;
    gr.restart_state = first_session_;
    gr.restart_time_s = std::min<uint16_t>(s_.restart_time_s, 4095);
    for (const Family& f : o.multiprotocol) gr.families.push_back({f, true});
    o.graceful_restart = gr;
  }
  return o;
}

void Session::setRoutes(Time, RouteSet routes) {
  desired_ = std::move(routes);
  syncRoutes(false);
}

void Session::syncRoutes(bool full) {
  if (state_ != State::kEstablished) return;
  if (full) advertised_.clear();
  const bool external = s_.peer_asn != s_.local_asn;
  RouteSet next;
  std::vector<OutRoute> announce;
  std::set<IpPrefix> skipped;
  for (const auto& [prefix, attrs] : desired_) {
    const bool v4 = prefix.addr.isV4();
    const Family f = v4 ? kIpv4Unicast : kIpv6Unicast;
    std::optional<IpAddr> hop = v4 ? s_.next_hop_v4 : s_.next_hop_v6;
    if (!hop && local_.isV4() == v4) hop = local_;
    if (!(v4 ? s_.ipv4 : s_.ipv6)) continue;  // a family we do not offer this peer
    if (!negotiated(f) || !hop) {
      skipped.insert(prefix);
      if (!skipped_.count(prefix)) {
        events_.push_back(
            {SessionEvent::Kind::kRouteSkipped, state_, state_,
             prefix.toString() +
                 (negotiated(f) ? ": no next hop of its family (set nextHop)"
                                : ": family " + familyName(f) + " not negotiated with the peer")});
      }
      continue;
    }
    next.emplace(prefix, attrs);
    const auto it = advertised_.find(prefix);
    if (it != advertised_.end() && it->second == attrs) continue;
    OutRoute r;
    r.prefix = prefix;
    r.next_hop = *hop;
    if (external) r.attributes.as_path = {s_.local_asn};
    r.attributes.med = attrs.med;
    if (!external) r.attributes.local_pref = attrs.local_pref;
    r.attributes.communities = attrs.communities;
    std::sort(r.attributes.communities.begin(), r.attributes.communities.end());
    r.attributes.large_communities = attrs.large_communities;
    std::sort(r.attributes.large_communities.begin(), r.attributes.large_communities.end());
    announce.push_back(std::move(r));
  }
  skipped_ = std::move(skipped);
  std::vector<IpPrefix> withdraw;
  for (const auto& [prefix, attrs] : advertised_) {
    if (!next.count(prefix)) withdraw.push_back(prefix);
  }
  for (auto& m : packUpdates(withdraw, announce, peer_four_octet_)) {
    send(std::move(m));
    ++stats_.updates_sent;
  }
  if (full) {
    for (const Family& f : stats_.families) {
      send(encodeEndOfRib(f));
      ++stats_.updates_sent;
    }
  }
  advertised_ = std::move(next);
  stats_.routes_advertised = advertised_.size();
}

std::optional<Time> Session::nextDeadline() const {
  std::optional<Time> t;
  for (const auto& d : {connect_at_, connect_deadline_, hold_deadline_, keepalive_at_}) {
    if (d && (!t || *d < *t)) t = d;
  }
  return t;
}

void Session::tick(Time now) {
  if (connect_at_ && now >= *connect_at_) {
    connect_at_.reset();
    if (admin_up_ && state_ == State::kIdle) {
      out_.connect = true;
      enter(State::kConnect, now, "connecting to " + s_.address.toString());
      connect_deadline_ = now + Millis{std::max<uint32_t>(1, s_.connect_retry_s) * 1000};
    }
  }
  if (connect_deadline_ && now >= *connect_deadline_) {
    connect_deadline_.reset();
    connectFailed(now, "no answer within " + std::to_string(s_.connect_retry_s) + " s");
  }
  if (hold_deadline_ && now >= *hold_deadline_) {
    hold_deadline_.reset();
    fail(now, notification(ErrorCode::kHoldTimerExpired, 0), "hold timer expired");
  }
  if (keepalive_at_ && now >= *keepalive_at_) {
    send(encodeKeepalive());
    keepalive_at_ = now + keepaliveInterval();
  }
}

Output Session::takeOutput() {
  Output o = std::move(out_);
  out_ = Output{};
  return o;
}

std::vector<SessionEvent> Session::takeEvents() {
  return std::exchange(events_, {});
}

}  // namespace flowlb::agent::bgp
