// The sockets of the BGP speaker and BFD, each class owning one descriptor
// (RAII at the C boundary). Errors come back as Status with the errno text.
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "common/ip_addr.h"
#include "common/status.h"

namespace flowlb::agent::net {

class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) : fd_(fd) {}
  Fd(Fd&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
  Fd& operator=(Fd&& o) noexcept;
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd();
  int get() const { return fd_; }
  explicit operator bool() const { return fd_ >= 0; }

 private:
  int fd_ = -1;
};

sockaddr_storage toSockaddr(const IpAddr& a, uint16_t port, socklen_t* len);
IpAddr fromSockaddr(const sockaddr_storage& ss);

// A non-blocking TCP connection to a BGP peer. connect() starts it; the
// caller polls for POLLOUT and calls finishConnect().
class TcpConnection {
 public:
  // `password`: TCP-MD5 (RFC 2385) for the peer's address, set before the
  // SYN; the kernel then signs every segment and drops unsigned ones.
  static Result<TcpConnection> connect(const IpAddr& peer, uint16_t port,
                                       const std::optional<IpAddr>& source,
                                       const std::string& password);
  // The local address once connected, or why the connection failed.
  Result<IpAddr> finishConnect();
  // Reads what is there: bytes (possibly none), or an error/EOF as Status.
  Status read(std::vector<uint8_t>* into);
  // Queues and writes what the socket takes; the rest waits for POLLOUT.
  Status write(std::span<const uint8_t> bytes);
  Status flush();
  bool wantsWrite() const { return !pending_.empty(); }
  int fd() const { return fd_.get(); }

 private:
  Fd fd_;
  std::vector<uint8_t> pending_;
};

// BFD (RFC 5881): one receiving socket per family on port 3784 that checks
// the TTL/hop limit is 255, and one sending socket per session from a port
// in 49152-65535 with TTL 255.
struct BfdDatagram {
  std::vector<uint8_t> bytes;
  IpAddr from;
};

class BfdReceiver {
 public:
  static Result<BfdReceiver> open(bool v6);
  // One datagram if one waits; `discarded` counts those with a wrong TTL.
  std::optional<BfdDatagram> receive(uint64_t* discarded);
  int fd() const { return fd_.get(); }

 private:
  Fd fd_;
};

class BfdSender {
 public:
  static Result<BfdSender> open(const IpAddr& local, const IpAddr& peer);
  Status send(std::span<const uint8_t> bytes);
  const IpAddr& local() const { return local_; }

 private:
  Fd fd_;
  IpAddr local_;
};

}  // namespace flowlb::agent::net
