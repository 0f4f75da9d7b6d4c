"""The golden corpus (``corpus.py``): every case decided as AWS documents it, with the statements
that decided it."""

from __future__ import annotations

import pytest

from broker.policy import Decision, evaluate, evaluate_trust, parse_policy
from tests.domain.policy.corpus import CASES, Case


def decide(case: Case) -> Decision:
    if case.caller is not None:
        trust = parse_policy(case.identity["trust"], name="trust", kind="resource")
        return evaluate_trust(
            trust,
            principal=case.caller,
            action=case.action,
            context=case.context,
            resource=case.resource,
        )
    return evaluate(
        action=case.action,
        resource=case.resource,
        context=case.context,
        identity=[parse_policy(d, name=n) for n, d in case.identity.items()],
        boundary=parse_policy(case.boundary, name="boundary") if case.boundary else None,
        session=[parse_policy(d, name=n) for n, d in case.session.items()],
    )


def test_corpus_is_large_and_ids_are_unique() -> None:
    ids = [c.id for c in CASES]
    assert len(ids) >= 150
    assert len(set(ids)) == len(ids)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_corpus(case: Case) -> None:
    d = decide(case)
    deciding = tuple(
        f"{m.policy}#{m.sid if m.sid is not None else m.index}" for m in d.matched_statements
    )
    assert (d.decision, deciding) == (case.decision, case.deciding)
