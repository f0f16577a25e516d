"""What listeners need besides Bolt's own arguments, handed to each one through its context."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from redis import Redis
from slack_sdk import WebClient
from sqlalchemy.engine import Engine

from bot.directory import Directory
from bot.inbox import InboxExecutor
from bot.tally import Throttle
from runner.core.config import Settings
from runner.core.policy import Person, is_group


@dataclass(frozen=True)
class Deps:
    settings: Settings
    engine: Engine
    directory: Directory  # user-group members and display names, cached
    tally: Throttle  # refreshes a project's live tally, throttled per project
    redis: Redis  # job queues (connects on first use)
    pool: InboxExecutor  # where listeners' work runs after the ack (bot/work.py)

    def person(self, client: WebClient, user_id: str) -> Person:
        """`user_id` as the policy sees them, for a decision about to be made.

        The user groups the settings name (on-call) are asked of Slack now (cached), before the
        unit of work that decides opens, so that no transaction waits on Slack. A group only a
        project names (its reviewer groups) is asked when the policy reads it.
        """
        for group in self.settings.ftbot_oncall:
            if is_group(group):
                self.directory.group_members(client, group)
        return Person(user_id, in_group=lambda group: user_id in self.directory.group_members(client, group))

    def person_cached(self, user_id: str) -> Person:
        """`user_id` for a decision made inside a unit of work: user groups come from the cache only,
        and one that is not cached raises `DirectoryMiss` (fill it with `directory.group_members`
        outside the transaction, then decide again)."""
        return Person(user_id, in_group=lambda group: self.directory.cached_member(group, user_id))


def deps_of(context: Any) -> Deps:
    """The `Deps` a global middleware put in Bolt's context (see `bot.app.build_app`)."""
    deps: Deps = context["deps"]
    return deps
