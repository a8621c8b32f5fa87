"""The exit codes of every ``cachebus`` command, in one place.

* 0 ``OK``: done (for a checking command: nothing found);
* 1 ``FINDING``: the command ran and found something wrong, or Redis refused or could not be
  reached (``doctor`` found an error, ``check`` saw a stale value, ``status`` was refused);
* 2 ``USAGE``: the command line, a setting or a file it names is wrong (nothing was sent);
* 130 ``INTERRUPTED``: stopped by Ctrl-C (SIGINT), or forced by a second signal.

Stdlib only: ``cachebus --help`` imports it.
"""

from __future__ import annotations

from enum import IntEnum

__all__ = ["ExitCode"]


class ExitCode(IntEnum):
    OK = 0
    FINDING = 1
    USAGE = 2
    INTERRUPTED = 130
