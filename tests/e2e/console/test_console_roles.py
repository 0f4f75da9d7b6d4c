"""``/console/roles`` in Chromium: ada creates a role with a trust policy, edits the trust, attaches
a policy, reads the effective permissions and the services last accessed, revokes the role's
active sessions (the ``AWSRevokeOlderSessions`` policy, recorded as a role revocation the
credential check honours), is told why a role in use cannot be deleted, then deletes it. Config
roles are read-only; rex (read-only) sees everything without a write button and a forced write
is refused (403, audited, nothing changed). Bad input keeps what was typed and changes nothing;
a double submit and a stale CSRF token change nothing either."""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any

import pytest

from broker.errors import IamNoSuchEntity
from tests.conftest import RunningBroker, trust
from tests.e2e.console.conftest import PASSWORD, forced_post, look, sign_in
from tests.e2e.console.test_console_groups import SEEDED_POLICY, accept_dialogs, minted_post
from tests.e2e.test_browser_login import submit

if TYPE_CHECKING:
    from playwright.async_api import Browser, Page

pytestmark = [pytest.mark.browser]


def trust_for(sub: str) -> dict[str, Any]:
    return trust("local", {"StringEquals": {"local:sub": sub}})


async def seed_policy(b: RunningBroker) -> str:
    api = b.broker.iam_api
    created = await api.call(
        api.root(),
        "CreatePolicy",
        {"PolicyName": "reports-read", "PolicyDocument": json.dumps(SEEDED_POLICY)},
    )
    return str(created["Policy"]["Arn"])


async def role_names(b: RunningBroker) -> list[str]:
    api = b.broker.iam_api
    return [r["RoleName"] for r in (await api.call(api.root(), "ListRoles", {}))["Roles"]]


