"""The one exception type the CLI turns into a clean message instead of a traceback."""


class UserError(Exception):
    """Bad input, bad config, unreachable endpoint, missing key: something the user can fix.

    The message must name what to fix: the file, the line and the field where there is one.
    """

    def __init__(self, message: str, *, exit_code: int = 2) -> None:
        super().__init__(message)
        self.exit_code = exit_code
