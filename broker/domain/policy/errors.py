"""The one error the policy engine raises for a bad document."""

from __future__ import annotations

from collections.abc import Sequence

from broker.errors import BrokerError


class PolicyError(BrokerError):
    """A policy document is malformed (AWS: ``MalformedPolicyDocument``).

    ``path`` and ``message`` describe the first problem; ``errors`` lists every problem found in
    the document as ``(path, message)`` pairs, in document order. A path looks like
    ``Statement[1].Condition.StringEquals``; the empty path means the document as a whole.
    ``fixes`` holds a one-line fix for each entry of ``errors`` (``""`` where there is none).
    """

    code = "malformed_policy"
    status = 400
    public_message = "The policy document is not valid."

    def __init__(
        self,
        path: str,
        message: str,
        errors: Sequence[tuple[str, str]] | None = None,
        *,
        fixes: Sequence[str] | None = None,
    ) -> None:
        self.errors: list[tuple[str, str]] = list(errors) if errors else [(path, message)]
        given = list(fixes or ())[: len(self.errors)]
        self.fixes: list[str] = given + [""] * (len(self.errors) - len(given))
        self.path, self.message = self.errors[0]
        super().__init__("; ".join(_render(p, m) for p, m in self.errors))

    @classmethod
    def collected(
        cls, errors: Sequence[tuple[str, str]], fixes: Sequence[str] | None = None
    ) -> PolicyError:
        """One error carrying every problem of a document (``errors`` must not be empty)."""
        first_path, first_message = errors[0]
        return cls(first_path, first_message, errors, fixes=fixes)


def _render(path: str, message: str) -> str:
    return f"{path}: {message}" if path else message
