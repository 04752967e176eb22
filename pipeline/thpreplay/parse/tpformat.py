"""Tracepoint `format` files (tracefs events/<system>/<event>/format): fields and print fmt.

Both binary inputs carry these files as text: trace.dat's event-format sections (parse/tracedat.py)
and perf.data's tracing-data section. This module parses one file into its fields (offset, size,
signedness, array or __data_loc) and compiles its `print fmt` into a small program (`Program`) that
the C record renderer (parse/_tracedat.c) runs on each raw record to print the payload as the
kernel's TP_printk would, and as `trace-cmd report` (libtraceevent) prints it for the events
thpreplay reads:

  %d %u %x %lx %llu ... numbers, truncated to the conversion's width as printf would
  %p                    glibc's %p: 0x... or (nil)
  %ps %pS %pF           the address as 0x... (no kallsyms lookup)
  %s                    a string literal, a char[] field, __get_str(), __print_symbolic(),
                        __print_flags(), or `cond ? string : string` of those
Argument expressions are C integer expressions over REC->field, constants, casts, unary and binary
operators and ?: ; an identifier that is not a field (vmemmap_base) is 0, as in libtraceevent.
A print fmt outside this subset is not an error: compile() returns None and the record is printed
as libtraceevent does for a format it cannot parse, `[FAILED TO PARSE] field=value ...`.

Everything here reads untrusted text: sizes are bounded, the expression parser counts its depth.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass, field

MAX_FORMAT_BYTES = 1 << 20
MAX_FIELDS = 256
MAX_DEPTH = 64          # nesting of an argument expression
MAX_CODE = 1 << 16      # words of one event's program
MAX_WIDTH = 256         # printf field width / precision

# Opcodes shared with _tracedat.c (keep in step).
OP_CONST, OP_FIELD, OP_UN, OP_BIN, OP_CAST, OP_SELECT, OP_JZ, OP_JMP = 1, 2, 3, 4, 5, 6, 7, 8
OP_LIT, OP_NUM, OP_SYM, OP_FLAGS, OP_STRFIELD, OP_DATALOC = 9, 10, 11, 12, 13, 14
UN = {"-": 0, "!": 1, "~": 2}
BIN = {"+": 0, "-": 1, "*": 2, "/": 3, "%": 4, "<<": 5, ">>": 6, "&": 7, "|": 8, "^": 9,
       "<": 10, "<=": 11, ">": 12, ">=": 13, "==": 14, "!=": 15, "&&": 16, "||": 17}
PREC = {"||": 1, "&&": 2, "|": 3, "^": 4, "&": 5, "==": 6, "!=": 6, "<": 7, "<=": 7, ">": 7, ">=": 7,
        "<<": 8, ">>": 8, "+": 9, "-": 9, "*": 10, "/": 10, "%": 10}
# number conversions: signed decimal, unsigned decimal, hex, HEX, pointer (glibc %p), octal
CONV_D, CONV_U, CONV_X, CONV_XU, CONV_P, CONV_O = 0, 1, 2, 3, 4, 5
FLAG_LEFT, FLAG_ZERO, FLAG_ALT, FLAG_PLUS, FLAG_SPACE = 1, 2, 4, 8, 16


class FormatError(ValueError):
    """A format file that cannot be read (not one the kernel writes)."""


@dataclass(frozen=True)
class Field:
    name: str
    ctype: str
    offset: int
    size: int
    signed: bool
    is_array: bool = False
    data_loc: bool = False
    is_string: bool = False  # char[] or __data_loc char[]


@dataclass
class EventFormat:
    system: str
    name: str
    id: int
    fields: list[Field]  # common fields first, as the file lists them
    print_fmt: str

    def field(self, name: str) -> Field | None:
        for f in self.fields:
            if f.name == name:
                return f
        return None


_FIELD_RE = re.compile(
    r"^\s*field:(?P<decl>[^;]*);\s*offset:(?P<off>\d+);\s*size:(?P<size>\d+);(?:\s*signed:(?P<signed>\d+);)?")


def parse(text: str, system: str = "") -> EventFormat:
    """One format file. Raises FormatError naming what is wrong."""
    if len(text) > MAX_FORMAT_BYTES:
        raise FormatError("event format file larger than 1 MiB")
    name = None
    eid = None
    fields: list[Field] = []
    print_fmt = ""
    for line in text.split("\n"):
        if line.startswith("name:"):
            name = line[5:].strip()
        elif line.startswith("ID:"):
            try:
                eid = int(line[3:].strip())
            except ValueError:
                raise FormatError(f"event format: ID {line[3:].strip()[:40]!r} is not a number") from None
        elif line.startswith("print fmt:"):
            print_fmt = line[len("print fmt:"):].strip()
        else:
            m = _FIELD_RE.match(line)
            if m:
                if len(fields) >= MAX_FIELDS:
                    raise FormatError(f"event format {name}: more than {MAX_FIELDS} fields")
                fields.append(_field(m))
    if not name or eid is None:
        raise FormatError("event format without name: or ID: line")
    if not 0 <= eid <= 0xFFFF:
        raise FormatError(f"event format {name}: ID {eid} outside 0..65535")
    return EventFormat(system, name, eid, fields, print_fmt)


_NAME_RE = re.compile(r"^name:\s*(\S+)\s*$", re.M)
_ID_RE = re.compile(r"^ID:\s*(\d{1,6})\s*$", re.M)


def name_and_id(text: str) -> tuple[str, int]:
    """The name and ID of a format file, without parsing the rest (a file may carry thousands)."""
    if len(text) > MAX_FORMAT_BYTES:
        raise FormatError("event format file larger than 1 MiB")
    n, i = _NAME_RE.search(text), _ID_RE.search(text)
    if not n or not i:
        raise FormatError("event format without name: or ID: line")
    eid = int(i.group(1))
    if eid > 0xFFFF:
        raise FormatError(f"event format {n.group(1)}: ID {eid} outside 0..65535")
    return n.group(1), eid


def _field(m: re.Match) -> Field:
    decl = m.group("decl").strip()
    off, size = int(m.group("off")), int(m.group("size"))
    if off > 0xFFFF or size > 0xFFFF:
        raise FormatError(f"field {decl[:60]!r}: offset or size past 65535")
    signed = m.group("signed") == "1"
    data_loc = decl.startswith("__data_loc") or decl.startswith("__rel_loc")
    is_array = "[" in decl
    base = re.sub(r"\[[^\]]*\]", "", decl).strip()  # "char comm[16]", "__data_loc char[] comm"
    fname = base.split()[-1].lstrip("*") if base.split() else ""
    ctype = base[: len(base) - len(fname)].strip()
    is_string = is_array and re.search(r"\bchar\b", ctype) is not None
    return Field(fname, ctype, off, size, signed, is_array, data_loc, is_string)


def parse_header_page(text: str) -> dict[str, tuple[int, int]]:
    """header_page: {field: (offset, size)} (timestamp, commit, data...)."""
    out = {}
    for line in text.split("\n"):
        m = re.match(r"^\s*field:\s*(?:[\w ]+?)\s+(\w+);\s*offset:(\d+);\s*size:(\d+);", line)
        if m:
            out[m.group(1)] = (int(m.group(2)), int(m.group(3)))
    return out


# --- print fmt -------------------------------------------------------------------------------------

_TOKEN_RE = re.compile(r"""
    (?P<ws>\s+)
  | (?P<str>"(?:[^"\\]|\\.)*")
  | (?P<num>0[xX][0-9a-fA-F]+[uUlL]*|\d+[uUlL]*)
  | (?P<rec>REC->\w+)
  | (?P<id>[A-Za-z_]\w*)
  | (?P<op><<|>>|<=|>=|==|!=|&&|\|\||->|[-+*/%&|^~!<>?:(){},.\[\]])
