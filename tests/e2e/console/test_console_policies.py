"""``/console/policies``: ada writes a policy in the live-validating editor, saves, edits it
(a new default version), makes the older version default again, deletes a version and then the
policy; bad input (too large, invalid JSON without scripts, a bad name, a double submit) is a
clear message with nothing created; rex (read-only) sees but cannot change, even by force."""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any

import pytest
from playwright.async_api import expect

from tests.conftest import RunningBroker
from tests.e2e.console.conftest import forced_post, look, sign_in
from tests.e2e.test_browser_login import submit

if TYPE_CHECKING:
    from playwright.async_api import Browser, Dialog, Page

pytestmark = [pytest.mark.browser]

FINDINGS = "#policy-document-findings"
BAD_EFFECT = (
    '{"Version": "2012-10-17", "Statement": [{"Effect": "Maybe", "Action": "*", "Resource": "*"}]}'
)
STAR = (
    '{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}'
)


def doc(*actions: str) -> str:
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": list(actions), "Resource": "*"}],
        },
        indent=2,
    )


def iam_size(text: str) -> int:
    """As the service counts (broker.service.iam.parse_document)."""
    return len(re.sub(r"\s", "", json.dumps(json.loads(text), ensure_ascii=False)))


async def names(b: RunningBroker) -> list[str]:
    api = b.broker.iam_api
    return [p["PolicyName"] for p in (await api.call(api.root(), "ListPolicies", {}))["Policies"]]


async def accept(dialog: Dialog) -> None:
    await dialog.accept()


async def test_ada_writes_edits_and_deletes_a_policy(
    console_broker: RunningBroker, page: Page, browser: Browser, axe_source: str
) -> None:
    url = console_broker.url
    page.on("dialog", accept)
    await sign_in(page, url, "ada", to="/console/policies")
    await page.click("#policy-new")
    await page.wait_for_url(f"{url}/console/policies/new")
    await page.fill("#policy-name", "ci-read")
    await page.fill("#policy-description", "What CI may read")
    editor = page.locator("#policy-document")
    findings = page.locator(FINDINGS)
    await expect(findings).to_have_attribute("aria-live", "polite")
    # typing: invalid JSON, then an invalid element (with its path), then allow * on *
    await editor.fill('{"Version": "2012-10-17", "Statement": [')
    await expect(findings.locator("li.finding-error")).to_have_count(1)
    await expect(findings).to_contain_text("not valid JSON")
    await editor.fill(BAD_EFFECT)
    await expect(findings.locator("li.finding-error")).to_contain_text("Statement[0].Effect")
    await editor.fill(STAR)
    await expect(findings.locator("li[data-code=STAR_ACTION_ON_STAR_RESOURCE]")).to_be_visible()
    await expect(findings.locator("li.finding-error")).to_have_count(0)
    await expect(findings).to_contain_text(f"{iam_size(STAR)} of 6,144 characters")
    await look(page, browser, axe_source, "policy-create")
    await editor.fill(doc("s3:GetObject", "s3:ListBucket"))
    await expect(findings).to_contain_text("No problems found")
    await submit(page, "#policy-save", url)
    await page.wait_for_url(f"{url}/console/policies/ci-read?done=created")
    await expect(page.locator("#console-notice")).to_contain_text("created")
    await expect(page.locator("#policy-default")).to_have_text("v1")
    await expect(page.locator("#policy-document-shown")).to_contain_text("s3:ListBucket")
    await expect(page.locator("#policy-entities-none")).to_be_visible()

    # edit: a new version, the default at once (the editor starts with the default's document)
    await page.click("#policy-edit-link")
    await page.wait_for_url(f"{url}/console/policies/ci-read/edit")
    await expect(page.locator("#policy-document")).to_contain_text("s3:ListBucket")
    await look(page, browser, axe_source, "policy-edit")
    await page.fill("#policy-document", doc("s3:GetObject"))
    await expect(page.locator(FINDINGS)).to_contain_text("No problems found")
    await submit(page, "#policy-save", url)
    await page.wait_for_url(f"{url}/console/policies/ci-read?done=edited")
    await expect(page.locator("#policy-default")).to_have_text("v2")
    await expect(page.locator("#policy-document-shown")).not_to_contain_text("s3:ListBucket")

    # the older version default again, then the newer one deleted
    await submit(page, "#default-v1", url)
    await page.wait_for_url(f"{url}/console/policies/ci-read?done=default")
    await expect(page.locator("#policy-default")).to_have_text("v1")
    await expect(page.locator("#policy-document-shown")).to_contain_text("s3:ListBucket")
    await submit(page, "#delete-v2", url)
    await page.wait_for_url(f"{url}/console/policies/ci-read?done=version-deleted")
    await expect(page.locator("#version-v2")).to_have_count(0)

    # attached to a user: the page links to it, and deleting is IAM's DeleteConflict
    api = console_broker.broker.iam_api
    arn = console_broker.settings.arn("policy", "ci-read")
    await api.call(api.root(), "AttachUserPolicy", {"UserName": "pat", "PolicyArn": arn})
    await page.goto(f"{url}/console/policies/ci-read")
    await expect(page.locator("#policy-entities a[href='/console/users/pat']")).to_be_visible()
    await look(page, browser, axe_source, "policy")
    await submit(page, "#policy-delete", url)
    await expect(page.locator("#console-error")).to_contain_text("is attached to user")
    assert "ci-read" in await names(console_broker)
    await api.call(api.root(), "DetachUserPolicy", {"UserName": "pat", "PolicyArn": arn})
    await page.goto(f"{url}/console/policies/ci-read")

    # the policy itself
    await submit(page, "#policy-delete", url)
    await page.wait_for_url(f"{url}/console/policies?done=deleted")
    await expect(page.locator("#console-notice")).to_contain_text("deleted")
    assert "ci-read" not in await names(console_broker)
    await expect(page.locator("#policies")).not_to_contain_text("ci-read")
    await look(page, browser, axe_source, "policies")


