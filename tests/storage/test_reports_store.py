"""The credentials report's reads and ``report_jobs``, on every backend: every user once, in
order, batch by batch, with its keys (oldest first) and enabled MFA only; one report job at a
time, reused while fresh."""

from __future__ import annotations

import asyncio

from broker.storage.base import CredentialRecord, KeyUse, ReportJob, Store, User
from broker.storage.sql import SqlStore
from tests.storage.conftest import StoreFactory
from tests.support.credentials import insert_access_key, insert_mfa_device

T = 1_700_000_000.25


async def records(store: Store, batch: int) -> list[list[CredentialRecord]]:
    return [chunk async for chunk in store.credential_records(batch=batch)]


async def test_credential_records_batches_every_user_once_in_name_order(store: SqlStore) -> None:
    # two users share a name (another provider): both are listed, ordered by id
    for i, name in enumerate(["erin", "ann", "bob", "ann", "dave"]):
        await store.create_user(User(f"id-{i}", "local" if i != 3 else "corp", name, name))
    assert await store.first_user_created_at() == 0.0
    chunks = await records(store, batch=2)
    assert [len(c) for c in chunks] == [2, 2, 1]
    assert [r.name for c in chunks for r in c] == ["ann", "ann", "bob", "dave", "erin"]
    # an exact multiple of the batch ends without an empty batch
    await store.delete_user("id-0")
    assert [len(c) for c in await records(store, batch=2)] == [2, 2]


async def test_credential_records_carry_password_keys_and_enabled_mfa(store: SqlStore) -> None:
    await store.create_user(User("id-none", "local", "none", "none", created_at=T))
    await store.create_user(
        User(
            "id-full",
            "local",
            "full",
            "full",
            created_at=T,
            password_hash="$argon2id$secret-hash",
            last_login_at=T + 50,
            password_changed_at=T + 10,
        )
    )
    await insert_access_key(store, "id-full", "AKIA2", status="Inactive", created_at=T + 30)
    await insert_access_key(
        store,
        "id-full",
        "AKIA1",
        created_at=T + 20,
        last_used_at=T + 40,
        region="us-east-1",
        service="sts",
    )
    await insert_mfa_device(store, "mfa/full", user_id="id-full", enabled_at=T + 5, created_at=T)
    # a device created and never enabled for anyone counts for no one
    await insert_mfa_device(store, "mfa/pending", user_id=None, enabled_at=None, created_at=T)
    [[full, none]] = await records(store, batch=10)
    assert none == CredentialRecord(name="none", created_at=T)
    assert full == CredentialRecord(
        name="full",
        created_at=T,
        has_password=True,
        last_login_at=T + 50,
        password_changed_at=T + 10,
        mfa_active=True,
        keys=(
            KeyUse("Active", T + 20, T + 40, "us-east-1", "sts"),
            KeyUse("Inactive", T + 30),
        ),
    )
    assert "secret-hash" not in repr(full)


def job(kind: str = "credential_report", at: float = T) -> ReportJob:
    return ReportJob(f"job-{at}", kind, "123456789012", "INPROGRESS", at)


async def test_report_job_is_reused_while_fresh_and_replaced_after(store: Store) -> None:
    fresh = dict(reuse_since=T - 100, running_since=T - 10)
    started, new = await store.start_report_job(job(at=T), **fresh)
    assert new
    assert started.status == "INPROGRESS"
    # running: the same job, not a second one
    again, new = await store.start_report_job(job(at=T + 1), **fresh)
    assert (again.job_id, new) == (started.job_id, False)
    await store.finish_report_job(started.job_id, content=b"csv", now=T + 2)
    done = await store.latest_report_job("credential_report", "123456789012")
    assert done is not None
    assert (done.status, done.content, done.completed_at) == ("COMPLETE", b"csv", T + 2)
    reused, new = await store.start_report_job(job(at=T + 3), **fresh)
    assert (reused.job_id, reused.status, new) == (started.job_id, "COMPLETE", False)
    # another kind is another report
    _, new = await store.start_report_job(job("other", at=T + 3), **fresh)
    assert new
    # too old: a new job replaces it (the old one is gone)
    later, new = await store.start_report_job(
        job(at=T + 500), reuse_since=T + 400, running_since=T + 490
    )
    assert new
    latest = await store.latest_report_job("credential_report", "123456789012")
    assert latest is not None
    assert latest.job_id == later.job_id
    assert latest.content is None


async def test_abandoned_or_failed_jobs_are_started_again(store: Store) -> None:
    first, _ = await store.start_report_job(job(at=T), reuse_since=T - 100, running_since=T - 10)
    # still INPROGRESS long after: abandoned (its instance stopped)
    second, new = await store.start_report_job(
        job(at=T + 60), reuse_since=T - 40, running_since=T + 50
    )
    assert new
    assert second.job_id != first.job_id
    await store.finish_report_job(second.job_id, content=None, now=T + 61)
    assert await store.latest_report_job("credential_report", "123456789012") is None
    _, new = await store.start_report_job(job(at=T + 62), reuse_since=T - 40, running_since=T + 50)
    assert new


async def test_racing_report_starts_start_one_job(store_factory: StoreFactory) -> None:
    stores = [await store_factory() for _ in range(4)]
    results = await asyncio.gather(
        *(
            s.start_report_job(job(at=T + i), reuse_since=T - 100, running_since=T - 10)
            for i, s in enumerate(stores)
        )
    )
    assert sorted(new for _, new in results) == [False, False, False, True]
    assert len({j.job_id for j, _ in results}) == 1