""", re.VERBOSE)

_TYPE_WORDS = {"unsigned", "signed", "int", "long", "short", "char", "bool", "_Bool", "void", "struct", "enum",
               "const", "volatile", "gfp_t", "size_t", "ssize_t", "pid_t", "u8", "u16", "u32", "u64", "s8", "s16",
               "s32", "s64", "__u8", "__u16", "__u32", "__u64", "__s8", "__s16", "__s32", "__s64", "uint8_t",
               "uint16_t", "uint32_t", "uint64_t", "int8_t", "int16_t", "int32_t", "int64_t", "phys_addr_t",
               "dma_addr_t", "resource_size_t", "pgoff_t", "loff_t", "sector_t", "isolate_mode_t", "uintptr_t"}


class Unsupported(Exception):
    """A print fmt outside the subset this compiler handles."""


def _tokens(text: str) -> list[tuple[str, str]]:
    out = []
    pos = 0
    while pos < len(text):
        m = _TOKEN_RE.match(text, pos)
        if not m:
            raise Unsupported(f"unexpected character {text[pos]!r}")
        pos = m.end()
        kind = m.lastgroup
        if kind != "ws":
            out.append((kind, m.group()))
        if len(out) > 200_000:
            raise Unsupported("print fmt too long")
    return out


def _unescape(lit: str) -> str:
    body = lit[1:-1]
    return re.sub(r"\\(.)", lambda m: {"n": "\n", "t": "\t", "\\": "\\", '"': '"'}.get(m.group(1), m.group(1)), body)


def _int_literal(text: str) -> int:
    t = text.rstrip("uUlL")
    if t.lower().startswith("0x"):
        return int(t, 16)
    if len(t) > 1 and t.startswith("0"):
        return int(t, 8)
    return int(t)


def _wrap(v: int) -> int:
    v &= (1 << 64) - 1
    return v - (1 << 64) if v >> 63 else v


# Expression nodes are tuples: ("const", v) ("field", Field) ("un", op, a) ("bin", op, a, b)
# ("cast", bits, signed, a) ("cond", c, a, b) ("str", text) ("sym", a, [(v, s)]) ("flags", a, delim, [(v, s)])
# ("getstr", Field) ("strfield", Field)

class _Parser:
    def __init__(self, toks: list[tuple[str, str]], event: EventFormat):
        self.toks, self.i, self.event, self.depth = toks, 0, event, 0

    def peek(self, k: int = 0) -> tuple[str, str]:
        j = self.i + k
        return self.toks[j] if j < len(self.toks) else ("eof", "")

    def take(self, value: str | None = None) -> tuple[str, str]:
        tok = self.peek()
        if value is not None and tok[1] != value:
            raise Unsupported(f"expected {value!r}, got {tok[1]!r}")
        if tok[0] == "eof":
            raise Unsupported("unexpected end of print fmt")
        self.i += 1
        return tok

    def enter(self) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise Unsupported("expression nested too deep")

    def expr(self):
        """conditional expression (no comma operator)"""
        self.enter()
        try:
            cond = self.binary(1)
            if self.peek()[1] == "?":
                self.take("?")
                a = self.expr()
                self.take(":")
                b = self.expr()
                return ("cond", cond, a, b)
            return cond
        finally:
            self.depth -= 1

    def binary(self, min_prec: int):
        left = self.unary()
        while True:
            op = self.peek()[1]
            prec = PREC.get(op) if self.peek()[0] == "op" else None
            if prec is None or prec < min_prec:
                return left
            self.take()
            self.enter()
            try:
                right = self.binary(prec + 1)
            finally:
                self.depth -= 1
            left = ("bin", op, left, right)

    def _cast_ahead(self) -> int:
        """Tokens of a cast '(type words [*...])' at the cursor, 0 if none."""
        if self.peek()[1] != "(":
            return 0
        j, words = 1, []
        while True:
            kind, val = self.peek(j)
            if kind == "id":
                words.append(val)
            elif val != "*":
                break
            j += 1
        if self.peek(j)[1] != ")" or not words:
            return 0
        if not any(w in _TYPE_WORDS or w.endswith("_t") for w in words):
            return 0
        return j + 1

    def unary(self):
        self.enter()
        try:
            kind, val = self.peek()
            if kind == "op" and val in ("-", "!", "~", "+"):
                self.take()
                a = self.unary()
                return a if val == "+" else ("un", val, a)
            n = self._cast_ahead()
            if n:
                words = [v for _, v in self.toks[self.i + 1: self.i + n - 1]]
                self.i += n
                return self._cast(words, self.unary())
            return self.primary()
        finally:
            self.depth -= 1

    @staticmethod
    def _cast(words: list[str], a):
        if "*" in words or "struct" in words or "void" in words:
            return a  # a pointer: 64 bits as they are
        w = [x for x in words if x not in ("const", "volatile")]
        signed = "unsigned" not in w and not any(x.startswith(("u", "__u")) and x[-1].isdigit() for x in w)
        bits = 64
        if "char" in w or w[-1] in ("u8", "s8", "__u8", "__s8", "uint8_t", "int8_t"):
            bits = 8
        elif "short" in w or w[-1] in ("u16", "s16", "__u16", "__s16", "uint16_t", "int16_t"):
            bits = 16
        elif "long" in w or w[-1] in ("u64", "s64", "__u64", "__s64", "size_t", "uint64_t", "int64_t", "uintptr_t"):
            bits = 64
        elif w[-1] in ("bool", "_Bool"):
            return ("un", "!", ("un", "!", a))
        elif "int" in w or w[-1] in ("u32", "s32", "__u32", "__s32", "uint32_t", "int32_t", "gfp_t", "enum"):
            bits = 32
            signed = signed and w[-1] != "gfp_t"
        else:
            return a  # a typedef we do not know: leave the value alone
        return ("cast", bits, signed, a)

    def primary(self):
        kind, val = self.take()
        if kind == "num":
            return ("const", _wrap(_int_literal(val)))
        if kind == "str":
            text = _unescape(val)
            while self.peek()[0] == "str":  # "a" "b" concatenation
                text += _unescape(self.take()[1])
            return ("str", text)
        if kind == "rec":
            f = self.event.field(val[5:])
            if f is None:
                raise Unsupported(f"no field {val[5:]}")
            if f.data_loc:
                raise Unsupported(f"__data_loc field {f.name} used as a number")
            return ("strfield", f) if f.is_string else ("field", f)
        if kind == "id":
            if val == "__print_symbolic":
                return self._table("sym")
            if val == "__print_flags":
                return self._table("flags")
            if val in ("__get_str", "__get_rel_str"):
                self.take("(")
                name = self.take()[1]
                self.take(")")
                f = self.event.field(name)
                if f is None or not f.data_loc:
                    raise Unsupported(f"__get_str({name}): no such __data_loc field")
                return ("getstr", f)
            if self.peek()[1] == "(":
                raise Unsupported(f"function {val}()")
            return ("const", 0)  # a kernel symbol libtraceevent cannot know (vmemmap_base): 0
        if val == "(":
            e = self.expr()
            self.take(")")
            return e
        raise Unsupported(f"unexpected {val!r}")

    def _table(self, kind: str):
        self.take("(")
        value = self.expr()
        delim = None
        if kind == "flags":
            self.take(",")
            d = self.expr()
            if d[0] != "str":
                raise Unsupported("__print_flags delimiter is not a string")
            delim = d[1]
        entries = []
        while self.peek()[1] == ",":
            self.take(",")
            if self.peek()[1] == ")":
                break
            self.take("{")
            v = self.expr()
            self.take(",")
            s = self.expr()
            self.take("}")
            if s[0] != "str":
                continue  # the { 0, NULL } terminator
            entries.append((_const_value(v), s[1]))
            if len(entries) > 4096:
                raise Unsupported("symbol table too long")
        self.take(")")
        return ("sym", value, entries) if kind == "sym" else ("flags", value, delim, entries)


def _const_value(node) -> int:
    """A table entry's value: a constant expression, evaluated here as the C program below would."""
    work = [(node, False)]
    values: list[int] = []
    while work:
        n, done = work.pop()
        k = n[0]
        if k == "const":
            values.append(n[1])
        elif not done:
            work.append((n, True))
            kids = {"un": n[2:3], "bin": n[2:4], "cast": n[3:4], "cond": n[1:4]}.get(k)
            if kids is None:
                raise Unsupported("table value is not a constant")
            for kid in reversed(kids):
                work.append((kid, False))
        elif k == "un":
            values.append(_un(n[1], values.pop()))
        elif k == "bin":
            b, a = values.pop(), values.pop()
            values.append(_bin(n[1], a, b))
        elif k == "cast":
            values.append(_cast_value(n[1], n[2], values.pop()))
        elif k == "cond":
            b, a, c = values.pop(), values.pop(), values.pop()
            values.append(a if c else b)
    return values[0]


