"""The item pipeline: read ``map.input``, then json_path, filter, sort_by, distinct,
offset, max_items and ids, giving the frozen list of work items."""

from __future__ import annotations

from .filter import FilterSyntaxError, compile_filter, field_getter
from .input import parse_input_text, read_input
from .pipeline import Item, describe_value, select_items
from .sort import SortSyntaxError, compile_sort

__all__ = [
    "FilterSyntaxError",
    "Item",
    "SortSyntaxError",
    "compile_filter",
    "compile_sort",
    "describe_value",
    "field_getter",
    "parse_input_text",
    "read_input",
    "select_items",
]
