"""``/console/groups`` in Chromium: ada creates a group, adds a user, attaches a managed policy,
reads the group's effective permissions, is told why a group in use cannot be deleted, then
empties and deletes it; rex (read-only) sees the same pages without a write button, and a write
forced past the page is refused by the service (403, audited, nothing changed)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING

import pytest

from broker.errors import IamNoSuchEntity
from broker.service.single_use import SingleUseValues
from broker.web.console.base import CSRF_PURPOSE, FORM_NONCE, NONCE_LIFETIME
from broker.web.csrf import csrf_token
from broker.web.pages import COOKIES
from tests.conftest import RunningBroker
from tests.e2e.console.conftest import look, sign_in
from tests.e2e.test_browser_login import submit

if TYPE_CHECKING:
    from playwright.async_api import APIResponse, Browser, Dialog, Page

pytestmark = [pytest.mark.browser]

SEEDED_POLICY = {
    "Version": "2012-10-17",
    "Statement": [
        {"Sid": "ReadReports", "Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}
    ],
}


async def seed(b: RunningBroker) -> str:
    """Two more users and a managed policy; returns the policy's ARN."""
    api = b.broker.iam_api
    for user in ("grace", "linus"):
        await api.call(api.root(), "CreateUser", {"UserName": user})
    created = await api.call(
        api.root(),
        "CreatePolicy",
        {"PolicyName": "reports-read", "PolicyDocument": json.dumps(SEEDED_POLICY)},
    )
    return str(created["Policy"]["Arn"])


async def minted_post(
    page: Page, b: RunningBroker, path: str, fields: Mapping[str, str]
) -> APIResponse:
    """``forced_post`` for a page with no console form (a read-only user's): the CSRF token and
    a single-use value the server would have put in one, for this browser's session."""
    jar = {c["name"]: c["value"] for c in await page.context.cookies()}
    names = b.app[COOKIES]
    cred, _ = await b.broker.sessions.resume(jar[names.session])
    nonce = await SingleUseValues(b.broker.store, b.broker.clock).issue(
        FORM_NONCE, {}, browser=jar[names.browser], lifetime=NONCE_LIFETIME
    )
    csrf = csrf_token(b.broker.csrf_key, CSRF_PURPOSE, cred.session_id)
    return await page.request.post(
        f"{b.url}{path}",
        form={"csrf": csrf, "nonce": nonce, **fields},
        headers={"Origin": b.url},
        max_redirects=0,
    )


def accept_dialogs(page: Page) -> list[str]:
    """Accept every confirmation the page asks (and remember what it asked)."""
    asked: list[str] = []

    async def accept(dialog: Dialog) -> None:
        asked.append(dialog.message)
        await dialog.accept()

    page.on("dialog", accept)
    return asked


async def test_admin_manages_a_group(
    console_broker: RunningBroker, page: Page, browser: Browser, axe_source: str
) -> None:
    url = console_broker.url
    api = console_broker.broker.iam_api
    arn = await seed(console_broker)
    asked = accept_dialogs(page)
    await sign_in(page, url, "ada", to="/console/groups")
    assert await page.is_visible("#groups-none")
    await look(page, browser, axe_source, "groups-empty")

    # create
    await page.click("#group-new")
    await page.wait_for_url(f"{url}/console/groups/new")
    await look(page, browser, axe_source, "group-create")
    await page.fill("#group-name", "auditors")
    await submit(page, "#group-create", url)
    await page.wait_for_url(f"{url}/console/groups/auditors?done=created")
    assert await page.inner_text("#console-notice") == "The group was created."
    assert await page.is_visible("#members-none")
    assert await page.is_visible("#effective-none")

    # add a member (from the users' select)
    await page.select_option("#add-user", "grace")
    await submit(page, "#add-user-submit", url)
    await page.wait_for_url(f"{url}/console/groups/auditors?done=added")
    assert "grace" in await page.inner_text("#members")
    assert await page.inner_text("#group-member-count") == "1"
    members = await api.call(api.root(), "GetGroup", {"GroupName": "auditors"})
    assert [u["UserName"] for u in members["Users"]] == ["grace"]

    # attach the seeded policy: its statement shows up in the effective permissions
    await page.select_option("#attach-policy", arn)
    await submit(page, "#attach-policy-submit", url)
    await page.wait_for_url(f"{url}/console/groups/auditors?done=attached")
    assert "reports-read" in await page.inner_text("#attached")
    effective = await page.inner_text("#effective")
    assert "s3:GetObject" in effective
    assert "reports-read" in effective

    # an inline policy (seeded) is shown with its document
    await api.call(
        api.root(),
        "PutGroupPolicy",
        {
            "GroupName": "auditors",
            "PolicyName": "no-delete",
            "PolicyDocument": json.dumps(
                {
                    "Version": "2012-10-17",
                    "Statement": [{"Effect": "Deny", "Action": "s3:Delete*", "Resource": "*"}],
                }
            ),
        },
    )
    await page.reload()
    assert "s3:Delete*" in await page.inner_text("#inline-no-delete")
    assert "Deny" in await page.inner_text("#effective tbody tr:first-child")
    await look(page, browser, axe_source, "group")

    # a group in use cannot be deleted: IAM's DeleteConflict, said plainly
    await submit(page, "#group-delete", url)
    await page.wait_for_load_state("load")
    error = await page.inner_text("#console-error")
    assert "still has 1 members, 1 attached and 1 inline policies" in error
    assert asked[-1].startswith("Delete the group auditors?")

    # empty it: inline, detach, remove; then delete
    await submit(page, "#delete-inline-no-delete", url)
    await page.wait_for_url(f"{url}/console/groups/auditors?done=inline-deleted")
    await submit(page, "#detach-reports-read", url)
    await page.wait_for_url(f"{url}/console/groups/auditors?done=detached")
    assert await page.is_visible("#attached-none")
    assert await page.is_visible("#effective-none")
    await submit(page, "#remove-grace", url)
    await page.wait_for_url(f"{url}/console/groups/auditors?done=removed")
    assert await page.is_visible("#members-none")
    await submit(page, "#group-delete", url)
    await page.wait_for_url(f"{url}/console/groups?done=deleted")
    assert await page.inner_text("#console-notice") == "The group was deleted."
    with pytest.raises(IamNoSuchEntity):
        await api.call(api.root(), "GetGroup", {"GroupName": "auditors"})


