"""Documentation text -> paragraphs of prose: the cleaner behind the built-in corpus ``package-docs``.

Docstrings and reST/Markdown pages mix prose with code, doctests, tables, parameter lists, references and markup.
``prose_paragraphs`` keeps the prose only: code and literal blocks, doctests, tables, parameter names and types,
reference and example sections, and reST/Markdown markup are dropped; the descriptions of parameters, returns and
the like are kept as paragraphs of their own. Pure Python (``re`` only). A change here changes the corpus: bump
``corpus.PACKAGE_DOCS_RULES``.
"""

from __future__ import annotations

import itertools
import re

# Sections whose body is not prose (dropped) and sections of "name : type" items whose descriptions are kept.
_DROP_SECTIONS = {
    "example",
    "examples",
    "example usage",
    "usage",
    "see also",
    "references",
    "reference",
    "methods",
    "todo",
    "citation",
    "citations",
    "installation",
    "install",
    "contents",
    "table of contents",
}
_ITEM_SECTIONS = {
    "parameters",
    "parameter",
    "params",
    "other parameters",
    "arguments",
    "argument",
    "args",
    "keyword arguments",
    "keyword args",
    "kwargs",
    "returns",
    "return",
    "yields",
    "yield",
    "raises",
    "warns",
    "attributes",
    "receives",
}
_PROSE_DIRECTIVES = {
    "note",
    "warning",
    "tip",
    "important",
    "caution",
    "attention",
    "hint",
    "danger",
    "admonition",
    "deprecated",
    "versionadded",
    "versionchanged",
    "versionremoved",
}
_UNDERLINE = re.compile(r"^([-=~^*+#`'\".])\1{2,}$")
_SIMPLE_TABLE_BORDER = re.compile(r"^=+( +=+)+$")
_GOOGLE_HEADER = re.compile(r"^([A-Za-z][A-Za-z ]{1,30}):$")
_MD_HEADER = re.compile(r"^#{1,6}\s+(.*?)\s*#*$")
_DIRECTIVE = re.compile(r"^\.\.\s+([\w:-]+)::\s*(.*)$")
_FIELD = re.compile(r"^:([\w-]+)([^:]*):\s*(.*)$")
_NO_TEXT_FIELDS = {"type", "rtype", "vartype", "ytype", "kwtype", "meta", "nosignatures", "noindex"}
_ITEM_PREFIX = re.compile(r"^\**[\w.]+(\s*\([^()]*(\([^()]*\)[^()]*)*\))?\s*:(\s+|$)")
_ITEM_LINE = re.compile(r"^\**\w+ \([^()]*(\([^()]*\)[^()]*)*\):(\s|$)")
_ROLE = re.compile(r":[\w:.+-]+:`(~?)([^`<]*?)\s*(<[^`>]*>)?`")
_REST_LINK = re.compile(r"`([^`<]+?)\s*<[^`>]+>`__?")
_MD_IMAGE = re.compile(r"!\[[^\]]*\]\([^)]*\)")
_MD_LINK = re.compile(r"\[([^\]]+)\](\([^)\s]*\)|\[[\w .-]*\])")
_HTML_TAG = re.compile(r"</?[A-Za-z][^<>]*>")
_URL = re.compile(r"<?\b(https?|ftp)://\S+")
_LITERAL = re.compile(r"`+([^`]*)`+_?")
_EMPHASIS = re.compile(r"\*\*([^*]+)\*\*|(?<![\w*])\*([^*\s][^*]*)\*")
_NOISE = re.compile(r"\[\d+\]_|\[#\w*\]_|\|\w[\w -]*\||%\(\w+\)[sdr]|\{\w*\}")
_WORD = re.compile(r"^[(\"']?[A-Za-z][A-Za-z'-]*[.,;:!?)\"']*$")


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def _dedent(lines: list[str]) -> list[str]:
    """The lines with their common indentation removed."""
    indent = min((_indent(ln) for ln in lines if ln.strip()), default=0)
    return [ln[indent:] for ln in lines]


def _block_end(lines: list[str], start: int, indent: int) -> int:
    """The index after the block that starts at ``start``: blank lines and lines indented deeper than ``indent``."""
    end = start
    while end < len(lines) and (not lines[end].strip() or _indent(lines[end]) > indent):
        end += 1
    return end


def _section_header(lines: list[str], i: int) -> str | None:
    """The name of a numpydoc/reST section whose title is line ``i`` (underlined on the next line), else None."""
    title = lines[i].strip()
    if not title or _UNDERLINE.match(title) or i + 1 >= len(lines):
        return None
    under = lines[i + 1].strip()
    if _UNDERLINE.match(under) and len(under) >= min(len(title), 3) and _indent(lines[i + 1]) == _indent(lines[i]):
        return title.rstrip(":").lower()
    return None


