"""The web UI's errors: each is shown to the browser as an error page with its status."""

from __future__ import annotations


class UIError(Exception):
    """A request the UI refuses or cannot answer; ``message`` is one line for the page."""

    status = 400

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status


class UIForbidden(UIError):
    """The viewer may not do this (403): a missing CSRF token, a refused action."""

    status = 403


class UINotFound(UIError):
    """No such project, repository, tag or manifest, or one the viewer may not see (404)."""

    status = 404


class UILoginRequired(UIError):
    """The page needs a logged-in viewer (401: the page links to the login form)."""

    status = 401
