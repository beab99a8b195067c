"""The one exception type the pipeline raises for bad input, config or data.

Messages say what is wrong, where (file, sample, config key, stage) and what to do.
The CLI turns it into a one-paragraph message and exit status 2, never a traceback.
"""


class UniegoError(Exception):
    """A user-facing error: bad config, missing or malformed data, incomplete cache."""

    def __init__(self, message: str, *, stage: str | None = None):
        self.stage = stage
        super().__init__(f"[{stage}] {message}" if stage else message)
