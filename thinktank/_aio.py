"""Structured concurrency helpers shared by the engine, techniques and runners."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Iterable
from typing import TypeVar

T = TypeVar("T")


def first_error(group: BaseExceptionGroup) -> BaseException:
    """The first leaf exception of a (possibly nested) group."""
    exc: BaseException = group
    while isinstance(exc, BaseExceptionGroup):
        exc = exc.exceptions[0]
    return exc


async def gather_all(awaitables: Iterable[Awaitable[T]]) -> list[T]:
    """Run concurrently in a TaskGroup; on failure cancel the rest and raise the first error as is."""
    try:
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(_as_coro(a)) for a in awaitables]
    except BaseExceptionGroup as exc:
        raise first_error(exc) from None
    return [t.result() for t in tasks]


async def _as_coro(awaitable: Awaitable[T]) -> T:
    return await awaitable
