"""Data validation with Great Expectations (``manifest_suite``, the only module that imports GX).

The error the pipeline stops with lives here, free of GX, for the run hook to recognise."""

from __future__ import annotations


class DataValidationError(RuntimeError):
    """The manifest failed its expectations: each failed rule in words, the quarantine reasons and
    where the reports are (``reports``: what they are -> path; the pipeline hook adds the catalog
    files, which a node cannot know)."""

    def __init__(self, message: str, reports: dict[str, str]) -> None:
        super().__init__(message)
        self.reports = dict(reports)

    def __str__(self) -> str:
        return f"{self.args[0]}\n  reports: " + ", ".join(f"{what} {path}" for what, path in self.reports.items())
