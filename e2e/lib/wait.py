"""Waiting on events with a deadline. There is one way to wait, and it raises."""
import time


class WaitTimeout(AssertionError):
    """A wait ran out of time; the message says what for, and what was last seen."""


def wait_until(predicate, timeout, what, *, interval=0.05, ignore=(), context=None):
    """Calls predicate() until it returns a truthy value, and returns that value.

    On timeout raises WaitTimeout naming `what`, the timeout, the last value
    (or the last exception of a type in `ignore`, which are retried), and the
    text context() returns (a log tail, say) if given. Exceptions of other
    types propagate at once.
    """
    deadline = time.monotonic() + timeout
    last = None
    while True:
        try:
            result = predicate()
            if result:
                return result
            last = repr(result)
        except ignore as e:  # noqa: B030 (a tuple of types, possibly empty)
            last = f"{type(e).__name__}: {e}"
        if time.monotonic() >= deadline:
            extra = ""
            if context is not None:
                try:
                    extra = "\n" + str(context())
                except Exception as e:  # the context is best effort
                    extra = f"\n(context unavailable: {e})"
            raise WaitTimeout(f"timed out after {timeout}s waiting for {what} (last: {last}){extra}")
        time.sleep(interval)
