#include "common/http_server.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <list>
#include <vector>

namespace flowlb {

using Clock = std::chrono::steady_clock;

Status parseHostPort(const std::string& text, std::string* host, uint16_t* port) {
  const auto colon = text.rfind(':');
  if (colon == std::string::npos || colon + 1 == text.size()) {
    return Status::error("'" + text + "' is not HOST:PORT");
  }
  std::string h = text.substr(0, colon);
  const std::string p = text.substr(colon + 1);
  if (p.size() > 5 || p.find_first_not_of("0123456789") != std::string::npos) {
    return Status::error("port '" + p + "' of '" + text + "' is not a number in 0..65535");
  }
  const unsigned long value = std::stoul(p);  // at most 5 digits: cannot throw
  if (value > 65535) {
    return Status::error("port '" + p + "' of '" + text + "' is not a number in 0..65535");
  }
  if (h.size() >= 2 && h.front() == '[' && h.back() == ']') {
    h = h.substr(1, h.size() - 2);
  } else if (h.find(':') != std::string::npos) {
    return Status::error("'" + text + "': an IPv6 host goes in brackets, [ADDR]:PORT");
  }
  if (host) *host = h;
  if (port) *port = static_cast<uint16_t>(value);
  return Status::ok();
}

namespace {

struct Conn {
  int fd = -1;
  bool writing = false;
  bool close_after = false;
  bool first = true;  // no request served yet
  std::string in;
  std::string out;
  size_t out_off = 0;
  Clock::time_point deadline;
  Clock::time_point since;  // when it started waiting for its current request
};

const char* reasonPhrase(int status) {
  switch (status) {
    case 200: return "OK";
    case 400: return "Bad Request";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 413: return "Content Too Large";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 503: return "Service Unavailable";
    default: return "Unknown";
  }
}

std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

}  // namespace

struct HttpServer::Impl {
  HttpServerOptions opt;
  std::map<std::string, HttpHandler> routes;
  int listen_fd = -1;
  int wake_fd = -1;
  std::atomic<bool> stop{false};
  std::list<Conn> conns;
  std::atomic<uint64_t> accepted{0}, served{0}, timed_out{0}, evicted{0}, rejected{0}, open{0};

  ~Impl() {
    for (Conn& c : conns) ::close(c.fd);
    if (listen_fd >= 0) ::close(listen_fd);
    if (wake_fd >= 0) ::close(wake_fd);
  }

  void closeConn(std::list<Conn>::iterator it) {
    ::close(it->fd);
    conns.erase(it);
    open = conns.size();
  }

  // At the cap: the connection that has waited longest for its request goes
  // (a slow sender); if every connection is writing, the oldest writer.
  void makeRoom() {
    auto victim = conns.end();
    for (auto it = conns.begin(); it != conns.end(); ++it) {
      if (!it->writing && (victim == conns.end() || it->since < victim->since)) victim = it;
    }
    if (victim == conns.end()) {
      for (auto it = conns.begin(); it != conns.end(); ++it) {
        if (victim == conns.end() || it->since < victim->since) victim = it;
      }
    }
    if (victim != conns.end()) {
      ++evicted;
      closeConn(victim);
    }
  }

