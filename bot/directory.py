"""Who is who in Slack, cached briefly: user-group members and display names.

User groups change rarely and are read on every reaction, so members are cached for
``FTBOT_DIRECTORY_TTL`` seconds; a failed lookup is logged and treated as an empty group.
"""

from __future__ import annotations

import threading
import time

from slack_sdk import WebClient

from runner.slack.client import call


class DirectoryMiss(Exception):
    """A decision needs a user group's members that are not cached: ask Slack (outside any database
    transaction), then decide again."""

    def __init__(self, group_id: str) -> None:
        super().__init__(group_id)
        self.group_id = group_id


class Directory:
    def __init__(self, ttl: float = 60.0) -> None:
        self.ttl = ttl
        self._lock = threading.Lock()
        self._groups: dict[str, tuple[float, frozenset[str]]] = {}
        self._names: dict[str, tuple[float, str]] = {}

    def group_members(self, client: WebClient, group_id: str) -> frozenset[str]:
        """Members of user group `group_id` (usergroups.users.list), cached."""
        now = time.monotonic()
        with self._lock:
            cached = self._groups.get(group_id)
            if cached and now - cached[0] < self.ttl:
                return cached[1]
        response = call(client, "usergroups_users_list", usergroup=group_id)
        if response is None:  # Slack did not answer: nobody is a member now; ask again next time
            return frozenset()
        members: frozenset[str] = frozenset(response.get("users", []))
        with self._lock:
            self._groups[group_id] = (now, members)
        return members

    def cached_member(self, group_id: str, user_id: str) -> bool:
        """Whether `user_id` is in `group_id` by the cache alone.

        Raises:
            DirectoryMiss: the group's members are not cached (or are stale).
        """
        with self._lock:
            cached = self._groups.get(group_id)
        if cached is None or time.monotonic() - cached[0] >= self.ttl:
            raise DirectoryMiss(group_id)
        return user_id in cached[1]

    def display_name(self, client: WebClient, user_id: str) -> str:
        """The user's display name (users.info), cached; the id itself when Slack does not say."""
        now = time.monotonic()
        with self._lock:
            cached = self._names.get(user_id)
            if cached and now - cached[0] < self.ttl:
                return cached[1]
        response = call(client, "users_info", user=user_id)
        user = (response.get("user") if response else None) or {}
        profile = user.get("profile") or {}
        name = profile.get("display_name") or user.get("real_name") or user.get("name") or user_id
        with self._lock:
            self._names[user_id] = (now, name)
        return str(name)
