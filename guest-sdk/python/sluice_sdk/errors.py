"""`PluginError`: raise it to fail the whole batch with a message (the batch becomes a dead
letter carrying that message)."""


class PluginError(Exception):
    """Fails the batch with `message`; `index` names the offending point or window.

    Raise it from `setup`, `keep`, `transform`, `evaluate` or a batch method. An error raised
    by the per-point `transform` without an index gets the point's index.
    """

    def __init__(self, message, index=None):
        super().__init__(message)
        self.message = str(message)
        self.index = None if index is None else int(index)

    def __repr__(self):
        if self.index is None:
            return f"PluginError({self.message!r})"
        return f"PluginError({self.message!r}, index={self.index})"

    def __str__(self):
        if self.index is None:
            return self.message
        return f"{self.message} (item {self.index})"

    def __eq__(self, other):
        return (
            isinstance(other, PluginError)
            and self.message == other.message
            and self.index == other.index
        )

    __hash__ = Exception.__hash__