def _strip_blocks(text: str) -> list[str]:  # noqa: C901  (one pass over the lines: a branch per block kind)
    """The lines of a docstring or page that can hold prose: code, doctests, tables, fields and sections of names,
    examples and references dropped. Blank strings separate paragraphs."""
    lines = text.expandtabs(4).splitlines()
    out: list[str] = []
    section = ""  # "" (prose), "drop" or "items": the numpydoc or Markdown section we are in
    section_indent = 0
    i = 0
    while i < len(lines):
        line, s = lines[i], lines[i].strip()
        ind = _indent(line)
        header = _section_header(lines, i)
        if header is not None:  # numpydoc/reST section: up to the next one
            section = "drop" if header in _DROP_SECTIONS else "items" if header in _ITEM_SECTIONS else ""
            section_indent = ind
            out.append("")
            i += 2
            continue
        md_header = _MD_HEADER.match(s)
        if md_header:  # Markdown section: its paragraphs are prose, unless it is one of the dropped ones
            section = "drop" if md_header.group(1).rstrip(":").lower() in _DROP_SECTIONS else ""
            out.append("")
            i += 1
            continue
        if section == "drop":
            i += 1
            continue
        if not s:
            out.append("")
            i += 1
            continue
        if s.startswith(("```", "~~~")):  # Markdown code fence
            fence = s[:3]
            i += 1
            while i < len(lines) and not lines[i].strip().startswith(fence):
                i += 1
            i += 1
            out.append("")
            continue
        if s.startswith((">>>", "In [", "$ ")):  # doctest or shell session, with its output
            while i < len(lines) and lines[i].strip():
                i += 1
            out.append("")
            continue
        if _UNDERLINE.match(s) or s.startswith(("|", "+-", "+=")):  # rules, grid and Markdown tables
            i += 1
            continue
        if _SIMPLE_TABLE_BORDER.match(s):  # a reST simple table: up to the border followed by a blank line
            j = i + 1
            while j < len(lines) and not (
                _SIMPLE_TABLE_BORDER.match(lines[j].strip()) and (j + 1 == len(lines) or not lines[j + 1].strip())
            ):
                j += 1
            i = j + 1 if j < len(lines) else i + 1
            out.append("")
            continue
        if section == "items" and ind <= section_indent:  # a numpydoc "name : type" line: keep its description
            out.append("")
            i += 1
            continue
        directive = _DIRECTIVE.match(s)
        if directive:
            end = _block_end(lines, i + 1, ind)
            name = directive.group(1).lower()
            if name in _PROSE_DIRECTIVES:
                argument = directive.group(2)
                if name.startswith(("version", "deprecated")):  # the argument starts with a version number
                    argument = re.sub(r"^[\w.]+,?\s*", "", argument)
                out.append("")
                out.extend(_strip_blocks("\n".join([argument, *_dedent(lines[i + 1 : end])])))
                out.append("")
            i = end
            continue
        if s.startswith(".. ") or s == "..":  # comments, link targets, footnotes, substitutions
            i = _block_end(lines, i + 1, ind)
            continue
        field = _FIELD.match(s)
        if field:
            end = _block_end(lines, i + 1, ind)
            out.append("")
            if field.group(1).lower() not in _NO_TEXT_FIELDS:
                out.extend(_strip_blocks("\n".join([field.group(3), *_dedent(lines[i + 1 : end])])))
            out.append("")
            i = end
            continue
        google = _GOOGLE_HEADER.match(s)
        if google and google.group(1).lower() in _DROP_SECTIONS | _ITEM_SECTIONS:
            end = _block_end(lines, i + 1, ind)
            if google.group(1).lower() in _ITEM_SECTIONS:
                body = _dedent(lines[i + 1 : end])
                # An item starts at the first line and at each unindented "name (type): text" line after it.
                lefts = [k for k, ln in enumerate(body) if ln.strip() and _indent(ln) == 0]
                starts = lefts[:1] + [k for k in lefts[1:] if _ITEM_PREFIX.match(body[k])] + [len(body)]
                for start, stop in itertools.pairwise(starts):
                    first = _ITEM_PREFIX.sub("", body[start].strip(), count=1)
                    out.append("")
                    out.extend(_strip_blocks("\n".join([first, *_dedent(body[start + 1 : stop])])))
            out.append("")
            i = end
            continue
        if s.endswith("::"):  # a literal block follows: keep the sentence that introduces it
            text = s[:-2].rstrip()
            if text:
                out.append(text if s[-3:-2].isspace() else text + ":")
            i = _block_end(lines, i + 1, ind)
            out.append("")
            continue
        if _ITEM_LINE.match(s):  # "name (type): description" without a section header
            out.append("")
            out.append(_ITEM_PREFIX.sub("", s, count=1))
            i += 1
            continue
        out.append(s)
        i += 1
    return out


def _inline(paragraph: str) -> str:
    """One paragraph on one line with reST and Markdown markup, links and URLs removed."""
    p = _ROLE.sub(lambda m: m.group(2).strip().split(".")[-1] if m.group(1) else m.group(2).strip(), paragraph)
    p = _REST_LINK.sub(r"\1", p)
    p = _MD_IMAGE.sub("", p)
    p = _MD_LINK.sub(r"\1", p)
    p = _HTML_TAG.sub(" ", p)
    p = _URL.sub("", p)
    p = _LITERAL.sub(r"\1", p)
    p = _EMPHASIS.sub(lambda m: m.group(1) or m.group(2), p)
    p = _NOISE.sub("", p)
    return re.sub(r"\s+", " ", p).strip()


def _is_prose(paragraph: str) -> bool:
    """Mostly words: at least 5, at least 80% letters and spaces, at least 70% of tokens plain words."""
    words = paragraph.split()
    if len(words) < 5:
        return False
    letters = sum(c.isalpha() or c.isspace() for c in paragraph)
    return letters >= 0.8 * len(paragraph) and sum(bool(_WORD.match(w)) for w in words) >= 0.7 * len(words)


def prose_paragraphs(text: str) -> list[str]:
    """The prose paragraphs of a docstring or a reST/Markdown page, each unwrapped to one line."""
    paragraphs = re.split(r"\n\s*\n", "\n".join(_strip_blocks(text)))
    return [p for p in (_inline(q) for q in paragraphs) if _is_prose(p)]
