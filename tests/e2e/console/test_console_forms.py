"""The page's single-use form value: a request that fails (bad input, refused) uses up nothing,
the first that succeeds uses it, and a second submit of the same page then changes nothing."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from tests.conftest import RunningBroker
from tests.e2e.console.conftest import form_secrets, sign_in

if TYPE_CHECKING:
    from playwright.async_api import Page

pytestmark = [pytest.mark.browser]


async def post(page: Page, url: str, secrets: dict[str, str], name: str) -> int:
    r = await page.request.post(
        f"{url}/console/groups",
        form={**secrets, "name": name},
        headers={"Origin": url},
        max_redirects=0,
    )
    return r.status


async def groups(b: RunningBroker) -> list[str]:
    api = b.broker.iam_api
    found = await api.call(api.root(), "ListGroups", {})
    return [g["GroupName"] for g in found["Groups"]]


async def test_a_failed_submit_uses_up_nothing(console_broker: RunningBroker, page: Page) -> None:
    url = console_broker.url
    await sign_in(page, url, "ada", to="/console/groups/new")
    secrets = await form_secrets(page)
    assert await post(page, url, secrets, "no spaces allowed") == 400  # IAM's name pattern
    assert await groups(console_broker) == []
    assert await post(page, url, secrets, "auditors") == 303  # the same page's value still works
    assert await post(page, url, secrets, "auditors-2") == 409  # and now it is used
    assert await groups(console_broker) == ["auditors"]


async def test_a_refused_submit_uses_up_nothing(console_broker: RunningBroker, page: Page) -> None:
    url = console_broker.url
    await sign_in(page, url, "rex", to="/console/groups/new")
    secrets = await form_secrets(page)
    assert [await post(page, url, secrets, "auditors") for _ in range(2)] == [403, 403]
    assert await groups(console_broker) == []
