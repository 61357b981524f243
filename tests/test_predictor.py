"""mrcnn.predictor's thread pool: results in input order, errors per item, a bounded number of items in flight."""

from __future__ import annotations

import threading
import time

import pytest

from mrcnn.predictor import iter_parallel


def test_results_come_in_input_order_even_when_later_items_finish_first():
    # Item 0 sleeps longest, so with 3 workers items 1 and 2 finish before it; the order must still be 0, 1, 2, 3.
    delays = {0: 0.15, 1: 0.0, 2: 0.05, 3: 0.0}

    def slow_square(i):
        time.sleep(delays[i])
        return i * i

    out = list(iter_parallel(range(4), slow_square, workers=3))
    assert out == [(0, 0, None), (1, 1, None), (2, 4, None), (3, 9, None)]


def test_an_exception_is_yielded_for_its_item_and_the_others_still_come():
    def parse(text):
        return int(text)

    out = list(iter_parallel(["1", "x", "3"], parse, workers=2))
    assert [(item, result) for item, result, _ in out] == [("1", 1), ("x", None), ("3", 3)]
    assert out[0][2] is None and out[2][2] is None
    assert isinstance(out[1][2], ValueError) and "'x'" in str(out[1][2])


def test_no_more_than_prefetch_items_are_started_ahead_of_the_consumer():
    started: list[int] = []
    lock = threading.Lock()

    def record(i):
        with lock:
            started.append(i)
        return i

    stream = iter_parallel(range(100), record, workers=2, prefetch=3)
    assert next(stream) == (0, 0, None)
    time.sleep(0.05)  # Give the pool time to run whatever was submitted.
    # 3 submitted at the start, 1 more when item 0 was taken: items 0..3 and nothing beyond.
    with lock:
        assert sorted(started) == [0, 1, 2, 3]
    assert [r for _, r, _ in stream] == list(range(1, 100))


@pytest.mark.parametrize("workers", [0, -3])
def test_fewer_than_one_worker_means_one(workers):
    assert [r for _, r, _ in iter_parallel([2, 5], lambda v: v + 1, workers=workers)] == [3, 6]
