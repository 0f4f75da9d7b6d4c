"""Renaming and deleting users and removing passwords, on every backend (IAM's UpdateUser,
DeleteUser and DeleteLoginProfile): conflicts leave everything as it was, and races are safe."""

from __future__ import annotations

import asyncio

import pytest

from broker.errors import AlreadyExists, Conflict, RecordNotFound
from broker.storage.base import Group, ManagedPolicyRecord, Store, User
from broker.storage.sql import SqlStore
from tests.storage.conftest import StoreFactory

T = 1_700_000_000.5  # when a password is set


def local(name: str, uid: str | None = None, **kw: object) -> User:
    return User(id=uid or f"id-{name}", provider="local", subject=name, name=name, **kw)  # type: ignore[arg-type]


async def test_rename_keeps_id_tags_groups_and_policies(store: Store) -> None:
    await store.create_user(local("ann"))
    await store.tag("user", "id-ann", {"team": "a"}, limit=50)
    await store.create_group(Group("devs"))
    await store.add_group_member("devs", "id-ann")
    await store.put_inline_policy("user", "id-ann", "p", {"Version": "2012-10-17"})
    renamed = await store.rename_user("id-ann", "anne", subject="anne")
    assert (renamed.id, renamed.name, renamed.subject) == ("id-ann", "anne", "anne")
    assert await store.find_user("local", "anne") == renamed
    assert await store.find_user("local", "ann") is None
    assert await store.list_tags("user", "id-ann") == {"team": "a"}
    assert await store.user_groups("id-ann") == ["devs"]
    assert "p" in (await store.attached_policies("user", "id-ann")).inline
    # a federated user's subject is its provider's: only the name changes
    fed = User(id="id-fed", provider="corp", subject="sub-1", name="fed")
    await store.create_user(fed)
    assert (await store.rename_user("id-fed", "fred")).subject == "sub-1"


async def test_rename_refuses_a_taken_login_and_a_missing_user(store: Store) -> None:
    await store.create_user(local("ann"))
    await store.create_user(local("bob"))
    with pytest.raises(AlreadyExists):
        await store.rename_user("id-ann", "bob", subject="bob")
    assert (await store.get_user("id-ann")).name == "ann"
    with pytest.raises(RecordNotFound):
        await store.rename_user("nobody", "x")


async def test_clear_password(store: Store) -> None:
    await store.create_user(
        local("ann", password_hash="h", must_change_password=True, password_changed_at=T)
    )
    assert await store.clear_password("id-ann") is True
    user = await store.get_user("id-ann")
    # no password, no change time (the credentials report's password_last_changed is N/A)
    assert (user.password_hash, user.must_change_password, user.password_changed_at) == (
        None,
        False,
        None,
    )
    assert await store.clear_password("id-ann") is False
    with pytest.raises(RecordNotFound):
        await store.clear_password("nobody")


@pytest.mark.parametrize("blocker", ["password", "group", "managed", "inline"])
async def test_delete_is_refused_while_the_user_is_in_use(store: Store, blocker: str) -> None:
    await store.create_user(local("ann", password_hash="h" if blocker == "password" else None))
    await store.tag("user", "id-ann", {"team": "a"}, limit=50)
    if blocker == "group":
        await store.create_group(Group("devs"))
        await store.add_group_member("devs", "id-ann")
    if blocker == "managed":
        await store.put_managed_policy(ManagedPolicyRecord(name="mp", document={}))
        await store.attach_policy("user", "id-ann", "mp")
    if blocker == "inline":
        await store.put_inline_policy("user", "id-ann", "p", {"Version": "2012-10-17"})
    with pytest.raises(Conflict) as e:
        await store.delete_user("id-ann")
    assert e.value.reason.startswith("user_in_use:")
    assert (await store.get_user("id-ann")).name == "ann"  # nothing deleted
    assert await store.list_tags("user", "id-ann") == {"team": "a"}


async def test_delete_removes_the_user_its_tags_and_boundary(store: Store) -> None:
    await store.create_user(local("ann"))
    await store.tag("user", "id-ann", {"team": "a"}, limit=50)
    await store.put_managed_policy(ManagedPolicyRecord(name="b", document={}))
    await store.set_boundary("user", "id-ann", "b")
    deleted = await store.delete_user("id-ann")
    assert deleted.name == "ann"
    with pytest.raises(RecordNotFound):
        await store.get_user("id-ann")
    assert await store.list_tags("user", "id-ann") == {}
    assert (await store.attached_policies("user", "id-ann")).boundary is None
    with pytest.raises(RecordNotFound):
        await store.delete_user("id-ann")
    await store.create_user(local("ann", uid="id-ann-2"))  # the name is free again


async def test_racing_deleters_one_wins(store_factory: StoreFactory) -> None:
    stores: list[SqlStore] = [await store_factory() for _ in range(4)]
    await stores[0].create_user(local("ann"))

    async def delete(s: SqlStore) -> str:
        try:
            await s.delete_user("id-ann")
            return "deleted"
        except RecordNotFound:
            return "missing"

    results = await asyncio.gather(*(delete(s) for s in stores))
    assert sorted(results) == ["deleted", "missing", "missing", "missing"]