def _un(op: str, a: int) -> int:
    return _wrap(-a) if op == "-" else int(not a) if op == "!" else _wrap(~a)


def _bin(op: str, a: int, b: int) -> int:
    ua, ub = a & ((1 << 64) - 1), b & ((1 << 64) - 1)
    if op in ("/", "%"):
        if b == 0 or (a == -(1 << 63) and b == -1):
            return 0
        q = abs(a) // abs(b) * (1 if (a < 0) == (b < 0) else -1)
        return _wrap(q if op == "/" else a - q * b)
    table = {"+": lambda: ua + ub, "-": lambda: ua - ub, "*": lambda: ua * ub, "<<": lambda: ua << (ub & 63),
             ">>": lambda: ua >> (ub & 63), "&": lambda: ua & ub, "|": lambda: ua | ub, "^": lambda: ua ^ ub,
             "<": lambda: int(a < b), "<=": lambda: int(a <= b), ">": lambda: int(a > b), ">=": lambda: int(a >= b),
             "==": lambda: int(a == b), "!=": lambda: int(a != b), "&&": lambda: int(bool(a) and bool(b)),
             "||": lambda: int(bool(a) or bool(b))}
    return _wrap(table[op]())


def _cast_value(bits: int, signed: bool, a: int) -> int:
    if bits >= 64:
        return a
    v = a & ((1 << bits) - 1)
    if signed and v >> (bits - 1):
        v -= 1 << bits
    return v