async def test_admin_manages_a_role(
    console_broker: RunningBroker, page: Page, browser: Browser, axe_source: str
) -> None:
    url = console_broker.url
    b = console_broker.broker
    api = b.iam_api
    policy_arn = await seed_policy(console_broker)
    asked = accept_dialogs(page)
    await sign_in(page, url, "ada", to="/console/roles")
    await look(page, browser, axe_source, "roles")

    # create
    await page.click("#role-new")
    await page.wait_for_url(f"{url}/console/roles/new")
    await look(page, browser, axe_source, "role-new")
    await page.fill("#role-name", "deployer")
    await page.fill("#role-description", "Ships releases")
    await page.select_option("#role-max-session", "7200")
    await page.fill("#trust-policy", json.dumps(trust_for("grace")))
    await submit(page, "#role-create", url)
    await page.wait_for_url(f"{url}/console/roles/deployer?done=created")
    assert await page.inner_text("#console-notice") == "The role was created."
    assert await page.inner_text("#role-description") == "Ships releases"
    assert "7200 s" in await page.inner_text("#role-max-session")
    assert await page.inner_text("#role-arn") == "arn:broker:iam::000000000000:role/deployer"
    assert "grace" in await page.input_value("#trust-policy")
    assert await page.is_visible("#effective-none")
    role = (await api.call(api.root(), "GetRole", {"RoleName": "deployer"}))["Role"]
    assert role["MaxSessionDuration"] == 7200

    # edit the trust policy: ada may now sign in to the role too
    await page.fill("#trust-policy", json.dumps(trust_for("ada"), indent=1))
    await submit(page, "#trust-save", url)
    await page.wait_for_url(f"{url}/console/roles/deployer?done=trust-updated")
    role = (await api.call(api.root(), "GetRole", {"RoleName": "deployer"}))["Role"]
    assert '"local:sub":"ada"' in role["AssumeRolePolicyDocument"]
    assert "grace" not in role["AssumeRolePolicyDocument"]

    # in another browser, ada signs in to the new role: a session of it, issued before the
    # revocation below
    other = await browser.new_context()
    elsewhere = await other.new_page()
    await elsewhere.goto(f"{url}/login/local")
    await elsewhere.fill("input[name=username]", "ada")
    await elsewhere.fill("input[name=password]", PASSWORD)
    await submit(elsewhere, "button[type=submit]", url)
    await elsewhere.wait_for_url(f"{url}/roles")
    await submit(elsewhere, "#role-deployer", url)
    await elsewhere.wait_for_url(f"{url}/session")
    assert await elsewhere.inner_text("#role") == "deployer"

    # attach a managed policy: the effective permissions show it
    await page.select_option("#attach-policy", policy_arn)
    await submit(page, "#attach-policy-submit", url)
    await page.wait_for_url(f"{url}/console/roles/deployer?done=attached")
    assert "reports-read" in await page.inner_text("#attached")
    assert "s3:GetObject" in await page.inner_text("#effective")

    # the services its policies allow (computed at once by the broker)
    await page.click("#services-show")
    await page.wait_for_url(lambda u: "services=1" in u)
    assert "s3" in await page.inner_text("#services")
    await look(page, browser, axe_source, "role")

    # revoke its active sessions: a credential issued before now is refused afterwards
    issued_before = time.time() - 1
    await submit(page, "#role-revoke", url)
    await page.wait_for_url(f"{url}/console/roles/deployer?done=revoked")
    assert asked[-1].startswith("Revoke every active session of deployer?")
    revoke = await api.call(
        api.root(),
        "GetRolePolicy",
        {"RoleName": "deployer", "PolicyName": "AWSRevokeOlderSessions"},
    )
    statement = json.loads(revoke["PolicyDocument"])["Statement"][0]
    assert statement["Effect"] == "Deny"
    assert "aws:TokenIssueTime" in statement["Condition"]["DateLessThan"]
    arn = "arn:broker:iam::000000000000:role/deployer"
    recorded = [r for r in await b.store.revocations_since(0) if r.kind == "role"]
    assert [r.target for r in recorded] == [arn]
    ids = {"session_id": "s-unrelated", "user_id": "u-unrelated", "role_arn": arn}
    assert b.revocations.is_revoked(**ids, issued_at=issued_before)
    assert not b.revocations.is_revoked(**ids, issued_at=time.time() + 5)
    assert "revokes older sessions" in await page.inner_text("#inline-AWSRevokeOlderSessions")
    # the session of the role opened before is over
    await elsewhere.goto(f"{url}/session")
    assert elsewhere.url.startswith(f"{url}/login"), elsewhere.url
    await other.close()

    # a role in use cannot be deleted (IAM's DeleteConflict, said plainly)
    await submit(page, "#role-delete", url)
    await page.wait_for_load_state("load")
    error = await page.inner_text("#console-error")
    assert "must detach all policies first (1 attached, 1 inline)" in error
    assert "deployer" in await role_names(console_broker)

    await submit(page, "#delete-inline-AWSRevokeOlderSessions", url)
    await page.wait_for_url(f"{url}/console/roles/deployer?done=inline-deleted")
    await submit(page, "#detach-reports-read", url)
    await page.wait_for_url(f"{url}/console/roles/deployer?done=detached")
    await submit(page, "#role-delete", url)
    await page.wait_for_url(f"{url}/console/roles?done=deleted")
    assert await page.inner_text("#console-notice") == "The role was deleted."
    with pytest.raises(IamNoSuchEntity):
        await api.call(api.root(), "GetRole", {"RoleName": "deployer"})


async def test_config_roles_are_read_only(console_broker: RunningBroker, page: Page) -> None:
    url = console_broker.url
    b = console_broker.broker
    await sign_in(page, url, "ada", to="/console/roles")
    assert await page.is_visible("#role-console-admin-config")
    assert await page.is_visible("#role-console-reader-config")
    await page.click("#role-console-reader")
    await page.wait_for_url(f"{url}/console/roles/console-reader")
    assert await page.is_visible("#role-read-only")
    assert "local:sub" in await page.inner_text("#trust-document")
    for write in ("#trust-policy", "#attach-policy", "#role-revoke", "#role-delete"):
        assert await page.query_selector(write) is None, write
    # the config file's own policy is shown, and counted in the effective permissions
    assert "iam:List*" in await page.inner_text("#effective")
    # a change forced past the page is refused by the service (UnmodifiableEntity)
    before = await b.store.get_role("console-reader")
    for path in ("/console/roles/console-reader/delete", "/console/roles/console-reader/revoke"):
        resp = await minted_post(page, console_broker, path, {})
        assert resp.status == 400, await resp.text()
        assert "declared in the config file" in await resp.text()
    assert await b.store.get_role("console-reader") == before
    assert [r for r in await b.store.revocations_since(0) if r.kind == "role"] == []
    # ada's own session used the console: once the access activity is flushed (every few
    # seconds), console-admin shows as used
    await console_broker.broker.activity.flush()
    await page.goto(f"{url}/console/roles/console-admin")
    assert "not used yet" not in await page.inner_text("#role-last-used")
    assert await page.query_selector("#role-last-used time") is not None