async def test_five_versions_is_the_most(console_broker: RunningBroker, page: Page) -> None:
    url = console_broker.url
    api = console_broker.broker.iam_api
    await api.call(api.root(), "CreatePolicy", {"PolicyName": "busy", "PolicyDocument": doc("a:b")})
    arn = console_broker.settings.arn("policy", "busy")
    for i in range(4):
        await api.call(
            api.root(),
            "CreatePolicyVersion",
            {"PolicyArn": arn, "PolicyDocument": doc(f"a:c{i}"), "SetAsDefault": True},
        )
    await sign_in(page, url, "ada", to="/console/policies/busy")
    await expect(page.locator("#policy-full")).to_contain_text("5 versions")
    await page.click("#policy-edit-link")
    await page.fill("#policy-document", doc("a:new"))
    await submit(page, "#policy-save", url)
    await expect(page.locator("#console-error")).to_contain_text("can have up to 5 versions")
    assert "a:new" in await page.input_value("#policy-document")
    versions = (await api.call(api.root(), "ListPolicyVersions", {"PolicyArn": arn}))["Versions"]
    assert len(versions) == 5


async def test_bad_input_creates_nothing(
    console_broker: RunningBroker, page: Page, browser: Browser
) -> None:
    url = console_broker.url
    before = await names(console_broker)
    await sign_in(page, url, "ada", to="/console/policies/new")

    # 6,145 characters as IAM counts them: the service's message, the text kept
    actions = [f"s3:GetObject{i:04d}" for i in range(400)]
    big = doc(*actions)
    pad = 6145 - iam_size(big)
    while pad < 0:
        actions.pop()
        big = doc(*actions)
        pad = 6145 - iam_size(big)
    actions[0] += "x" * pad
    big = doc(*actions)
    assert iam_size(big) == 6145
    await page.fill("#policy-name", "too-big")
    await page.fill("#policy-document", big)
    await expect(page.locator(FINDINGS)).to_contain_text("6,145 of 6,144")
    await submit(page, "#policy-save", url)
    await expect(page.locator("#console-error")).to_contain_text("6145 characters")
    assert await page.input_value("#policy-document") == big
    assert await page.input_value("#policy-name") == "too-big"
    await expect(page.locator(f"{FINDINGS} li[data-code=POLICY_TOO_LARGE]")).to_be_visible()

    # a name with characters IAM does not allow
    await page.fill("#policy-name", "bad name!")
    await page.fill("#policy-document", doc("s3:GetObject"))
    await submit(page, "#policy-save", url)
    await expect(page.locator("#console-error")).to_contain_text("names are 1-128")
    assert await page.input_value("#policy-name") == "bad name!"

    # invalid JSON saved without scripts: the server's findings
    ctx = await browser.new_context(java_script_enabled=False)
    try:
        plain = await ctx.new_page()
        await sign_in(plain, url, "ada", to="/console/policies/new")
        await plain.fill("#policy-name", "no-script")
        await plain.fill("#policy-document", BAD_EFFECT)
        await submit(plain, "#policy-save", url)
        await expect(plain.locator("#console-error")).to_contain_text("not a valid policy")
        await expect(plain.locator(f"{FINDINGS} li.finding-error")).to_contain_text(
            "Statement[0].Effect"
        )
        assert await plain.input_value("#policy-document") == BAD_EFFECT
    finally:
        await ctx.close()
    assert await names(console_broker) == before

    # the same form sent twice (a double submit): one policy, the second refused
    await page.goto(f"{url}/console/policies/new")
    fields = {"name": "once", "description": "", "document": doc("s3:GetObject")}
    first = await forced_post(page, url, "/console/policies", fields)
    assert first.status == 303
    second = await forced_post(page, url, "/console/policies", fields)
    assert second.status == 409
    assert sorted(await names(console_broker)) == sorted([*before, "once"])


