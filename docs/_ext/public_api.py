"""A griffe extension for the API reference: public paths, and the docstrings read as Markdown.

The package's docstrings are written for ``help()`` and Sphinx-style readers (reST roles and
``::`` literal blocks, Google-style sections). This extension, run by mkdocstrings when it
loads ``binance_pm``, makes the reference read as a user imports the package:

- **Public paths.** Every name that ``binance_pm``, ``binance_pm.testing`` or ``binance_pm.redis``
  exports from a private module is moved to the public module, as the package itself does at
  import time (``binance_pm.Session``, not ``binance_pm._session.Session``), so that headings,
  anchors and the types in signatures name the paths a user imports. Names in a moved object's
  docstring, defaults and bases are still read in the module that wrote them.
- **Defaults.** A parameter whose default is a private constant (``timeout: float = TIMEOUT``)
  shows the constant's value (``10.0``).
- **Structs.** A msgspec Struct's fields are listed in one ``Attributes`` table, each with its
  type and its name in the exchange's JSON (``uni_mmr``: ``uniMMR``).
- **Attributes.** An attribute that a class's ``Attributes:`` section describes gets that
  description as its own docstring, so that it is listed once, with its type.
- **Roles.** ``:class:`Session```, ``:meth:`~binance_pm.Session.poll``` and the like become links
  to the object's entry when the reference lists it, and code spans otherwise.
- **Literal blocks.** A paragraph ending in ``::`` and the indented block after it become a
  fenced code block (Python when the block parses as Python, plain text otherwise).
"""

from __future__ import annotations

import ast
import re
import textwrap
from typing import Any

import griffe

#: The public modules whose exports the reference renders.
PUBLIC = ("binance_pm", "binance_pm.testing", "binance_pm.redis")

_ROLE = re.compile(r":(?:py:)?(class|meth|func|attr|data|exc|mod|obj):`(!?~?)([^`<>]+)`")


