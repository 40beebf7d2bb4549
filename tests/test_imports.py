"""Import structure: the package and the command line's parsing import no heavy module (torch,
onnx, the solvers) until a name or a sub-command needs it; the public names still resolve."""
import subprocess
import sys

import pytest

HEAVY = ("torch", "onnx", "onnxruntime", "pyscipopt", "highspy", "z3", "scipy", "matplotlib")


def _imported_after(code: str) -> set[str]:
    out = subprocess.run([sys.executable, "-c", code + "\nimport sys; print(' '.join(sys.modules))"],
                         capture_output=True, text=True, check=True).stdout.splitlines()[-1].split()
    return {m for m in HEAVY if m in out}


@pytest.mark.parametrize("code", [
    "import stverify",
    "import stverify.cli as c\ntry:\n    c.main(['--help'])\nexcept SystemExit:\n    pass",
    "import stverify.cli as c\ntry:\n    c.main(['verify', '--help'])\nexcept SystemExit:\n    pass",
])
def test_no_heavy_import(code):
    assert _imported_after(code) == set()


def test_public_names_resolve():
    import stverify as sv
    import stverify.audit.audit  # noqa: F401 - submodules named like public functions
    import stverify.verify  # noqa: F401

    assert callable(sv.verify) and callable(sv.audit) and "stbp" in sv.METHODS
    assert set(sv.__all__) <= set(dir(sv))
    for name in sv.__all__:
        assert getattr(sv, name) is not None
    from stverify.audit import audit
    assert callable(audit)
    with pytest.raises(AttributeError):
        sv.no_such_name  # noqa: B018
