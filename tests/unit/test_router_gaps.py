"""The router's memory of outbox numbers read past (runtime/router.py): waited for until seen or
given up after the grace, bounded in number."""

from __future__ import annotations

from embedlake.runtime.router import MAX_WAITED, Gaps


def test_missing_numbers_are_waited_for_until_seen_or_the_grace_ends() -> None:
    gaps = Gaps(grace=10.0)
    gaps.missed(range(5, 8), now=0.0)
    assert gaps.waited(1.0) == [5, 6, 7]
    gaps.seen(6)
    assert gaps.waited(2.0) == [5, 7]
    assert gaps.next_due(4.0) == 6.0  # the oldest is given up at 10 s
    gaps.missed(range(9, 10), now=5.0)
    assert gaps.waited(10.0) == [9]  # 5 and 7 given up; 9 has 5 s left
    assert gaps.waited(15.0) == [] and gaps.next_due(15.0) is None


def test_a_jump_of_the_sequence_is_not_waited_for_number_by_number() -> None:
    gaps = Gaps()
    gaps.missed(range(1, MAX_WAITED * 3), now=0.0)  # e.g. a sequence moved by setval
    waited = gaps.waited(1.0)
    assert len(waited) == MAX_WAITED and waited[-1] == MAX_WAITED * 3 - 1
    gaps.missed(range(MAX_WAITED * 3 + 1, MAX_WAITED * 3 + 11), now=2.0)  # ten more, newer
    waited = gaps.waited(3.0)
    assert len(waited) == MAX_WAITED and waited[-1] == MAX_WAITED * 3 + 10
