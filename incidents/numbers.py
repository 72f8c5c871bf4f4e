"""Whole numbers as people type them: in a query string, a URL, a form or a CSV cell."""

import sys

# PostgreSQL's bigint, the type of every id: a larger number names no record.
MAX_ID = 2**63 - 1


def is_whole_number(text: str) -> bool:
    """Only the digits 0-9, no more of them than `int()` reads (4,300 unless Python is told
    otherwise). `str.isdigit()` also takes "²" and other digits that `int()` refuses, and `int()`
    refuses a longer run of digits (a paste gone wrong): either turned a typo into a 500 wherever
    it decided whether `int()` could read a value."""
    most_digits = sys.get_int_max_str_digits()  # 0: no limit
    return text.isascii() and text.isdigit() and (not most_digits or len(text) <= most_digits)
