"""SIGTERM and SIGINT stop a command's main thread however many arrive and whenever.

A handler that set a ``threading.Event`` deadlocked the operator when two SIGTERMs came
in a row (the second handler waited for the Event's lock held by the first, in the same
thread); ``stop_signals`` only notes the signal.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest

WAITER = """
import math, signal, sys, threading
from controller.cli.common import sleep_until, stop_signals
signalled = stop_signals()
stop = threading.Event()
print("waiting", flush=True)
sleep_until(lambda: signalled() or stop.is_set(), math.inf)
stop.set()
for sig in (signal.SIGTERM, signal.SIGINT):  # the rest of the burst must not end it unclean
    signal.signal(sig, signal.SIG_IGN)
print("stopped", flush=True)
"""


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_burst_of_signals_stops_the_waiting_main_thread(sig: int) -> None:
    proc = subprocess.Popen([sys.executable, "-c", WAITER], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "waiting"
        for _ in range(5000):  # many, back to back: some land inside the handler of another
            proc.send_signal(sig)
        out, _ = proc.communicate(timeout=20)
    finally:
        proc.kill()
    assert proc.returncode == 0
    assert out.strip() == "stopped"


def test_sleep_until_ends_early_and_says_why() -> None:
    from controller.cli.common import sleep_until

    flag: list[int] = []
    assert sleep_until(lambda: bool(flag), 0.05) is False
    flag.append(1)
    started = time.monotonic()
    assert sleep_until(lambda: bool(flag), 30.0) is True
    assert time.monotonic() - started < 5.0  # not the 30 s asked for