# --- compile to the renderer's program -------------------------------------------------------------

_CONV_RE = re.compile(r"%(?P<flags>[-+ #0]*)(?P<width>\d*)(?:\.(?P<prec>\d+))?(?P<len>hh|h|ll|l|z|L|j|t)?"
                      r"(?P<conv>[diouxXcsp%])(?P<ext>[sSFfBKR]?)")


@dataclass
class Program:
    """One event's compiled print fmt: int64 words, tables and strings for _tracedat.c."""
    code: list[int] = field(default_factory=list)
    tables: list[int] = field(default_factory=list)
    strings: list[bytes] = field(default_factory=list)

    def sid(self, text: str | bytes) -> int:
        b = text.encode("utf-8", "replace") if isinstance(text, str) else text
        self.strings.append(b)
        return len(self.strings) - 1

    def pack(self) -> tuple[bytes, bytes, list[bytes]]:
        return (struct.pack(f"<{len(self.code)}q", *self.code), struct.pack(f"<{len(self.tables)}q", *self.tables),
                self.strings)


def _emit_num(prog: Program, node) -> None:
    """RPN of a numeric node, iteratively (the parser bounded its depth already)."""
    work = [(node, False)]
    while work:
        n, done = work.pop()
        k = n[0]
        if k == "const":
            prog.code += [OP_CONST, n[1]]
            continue
        if k == "field":
            f = n[1]
            if f.size not in (1, 2, 4, 8) or f.is_array:
                raise Unsupported(f"field {f.name}: {f.size}-byte value or array used as a number")
            prog.code += [OP_FIELD, f.offset, f.size, int(f.signed)]
            continue
        if k not in ("un", "bin", "cast", "cond"):
            raise Unsupported(f"{k} used as a number")
        if not done:
            work.append((n, True))
            kids = {"un": n[2:3], "bin": n[2:4], "cast": n[3:4], "cond": n[1:4]}[k]
            for kid in reversed(kids):
                work.append((kid, False))
        elif k == "un":
            prog.code += [OP_UN, UN[n[1]]]
        elif k == "bin":
            prog.code += [OP_BIN, BIN[n[1]]]
        elif k == "cast":
            prog.code += [OP_CAST, n[1], int(n[2])]
        else:
            prog.code += [OP_SELECT]
        if len(prog.code) > MAX_CODE:
            raise Unsupported("print fmt program too long")


