"""Waiting on events, not on timers (the cluster tests and their stand-in train step): a wait blocks in the kernel
until a file appears in a folder (inotify) or a process exits (pidfd), then checks its condition again. The only
clock is a deadline that fails a broken engine instead of hanging the test; it never decides an outcome."""
import ctypes
import os
import select
import time
from pathlib import Path

_libc = ctypes.CDLL(None, use_errno=True)
_IN_MOVED_TO, _IN_CREATE, _IN_CLOSE_WRITE = 0x80, 0x100, 0x8  # <sys/inotify.h>


class Timeout(Exception):
    pass


def wait_for_files(folder: Path, condition, what: str, timeout: float):
    """Block until condition() is true, re-checking it each time a file in `folder` is created, renamed into it or
    closed after writing; returns its value. The watch starts before the first check, so no event is missed."""
    fd = _libc.inotify_init1(os.O_CLOEXEC)
    if fd < 0:
        raise OSError(ctypes.get_errno(), 'inotify_init1')
    try:
        if _libc.inotify_add_watch(fd, os.fsencode(folder), _IN_MOVED_TO | _IN_CREATE | _IN_CLOSE_WRITE) < 0:
            raise OSError(ctypes.get_errno(), f'inotify_add_watch {folder}')
        deadline = time.monotonic() + timeout
        while not (value := condition()):
            ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                raise Timeout(f'gave up waiting for {what} after {timeout} s')
            os.read(fd, 1 << 16)  # the events themselves do not matter: the condition is checked again
        return value
    finally:
        os.close(fd)


def wait_exit(pid: int, what: str, timeout: float) -> None:
    """Block until process `pid` has exited (a zombie counts: it runs no more)."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    try:
        if not select.select([fd], [], [], timeout)[0]:
            raise Timeout(f'gave up waiting for {what} after {timeout} s')
    finally:
        os.close(fd)


def wait_to_be_killed(what: str, timeout: float) -> None:
    """Block until this process is killed (nothing else ends the wait); past the deadline, raise."""
    select.select([], [], [], timeout)
    raise Timeout(f'gave up waiting for {what} after {timeout} s')
