"""What both simulators share: the reconnect loop and its backoff, close codes,
logging, stopping."""

import argparse
import logging
import random
import signal
import sys
import threading
import time

from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

DEFAULT_URL = "ws://localhost:3000/ws"

# Exit statuses of the simulators.
EXIT_OK = 0
EXIT_FATAL = 1  # refused or deleted: retrying cannot help

# How often loops blocked on the socket look at the stop flag; bounds how long
# Ctrl-C or --duration take to act.
STOP_POLL = 0.2

# What a closed connection without a close frame reports (RFC 6455 §7.1.5).
CLOSE_ABNORMAL = 1006


class Backoff:
    """Exponential reconnect delays with jitter: 0.5 s doubling up to 30 s.

    Jitter keeps a fleet of simulated agents from reconnecting in lockstep
    after a server restart."""

    def __init__(self, first=0.5, cap=30.0):
        self.first = first
        self.cap = cap
        self.attempts = 0

    def next_delay(self):
        """The delay before the next attempt; each call doubles the following one."""
        delay = min(self.cap, self.first * 2 ** self.attempts)
        self.attempts = min(self.attempts + 1, 32)  # no float overflow after days of retries
        return delay * random.uniform(0.5, 1.0)

    def reset(self):
        """Start over at the first delay (after a successful authentication)."""
        self.attempts = 0


class ReconnectingClient:
    """A connection kept up until ``stop`` is set: ``_session`` serves one
    connection; a close or a failure to connect is logged and retried with
    backoff, unless ``_final_close`` says retrying cannot help."""

    log = logging.getLogger(__name__)
    prefix = ""  # what each log line starts with (an agent's hostname)

    def __init__(self, url, stop, token=None):
        self.url = url
        self.stop = stop
        self.token = token
        self.backoff = Backoff()
        self.last_error = None  # the code of the last error frame the server sent

    def run(self):
        """Keep a session up until stopped; the exit status."""
        while not self.stop.is_set():
            try:
                self._session()
            except ConnectionClosed as closed:
                code, reason = close_code(closed), close_reason(closed)
                final = self._final_close(code)
                if final:
                    self.log.error("%sgiving up: %s", self.prefix, final)
                    return EXIT_FATAL
                self.log.warning("%sdisconnected (close %s%s)", self.prefix, code,
                                 f": {reason}" if reason else "")
            except InvalidURI as error:
                self.log.error("%s%s", self.prefix, error)
                return EXIT_FATAL
            except (OSError, InvalidHandshake) as error:  # OSError covers TimeoutError
                self.log.warning("%scannot connect to %s: %s", self.prefix, self.url,
                                 error or type(error).__name__)
            if self.stop.is_set():
                break
            delay = self.backoff.next_delay()
            self.log.info("%sreconnecting in %.1fs", self.prefix, delay)
            self.stop.wait(delay)
        return EXIT_OK

    def _session(self):
        """One connection, from connect to close; returns when stopped."""
        raise NotImplementedError

    def _final_close(self, code):
        """Why to give up after a close with ``code``, or None to reconnect."""
        return None


def close_code(closed):
    """The close code the server sent, from a ``ConnectionClosed`` exception."""
    return closed.rcvd.code if closed.rcvd is not None else CLOSE_ABNORMAL


def close_reason(closed):
    """The close reason the server sent, or ``""``."""
    return closed.rcvd.reason if closed.rcvd is not None else ""


def setup_logging(verbose, stream=sys.stdout):
    """One line per event, with a millisecond timestamp; DEBUG when verbose."""
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(asctime)s.%(msecs)03d %(levelname)-7s %(message)s",
                                           datefmt="%H:%M:%S"))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    # The websockets library's own debug output would drown ours.
    logging.getLogger("websockets").setLevel(logging.WARNING)


def stop_on_signals(stop):
    """Ctrl-C and SIGTERM set ``stop`` so workers close with 1000; a second
    Ctrl-C interrupts at once, in case closing hangs."""

    def handle(signum, frame):
        logging.getLogger(__name__).info("stopping (%s)", signal.Signals(signum).name)
        stop.set()
        signal.signal(signal.SIGINT, signal.default_int_handler)

    signal.signal(signal.SIGINT, handle)
    signal.signal(signal.SIGTERM, handle)


def run_workers(targets, stop, duration=None):
    """Run each callable in its own thread until all return or ``stop`` is set
    (by a signal, or after ``duration`` seconds); the worst exit status."""
    statuses = {}
    threads = []
    for name, target in targets:
        thread = threading.Thread(target=lambda n=name, t=target: statuses.__setitem__(n, t()),
                                  name=name, daemon=True)
        thread.start()
        threads.append(thread)
    deadline = None if duration is None else time.monotonic() + duration
    try:
        while any(thread.is_alive() for thread in threads):
            if deadline is not None and time.monotonic() >= deadline and not stop.is_set():
                logging.getLogger(__name__).info("stopping (--duration %gs elapsed)", duration)
                stop.set()
            time.sleep(0.05)
    except KeyboardInterrupt:
        stop.set()
        return 130
    # A worker that died of a bug left no status: count it as a failure.
    return max((statuses.get(thread.name, EXIT_FATAL) for thread in threads), default=EXIT_OK)


def positive_int(text):
    """An argparse type: a whole number of at least 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def non_negative_int(text):
    """An argparse type: a whole number of 0 or more."""
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError("must be 0 or more")
    return value
