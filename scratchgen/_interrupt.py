"""Ctrl-C while the ``scratchgen`` command starts (its imports take about a second) is one
line, not a traceback. Imported first by the package; acts only in the command's own process
(``scratchgen ...`` or ``python -m scratchgen ...``), never in a program importing the library.

A KeyboardInterrupt raised inside a C extension's initialisation can come out as something
else (NumPy turns it into an ImportError of many lines) or be swallowed, so during the imports
SIGINT is only recorded; :func:`release`, called by the command once its imports ran, restores
Python's handler and raises the KeyboardInterrupt there if one came.
"""
import os
import signal
import sys

_received = []


def _quiet_interrupt(kind, value, tb, _default=sys.excepthook):
    if issubclass(kind, KeyboardInterrupt):
        print("interrupted", file=sys.stderr)
    else:
        _default(kind, value, tb)


def _defer(signum, frame):
    _received.append(signum)


def release():
    """Ctrl-C acts again; raises KeyboardInterrupt if it was pressed while deferred."""
    if signal.getsignal(signal.SIGINT) is _defer:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    if _received:
        _received.clear()
        raise KeyboardInterrupt


if os.path.basename(sys.argv[0] if sys.argv else "") == "scratchgen" or sys.argv[:1] == ["-m"]:
    sys.excepthook = _quiet_interrupt
    try:
        signal.signal(signal.SIGINT, _defer)
    except ValueError:  # not the main thread
        pass
