"""The project's error types: what a user got wrong, as opposed to what stverify got wrong.

``InputError`` (a ``ValueError``) is raised at the boundaries (model and data loading, labels,
threats, configs) with a one-line message naming the file or field and what was expected; the
CLI prints it and exits with code 2.  Any other exception escaping the library is a bug.
"""


class InputError(ValueError):
    """Bad user input: a file, field or value that is not what stverify expects."""
