"""The item pipeline: read ``map.input``, then json_path, filter, sort_by, distinct,
offset, max_items and ids, giving the frozen list of work items."""

from __future__ import annotations

from .filter import FilterSyntaxError, compile_filter, field_getter
from .input import InputText, parse_input, parse_input_text, read_input, read_input_text
from .pipeline import Item, describe_value, iter_ids, iter_selected, select_items
from .sort import SortSyntaxError, compile_sort
from .source import Source, input_digest, open_source

__all__ = [
    "FilterSyntaxError",
    "InputText",
    "Item",
    "SortSyntaxError",
    "Source",
    "compile_filter",
    "compile_sort",
    "describe_value",
    "field_getter",
    "input_digest",
    "iter_ids",
    "iter_selected",
    "open_source",
    "parse_input",
    "parse_input_text",
    "read_input",
    "read_input_text",
    "select_items",
]
