"""Is an answer the student's own code? A check of the submitted source, in the grader.

The tests call :func:`mlcourse.exercise_checks.assert_own_implementation` on the student's
function. In the grader's process that function is a stand-in (see
:mod:`~mlcourse.grading.replay`) that carries the verdict of :func:`ownership`, computed
here from the text of the submission, which the student's kernel cannot change.

A function fails when its code, or the code of any function of the submission it calls
(followed through the names it uses), imports or names ``mlcourse``, or loads code by name
(``importlib``, ``__import__``, ``exec``, ``eval``, ``compile``, ``sys.modules``,
``globals()``): the ways to call the package's own answer. What it cannot see:
the package's code pasted in as text (that is the student's code, as far as a machine can
tell), or an answer hidden in a cell that runs code the check does not read (a magic, a
shell command); the instructor page says so.
"""
from __future__ import annotations

import ast
import re

__all__ = ["HAZARD_ATTRS", "HAZARD_MODULES", "HAZARD_NAMES", "disarm", "hazards", "ownership", "screen", "top_level_names"]

_CALLS = {"__import__": "loads a module by name", "exec": "runs code from a string",
          "eval": "runs code from a string", "compile": "compiles code", "globals": "reaches names through globals()",
          "vars": "reaches names through vars()", "get_ipython": "drives the kernel"}  # bare names only
_ANYWHERE = {"importlib": "loads a module by name", "builtins": "reaches the builtins",
             "__builtins__": "reaches the builtins", "__loader__": "loads code", "__spec__": "loads code",
             "mlcourse": "uses mlcourse"}
_MAGIC = re.compile(r"^\s*[%!].*$", flags=re.M)


def _parse(source: str) -> ast.Module | None:
    try:
        return ast.parse(_MAGIC.sub("", source))
    except SyntaxError:
        return None


def top_level_names(source: str) -> dict[str, str]:
    """``name -> kind`` (``"function"``, ``"class"``, ``"value"``) bound at the top level of ``source``."""
    tree = _parse(source)
    out: dict[str, str] = {}
    for node in tree.body if tree else []:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            out[node.name] = "function"
        elif isinstance(node, ast.ClassDef):
            out[node.name] = "class"
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            out.update({t.id: "value" for t in targets if isinstance(t, ast.Name)})
    return out


def _mentions(node: ast.AST) -> str | None:
    for sub in ast.walk(node):
        if isinstance(sub, (ast.Import, ast.ImportFrom)):
            modules = [a.name for a in sub.names] if isinstance(sub, ast.Import) else [sub.module or ""]
            if any(m.split(".")[0] == "mlcourse" for m in modules):
                return "imports mlcourse"
            if any(m.split(".")[0] in ("importlib", "builtins") for m in modules):
                return "imports a module that loads code by name"
        if isinstance(sub, ast.Name) and (sub.id in _ANYWHERE or sub.id in _CALLS):
            return _ANYWHERE.get(sub.id) or _CALLS[sub.id]
        if isinstance(sub, ast.Attribute):
            if sub.attr in _ANYWHERE:
                return _ANYWHERE[sub.attr]
            if sub.attr == "modules" and isinstance(sub.value, ast.Name) and sub.value.id == "sys":
                return "reaches loaded modules through sys.modules"
        if isinstance(sub, ast.Constant) and isinstance(sub.value, str) and "mlcourse" in sub.value:
            return "names mlcourse in a string"
    return None