async def test_group_list_searches_sorts_and_looks(
    console_broker: RunningBroker, page: Page, browser: Browser, axe_source: str
) -> None:
    url = console_broker.url
    api = console_broker.broker.iam_api
    for name in ("zeta", "alpha", "mid-team"):
        await api.call(api.root(), "CreateGroup", {"GroupName": name})
    await sign_in(page, url, "ada", to="/console/groups")
    names = await page.eval_on_selector_all("#groups tbody a", "els => els.map(e => e.textContent)")
    assert names == ["alpha", "mid-team", "zeta"]
    await look(page, browser, axe_source, "groups")
    await page.goto(f"{url}/console/groups?sort=name&desc=1")
    names = await page.eval_on_selector_all("#groups tbody a", "els => els.map(e => e.textContent)")
    assert names == ["zeta", "mid-team", "alpha"]
    await page.fill("#group-search", "TEAM")
    await page.click(".console-search button")
    await page.wait_for_url(lambda u: "q=TEAM" in u)
    names = await page.eval_on_selector_all("#groups tbody a", "els => els.map(e => e.textContent)")
    assert names == ["mid-team"]
    await page.goto(f"{url}/console/groups?q=nothing-like-it")
    assert "nothing-like-it" in await page.inner_text("#groups-none")


async def test_bad_group_name_keeps_what_was_typed(
    console_broker: RunningBroker, page: Page
) -> None:
    url = console_broker.url
    api = console_broker.broker.iam_api
    await sign_in(page, url, "ada", to="/console/groups/new")
    await page.fill("#group-name", "bad name!")
    await submit(page, "#group-create", url)
    await page.wait_for_load_state("load")
    assert "group names are 1-128 of letters" in await page.inner_text("#console-error")
    assert await page.input_value("#group-name") == "bad name!"
    assert (await api.call(api.root(), "ListGroups", {}))["Groups"] == []


async def test_reader_sees_groups_but_cannot_change_them(
    console_broker: RunningBroker, page: Page
) -> None:
    url = console_broker.url
    b = console_broker.broker
    api = b.iam_api
    arn = await seed(console_broker)
    await api.call(api.root(), "CreateGroup", {"GroupName": "auditors"})
    await api.call(api.root(), "AddUserToGroup", {"GroupName": "auditors", "UserName": "grace"})
    await sign_in(page, url, "rex", to="/console/groups")
    assert not await page.is_visible("#group-new")
    await page.click("#group-auditors")
    await page.wait_for_url(f"{url}/console/groups/auditors")
    assert "grace" in await page.inner_text("#members")
    for write in ("#add-user", "#attach-policy", "#remove-grace", "#group-delete"):
        assert await page.query_selector(write) is None, write

    for path, fields, action in (
        ("/console/groups/auditors/policies", {"policy_arn": arn}, "iam.AttachGroupPolicy"),
        ("/console/groups/auditors/delete", {}, "iam.DeleteGroup"),
    ):
        await page.goto(f"{url}/console/groups/auditors")
        resp = await minted_post(page, console_broker, path, fields)
        assert resp.status == 403, await resp.text()
        assert "not authorized to perform: " + action.replace(".", ":") in await resp.text()
        refused = await b.store.list_audit(action=action)
        assert refused[0].outcome == "failure"
        assert "console-reader" in refused[0].principal
    attached = await api.call(api.root(), "ListAttachedGroupPolicies", {"GroupName": "auditors"})
    assert attached["AttachedPolicies"] == []
    await api.call(api.root(), "GetGroup", {"GroupName": "auditors"})  # still there
