"""Every error ftbot raises on purpose, in one flat module (callers catch these, not strings)."""


class FtbotError(Exception):
    """Base class: the message is written for the person who will read it."""


class ConfigError(FtbotError):
    """A required setting is missing or invalid (the CLI exits with code 2)."""


class TemplateError(FtbotError):
    """A template rendered invalid JSON or broke one of Slack's Block Kit limits."""


class InterviewError(FtbotError):
    """A readiness-interview action that cannot be applied; the message explains why."""


class NotInterviewee(InterviewError):
    """Someone other than the person interviewed pressed a button."""


class InterviewFinished(InterviewError):
    """The interview already has its recommendation."""


class StaleAction(InterviewError):
    """The button belongs to a step that has since been answered (a double press or an old message)."""


class DatasetError(FtbotError):
    """A contribution, label set or dataset operation that does not fit; the message says how to fix it."""


class ProjectNotFound(DatasetError):
    """No project has that name."""


class NotAllowed(FtbotError):
    """The person may not do this (`runner.core.policy` decided); the attempt was audited."""


class TrainingRequestError(FtbotError):
    """A training request that cannot be queued (gates failing, bad options); the message says why."""


class RegistryError(FtbotError):
    """A promote, rollback or discard that cannot be done; the message says why."""


class StaleRegistryAction(RegistryError):
    """The state the request was based on has changed (a double press, an old button); nothing changed."""


class DeployHookError(RegistryError):
    """The deploy hook failed, so production stays where it was."""


class RolledBackVersion(RegistryError):
    """The version was rolled back from: it serves again only when promoted by name, confirmed."""

    def __init__(self, message: str, *, project: str, version: int, note: str) -> None:
        super().__init__(message)
        self.project, self.version, self.note = project, version, note


class RuleRefused(RegistryError):
    """A project rule refuses the move (promote without a won blind A/B); audited as refused."""


class TrainingTimeout(FtbotError):
    """A training job ran past ``FTBOT_JOB_TIMEOUT``."""


class PredictionError(FtbotError):
    """A prediction that cannot be asked for (no such version, nothing in production); says why."""
