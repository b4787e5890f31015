// One BGP session with one peer (RFC 4271 §8), announce-only: a pure state
// machine driven by events (connected, bytes received, closed, the clock
// moved) that says what to send and whether to connect or close. Timers
// are deadlines it keeps as data; the edge (speaker.cc) calls tick() when
// nextDeadline() passes. No sockets, no threads, no clock of its own.
//
// The speaker connects out and never listens (a node may already run a BGP
// daemon on port 179), so there is no Active state and no connection
// collision to resolve. Routes received are decoded, validated and counted,
// never installed. The Adj-RIB-Out (what the peer was told) is diffed
// against the desired routes, so a change sends only what changed. With
// graceful restart (RFC 4724) every OPEN says "restarted, forwarding
// preserved", and stop(kGraceful) closes without a NOTIFICATION, so the
// router keeps our routes while the agent restarts; End-of-RIB follows the
// initial routes so it can drop what we no longer announce.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <vector>

#include "agent/announce/bgp/wire.h"

namespace flowlb::agent::bgp {

using Time = std::chrono::steady_clock::time_point;
using Millis = std::chrono::milliseconds;

// One peer's settings, in domain terms (converted at the edge from the
// standalone file or the controller's message).
struct PeerSettings {
  std::string name;  // for logs and metrics
  IpAddr address;
  uint16_t port = 179;
  std::optional<IpAddr> source;  // bind the session to this local address
  uint32_t peer_asn = 0;
  uint32_t local_asn = 0;
  std::optional<uint32_t> router_id;  // default: the session's local IPv4 address
  uint16_t hold_time_s = 90;          // 0 or >= 3
  uint16_t keepalive_s = 0;           // 0: a third of the negotiated hold time
  uint16_t connect_retry_s = 5;
  std::string password;  // TCP-MD5 (RFC 2385); applied by the edge
  bool ipv4 = true;      // address families offered
  bool ipv6 = true;
  std::optional<IpAddr> next_hop_v4;  // default: the session's local address
  std::optional<IpAddr> next_hop_v6;  // (when of that family)
  bool graceful_restart = false;
  uint16_t restart_time_s = 120;
  std::string bfd_profile;  // empty: no BFD
  friend bool operator==(const PeerSettings&, const PeerSettings&) = default;
};

// What one route carries besides its prefix and next hop.
struct RouteAttributes {
  std::optional<uint32_t> med;
  std::optional<uint32_t> local_pref;  // sent to internal peers only (RFC 4271 §5.1.5)
  std::vector<uint32_t> communities;
  std::vector<LargeCommunity> large_communities;
  friend bool operator==(const RouteAttributes&, const RouteAttributes&) = default;
};
using RouteSet = std::map<IpPrefix, RouteAttributes>;

enum class State : uint8_t { kIdle, kConnect, kOpenSent, kOpenConfirm, kEstablished };
const char* stateName(State s);

enum class StopMode : uint8_t {
  kWithdraw,  // NOTIFICATION Cease: the peer drops our routes now
  kGraceful,  // close without NOTIFICATION: a graceful-restart peer keeps them
};

// What the edge must do after an event, in this order: write `send`, then
// close the connection if `close`, then open a new one if `connect`.
struct Output {
  std::vector<uint8_t> send;
  bool close = false;
  bool connect = false;
};

// Something worth a log line or a metric.
struct SessionEvent {
  enum class Kind : uint8_t {
    kStateChanged,          // from -> to, detail = why
    kNotificationSent,      // detail = describe()
    kNotificationReceived,  // detail = describe()
    kUpdateMalformed,       // treat-as-withdraw; detail = reason
    kRouteSkipped,          // no next hop or family not negotiated; detail = prefix and why
  };
  Kind kind;
  State from = State::kIdle;
  State to = State::kIdle;
  std::string detail;
};

struct SessionStats {
  State state = State::kIdle;
  uint64_t established_transitions = 0;
  uint64_t updates_received = 0;
  uint64_t routes_received = 0;  // announced to us, counted and ignored
  uint64_t malformed_updates = 0;
  uint64_t notifications_sent = 0;
  uint64_t notifications_received = 0;
  uint64_t updates_sent = 0;
  size_t routes_advertised = 0;  // in the Adj-RIB-Out now
  std::vector<Family> families;  // negotiated
  uint16_t hold_time_s = 0;      // negotiated
  bool peer_graceful_restart = false;
  std::string last_error;
};

class Session {
 public:
  Session(PeerSettings settings, Time now);

  const PeerSettings& settings() const { return s_; }
  State state() const { return state_; }
  const SessionStats& stats() const { return stats_; }

  // Admin up: connect now. Admin down: see StopMode; no reconnect until start().
  void start(Time now);
  void stop(Time now, StopMode mode, const std::string& why);

  // The transport (the edge's TCP socket).
  void connected(Time now, const IpAddr& local_address);
  void connectFailed(Time now, const std::string& why);
  void closed(Time now, const std::string& why);
  void received(Time now, std::span<const uint8_t> bytes);

  // BFD says the path to the peer is down: drop the session (RFC 5882).
  void bfdDown(Time now);

  // The routes to announce from now on.
  void setRoutes(Time now, RouteSet routes);

  // Timers: the earliest deadline, and firing the ones passed.
  std::optional<Time> nextDeadline() const;
  void tick(Time now);

  // What to do and what happened since the last call.
  Output takeOutput();
  std::vector<SessionEvent> takeEvents();

 private:
  void enter(State next, Time now, const std::string& why);
  void fail(Time now, const Notification& n, const std::string& why);
  void drop(Time now, const std::string& why, Millis retry);
  void handle(Time now, const Message& m);
  void onOpen(Time now, const OpenMessage& o);
  void onUpdate(Time now, const UpdateMessage& u);
  void send(std::vector<uint8_t> bytes);
  void sendNotification(const Notification& n);
  void syncRoutes(bool full);
  bool negotiated(Family f) const;
  OpenMessage ourOpen() const;
  Millis keepaliveInterval() const;

  PeerSettings s_;
  State state_ = State::kIdle;
  bool admin_up_ = false;
  Output out_;
  std::vector<SessionEvent> events_;
  SessionStats stats_;
  std::vector<uint8_t> inbox_;  // bytes not yet framed
  IpAddr local_;                // of the current connection
  uint32_t failures_ = 0;       // consecutive attempts that did not reach Established
  bool first_session_ = true;   // graceful restart: the first since start says "restarted"
  bool peer_four_octet_ = false;
  RouteSet desired_;
  RouteSet advertised_;         // Adj-RIB-Out
  std::set<IpPrefix> skipped_;  // routes we could not send (reported once)
  std::optional<Time> connect_at_;
  std::optional<Time> connect_deadline_;
  std::optional<Time> hold_deadline_;
  std::optional<Time> keepalive_at_;
};

}  // namespace flowlb::agent::bgp
