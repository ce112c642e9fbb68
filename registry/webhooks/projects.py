"""The link from webhooks to projects: a webhook belongs to a project that exists
(:mod:`registry.projects`)."""

from __future__ import annotations

from collections.abc import Callable

from registry.config import Settings
from registry.webhooks.model import WebhookError

__all__ = ["project_check"]


def project_check(settings: Settings) -> Callable[[str], None]:
    """A check that raises WebhookError naming ``PROJECT`` when the project does not exist
    in the project store of ``settings``."""
    def check(name: str) -> None:
        from registry.projects.backends import open_project_store
        from registry.projects.model import ProjectError, ProjectNotFound
        from registry.projects.service import ProjectService

        store = open_project_store(settings)
        try:
            ProjectService(store).get(name)
        except ProjectNotFound as exc:
            raise WebhookError(f"PROJECT {name!r}: {exc} (registry project create "
                               f"{name})") from None
        except ProjectError as exc:
            raise WebhookError(f"PROJECT {name!r}: {exc}") from None
        finally:
            store.close()

    return check