def _emit_str(prog: Program, node, flags: int, width: int, prec: int, top: bool = True) -> None:
    k = node[0]
    if k == "str":
        text = node[1] if prec < 0 else node[1][:prec]
        prog.code += [OP_LIT, prog.sid(text), flags, width]
    elif k == "strfield":
        f = node[1]
        prog.code += [OP_STRFIELD, f.offset, f.size, flags, width]
    elif k == "getstr":
        f = node[1]
        if f.size != 4:
            raise Unsupported(f"__data_loc field {f.name} of {f.size} bytes (the kernel's are 4)")
        prog.code += [OP_DATALOC, f.offset, f.size, flags, width]
    elif k in ("sym", "flags"):
        _emit_num(prog, node[1])
        entries = node[-1]
        tab = len(prog.tables)
        prog.tables.append(len(entries))
        for v, s in entries:
            prog.tables += [v, prog.sid(s)]
        if k == "sym":
            prog.code += [OP_SYM, tab, flags, width]
        else:
            prog.code += [OP_FLAGS, tab, prog.sid(node[2]), flags, width]
    elif k == "cond" and top:
        # c ? a : b  ->  c JZ(else) a JMP(end) else: b end:
        _emit_num(prog, node[1])
        prog.code += [OP_JZ, 0]
        jz = len(prog.code) - 1
        _emit_str(prog, node[2], flags, width, prec, top=False)
        prog.code += [OP_JMP, 0]
        jmp = len(prog.code) - 1
        prog.code[jz] = len(prog.code)
        _emit_str(prog, node[3], flags, width, prec, top=False)
        prog.code[jmp] = len(prog.code)
    else:
        raise Unsupported(f"{k} printed with %s")