async def test_reader_sees_but_cannot_change(console_broker: RunningBroker, page: Page) -> None:
    url = console_broker.url
    b = console_broker.broker
    api = b.iam_api
    shared = {"PolicyName": "shared", "PolicyDocument": doc("s3:Get*")}
    await api.call(api.root(), "CreatePolicy", shared)
    await sign_in(page, url, "rex", to="/console/policies")
    await expect(page.locator("#policies")).to_contain_text("shared")
    await expect(page.locator("#policies")).to_contain_text("ReadOnly")
    assert await page.locator("#policy-new").count() == 0
    await page.click("#policies a[href='/console/policies/shared']")
    await expect(page.locator("#policy-default")).to_have_text("v1")
    for button in ("#policy-edit-link", "#policy-delete", "#default-v1", "#delete-v1"):
        assert await page.locator(button).count() == 0, button
    before = await names(console_broker)
    # the create page opens (the editor checks documents) but says saving will be refused
    await page.goto(f"{url}/console/policies/new")
    await expect(page.locator("#policy-create-refused")).to_be_visible()
    forced = await forced_post(
        page, url, "/console/policies", {"name": "rexs", "document": doc("s3:GetObject")}
    )
    assert forced.status == 403
    await page.reload()
    forced = await forced_post(page, url, "/console/policies/shared/delete", {})
    assert forced.status == 403
    assert await names(console_broker) == before
    refused: list[Any] = [
        e
        for e in await b.store.list_audit(limit=50)
        if e.action in ("iam.CreatePolicy", "iam.DeletePolicy") and e.outcome == "failure"
    ]
    assert {e.action for e in refused} == {"iam.CreatePolicy", "iam.DeletePolicy"}
    assert all("console-reader" in (e.principal or "") for e in refused)


async def test_config_policies_are_read_only(console_broker: RunningBroker, page: Page) -> None:
    url = console_broker.url
    await sign_in(page, url, "ada", to="/console/policies/ReadOnly")
    await expect(page.locator("#policy-readonly")).to_be_visible()
    for button in ("#policy-edit-link", "#policy-delete"):
        assert await page.locator(button).count() == 0, button
    await page.goto(f"{url}/console/policies/ReadOnly/edit")
    await expect(page.locator("#policy-readonly")).to_be_visible()
    await page.goto(f"{url}/console/policies/new")  # a page with the console's form secrets
    forced = await forced_post(
        page, url, "/console/policies/ReadOnly/versions", {"document": doc("s3:*")}
    )
    assert forced.status == 400  # IAM's UnmodifiableEntity
    assert "declared in the config file" in await forced.text()
