// One single-hop BFD session in asynchronous mode (RFC 5880 §6, RFC 5881)
// as a pure state machine: packets in, packets out, deadlines as data.
// The edge (bfd_socket.cc) demultiplexes received packets to it and calls
// tick() when nextDeadline() passes.
//
// While the session is not Up it transmits at one packet per second at
// most (§6.8.3); on reaching Up it moves to the configured interval with a
// Poll sequence, and so on every interval change. Transmission is jittered
// to 75-100 % of the interval (90 % with a multiplier of 1, §6.8.7). The
// Control Plane Independent bit stays clear: BFD runs in the agent, so a
// router that honours it (FRR's check-control-plane-failure) may keep our
// routes through a graceful restart while still reacting to link failures.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <vector>

#include "agent/announce/bfd/bfd_packet.h"

namespace flowlb::agent::bfd {

using Time = std::chrono::steady_clock::time_point;
using Micros = std::chrono::microseconds;

struct Timers {
  Micros desired_min_tx{300'000};
  Micros required_min_rx{300'000};
  uint8_t detect_mult = 3;
  friend bool operator==(const Timers&, const Timers&) = default;
};

struct Transition {
  State from;
  State to;
  Diag diag;  // why, when `to` is Down
};

class Session {
 public:
  // `seed` drives the transmit jitter (deterministic for tests).
  Session(uint32_t local_discriminator, Timers timers, uint64_t seed, Time now);

  State state() const { return state_; }
  uint32_t localDiscriminator() const { return local_disc_; }
  uint32_t remoteDiscriminator() const { return remote_disc_; }
  Diag diag() const { return diag_; }
  // The detection time in force (0 until the peer has been heard).
  Micros detectionTime() const;

  // A packet from the peer (already decoded and validated by decode()).
  void receive(Time now, const ControlPacket& p);
  // New intervals: a Poll sequence when Up.
  void setTimers(Time now, Timers t);
  // Administratively down (tells the peer, diag 7) and back up.
  void adminDown(Time now);
  void adminUp(Time now);

  std::optional<Time> nextDeadline() const;
  void tick(Time now);

  std::vector<ControlPacket> takePackets();
  std::vector<Transition> takeTransitions();

 private:
  void enter(Time now, State next, Diag diag);
  ControlPacket packet(bool final) const;
  Micros advertisedMinTx() const;
  Micros txInterval() const;
  void scheduleTx(Time now);
  uint64_t random();

  uint32_t local_disc_;
  uint32_t remote_disc_ = 0;
  State state_ = State::kDown;
  State remote_state_ = State::kDown;
  Diag diag_ = Diag::kNone;
  Timers timers_;
  Micros remote_min_rx_{1};  // RFC 5880 §6.8.1: 1 until the peer says
  Micros remote_min_tx_{0};
  uint8_t remote_detect_mult_ = 0;
  bool poll_active_ = false;
  std::optional<Micros> old_required_min_rx_;  // kept for detection until the poll ends
  uint64_t rng_;
  std::optional<Time> next_tx_;
  std::optional<Time> detect_deadline_;
  std::vector<ControlPacket> out_;
  std::vector<Transition> transitions_;
};

}  // namespace flowlb::agent::bfd
