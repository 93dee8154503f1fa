"""One exception type for every user-facing failure (bad config, path, file, checkpoint).

Top-level scripts catch it and print its one-line message, so users never see a traceback
for a mistake in their own input.
"""
import difflib


class PtsemsegError(Exception):
    """A problem with user input, reported as a single line."""


def closest(name, choices, n=3):
    """Return a ' (closest: a, b)' hint for a misspelled name, or '' when nothing is close."""
    matches = difflib.get_close_matches(str(name), [str(c) for c in choices], n=n, cutoff=0.5)
    return f" (closest: {', '.join(matches)})" if matches else ""
