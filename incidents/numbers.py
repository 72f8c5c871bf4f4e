"""Whole numbers as people type them: in a query string, a URL, a form or a CSV cell."""

# PostgreSQL's bigint, the type of every id: a larger number names no record.
MAX_ID = 2**63 - 1


def is_whole_number(text: str) -> bool:
    """Only the digits 0-9. `str.isdigit()` also takes "²" and other digits that `int()` refuses,
    which turned a typo into a 500 wherever it decided whether `int()` could read a value."""
    return text.isascii() and text.isdigit()
