"""A backend for the lab: says who answered, over TCP (HTTP) and UDP.

  GET /id            -> the backend's name
  GET /client        -> the address the connection came from, as the backend sees it
  GET /bytes/N       -> N deterministic bytes (byte i = (i * 7 + 3) % 256)
  GET /slow/N/MS     -> N bytes in 16 KiB pieces, MS milliseconds apart
  UDP datagram       -> "<name> <datagram>", sent from the address it reached
HTTP is served on IPv4 and IPv6.

Usage (from the repository root):
  python3 -m e2e.lab.backend_server NAME PORT UDP_ADDR[,UDP_ADDR...]
"""
import http.server
import socket
import socketserver
import sys
import threading
import time

from e2e.lib.content import pattern

NAME = "backend"  # set by main()


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_GET(self):
        parts = self.path.strip("/").split("/")
        if parts[0] in ("id", "client"):
            body = (NAME if parts[0] == "id" else self.client_address[0]).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        elif parts[0] in ("bytes", "slow"):
            n = int(parts[1])
            delay = int(parts[2]) / 1000 if parts[0] == "slow" else 0
            self.send_response(200)
            self.send_header("Content-Length", str(n))
            self.send_header("X-Backend", NAME)
            self.end_headers()
            sent = 0
            while sent < n:
                piece = min(16384, n - sent)
                self.wfile.write(pattern(piece, start=sent))
                sent += piece
                if delay:
                    time.sleep(delay)
        else:
            self.send_error(404)


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True


def udp(addr):
    s = socket.socket(socket.AF_INET6 if ":" in addr else socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((addr, 53))
    while True:
        data, peer = s.recvfrom(2048)
        s.sendto(NAME.encode() + b" " + data, peer)


class Server6(Server):
    address_family = socket.AF_INET6

    def server_bind(self):
        self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        super().server_bind()


def main(argv):
    global NAME
    NAME, port, udp_addrs = argv[1], int(argv[2]), argv[3].split(",")
    for a in udp_addrs:
        threading.Thread(target=udp, args=(a,), daemon=True).start()
    threading.Thread(target=Server6(("::", port), Handler).serve_forever, daemon=True).start()
    Server(("0.0.0.0", port), Handler).serve_forever()


if __name__ == "__main__":
    main(sys.argv)
