"""Argument types for the command line: numbers are checked when the line is parsed, before any work starts
(no process is started, no file read, for ``--processes 100000`` or ``--target nan``)."""

from __future__ import annotations

import argparse
import math

SEED_MAX = 2**32 - 1  # numpy and torch seeds


def int_in(lo: int, hi: int | None = None):
    """An argparse type: an integer in [lo, hi] (hi None: no upper bound)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if value < lo or (hi is not None and value > hi):
            allowed = f"{lo} to {hi}" if hi is not None else f"at least {lo}"
            raise argparse.ArgumentTypeError(f"{value} is out of range (allowed: {allowed})")
        return value

    parse.__name__ = "integer"
    return parse


def float_in(lo: float | None = None, hi: float | None = None, *, open_lo: bool = False, open_hi: bool = False):
    """An argparse type: a finite float in the given range (open ends exclude the bound)."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        bad = not math.isfinite(value)
        bad |= lo is not None and (value <= lo if open_lo else value < lo)
        bad |= hi is not None and (value >= hi if open_hi else value > hi)
        if bad:
            limits = [f"{'>' if open_lo else '>='} {lo}"] if lo is not None else []
            limits += [f"{'<' if open_hi else '<='} {hi}"] if hi is not None else []
            raise argparse.ArgumentTypeError(
                f"{text} is not allowed (a finite number{' ' + ' and '.join(limits) if limits else ''})"
            )
        return value

    parse.__name__ = "number"
    return parse


SEED = int_in(0, SEED_MAX)
THREADS = int_in(1, 4096)
PROCESSES = int_in(1, 1024)
BOOTSTRAP = int_in(0, 100_000)