async def test_delete_racing_a_group_join_never_leaves_an_orphan(
    store_factory: StoreFactory,
) -> None:
    a, b = await store_factory(), await store_factory()
    await a.create_group(Group("devs"))
    for i in range(5):
        uid = f"id-u{i}"
        await a.create_user(local(f"u{i}", uid=uid))

        async def join(uid: str = uid) -> str:
            try:
                await b.add_group_member("devs", uid)
                return "joined"
            except RecordNotFound:
                return "gone"

        async def delete(uid: str = uid) -> str:
            try:
                await a.delete_user(uid)
                return "deleted"
            except Conflict:
                return "conflict"

        joined, deleted = await asyncio.gather(join(), delete())
        members = await a.group_members("devs")
        # either the join came first (the delete is refused) or the delete did (no join)
        assert (joined, deleted) in {("joined", "conflict"), ("gone", "deleted")}
        assert (uid in members) == (joined == "joined")
        if joined == "joined":
            await a.remove_group_member("devs", uid)


async def test_racing_creators_and_renamers_of_one_local_name(store_factory: StoreFactory) -> None:
    """Two admins creating user ``racer`` (or renaming someone to it): one wins, the other
    gets ``AlreadyExists`` and nothing of its attempt is stored."""
    a, b = await store_factory(), await store_factory()

    async def create(s: SqlStore, uid: str) -> str:
        try:
            await s.create_user(local("racer", uid=uid))
            return "created"
        except AlreadyExists:
            return "exists"

    results = await asyncio.gather(create(a, "id-1"), create(b, "id-2"))
    assert sorted(results) == ["created", "exists"]
    assert len(await a.find_users_by_name("racer")) == 1
    await a.create_user(local("x"))
    await a.create_user(local("y"))

    async def rename(s: SqlStore, uid: str) -> str:
        try:
            await s.rename_user(uid, "z", subject="z")
            return "renamed"
        except AlreadyExists:
            return "exists"

    results = await asyncio.gather(rename(a, "id-x"), rename(b, "id-y"))
    assert sorted(results) == ["exists", "renamed"]
    assert len(await a.find_users_by_name("z")) == 1
    assert len(await a.find_users_by_name("x")) + len(await a.find_users_by_name("y")) == 1


async def test_rename_group_moves_members_and_policies(store: Store) -> None:
    await store.create_user(local("ann"))
    await store.create_group(Group("devs", description="d", created_at=5.0))
    await store.create_group(Group("ops"))
    await store.add_group_member("devs", "id-ann")
    await store.put_managed_policy(ManagedPolicyRecord(name="mp", document={}))
    await store.attach_policy("group", "devs", "mp")
    await store.put_inline_policy("group", "devs", "p", {"Version": "2012-10-17"})
    with pytest.raises(AlreadyExists):
        await store.rename_group("devs", "ops")
    assert await store.user_groups("id-ann") == ["devs"]
    with pytest.raises(RecordNotFound):
        await store.rename_group("nope", "x")
    renamed = await store.rename_group("devs", "engineers")
    assert (renamed.name, renamed.description, renamed.created_at) == ("engineers", "d", 5.0)
    assert await store.get_group("devs") is None
    assert await store.get_group("engineers") == renamed
    assert await store.user_groups("id-ann") == ["engineers"]
    attached = await store.attached_policies("group", "engineers")
    assert attached.managed == ("mp",)
    assert "p" in attached.inline
    assert await store.attached_policies("group", "devs") == type(attached)()


async def test_rename_group_racing_a_new_member_loses_nobody(store_factory: StoreFactory) -> None:
    a, b = await store_factory(), await store_factory()
    for i in range(5):
        await a.create_group(Group(f"g{i}"))
        await a.create_user(local(f"u{i}"))

        async def join(i: int = i) -> str:
            try:
                await b.add_group_member(f"g{i}", f"id-u{i}")
                return "joined"
            except RecordNotFound:
                return "gone"

        joined, _ = await asyncio.gather(join(), a.rename_group(f"g{i}", f"h{i}"))
        groups = await a.user_groups(f"id-u{i}")
        assert groups == (["h" + str(i)] if joined == "joined" else [])


async def test_conditional_password_writes(store: Store) -> None:
    await store.create_user(local("ann"))
    assert await store.update_password("id-ann", "h0", must_change=True, now=T) is False
    assert (await store.get_user("id-ann")).password_hash is None
    assert await store.create_password("id-ann", "h1", must_change=True, now=T + 1) is True
    assert await store.create_password("id-ann", "h2", must_change=False, now=T + 2) is False
    user = await store.get_user("id-ann")
    assert (user.password_hash, user.must_change_password) == ("h1", True)
    assert user.password_changed_at == T + 1  # the refused creation left it
    assert await store.update_password("id-ann", None, must_change=False, now=T + 3) is True
    user = await store.get_user("id-ann")
    assert (user.password_hash, user.must_change_password) == ("h1", False)
    assert user.password_changed_at == T + 1  # only the flag changed: the password is as old
    assert await store.update_password("id-ann", "h3", must_change=True, now=T + 4) is True
    user = await store.get_user("id-ann")
    assert (user.password_hash, user.password_changed_at) == ("h3", T + 4)
    for write in (
        store.create_password("nobody", "h", must_change=False, now=T),
        store.update_password("nobody", None, must_change=False, now=T),
    ):
        with pytest.raises(RecordNotFound):
            await write


async def test_racing_password_creators_one_wins(store_factory: StoreFactory) -> None:
    a, b = await store_factory(), await store_factory()
    await a.create_user(local("ann"))
    results = await asyncio.gather(
        a.create_password("id-ann", "ha", must_change=False, now=T),
        b.create_password("id-ann", "hb", must_change=False, now=T),
    )
    assert sorted(results) == [False, True]
    expected = "ha" if results[0] else "hb"
    assert (await a.get_user("id-ann")).password_hash == expected