  void acceptAll(Clock::time_point now) {
    while (true) {
      const int fd = ::accept4(listen_fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (fd < 0) return;  // EAGAIN, or a transient error: poll again
      const int one = 1;
      setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      if (conns.size() >= opt.max_connections) makeRoom();
      Conn c;
      c.fd = fd;
      c.since = now;
      c.deadline = now + opt.request_timeout;
      conns.push_back(std::move(c));
      ++accepted;
      open = conns.size();
    }
  }

  void respond(Conn& c, const HttpResponse& r, bool head, Clock::time_point now) {
    std::string out = "HTTP/1.1 " + std::to_string(r.status) + " " + reasonPhrase(r.status) +
                      "\r\nContent-Type: " + r.content_type +
                      "\r\nContent-Length: " + std::to_string(r.body.size()) + "\r\n";
    if (c.close_after) out += "Connection: close\r\n";
    out += "\r\n";
    if (!head) out += r.body;
    c.out = std::move(out);
    c.out_off = 0;
    c.writing = true;
    c.deadline = now + opt.write_timeout;
  }

  void fail(Conn& c, int status, const std::string& why, Clock::time_point now) {
    ++rejected;
    c.close_after = true;
    respond(c, HttpResponse{status, "text/plain; charset=utf-8", why + "\n"}, false, now);
  }

  // A whole request head is in c.in: answer it.
  void handle(Conn& c, size_t head_end, Clock::time_point now) {
    const std::string head = c.in.substr(0, head_end);
    c.in.erase(0, head_end + 4);
    const size_t line_end = head.find("\r\n");
    const std::string line = head.substr(0, line_end);
    const size_t sp1 = line.find(' ');
    const size_t sp2 = line.rfind(' ');
    if (sp1 == std::string::npos || sp2 == sp1) return fail(c, 400, "malformed request line", now);
    HttpRequest req;
    req.method = line.substr(0, sp1);
    const std::string target = line.substr(sp1 + 1, sp2 - sp1 - 1);
    const std::string version = line.substr(sp2 + 1);
    if (version != "HTTP/1.1" && version != "HTTP/1.0") {
      return fail(c, 400, "unsupported HTTP version", now);
    }
    bool keep_alive = version == "HTTP/1.1";
    size_t pos = line_end == std::string::npos ? head.size() : line_end + 2;
    while (pos < head.size()) {
      size_t end = head.find("\r\n", pos);
      if (end == std::string::npos) end = head.size();
      const std::string h = head.substr(pos, end - pos);
      pos = end + 2;
      const size_t colon = h.find(':');
      if (colon == std::string::npos) continue;
      const std::string name = lower(h.substr(0, colon));
      std::string value = lower(h.substr(colon + 1));
      value.erase(0, value.find_first_not_of(" \t"));
      if (name == "connection") {
        if (value.find("close") != std::string::npos) keep_alive = false;
        if (value.find("keep-alive") != std::string::npos) keep_alive = true;
      } else if ((name == "content-length" && value != "0") || name == "transfer-encoding") {
        return fail(c, 413, "request bodies are not accepted", now);
      }
    }
    c.close_after = !keep_alive;
    const size_t q = target.find('?');
    req.path = target.substr(0, q);
    if (q != std::string::npos) req.query = target.substr(q + 1);
    if (req.method != "GET" && req.method != "HEAD") {
      ++rejected;
      return respond(c, HttpResponse{405, "text/plain; charset=utf-8", "GET or HEAD only\n"}, false,
                     now);
    }
    auto route = routes.find(req.path);
    HttpResponse r;
    if (route == routes.end()) {
      r = HttpResponse{404, "text/plain; charset=utf-8", "not found\n"};
    } else {
      try {
        r = route->second(req);
      } catch (const std::exception& e) {
        r = HttpResponse{500, "text/plain; charset=utf-8", std::string(e.what()) + "\n"};
      }
    }
    ++served;
    respond(c, r, req.method == "HEAD", now);
  }

  // False when the connection is to be closed.
  bool onReadable(Conn& c, Clock::time_point now) {
    char buf[4096];
    while (true) {
      const ssize_t n = ::recv(c.fd, buf, sizeof buf, 0);
      if (n == 0) return false;
      if (n < 0) return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR;
      if (c.in.empty() && !c.first) {
        // The next request on a kept-alive connection: from its first byte
        // it has request_timeout to arrive whole.
        c.since = now;
        c.deadline = std::min(c.deadline, now + opt.request_timeout);
      }
      c.in.append(buf, static_cast<size_t>(n));
      if (c.writing) {  // pipelined: handled once the response is out
        if (c.in.size() > opt.max_request_bytes) return false;
        continue;
      }
      const size_t end = c.in.find("\r\n\r\n");
      if (end != std::string::npos) {
        handle(c, end, now);
        return true;
      }
      if (c.in.size() > opt.max_request_bytes) {
        fail(c, 431, "request head larger than " + std::to_string(opt.max_request_bytes), now);
        return true;
      }
    }
  }

  bool onWritable(Conn& c, Clock::time_point now) {
    while (c.out_off < c.out.size()) {
      const ssize_t n =
          ::send(c.fd, c.out.data() + c.out_off, c.out.size() - c.out_off, MSG_NOSIGNAL);
      if (n < 0) return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR;
      c.out_off += static_cast<size_t>(n);
    }
    if (c.close_after) return false;
    c.out.clear();
    c.out_off = 0;
    c.writing = false;
    c.first = false;
    c.since = now;
    c.deadline = now + opt.idle_timeout;
    const size_t end = c.in.find("\r\n\r\n");  // a pipelined request already here
    if (end != std::string::npos) {
      handle(c, end, now);
      return onWritable(c, now);
    }
    return true;
  }
};

Result<std::unique_ptr<HttpServer>> HttpServer::start(HttpServerOptions options,
                                                      std::map<std::string, HttpHandler> routes) {
  std::string host;
  uint16_t port = 0;
  if (Status st = parseHostPort(options.address, &host, &port); !st) return st;
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  addrinfo* res = nullptr;
  const std::string service = std::to_string(port);
  if (const int rc =
          getaddrinfo(host.empty() ? nullptr : host.c_str(), service.c_str(), &hints, &res);
      rc != 0) {
    return Status::error("cannot resolve " + options.address + ": " + gai_strerror(rc));
  }
  std::unique_ptr<HttpServer> s(new HttpServer());
  s->impl_ = std::make_unique<Impl>();
  Impl& impl = *s->impl_;
  impl.opt = std::move(options);
  impl.routes = std::move(routes);
  std::string err = "no address";
  for (addrinfo* ai = res; ai != nullptr; ai = ai->ai_next) {
    const int fd = ::socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
      err = std::strerror(errno);
      continue;
    }
    const int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (::bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 || ::listen(fd, 128) != 0) {
      err = std::strerror(errno);
      ::close(fd);
      continue;
    }
    impl.listen_fd = fd;
    break;
  }
  freeaddrinfo(res);
  if (impl.listen_fd < 0) {
    return Status::error("cannot listen on " + impl.opt.address + ": " + err);
  }
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  getsockname(impl.listen_fd, reinterpret_cast<sockaddr*>(&ss), &len);
  s->port_ = ntohs(ss.ss_family == AF_INET6 ? reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port
                                            : reinterpret_cast<sockaddr_in*>(&ss)->sin_port);
  impl.wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (impl.wake_fd < 0) return Status::error(std::string("eventfd: ") + std::strerror(errno));
  HttpServer* self = s.get();
  s->thread_ = std::thread([self] { self->run(); });
  return s;
}

HttpServer::~HttpServer() {
  if (!impl_) return;
  impl_->stop = true;
  const uint64_t one = 1;
  [[maybe_unused]] ssize_t n = ::write(impl_->wake_fd, &one, sizeof one);
  if (thread_.joinable()) thread_.join();
}

HttpServerStats HttpServer::stats() const {
  return {impl_->accepted, impl_->served,   impl_->timed_out,
          impl_->evicted,  impl_->rejected, impl_->open};
}

void HttpServer::run() {
  Impl& im = *impl_;
  std::vector<pollfd> fds;
  std::vector<std::list<Conn>::iterator> which;
  while (!im.stop) {
    fds.clear();
    which.clear();
    fds.push_back({im.wake_fd, POLLIN, 0});
    fds.push_back({im.listen_fd, POLLIN, 0});
    auto now = Clock::now();
    auto next = now + std::chrono::seconds(1);
    for (auto it = im.conns.begin(); it != im.conns.end(); ++it) {
      fds.push_back({it->fd, static_cast<short>(it->writing ? POLLOUT : POLLIN), 0});
      which.push_back(it);
      next = std::min(next, it->deadline);
    }
    const auto wait = std::chrono::duration_cast<std::chrono::milliseconds>(next - now).count();
    const int rc = ::poll(fds.data(), fds.size(), static_cast<int>(std::max<int64_t>(wait, 0)) + 1);
    if (rc < 0 && errno != EINTR) break;
    if (im.stop) break;
    now = Clock::now();
    for (size_t i = 0; i < which.size(); ++i) {
      auto it = which[i];
      const short ev = fds[i + 2].revents;
      bool keep = true;
      if (ev & (POLLERR | POLLNVAL)) {
        keep = false;
      } else if (ev & (POLLIN | POLLHUP)) {
        keep = im.onReadable(*it, now) && (!it->writing || im.onWritable(*it, now));
      } else if (ev & POLLOUT) {
        keep = im.onWritable(*it, now);
      }
      if (keep && now >= it->deadline) {
        ++im.timed_out;
        keep = false;
      }
      if (!keep) im.closeConn(it);
    }
    if (fds[1].revents & POLLIN) im.acceptAll(now);
  }
}

}  // namespace flowlb
