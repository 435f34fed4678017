"""The one kind of failure the command line turns into a message instead of a traceback.

:class:`UserError` is raised wherever tvlars meets input or files it cannot use: a flag or
TOML value of the wrong type, a run folder holding another run, a damaged checkpoint, a
folder that is a file. Its message is one paragraph naming the problem (the flag, key or
file) and the way out. ``tvlars`` prints it and exits with :data:`EXIT_USAGE`; a library
caller gets an exception it can catch (a ``ValueError``, as for any bad argument).
"""

from __future__ import annotations

#: Exit status of a command refused for bad input (argparse's own status for bad flags).
EXIT_USAGE = 2


class UserError(ValueError):
    """Input or files tvlars cannot use; the message says what is wrong and what to do."""
