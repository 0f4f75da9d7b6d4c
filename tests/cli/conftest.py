"""The real-Chromium fixtures of tests/e2e, for the device sign-in of the CLI."""

from tests.e2e.conftest import browser, chromium_executable, context, page

__all__ = ["browser", "chromium_executable", "context", "page"]
