"""Client tools for the lab, run inside the client namespace as a module
(python3 -m e2e.lab.client, from the repository root).

  spread URL N         N sequential connections; prints {"b1": n, ...}
  get URL              one request; prints the body
  via PORT URL         one request from local port PORT; prints the body, or timeout
  connect HOST PORT    one TCP connection attempt; prints connected, refused or timeout
  keepalive URL N MS   N requests on one HTTP/1.1 connection, MS milliseconds apart;
                       prints each answer as it comes; fails if one fails
  udp HOST PORT TEXT   one datagram; prints the reply
  udpmany HOST PORT N  N datagrams, each from a new socket (a new client port);
                       prints {"ok": n, "failed": [i, ...]} (a reply must echo its request)
  fetch URL OUT        downloads URL into OUT; prints the backend header first
  raw IFACE DST_MAC    sends malformed frames (see below); prints how many
  loop URL SECONDS     a new connection every 10 ms for SECONDS (each with a 100 ms
                       budget); prints one line per attempt as it ends,
                       [start, end, backend or null] with wall-clock times, so a
                       test can wait on the first successes (failover gaps)
"""
import json
import socket
import struct
import sys
import time
import urllib.request


def spread(url, n):
    counts = {}
    for _ in range(n):
        with urllib.request.urlopen(url, timeout=5) as r:
            who = r.read().decode()
        counts[who] = counts.get(who, 0) + 1
    print(json.dumps(counts))


def get(url):
    with urllib.request.urlopen(url, timeout=5) as r:
        print(r.read().decode())


def via(port, url):
    import http.client
    from urllib.parse import urlsplit
    u = urlsplit(url)

    class Reusing(http.client.HTTPConnection):
        # The port may still be in TIME_WAIT from the last use (when this side
        # closed first): a client kernel reuses such a port for another
        # destination, and so must we (bind alone would say EADDRINUSE).
        def connect(self):
            family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
            s = socket.socket(family, socket.SOCK_STREAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.settimeout(self.timeout)
            s.bind(("::" if family == socket.AF_INET6 else "", int(port)))
            s.connect((self.host, self.port))
            self.sock = s

    conn = Reusing(u.hostname, u.port or 80, timeout=3)
    try:
        conn.request("GET", u.path, headers={"Connection": "close"})
        print(conn.getresponse().read().decode())
    except (socket.timeout, TimeoutError):
        print("timeout")
    finally:
        conn.close()


def connect(host, port):
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.settimeout(3)
        try:
            s.connect((host, int(port)))
            print("connected")
        except ConnectionRefusedError:
            print("refused")
        except (socket.timeout, TimeoutError):
            print("timeout")


def keepalive(url, n, pause_ms):
    import http.client
    host = url.split("/")[2]
    path = "/" + url.split("/", 3)[3]
    conn = http.client.HTTPConnection(host.strip("[]") if host.startswith("[") else host,
                                      timeout=10)
    for _ in range(n):
        conn.request("GET", path)
        r = conn.getresponse()
        body = r.read().decode()
        if r.status != 200:
            sys.exit(f"status {r.status}")
        print(body, flush=True)
        time.sleep(pause_ms / 1000)
    conn.close()


def udp(host, port, text):
    s = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(3)
    s.sendto(text.encode(), (host, int(port)))
    print(s.recvfrom(2048)[0].decode())


def udpmany(host, port, n):
    ok, failed = 0, []
    for i in range(n):
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET,
                           socket.SOCK_DGRAM) as s:
            s.settimeout(2)
            text = f"request-{i}-" + "x" * (i % 300)
            s.sendto(text.encode(), (host, int(port)))
            try:
                reply = s.recvfrom(2048)[0].decode()
            except (socket.timeout, TimeoutError):
                reply = ""
            if reply.endswith(" " + text):
                ok += 1
            else:
                failed.append(i)
    print(json.dumps({"ok": ok, "failed": failed}))


def fetch(url, out):
    with urllib.request.urlopen(url, timeout=60) as r, open(out, "wb") as f:
        print(r.headers.get("X-Backend", ""), flush=True)  # before the body: known even if cut
        while True:
            chunk = r.read(65536)
            if not chunk:
                break
            f.write(chunk)


def loop(url, seconds):
    host, _, rest = url.split("/", 3)[2].partition(":")
    port = int(rest or 80)
    path = "/" + url.split("/", 3)[3]
    end = time.time() + seconds
    while time.time() < end:
        t0 = time.time()
        who = None
        try:
            with socket.create_connection((host, port), timeout=0.1) as c:
                c.settimeout(0.5)
                c.sendall(f"GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n".encode())
                data = b""
                while True:
                    chunk = c.recv(4096)
                    if not chunk:
                        break
                    data += chunk
                if data.startswith(b"HTTP/1.") and b" 200 " in data.split(b"\r\n", 1)[0]:
                    who = data.split(b"\r\n\r\n", 1)[1].decode()
        except OSError:
            pass
        print(json.dumps([t0, time.time(), who]), flush=True)
        time.sleep(max(0.0, 0.01 - (time.time() - t0)))


def raw(iface, dst_mac):
    """Frames for the VIP 10.10.100.10:80 that are broken in different ways."""
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    s.bind((iface, 0))
    src_mac = s.getsockname()[4]
    eth = bytes.fromhex(dst_mac.replace(":", "")) + src_mac + b"\x08\x00"
    src, dst = socket.inet_aton("10.10.1.2"), socket.inet_aton("10.10.100.10")
    tcp = struct.pack("!HHIIBBHHH", 40000, 80, 1, 0, 0x50, 0x02, 65535, 0, 0)

    def ip(total, ihl=5, proto=6):
        return struct.pack("!BBHHHBBH4s4s", 0x40 | ihl, 0, total, 1, 0, 64, proto, 0, src, dst)

    frames = [
        eth + ip(1000) + tcp,                     # total length beyond the frame
        eth + ip(40) + tcp[:8] + bytes(12),       # fine IP, TCP data offset 0
        eth + ip(40, ihl=15) + tcp,               # header length beyond the packet
        eth + ip(28) + tcp[:8],                   # TCP header cut short
    ]
    # A TCP data offset of 0 is malformed too:
    frames[1] = eth + ip(40) + struct.pack("!HHIIBBHHH", 40000, 80, 1, 0, 0x00, 0x02, 65535, 0, 0)
    for f in frames:
        s.send(f + bytes(max(0, 60 - len(f))))
    print(len(frames))


def main(argv):
    cmd = argv[1]
    if cmd == "spread":
        spread(argv[2], int(argv[3]))
    elif cmd == "get":
        get(argv[2])
    elif cmd == "via":
        via(argv[2], argv[3])
    elif cmd == "connect":
        connect(argv[2], argv[3])
    elif cmd == "keepalive":
        keepalive(argv[2], int(argv[3]), int(argv[4]))
    elif cmd == "udp":
        udp(argv[2], argv[3], argv[4])
    elif cmd == "udpmany":
        udpmany(argv[2], argv[3], int(argv[4]))
    elif cmd == "fetch":
        fetch(argv[2], argv[3])
    elif cmd == "loop":
        loop(argv[2], float(argv[3]))
    elif cmd == "raw":
        raw(argv[2], argv[3])
    else:
        sys.exit(f"unknown command {cmd}")


if __name__ == "__main__":
    main(sys.argv)
