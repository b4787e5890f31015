"""The byte pattern the lab's backends serve (e2e/lab/backend_server.py), and md5s."""
import functools
import hashlib


def pattern(n, start=0):
    """n bytes of the pattern from offset `start`: byte i is (i * 7 + 3) % 256."""
    return bytes((i * 7 + 3) % 256 for i in range(start, start + n))


def md5(data):
    return hashlib.md5(data).hexdigest()


def md5_file(path):
    with open(path, "rb") as f:
        return md5(f.read())


@functools.lru_cache(maxsize=None)
def expected_md5(n):
    """The md5 of a correct n-byte download (/bytes/N or /slow/N/MS)."""
    return md5(pattern(n))
