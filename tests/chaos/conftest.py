"""The ``chaos`` marker, and the chaos summary lines printed at the end of every run.

A chaos test records its one-line summary with ``record_property("chaos_summary", line)``
(and optionally notes, a list of lines, under ``"chaos_notes"``);
``pytest_terminal_summary`` prints every such line in a section of its own, so
CI logs show the measured figures whether the test passed or failed (and
``pytest -m "not chaos"`` leaves the tier out).
"""

from __future__ import annotations

import pytest

from tests.chaos.harness import NOTES_KEY, SUMMARY_KEY


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "chaos: kills gateways and Redis under live clients (tests/chaos, ~2 min)")


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    lines = []
    for reports in terminalreporter.stats.values():
        for report in reports:
            if getattr(report, "when", None) != "call":
                continue
            for key, value in getattr(report, "user_properties", ()):
                if key == SUMMARY_KEY:
                    lines.append(f"{report.nodeid}: {value}")
                elif key == NOTES_KEY:
                    lines.extend(f"    {note}" for note in value)
    if lines:
        terminalreporter.section("chaos summary")
        for line in lines:
            terminalreporter.write_line(line)
