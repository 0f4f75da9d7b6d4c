"""The credentials report: ``GenerateCredentialReport`` and ``GetCredentialReport`` (on
``*``, as in AWS), served by ``broker.service.credential_report.CredentialReports``."""

from __future__ import annotations

from broker.service.iam_api.registry import Action, Call, Result, anything

#: AWS's ``Description`` when a generation starts.
STARTED = "No report exists. Starting a new report generation task"


async def generate_credential_report(call: Call) -> Result:
    state = await call.api.reports.generate(actor=call.actor, req=call.req)
    out: Result = {"State": state}
    if state == "STARTED":
        out["Description"] = STARTED
    return out


async def get_credential_report(call: Call) -> Result:
    report = await call.api.reports.get()
    return {
        "Content": report.content,  # base64 in the XML, as the model's blob says
        "ReportFormat": "text/csv",
        "GeneratedTime": report.generated_at,
    }


ACTIONS = (
    Action("GenerateCredentialReport", generate_credential_report, anything, mutates=False),
    Action("GetCredentialReport", get_credential_report, anything, mutates=False),
)
