"""The operation worker's in-process write lock: one holder at a time, first come first
served, an urgent transaction (an archived refusal) ahead of those waiting, and a waiter
cancelled while the lock is handed to it passes it on."""

from __future__ import annotations

import asyncio

from repo_updater.service_layer.operation_support import WriteLock


async def test_urgent_waiters_go_first_and_cancellation_passes_the_lock_on() -> None:
    lock = WriteLock()
    order: list[str] = []
    inside = 0

    async def use(name: str, urgent: bool = False) -> None:
        nonlocal inside
        async with lock.held(urgent=urgent):
            inside += 1
            assert inside == 1
            order.append(name)
            await asyncio.sleep(0.01)
            inside -= 1

    first = asyncio.create_task(use("first"))
    await asyncio.sleep(0)  # "first" holds the lock
    waiting = [asyncio.create_task(use(f"w{i}")) for i in range(3)]
    doomed = asyncio.create_task(use("cancelled"))
    await asyncio.sleep(0)
    urgent = asyncio.create_task(use("urgent", urgent=True))
    await asyncio.sleep(0)
    doomed.cancel()
    await asyncio.gather(first, *waiting, urgent, doomed, return_exceptions=True)
    assert order == ["first", "urgent", "w0", "w1", "w2"]
    async with lock.held():  # free again
        pass