def ownership(cells: list[str], name: str) -> str | None:
    """Why ``name`` is not the student's own implementation, or None when it is.

    Args:
        cells: The sources of the submission's code cells (answers and added cells), in order.
        name: The function the test checks.
    """
    defs: dict[str, ast.AST] = {}
    imported: dict[str, str] = {}
    for source in cells:
        tree = _parse(source)
        if tree is None:
            continue
        for node in tree.body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                defs[node.name] = node
            elif isinstance(node, (ast.Import, ast.ImportFrom)):
                for alias in node.names:
                    module = alias.name if isinstance(node, ast.Import) else f"{node.module or ''}.{alias.name}"
                    imported[(alias.asname or alias.name).split(".")[0]] = module
            elif isinstance(node, ast.Assign):
                for t in node.targets:  # f = some_other_function: follow the right-hand side
                    if isinstance(t, ast.Name):
                        defs.setdefault(t.id, node.value)
    if name not in defs:
        return f"{name} is not defined with `def` in the notebook"
    todo, done = [name], set()
    while todo:
        current = todo.pop()
        if current in done:
            continue
        done.add(current)
        node = defs.get(current)
        if node is None:
            module = imported.get(current, "")
            if module.split(".")[0] == "mlcourse":
                return f"{name} uses {current} from mlcourse: implement it yourself, with NumPy/PyTorch only"
            continue
        why = _mentions(node)
        if why:
            shown = name if current == name else f"{name} (through {current})"
            return f"{shown} {why}: implement it yourself, with NumPy/PyTorch only"
        todo += [n.id for n in ast.walk(node) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)]
    return None


# --- code that drives the kernel ------------------------------------------------------------------

_SHELL = re.compile(r"^(\s*)(?:[!%].*|[\w.,\s]+=\s*[!%].*)$")
_ALLOWED_MAGICS = re.compile(r"^\s*%(matplotlib|time|timeit)\b")
#: Names whose use anywhere in a student's code stops automatic grading (the kernel's own machinery).
HAZARD_NAMES = {
    "get_ipython": "drives the kernel", "exec": "runs code from a string", "eval": "runs code from a string",
    "compile": "compiles code", "__import__": "loads a module by name", "globals": "reaches names through globals()",
    "vars": "reaches names through vars()", "breakpoint": "enters a debugger", "__builtins__": "reaches the builtins",
}
#: Attributes whose use stops automatic grading (hooks of the interpreter, frames, object internals).
HAZARD_ATTRS = {
    "settrace": "installs a tracing hook", "setprofile": "installs a profiling hook",
    "addaudithook": "installs an audit hook", "excepthook": "replaces the exception hook",
    "displayhook": "replaces the display hook", "meta_path": "changes how modules load",
    "path_hooks": "changes how modules load", "modules": None, "path": None, "_getframe": "reaches stack frames",
    "currentframe": "reaches stack frames", "f_back": "reaches stack frames", "f_globals": "reaches stack frames",
    "f_locals": "reaches stack frames", "f_builtins": "reaches stack frames", "tb_frame": "reaches stack frames",
    "get_objects": "reaches every object", "get_referrers": "reaches every object",
    "__globals__": "reaches a function's globals", "__dict__": "reaches an object's internals",
    "__class__": "reaches an object's internals", "__subclasses__": "reaches an object's internals",
    "__bases__": "reaches an object's internals", "__mro__": "reaches an object's internals",
    "__code__": "reaches compiled code", "__closure__": "reaches compiled code",
    "__wrapped__": "unwraps a function", "__self__": "reaches an object's internals", "__func__": "reaches compiled code", "__getattribute__": "reaches an object's internals",
    "__builtins__": "reaches the builtins", "__loader__": "loads code", "__spec__": "loads code",
    "set_custom_exc": "replaces the kernel's exception handler", "input_transformers_cleanup": "drives the kernel",
    "input_transformers_post": "drives the kernel", "ast_transformers": "drives the kernel",
}
#: Modules whose import stops automatic grading (they load code by name or reach every object).
HAZARD_MODULES = {"importlib", "builtins", "ctypes", "inspect", "gc", "pickle", "marshal", "dill", "cloudpickle",
                  "runpy", "code", "codeop", "imp", "pkgutil", "zipimport", "IPython", "ipykernel", "traitlets",
                  "mlcourse"}


