"""A table's declared Arrow schema for polars' Parquet writer, through the Arrow C data interface
(arrow.apache.org/docs/format/CDataInterface.html) instead of a pyarrow Schema.

polars writes the Parquet parts; the schema it is given sets each column's nullability (REQUIRED or
OPTIONAL in the file), the large string and list types and the schema id in the file's Arrow schema.
Building that schema with pyarrow meant importing pyarrow, 0.05 s of every simulate's start, only to
describe a schema. Here the same C structures are built with ctypes: the Parquet file is byte for byte
the one the pyarrow schema gave (tests/test_schemas.py compares them).
"""

from __future__ import annotations

import ctypes
import itertools
import struct

# Arrow format strings of the schemas' types (the C data interface's "Data types" table)
FORMATS = {"bool": "b", "int16": "s", "int32": "i", "int64": "l", "uint64": "L", "float64": "g",
           "string": "U", "list<int64>": "+L", "list<int32>": "+L"}
_ITEM = {"list<int64>": "l", "list<int32>": "i"}   # a large list's child, named "item" and nullable
_NULLABLE = 2    # ARROW_FLAG_NULLABLE


class _ArrowSchema(ctypes.Structure):
    pass


_Release = ctypes.CFUNCTYPE(None, ctypes.POINTER(_ArrowSchema))
_ArrowSchema._fields_ = [
    ("format", ctypes.c_char_p),
    ("name", ctypes.c_char_p),
    ("metadata", ctypes.c_void_p),
    ("flags", ctypes.c_int64),
    ("n_children", ctypes.c_int64),
    ("children", ctypes.POINTER(ctypes.POINTER(_ArrowSchema))),
    ("dictionary", ctypes.POINTER(_ArrowSchema)),
    ("release", _Release),
    ("private_data", ctypes.c_void_p),
]

# What an exported schema's structures point at, kept until the consumer releases it (its private_data
# is the key: the consumer may have moved the structure, so its address is not)
_alive: dict[int, list] = {}
_keys = itertools.count(1)


def _release_node(p) -> None:
    node = p[0]
    for i in range(node.n_children):
        _release_node(node.children[i])
    node.release = _Release()   # NULL: released, as the interface requires


@_Release
def _release(p) -> None:
    key = p[0].private_data
    _release_node(p)
    _alive.pop(key, None)


def _metadata(pairs: dict[str, str]) -> bytes:
    """The interface's metadata encoding: int32 count, then each key and value as int32 length + bytes."""
    out = [struct.pack("=i", len(pairs))]
    for k, v in pairs.items():
        kb, vb = k.encode(), v.encode()
        out += [struct.pack("=i", len(kb)), kb, struct.pack("=i", len(vb)), vb]
    return b"".join(out)


class Schema:
    """columns: (name, schema type, nullable) in order; metadata: the schema's key/value pairs. An object
    with `__arrow_c_schema__` (the Arrow PyCapsule interface), as polars' `arrow_schema=` takes."""

    def __init__(self, columns: list[tuple[str, str, bool]], metadata: dict[str, str]):
        self.columns = columns
        self.metadata = metadata

    def __arrow_c_schema__(self) -> object:
        keep: list = []

        def node(fmt: str, name: str, flags: int, children: list) -> _ArrowSchema:
            s = _ArrowSchema()
            s.format, s.name, s.flags = fmt.encode(), name.encode(), flags
            keep.extend((s.format, s.name))   # the bytes the char pointers point into
            if children:
                arr = (ctypes.POINTER(_ArrowSchema) * len(children))(*(ctypes.pointer(c) for c in children))
                keep.append(arr)
                s.n_children, s.children = len(children), arr
            s.release = _release_child
            keep.append(s)
            return s

        fields = []
        for name, kind, nullable in self.columns:
            kids = [node(_ITEM[kind], "item", _NULLABLE, [])] if kind in _ITEM else []
            fields.append(node(FORMATS[kind], name, _NULLABLE if nullable else 0, kids))
        top = node("+s", "", 0, fields)
        meta = ctypes.create_string_buffer(_metadata(self.metadata))
        keep.append(meta)
        top.metadata = ctypes.addressof(meta)
        key = next(_keys)
        top.private_data, top.release = key, _release
        _alive[key] = keep
        return _new_capsule(ctypes.addressof(top), _CAPSULE_NAME, _destructor)


@_Release
def _release_child(p) -> None:
    # a child is released with its parent (_release_node); a consumer that releases one alone only marks it
    p[0].release = _Release()


_CAPSULE_NAME = b"arrow_schema"   # the capsule keeps a pointer to its name: a module constant
_new_capsule = ctypes.pythonapi.PyCapsule_New
_new_capsule.restype = ctypes.py_object
_new_capsule.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_void_p]
_capsule_pointer = ctypes.pythonapi.PyCapsule_GetPointer
_capsule_pointer.restype = ctypes.c_void_p
_capsule_pointer.argtypes = [ctypes.c_void_p, ctypes.c_char_p]   # the capsule by address: it is being freed


@ctypes.CFUNCTYPE(None, ctypes.c_void_p)
def _destructor(capsule) -> None:
    # polars reads the schema where it is and leaves it to the capsule, as pyarrow's capsules expect; a
    # consumer that moved it out has set its release to NULL
    p = ctypes.cast(_capsule_pointer(capsule, _CAPSULE_NAME), ctypes.POINTER(_ArrowSchema))
    if p[0].release:
        p[0].release(p)
