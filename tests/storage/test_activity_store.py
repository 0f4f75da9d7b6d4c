"""Access activity on every backend: the upsert adds counts and widens times (also from two
stores flushing the same keys at once), pages in key order, summaries and report jobs."""

from __future__ import annotations

import asyncio

from broker.storage.base import ActivityRow, ManagedPolicyRecord, ReportJob, Store, User
from tests.storage.conftest import StoreFactory

ROLE = "arn:broker:iam::000000000000:role/dev"


def row(action: str, resource: str, first: float, last: float, count: int) -> ActivityRow:
    return ActivityRow(ROLE, action, resource, first, last, count)


async def test_upsert_adds_counts_and_widens_times(store: Store) -> None:
    await store.add_activity([row("http:GET", "https://a/x", 100, 200, 3)])
    await store.add_activity(
        [row("http:GET", "https://a/x", 50, 150, 2), row("http:GET", "https://a/y", 10, 10, 1)]
    )
    page = await store.activity_page(ROLE, since=0, after=("", ""), limit=10)
    assert page == [
        row("http:GET", "https://a/x", 50, 200, 5),
        row("http:GET", "https://a/y", 10, 10, 1),
    ]
    # the window and the keyset
    assert await store.activity_page(ROLE, since=100, after=("", ""), limit=10) == [page[0]]
    after = ("http:GET", "https://a/x")
    assert await store.activity_page(ROLE, since=0, after=after, limit=10) == [page[1]]
    assert await store.activity_summary([ROLE, "arn:other"]) == [(ROLE, "http:GET", 200.0)]
    assert await store.activity_summary([ROLE], since=300) == []
    assert await store.activity_last_used([ROLE, "arn:other"]) == {ROLE: 200.0}


async def test_concurrent_flushes_lose_no_count(store_factory: StoreFactory) -> None:
    a, b = await store_factory(), await store_factory()
    rows = [row("iam:ListUsers", f"r{i}", 1, 1, 1) for i in range(50)]
    await asyncio.gather(*(s.add_activity(rows) for s in (a, b, a, b)))
    page = await a.activity_page(ROLE, since=0, after=("", ""), limit=100)
    assert len(page) == 50
    assert {r.count for r in page} == {4}


async def test_assumed_roles_and_report_jobs(store: Store) -> None:
    caller = "arn:broker:iam::000000000000:role/ci"
    await store.add_activity(
        [
            ActivityRow(caller, "sts:AssumeRole", ROLE, 5, 7, 2),
            ActivityRow(caller, "sts:TagSession", "arn:x", 5, 9, 1),
        ]
    )
    assert await store.assumed_roles([ROLE, caller]) == {ROLE: 7.0}
    assert await store.assumed_roles([ROLE], since=8) == {}
    job = ReportJob("j1", "service_last_accessed", ROLE, "COMPLETED", 1.0, 2.0, b"{}")
    await store.put_report_job(job)
    assert await store.get_report_job("j1") == job
    assert await store.get_report_job("nope") is None


async def test_review_pages_on_every_backend(store: Store) -> None:
    for i in range(5):
        await store.create_user(
            User(id=f"u{i}", provider="local", subject=f"s{i}", name=f"n{i}", created_at=1.0)
        )
    first = await store.users_page(after="", limit=2)
    second = await store.users_page(after=first[-1].id, limit=2)
    last = await store.users_page(after=second[-1].id, limit=2)
    assert [u.id for u in first + second + last] == ["u0", "u1", "u2", "u3", "u4"]
    assert await store.users_page(after="u4", limit=2) == []
    assert await store.user_names(["u1", "u3", "gone"]) == {"u1": "n1", "u3": "n3"}
    for name in ("b", "a"):
        await store.put_managed_policy(ManagedPolicyRecord(name=name, document={"Statement": []}))
    assert [p.name for p in await store.managed_policies_page(after="", limit=9)] == ["a", "b"]
    assert [p.name for p in await store.managed_policies_page(after="a", limit=9)] == ["b"]
    assert await store.roles_page(after="", limit=9) == []
    assert await store.access_keys_page(after="", limit=9) == []
    assert await store.access_keys_last_used(["u1"]) == {}
    assert await store.users_with_mfa(["u1"]) == set()
