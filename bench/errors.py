"""The one exception type the command line turns into a single line and a non-zero exit."""


class BenchError(Exception):
    """Bad input or a missing resource: the message says what was wrong and what is accepted.

    Raised anywhere in the library; `bench.cli` prints `bench: error: <message>` and exits 2,
    never a traceback. Everything else is a bug and keeps its traceback.
    """
