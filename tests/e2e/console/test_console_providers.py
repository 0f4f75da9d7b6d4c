"""``/console/providers``: ada adds an OpenID Connect provider, adds and removes a client ID and
deletes it; a bad URL is a clear message with the typed values kept; rex (read-only) sees the
providers but cannot change them, even by force (403, audited, nothing changed)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from aiohttp import web
from playwright.async_api import expect

from tests.conftest import RunningBroker
from tests.e2e.console.conftest import PASSWORD, ROLES, USERS, forced_post, look, sign_in
from tests.e2e.test_browser_login import submit
from tests.sts.conftest import start_broker

if TYPE_CHECKING:
    from playwright.async_api import Browser, Dialog, Page

pytestmark = [pytest.mark.browser]


async def accept(dialog: Dialog) -> None:
    await dialog.accept()


async def provider_arns(b: RunningBroker) -> list[str]:
    api = b.broker.iam_api
    found = await api.call(api.root(), "ListOpenIDConnectProviders", {})
    return [p["Arn"] for p in found["OpenIDConnectProviderList"]]


async def test_ada_adds_changes_and_deletes_a_provider(
    console_broker: RunningBroker, page: Page, browser: Browser, axe_source: str
) -> None:
    url = console_broker.url
    page.on("dialog", accept)
    await sign_in(page, url, "ada", to="/console/providers")
    await expect(page.locator("#providers-none")).to_be_visible()
    await page.click("#provider-new")
    await page.wait_for_url(f"{url}/console/providers/new")
    await look(page, browser, axe_source, "provider-create")

    # a URL the broker does not accept: the message, what was typed kept, nothing created
    await page.fill("#provider-url-input", "http://idp.example.com/tenant")
    await page.fill("#provider-client-ids", "app-1")
    await submit(page, "#provider-save", url)
    await expect(page.locator("#console-error")).to_contain_text("https://")
    assert await page.input_value("#provider-url-input") == "http://idp.example.com/tenant"
    assert await page.input_value("#provider-client-ids") == "app-1"
    assert await provider_arns(console_broker) == []

    await page.fill("#provider-url-input", "https://idp.example.com/tenant")
    await submit(page, "#provider-save", url)
    await page.wait_for_url(f"{url}/console/providers/idp.example.com/tenant?done=created")
    await expect(page.locator("#console-notice")).to_contain_text("created")
    await expect(page.locator("#provider-url")).to_have_text("idp.example.com/tenant")
    await expect(page.locator("#client-ids")).to_contain_text("app-1")

    # a second client ID, then removed again
    await page.fill("#client-id", "app-2")
    await submit(page, "#client-add-button", url)
    await page.wait_for_url("**/console/providers/idp.example.com/tenant?done=client-added")
    await expect(page.locator("#client-ids")).to_contain_text("app-2")
    await look(page, browser, axe_source, "provider")
    await submit(page, "#remove-client-2", url)
    await page.wait_for_url("**/console/providers/idp.example.com/tenant?done=client-removed")
    await expect(page.locator("#client-ids")).not_to_contain_text("app-2")
    await expect(page.locator("#client-ids")).to_contain_text("app-1")

    # listed, searchable
    await page.goto(f"{url}/console/providers?q=idp.example")
    await expect(page.locator("#providers")).to_contain_text("idp.example.com/tenant")
    await look(page, browser, axe_source, "providers")
    await page.goto(f"{url}/console/providers?q=nothing-like-it")
    await expect(page.locator("#providers-none")).to_contain_text("No provider matches")

    # deleted
    await page.goto(f"{url}/console/providers/idp.example.com/tenant")
    await submit(page, "#provider-delete", url)
    await page.wait_for_url(f"{url}/console/providers?done=deleted")
    await expect(page.locator("#console-notice")).to_contain_text("deleted")
    assert await provider_arns(console_broker) == []


async def test_reader_sees_but_cannot_change(console_broker: RunningBroker, page: Page) -> None:
    url = console_broker.url
    b = console_broker.broker
    api = b.iam_api
    created = await api.call(
        api.root(),
        "CreateOpenIDConnectProvider",
        {"Url": "https://token.example.com", "ClientIDList": ["sts.example"]},
    )
    arn = created["OpenIDConnectProviderArn"]
    await sign_in(page, url, "rex", to="/console/providers")
    assert await page.locator("#provider-new").count() == 0
    await page.click("#providers a[href='/console/providers/token.example.com']")
    await expect(page.locator("#client-ids")).to_contain_text("sts.example")
    for control in ("#provider-delete", "#client-add", "#remove-client-1"):
        assert await page.locator(control).count() == 0, control
    # a page with the console's form secrets (it says saving will be refused)
    await page.goto(f"{url}/console/providers/new")
    await expect(page.locator("#provider-create-refused")).to_be_visible()
    forced = await forced_post(page, url, "/console/providers/delete", {"arn": arn})
    assert forced.status == 403
    await page.reload()
    forced = await forced_post(
        page, url, "/console/providers/client-ids/add", {"arn": arn, "client_id": "mine"}
    )
    assert forced.status == 403
    assert await provider_arns(console_broker) == [arn]
    got = await api.call(api.root(), "GetOpenIDConnectProvider", {"OpenIDConnectProviderArn": arn})
    assert got["ClientIDList"] == ["sts.example"]
    refused = [
        e
        for e in await b.store.list_audit(limit=50)
        if e.action in ("iam.DeleteOpenIDConnectProvider", "iam.AddClientIDToOpenIDConnectProvider")
        and e.outcome == "failure"
    ]
    assert len(refused) == 2
    assert all("console-reader" in (e.principal or "") for e in refused)


@pytest.fixture
async def with_config_provider(tmp_path: Path) -> AsyncIterator[RunningBroker]:
    """The console's broker with an OpenID Connect provider declared in the config file."""
    runners: list[web.AppRunner] = []
    corp = '[providers.corp]\nissuer = "https://corp.example.com"\nclient_id = "broker"\n'
    b = await start_broker(tmp_path / "b", roles=ROLES, providers=corp, runners=runners)
    api = b.broker.iam_api
    await api.call(api.root(), "CreateUser", {"UserName": "ada"})
    await api.call(
        api.root(),
        "CreateLoginProfile",
        {"UserName": "ada", "Password": PASSWORD, "PasswordResetRequired": False},
    )
    assert "ada" in USERS
    yield b
    for r in reversed(runners):
        await r.cleanup()


async def test_config_providers_are_read_only(
    with_config_provider: RunningBroker, page: Page
) -> None:
    b = with_config_provider
    url = b.url
    await sign_in(page, url, "ada", to="/console/providers")
    row = page.locator("#providers tr", has=page.locator("a[href='/console/providers/corp']"))
    await expect(row.locator(".badge")).to_have_text("config")
    await page.click("#providers a[href='/console/providers/corp']")
    await expect(page.locator("#provider-readonly")).to_be_visible()
    await expect(page.locator("#client-ids")).to_contain_text("broker")
    for control in ("#provider-delete", "#client-add", "#remove-client-1"):
        assert await page.locator(control).count() == 0, control
    await page.goto(f"{url}/console/providers/new")
    arn = b.settings.arn("oidc-provider", "corp")
    forced = await forced_post(page, url, "/console/providers/delete", {"arn": arn})
    assert forced.status == 400  # IAM's UnmodifiableEntity
    assert "declared in the configuration file" in await forced.text()
    assert arn in await provider_arns(b)
