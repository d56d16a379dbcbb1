"""A small validator for the subset of Mermaid the renderers produce.

It parses the text back, line by line, and fails on anything a Mermaid parser would reject or
render wrongly in that subset: an unknown statement, a participant or node used before it is
declared, a malformed arrow, a raw ``;``/``#``/``"`` inside text (Mermaid reads ``;`` as a
statement separator and ``#...;`` as an entity), an undefined class, a classDef without a fill.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_ENTITY = re.compile(r"#(?:\d+|[a-z]+);")
_ID = r"[A-Za-z][A-Za-z0-9_]*"
_SEQ_ARROWS = ("->>", "-->>", "->", "-->", "-x", "--x", "-)", "--)")
_SEQ_MESSAGE = re.compile(rf"^({_ID})\s*(-->>|->>|-->|->|--x|-x|--\)|-\))\s*({_ID})\s*:\s*(.+)$")
_SEQ_NOTE = re.compile(rf"^Note (over|left of|right of) ({_ID})(?:\s*,\s*({_ID}))?\s*:\s*(.+)$")
_SEQ_PARTICIPANT = re.compile(rf"^(participant|actor) ({_ID})(?: as (.+))?$")
_FC_NODE = re.compile(rf'^({_ID})(\(\[|\[|\(|\{{)"([^"]*)"(\]\)|\]|\)|\}})(?::::({_ID}))?$')
_FC_EDGE = re.compile(rf"^({_ID})\s*(-->|-\.->|==>|---)\s*({_ID})$")
_FC_CLASSDEF = re.compile(rf"^classDef ({_ID}) (.+)$")
_FC_CLASS = re.compile(rf"^class ({_ID}(?:,{_ID})*) ({_ID})$")


class MermaidError(AssertionError):
    pass


def _check_text(text: str, where: str) -> None:
    stripped = _ENTITY.sub("", text)
    for bad in (";", "#", '"', "\n"):
        if bad in stripped:
            raise MermaidError(f"{where}: raw {bad!r} in text {text!r}")
    if not stripped.strip():
        raise MermaidError(f"{where}: empty text")


@dataclass
class Sequence:
    participants: dict[str, str] = field(default_factory=dict)  # id -> label
    messages: list[tuple[str, str, str, str]] = field(default_factory=list)  # src arrow dst text
    notes: list[tuple[str, str]] = field(default_factory=list)
    title: str | None = None


def parse_sequence(source: str) -> Sequence:
    lines = [line.strip() for line in source.splitlines() if line.strip()]
    if not lines or lines[0] != "sequenceDiagram":
        raise MermaidError("a sequence diagram starts with 'sequenceDiagram'")
    out = Sequence()
    for n, line in enumerate(lines[1:], start=2):
        where = f"line {n}"
        if line.startswith("%%"):
            continue
        if line.startswith("title "):
            out.title = line[6:]
            _check_text(out.title, where)
        elif m := _SEQ_PARTICIPANT.match(line):
            if m.group(2) in out.participants:
                raise MermaidError(f"{where}: participant {m.group(2)} declared twice")
            if out.messages or out.notes:
                raise MermaidError(f"{where}: participant declared after use began")
            label = m.group(3) or m.group(2)
            _check_text(label, where)
            out.participants[m.group(2)] = label
        elif m := _SEQ_MESSAGE.match(line):
            src, arrow, dst, text = m.groups()
            for pid in (src, dst):
                if pid not in out.participants:
                    raise MermaidError(f"{where}: undeclared participant {pid}")
            if arrow not in _SEQ_ARROWS:
                raise MermaidError(f"{where}: bad arrow {arrow}")
            _check_text(text, where)
            out.messages.append((src, arrow, dst, text))
        elif m := _SEQ_NOTE.match(line):
            for pid in (m.group(2), m.group(3)):
                if pid is not None and pid not in out.participants:
                    raise MermaidError(f"{where}: undeclared participant {pid}")
            _check_text(m.group(4), where)
            out.notes.append((m.group(2), m.group(4)))
        else:
            raise MermaidError(f"{where}: not a sequenceDiagram statement: {line!r}")
    if not out.participants:
        raise MermaidError("no participants")
    return out


@dataclass
class Flowchart:
    direction: str
    nodes: dict[str, str] = field(default_factory=dict)  # id -> label
    edges: list[tuple[str, str, str]] = field(default_factory=list)
    class_defs: dict[str, dict[str, str]] = field(default_factory=dict)
    classes: dict[str, str] = field(default_factory=dict)  # node -> class


def parse_flowchart(source: str) -> Flowchart:
    lines = [line.strip() for line in source.splitlines() if line.strip()]
    head = lines[0].split() if lines else []
    if (
        len(head) != 2
        or head[0] not in ("flowchart", "graph")
        or head[1] not in ("TD", "TB", "LR", "RL", "BT")
    ):
        raise MermaidError("a flowchart starts with 'flowchart <direction>'")
    out = Flowchart(head[1])
    pending_classes: list[tuple[str, str, str]] = []
    for n, line in enumerate(lines[1:], start=2):
        where = f"line {n}"
        if m := _FC_NODE.match(line):
            node, _, label, _, cls = m.groups()
            if node in out.nodes:
                raise MermaidError(f"{where}: node {node} defined twice")
            if node in ("end", "graph", "subgraph"):
                raise MermaidError(f"{where}: reserved node id {node}")
            _check_text(label.replace("<br/>", " "), where)
            out.nodes[node] = label
            if cls:
                pending_classes.append((node, cls, where))
        elif m := _FC_EDGE.match(line):
            a, arrow, b = m.groups()
            for node in (a, b):
                if node not in out.nodes:
                    raise MermaidError(f"{where}: edge uses undefined node {node}")
            out.edges.append((a, arrow, b))
        elif m := _FC_CLASSDEF.match(line):
            styles = dict(part.split(":", 1) for part in m.group(2).split(","))
            if not re.fullmatch(r"#[0-9a-fA-F]{6}", styles.get("fill", "")):
                raise MermaidError(f"{where}: classDef {m.group(1)} without a #rrggbb fill")
            out.class_defs[m.group(1)] = styles
        elif m := _FC_CLASS.match(line):
            for node in m.group(1).split(","):
                if node not in out.nodes:
                    raise MermaidError(f"{where}: class on undefined node {node}")
                pending_classes.append((node, m.group(2), where))
        else:
            raise MermaidError(f"{where}: not a flowchart statement: {line!r}")
    for node, cls, where in pending_classes:
        if cls not in out.class_defs:
            raise MermaidError(f"{where}: class {cls} is not defined")
        out.classes[node] = cls
    return out
