"""Ctrl-C while the ``scratchgen`` command starts (its imports take about a second) is one
line, not a traceback. Imported first by the package; acts only in the command's own process
(``scratchgen ...`` or ``python -m scratchgen ...``), never in a program importing the library.
"""
import os
import sys


def _quiet_interrupt(kind, value, tb, _default=sys.excepthook):
    if issubclass(kind, KeyboardInterrupt):
        print("interrupted", file=sys.stderr)
    else:
        _default(kind, value, tb)


if os.path.basename(sys.argv[0] if sys.argv else "") == "scratchgen" or sys.argv[:1] == ["-m"]:
    sys.excepthook = _quiet_interrupt
