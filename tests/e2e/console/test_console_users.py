"""``/console/users`` and ``/console/access-keys`` in real Chromium: ``ada`` (console-admin)
creates a user with a password, puts it in a group, attaches a policy, reads its effective
permissions, creates an access key (its secret shown once), deactivates and deletes it, disables
the user, and ends another person's live session (which is then signed out); ``rex``
(read-only) sees everything but no write button, and a forced write is refused (403), audited
and changes nothing; bad names and a double submit change nothing either."""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING

import pytest

from broker.web.console.users import session_handle
from tests.conftest import RunningBroker
from tests.e2e.conftest import TOKYO, in_tokyo
from tests.e2e.console.conftest import forced_post, look, sign_in
from tests.e2e.test_browser_login import submit

if TYPE_CHECKING:
    from playwright.async_api import Browser, Page, Route

pytestmark = [pytest.mark.browser]

READ_POLICY = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}],
}
GROUP_POLICY = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Deny", "Action": "s3:DeleteBucket", "Resource": "*"}],
}
NEW_PASSWORD = "an initial console password 42"


def accept_dialogs(page: Page) -> None:
    """Say yes to the console's "are you sure?" questions."""
    page.on("dialog", lambda d: asyncio.ensure_future(d.accept()))


async def seed(b: RunningBroker) -> None:
    api = b.broker.iam_api
    root = api.root()
    await api.call(root, "CreateGroup", {"GroupName": "auditors"})
    await api.call(
        root,
        "PutGroupPolicy",
        {
            "GroupName": "auditors",
            "PolicyName": "no-deletes",
            "PolicyDocument": json.dumps(GROUP_POLICY),
        },
    )
    await api.call(
        root,
        "CreatePolicy",
        {"PolicyName": "read-objects", "PolicyDocument": json.dumps(READ_POLICY)},
    )


async def user_names(b: RunningBroker) -> list[str]:
    return sorted(u.name for u in await b.broker.store.list_users())


async def failures(b: RunningBroker, action: str) -> list[str]:
    """The principals of audited failures of ``action``."""
    events = await b.broker.store.list_audit(limit=1000, action=action)
    return [e.principal for e in events if e.outcome == "failure"]


