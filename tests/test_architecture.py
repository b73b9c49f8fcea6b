"""Rules enforced by tests, not review: the scoping gate and one-way dependencies."""

import ast
from pathlib import Path

from django.apps import apps

from stores.scoping import TenantManager

ROOT = Path(__file__).resolve().parent.parent
APPS = ["stores", "aftersales", "logistics", "portal"]


def tenant_model_names() -> set[str]:
    return {m.__name__ for m in apps.get_models() if isinstance(m._default_manager, TenantManager)}


def adapter_files() -> list[Path]:
    """Code that serves users: API packages, the portal, Celery tasks and admin modules."""
    files: list[Path] = []
    for app in APPS:
        base = ROOT / app
        files += list((base / "api").rglob("*.py"))
        files += [p for p in (base / "tasks.py", base / "admin.py") if p.exists()]
        # Sub-packages (e.g. aftersales/tiktok) have their own adapters: admin, tasks, views.
        files += [p for p in base.glob("*/*.py") if p.name in ("admin.py", "tasks.py") or p.name.endswith("views.py")]
        files += list((base / "tasks").rglob("*.py")) if (base / "tasks").is_dir() else []
    files += [p for p in (ROOT / "portal").rglob("*.py") if "migrations" not in p.parts]
    return sorted(set(files))


def bare_manager_uses(source: str, names: set[str]) -> list[tuple[int, str]]:
    """``Model.objects`` (or ``_default_manager``) on a tenant-owned model, unless it goes
    straight into the gate (``Model.objects.for_actor(...)``)."""
    tree = ast.parse(source)
    gated = {id(node.value) for node in ast.walk(tree)
             if isinstance(node, ast.Attribute) and node.attr == "for_actor"}
    hits = []
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and node.attr in {"objects", "_default_manager", "_base_manager"}
                and isinstance(node.value, ast.Name) and node.value.id in names and id(node) not in gated):
            hits.append((node.lineno, f"{node.value.id}.{node.attr}"))
    return hits


def test_adapters_never_use_a_bare_manager_on_tenant_models():
    names = tenant_model_names()
    offenders = []
    for path in adapter_files():
        for line, expr in bare_manager_uses(path.read_text(), names):
            offenders.append(f"{path.relative_to(ROOT)}:{line}: {expr} (use a selector / for_actor)")
    assert not offenders, "\n".join(offenders)


def test_the_scanner_catches_a_violation():
    snippet = "def view(request):\n    return Store.objects.all()\n"
    assert bare_manager_uses(snippet, {"Store"}) == [(2, "Store.objects")]
    assert bare_manager_uses("Store.objects.filter(agency=a)", {"Store"})
    assert bare_manager_uses("Store.objects.unscoped()", {"Store"})
    assert not bare_manager_uses("Store.objects.for_actor(actor).filter(x=1)", {"Store"})
    assert not bare_manager_uses("Market.objects.all()", {"Store"})


def imported_modules(path: Path) -> set[str]:
    mods = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            mods |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            mods.add(node.module.split(".")[0])
    return mods


# Dependencies run one way: portal → logistics → aftersales → stores (and config above all).
FORBIDDEN = {
    "stores": {"aftersales", "logistics", "portal"},
    "aftersales": {"logistics", "portal"},
    "logistics": {"portal"},
    "portal": set(),
}


def test_dependencies_run_one_way():
    offenders = []
    for app, banned in FORBIDDEN.items():
        for path in (ROOT / app).rglob("*.py"):
            bad = imported_modules(path) & banned
            if bad:
                offenders.append(f"{path.relative_to(ROOT)} imports {sorted(bad)}")
    assert not offenders, "\n".join(offenders)


def test_portal_has_no_models():
    assert not list(apps.get_app_config("portal").get_models())
