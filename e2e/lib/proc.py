"""Commands in network namespaces, and the processes a test starts.

Every process is started through a Processes registry under a name, its
output appended to NAME.log in the registry's directory, and stopped by that
name and its pid, never by a pattern; stop_all() ends whatever is left.
"""
import os
import re
import select
import signal
import socket
import subprocess
import sys

from e2e.lib.paths import ROOT
from e2e.lib.wait import WaitTimeout

PREFIX_ENV = "FLOWLB_E2E_PREFIX"


def lab_prefix(default):
    """The namespace prefix of a lab: `default`, or "$FLOWLB_E2E_PREFIX-default"
    so two people can run the same suite at once on one machine."""
    extra = os.environ.get(PREFIX_ENV, "")
    if extra and not re.fullmatch(r"[A-Za-z0-9_]{1,16}", extra):
        raise ValueError(f"{PREFIX_ENV}={extra!r}: use 1-16 letters, digits or _")
    return f"{extra}-{default}" if extra else default


def in_ns(ns, *cmd):
    """argv running cmd in network namespace `ns` (ip netns exec: /sys is remounted)."""
    return ["ip", "netns", "exec", ns, *cmd]


def nsenter(ns, *cmd):
    """argv running cmd in network namespace `ns` with the host's /sys (bpffs stays visible)."""
    return ["nsenter", f"--net=/run/netns/{ns}", *cmd]


def module(name, *args):
    """argv running a module of this repository (e.g. e2e.lab.client); run it with cwd=ROOT."""
    return [sys.executable, "-m", name, *args]


class CommandFailed(subprocess.CalledProcessError):
    """A command exited non-zero; the message carries the end of its stderr."""

    def __str__(self):
        return f"{super().__str__()}: {(self.stderr or '').strip()[-2000:]}"


def run(cmd, timeout=60, check=True):
    """Runs cmd from the repository root and returns its stdout; with check, a
    non-zero exit raises CommandFailed."""
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    if check and r.returncode != 0:
        raise CommandFailed(r.returncode, cmd, r.stdout, r.stderr)
    return r.stdout


def free_port():
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Processes:
    """The processes one test (or lab) started, by name."""

    def __init__(self, logdir):
        self.logdir = logdir
        self.procs = {}  # name -> Popen

    def log_path(self, name):
        return os.path.join(self.logdir, name + ".log")

    def start(self, name, cmd, stdout=None):
        """Starts cmd (from the repository root) as `name`; output goes to NAME.log
        (appended, so a restarted process keeps its history) unless stdout is given."""
        if self.running(name):
            raise RuntimeError(f"{name} is already running (pid {self.procs[name].pid})")
        if stdout is None:
            with open(self.log_path(name), "ab") as log:
                proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
        else:
            proc = subprocess.Popen(cmd, stdout=stdout, stderr=subprocess.STDOUT, cwd=ROOT,
                                    text=True)
        self.procs[name] = proc
        return proc

    def __contains__(self, name):
        return name in self.procs

    def get(self, name):
        return self.procs[name]

    def running(self, name):
        p = self.procs.get(name)
        return p is not None and p.poll() is None

    def send(self, name, sig):
        self.procs[name].send_signal(sig)

    def stop(self, name, sig=signal.SIGTERM, timeout=10):
        """Sends sig to the process by pid, waits (SIGKILL after `timeout`),
        forgets it, and returns its exit code (None if it was not known)."""
        proc = self.procs.pop(name, None)
        if proc is None:
            return None
        if proc.poll() is None:
            proc.send_signal(sig)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if proc.stdout:
            proc.stdout.close()
        return proc.returncode

    def kill(self, name):
        return self.stop(name, signal.SIGKILL)

    def wait(self, name, timeout):
        """Waits for the process to exit by itself, forgets it, returns its exit code."""
        proc = self.procs[name]
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill(name)
            raise
        self.procs.pop(name)
        return proc.returncode

    def communicate(self, name, timeout):
        """Waits for a process started with stdout=PIPE to end; forgets it and
        returns (exit code, the rest of its output)."""
        proc = self.procs[name]
        try:
            out, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill(name)
            raise
        self.procs.pop(name)
        return proc.returncode, out

    def first_line(self, name, timeout):
        """The next line a process started with stdout=PIPE prints, waiting at most
        `timeout` seconds; WaitTimeout if none comes."""
        proc = self.procs[name]
        ready, _, _ = select.select([proc.stdout], [], [], timeout)
        if not ready:
            raise WaitTimeout(f"{name} printed nothing in {timeout}s")
        return proc.stdout.readline().strip()

    def names(self):
        return list(self.procs)

    def stop_all(self):
        for name in list(self.procs):
            self.kill(name)

    def log(self, name):
        try:
            with open(self.log_path(name), errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def mark(self, name):
        """The current end of NAME.log; log_since(name, mark) reads what came after."""
        try:
            return os.path.getsize(self.log_path(name))
        except OSError:
            return 0

    def log_since(self, name, mark):
        try:
            with open(self.log_path(name), "rb") as f:
                f.seek(mark)
                return f.read().decode(errors="replace")
        except OSError:
            return ""