async def test_admin_manages_a_user_end_to_end(
    console_broker: RunningBroker, page: Page, browser: Browser, axe_source: str
) -> None:
    b = console_broker
    url = b.url
    await seed(b)
    accept_dialogs(page)
    await sign_in(page, url, "ada", to="/console/users")
    assert await page.is_visible("#users-table")
    assert "ada" in await page.inner_text("#users-table")
    await look(page, browser, axe_source, "users")

    # create a user with an initial password
    await page.click("#users-new")
    await page.wait_for_url(f"{url}/console/users/new")
    await look(page, browser, axe_source, "user-new")
    await page.fill("#user-name", "carol.smith@example")
    await page.fill("#user-password", NEW_PASSWORD)
    await submit(page, "#user-create-submit", url)
    await page.wait_for_url(f"{url}/console/users/carol.smith%40example?done=created")
    assert await page.inner_text("#console-notice") == "User created."
    assert "active" in await page.inner_text("#user-status")
    carol = (await b.broker.store.find_users_by_name("carol.smith@example"))[0]
    assert carol.password_hash is not None
    assert carol.must_change_password

    # add to a group, attach a policy: both show in the effective permissions
    await page.select_option("#group-add-select", "auditors")
    await submit(page, "#group-add-submit", url)
    await page.wait_for_url("**done=group-added")
    assert "auditors" in await page.inner_text("#user-groups")
    await page.select_option("#policy-attach-select", label="read-objects")
    await submit(page, "#policy-attach-submit", url)
    await page.wait_for_url("**done=attached")
    assert "read-objects" in await page.inner_text("#user-attached")
    api = b.broker.iam_api
    inline = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "s3:ListBucket", "Resource": "*"}],
    }
    await api.call(
        api.root(),
        "PutUserPolicy",
        {
            "UserName": "carol.smith@example",
            "PolicyName": "list-buckets",
            "PolicyDocument": json.dumps(inline),
        },
    )
    await page.reload()
    assert '"s3:ListBucket"' in await page.inner_text("#inline-1")
    eff = await page.inner_text("#effective")
    assert "list-buckets (inline)" in eff
    assert "s3:GetObject" in eff
    assert "s3:DeleteBucket" in eff
    assert "via auditors" in eff

    # an access key: the secret once, never again
    async with page.expect_response(lambda r: r.url.endswith("/access-keys")) as answer:
        await submit(page, "#key-create", url)
    assert (await answer.value).headers["cache-control"] == "no-store"
    secret = await page.inner_text("#key-secret")
    key_id = await page.inner_text("#key-id")
    assert len(secret) >= 30
    await look(page, browser, axe_source, "user-key-created")
    await page.reload()  # resubmits a consumed form: 409, no second key, no secret
    assert secret not in await page.content()
    await page.goto(f"{url}/console/users/carol.smith%40example")
    assert secret not in await page.content()
    assert key_id in await page.inner_text("#user-keys")
    assert len(await b.broker.store.list_access_keys(carol.id)) == 1

    # the access keys page lists it
    await page.goto(f"{url}/console/access-keys?q=carol")
    assert key_id in await page.inner_text("#keys-table")
    assert "ada" not in await page.inner_text("#keys-table")
    await look(page, browser, axe_source, "access-keys")
    await page.goto(f"{url}/console/users/carol.smith%40example")

    await submit(page, "#key-deactivate-1", url)
    await page.wait_for_url("**done=key-inactive")
    assert "Inactive" in await page.inner_text("#user-keys")
    await submit(page, "#key-delete-1", url)
    await page.wait_for_url("**done=key-deleted")
    assert await page.is_visible("#keys-none")
    assert await b.broker.store.list_access_keys(carol.id) == []

    # delete refused while it has a password and a group: IAM's message, nothing deleted
    await submit(page, "#user-delete", url)
    error = await page.inner_text("#console-error")
    assert "login profile" in error.lower() or "must" in error.lower(), error
    assert "carol.smith@example" in await user_names(b)

    # disable, then enable
    await submit(page, "#user-disable", url)
    await page.wait_for_url("**done=disabled")
    assert "disabled" in await page.inner_text("#user-status")
    assert (await b.broker.store.find_users_by_name("carol.smith@example"))[0].disabled
    await look(page, browser, axe_source, "user")
    await page.goto(f"{url}/console/users?q=carol")
    assert "disabled" in await page.inner_text("#users-table")
    await page.goto(f"{url}/console/users/carol.smith%40example")
    await submit(page, "#user-enable", url)
    await page.wait_for_url("**done=enabled")
    assert not (await b.broker.store.find_users_by_name("carol.smith@example"))[0].disabled

    # out of the group, the policy detached: the effective permissions follow
    await submit(page, "#group-remove-1", url)
    await page.wait_for_url("**done=group-removed")
    assert await page.is_visible("#groups-none")
    await submit(page, "#policy-detach-1", url)
    await page.wait_for_url("**done=detached")
    assert await page.is_visible("#attached-none")
    eff = await page.inner_text("#effective")
    assert "s3:DeleteBucket" not in eff
    assert "s3:GetObject" not in eff

    # a user with nothing attached is deleted
    await api.call(api.root(), "CreateUser", {"UserName": "temp"})
    await page.goto(f"{url}/console/users/temp")
    await submit(page, "#user-delete", url)
    await page.wait_for_url(f"{url}/console/users?done=deleted")
    assert await page.inner_text("#console-notice") == "User deleted."
    assert "temp" not in await user_names(b)


