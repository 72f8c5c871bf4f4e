"""Stopping a management command with a signal as Ctrl-C stops it."""

import signal
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def sigterm_as_ctrl_c() -> Iterator[None]:
    """SIGTERM raised as KeyboardInterrupt while the block runs, so that a command stopped by cron's
    `timeout`, a supervisor or `kill` cleans up on its way out as after Ctrl-C. Python's default for
    SIGTERM ends the process at once, running no `finally`: a backup stopped so left its
    `.backup-….partial`, as large as the dump had come, beside the backups."""

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
