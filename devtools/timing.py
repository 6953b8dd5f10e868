"""Timing helpers shared by the benchmark commands: samples interleaved (A, B, A, B, ...) so that every
figure and the baseline it is compared with see the same machine load, and figures printed with their
spread over the repeats."""

import statistics
import time


def interleaved(fns: dict, *, repeat: int, warmup: int = 1) -> tuple[dict[str, list[float]], dict]:
    """Run each function `warmup` times, then `repeat` rounds of all of them in turn. Returns the seconds of
    every sample per name, and the last value each returned."""
    values = {}
    for _ in range(warmup):
        for name, fn in fns.items():
            values[name] = fn()
    samples = {name: [] for name in fns}
    for _ in range(repeat):
        for name, fn in fns.items():
            started = time.perf_counter()
            values[name] = fn()
            samples[name].append(time.perf_counter() - started)
    return samples, values


def spread(values: list[float], digits: int = 4) -> dict:
    return {"min": round(min(values), digits), "median": round(statistics.median(values), digits), "max": round(max(values), digits)}


def ratio_spread(numerator: list[float], denominator: list[float]) -> dict:
    """The ratio of each round's pair of samples (taken back to back), as min, median and max."""
    return spread([a / b for a, b in zip(numerator, denominator)], 2)