async def test_admin_ends_a_live_session(
    console_broker: RunningBroker, page: Page, browser: Browser
) -> None:
    url = console_broker.url
    other = await browser.new_context()
    try:
        pat = await other.new_page()
        await sign_in(pat, url, "pat", to="/session")
        assert await pat.inner_text("#role") == "plain"

        accept_dialogs(page)
        await sign_in(page, url, "ada", to="/console/users/pat")
        assert "plain" in await page.inner_text("#user-sessions")
        await submit(page, "#session-end-1", url)
        await page.wait_for_url("**done=session-ended")
        assert await page.is_visible("#sessions-none")

        await pat.goto(f"{url}/session")
        assert not pat.url.startswith(f"{url}/session"), "the ended session still works"
        events = await console_broker.broker.store.list_audit(limit=1000)
        assert any(e.action == "session.revoke" and e.outcome == "success" for e in events)

        # end all: ada's own sessions list of pat is empty; sign pat in twice and end both
        await sign_in(pat, url, "pat", to="/session")
        await page.goto(f"{url}/console/users/pat")
        await submit(page, "#sessions-end-all", url)
        await page.wait_for_url("**done=sessions-ended")
        await pat.goto(f"{url}/session")
        assert not pat.url.startswith(f"{url}/session")
    finally:
        await other.close()


async def test_reader_sees_but_cannot_change(
    console_broker: RunningBroker, page: Page, browser: Browser, axe_source: str
) -> None:
    b = console_broker
    url = b.url
    await seed(b)
    other = await browser.new_context()
    try:
        pat = await other.new_page()
        await sign_in(pat, url, "pat", to="/session")

        await sign_in(page, url, "rex", to="/console/users")
        assert not await page.is_visible("#users-new")
        await page.goto(f"{url}/console/users/pat")
        assert "plain" in await page.inner_text("#user-sessions")
        for absent in (
            "#group-add",
            "#policy-attach",
            "#key-create",
            "#user-disable",
            "#user-delete",
            "#session-end-1",
            "#sessions-end-all",
        ):
            assert await page.query_selector(absent) is None, absent
        assert await page.is_visible("#effective-none")  # pat has no IAM policy
        await look(page, browser, axe_source, "user-read-only")

        before = await user_names(b)
        # the page's forms are not shown to rex; the create-user form's URL still opens (it
        # holds the form secrets a crafted POST needs), and the service refuses the POST
        new = f"{url}/console/users/new"
        await page.goto(new)
        r = await forced_post(page, url, "/console/users", {"name": "mallory"})
        assert r.status == 403
        await page.goto(new)
        r = await forced_post(page, url, "/console/users/pat/groups/add", {"group": "auditors"})
        assert r.status == 403
        pat_user = (await b.broker.store.find_users_by_name("pat"))[0]
        live = await b.broker.store.list_user_sessions(pat_user.id, now=b.broker.clock.now())
        assert len(live) == 1
        await page.goto(new)
        r = await forced_post(
            page, url, "/console/users/pat/sessions/end", {"session": session_handle(live[0].id)}
        )
        assert r.status == 403
        # nothing changed, every refusal audited
        assert await user_names(b) == before
        assert await b.broker.store.list_user_sessions(pat_user.id, now=b.broker.clock.now())
        groups = await b.broker.iam_api.call(
            b.broker.iam_api.root(), "ListGroupsForUser", {"UserName": "pat"}
        )
        assert groups["Groups"] == []
        rex = "role/console-reader"
        assert any(p.endswith(rex) for p in await failures(b, "iam.CreateUser"))
        assert any(p.endswith(rex) for p in await failures(b, "iam.AddUserToGroup"))
        assert any(p.endswith(rex) for p in await failures(b, "console.broker:RevokeSession"))
        await pat.goto(f"{url}/session")
        assert pat.url.startswith(f"{url}/session")
    finally:
        await other.close()


async def test_bad_names_and_double_submits_create_nothing(
    console_broker: RunningBroker, page: Page
) -> None:
    b = console_broker
    url = b.url
    await sign_in(page, url, "ada", to="/console/users/new")
    before = await user_names(b)

    await page.fill("#user-name", "bad name!")
    await submit(page, "#user-create-submit", url)
    assert "only letters" in await page.inner_text("#console-error")
    assert await page.input_value("#user-name") == "bad name!"

    long = "x" * 65
    await page.fill("#user-name", long)
    await submit(page, "#user-create-submit", url)
    assert "at most 64" in await page.inner_text("#console-error")
    assert await page.input_value("#user-name") == long
    assert await user_names(b) == before

    # a weak password: IAM's password policy message, and no half-made user
    await page.fill("#user-name", "dora")
    await page.fill("#user-password", "x")
    await submit(page, "#user-create-submit", url)
    assert "Nothing was created" in await page.inner_text("#console-error")
    assert await user_names(b) == before

    # the same form twice: one user, the second is 409
    await page.goto(f"{url}/console/users/new")
    first = await forced_post(page, url, "/console/users", {"name": "eve"})
    second = await forced_post(page, url, "/console/users", {"name": "eve"})
    assert first.status == 303
    assert second.status == 409
    assert await user_names(b) == sorted([*before, "eve"])


