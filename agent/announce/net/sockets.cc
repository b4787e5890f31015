#include "agent/announce/net/sockets.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/tcp.h>
#include <netinet/ip.h>
#include <unistd.h>

#include <cstring>

#include "common/hash.h"

namespace flowlb::agent::net {
namespace {

Status errnoStatus(const std::string& what) {
  return Status::error(what + ": " + std::strerror(errno));
}

}  // namespace

Fd& Fd::operator=(Fd&& o) noexcept {
  if (this != &o) {
    if (fd_ >= 0) close(fd_);
    fd_ = std::exchange(o.fd_, -1);
  }
  return *this;
}

Fd::~Fd() {
  if (fd_ >= 0) close(fd_);
}

sockaddr_storage toSockaddr(const IpAddr& a, uint16_t port, socklen_t* len) {
  sockaddr_storage ss{};
  if (a.isV4()) {
    auto* s = reinterpret_cast<sockaddr_in*>(&ss);
    s->sin_family = AF_INET;
    s->sin_port = htons(port);
    std::memcpy(&s->sin_addr, a.v4(), 4);
    *len = sizeof(sockaddr_in);
  } else {
    auto* s = reinterpret_cast<sockaddr_in6*>(&ss);
    s->sin6_family = AF_INET6;
    s->sin6_port = htons(port);
    std::memcpy(&s->sin6_addr, a.bytes.data(), 16);
    *len = sizeof(sockaddr_in6);
  }
  return ss;
}

IpAddr fromSockaddr(const sockaddr_storage& ss) {
  if (ss.ss_family == AF_INET) {
    return IpAddr::fromV4(
        reinterpret_cast<const uint8_t*>(&reinterpret_cast<const sockaddr_in*>(&ss)->sin_addr));
  }
  const auto* s6 = reinterpret_cast<const sockaddr_in6*>(&ss);
  IpAddr a = IpAddr::fromV6(s6->sin6_addr.s6_addr);
  return a;
}

Result<TcpConnection> TcpConnection::connect(const IpAddr& peer, uint16_t port,
                                             const std::optional<IpAddr>& source,
                                             const std::string& password) {
  TcpConnection c;
  const int family = peer.isV4() ? AF_INET : AF_INET6;
  c.fd_ = Fd(socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!c.fd_) return errnoStatus("socket");
  const int one = 1;
  setsockopt(c.fd_.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  const int tos = 0xc0;  // CS6, network control
  if (peer.isV4()) {
    setsockopt(c.fd_.get(), IPPROTO_IP, IP_TOS, &tos, sizeof tos);
  } else {
    setsockopt(c.fd_.get(), IPPROTO_IPV6, IPV6_TCLASS, &tos, sizeof tos);
  }
  if (!password.empty()) {
    tcp_md5sig sig{};
    socklen_t len = 0;
    const sockaddr_storage peer_sa = toSockaddr(peer, 0, &len);
    std::memcpy(&sig.tcpm_addr, &peer_sa, sizeof sig.tcpm_addr);
    sig.tcpm_keylen = static_cast<uint16_t>(password.size());
    std::memcpy(sig.tcpm_key, password.data(), std::min(password.size(), sizeof sig.tcpm_key));
    if (setsockopt(c.fd_.get(), IPPROTO_TCP, TCP_MD5SIG, &sig, sizeof sig) != 0) {
      return errnoStatus("TCP_MD5SIG (is the kernel built with CONFIG_TCP_MD5SIG?)");
    }
  }
  if (source) {
    socklen_t len = 0;
    const auto sa = toSockaddr(*source, 0, &len);
    if (bind(c.fd_.get(), reinterpret_cast<const sockaddr*>(&sa), len) != 0) {
      return errnoStatus("bind to " + source->toString());
    }
  }
  socklen_t len = 0;
  const auto sa = toSockaddr(peer, port, &len);
  if (::connect(c.fd_.get(), reinterpret_cast<const sockaddr*>(&sa), len) != 0 &&
      errno != EINPROGRESS) {
    return errnoStatus("connect");
  }
  return c;
}

Result<IpAddr> TcpConnection::finishConnect() {
  int err = 0;
  socklen_t len = sizeof err;
  if (getsockopt(fd_.get(), SOL_SOCKET, SO_ERROR, &err, &len) != 0) return errnoStatus("SO_ERROR");
  if (err != 0) return Status::error(std::strerror(err));
  sockaddr_storage ss{};
  len = sizeof ss;
  if (getsockname(fd_.get(), reinterpret_cast<sockaddr*>(&ss), &len) != 0) {
    return errnoStatus("getsockname");
  }
  return fromSockaddr(ss);
}

Status TcpConnection::read(std::vector<uint8_t>* into) {
  uint8_t buf[16384];
  for (;;) {
    const ssize_t n = recv(fd_.get(), buf, sizeof buf, MSG_DONTWAIT);
    if (n > 0) {
      into->insert(into->end(), buf, buf + n);
      continue;
    }
    if (n == 0) return Status::error("closed by the peer");
    if (errno == EAGAIN || errno == EWOULDBLOCK) return Status::ok();
    if (errno == EINTR) continue;
    return errnoStatus("recv");
  }
}

Status TcpConnection::write(std::span<const uint8_t> bytes) {
  pending_.insert(pending_.end(), bytes.begin(), bytes.end());
  return flush();
}

Status TcpConnection::flush() {
  while (!pending_.empty()) {
    const ssize_t n =
        send(fd_.get(), pending_.data(), pending_.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n > 0) {
      pending_.erase(pending_.begin(), pending_.begin() + n);
      continue;
    }
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return Status::ok();
    if (n < 0 && errno == EINTR) continue;
    return errnoStatus("send");
  }
  return Status::ok();
}

Result<BfdReceiver> BfdReceiver::open(bool v6) {
  BfdReceiver r;
  r.fd_ = Fd(socket(v6 ? AF_INET6 : AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!r.fd_) return errnoStatus("socket");
  const int one = 1;
  if (v6) {
    setsockopt(r.fd_.get(), IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
    setsockopt(r.fd_.get(), IPPROTO_IPV6, IPV6_RECVHOPLIMIT, &one, sizeof one);
  } else {
    setsockopt(r.fd_.get(), IPPROTO_IP, IP_RECVTTL, &one, sizeof one);
  }
  socklen_t len = 0;
  const auto any = v6 ? IpAddr{} : IpAddr::fromV4(std::array<uint8_t, 4>{}.data());
  const auto sa = toSockaddr(any, 3784, &len);
  if (bind(r.fd_.get(), reinterpret_cast<const sockaddr*>(&sa), len) != 0) {
    return errnoStatus(std::string("bind UDP ") + (v6 ? "[::]" : "0.0.0.0") +
                       ":3784 (another BFD daemon on this node?)");
  }
  return r;
}

std::optional<BfdDatagram> BfdReceiver::receive(uint64_t* discarded) {
  for (;;) {
    uint8_t buf[512];
    alignas(cmsghdr) uint8_t control[128];
    sockaddr_storage from{};
    iovec iov{buf, sizeof buf};
    msghdr msg{};
    msg.msg_name = &from;
    msg.msg_namelen = sizeof from;
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control;
    msg.msg_controllen = sizeof control;
    const ssize_t n = recvmsg(fd_.get(), &msg, MSG_DONTWAIT);
    if (n < 0) return std::nullopt;
    int ttl = -1;
    for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
      if ((c->cmsg_level == IPPROTO_IP && c->cmsg_type == IP_TTL) ||
          (c->cmsg_level == IPPROTO_IPV6 && c->cmsg_type == IPV6_HOPLIMIT)) {
        std::memcpy(&ttl, CMSG_DATA(c), sizeof ttl);
      }
    }
    if (ttl != 255) {  // RFC 5881 §5: single hop, GTSM
      ++*discarded;
      continue;
    }
    return BfdDatagram{std::vector<uint8_t>(buf, buf + n), fromSockaddr(from)};
  }
}

Result<BfdSender> BfdSender::open(const IpAddr& local, const IpAddr& peer) {
  BfdSender s;
  s.local_ = local;
  s.fd_ =
      Fd(socket(local.isV4() ? AF_INET : AF_INET6, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!s.fd_) return errnoStatus("socket");
  const int ttl = 255;
  if (local.isV4()) {
    setsockopt(s.fd_.get(), IPPROTO_IP, IP_TTL, &ttl, sizeof ttl);
  } else {
    setsockopt(s.fd_.get(), IPPROTO_IPV6, IPV6_UNICAST_HOPS, &ttl, sizeof ttl);
  }
  const int tos = 0xc0;
  setsockopt(s.fd_.get(), local.isV4() ? IPPROTO_IP : IPPROTO_IPV6,
             local.isV4() ? IP_TOS : IPV6_TCLASS, &tos, sizeof tos);
  // RFC 5881 §4: a source port in 49152-65535, unique per session.
  bool bound = false;
  const uint32_t start = static_cast<uint32_t>(hashBytes(peer.bytes.data(), 16, getpid()));
  for (uint32_t i = 0; i < 16384 && !bound; ++i) {
    socklen_t len = 0;
    const auto sa = toSockaddr(local, static_cast<uint16_t>(49152 + (start + i) % 16384), &len);
    bound = bind(s.fd_.get(), reinterpret_cast<const sockaddr*>(&sa), len) == 0;
    if (!bound && errno != EADDRINUSE) return errnoStatus("bind to " + local.toString());
  }
  if (!bound) return Status::error("no free BFD source port in 49152-65535");
  socklen_t len = 0;
  const auto to = toSockaddr(peer, 3784, &len);
  if (::connect(s.fd_.get(), reinterpret_cast<const sockaddr*>(&to), len) != 0) {
    return errnoStatus("connect to " + peer.toString());
  }
  return s;
}

Status BfdSender::send(std::span<const uint8_t> bytes) {
  if (::send(fd_.get(), bytes.data(), bytes.size(), MSG_DONTWAIT) < 0) return errnoStatus("send");
  return Status::ok();
}

}  // namespace flowlb::agent::net