def disarm(source: str) -> tuple[str, list[int]]:
    """``source`` with its shell commands and magics (but ``%matplotlib``, ``%time``, ``%timeit``) made ``pass``.

    Returns:
        The new source, and the numbers of the lines replaced. A cell magic other than
        ``%%time``/``%%timeit`` (``%%bash``, ``%%writefile``) turns the whole cell into ``pass``.
    """
    lines = source.split("\n")
    first = next((line for line in lines if line.strip()), "")
    if first.lstrip().startswith("%%"):
        if re.match(r"^\s*%%(time|timeit)\b", first):
            return "\n".join(lines[lines.index(first) + 1:]), []
        return "pass", [i + 1 for i, line in enumerate(lines) if line.strip()]
    out, replaced = [], []
    for i, line in enumerate(lines, 1):
        match = _SHELL.match(line)
        if match and not _ALLOWED_MAGICS.match(line):
            out.append(f"{match.group(1)}pass")
            replaced.append(i)
        elif match:  # %time / %timeit: keep the statement it times
            out.append(re.sub(r"^(\s*)%\w+\s*(-\S+\s+)*", r"\1", line))
        else:
            out.append(line)
    return "\n".join(out), replaced


def hazards(source: str) -> list[str]:
    """Why ``source`` (one student cell) cannot be graded automatically: one reason per offending line.

    Flagged: the kernel's and the interpreter's machinery (``get_ipython``, tracing and
    profiling hooks, exception and display hooks, frames, object internals such as
    ``__globals__``), code run from strings, modules that load code by name or reach objects
    (:data:`HAZARD_MODULES`, ``mlcourse`` included), ``sys.modules`` and ``sys.path``, and
    imports of modules this machine does not have installed (a file the notebook wrote itself).
    """
    import importlib.util

    text, _ = disarm(source)
    try:
        tree = ast.parse(text)
    except SyntaxError:
        return []  # it fails in the kernel as it would anywhere; nothing of it runs
    found = []
    for node in ast.walk(tree):
        why = None
        if isinstance(node, ast.Name) and node.id in HAZARD_NAMES:
            why = f"{node.id} {HAZARD_NAMES[node.id]}"
        elif isinstance(node, ast.Attribute) and node.attr in HAZARD_ATTRS:
            why = HAZARD_ATTRS[node.attr]
            if why is None:  # sys.modules, sys.path: only on sys
                why = f"sys.{node.attr} changes how modules load" if isinstance(node.value, ast.Name) and \
                    node.value.id == "sys" else None
            else:
                why = f".{node.attr} {why}"
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            if isinstance(node, ast.ImportFrom) and node.level:
                why = "a relative import loads a file the notebook wrote"
            for module in [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]:
                top = module.split(".")[0]
                if top in HAZARD_MODULES:
                    why = f"imports {top}"
                elif top and importlib.util.find_spec(top) is None:
                    why = f"imports {top}, which is not an installed package"
        if why:
            found.append(f"line {getattr(node, 'lineno', '?')}: {why}")
    return sorted(set(found), key=lambda s: (int(s.split()[1].rstrip(":")) if s.split()[1][:-1].isdigit() else 0, s))


def screen(notebook) -> tuple[list[str], list[str]]:
    """Disarm the student's cells of ``notebook`` in place, and list what stops automatic grading.

    The student's cells are its answer cells and the cells the student added. Returns
    ``(notes, flags)``: notes on the lines that were not run (shell commands, magics), and
    the hazards (:func:`hazards`), each naming its cell; when there is any flag, no test of
    the notebook is scored by machine.
    """
    notes, flags = [], []
    for number, cell in enumerate(notebook.cells, 1):
        meta = cell.get("metadata", {}).get("nbgrader", {})
        student = cell.cell_type == "code" and (not meta.get("grade_id") or
                                                 (meta.get("solution") and not meta.get("locked")))
        if not student:
            continue
        where = f"cell '{meta['grade_id']}'" if meta.get("grade_id") else f"added cell {number}"
        cell.source, replaced = disarm(cell.source)
        if replaced:
            notes.append(f"{where}: line(s) {', '.join(map(str, replaced))} not run (shell commands and magics "
                         "other than %matplotlib, %time and %timeit do not run when graded)")
        flags += [f"{where}, {h}" for h in hazards(cell.source)]
    return notes, flags
