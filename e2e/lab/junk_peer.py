"""A BGP 'peer' that answers every connection with bytes that are not BGP,
for the test of a peer that sends garbage.

Usage: python3 -m e2e.lab.junk_peer ADDRESS   (listens on ADDRESS:179)
"""
import socket
import sys


def main(addr):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((addr, 179))
    s.listen(8)
    print("listening", flush=True)
    while True:
        c, _ = s.accept()
        try:
            c.sendall(b"\x42" * 64)
            c.settimeout(5)
            while c.recv(4096):
                pass
        except OSError:
            pass
        finally:
            c.close()


if __name__ == "__main__":
    main(sys.argv[1])
