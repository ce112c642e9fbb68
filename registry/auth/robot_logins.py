"""Logins with the secrets of :mod:`registry.robots`: robot accounts (``robot$project+name``)
and users' CLI secrets, for :class:`registry.auth.authorizers.Logins`.

A robot's principal carries its :class:`~registry.auth.rules.RobotGrant` (its actions on
its project's repositories, nothing else, whatever the rules say) and the stamp of its
secret, which its refresh tokens carry: rotating the secret revokes them; disabling,
expiring or deleting the robot refuses them at the next token request. A CLI secret logs
its user in with the user's own principal; refresh tokens obtained with it name the secret,
so revoking the secret revokes them.
"""

from __future__ import annotations

import logging
from typing import Any

from registry.auth.rules import AccessPolicy, Principal, RobotGrant
from registry.auth.users import UserStore
from registry.errors import UNAUTHORIZED, RegistryError
from registry.robots.service import ProjectCheck, RobotRefused, RobotService, is_robot
from registry.robots.values import Robot, RobotError, split_robot_name

SECRET_STAMP = "secret:"
log = logging.getLogger("registry.auth")


def project_made(roles: Any) -> ProjectCheck | None:
    """When a project of ``roles`` (the project policy's cached snapshot) was made; ``None``
    without projects."""
    if roles is None:
        return None

    def made(name: str) -> float | None:
        entry = roles.entry(name)
        return None if entry is None else float(entry.project.created_at)

    return made


def robot_principal(robot: Robot) -> Principal:
    """The principal of a robot account that logged in."""
    return Principal(robot.full_name, frozenset(),
                     RobotGrant(robot.project, frozenset(robot.actions), robot.expires_at),
                     robot.stamp)


class SecretLogins:
    """Robot and CLI-secret logins over a :class:`RobotService`."""

    def __init__(self, service: RobotService, users: UserStore, policy: AccessPolicy) -> None:
        self.service = service
        self.users = users
        self.policy = policy

    def principal(self, subject: str) -> Principal | None:
        """The principal of robot ``subject`` (one without actions if it is gone or no
        longer usable); ``None`` if ``subject`` is not a robot's name."""
        if not is_robot(subject):
            return None
        try:
            return robot_principal(self.service.usable(subject))
        except RobotRefused:
            try:
                project = split_robot_name(subject)[0]
            except RobotError:
                project = ""
            return Principal(subject, frozenset(), RobotGrant(project, frozenset()))

    def robot(self, name: str, secret: str) -> Principal:
        """The principal of robot ``name`` if ``secret`` is its secret and it is usable;
        :class:`~registry.robots.service.RobotRefused` saying why not otherwise."""
        return robot_principal(self.service.authenticate(name, secret))

    def user_secret(self, name: str, password: str) -> Principal | None:
        """The principal of user ``name`` if ``password`` is one of its CLI secrets."""
        found = self.service.user_secret_login(name, password)
        if found is None:
            return None
        user = self.users.get(name)
        if user is None:
            log.info("CLI secret %s of removed user %s refused", found.id, name)
            return None
        who = self.policy.principal(user.name, user.groups)
        return Principal(who.subject, who.groups, None, found.stamp)

    def refresh(self, subject: str, stamp: str) -> Principal | None:
        """The principal a refresh token of a robot or of a CLI secret stands for;
        UNAUTHORIZED if it no longer does; ``None`` for a user's password token."""
        if is_robot(subject):
            try:
                return robot_principal(self.service.usable(subject, stamp))
            except RobotRefused as exc:
                raise RegistryError(UNAUTHORIZED, f"refresh token refused: {exc}") from None
        if not stamp.startswith(SECRET_STAMP):
            return None
        user = self.users.get(subject)
        if user is None or not self.service.user_secret_valid(subject, stamp):
            raise RegistryError(UNAUTHORIZED, "refresh token refused: the CLI secret it was "
                                "issued for was revoked; log in again")
        who = self.policy.principal(user.name, user.groups)
        return Principal(who.subject, who.groups, None, stamp)

    def generation(self) -> int:
        """Changes whenever a robot or CLI secret does."""
        return self.service.store.generation()