def compile_event(event: EventFormat) -> Program | None:
    """The program printing this event's payload, or None when its print fmt is outside the subset."""
    try:
        return _compile(event)
    except (Unsupported, RecursionError, ValueError, OverflowError, IndexError):
        return None


def _split_args(toks: list[tuple[str, str]]) -> list[list[tuple[str, str]]]:
    args, cur, depth = [], [], 0
    for t in toks:
        if t[0] == "op" and t[1] in "({[":
            depth += 1
        elif t[0] == "op" and t[1] in ")}]":
            depth -= 1
            if depth < 0:
                raise Unsupported("unbalanced brackets")
        if depth == 0 and t == ("op", ","):
            args.append(cur)
            cur = []
        else:
            cur.append(t)
    if depth:
        raise Unsupported("unbalanced brackets")
    args.append(cur)
    return args


def _compile(event: EventFormat) -> Program:
    toks = _tokens(event.print_fmt)
    if not toks or toks[0][0] != "str":
        raise Unsupported("print fmt does not start with a string")
    fmt = ""
    i = 0
    while i < len(toks) and toks[i][0] == "str":
        fmt += _unescape(toks[i][1])
        i += 1
    rest = toks[i:]
    args: list[list[tuple[str, str]]] = []
    if rest:
        if rest[0] != ("op", ","):
            raise Unsupported("junk after the format string")
        args = _split_args(rest[1:])
    prog = Program()
    pos = 0
    argi = 0
    literal = ""
    for m in _CONV_RE.finditer(fmt):
        literal += fmt[pos:m.start()]
        pos = m.end()
        conv = m.group("conv")
        if conv == "%":
            literal += "%" + m.group("ext")
            continue
        if literal:
            prog.code += [OP_LIT, prog.sid(literal), 0, 0]
            literal = ""
        if argi >= len(args):
            raise Unsupported("fewer arguments than conversions")
        p = _Parser(args[argi], event)
        node = p.expr()
        if p.peek()[0] != "eof":
            raise Unsupported("trailing tokens in an argument")
        argi += 1
        flags = 0
        for ch in m.group("flags"):
            flags |= {"-": FLAG_LEFT, "0": FLAG_ZERO, "#": FLAG_ALT, "+": FLAG_PLUS, " ": FLAG_SPACE}[ch]
        width = int(m.group("width") or 0)
        prec = int(m.group("prec")) if m.group("prec") is not None else -1
        if width > MAX_WIDTH or prec > MAX_WIDTH:
            raise Unsupported("field width too large")
        ext = m.group("ext")
        length = m.group("len") or ""
        if conv == "s":
            if ext:
                literal += ext  # "%ss": a plain 's' after the string
            _emit_str(prog, node, flags, width, prec)
            continue
        if conv == "c":
            raise Unsupported("%c")
        if conv == "p":
            if ext in ("s", "S", "F", "f", "B"):
                conv_code = CONV_X  # symbol lookups print the address (no kallsyms)
                flags |= FLAG_ALT
                length = "ll"
            elif ext in ("", "K"):
                conv_code = CONV_P
                length = "ll"
            else:
                raise Unsupported(f"%p{ext}")
        else:
            if ext:
                literal += ext
            conv_code = {"d": CONV_D, "i": CONV_D, "u": CONV_U, "x": CONV_X, "X": CONV_XU, "o": CONV_O}[conv]
        _emit_num(prog, node)
        bits = {"hh": 8, "h": 16, "": 32}.get(length, 64)
        if bits < 64:
            prog.code += [OP_CAST, bits, int(conv_code == CONV_D)]
        prog.code += [OP_NUM, conv_code, flags, width, prec]
    literal += fmt[pos:]
    if "%" in literal.replace("%%", ""):
        raise Unsupported("a conversion this compiler does not know")
    if literal:
        prog.code += [OP_LIT, prog.sid(literal), 0, 0]
    if argi != len(args) and not (argi == 0 and args == [[]]):
        raise Unsupported("more arguments than conversions")
    if len(prog.code) > MAX_CODE or len(prog.strings) > MAX_CODE:
        raise Unsupported("print fmt program too long")
    return prog


def failed_program(event: EventFormat) -> Program:
    """libtraceevent's print for a format it cannot parse: `[FAILED TO PARSE] name=value ...` over the
    event's own (non-common) fields: numbers in decimal, strings as they are, arrays left out."""
    prog = Program()
    prog.code += [OP_LIT, prog.sid("[FAILED TO PARSE]"), 0, 0]
    for f in event.fields:
        if f.name.startswith("common_"):
            continue
        if f.is_string and (not f.data_loc or f.size == 4):
            prog.code += [OP_LIT, prog.sid(f" {f.name}="), 0, 0]
            prog.code += [OP_DATALOC if f.data_loc else OP_STRFIELD, f.offset, f.size, 0, 0]
        elif not f.is_array and f.size in (1, 2, 4, 8):
            prog.code += [OP_LIT, prog.sid(f" {f.name}="), 0, 0]
            prog.code += [OP_FIELD, f.offset, f.size, int(f.signed), OP_NUM, CONV_D if f.signed else CONV_U, 0, 0, -1]
    return prog
