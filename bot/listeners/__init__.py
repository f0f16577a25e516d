"""Every Slack surface ftbot answers, mapped to its handler in one place.

Handlers are plain module-level functions; each parses, calls a service in `runner/`, renders a
payload and makes its Slack call. Each is registered through `bot.work.deferred`: Slack is answered
on the request thread (by a plain ack, or by the handler's ack function where the answer depends on
the request), and the handler's work runs on the app's work pool, so no ack waits on the Web API.
Their dependencies arrive in Bolt's context (`Deps`, put there by the first middleware).
"""

from __future__ import annotations

from slack_bolt import App

from bot.deps import Deps
from bot.listeners import commands, datasets, events, interview, middleware, registry, training
from bot.work import deferred


def register(app: App, deps: Deps) -> None:
    app.middleware(middleware.provide(deps))
    app.middleware(middleware.strip_nul_characters)
    app.middleware(middleware.handle_each_event_once)
    app.error(middleware.error_seam(deps))

    # Events first: Bolt tries listeners in the order they were registered, running each one's
    # matchers, and reactions arrive in bursts of hundreds; ids below are matched only for the rest.
    app.event("reaction_added")(deferred(datasets.on_reaction_added))
    app.event("reaction_removed")(deferred(datasets.on_reaction_removed))
    app.event("message")(deferred(datasets.on_message))
    app.event("app_mention")(deferred(events.on_mention))
    app.event("app_home_opened")(deferred(datasets.on_home))

    # slash command
    app.command(commands.COMMAND)(deferred(commands.on_command, ack=commands.ack_command))

    # the readiness interview
    app.action(interview.ANSWER_ACTION)(deferred(interview.on_answer))
    app.action("interview_back")(deferred(interview.on_back))
    app.action("interview_restart")(deferred(interview.on_restart))

    # dataset projects
    app.action("collect_examples")(deferred(datasets.on_collect))
    app.view("project_new")(deferred(datasets.on_project_submitted, ack=datasets.ack_project_submitted))
    app.shortcut("add_to_dataset")(deferred(datasets.on_add_shortcut))
    app.view("add_to_dataset")(deferred(datasets.on_add_submitted))
    app.action(datasets.ADJUDICATE_ACTION)(deferred(datasets.on_adjudicate))
    app.action(datasets.CONFLICTS_PAGE_ACTION)(deferred(datasets.on_conflicts_page))

    # training
    app.action("train_project")(deferred(training.on_train_button))
    app.action("confirm_training")(deferred(training.on_confirm))
    app.action("approve_training")(deferred(training.on_approve))
    app.action("cancel_training")(deferred(training.on_cancel_request))
    app.action("cancel_run")(deferred(training.on_cancel))
    app.action("pause_run")(deferred(training.on_pause))
    app.action("resume_run")(deferred(training.on_resume))

    # the registry
    app.action("promote_version")(deferred(registry.on_promote_button))
    app.action("rollback_version")(deferred(registry.on_rollback_button))
    app.action("discard_version")(deferred(registry.on_discard_button))
