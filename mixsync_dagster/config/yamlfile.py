"""Reading syncs.yaml without trusting it: a bounded size, UTF-8, no duplicate keys, and nesting
and alias expansion bounded while the document is composed, before anything is expanded.

PyYAML composes a document into a graph of nodes in which an alias is a second reference to
an already composed node, so an alias bomb (`b: [*a, *a, ...]`, ten levels deep) stays a few
hundred nodes until something walks it as a tree. `BoundedLoader` keeps, for every composed
node, the size and height the node would have as a tree, and stops as soon as either passes its
limit: a billion laughs fails in milliseconds, and a 3,000-deep file fails before the composer's
own recursion runs out.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from yaml.events import AliasEvent
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

MAX_FILE_BYTES = 1 << 20
"""A syncs.yaml of a thousand syncs is well under 1 MiB."""
MAX_DEPTH = 64
"""Nesting levels, aliases expanded (the deepest real config is about 8)."""
MAX_NODES = 100_000
"""Values (scalars, lists, mappings) in the document with every alias expanded."""

_MERGE_TAG = "tag:yaml.org,2002:merge"


class DocumentError(Exception):
    """The file cannot be read as a document at all: (message, fix)."""

    def __init__(self, message: str, fix: str):
        super().__init__(message)
        self.message = message
        self.fix = fix


@dataclass(frozen=True)
class DuplicateKey:
    """A key written twice in one mapping (YAML itself would silently keep the last one)."""

    loc: tuple[str | int, ...]
    key: str
    lines: tuple[int, int]


class _Limit(yaml.YAMLError):
    def __init__(self, message: str, fix: str):
        super().__init__(message)
        self.message = message
        self.fix = fix


class BoundedLoader(yaml.SafeLoader):
    """A SafeLoader that bounds depth and expanded size while composing, and notes duplicate
    keys (all of them, so every one is reported at once)."""

    def __init__(self, stream: str):
        super().__init__(stream)
        self._path: list[str | int] = []
        self._shape: dict[int, tuple[int, int]] = {}
        """id(node) → (size, height) as a tree; absent while the node is being composed."""
        self._keep: list[Node] = []  # keeps composed nodes alive, so their ids stay unique
        self.duplicates: list[DuplicateKey] = []

    def compose_node(self, parent: Node | None, index: Any) -> Node:
        if len(self._path) >= MAX_DEPTH:
            raise _Limit(
                f"nesting deeper than {MAX_DEPTH} levels (line {self._line()})",
                "flatten the document; a syncs.yaml needs fewer than 10 levels",
            )
        if self.check_event(AliasEvent):
            anchor = self.peek_event().anchor
            target = self.anchors.get(anchor)
            if target is not None and id(target) not in self._shape:
                raise _Limit(
                    f"the alias *{anchor} (line {self._line()}) refers to a value that contains "
                    "it, which would never end",
                    "refer to an anchor defined before and outside the value",
                )
        step: str | int | None = None
        if isinstance(index, ScalarNode):
            step = index.value
        elif isinstance(index, int) and not isinstance(index, bool):
            step = index
        if step is not None:
            self._path.append(step)
        try:
            node = super().compose_node(parent, index)
            assert node is not None  # only an empty document composes to None, not a node
            if id(node) not in self._shape:  # an alias returns a node measured already
                self._measure(node)
        finally:
            if step is not None:
                self._path.pop()
        return node

    def _line(self) -> int:
        return int(self.peek_event().start_mark.line) + 1

    def _measure(self, node: Node) -> None:
        children: list[Node] = []
        if isinstance(node, SequenceNode):
            children = list(node.value)
        elif isinstance(node, MappingNode):
            children = [n for pair in node.value for n in pair]
            self._note_duplicates(node)
        size, height = 1, 1
        for child in children:
            s, h = self._shape[id(child)]
            size, height = size + s, max(height, h + 1)
        if size > MAX_NODES:
            raise _Limit(
                f"the document expands to more than {MAX_NODES:,} values (aliases expanded), "
                f"at line {node.start_mark.line + 1}",
                "remove the aliases that repeat large values",
            )
        if height > MAX_DEPTH:
            raise _Limit(
                f"nesting deeper than {MAX_DEPTH} levels once aliases are expanded "
                f"(line {node.start_mark.line + 1})",
                "flatten the document; a syncs.yaml needs fewer than 10 levels",
            )
        self._shape[id(node)] = (size, height)
        self._keep.append(node)

    def _note_duplicates(self, node: MappingNode) -> None:
        seen: dict[tuple[str, str], int] = {}
        for key, _ in node.value:
            if not isinstance(key, ScalarNode) or key.tag == _MERGE_TAG:
                continue  # merge keys (`<<: *base`) may repeat and override by design
            line = int(key.start_mark.line) + 1
            first = seen.get((key.tag, key.value))
            if first is None:
                seen[(key.tag, key.value)] = line
            else:
                self.duplicates.append(
                    DuplicateKey(tuple(self._path), str(key.value), (first, line))
                )


def read_text(path: Path) -> str:
    """The file's text: a regular file, at most MAX_FILE_BYTES, UTF-8. Raises DocumentError."""
    try:
        # O_NONBLOCK: a FIFO given as the config must not hang the command.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except FileNotFoundError:
        raise DocumentError("file not found", "") from None
    except IsADirectoryError:
        raise DocumentError(
            "is a folder, not a file",
            f"name the file inside it, e.g. -c {os.path.join(path, 'syncs.yaml')}",
        ) from None
    except PermissionError:
        raise DocumentError("cannot be read (permission denied)", "make it readable") from None
    except OSError as e:
        raise DocumentError(f"cannot be opened: {e.strerror}", "check the path") from None
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise DocumentError(
                "is a folder, not a file",
                f"name the file inside it, e.g. -c {os.path.join(path, 'syncs.yaml')}",
            )
        if not stat.S_ISREG(st.st_mode):
            raise DocumentError("is not a regular file", "point -c at a syncs.yaml file")
    except BaseException:
        os.close(fd)
        raise
    with os.fdopen(fd, "rb") as f:
        data = f.read(MAX_FILE_BYTES + 1)
    if len(data) > MAX_FILE_BYTES:
        raise DocumentError(
            f"is larger than {MAX_FILE_BYTES:,} bytes", "a syncs.yaml is a few kilobytes; split it"
        )
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        column = e.start - (data.rfind(b"\n", 0, e.start) + 1) + 1
        raise DocumentError(
            f"is not UTF-8 text: byte 0x{data[e.start]:02X} at line {line}, column {column}",
            "save the file as UTF-8",
        ) from None


def parse(text: str) -> tuple[Any, list[DuplicateKey]]:
    """The document's data and its duplicate keys. Raises DocumentError."""
    try:
        loader = BoundedLoader(text)
    except yaml.YAMLError as e:  # the reader refuses a character YAML does not allow
        raise DocumentError(_one_line(e), "remove the character or quote it as an escape") from None
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    except _Limit as e:
        raise DocumentError(e.message, e.fix) from None
    except yaml.MarkedYAMLError as e:
        raise DocumentError(_describe(e), "correct the syntax") from None
    except yaml.YAMLError as e:
        raise DocumentError(_one_line(e), "remove the character or quote it as an escape") from None
    finally:
        loader.dispose()
    return data, loader.duplicates


def _one_line(e: yaml.YAMLError) -> str:
    text = str(e).split("\n", 1)[0]
    return f"not valid YAML: {text}"


def _describe(e: yaml.MarkedYAMLError) -> str:
    """One line: what and where, without quoting the file (it may hold a password)."""
    mark = e.problem_mark or e.context_mark
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
    what = " ".join(x for x in (e.context, e.problem) if x)
    return f"not valid YAML{where}: {what or 'syntax error'}"
