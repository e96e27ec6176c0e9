"""The floor scripts of ``bench/perf_table.py``: what a sync cannot go below on this machine.

    python bench/perf_floor.py floor URL PORT ORGS OUT.json   # fetch, 304 fetch, SELECT, insert
    python bench/perf_floor.py cron URL PORT ORGS OUT.json    # a fresh process: fetch + SELECT
    python bench/perf_floor.py claims URL N OUT.json          # a bare queue drained 200 a round

Plain httpx (one page at a time) and ``json.loads``, and SQLAlchemy's async engine on the
same driver as the service (aiosqlite / asyncpg), without anything of repo-updater's but the
``repos`` table definition. Kept import-light on purpose: the ``cron`` floor's wall time
includes the interpreter's startup and these imports, as a fresh ``repo-updater sync`` does.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any


def engine_for(url: str) -> Any:
    from sqlalchemy.ext.asyncio import create_async_engine

    if url.startswith("sqlite"):
        return create_async_engine(url.replace("sqlite://", "sqlite+aiosqlite://", 1))
    return create_async_engine(url.replace("postgresql://", "postgresql+asyncpg://", 1))


async def fetch_pages(port: int, orgs: int, etags: dict[str, str] | None = None) -> dict[str, Any]:
    """The floor's fetch: every page, one at a time, ``json.loads`` of each body (200), or
    ``If-None-Match`` with the ETags of a first pass (304)."""
    import httpx

    base = f"http://127.0.0.1:{port}/github"
    seen_etags: dict[str, str] = {}
    rows: list[dict[str, Any]] = []
    start = time.perf_counter()
    async with httpx.AsyncClient(trust_env=False, timeout=60) as client:
        for i in range(orgs):
            url: str | None = f"{base}/orgs/org{i}/repos?per_page=100"
            while url is not None:
                headers = {"If-None-Match": etags[url]} if etags and url in etags else None
                response = await client.get(url, headers=headers)
                if response.status_code == 200:
                    page = json.loads(response.content)
                    rows.extend(page)
                    seen_etags[url] = response.headers.get("etag", "")
                elif response.status_code != 304:
                    raise RuntimeError(f"{url}: {response.status_code}")
                url = response.links.get("next", {}).get("url")
    return {"s": time.perf_counter() - start, "rows": rows, "etags": seen_etags}


async def one_select(url: str) -> tuple[float, int]:
    import sqlalchemy as sa

    from repo_updater.store.schema import repos

    engine = engine_for(url)
    try:
        async with engine.connect() as conn:
            await conn.execute(sa.select(sa.literal(1)))  # connected before the clock starts
            start = time.perf_counter()
            cols = (
                repos.c.id,
                repos.c.name,
                repos.c.external_id,
                repos.c.external_name,
                repos.c.url,
                repos.c.archived,
                repos.c.fork,
                repos.c.private,
                repos.c.description,
                repos.c.deleted_at,
            )
            n = len((await conn.execute(sa.select(*cols))).all())
            return time.perf_counter() - start, n
    finally:
        await engine.dispose()


async def one_insert(url: str, rows: list[dict[str, Any]]) -> float:
    """ONE executemany insert of the listed rows into a fresh copy of ``repos``."""
    import sqlalchemy as sa

    from repo_updater.store.db import create_engine
    from repo_updater.store.schema import repos

    columns = (sa.Column(c.name, c.type, primary_key=c.primary_key) for c in repos.columns)
    copy = sa.Table("floor_repos", sa.MetaData(), *columns)
    now = datetime.now(UTC)
    values = [
        {
            "name": f"github/{r['full_name']}",
            "host_kind": "github",
            "host_url": "x",
            "external_id": str(r["id"]),
            "external_name": r["full_name"],
            "url": r["html_url"],
            "archived": r["archived"],
            "fork": r["fork"],
            "private": r["private"],
            "description": r.get("description") or "",
            "created_at": now,
            "updated_at": now,
        }
        for r in rows
    ]
    engine = create_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(lambda c: copy.drop(c, checkfirst=True))
            await conn.run_sync(copy.create)
        start = time.perf_counter()
        async with engine.begin() as conn:
            await conn.execute(copy.insert(), values)
        took = time.perf_counter() - start
        async with engine.begin() as conn:
            await conn.run_sync(copy.drop)
        return took
    finally:
        await engine.dispose()


async def child_floor(url: str, port: int, orgs: int) -> dict[str, Any]:
    first = await fetch_pages(port, orgs)
    again = await fetch_pages(port, orgs, first["etags"])
    select_s, n = await one_select(url)
    insert_s = await one_insert(url, first["rows"])
    return {
        "fetch": first["s"],
        "fetch304": again["s"],
        "select": select_s,
        "insert": insert_s,
        "rows": n,
        "listed": len(first["rows"]),
    }


async def child_cron_floor(url: str, port: int, orgs: int) -> dict[str, Any]:
    import httpx  # noqa: F401  (a fresh process pays these imports, as the CLI does)
    import sqlalchemy.ext.asyncio  # noqa: F401

    fetched = await fetch_pages(port, orgs)
    select_s, n = await one_select(url)
    return {"fetch": fetched["s"], "select": select_s, "rows": n}


async def child_claims_floor(url: str, n: int) -> dict[str, Any]:
    """The claim's floor: the textbook queue. One table of N due rows with one index in claim
    order; each round claims 200 with one ``UPDATE .. WHERE id IN (SELECT .. ORDER BY ..
    LIMIT 200 FOR UPDATE SKIP LOCKED) RETURNING`` in its own transaction, then completes
    them (due tomorrow) in another, as the claims row does. No joins, no request rows, no
    batch changes: what claiming 200 rows costs on this machine and database."""
    import sqlalchemy as sa

    engine = engine_for(url)
    pg = not url.startswith("sqlite")
    lock = " FOR UPDATE SKIP LOCKED" if pg else ""
    now = datetime(2030, 1, 1)
    later = datetime(2030, 1, 2)
    claim = sa.text(
        "UPDATE floor_queue SET claimed_by = 'w' WHERE id IN (SELECT id FROM floor_queue"
        f" WHERE due <= :now AND claimed_by IS NULL ORDER BY due, id LIMIT 200{lock})"
        " RETURNING id"
    )
    done = sa.text("UPDATE floor_queue SET claimed_by = NULL, due = :later WHERE id IN ({ids})")
    try:
        async with engine.begin() as conn:
            await conn.execute(sa.text("DROP TABLE IF EXISTS floor_queue"))
            await conn.execute(
                sa.text(
                    "CREATE TABLE floor_queue (id INTEGER PRIMARY KEY, due TIMESTAMP NOT NULL,"
                    " claimed_by VARCHAR(200))"
                )
            )
            await conn.execute(sa.text("CREATE INDEX floor_queue_due ON floor_queue (due, id)"))
            await conn.execute(
                sa.text("INSERT INTO floor_queue (id, due) VALUES (:id, :due)"),
                [{"id": i, "due": now} for i in range(1, n + 1)],
            )
            await conn.execute(sa.text("ANALYZE floor_queue" if pg else "ANALYZE"))
        rounds: list[float] = []
        start = time.perf_counter()
        while True:
            t0 = time.perf_counter()
            async with engine.begin() as conn:
                ids = [row[0] for row in await conn.execute(claim, {"now": now})]
            if not ids:
                break
            rounds.append(time.perf_counter() - t0)
            async with engine.begin() as conn:
                await conn.execute(
                    sa.text(done.text.format(ids=",".join(map(str, ids)))), {"later": later}
                )
        drain = time.perf_counter() - start
        async with engine.begin() as conn:
            await conn.execute(sa.text("DROP TABLE floor_queue"))
        return {"rounds": rounds, "drain_s": drain}
    finally:
        await engine.dispose()


if __name__ == "__main__":
    mode = sys.argv[1]
    if mode == "claims":
        url, n, out = sys.argv[2:5]
        Path(out).write_text(json.dumps(asyncio.run(child_claims_floor(url, int(n)))))
        sys.exit(0)
    mode, url, port, orgs, out = sys.argv[1:6]
    run = child_floor if mode == "floor" else child_cron_floor
    Path(out).write_text(json.dumps(asyncio.run(run(url, int(port), int(orgs)))))
