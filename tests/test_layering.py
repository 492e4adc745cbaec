"""Dependencies run one way: privacy <- actors <- orchestrator <- experiments, fedfrontier (the Python API, over
orchestrator), with no cycle between files.

Every import counts, also the ones inside functions (a lazy import is still a dependency)."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("privacy", "actors", "orchestrator", "experiments", "fedfrontier")
ALLOWED = {"privacy": set(), "actors": {"privacy"}, "orchestrator": {"privacy", "actors"},
           "experiments": {"privacy", "actors", "orchestrator"}, "fedfrontier": {"privacy", "orchestrator"}}


def project_imports(path: Path) -> set[str]:
    """Modules of this project that ``path`` imports, anywhere in the file."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                 else [node.module] if isinstance(node, ast.ImportFrom) and node.module and node.level == 0
                 else [])
        out |= {n for n in names if n.split(".")[0] in PACKAGES}
    return out


def modules() -> dict[str, set[str]]:
    graph = {}
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            graph[name] = project_imports(path)
    return graph


GRAPH = modules()


@pytest.mark.parametrize("module", sorted(GRAPH))
def test_module_imports_only_packages_below_it(module):
    own = module.split(".")[0]

    reached = {imp.split(".")[0] for imp in GRAPH[module]} - {own}

    assert reached <= ALLOWED[own], f"{module} imports {sorted(reached - ALLOWED[own])}"


def test_no_import_cycle_between_files():
    def target(name: str) -> str | None:  # "privacy.config.experiment.ConfigError"-style names resolve to their module
        while name and name not in GRAPH:
            name = name.rpartition(".")[0]
        return name or None

    edges = {m: {t for t in map(target, imps) if t and t != m} for m, imps in GRAPH.items()}
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    cycles = []

    def visit(m: str, path: list[str]) -> None:
        state[m] = 1
        for n in sorted(edges[m]):
            if state.get(n) == 1:
                cycles.append(path[path.index(n):] + [n] if n in path else [m, n])
            elif n not in state:
                visit(n, path + [n])
        state[m] = 2

    for m in sorted(edges):
        if m not in state:
            visit(m, [m])

    assert not cycles, f"import cycles: {cycles}"


def test_the_check_sees_lazy_imports(tmp_path):
    f = tmp_path / "m.py"
    f.write_text("def f():\n    from orchestrator.resolve import resolve_config\n    import actors.models\n")

    assert project_imports(f) == {"orchestrator.resolve", "actors.models"}


# privacy/ by concept, one way too: the config and seeding at the bottom (driver and workers both read them),
# accountants over the config, mechanisms over accountants and the secure-aggregation protocol
PRIVACY_ALLOWED = {"config": set(), "seeding": set(), "secagg": set(), "audit": {"seeding"},
                   "accountants": {"config"}, "mechanisms": {"accountants", "config", "secagg", "seeding"}}


def privacy_part(module: str) -> str:
    """``privacy.accountants.ledgers`` -> ``accountants``; ``privacy.seeding`` -> ``seeding``."""
    return module.split(".")[1]


@pytest.mark.parametrize("module", sorted(m for m in GRAPH if m.startswith("privacy.") and m.count(".") >= 1
                                          and not m.endswith("__init__")))
def test_privacy_parts_import_only_parts_below_them(module):
    own = privacy_part(module)

    reached = {privacy_part(imp) for imp in GRAPH[module] if imp.startswith("privacy.")} - {own}

    assert own in PRIVACY_ALLOWED, f"{module}: a part of privacy/ the layering does not know"
    assert reached <= PRIVACY_ALLOWED[own], f"{module} imports privacy parts {sorted(reached - PRIVACY_ALLOWED[own])}"


# The trust model is read from the config in one place: the mechanisms (privacy/mechanisms/choice.py) choose
# it, the config schema defines and validates it; everything else asks the mechanism (``secure``, ``level``).
MODE_KEYS = {"enabled", "level"}
MODE_READERS = ("privacy/mechanisms/", "privacy/config/")


def _is_secagg(node: ast.AST, aliases: set[str]) -> bool:
    """``<anything>.secagg``, or a name that holds it."""
    return ((isinstance(node, ast.Attribute) and node.attr == "secagg")
            or (isinstance(node, ast.Name) and (node.id == "secagg" or node.id in aliases)))


def trust_mode_reads(source: str) -> list[int]:
    """Lines of ``source`` that read ``secagg.enabled`` or ``secagg.level``, through aliases such as
    ``sa = cfg.secagg`` or ``d, sa = cfg.data, cfg.secagg`` too."""
    tree = ast.parse(source)
    aliases: set[str] = set()
    for node in ast.walk(tree):
        if not isinstance(node, ast.Assign):
            continue
        for target in node.targets:
            pairs = (zip(target.elts, node.value.elts) if isinstance(target, ast.Tuple)
                     and isinstance(node.value, ast.Tuple) else [(target, node.value)])
            aliases |= {t.id for t, v in pairs if isinstance(t, ast.Name) and _is_secagg(v, set())}
    return sorted(node.lineno for node in ast.walk(tree)
                  if isinstance(node, ast.Attribute) and node.attr in MODE_KEYS and _is_secagg(node.value, aliases))


def test_the_trust_mode_check_sees_reads_through_aliases():
    assert trust_mode_reads("if cfg.secagg.enabled:\n    pass\n") == [1]
    assert trust_mode_reads("sa = cfg.secagg\nx = sa.level == 'record'\n") == [2]
    assert trust_mode_reads("d, s, sa = c.data, c.server, c.secagg\ny = not sa.enabled\n") == [2]
    assert trust_mode_reads("def f(secagg):\n    return secagg.enabled\n") == [2]
    assert trust_mode_reads("z = mechanism.secure\nlevel = mechanism.level\nk = ('secagg.enabled',)\n") == []


OUTSIDE_MECHANISMS = sorted(p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")
                            if not p.relative_to(ROOT).as_posix().startswith(MODE_READERS))


@pytest.mark.parametrize("path", OUTSIDE_MECHANISMS, ids=lambda p: str(p.relative_to(ROOT)))
def test_only_the_mechanisms_read_the_trust_mode(path):
    rel = path.relative_to(ROOT).as_posix()
    assert trust_mode_reads(path.read_text()) == [], (
        f"{rel} reads secagg.enabled / secagg.level: ask the mechanism (mechanism_for / mechanism_class in "
        "privacy/mechanisms/choice.py) for `secure` and `level` instead")
