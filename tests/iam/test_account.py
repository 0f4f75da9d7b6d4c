"""GetAccountSummary (and GetAccountAuthorizationDetails): real boto3 and AWS CLI calls."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError

from broker.service.iam_api.account import AWS_DEFAULT_QUOTAS, BROKER_QUOTAS
from tests.iam.conftest import IamEnv, allow, call, error_code, policy
from tests.sts.conftest import sts_post


async def test_account_summary_counts_what_the_store_holds(iam_env: IamEnv) -> None:
    b = iam_env.broker.broker
    admin = await iam_env.client("admin")
    before = (await call(admin, "get_account_summary"))["SummaryMap"]
    assert isinstance(before, dict)
    assert before["Roles"] == len(await b.store.list_roles()) == 3
    assert before["Policies"] == len(await b.store.list_managed_policies())
    assert before["Users"] == await b.store.count_users()
    assert before["Providers"] == 1  # the fake OIDC provider of the config
    assert before["PolicySizeQuota"] == 6144
    assert before["VersionsPerPolicyQuota"] == 5
    assert before["UsersQuota"] == 5000
    assert set(before) == {
        "Users",
        "Groups",
        "Roles",
        "Policies",
        "PolicyVersionsInUse",
        "Providers",
        *AWS_DEFAULT_QUOTAS,
        *BROKER_QUOTAS,
    }
    assert all(isinstance(v, int) for v in before.values())

    await call(admin, "create_user", UserName="erin")
    await b.iam.create_group("ops", actor="test")
    await b.iam.create_policy("Ops", policy(allow("s3:*")), actor="test")
    await b.iam.attach_policy("group", "ops", "Ops", actor="test")
    await b.iam.attach_policy("user", "erin", "Ops", actor="test")
    await b.iam.set_boundary("user", "erin", "Ops", actor="test")
    after = (await call(admin, "get_account_summary"))["SummaryMap"]
    assert after["Users"] == before["Users"] + 1
    assert after["Groups"] == before["Groups"] + 1
    assert after["Policies"] == before["Policies"] + 1
    assert after["PolicyVersionsInUse"] == before["PolicyVersionsInUse"] + 3

    creds = await iam_env.credentials("reader")
    code, out, err = await iam_env.aws(creds, "iam", "get-account-summary")
    assert code == 0, err
    assert out["SummaryMap"] == after


async def test_account_summary_needs_permission(iam_env: IamEnv) -> None:
    nobody = await iam_env.client("nobody")
    with pytest.raises(ClientError) as e:
        await call(nobody, "get_account_summary")
    assert error_code(e.value) == "AccessDenied"
    assert "iam:GetAccountSummary" in e.value.response["Error"]["Message"]
    events = await iam_env.broker.broker.store.list_audit(action="iam.GetAccountSummary")
    assert events[0].outcome == "failure"
    assert events[0].reason.startswith("not_authorized")
    status, text = await sts_post(
        iam_env.url, {"Action": "GetAccountSummary", "Version": "2010-05-08"}
    )
    assert status == 403
    assert "MissingAuthenticationToken" in text
    events = await iam_env.broker.broker.store.list_audit(action="iam.GetAccountSummary")
    assert len(events) == 2
