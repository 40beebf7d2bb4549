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


def test_first_stbp_call_imports_nothing():
    """The first STBP call of a process (every threat kind) imports no library module: such imports
    cost it up to a second (``torch.unravel_index`` loaded sympy and torch's symbolic shapes)."""
    code = """
import sys
import numpy as np
from stverify.network import Conv3d, Flatten, Linear, Network, ReLU
from stverify.verify import verify
rng = np.random.default_rng(0)
net = Network([Conv3d(rng.normal(size=(3, 1, 2, 3, 3)), np.zeros(3), (1, 1, 1), (0, 0, 0)), ReLU(), Flatten(),
               Linear(rng.normal(size=(2, 3 * 3 * 4 * 4)), np.zeros(2))], (1, 4, 6, 6))
x = rng.uniform(size=(1, 4, 6, 6))
y = int(net.predict(x))
before = set(sys.modules)
for threat in ("anyframes:k=1,eps=0.05", "anypatch:eps=0.05,len=2,h=2,w=2", "linf:eps=0.01"):
    verify(net, x, y, threat, method="stbp")
print(' '.join(sorted(set(sys.modules) - before)))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert [m for m in out if not m.startswith("stverify.")] == []
