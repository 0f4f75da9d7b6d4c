"""``/console/simulator``: a role's policies (``SimulatePrincipalPolicy``) and a typed policy
(``SimulateCustomPolicy``) simulated through the page, decisions with AWS's names, the deciding
statements marked in the policies shown; a context key that flips a decision; a malformed policy
is a clear message with the inputs kept; a caller allowed no simulation is refused (audited)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import pytest

from tests.conftest import RunningBroker
from tests.e2e.console.conftest import look, sign_in
from tests.e2e.test_browser_login import submit

if TYPE_CHECKING:
    from playwright.async_api import Browser, Page

pytestmark = [pytest.mark.browser]

DENY_POLICY = json.dumps(
    {
        "Version": "2012-10-17",
        "Statement": [
            {"Sid": "ReadAll", "Effect": "Allow", "Action": "s3:*", "Resource": "*"},
            {"Sid": "NoDelete", "Effect": "Deny", "Action": "s3:DeleteObject", "Resource": "*"},
            {
                "Sid": "OfficeOnly",
                "Effect": "Allow",
                "Action": "ec2:StartInstances",
                "Resource": "*",
                "Condition": {"IpAddress": {"aws:SourceIp": "10.0.0.0/8"}},
            },
        ],
    },
    indent=2,
)


async def decisions(page: Page) -> dict[str, str]:
    rows = await page.eval_on_selector_all(
        "#sim-results tbody tr",
        "rows => rows.map(r => [r.cells[0].innerText.trim(), "
        "r.querySelector('[data-decision]').dataset.decision])",
    )
    return dict(rows)


async def matched(page: Page) -> list[str]:
    ids: list[str] = await page.eval_on_selector_all(
        "li.sim-statement.matched", "els => els.map(e => e.id)"
    )
    return ids


async def test_a_role_is_simulated_with_its_deciding_statement_marked(
    console_broker: RunningBroker, page: Page, browser: Browser, axe_source: str
) -> None:
    url = console_broker.url
    await sign_in(page, url, "ada", to="/console/simulator")
    role = console_broker.broker.settings.arn("role", "console-reader")
    await page.check("#sim-mode-principal")
    await page.select_option("#sim-principal", role)
    await page.fill("#sim-actions", "iam:ListUsers\niam:CreateUser")
    await submit(page, "#sim-run", url)
    await page.wait_for_selector("#sim-results")
    assert await decisions(page) == {"iam:ListUsers": "allowed", "iam:CreateUser": "implicitDeny"}
    # the role's own policy, its one statement decided the allowed action, and says so in text
    assert await matched(page) == ["policy-0-0"]
    marker = await page.inner_text("li.sim-statement.matched .sim-marker")
    assert "Deciding statement for iam:ListUsers on *" in marker
    assert "iam:List*" in await page.inner_text("li.sim-statement.matched pre")
    # the inputs stay for the next run
    assert await page.input_value("#sim-principal") == role
    assert "iam:CreateUser" in await page.input_value("#sim-actions")
    await look(page, browser, axe_source, "simulator-principal")


async def test_a_custom_policy_deny_and_a_context_key(
    console_broker: RunningBroker, page: Page, browser: Browser, axe_source: str
) -> None:
    url = console_broker.url
    await sign_in(page, url, "ada", to="/console/simulator")
    await page.check("#sim-mode-custom")
    await page.fill("#sim-policy", DENY_POLICY)
    await page.fill("#sim-actions", "s3:GetObject, s3:DeleteObject, ec2:StartInstances")
    await submit(page, "#sim-run", url)
    await page.wait_for_selector("#sim-results")
    assert await decisions(page) == {
        "s3:GetObject": "allowed",
        "s3:DeleteObject": "explicitDeny",
        "ec2:StartInstances": "implicitDeny",
    }
    # the Deny statement is the one marked for the denied action
    deny = page.locator("#policy-0-1")
    assert "matched" in (await deny.get_attribute("class") or "")
    assert "Deciding statement for s3:DeleteObject on *" in await deny.inner_text()
    assert "matched" not in (await page.get_attribute("#policy-0-2", "class") or "")
    # the condition's key is reported missing; given, it flips the decision
    assert "aws:SourceIp" in await page.inner_text("#sim-results")
    await page.fill("#ctx-key-0", "aws:SourceIp")
    await page.select_option("#ctx-type-0", "ip")
    await page.fill("#ctx-values-0", "10.1.2.3")
    await submit(page, "#sim-run", url)
    await page.wait_for_selector("#sim-results")
    assert (await decisions(page))["ec2:StartInstances"] == "allowed"
    assert "matched" in (await page.get_attribute("#policy-0-2", "class") or "")
    assert await page.input_value("#ctx-key-0") == "aws:SourceIp"
    # a row stays blank for one more key
    assert await page.input_value("#ctx-key-1") == ""
    await look(page, browser, axe_source, "simulator-custom")
    await page.fill("#ctx-values-0", "192.168.1.1")
    await submit(page, "#sim-run", url)
    await page.wait_for_selector("#sim-results")
    assert (await decisions(page))["ec2:StartInstances"] == "implicitDeny"


async def test_a_malformed_policy_is_a_message_and_the_inputs_stay(
    console_broker: RunningBroker, page: Page
) -> None:
    url = console_broker.url
    await sign_in(page, url, "ada", to="/console/simulator")
    broken = '{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": '
    await page.check("#sim-mode-custom")
    await page.fill("#sim-policy", broken)
    await page.fill("#sim-actions", "s3:GetObject")
    await submit(page, "#sim-run", url)
    await page.wait_for_selector("#console-error")
    assert "not a valid policy" in await page.inner_text("#console-error")
    assert await page.input_value("#sim-policy") == broken
    assert await page.input_value("#sim-actions") == "s3:GetObject"
    assert await page.is_checked("#sim-mode-custom")
    assert not await page.is_visible("#sim-results")


async def test_an_unknown_principal_is_a_message(console_broker: RunningBroker, page: Page) -> None:
    url = console_broker.url
    ghost = console_broker.broker.settings.arn("user", "ghost")
    await sign_in(page, url, "ada", to=f"/console/simulator?principal={ghost}")
    await page.fill("#sim-actions", "iam:ListUsers")
    await submit(page, "#sim-run", url)
    await page.wait_for_selector("#console-error")
    assert "ghost" in await page.inner_text("#console-error")
    assert await page.input_value("#sim-principal") == ghost


async def test_the_reader_may_simulate_and_a_caller_without_permission_is_refused(
    console_broker: RunningBroker, page: Page
) -> None:
    url = console_broker.url
    await sign_in(page, url, "rex", to="/console/simulator")
    await page.check("#sim-mode-custom")
    await page.fill("#sim-policy", DENY_POLICY)
    await page.fill("#sim-actions", "s3:DeleteObject")
    await submit(page, "#sim-run", url)
    await page.wait_for_selector("#sim-results")
    assert await decisions(page) == {"s3:DeleteObject": "explicitDeny"}
    # read-only, so no single-use value is spent, but the CSRF token is still required
    forged = await page.request.post(
        f"{url}/console/simulator",
        form={"mode": "custom", "policy": DENY_POLICY, "actions": "s3:GetObject"},
        headers={"Origin": url},
    )
    assert forged.status == 403

    await page.context.clear_cookies()
    await sign_in(page, url, "pat", to="/console")
    resp = await page.request.get(f"{url}/console/simulator")
    assert resp.status == 403
    await console_broker.broker.auditor.flush()
    events = await console_broker.broker.store.list_audit(limit=20)
    assert any(
        e.outcome == "failure" and "Simulate" in e.action and "plain" in e.principal for e in events
    )
