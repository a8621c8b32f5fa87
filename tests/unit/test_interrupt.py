"""Ctrl-C ends a command even when the first cancel is swallowed (as redis-py can on 3.11)."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent(
    """
    import asyncio, sys
    from cachebus._interrupt import run_interruptible

    async def stubborn() -> None:
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:  # the lost cancel: the command goes on
            print("swallowed", flush=True)
        await asyncio.sleep(60)

    async def main() -> None:
        print("ready", flush=True)
        await stubborn()

    try:
        run_interruptible(main())
    except KeyboardInterrupt:
        print("interrupted", flush=True)
        sys.exit(130)
    """
)


def test_a_swallowed_cancel_does_not_keep_the_command_running() -> None:
    process = subprocess.Popen(
        [sys.executable, "-c", SCRIPT], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None
        assert process.stdout.readline().strip() == "ready"
        # "ready" is printed by the task, so the SIGINT handler is already in place
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 130, err
    assert out.split() == ["swallowed", "interrupted"], (out, err)
