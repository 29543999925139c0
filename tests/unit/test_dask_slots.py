"""Where the Dask executor puts a new slot, and which call failures mean a lost worker
(``executors/dask_slots.py``: pure, no cluster)."""

from __future__ import annotations

from collections import Counter

from hypothesis import given
from hypothesis import strategies as st

from mapwise.executors.dask_slots import choose_worker, is_actor_lost, is_transport_loss

addresses = st.sampled_from([f"tcp://10.0.0.{n}:8786" for n in range(1, 7)])
clusters = st.dictionaries(addresses, st.integers(min_value=0, max_value=8), max_size=6)


@given(clusters, st.frozensets(addresses))
def test_a_new_slot_never_goes_to_a_lost_or_threadless_worker(
    threads: dict[str, int], avoid: frozenset[str]
) -> None:
    chosen = choose_worker(threads, {}, avoid)
    usable = {w for w, n in threads.items() if n > 0 and w not in avoid}
    if usable:
        assert chosen in usable
    else:
        assert chosen is None  # the scheduler places it on the first worker that joins


@given(clusters, st.integers(min_value=1, max_value=40))
def test_slots_made_one_by_one_spread_in_proportion_to_threads(
    threads: dict[str, int], count: int
) -> None:
    # Given slots made one after another, each where choose_worker says
    placed: Counter[str] = Counter()
    for _ in range(count):
        chosen = choose_worker(threads, placed, frozenset())
        if chosen is None:
            return
        placed[chosen] += 1

    # Then no worker holds a slot per thread more than another would after one more slot
    usable = {w: n for w, n in threads.items() if n > 0}
    for a in usable:
        for b in usable:
            assert placed[a] / usable[a] <= (placed[b] + 1) / usable[b]


def test_two_workers_of_two_threads_take_four_slots_two_each_in_address_order() -> None:
    threads = {"tcp://b:1": 2, "tcp://a:1": 2}
    placed: Counter[str] = Counter()
    order = []
    for _ in range(4):
        chosen = choose_worker(threads, placed, frozenset())
        assert chosen is not None
        placed[chosen] += 1
        order.append(chosen)
    assert order == ["tcp://a:1", "tcp://b:1", "tcp://a:1", "tcp://b:1"]


def test_only_connection_errors_mean_a_lost_worker() -> None:
    assert is_transport_loss(OSError("Unable to contact Actor's worker"))
    assert is_transport_loss(ConnectionResetError())
    assert is_transport_loss(TimeoutError())
    assert not is_transport_loss(RuntimeError("Worker holding Actor was lost"))
    assert not is_transport_loss(ValueError("a bad answer"))


def test_only_dasks_lost_actor_refusal_means_a_lost_actor() -> None:
    refusal = RuntimeError("Worker holding Actor was lost.  Status: lost")
    assert is_actor_lost(refusal)
    assert not is_actor_lost(RuntimeError("something else"))
    assert not is_actor_lost(OSError("Worker holding Actor was lost"))
