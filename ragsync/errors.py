"""The error every start-up problem shares, so the CLI can report any of them the same way."""


class SetupError(Exception):
    """Configuration or environment that keeps a component from starting; the message says what to change."""


class Refused(Exception):
    """A well-formed request that cannot be done as asked (a prune of a run that holds nothing, say): the message
    says why and what to do instead."""