async def test_reader_sees_roles_but_cannot_change_them(
    console_broker: RunningBroker, page: Page, browser: Browser, axe_source: str
) -> None:
    url = console_broker.url
    b = console_broker.broker
    api = b.iam_api
    policy_arn = await seed_policy(console_broker)
    await api.call(
        api.root(),
        "CreateRole",
        {"RoleName": "deployer", "AssumeRolePolicyDocument": json.dumps(trust_for("grace"))},
    )
    await sign_in(page, url, "rex", to="/console/roles")
    assert not await page.is_visible("#role-new")
    await page.click("#role-deployer")
    await page.wait_for_url(f"{url}/console/roles/deployer")
    assert "grace" in await page.inner_text("#trust-document")
    for write in ("#trust-policy", "#attach-policy", "#role-revoke", "#role-delete"):
        assert await page.query_selector(write) is None, write
    await look(page, browser, axe_source, "role-read-only")

    trust_text = json.dumps(trust_for("rex"))
    for path, fields, action in (
        (
            "/console/roles",
            {"name": "sneaky", "trust_policy": trust_text, "max_session": "3600"},
            "iam.CreateRole",
        ),
        ("/console/roles/deployer/policies", {"policy_arn": policy_arn}, "iam.AttachRolePolicy"),
        ("/console/roles/deployer/revoke", {}, "iam.PutRolePolicy"),
    ):
        resp = await minted_post(page, console_broker, path, fields)
        assert resp.status == 403, await resp.text()
        assert "not authorized to perform: " + action.replace(".", ":") in await resp.text()
        refused = await b.store.list_audit(action=action)
        assert refused[0].outcome == "failure"
        assert "console-reader" in refused[0].principal
    assert "sneaky" not in await role_names(console_broker)
    attached = await api.call(api.root(), "ListAttachedRolePolicies", {"RoleName": "deployer"})
    assert attached["AttachedPolicies"] == []
    inline = await api.call(api.root(), "ListRolePolicies", {"RoleName": "deployer"})
    assert inline["PolicyNames"] == []
    assert [r for r in await b.store.revocations_since(0) if r.kind == "role"] == []


def oversized_trust(size: int) -> str:
    """A trust policy of exactly ``size`` characters, none of them whitespace."""
    doc = trust_for("")
    base = len(json.dumps(doc, separators=(",", ":")))
    doc["Statement"][0]["Condition"]["StringEquals"]["local:sub"] = "x" * (size - base)
    text = json.dumps(doc, separators=(",", ":"))
    assert len(text) == size
    return text


@pytest.mark.parametrize(
    ("name", "trust_text", "message"),
    [
        ("deployer", '{"Version": "2012-10-17", "Statement": [', "The trust policy is not valid"),
        ("deployer", oversized_trust(6145), "Cannot exceed quota for ACLSizePerRole: 4096"),
        (
            "deploy er!",
            json.dumps(trust_for("grace")),
            "role names are 1-64 of letters, digits and _+=,.@-",
        ),
    ],
    ids=["malformed-json", "trust-over-quota", "bad-name"],
)
async def test_bad_input_keeps_what_was_typed(
    console_broker: RunningBroker, page: Page, name: str, trust_text: str, message: str
) -> None:
    url = console_broker.url
    before = await role_names(console_broker)
    await sign_in(page, url, "ada", to="/console/roles/new")
    await page.fill("#role-name", name)
    await page.fill("#role-description", "typed by hand")
    await page.fill("#trust-policy", trust_text)
    await submit(page, "#role-create", url)
    await page.wait_for_load_state("load")
    assert message in await page.inner_text("#console-error")
    assert await page.input_value("#role-name") == name
    assert await page.input_value("#role-description") == "typed by hand"
    assert await page.input_value("#trust-policy") == trust_text
    assert await role_names(console_broker) == before


