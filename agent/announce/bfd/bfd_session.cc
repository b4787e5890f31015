#include "agent/announce/bfd/bfd_session.h"

#include <algorithm>
#include <utility>

#include "common/hash.h"

namespace flowlb::agent::bfd {
namespace {

constexpr Micros kSlowTx{1'000'000};  // §6.8.3: at least 1 s while not Up

uint32_t us(Micros m) {
  return static_cast<uint32_t>(std::min<int64_t>(m.count(), UINT32_MAX));
}

}  // namespace

Session::Session(uint32_t local_discriminator, Timers timers, uint64_t seed, Time now)
    : local_disc_(local_discriminator), timers_(timers), rng_(seed) {
  scheduleTx(now);
}

uint64_t Session::random() {
  rng_ += 0x9e3779b97f4a7c15ULL;
  return mix64(rng_);
}

Micros Session::advertisedMinTx() const {
  return state_ == State::kUp ? timers_.desired_min_tx : std::max(timers_.desired_min_tx, kSlowTx);
}

Micros Session::txInterval() const {
  return std::max(advertisedMinTx(), remote_min_rx_);
}

Micros Session::detectionTime() const {
  if (remote_detect_mult_ == 0) return Micros{0};
  const Micros rx =
      std::max(old_required_min_rx_.value_or(timers_.required_min_rx), timers_.required_min_rx);
  return remote_detect_mult_ * std::max(rx, remote_min_tx_);
}

void Session::scheduleTx(Time now) {
  if (remote_min_rx_.count() == 0 || state_ == State::kAdminDown) {
    next_tx_ = state_ == State::kAdminDown ? std::optional<Time>(now + kSlowTx) : std::nullopt;
    return;
  }
  const Micros interval = txInterval();
  const uint64_t span = timers_.detect_mult == 1 ? 15 : 25;  // 75-90 % or 75-100 %
  const uint64_t percent = 75 + random() % (span + 1);
  next_tx_ = now + Micros{interval.count() * static_cast<int64_t>(percent) / 100};
}

ControlPacket Session::packet(bool final) const {
  ControlPacket p;
  p.diag = diag_;
  p.state = state_;
  p.poll = poll_active_ && !final;
  p.final = final;
  p.detect_mult = timers_.detect_mult;
  p.my_discriminator = local_disc_;
  p.your_discriminator = remote_disc_;
  p.desired_min_tx_us = us(advertisedMinTx());
  p.required_min_rx_us = us(timers_.required_min_rx);
  return p;
}

void Session::enter(Time now, State next, Diag diag) {
  if (next == state_) return;
  const State from = state_;
  const Micros before = advertisedMinTx();
  state_ = next;
  if (next == State::kDown || next == State::kAdminDown) diag_ = diag;
  if (next == State::kUp) diag_ = Diag::kNone;
  transitions_.push_back({from, next, diag_});
  if (advertisedMinTx() != before && next == State::kUp) poll_active_ = true;  // §6.8.3
  if (next != State::kUp) poll_active_ = false;
  scheduleTx(now);
}

void Session::receive(Time now, const ControlPacket& p) {
  if (p.your_discriminator != 0 && p.your_discriminator != local_disc_) return;
  remote_disc_ = p.my_discriminator;
  remote_state_ = p.state;
  remote_min_rx_ = Micros{p.required_min_rx_us};
  remote_min_tx_ = Micros{p.desired_min_tx_us};
  remote_detect_mult_ = p.detect_mult;
  if (p.final && poll_active_) {
    poll_active_ = false;
    old_required_min_rx_.reset();
  }
  if (state_ == State::kAdminDown) return;
  detect_deadline_ = now + detectionTime();
  if (p.state == State::kAdminDown) {
    if (state_ != State::kDown) {
      enter(now, State::kDown, Diag::kNeighborSignaledDown);
      remote_disc_ = p.my_discriminator;
    }
  } else if (state_ == State::kDown) {
    if (p.state == State::kDown) {
      enter(now, State::kInit, Diag::kNone);
    } else if (p.state == State::kInit) {
      enter(now, State::kUp, Diag::kNone);
    }
  } else if (state_ == State::kInit) {
    if (p.state == State::kInit || p.state == State::kUp) enter(now, State::kUp, Diag::kNone);
  } else if (p.state == State::kDown) {  // Up
    enter(now, State::kDown, Diag::kNeighborSignaledDown);
  }
  if (p.poll) out_.push_back(packet(true));  // §6.8.6: answer a Poll at once with Final
  // A changed remote minimum may move our next transmission earlier.
  if (next_tx_ && remote_min_rx_.count() > 0 && *next_tx_ > now + txInterval()) scheduleTx(now);
  if (!next_tx_ && remote_min_rx_.count() > 0) scheduleTx(now);
}

void Session::setTimers(Time now, Timers t) {
  if (t == timers_) return;
  if (t.required_min_rx < timers_.required_min_rx) old_required_min_rx_ = timers_.required_min_rx;
  timers_ = t;
  if (state_ == State::kUp) poll_active_ = true;
  scheduleTx(now);
}

void Session::adminDown(Time now) {
  enter(now, State::kAdminDown, Diag::kAdminDown);
  detect_deadline_.reset();
  out_.push_back(packet(false));
}

void Session::adminUp(Time now) {
  if (state_ != State::kAdminDown) return;
  enter(now, State::kDown, Diag::kAdminDown);
}

std::optional<Time> Session::nextDeadline() const {
  if (next_tx_ && detect_deadline_) return std::min(*next_tx_, *detect_deadline_);
  return next_tx_ ? next_tx_ : detect_deadline_;
}

void Session::tick(Time now) {
  if (detect_deadline_ && now >= *detect_deadline_) {
    detect_deadline_.reset();
    if (state_ == State::kInit || state_ == State::kUp) {
      remote_disc_ = 0;  // §6.8.1
      remote_min_rx_ = Micros{1};
      remote_detect_mult_ = 0;
      enter(now, State::kDown, Diag::kDetectionTimeExpired);
    }
  }
  if (next_tx_ && now >= *next_tx_) {
    out_.push_back(packet(false));
    scheduleTx(now);
  }
}

std::vector<ControlPacket> Session::takePackets() {
  return std::exchange(out_, {});
}

std::vector<Transition> Session::takeTransitions() {
  return std::exchange(transitions_, {});
}

}  // namespace flowlb::agent::bfd
