"""The IAM API (AWS's IAM Query actions) as a service: ``IamApi.call(caller, action, params)``.

Each module owns one family of actions and exports ``ACTIONS``; ``all_actions()`` is the
catalogue. docs/iam-api.md lists what is supported and how it differs from AWS.
"""

from __future__ import annotations

from broker.service.iam_api import (
    access_keys,
    account,
    attachments,
    groups,
    inline,
    last_accessed,
    login_profiles,
    mfa,
    oidc_providers,
    policies,
    reports,
    roles,
    simulation,
    tags,
    users,
)
from broker.service.iam_api.api import IamApi
from broker.service.iam_api.registry import Action, Call, Caller


def all_actions() -> tuple[Action, ...]:
    return (
        *users.ACTIONS,
        *groups.ACTIONS,
        *login_profiles.ACTIONS,
        *mfa.ACTIONS,
        *tags.ACTIONS,
        *oidc_providers.ACTIONS,
        *policies.ACTIONS,
        *attachments.ACTIONS,
        *inline.ACTIONS,
        *roles.ACTIONS,
        *simulation.ACTIONS,
        *account.ACTIONS,
        *reports.ACTIONS,
        *last_accessed.ACTIONS,
        *access_keys.ACTIONS,
    )


__all__ = ["Action", "Call", "Caller", "IamApi", "all_actions"]
