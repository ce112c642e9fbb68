"""The robot accounts service: what ``registry robot``, ``registry user secret`` and the
management API call, and what logins ask to check a robot's or a CLI secret's credentials.

A robot's secret, and a user's CLI secret, is shown once, when made or rotated; only its
hash is kept (:mod:`registry.robots.values`). A disabled or expired robot, or a secret
that was rotated or revoked, is refused at the next login (token request or basic
credentials) with a message saying which.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

from registry.audit.changes import ActorAddress, ChangeRecorder, change_event
from registry.config import Settings
from registry.robots.store import RobotStore, SqliteRobotStore
from registry.robots.values import (
    ROBOT_PREFIX,
    Robot,
    RobotError,
    RobotNotFound,
    UserSecret,
    check_chosen_secret,
    check_label,
    check_project,
    check_short_name,
    hash_secret,
    new_secret,
    parse_actions,
    parse_expires,
    secret_digest,
    split_robot_name,
    verify_secret,
)

#: When a project was made (seconds since the epoch), or ``None`` if there is no such
#: project. A service without one does not check projects.
ProjectCheck = Callable[[str], float | None]


@dataclass(frozen=True)
class Issued:
    """A robot or CLI secret just made or rotated, and its secret (shown once)."""

    name: str
    secret: str
    robot: Robot | None = None
    user_secret: UserSecret | None = None

    def to_json(self) -> dict[str, object]:
        """What ``--json`` prints and the API answers."""
        record = (self.robot.to_json() if self.robot is not None
                  else self.user_secret.to_json() if self.user_secret is not None else {})
        return {"name": self.name, **record, "secret": self.secret}


class RobotRefused(Exception):
    """Credentials that name a robot but are not accepted; the message says why.
    ``wrong_secret``: the secret was wrong (a failed login), not the robot unusable."""

    def __init__(self, message: str, *, wrong_secret: bool = False) -> None:
        super().__init__(message)
        self.wrong_secret = wrong_secret


class RobotService:
    """Robot accounts and CLI secrets over a :class:`RobotStore`."""

    def __init__(self, store: RobotStore, project_exists: ProjectCheck | None = None,
                 user_exists: Callable[[str], bool] | None = None,
                 record: ChangeRecorder | None = None) -> None:
        """``record`` logs each change in the audit log (none: not logged)."""
        self.store = store
        self.project_exists = project_exists
        self.user_exists = user_exists
        self.record = record

    def _changed(self, action: str, actor: ActorAddress, *, project: str = "",
                 detail: str = "") -> None:
        if self.record is not None:
            self.record([change_event(action, actor, project=project, detail=detail)])

    # Robots.

    def create(self, project: str, name: str, actions: str, expires: str | int | None = None,
               *, secret: str | None = None, description: str = "",
               actor: ActorAddress = None) -> Issued:
        """Make robot ``robot$project+name`` with ``actions`` (``pull,push``) that expires
        after ``expires`` days (never: ``None``); its secret is ``secret`` if given (chosen
        by the caller), a fresh random one otherwise."""
        check_project(project)
        check_short_name(name)
        parsed = parse_actions(actions)
        expires_at = parse_expires(expires)
        if secret is not None:
            check_chosen_secret(secret)
        if self.project_exists is not None and self.project_exists(project) is None:
            raise RobotError(f"--project: no project {project!r} (registry project create "
                             f"{project})")
        plain = secret if secret is not None else new_secret()
        robot = Robot(project, name, parsed, hash_secret(plain, chosen=secret is not None),
                      time.time(), expires_at, False, description[:256])
        self.store.add(robot)
        self._changed("robot.create", actor, project=project,
                      detail=f"robot={robot.full_name} actions={','.join(parsed)} "
                      f"expires={'never' if expires_at is None else int(expires_at)}")
        return Issued(robot.full_name, plain, robot=robot)

    def find(self, full_name: str) -> Robot:
        """The robot called ``full_name``; RobotNotFound if there is none."""
        project, name = split_robot_name(full_name)
        robot = self.store.get(project, name)
        if robot is None:
            raise RobotNotFound(f"no robot {full_name!r}")
        return robot

    def robots(self, project: str | None = None) -> list[Robot]:
        """Every robot, or those of ``project``."""
        if project is not None:
            check_project(project)
        return self.store.robots(project)

    def set_disabled(self, full_name: str, disabled: bool, actor: ActorAddress = None
                     ) -> Robot:
        """Disable or enable a robot."""
        robot = self.find(full_name)
        updated = self.store.update(robot.project, robot.name, disabled=disabled)
        self._changed("robot.disable" if disabled else "robot.enable", actor,
                      project=robot.project, detail=f"robot={robot.full_name}")
        return updated

    def delete(self, full_name: str, actor: ActorAddress = None) -> None:
        """Delete a robot; RobotNotFound if there is none."""
        project, name = split_robot_name(full_name)
        if not self.store.remove(project, name):
            raise RobotNotFound(f"no robot {full_name!r}")
        self._changed("robot.delete", actor, project=project, detail=f"robot={full_name}")

    def rotate(self, full_name: str, *, secret: str | None = None,
               actor: ActorAddress = None) -> Issued:
        """Give a robot a new secret (``secret``, or a fresh one); the old one stops
        working at once, and so do refresh tokens obtained with it."""
        if secret is not None:
            check_chosen_secret(secret)
        robot = self.find(full_name)
        plain = secret if secret is not None else new_secret()
        updated = self.store.update(robot.project, robot.name,
                                    secret_hash=hash_secret(plain, chosen=secret is not None))
        self._changed("robot.rotate", actor, project=robot.project,
                      detail=f"robot={robot.full_name}")
        return Issued(updated.full_name, plain, robot=updated)

    def authenticate(self, full_name: str, secret: str, now: float | None = None) -> Robot:
        """The robot if ``secret`` is its secret and it is enabled and not expired;
        RobotRefused saying why otherwise."""
        try:
            project, name = split_robot_name(full_name)
        except RobotError:
            raise RobotRefused("incorrect username or password", wrong_secret=True) from None
        robot = self.store.get(project, name)
        if robot is None or not verify_secret(robot.secret_hash, secret):
            raise RobotRefused("incorrect username or password", wrong_secret=True)
        self.check_usable(robot, now)
        return robot

    def check_usable(self, robot: Robot, now: float | None = None) -> None:
        """RobotRefused if ``robot`` is disabled or expired, or its project is gone (a
        project made again later under the same name does not revive its robots)."""
        if self.project_exists is not None:
            made = self.project_exists(robot.project)
            if made is None or made > robot.created_at:
                raise RobotRefused(f"robot account {robot.full_name}: project "
                                   f"{robot.project} no longer exists")
        if robot.disabled:
            raise RobotRefused(f"robot account {robot.full_name} is disabled (registry robot "
                               "enable)")
        if robot.expired(now):
            when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(robot.expires_at or 0))
            raise RobotRefused(f"robot account {robot.full_name} expired at {when}")

    def usable(self, full_name: str, stamp: str | None = None) -> Robot:
        """The robot ``full_name`` if it exists, is usable and (``stamp``) still has the
        secret a refresh token was issued for; RobotRefused otherwise."""
        try:
            robot = self.find(full_name)
        except RobotError:
            raise RobotRefused(f"robot account {full_name[:80]} no longer exists") from None
        self.check_usable(robot)
        if stamp is not None and stamp != robot.stamp:
            raise RobotRefused(f"the secret of robot account {full_name} was rotated; log "
                               "in again")
        return robot

    # Users' CLI secrets.

    def create_user_secret(self, user: str, label: str | None = None,
                           actor: ActorAddress = None) -> Issued:
        """A new CLI secret for ``user`` (a password it can log in with, revocable alone)."""
        if user.startswith(ROBOT_PREFIX):
            raise RobotError(f"USER {user[:80]!r}: robot accounts have one secret (registry "
                             "robot rotate)")
        if self.user_exists is not None and not self.user_exists(user):
            raise RobotError(f"USER: no user {user[:80]!r} (registry user add)")
        secret_id = secrets.token_hex(8)
        label = check_label(label) if label is not None else f"secret-{secret_id[:6]}"
        plain = new_secret()
        record = UserSecret(secret_id, user, label, secret_digest(plain), time.time())
        self.store.add_secret(record)
        self._changed("user.secret.create", actor, detail=f"user={user} label={label}")
        return Issued(user, plain, user_secret=record)

    def user_secrets(self, user: str | None = None) -> list[UserSecret]:
        """The CLI secrets of ``user`` (of everyone: ``None``), without the secrets."""
        return self.store.secrets(user)

    def revoke_user_secret(self, user: str, id_or_label: str, actor: ActorAddress = None
                           ) -> None:
        """Revoke a CLI secret of ``user`` by id or label; RobotNotFound if none."""
        if not self.store.remove_secret(user, id_or_label):
            raise RobotNotFound(f"user {user!r} has no CLI secret {id_or_label!r}")
        self._changed("user.secret.revoke", actor, detail=f"user={user} secret={id_or_label}")

    def user_secret_login(self, user: str, password: str) -> UserSecret | None:
        """The CLI secret of ``user`` that ``password`` is, if it is one (one indexed
        lookup by the secret's hash)."""
        found = self.store.secret_by_hash(secret_digest(password))
        return found if found is not None and found.user == user else None

    def user_secret_valid(self, user: str, stamp: str) -> bool:
        """Whether the CLI secret a refresh token's ``stamp`` names is still there."""
        found = self.store.secret_by_id(stamp.removeprefix("secret:"))
        return found is not None and found.user == user


def is_robot(name: str | None) -> bool:
    """Whether ``name`` is a robot account's name."""
    return name is not None and name.startswith(ROBOT_PREFIX)


def open_robot_store(settings: Settings, *, migrate: bool = False) -> RobotStore:
    """The robot store of ``settings``: ``root/robots.db``, or the PostgreSQL tables with
    ``metadata_url`` (``migrate``: create the schema first if needed)."""
    if not settings.metadata_url:
        return SqliteRobotStore(settings.root)
    from registry.auth.shared_state import shared_store
    from registry.robots.postgres import PostgresRobotStore

    return PostgresRobotStore(shared_store(settings, migrate=migrate))


__all__ = ["Issued", "ProjectCheck", "RobotRefused", "RobotService", "is_robot",
           "open_robot_store"]
