"""Where things are: the repository, the build, the binaries."""
import os

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
E2E = os.path.join(ROOT, "e2e")
LAB = os.path.join(E2E, "lab")


def build_dir():
    """The build directory: $FLOWLB_BUILD (ctest sets it), else ROOT/build."""
    return os.path.abspath(os.environ.get("FLOWLB_BUILD") or os.path.join(ROOT, "build"))


def agent_binary():
    return os.path.join(build_dir(), "agent", "flowlb-agent")


def controller_binary():
    return os.path.join(build_dir(), "controller", "flowlb-controller")
