#include "agent/health/probe_wire.h"

namespace flowlb::agent::health {

std::string httpRequest(const std::string& path, const std::string& host) {
  return "GET " + path + " HTTP/1.1\r\nHost: " + host +
         "\r\nUser-Agent: flowlb-health-check\r\nAccept: */*\r\nConnection: close\r\n\r\n";
}

HttpVerdict parseHttpStatusLine(std::string_view in) {
  HttpVerdict v;
  const size_t eol = in.find('\n');
  if (eol == std::string_view::npos) {
    if (in.size() >= kHttpReadLimit) v.kind = HttpVerdict::Kind::kMalformed;
    // Not even the start of "HTTP/": no need to wait for more.
    const std::string_view prefix = "HTTP/";
    if (in.substr(0, prefix.size()) != prefix.substr(0, std::min(in.size(), prefix.size()))) {
      v.kind = HttpVerdict::Kind::kMalformed;
    }
    return v;
  }
  std::string_view line = in.substr(0, eol);
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  // "HTTP/1.1 200 OK": version, one space, three digits, then a space or the end.
  v.kind = HttpVerdict::Kind::kMalformed;
  if (line.size() < 12 || line.substr(0, 7) != "HTTP/1." || line[8] != ' ') return v;
  if (line.size() > 12 && line[12] != ' ') return v;
  int status = 0;
  for (size_t i = 9; i < 12; ++i) {
    if (line[i] < '0' || line[i] > '9') return v;
    status = status * 10 + (line[i] - '0');
  }
  if (status < 100) return v;
  v.kind = HttpVerdict::Kind::kStatus;
  v.status = status;
  return v;
}

std::vector<uint8_t> dnsQuery(uint16_t id) {
  return {static_cast<uint8_t>(id >> 8),
          static_cast<uint8_t>(id),
          0x00,  // QR=0 opcode=QUERY, RD=0: the server answers from itself
          0x00,
          0x00,
          0x01,  // QDCOUNT 1
          0x00,
          0x00,
          0x00,
          0x00,
          0x00,
          0x00,
          0x00,  // QNAME: the root
          0x00,
          0x02,  // QTYPE NS
          0x00,
          0x01};  // QCLASS IN
}

std::string checkDnsResponse(const uint8_t* d, size_t len, uint16_t id) {
  if (len < 12) return "dns: a " + std::to_string(len) + "-byte answer (no header)";
  if (((d[0] << 8) | d[1]) != id) return "dns: an answer to another query id";
  if (!(d[2] & 0x80)) return "dns: not a response (QR clear)";
  const unsigned qdcount = (d[4] << 8) | d[5];
  size_t at = 12;
  for (unsigned q = 0; q < qdcount; ++q) {
    // QNAME: labels up to a zero byte (or a compression pointer), then 4 bytes.
    while (true) {
      if (at >= len) return "dns: truncated question";
      const uint8_t l = d[at];
      if ((l & 0xc0) == 0xc0) {
        at += 2;
        break;
      }
      if (l & 0xc0) return "dns: malformed question name";
      ++at;
      if (l == 0) break;
      at += l;
    }
    at += 4;
    if (at > len) return "dns: truncated question";
  }
  return "";
}

}  // namespace flowlb::agent::health
