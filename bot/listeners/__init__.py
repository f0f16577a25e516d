"""Every Slack surface ftbot answers, mapped to its handler in one place.

Handlers are plain module-level functions; each acks, parses, calls a service in `runner/`,
renders a payload and makes its Slack call. Their dependencies arrive in Bolt's context (`Deps`,
put there by the first middleware).
"""

from __future__ import annotations

from slack_bolt import App

from bot.deps import Deps
from bot.listeners import commands, datasets, events, interview, middleware, registry, training


def register(app: App, deps: Deps) -> None:
    app.middleware(middleware.provide(deps))
    app.middleware(middleware.strip_nul_characters)
    app.middleware(middleware.handle_each_event_once)
    app.error(middleware.error_seam(deps))

    # Events first: Bolt tries listeners in the order they were registered, running each one's
    # matchers, and reactions arrive in bursts of hundreds; ids below are matched only for the rest.
    app.event("reaction_added")(datasets.on_reaction_added)
    app.event("reaction_removed")(datasets.on_reaction_removed)
    app.event("message")(datasets.on_message)
    app.event("app_mention")(events.on_mention)
    app.event("app_home_opened")(datasets.on_home)

    # slash command
    app.command(commands.COMMAND)(commands.on_command)

    # the readiness interview
    app.action(interview.ANSWER_ACTION)(interview.on_answer)
    app.action("interview_back")(interview.on_back)
    app.action("interview_restart")(interview.on_restart)

    # dataset projects
    app.action("collect_examples")(datasets.on_collect)
    app.view("project_new")(datasets.on_project_submitted)
    app.shortcut("add_to_dataset")(datasets.on_add_shortcut)
    app.view("add_to_dataset")(datasets.on_add_submitted)
    app.action(datasets.ADJUDICATE_ACTION)(datasets.on_adjudicate)

    # training
    app.action("train_project")(training.on_train_button)
    app.action("cancel_run")(training.on_cancel)

    # the registry
    app.action("promote_version")(registry.on_promote_button)
    app.action("rollback_version")(registry.on_rollback_button)
    app.action("discard_version")(registry.on_discard_button)