async def test_a_bad_trust_edit_keeps_the_text_and_the_old_trust(
    console_broker: RunningBroker, page: Page
) -> None:
    url = console_broker.url
    api = console_broker.broker.iam_api
    await api.call(
        api.root(),
        "CreateRole",
        {"RoleName": "deployer", "AssumeRolePolicyDocument": json.dumps(trust_for("grace"))},
    )
    await sign_in(page, url, "ada", to="/console/roles/deployer")
    broken = '{"Version": "2012-10-17", "Statement": [{"Effect": "Allow"}]}'
    await page.fill("#trust-policy", broken)
    await submit(page, "#trust-save", url)
    await page.wait_for_load_state("load")
    assert "The trust policy is not valid" in await page.inner_text("#console-error")
    assert await page.input_value("#trust-policy") == broken
    role = (await api.call(api.root(), "GetRole", {"RoleName": "deployer"}))["Role"]
    assert "grace" in role["AssumeRolePolicyDocument"]


async def test_a_double_submitted_create_makes_one_role(
    console_broker: RunningBroker, page: Page
) -> None:
    url = console_broker.url
    await sign_in(page, url, "ada", to="/console/roles/new")
    fields = {
        "name": "deployer",
        "trust_policy": json.dumps(trust_for("grace")),
        "max_session": "3600",
    }
    first = await forced_post(page, url, "/console/roles", fields)
    second = await forced_post(page, url, "/console/roles", fields)
    assert first.status == 303, await first.text()
    assert second.status == 409, await second.text()
    assert "already submitted" in await second.text()
    assert (await role_names(console_broker)).count("deployer") == 1


async def test_a_stale_csrf_token_changes_nothing(
    console_broker: RunningBroker, page: Page, browser: Browser, axe_source: str
) -> None:
    """A form opened before signing out and in again: refused (403, audited, nothing made),
    the page says why and keeps what was typed; sending it again from there works."""
    url = console_broker.url
    b = console_broker.broker
    await sign_in(page, url, "ada", to="/console/roles/new")
    trust_policy = json.dumps(trust_for("grace"), indent=2)
    await page.fill("#role-name", "deployer")
    await page.fill("#role-description", "ships releases")
    await page.fill("#trust-policy", trust_policy)
    # meanwhile, in another tab: signed out and in again (a new session, a new CSRF token)
    other = await page.context.new_page()
    await other.goto(f"{url}/console")
    await submit(other, "#console-logout", url)
    await other.wait_for_load_state("load")
    await sign_in(other, url, "ada")
    await other.close()

    async with page.expect_response(lambda r: r.url == f"{url}/console/roles") as answer:
        await submit(page, "#role-create", url)
    assert (await answer.value).status == 403
    error = await page.inner_text("#console-error")
    assert "opened before you last signed in" in error
    assert "nothing was changed" in error
    assert await page.input_value("input[name=name]") == "deployer"
    assert await page.input_value("input[name=description]") == "ships releases"
    assert await page.input_value("textarea[name=trust_policy]") == trust_policy
    await look(page, browser, axe_source, "stale-form")
    assert "deployer" not in await role_names(console_broker)
    await b.auditor.flush()  # refusals are batched
    refused = await b.store.list_audit(action="console.roles.create")
    assert [(e.outcome, e.reason) for e in refused] == [("failure", "csrf_mismatch")]

    # the old page's token in a crafted POST: the same refusal, nothing made
    resp = await page.request.post(
        f"{url}/console/roles",
        form={"csrf": "0" * 64, "nonce": "x", "name": "deployer2", "trust_policy": "{}"},
        headers={"Origin": url},
        max_redirects=0,
    )
    assert resp.status == 403
    assert "deployer2" not in await role_names(console_broker)
    # from another site: the bare refusal, what was posted is not echoed
    resp = await page.request.post(
        f"{url}/console/roles",
        form={"csrf": "0" * 64, "nonce": "x", "name": "deployer3"},
        headers={"Origin": "https://evil.example"},
        max_redirects=0,
    )
    assert resp.status == 403
    assert "deployer3" not in await resp.text()

    # sent again from the page that kept it: created
    await submit(page, "#stale-resend", url)
    await page.wait_for_url(f"{url}/console/roles/deployer?done=created")
    assert "deployer" in await role_names(console_broker)
