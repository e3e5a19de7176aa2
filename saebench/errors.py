"""Errors that carry a fix in their message. The CLI prints them without a traceback."""


class SaebenchError(Exception):
    """Base class: the message says what went wrong and how to fix it."""


class UnknownNameError(SaebenchError, KeyError):
    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class DuplicateNameError(SaebenchError):
    pass


class ConfigError(SaebenchError, ValueError):
    pass


class PluginError(SaebenchError):
    """A plugin failed to import, register or run one of its hooks; names the plugin and hook."""