class PublicApi(griffe.Extension):
    """Moves the exported objects to their public modules, then tidies every docstring."""

    def __init__(self) -> None:
        super().__init__()
        #: The module each moved object was written in, by the object's id.
        self.homes: dict[int, griffe.Object] = {}

    def on_package(self, *, pkg: griffe.Module, loader: griffe.GriffeLoader, **kwargs: Any) -> None:
        if pkg.path != "binance_pm":
            return
        modules = [pkg] + [pkg.members[path.split(".")[1]] for path in PUBLIC[1:]]
        moved = self._move(modules)
        _retarget(pkg, moved, set())
        exported = [
            member
            for module in modules
            for member in (module.members.get(name) for name in _exports(module))
            if member is not None and not member.is_alias
        ]
        fields = {id(obj): _struct_fields(obj) for obj in exported if obj.is_class}
        for obj in exported:  # after every class's fields are known: they inherit them
            _list_fields(obj, fields.get(id(obj), []))
        for obj in exported:
            self._tidy(obj)
        listed = _listed(modules)
        seen: set[int] = set()
        for module in [*modules, *pkg.modules.values()]:
            self._rewrite(module, listed, seen)

    # -- public paths ------------------------------------------------------------------------

    def _move(self, modules: list[Any]) -> dict[str, str]:
        """Moves each export defined in a private module to the public module that exports
        it; the old path of each to its new one."""
        moved: dict[str, str] = {}
        for module in modules:
            for name in _exports(module):
                member = module.members.get(name)
                if member is None or not member.is_alias:
                    continue
                target = member.final_target
                if _private(target.path):
                    old, self.homes[id(target)] = target.path, target.parent
                    module.set_member(name, target)
                    moved[old] = target.path
        for path in moved.values():
            target = modules[0].modules_collection[path]
            if target.is_class:
                self._rebase(target, moved)
        return moved

    def _rebase(self, cls: Any, moved: dict[str, str]) -> None:
        """Names a moved class's private bases by their full paths, which its new module
        cannot resolve, so that what it inherits from them is still found."""
        home = self.homes[id(cls)]
        bases: list[Any] = []
        for base in cls.bases:
            if isinstance(base, griffe.ExprName) and "." not in str(base):
                try:
                    path: str | None = home.resolve(str(base))
                except griffe.NameResolutionError:
                    path = None
                if path is not None and _private(moved.get(path, path)):
                    base = path
            bases.append(base)
        cls.bases = bases

    def _lookup(self, scope: Any, dotted: str) -> Any:
        """The object ``dotted`` names, read as Python (and Sphinx) would from ``scope``."""
        parts = dotted.split(".")
        found: Any = None
        if parts[0] == "binance_pm":
            found = scope.modules_collection["binance_pm"]
        else:
            here = scope
            while here is not None and found is None:
                found = (here.all_members if here.is_class else here.members).get(parts[0])
                here = self.homes.get(id(here), here.parent)
        try:
            for part in parts[1:]:
                if found.is_alias:
                    found = found.final_target
                found = (found.all_members if found.is_class else found.members)[part]
            if found is not None and found.is_alias:
                found = found.final_target
        except (KeyError, AttributeError, griffe.AliasResolutionError, griffe.CyclicAliasError):
            return None
        return found

    # -- defaults and attributes -------------------------------------------------------------

    def _tidy(self, obj: Any) -> None:
        """Shows private constants' values as defaults, and gives each attribute that a
        class's ``Attributes:`` section describes that description as its own docstring."""
        if obj.is_function:
            for parameter in obj.parameters:
                if isinstance(parameter.default, griffe.ExprName):
                    value = self._value_of(obj, str(parameter.default))
                    parameter.default = value or parameter.default
            return
        if not obj.is_class:
            return
        if obj.docstring is not None:
            given = set()
            for section in obj.docstring.parse("google"):
                if section.kind is not griffe.DocstringSectionKind.attributes:
                    continue
                for attribute in section.value:
                    member = obj.members.get(attribute.name)
                    if member is not None and not member.is_alias and not member.docstring:
                        member.docstring = griffe.Docstring(attribute.description, parent=member)
                        given.add(attribute.name)
            if given:
                obj.docstring.value = _without_entries(obj.docstring.value, "Attributes:", given)
        for member in list(obj.members.values()):
            if not member.is_alias:
                self._tidy(member)

    def _value_of(self, scope: Any, name: str) -> str | None:
        """The value of the private constant ``name``, if it is a number or a call with no
        arguments (``Limits()``)."""
        found = self._lookup(scope, name)
        if found is None or not found.is_attribute or not _private(found.path):
            return None
        try:
            tree = ast.parse(str(found.value), mode="eval").body
        except SyntaxError:
            return None
        if isinstance(tree, ast.Call) and isinstance(tree.func, ast.Name):
            return None if tree.args or tree.keywords else ast.unparse(tree)
        number = _arithmetic(tree)
        return None if number is None else repr(number)

    # -- docstrings --------------------------------------------------------------------------

    def _rewrite(self, obj: Any, listed: set[str], seen: set[int]) -> None:
        if obj.is_alias or id(obj) in seen:
            return
        seen.add(id(obj))
        if obj.docstring is not None:
            text = _literal_blocks(obj.docstring.value)
            obj.docstring.value = _ROLE.sub(lambda m: self._role(m, obj, listed), text)
        for member in list(obj.members.values()):
            if not member.is_alias and not member.is_module:
                self._rewrite(member, listed, seen)

    def _role(self, match: re.Match[str], scope: Any, listed: set[str]) -> str:
        kind, flags, target = match.groups()
        shown = target.rsplit(".", 1)[-1] if "~" in flags else target
        if kind in ("meth", "func"):
            shown += "()"
        found = None if "!" in flags else self._lookup(scope, target)
        if found is None or found.path not in listed:
            return f"`{shown}`"
        return f"[`{shown}`][{found.path}]"


def _private(path: str) -> bool:
    """Whether ``path`` passes through a name with a leading underscore."""
    return any(part.startswith("_") for part in path.split("."))


def _exports(module: Any) -> list[str]:
    return [str(name) for name in module.exports or ()]


def _retarget(module: Any, moved: dict[str, str], seen: set[str]) -> None:
    """Points every import of a moved object at its public path, so that the types in
    signatures and type aliases name it as a user imports it."""
    if module.path in seen:
        return
    seen.add(module.path)
    for member in module.members.values():
        if member.is_alias:
            member.target_path = moved.get(member.target_path, member.target_path)
        elif member.is_module:
            _retarget(member, moved, seen)


def _listed(modules: list[Any]) -> set[str]:
    """The paths the reference gives an entry: every export, and its documented public
    members."""
    found: set[str] = set()
    for module in modules:
        found.add(module.path)
        for name in _exports(module):
            obj = module.members.get(name)
            if obj is None or name == "__version__":
                continue
            found.add(f"{module.path}.{name}")
            if obj.is_alias or not obj.is_class:
                continue
            for member_name, member in obj.all_members.items():
                if not member_name.startswith("_") and _documented(member):
                    found.add(f"{module.path}.{name}.{member_name}")
    return found


def _documented(obj: Any) -> bool:
    try:
        return bool(obj.docstring and obj.docstring.value.strip())
    except (griffe.AliasResolutionError, griffe.CyclicAliasError):
        return False


