#include "agent/announce/bgp/speaker.h"

#include <poll.h>
#include <spdlog/spdlog.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <optional>
#include <random>

#include "agent/announce/bfd/bfd_session.h"
#include "agent/announce/net/sockets.h"
#include "agent/announce/net/vip_hold.h"

namespace flowlb::agent::bgp {

using Clock = std::chrono::steady_clock;

// Everything the speaker thread owns; nothing here is touched by another
// thread.
struct Speaker::Loop {
  struct Peer {
    explicit Peer(const PeerSettings& s, Time now) : session(s, now) {}
    Session session;
    std::optional<net::TcpConnection> conn;
    bool connecting = false;
    std::optional<bfd::Session> bfd;
    std::optional<net::BfdSender> bfd_tx;
    bfd::Timers bfd_timers;
    PeerStatus status;
  };

  BgpSettings settings;
  std::map<std::string, std::unique_ptr<Peer>> peers;
  std::map<std::string, RouteSet> routes;
  std::optional<net::BfdReceiver> bfd_v4, bfd_v6;
  bool bfd_tried = false;
  std::string bfd_error;
  uint64_t bfd_discarded = 0;
  std::mt19937_64 rng{std::random_device{}()};

  void configure(const BgpSettings& next, Time now);
  void openBfdReceivers();
  std::optional<bfd::Timers> bfdTimers(const PeerSettings& p) const;
  void connect(Peer& p, Time now);
  void pump(Peer& p, Time now);  // carry out what the session asked for
  void startBfd(Peer& p, Time now);
  void pumpBfd(Peer& p, Time now);
  void onSocket(Peer& p, short revents, Time now);
  void onBfdDatagram(const net::BfdDatagram& d, Time now);
  void stopAll(Time now);
  SpeakerStatus snapshot() const;
};

std::optional<bfd::Timers> Speaker::Loop::bfdTimers(const PeerSettings& p) const {
  if (p.bfd_profile.empty()) return std::nullopt;
  const auto it = settings.bfd_profiles.find(p.bfd_profile);
  if (it == settings.bfd_profiles.end()) return std::nullopt;
  return it->second.timers;
}

void Speaker::Loop::openBfdReceivers() {
  if (bfd_tried) return;
  bfd_tried = true;
  auto v4 = net::BfdReceiver::open(false);
  auto v6 = net::BfdReceiver::open(true);
  if (v4) bfd_v4 = std::move(*v4);
  if (v6) bfd_v6 = std::move(*v6);
  if (!v4 || !v6) {
    bfd_error = !v4 ? v4.error() : v6.error();
    spdlog::error("event=bfd_unavailable reason=socket msg=\"{}\"", bfd_error);
  }
}

void Speaker::Loop::configure(const BgpSettings& next, Time now) {
  settings = next;
  std::map<std::string, const PeerSettings*> wanted;
  for (const PeerSettings& p : next.peers) wanted[p.name] = &p;
  for (auto it = peers.begin(); it != peers.end();) {
    const auto w = wanted.find(it->first);
    if (w != wanted.end() && *w->second == it->second->session.settings()) {
      ++it;
      continue;
    }
    Peer& p = *it->second;
    spdlog::info("event=bgp_peer_removed peer={} reason={}", it->first,
                 w == wanted.end() ? "deconfigured" : "settings_changed");
    p.session.stop(
        now, StopMode::kWithdraw,
        w == wanted.end() ? "peer removed from the configuration" : "peer settings changed");
    if (p.bfd) p.bfd->adminDown(now);
    pump(p, now);
    pumpBfd(p, now);
    it = peers.erase(it);
  }
  for (const PeerSettings& s : next.peers) {
    if (peers.count(s.name)) {
      Peer& p = *peers[s.name];
      const auto timers = bfdTimers(s);
      if (p.bfd && timers && *timers != p.bfd_timers) {
        p.bfd_timers = *timers;
        p.bfd->setTimers(now, *timers);
      }
      continue;
    }
    auto p = std::make_unique<Peer>(s, now);
    p->status.name = s.name;
    p->status.address = s.address;
    p->status.bfd_enabled = !s.bfd_profile.empty();
    if (p->status.bfd_enabled) openBfdReceivers();
    p->session.setRoutes(now, routes[s.name]);
    p->session.start(now);
    spdlog::info(
        "event=bgp_peer_added peer={} address={} peer_asn={} local_asn={} bfd={} "
        "graceful_restart={} md5={}",
        s.name, s.address.toString(), s.peer_asn, s.local_asn,
        s.bfd_profile.empty() ? "off" : s.bfd_profile, s.graceful_restart, !s.password.empty());
    peers[s.name] = std::move(p);
  }
}

void Speaker::Loop::connect(Peer& p, Time now) {
  const PeerSettings& s = p.session.settings();
  auto c = net::TcpConnection::connect(s.address, s.port, s.source, s.password);
  if (!c) {
    p.session.connectFailed(now, c.error());
    return;
  }
  p.conn = std::move(*c);
  p.connecting = true;
}

void Speaker::Loop::pump(Peer& p, Time now) {
  for (int round = 0; round < 4; ++round) {
    Output out = p.session.takeOutput();
    for (const SessionEvent& e : p.session.takeEvents()) {
      const std::string& peer = p.status.name;
      switch (e.kind) {
        case SessionEvent::Kind::kStateChanged:
          if (e.from == State::kEstablished) ++p.status.flaps;
          if (e.from == State::kConnect && e.to == State::kIdle) {
            spdlog::warn("event=bgp_connect_failed peer={} address={} reason=\"{}\"", peer,
                         p.session.settings().address.toString(), e.detail);
          }
          if (e.to == State::kEstablished || e.from == State::kEstablished) {
            spdlog::info("event=bgp_session_state peer={} from={} to={} reason=\"{}\"", peer,
                         stateName(e.from), stateName(e.to), e.detail);
          } else {
            spdlog::debug("event=bgp_session_state peer={} from={} to={} reason=\"{}\"", peer,
                          stateName(e.from), stateName(e.to), e.detail);
          }
          if (e.to == State::kOpenSent) startBfd(p, now);
          break;
        case SessionEvent::Kind::kNotificationSent:
          spdlog::warn("event=bgp_notification direction=sent peer={} msg=\"{}\" reason=\"{}\"",
                       peer, e.detail, p.session.stats().last_error);
          break;
        case SessionEvent::Kind::kNotificationReceived:
          spdlog::warn("event=bgp_notification direction=received peer={} msg=\"{}\"", peer,
                       e.detail);
          break;
        case SessionEvent::Kind::kUpdateMalformed:
          spdlog::warn("event=bgp_update_malformed peer={} reason=\"{}\" action=treat_as_withdraw",
                       peer, e.detail);
          break;
        case SessionEvent::Kind::kRouteSkipped:
          spdlog::warn("event=bgp_route_skipped peer={} reason=\"{}\"", peer, e.detail);
          break;
      }
    }
    if (p.conn && !out.send.empty()) {
      if (auto st = p.conn->write(out.send); !st) {
        p.conn.reset();
        p.session.closed(now, st.message());
        continue;
      }
    }
    if (out.close) {
      if (p.conn) p.conn->flush();
      p.conn.reset();
      p.connecting = false;
    }
    if (out.connect) {
      connect(p, now);
      continue;  // a synchronous failure produced more output
    }
    if (out.send.empty() && !out.close) break;
  }
}

void Speaker::Loop::startBfd(Peer& p, Time now) {
  const auto timers = bfdTimers(p.session.settings());
  if (!timers || !p.conn) return;
  auto local = p.conn->finishConnect();
  if (!local) return;
  if (p.bfd_tx && p.bfd_tx->local() == *local) return;  // already running from this address
  auto tx = net::BfdSender::open(*local, p.session.settings().address);
  if (!tx) {
    spdlog::error("event=bfd_unavailable peer={} reason=socket msg=\"{}\"", p.status.name,
                  tx.error());
    return;
  }
  p.bfd_tx = std::move(*tx);
  uint32_t disc = 0;
  while (disc == 0) disc = static_cast<uint32_t>(rng());
  p.bfd_timers = *timers;
  p.bfd.emplace(disc, *timers, rng(), now);
  spdlog::info("event=bfd_started peer={} local={} tx_ms={} rx_ms={} multiplier={}", p.status.name,
               local->toString(), timers->desired_min_tx.count() / 1000,
               timers->required_min_rx.count() / 1000, timers->detect_mult);
}

void Speaker::Loop::pumpBfd(Peer& p, Time now) {
  if (!p.bfd) return;
  for (const bfd::ControlPacket& pk : p.bfd->takePackets()) {
    if (p.bfd_tx) p.bfd_tx->send(bfd::encode(pk));
  }
  for (const bfd::Transition& t : p.bfd->takeTransitions()) {
    p.status.bfd_state = t.to;
    spdlog::log(t.to == bfd::State::kUp || t.from == bfd::State::kUp ? spdlog::level::info
                                                                     : spdlog::level::debug,
                "event=bfd_state peer={} from={} to={} diag={}", p.status.name,
                bfd::stateName(t.from), bfd::stateName(t.to), bfd::diagName(t.diag));
    if (t.from == bfd::State::kUp && t.to == bfd::State::kDown) {
      ++p.status.bfd_downs;
      p.status.bfd_last_diag = bfd::diagName(t.diag);
      p.session.bfdDown(now);
      pump(p, now);
    }
  }
}

void Speaker::Loop::onSocket(Peer& p, short revents, Time now) {
  if (p.connecting) {
    if (!(revents & (POLLOUT | POLLERR | POLLHUP))) return;
    p.connecting = false;
    auto local = p.conn->finishConnect();
    if (!local) {
      p.conn.reset();
      p.session.connectFailed(now, local.error());
    } else {
      p.session.connected(now, *local);
    }
    pump(p, now);
    return;
  }
  if (revents & POLLOUT) p.conn->flush();
  if (revents & (POLLIN | POLLHUP | POLLERR)) {
    std::vector<uint8_t> bytes;
    const Status st = p.conn->read(&bytes);
    if (!bytes.empty()) p.session.received(now, bytes);
    pump(p, now);
    if (!st && p.conn) {
      p.conn.reset();
      p.session.closed(now, st.message());
      pump(p, now);
    }
  }
}

void Speaker::Loop::onBfdDatagram(const net::BfdDatagram& d, Time now) {
  std::string why;
  const auto pk = bfd::decode(d.bytes, &why);
  if (!pk) {
    ++bfd_discarded;
    spdlog::debug("event=bfd_discarded from={} reason=\"{}\"", d.from.toString(), why);
    return;
  }
  for (auto& [name, p] : peers) {
    if (!p->bfd) continue;
    const bool mine = pk->your_discriminator != 0
                          ? pk->your_discriminator == p->bfd->localDiscriminator()
                          : d.from == p->session.settings().address;
    if (!mine) continue;
    p->bfd->receive(now, *pk);
    pumpBfd(*p, now);
    return;
  }
  ++bfd_discarded;
}

void Speaker::Loop::stopAll(Time now) {
  // Routers that keep our routes keep sending: drop that traffic silently
  // until the next agent runs (vip_hold.h).
  std::vector<IpPrefix> held;
  for (auto& [name, p] : peers) {
    if (!p->session.settings().graceful_restart) continue;
    for (const auto& [prefix, attrs] : routes[name]) held.push_back(prefix);
  }
  if (!held.empty()) {
    const Status st = net::holdPrefixes(held);
    if (st) {
      spdlog::info("event=bgp_vips_held prefixes={} msg=\"dropped until the next agent runs\"",
                   held.size());
    } else {
      spdlog::warn("event=bgp_vips_held reason=netlink msg=\"{}\"", st.message());
    }
  }
  for (auto& [name, p] : peers) {
    const bool graceful = p->session.settings().graceful_restart;
    p->session.stop(now, graceful ? StopMode::kGraceful : StopMode::kWithdraw, "agent stopping");
    spdlog::info("event=bgp_stop peer={} mode={}", name,
                 graceful ? "graceful_restart" : "withdraw");
    pump(*p, now);
    // Withdrawn: say AdminDown. Graceful: fall silent, so the router has
    // seen the session close (and entered graceful restart) before BFD
    // times out; a router that honours the C bit keeps the routes then.
    if (p->bfd && !graceful) {
      p->bfd->adminDown(now);
      pumpBfd(*p, now);
    }
  }
}

SpeakerStatus Speaker::Loop::snapshot() const {
  SpeakerStatus s;
  for (const auto& [name, p] : peers) {
    PeerStatus ps = p->status;
    ps.session = p->session.stats();
    if (p->bfd) ps.bfd_state = p->bfd->state();
    s.peers.push_back(std::move(ps));
  }
  s.bfd_discarded = bfd_discarded;
  s.bfd_error = bfd_error;
  return s;
}

Result<std::unique_ptr<Speaker>> Speaker::start() {
  std::unique_ptr<Speaker> s(new Speaker());
  s->wake_fd_.reset(eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
  if (!s->wake_fd_.valid()) return Status::error(std::string("eventfd: ") + std::strerror(errno));
  s->loop_ = std::make_unique<Loop>();
  // Blackhole routes a previous agent left for its restart (vip_hold.h):
  // the datapath runs again, they go.
  if (auto released = net::releaseHeldPrefixes(); !released) {
    spdlog::warn("event=bgp_vips_released reason=netlink msg=\"{}\"", released.error());
  } else if (*released > 0) {
    spdlog::info("event=bgp_vips_released prefixes={}", *released);
  }
  s->thread_ = std::thread([self = s.get()] {
    Loop& L = *self->loop_;
    while (!self->stop_.load()) {
      Time now = Clock::now();
      {
        std::unique_lock<std::mutex> lock(self->mu_);
        if (self->pending_settings_set_) {
          BgpSettings next = std::move(self->pending_settings_);
          self->pending_settings_set_ = false;
          lock.unlock();
          L.configure(next, now);
          lock.lock();
        }
        if (self->pending_routes_set_) {
          L.routes = std::move(self->pending_routes_);
          self->pending_routes_set_ = false;
          lock.unlock();
          for (auto& [name, p] : L.peers) {
            p->session.setRoutes(now, L.routes[name]);
            L.pump(*p, now);
          }
        }
      }
      // Wait for a socket or the earliest deadline.
      std::vector<pollfd> fds = {{self->wake_fd_.get(), POLLIN, 0}};
      if (L.bfd_v4) fds.push_back({L.bfd_v4->fd(), POLLIN, 0});
      if (L.bfd_v6) fds.push_back({L.bfd_v6->fd(), POLLIN, 0});
      const size_t first_peer = fds.size();
      std::vector<Loop::Peer*> polled;
      std::optional<Time> deadline;
      for (auto& [name, p] : L.peers) {
        for (auto d : {p->session.nextDeadline(), p->bfd ? p->bfd->nextDeadline() : std::nullopt}) {
          if (d && (!deadline || *d < *deadline)) deadline = d;
        }
        if (!p->conn) continue;
        short events = POLLIN;
        if (p->connecting || p->conn->wantsWrite()) events |= POLLOUT;
        fds.push_back({p->conn->fd(), events, 0});
        polled.push_back(p.get());
      }
      int timeout = 1000;
      if (deadline) {
        const auto ms = std::chrono::ceil<Millis>(*deadline - Clock::now()).count();
        timeout = static_cast<int>(std::clamp<int64_t>(ms, 0, 1000));
      }
      ::poll(fds.data(), fds.size(), timeout);
      now = Clock::now();
      if (fds[0].revents & POLLIN) {
        uint64_t v;
        (void)!read(self->wake_fd_.get(), &v, sizeof v);
      }
      for (size_t i = 1; i < first_peer; ++i) {
        if (!(fds[i].revents & POLLIN)) continue;
        net::BfdReceiver& r = fds[i].fd == (L.bfd_v4 ? L.bfd_v4->fd() : -1) ? *L.bfd_v4 : *L.bfd_v6;
        while (auto d = r.receive(&L.bfd_discarded)) L.onBfdDatagram(*d, now);
      }
      for (size_t i = 0; i < polled.size(); ++i) {
        if (fds[first_peer + i].revents && polled[i]->conn) {
          L.onSocket(*polled[i], fds[first_peer + i].revents, now);
        }
      }
      for (auto& [name, p] : L.peers) {
        if (p->bfd) {
          p->bfd->tick(now);
          L.pumpBfd(*p, now);
        }
        p->session.tick(now);
        L.pump(*p, now);
      }
      std::lock_guard<std::mutex> lock(self->mu_);
      self->status_ = L.snapshot();
    }
    L.stopAll(Clock::now());
  });
  return s;
}

Speaker::~Speaker() {
  stop_.store(true);
  wake();
  if (thread_.joinable()) thread_.join();
}

void Speaker::wake() {
  const uint64_t one = 1;
  (void)!write(wake_fd_.get(), &one, sizeof one);
}

void Speaker::configure(const BgpSettings& settings) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    pending_settings_ = settings;
    pending_settings_set_ = true;
  }
  wake();
}

void Speaker::setRoutes(std::map<std::string, RouteSet> routes) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    pending_routes_ = std::move(routes);
    pending_routes_set_ = true;
  }
  wake();
}

SpeakerStatus Speaker::status() const {
  std::lock_guard<std::mutex> lock(mu_);
  return status_;
}

}  // namespace flowlb::agent::bgp
