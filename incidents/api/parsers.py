"""The API's request body parsers: DRF's, with JSON refusing numbers no field can hold, arrays or
objects nested deeper than Python's parser can follow, objects naming a key twice and lone surrogates."""

import codecs
import math
import re

from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser, get_encoding
from rest_framework.utils import json


def _finite(text: str) -> float:
    """A JSON number with a fraction or an exponent, refused when Python reads it as infinity
    (`1e400`): DRF's id fields (`"parent": 1e400`) pass it to int(), whose OverflowError no field
    catches (a 500 on every write that names a record by id)."""
    number = float(text)
    if not math.isfinite(number):
        raise ValueError(f"{text} is beyond any number a field holds")
    return number


# Half of a UTF-16 pair, which JSON may escape (`"\\ud800"`) and Python's parser reads into a string
# when its other half is missing: no character, and no UTF-8 encodes it.
_LONE_SURROGATE = re.compile(r"[\ud800-\udfff]")


def _refuse_lone_surrogates(name: str, value) -> None:
    """Refuse a string holding a lone surrogate, in `value` or any array in it, naming `name`. A
    choice field echoed it in its error ("is not a valid choice"), which the renderer cannot
    encode: a 500. Objects inside are left to their own `_object`, so each string is read once."""
    waiting = [value]
    while waiting:
        item = waiting.pop()
        if type(item) is str:
            if _LONE_SURROGATE.search(item):
                raise ValueError(f"{name} holds a lone surrogate (half of a UTF-16 pair), which is no character.")
        elif type(item) is list:
            waiting.extend(item)


def _object(pairs: list[tuple[str, object]]) -> dict:
    """A JSON object as a dict, refusing a key named twice (`{"name": "A", "name": "B"}`), which
    Python's parser settled by keeping the last, whatever the sender meant (RFC 8259: "unpredictable"),
    and lone surrogates in its keys and values: both in the one pass that builds it."""
    data = {}
    for key, value in pairs:
        if _LONE_SURROGATE.search(key):
            raise ValueError("A key holds a lone surrogate (half of a UTF-16 pair), which is no character.")
        if key in data:
            raise ValueError(f'"{key}" is named twice in one object; name it once.')
        _refuse_lone_surrogates(f'"{key}"', value)
        data[key] = value
    return data


class FiniteJSONParser(JSONParser):
    """DRF's JSONParser (NaN and Infinity refused as it does), also refusing a number too large for a
    float: a 400 naming it, for every field of every write at once; and a body nested past the
    interpreter's recursion limit (`[[[[…` a few thousand deep, a few kilobytes), whose
    RecursionError was a 500 on every write, anonymous ones included; an object naming a key twice,
    and a lone surrogate in any string (`_object`), each a 400 naming the key."""

    def parse(self, stream, media_type=None, parser_context=None):
        # As DRF's own parse, its checked encoding (text codecs only) included.
        encoding = get_encoding(parser_context or {})
        try:
            decoded_stream = codecs.getreader(encoding)(stream)
            parse_constant = json.strict_constant if self.strict else None
            data = json.load(
                decoded_stream, parse_constant=parse_constant, parse_float=_finite, object_pairs_hook=_object
            )
            if type(data) is not dict:
                _refuse_lone_surrogates("The body", data)
            return data
        except ValueError as exc:
            raise ParseError(f"JSON parse error - {exc}") from None
        except RecursionError:
            raise ParseError("JSON parse error - arrays and objects nested too deeply.") from None