def _struct_fields(cls: Any) -> list[tuple[str, Any]]:
    """A msgspec Struct's fields, its bases' first; none for another class."""
    chain = [cls, *cls.mro()]
    if not any(str(base) == "msgspec.Struct" for c in chain for base in c.bases):
        return []
    return [
        (name, member)
        for name, member in cls.all_members.items()
        if not name.startswith("_") and member.is_attribute and member.annotation is not None
    ]


def _list_fields(cls: Any, fields: list[tuple[str, Any]]) -> None:
    """Lists ``fields`` in ``cls``'s ``Attributes`` section with their names on the wire, and
    drops them as members of their own."""
    if not fields:
        return
    camel = any(c.keywords.get("rename", "").strip("'\"") == "camel" for c in [cls, *cls.mro()])
    rows = []
    for name, member in fields:
        wire = _wire_name(member) or (_camel(name) if camel else name)
        rows.append(f"    {name} ({member.annotation}): ``{wire}`` in the exchange's JSON.")
    text = cls.docstring.value.rstrip() if cls.docstring else ""
    cls.docstring = griffe.Docstring(f"{text}\n\nAttributes:\n" + "\n".join(rows), parent=cls)
    for name, _ in fields:
        if name in cls.members:
            cls.del_member(name)


def _wire_name(member: Any) -> str | None:
    """The ``name=`` of a ``msgspec.field(...)`` default, if it has one."""
    try:
        tree = ast.parse(str(member.value), mode="eval").body
    except SyntaxError:
        return None
    if isinstance(tree, ast.Call):
        for keyword in tree.keywords:
            if keyword.arg == "name" and isinstance(keyword.value, ast.Constant):
                return str(keyword.value.value)
    return None


def _camel(name: str) -> str:
    first, *rest = name.split("_")
    return first + "".join(part.capitalize() for part in rest)


def _arithmetic(node: ast.expr) -> float | int | None:
    """The value of a sum, difference or product of numbers (``4 * 1024 * 1024``)."""
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        return node.value  # type: ignore[no-any-return]
    if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Sub, ast.Mult)):
        left, right = _arithmetic(node.left), _arithmetic(node.right)
        if left is None or right is None:
            return None
        if isinstance(node.op, ast.Add):
            return left + right
        return left - right if isinstance(node.op, ast.Sub) else left * right
    return None


def _without_entries(text: str, title: str, names: set[str]) -> str:
    """``text`` without the entries ``names`` of its Google-style section ``title``, and
    without the section once it is empty."""
    lines = text.split("\n")
    out: list[str] = []
    i = 0
    while i < len(lines):
        if lines[i].strip() != title:
            out.append(lines[i])
            i += 1
            continue
        indent = len(lines[i]) - len(lines[i].lstrip())
        section, kept, entry_indent, keep = [lines[i]], False, None, True
        i += 1
        while i < len(lines):
            line = lines[i]
            depth = len(line) - len(line.lstrip())
            if line.strip() and depth <= indent:
                break
            if line.strip() and (entry_indent is None or depth <= entry_indent):
                entry_indent = depth
                keep = line.strip().split(":", 1)[0].split(" ", 1)[0] not in names
                kept = kept or keep
            if keep or not line.strip():
                section.append(line)
            i += 1
        if kept:
            out.extend(section)
    return "\n".join(out)


def _literal_blocks(text: str) -> str:
    """reST literal blocks (``text::`` then an indented block) as fenced code blocks."""
    lines = text.split("\n")
    out: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i].rstrip()
        indent = len(line) - len(line.lstrip())
        j = i + 1
        while j < len(lines) and not lines[j].strip():
            j += 1
        start = j
        while j < len(lines) and (
            not lines[j].strip() or len(lines[j]) - len(lines[j].lstrip()) > indent
        ):
            j += 1
        while j > start and not lines[j - 1].strip():
            j -= 1
        if not line.endswith("::") or start == j:
            out.append(lines[i])
            i += 1
            continue
        if line.strip() != "::":  # "text::" reads "text:", and "text ::" reads "text"
            lead = line[:-2]
            out += [lead.rstrip() if lead.endswith(" ") else f"{lead}:", ""]
        block = textwrap.dedent("\n".join(lines[start:j]))
        fence = " " * indent
        out.append(f"{fence}```{_language(block)}")
        out.extend(fence + row if row else "" for row in block.split("\n"))
        out.append(f"{fence}```")
        i = j
    return "\n".join(out)


def _language(block: str) -> str:
    try:
        compile(block, "<docstring>", "exec", ast.PyCF_ONLY_AST | ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
    except SyntaxError:
        return "text"
    return "python"
