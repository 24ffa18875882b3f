"""Answers printed as JSON for people and scripts: every field, amounts as numbers.

The proto3 JSON mapping leaves out fields at their default value, so a decline printed
``{"response_code": "51"}`` without ``"approved": false``, and it writes 64-bit integers as
strings (``"amount_minor": "250000"``) for JavaScript's sake. A shell script piping into
``jq`` wants neither: this keeps the defaults and turns 64-bit integers back into numbers,
walking the message's own descriptor so a string field that happens to hold digits stays text.
"""

from __future__ import annotations

import inspect
from typing import Any

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.json_format import MessageToDict
from google.protobuf.message import Message

_INT64 = {
    FieldDescriptor.TYPE_INT64,
    FieldDescriptor.TYPE_UINT64,
    FieldDescriptor.TYPE_SINT64,
    FieldDescriptor.TYPE_FIXED64,
    FieldDescriptor.TYPE_SFIXED64,
}
_WELL_KNOWN = {"google.protobuf.Timestamp", "google.protobuf.Duration"}  # strings in JSON

# protobuf >= 5.26 renamed including_default_value_fields (and dropped it in 6.x)
_DEFAULTS_FLAG = (
    "always_print_fields_with_no_presence"
    if "always_print_fields_with_no_presence" in inspect.signature(MessageToDict).parameters
    else "including_default_value_fields"
)


def message_doc(message: Message) -> dict[str, Any]:
    """``message`` as a JSON-ready dict: proto field names, defaults kept, int64 as int."""
    flags: dict[str, Any] = {_DEFAULTS_FLAG: True}
    doc: dict[str, Any] = MessageToDict(message, preserving_proto_field_name=True, **flags)
    _numbers(doc, message.DESCRIPTOR)
    return doc


def _numbers(doc: dict[str, Any], descriptor: Any) -> None:  # upb's or the Python Descriptor
    for field in descriptor.fields:
        value = doc.get(field.name)
        if value is None:
            continue
        if field.type in _INT64:
            if isinstance(value, list):
                doc[field.name] = [int(v) for v in value]
            else:
                doc[field.name] = int(value)
        elif field.message_type is not None and field.message_type.full_name not in _WELL_KNOWN:
            if field.message_type.GetOptions().map_entry:
                continue  # no map of messages or int64 in our protos; left as printed
            for item in value if isinstance(value, list) else [value]:
                if isinstance(item, dict):
                    _numbers(item, field.message_type)
