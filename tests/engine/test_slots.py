"""Slots: a call of k samples holds k slots, all or nothing, first come first served."""

from __future__ import annotations

import asyncio

import pytest

from thinktank.engine.slots import Slots


async def test_a_wide_call_waits_for_all_its_slots_and_is_not_starved():
    slots = Slots(4)
    order: list[str] = []
    release_first = asyncio.Event()

    async def call(name: str, k: int, until: asyncio.Event | None = None) -> None:
        async with slots.hold(k):
            order.append(name)
            if until is not None:
                await until.wait()

    first = asyncio.create_task(call("a3", 3, release_first))
    await asyncio.sleep(0)
    wide = asyncio.create_task(call("b4", 4))
    await asyncio.sleep(0)
    small = asyncio.create_task(call("c1", 1))  # one slot is free, but b4 queued first
    await asyncio.sleep(0.01)
    assert order == ["a3"] and slots.free == 1
    release_first.set()
    await asyncio.gather(first, wide, small)
    assert order == ["a3", "b4", "c1"] and slots.free == 4


async def test_a_call_wider_than_the_backend_takes_all_of_it():
    slots = Slots(2)
    async with slots.hold(8):
        assert slots.free == 0
    assert slots.free == 2


def gated_slots(total: int):
    """Slots plus a gate: `hold(k)` takes k slots and keeps them until the gate opens."""
    slots, gate = Slots(total), asyncio.Event()

    async def hold(k: int) -> None:
        async with slots.hold(k):
            await gate.wait()

    return slots, gate, hold


async def test_cancelled_waiter_gives_way_and_loses_nothing():
    slots, gate, hold = gated_slots(2)
    holder = asyncio.create_task(hold(1))
    await asyncio.sleep(0)
    blocked = asyncio.create_task(hold(2))  # needs both
    await asyncio.sleep(0)
    behind = asyncio.create_task(hold(1))  # fits, but waits behind `blocked`
    await asyncio.sleep(0.01)
    assert slots.free == 1 and not behind.done()
    blocked.cancel()
    with pytest.raises(asyncio.CancelledError):
        await blocked
    await asyncio.sleep(0)
    assert slots.free == 0  # `behind` took the free slot once `blocked` left the queue
    gate.set()
    await asyncio.gather(holder, behind)
    assert slots.free == 2


async def test_a_waiter_cancelled_as_slots_free_up_leaves_cleanly():
    """A release that runs before a cancelled waiter's cleanup drops its entry; the cleanup must not trip on that."""
    slots, gate, hold = gated_slots(2)
    holder = asyncio.create_task(hold(2))
    await asyncio.sleep(0)
    first, second = asyncio.create_task(hold(1)), asyncio.create_task(hold(1))
    await asyncio.sleep(0.01)
    gate.set()  # the holder releases first: its wake grants `first` and drops `second`'s cancelled entry
    second.cancel()
    with pytest.raises(asyncio.CancelledError):
        await second  # not ValueError
    await asyncio.gather(holder, first)
    assert slots.free == 2 and not slots._waiting
