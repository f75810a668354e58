"""The error every start-up problem shares, so the CLI can report any of them the same way."""


class SetupError(Exception):
    """Configuration or environment that keeps a component from starting; the message says what to change."""