@pytest.mark.browser_context(**TOKYO)
async def test_dates_are_shown_in_the_readers_time_zone(
    console_broker: RunningBroker, page: Page
) -> None:
    url = console_broker.url
    await sign_in(page, url, "ada", to="/console/users?q=ada")
    created = page.locator("#users-table tbody tr td:nth-child(2) time")
    iso = await created.get_attribute("datetime")
    assert iso
    in_tokyo(iso, await created.inner_text())


async def test_a_double_click_sends_the_form_once(
    console_broker: RunningBroker, page: Page
) -> None:
    b = console_broker
    url = b.url
    await sign_in(page, url, "ada", to="/console/users/new")
    before = await user_names(b)
    posts: list[str] = []
    first_sent = asyncio.Event()
    release = asyncio.Event()

    async def hold(route: Route) -> None:
        """The first POST is held on its way until the second click is done."""
        posts.append(route.request.method)
        first_sent.set()
        await release.wait()
        await route.continue_()

    await page.route(f"{url}/console/users", hold)
    await page.fill("#user-name", "eve")
    box = await page.locator("#user-create-submit").bounding_box()
    assert box
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    await page.mouse.click(x, y)
    await first_sent.wait()
    await page.mouse.click(x, y)  # the same button again, while the first POST is on its way
    release.set()
    await page.wait_for_url(f"{url}/console/users/eve?done=created")
    assert posts == ["POST"]  # the second click sent nothing
    assert await user_names(b) == sorted([*before, "eve"])
    created = await b.broker.store.list_audit(action="iam.CreateUser")
    by_ada = [e for e in created if e.principal.endswith("role/console-admin")]
    assert [e.outcome for e in by_ada] == ["success"]  # one row: no second (409) attempt
    assert await b.broker.store.list_audit(action="console.users.create") == []


async def test_reader_cannot_force_disabling_a_user_or_changing_its_keys(
    console_broker: RunningBroker, page: Page
) -> None:
    b = console_broker
    url = b.url
    api = b.broker.iam_api
    key = (await api.call(api.root(), "CreateAccessKey", {"UserName": "pat"}))["AccessKey"]
    pat = (await b.broker.store.find_users_by_name("pat"))[0]
    keys_before = await b.broker.store.list_access_keys(pat.id)
    await sign_in(page, url, "rex", to="/console/users/new")
    new = f"{url}/console/users/new"
    for path, fields, audited in (
        ("/console/users/pat/disable", {}, "console.broker:DisableUser"),
        ("/console/users/pat/access-keys", {}, "iam.CreateAccessKey"),
        (
            "/console/users/pat/access-keys/delete",
            {"key": key["AccessKeyId"]},
            "iam.DeleteAccessKey",
        ),
    ):
        await page.goto(new)
        r = await forced_post(page, url, path, fields)
        assert r.status == 403, (path, await r.text())
        assert "not allowed" in await r.text() or "not authorized" in await r.text(), path
        assert any(p.endswith("role/console-reader") for p in await failures(b, audited)), path
    # nothing changed: pat enabled, the same one key, no new secret anywhere
    assert not (await b.broker.store.find_users_by_name("pat"))[0].disabled
    assert await b.broker.store.list_access_keys(pat.id) == keys_before
    for ok in ("iam.CreateAccessKey", "iam.DeleteAccessKey"):
        events = await b.broker.store.list_audit(action=ok)
        assert [e.principal for e in events if e.outcome == "success"] == (
            ["root"] if ok == "iam.CreateAccessKey" else []
        )
