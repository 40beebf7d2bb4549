"""VNN-LIB properties (the subset VNN-COMP classifier benchmarks use): read them, write them, verify them.

A VNN-LIB file (SMT-LIB syntax) declares the network's inputs ``X_0 .. X_{n-1}`` (the ONNX input
flattened row-major, for stverify C x T x H x W) and outputs ``Y_0 .. Y_{m-1}`` as ``Real`` constants,
and asserts constraints.  Their conjunction describes a *counterexample*: an input of the input set
whose outputs lie in the unsafe output set.  ``sat`` means one exists, ``unsat`` that none does.

Read (``parse_vnnlib``):
  * ``(declare-const X_i Real)`` / ``(declare-const Y_j Real)``; ``set-logic``, ``set-info``,
    ``set-option``, ``check-sat``, ``get-model`` and ``exit`` are ignored; comments ``;`` to end of line.
  * Atoms ``(<= a b)``, ``(>= a b)``, ``(< a b)``, ``(> a b)``, ``(= a b)`` (chains ``(<= a b c)`` too)
    between linear terms: numbers, ``X_i`` / ``Y_j``, ``(+ ...)``, ``(- ...)``, ``(* c t)``, ``(/ t c)``
    with constant c, on both sides; joined by ``and`` / ``or`` at any depth.
  * An assert mentions only X (input), only Y (output), or is a plain conjunction of both; an
    assert that mixes X and Y inside a disjunction is refused (stverify reads one input set and one
    output set).  Each X atom must bound one X_i by a constant; the input asserts together give a
    union of boxes (the top-level bounds intersected with every disjunct of each input
    disjunction), the output asserts the unsafe set  U = OR_k AND_i (c_ki . Y + d_ki >= 0)
    (``>`` for strict atoms) in disjunctive normal form.
  * Numbers are read exactly (as rationals) and every constant that reaches a bound or a
    coefficient is rounded once to the nearest float64, as every VNN-COMP tool reads them; the set
    that is verified is the one with those float64 bounds.  Strict input bounds are read as their
    closure.

Verify (``load_vnnlib(path, net)`` -> ``VnnlibProperty``): the input set becomes a ``threats.Boxes``
threat (one query for a union of boxes: every method encodes the choice of member itself, e.g. one
MILP binary per member), x0 its reference point.  The output property becomes the robustness
question every stverify method answers, min over the set of  margin = z_label - max_{j != label} z_j:
  * the robustness form  OR_{j != y} (Y_j >= Y_y)  (every j != y, ``>=`` or ``>``) is label y on the
    network itself: margin = min_j (Y_y - Y_j);
  * anything else appends exact layers to the network: a Linear layer r = C Y + d (all atoms), then
    per disjunct k the minimum z_k = min_i r_ki by a tree of min(a, b) = a - ReLU(a - b) with the
    pass-through a = ReLU(a) - ReLU(-a) (weights 0 and +-1, so the composition is exact in real
    arithmetic), and outputs (0, z_1, ..., z_K) with label 0:  margin = min_k max_i (-r_ki).
In both cases a point is a counterexample (all atoms of some disjunct hold) iff margin <= 0 there
(margin < 0 for strict atoms).  stverify reports ``verified`` only for margin > 0 on the whole set
and ``falsified`` only for a point of margin < 0, so a point with margin exactly 0, which satisfies
``>=``, leaves the answer at ``unknown``, never ``unsat``.  Every ``sat`` witness is checked against
the *original* network and the parsed property, in float64 and float32 (``check_witness``), before
it is reported.

Write (``write_vnnlib``): a threat set around x0 (a union of member boxes as one disjunctive file:
bounds common to every member at top level, one ``(and ...)`` per member for the rest) and the
robustness property of a label (or any ``OutputSpec``); ``write_member_files`` writes one file per
member box.  Numbers are written as the shortest decimal that reads back as the same float64.
"""
from __future__ import annotations

import itertools
import math
import re
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch

from ..errors import InputError
from ..network.layers import Linear, Network, ReLU
from ..threats import DEFAULT_DOMAIN, Boxes, Threat
from .vnncomp import STATUS_TO_RESULT, Witness

MAX_BOX_ENTRIES = 20_000_000  # members x inputs of a parsed input set (the boxes are held as K x n arrays)
MAX_OUTPUT_DISJUNCTS = 10_000  # disjuncts of the output property after distributing its asserts
MAX_DNF_TERMS = 100_000  # conjunctions one (and ...) of disjunctions may expand to
MAX_BOUNDS = 1_000_000  # bounds (two per free input per member) one written file may hold: ~35 MB of text
IGNORED_COMMANDS = {"set-logic", "set-info", "set-option", "check-sat", "get-model", "exit"}
_COMMENT = re.compile(r";[^\n]*")
_TOKEN = re.compile(r"\(|\)|[^\s()]+")
_VAR = re.compile(r"([XY])_(\d+)$")
_NUMBER = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$")
_COMPARISONS = {"<=", ">=", "<", ">", "="}


# --- the property ----------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Atom:
    """c . Y + d >= 0 (> 0 when ``strict``)."""

    coef: np.ndarray
    const: float
    strict: bool = False

    def value(self, y: np.ndarray) -> np.ndarray:
        return np.asarray(y, dtype=np.float64) @ self.coef + self.const

    def holds(self, y: np.ndarray) -> np.ndarray:
        v = self.value(y)
        return v > 0 if self.strict else v >= 0


@dataclass(frozen=True, eq=False)
class OutputSpec:
    """The unsafe output set: OR over ``disjuncts`` of AND over their atoms."""

    disjuncts: tuple[tuple[Atom, ...], ...]
    n_outputs: int

    @classmethod
    def robustness(cls, label: int, n_outputs: int) -> "OutputSpec":
        """Some class j != label scores at least as high as ``label``: OR_j (Y_j >= Y_label)."""
        if not 0 <= label < n_outputs:
            raise InputError(f"label {label} out of range for {n_outputs} outputs")
        rows = np.eye(n_outputs) - np.eye(n_outputs)[label]
        return cls(tuple((Atom(rows[j], 0.0),) for j in range(n_outputs) if j != label), n_outputs)

    def robustness_label(self) -> int | None:
        """y if the property is exactly OR over every j != y of (Y_j >= Y_y) (or >), else None."""
        if not all(len(d) == 1 for d in self.disjuncts) or len(self.disjuncts) != self.n_outputs - 1:
            return None
        pairs = set()
        for (a,) in self.disjuncts:
            nz = np.flatnonzero(a.coef)
            if a.const != 0 or len(nz) != 2 or sorted(a.coef[nz]) != [-1.0, 1.0]:
                return None
            pairs.add((int(nz[a.coef[nz] > 0][0]), int(nz[a.coef[nz] < 0][0])))
        labels = {y for _, y in pairs}
        if len(labels) != 1:
            return None
        y = labels.pop()
        return y if {j for j, _ in pairs} == set(range(self.n_outputs)) - {y} else None

    def unsafe(self, y: np.ndarray) -> bool:
        """Whether the outputs y lie in the unsafe set."""
        return any(all(bool(a.holds(y)) for a in d) for d in self.disjuncts)

    def margin(self, y: np.ndarray) -> float:
        """min_k max_i (-(c_ki . y + d_ki)): > 0 means y is safe, < 0 unsafe (module docstring)."""
        return min(max(-float(a.value(y)) for a in d) for d in self.disjuncts)


@dataclass(frozen=True, eq=False)
class VnnlibSpec:
    """A parsed file: the input set (a union of K boxes over the n flattened inputs) and the output property."""

    path: str
    lo: np.ndarray  # K x n
    hi: np.ndarray
    output: OutputSpec

    @property
    def n_inputs(self) -> int:
        return self.lo.shape[1]

    @property
    def n_outputs(self) -> int:
        return self.output.n_outputs

    def threat(self, shape) -> Boxes:
        """The input set as a stverify threat over inputs of ``shape`` (C x T x H x W)."""
        k = len(self.lo)
        return Boxes.of(self.lo.reshape((k,) + tuple(shape)), self.hi.reshape((k,) + tuple(shape)))


@dataclass
class WitnessCheck:
    """A candidate counterexample checked against the original network and the parsed property."""

    ok: bool
    x: np.ndarray  # flat input
    y64: np.ndarray  # outputs of the float64 reference
    y32: np.ndarray  # outputs of the float32 model
    in_set: bool
    unsafe64: bool
    unsafe32: bool

    @property
    def reason(self) -> str:
        if self.ok:
            return ""
        if not self.in_set:
            return "the point is not in the input set"
        return f"the outputs are not in the unsafe set (float64: {self.unsafe64}, float32: {self.unsafe32})"


@dataclass
class VnnlibProperty:
    """A VNN-LIB property bound to a network, ready for ``verify`` (module docstring)."""

    spec: VnnlibSpec
    network: Network  # the original network
    threat: Boxes  # the input set
    x0: np.ndarray  # a point of it (the threat's reference point)
    target: Network  # the network whose label margin decides the property
    label: int
    stats: dict = field(default_factory=dict)

    def verify(self, method: str = "bab", timeout: float | None = None, **options):
        """``stverify.verify`` on (target, x0, label, threat); a ``falsified`` answer's counterexample
        is a point of the input set with margin < 0, i.e. an unsafe one (see ``check_witness``)."""
        from ..verify import verify

        return verify(self.target, self.x0, self.label, self.threat, method=method, timeout=timeout, **options)

    def check_witness(self, x: np.ndarray) -> WitnessCheck:
        """Is x in the input set (exactly) and are the original network's outputs at x unsafe, in the
        float64 reference and in the float32 model?"""
        x = np.asarray(x, dtype=np.float64).reshape(self.network.input_shape)
        y64 = self.network.forward(x)
        with torch.no_grad():
            y32 = self.network.to_torch(torch.float32)(torch.as_tensor(x[None], dtype=torch.float32))[0].double().numpy()
        in_set = self.threat.contains(x, x, tol=0.0)
        u64, u32 = self.spec.output.unsafe(y64), self.spec.output.unsafe(y32)
        return WitnessCheck(in_set and u64 and u32, x.ravel(), y64, y32, in_set, u64, u32)

    def witness(self, x: np.ndarray) -> WitnessCheck:
        """The check of x, or of x rounded to float32 when that point passes too (an ONNX runtime
        reads the witness in float32, so a float32-exact witness is read exactly)."""
        x = np.asarray(x, dtype=np.float64)
        exact = self.check_witness(x.astype(np.float32).astype(np.float64))
        return exact if exact.ok else self.check_witness(x)

    def answer(self, res) -> tuple[str, Witness | None, str]:
        """(VNN-COMP result, witness for ``sat``, a note) for a VerifyResult of ``verify``."""
        result = STATUS_TO_RESULT[res.status]
        if result != "sat":
            return result, None, res.message
        w = self.witness(res.counterexample)
        if not w.ok:  # cannot happen when the reduction is right; never report an unchecked sat
            return "unknown", None, f"the counterexample fails the check on the original network: {w.reason}"
        return "sat", Witness(w.x, w.y64), f"witness checked on the original network (property margin " \
                                           f"{self.spec.output.margin(w.y64):.6g} in float64)"


# --- reading -----------------------------------------------------------------------------------


class _Lexer:
    """The tokens of an SMT-LIB text, comments removed; a line number is worked out only for an error."""

    def __init__(self, text: str, where: str):
        self.text = _COMMENT.sub("", text)  # keeps the newlines, so lines still count right
        self.where = where
        self.toks = _TOKEN.findall(self.text)
        self.i = 0

    def peek(self, ahead: int = 0) -> str | None:
        k = self.i + ahead
        return self.toks[k] if k < len(self.toks) else None

    def next(self) -> str | None:
        tok = self.peek()
        self.i += 1
        return tok

    def line(self, at: int | None = None) -> int:
        """The line of token ``at`` (default: the last one read)."""
        at = max(0, min(self.i - 1 if at is None else at, len(self.toks) - 1))
        for k, m in enumerate(_TOKEN.finditer(self.text)):
            if k == at:
                return self.text.count("\n", 0, m.start()) + 1
        return self.text.count("\n") + 1

    def error(self, what: str, at: int | None = None) -> InputError:
        return InputError(f"{self.where}:{self.line(at)}: {what}")

    def expect(self, want: str, context: str) -> None:
        tok = self.next()
        if tok != want:
            raise self.error(f"expected {want!r} {context}, found {_shown(tok)}")

    def skip_list(self) -> None:
        """Skip to the ')' closing the list whose '(' was read."""
        depth = 1
        while depth:
            tok = self.next()
            if tok is None:
                raise self.error("unexpected end of file: a '(' is never closed")
            depth += {"(": 1, ")": -1}.get(tok, 0)


def _shown(tok) -> str:
    return "the end of the file" if tok is None else repr(tok)


@dataclass
class _Conj:
    """A conjunction: bounds of single inputs (index -> [lo, hi]) and output atoms (coef dict, const, strict)."""

    x: dict = field(default_factory=dict)
    y: list = field(default_factory=list)

    def merge_bound(self, i: int, bound: list) -> None:
        b = self.x.get(i)
        if b is None:
            self.x[i] = list(bound)
        else:
            b[0], b[1] = max(b[0], bound[0]), min(b[1], bound[1])

    def merge(self, other: "_Conj") -> "_Conj":
        for i, bound in other.x.items():
            self.merge_bound(i, bound)
        self.y.extend(other.y)
        return self

    def copy(self) -> "_Conj":
        return _Conj({i: list(b) for i, b in self.x.items()}, list(self.y))


class _Parser:
    def __init__(self, text: str, where: str):
        self.lex = _Lexer(text, where)
        self.where = where
        self.declared: dict[str, set[int]] = {"X": set(), "Y": set()}
        self.common = _Conj()  # conjunctions asserted outside any disjunction
        self.x_factors: list[list[dict]] = []  # input disjunctions: lists of bound dicts
        self.y_factors: list[list[list]] = []  # output disjunctions: lists of atom lists

    # --- commands ---
    def run(self) -> None:
        lex = self.lex
        while (tok := lex.next()) is not None:
            if tok != "(":
                raise lex.error(f"expected '(' starting a command, found {tok!r}")
            head = lex.next()
            if head == "declare-const":
                self.declare()
            elif head == "assert":
                at = lex.i
                self.add_assert(self.formula(), at)
                lex.expect(")", "closing the assert")
            elif head in IGNORED_COMMANDS:
                lex.skip_list()
            else:
                raise lex.error(f"expected declare-const or assert, found {_shown(head)}")

    def declare(self) -> None:
        lex = self.lex
        name, sort = lex.next(), lex.next()
        m = _VAR.match(name or "")
        if m is None:
            raise lex.error(f"expected a variable named X_<i> (input) or Y_<j> (output), found {_shown(name)}")
        if sort != "Real":
            raise lex.error(f"{name}: expected sort Real, found {_shown(sort)}")
        lex.expect(")", f"closing the declaration of {name}")
        self.declared[m.group(1)].add(int(m.group(2)))

    def add_assert(self, dnf: list[_Conj], at: int) -> None:
        if len(dnf) == 1:
            self.common.merge(dnf[0])
            return
        has_x, has_y = any(c.x for c in dnf), any(c.y for c in dnf)
        if has_x and has_y:
            raise self.lex.error("this assert mixes input (X) and output (Y) constraints inside a disjunction; stverify "
                                 "reads one input set (asserts over X) and one output set (asserts over Y)", at)
        if has_x:
            self.x_factors.append([c.x for c in dnf])
        elif has_y:
            self.y_factors.append([c.y for c in dnf])

    # --- formulas: each returns its disjunctive normal form, a list of _Conj ---
    def formula(self) -> list[_Conj]:
        lex = self.lex
        if (b := self.simple_bound()) is not None:
            return [_Conj({b[0]: b[1]})]
        if lex.next() != "(":
            raise lex.error("expected a formula '(and ...)', '(or ...)' or a comparison such as '(<= X_0 0.5)'")
        op = lex.next()
        if op in ("and", "or"):
            parts, bounds = [], _Conj()
            while lex.peek() == "(":
                if op == "and" and (b := self.simple_bound()) is not None:  # the common case, merged in place
                    bounds.merge_bound(*b)
                else:
                    parts.append(self.formula())
            lex.expect(")", f"closing ({op} ...)")
            if bounds.x:
                parts.append([bounds])
            if op == "or" and not parts:
                raise lex.error("(or) without disjuncts is false: the property could never be violated")
            return _or(parts) if op == "or" else _and(parts, self.lex)
        if op in _COMPARISONS:
            at = lex.i - 1
            terms = []
            while lex.peek() != ")":
                if lex.peek() is None:
                    raise lex.error(f"unexpected end of file inside ({op} ...)")
                terms.append(self.term())
            lex.next()
            if len(terms) < 2:
                raise lex.error(f"({op} ...) needs two terms, found {len(terms)}")
            conj = _Conj()
            for a, b in zip(terms, terms[1:]):
                for c in self.atoms(op, a, b, at):
                    conj.merge(c)
            return [conj]
        raise lex.error(f"expected and, or, or a comparison (<=, >=, <, >, =), found {_shown(op)}")

    def term(self):
        """A linear term: (coefficients {('X'|'Y', index): Fraction}, constant Fraction), or a bare
        token (a variable name or a number), which ``linear`` reads."""
        lex = self.lex
        tok = lex.next()
        if tok is None or tok == ")":
            raise lex.error(f"expected a number, a variable or '(', found {_shown(tok)}")
        if tok != "(":
            return tok
        op = lex.next()
        args = []
        while lex.peek() != ")":
            if lex.peek() is None:
                raise lex.error(f"unexpected end of file inside ({op} ...)")
            args.append(self.linear(self.term()))
        lex.next()
        if op == "+" and args:
            return _sum(args)
        if op == "-" and args:
            return _scale(args[0], -1) if len(args) == 1 else _sum([args[0]] + [_scale(a, -1) for a in args[1:]])
        if op == "*" and args:
            if sum(1 for a in args if a[0]) > 1:
                raise lex.error("(* ...) multiplies two variables; only linear terms are supported")
            c = math.prod((a[1] for a in args if not a[0]), start=Fraction(1))
            var = next((a for a in args if a[0]), None)
            return _scale(var, c) if var else ({}, c)
        if op == "/" and len(args) == 2 and not args[1][0]:
            if args[1][1] == 0:
                raise lex.error("division by zero")
            return _scale(args[0], 1 / args[1][1])
        raise lex.error(f"expected a linear term (+, -, * or / by a constant), found ({_shown(op)} with {len(args)} argument(s))")

    def linear(self, t):
        """A token or a term as (coefficients, constant)."""
        if not isinstance(t, str):
            return t
        m = _VAR.match(t)
        if m:
            return {self.variable(m): Fraction(1)}, Fraction(0)
        if _NUMBER.match(t):
            return {}, Fraction(t)
        raise self.lex.error(f"expected a number or a variable X_<i> / Y_<j>, found {t!r}")

    def variable(self, m) -> tuple[str, int]:
        kind, i = m.group(1), int(m.group(2))
        if i not in self.declared[kind]:
            raise self.lex.error(f"{kind}_{i} is used but not declared (expected (declare-const {kind}_{i} Real) first)")
        return kind, i

    def simple_bound(self) -> tuple[int, list] | None:
        """If the next tokens are (op X_i number) or (op number X_i) with op <=, >=, <, > or =, read
        them and return (i, [lo, hi]); else read nothing and return None (a fast path, for the
        thousands of bounds a file may hold)."""
        toks, k = self.lex.toks, self.lex.i
        if k + 4 >= len(toks) or toks[k] != "(" or toks[k + 4] != ")" or toks[k + 1] not in _COMPARISONS:
            return None
        op, a, b = toks[k + 1:k + 4]
        for var, num, flipped in ((a, b, False), (b, a, True)):
            if var[:2] == "X_" and var[2:].isdigit() and _NUMBER.match(num):
                i = int(var[2:])
                if i not in self.declared["X"]:
                    return None  # the general path reports it
                self.lex.i += 5
                return i, _interval(op, float(num), flipped)
        return None

    def atoms(self, op: str, a, b, at: int) -> list[_Conj]:
        """The comparison (op a b) as conjunctions of one bound or one output atom each."""
        (ca, ka), (cb, kb) = self.linear(a), self.linear(b)
        coef, const = _sum([(ca, ka), _scale((cb, kb), -1)])  # a - b
        kinds = {var[0] for var, c in coef.items() if c != 0}
        if not kinds:
            raise self.lex.error(f"({op} ...) compares constants; expected a constraint on X_<i> or Y_<j>", at)
        if kinds == {"X", "Y"}:
            raise self.lex.error(f"({op} ...) relates inputs and outputs; expected a bound of one X_<i> or a "
                                 "constraint over Y_<j>", at)
        if kinds == {"X"}:
            nz = [(i, c) for (_, i), c in coef.items() if c != 0]
            if len(nz) != 1:
                raise self.lex.error(f"({op} ...) involves {len(nz)} inputs; input constraints must bound one X_<i> "
                                     "by a constant (boxes)", at)
            (i, c), = nz
            # c X_i + const (op) 0  <=>  X_i (op, flipped if c < 0) -const / c
            return [_Conj({i: _interval(op, float(-const / c), flipped=c < 0)})]
        ycoef = {i: c for (_, i), c in coef.items() if c != 0}
        signs = {">=": [1], ">": [1], "<=": [-1], "<": [-1], "=": [1, -1]}[op]
        strict = op in ("<", ">")
        return [_Conj(y=[({i: float(s * c) for i, c in ycoef.items()}, float(s * const), strict)]) for s in signs]

    # --- the result ---
    def result(self) -> tuple[int, int, np.ndarray, np.ndarray, list]:
        for kind in ("X", "Y"):
            got = self.declared[kind]
            if sorted(got) != list(range(len(got))):
                missing = sorted(set(range(max(got) + 1)) - got)[:5]
                raise InputError(f"{self.where}: the {kind} variables must be {kind}_0..{kind}_<n-1>; "
                                 f"missing {', '.join(f'{kind}_{m}' for m in missing)}")
        n, m = len(self.declared["X"]), len(self.declared["Y"])
        if n == 0:
            raise InputError(f"{self.where}: no input declared (expected (declare-const X_0 Real) ...)")
        if m == 0:
            raise InputError(f"{self.where}: no output declared (expected (declare-const Y_0 Real) ...)")
        lo, hi = self.boxes(n)
        disjuncts = self.output_disjuncts()
        return n, m, lo, hi, disjuncts

    def boxes(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        members = math.prod(len(f) for f in self.x_factors)
        if members * n > MAX_BOX_ENTRIES:
            raise InputError(f"{self.where}: the input set has {members} boxes of {n} inputs, over the limit of "
                             f"{MAX_BOX_ENTRIES:,} entries")
        base_lo, base_hi = np.full(n, -np.inf), np.full(n, np.inf)
        for i, (a, b) in self.common.x.items():
            base_lo[i], base_hi[i] = a, b
        los, his = [], []
        for pick in itertools.product(*self.x_factors):
            lo, hi = base_lo.copy(), base_hi.copy()
            for bounds in pick:
                if bounds:
                    idx = np.fromiter(bounds.keys(), dtype=np.int64, count=len(bounds))
                    v = np.array(list(bounds.values()))
                    lo[idx], hi[idx] = np.maximum(lo[idx], v[:, 0]), np.minimum(hi[idx], v[:, 1])
            los.append(lo)
            his.append(hi)
        lo, hi = np.stack(los), np.stack(his)
        for bound, side in zip((lo, hi), ("lower", "upper")):
            bad = ~np.isfinite(bound)
            if bad.any():
                box, i = np.argwhere(bad)[0]
                inside = f" in input box {box} (of {len(lo)})" if len(lo) > 1 else ""
                raise InputError(f"{self.where}: X_{i} has no {side} bound{inside}; every input needs both bounds")
        keep = np.all(lo <= hi, axis=1)
        if not keep.any():
            raise InputError(f"{self.where}: the input set is empty (a lower bound exceeds an upper bound in every box)")
        return lo[keep], hi[keep]

    def output_disjuncts(self) -> list:
        count = math.prod(len(f) for f in self.y_factors)
        if count > MAX_OUTPUT_DISJUNCTS:
            raise InputError(f"{self.where}: the output property has {count} disjuncts after distributing its asserts, "
                             f"over the limit of {MAX_OUTPUT_DISJUNCTS}")
        out = [list(self.common.y) + [a for part in pick for a in part] for pick in itertools.product(*self.y_factors)]
        if not any(out):
            raise InputError(f"{self.where}: no output constraint: expected an assert over Y_<j> (the unsafe outputs)")
        if not all(out):
            raise InputError(f"{self.where}: an output disjunct has no constraint (every output would be unsafe)")
        return out


def _sum(terms):
    coef: dict = {}
    const = Fraction(0)
    for c, k in terms:
        for v, a in c.items():
            coef[v] = coef.get(v, 0) + a
        const += k
    return coef, const


def _scale(term, s):
    c, k = term
    return {v: a * s for v, a in c.items()}, k * s


def _interval(op: str, value: float, flipped: bool) -> list:
    """[lo, hi] of X_i from (op X_i value), or from (op value X_i) when ``flipped`` (strict read as closed)."""
    if op == "=":
        return [value, value]
    upper = (op in ("<=", "<")) != flipped  # X_i <= value
    return [-np.inf, value] if upper else [value, np.inf]


def _or(parts: list[list[_Conj]]) -> list[_Conj]:
    return [c for p in parts for c in p]


def _and(parts: list[list[_Conj]], lex: _Lexer) -> list[_Conj]:
    out = [_Conj()]
    for p in parts:
        if len(p) == 1:
            for c in out:
                c.merge(p[0])
        else:
            if len(out) * len(p) > MAX_DNF_TERMS:
                raise lex.error(f"(and ...) of disjunctions expands to {len(out) * len(p)} disjuncts, over the limit of {MAX_DNF_TERMS:,}")
            out = [c.copy().merge(d) for c in out for d in p]
    return out


def parse_vnnlib_text(text: str, where: str = "<vnnlib>") -> VnnlibSpec:
    """Parse VNN-LIB text (module docstring); errors name ``where`` and the line."""
    p = _Parser(text, where)
    p.run()
    n, m, lo, hi, disjuncts = p.result()
    atoms = []
    for d in disjuncts:
        row = []
        for coef, const, strict in d:
            c = np.zeros(m)
            for j, v in coef.items():
                c[j] = v
            row.append(Atom(c, const, strict))
        atoms.append(tuple(row))
    return VnnlibSpec(where, lo, hi, OutputSpec(tuple(atoms), m))


def parse_vnnlib(path) -> VnnlibSpec:
    """Parse a VNN-LIB file (``.vnnlib``, or gzip-compressed ``.vnnlib.gz`` as VNN-COMP ships them)."""
    path = Path(path)
    try:
        raw = path.read_bytes()
        if path.suffix == ".gz":
            import gzip

            raw = gzip.decompress(raw)
        text = raw.decode()
    except (OSError, UnicodeDecodeError, EOFError) as e:
        raise InputError(f"{path}: cannot read the VNN-LIB file ({e})") from None
    return parse_vnnlib_text(text, str(path))


# --- verifying -------------------------------------------------------------------------------


def spec_network(net: Network, output: OutputSpec) -> tuple[Network, int]:
    """(network, label) whose label margin is min_k max_i (-r_ki) (module docstring)."""
    y = output.robustness_label()
    if y is not None:
        return net, y
    atoms = [a for d in output.disjuncts for a in d]
    C = np.stack([a.coef for a in atoms])
    d = np.array([a.const for a in atoms])
    groups, start = [], 0
    for dis in output.disjuncts:
        groups.append([{start + i: 1.0} for i in range(len(dis))])  # each value: {index of h: weight}
        start += len(dis)
    if all(len(g) == 1 for g in groups):  # no minimum to take: select the rows (exact) after a zero row
        return Network(list(net.layers) + [Linear(np.vstack([np.zeros(C.shape[1]), C]), np.r_[0.0, d])],
                       net.input_shape, net.name + "+spec"), 0
    layers = list(net.layers) + [Linear(C, d)]
    width = len(atoms)  # h: the current layer output; every value is a combination of h
    while any(len(g) > 1 for g in groups):
        rows: list[dict] = []

        def relu_of(combo: dict) -> int:
            rows.append(combo)
            return len(rows) - 1

        new_groups = []
        for g in groups:
            ng = []
            for pair in (g[i:i + 2] for i in range(0, len(g), 2)):
                a = pair[0]
                pos, neg = relu_of(a), relu_of({k: -w for k, w in a.items()})
                if len(pair) == 1:  # a = ReLU(a) - ReLU(-a)
                    ng.append({pos: 1.0, neg: -1.0})
                else:  # min(a, b) = a - ReLU(a - b)
                    diff = dict(a)
                    for k, w in pair[1].items():
                        diff[k] = diff.get(k, 0.0) - w
                    ng.append({pos: 1.0, neg: -1.0, relu_of(diff): -1.0})
            new_groups.append(ng)
        layers += [Linear(_matrix(rows, width), np.zeros(len(rows))), ReLU()]
        groups, width = new_groups, len(rows)
    out = [{}] + [g[0] for g in groups]
    layers.append(Linear(_matrix(out, width), np.zeros(len(out))))
    return Network(layers, net.input_shape, net.name + "+spec"), 0


def _matrix(rows: list[dict], width: int) -> np.ndarray:
    W = np.zeros((len(rows), width))
    for r, combo in enumerate(rows):
        for k, w in combo.items():
            W[r, k] += w
    return W


def load_vnnlib(path, net) -> VnnlibProperty:
    """Read a VNN-LIB file for ``net`` (a Network or anything ``load_network`` accepts)."""
    from ..network.load import load_network

    net = load_network(net)
    spec = parse_vnnlib(path) if not isinstance(path, VnnlibSpec) else path
    size = int(np.prod(net.input_shape))
    if spec.n_inputs != size:
        raise InputError(f"{spec.path}: declares {spec.n_inputs} inputs X_0..X_{spec.n_inputs - 1}, but the network's input "
                         f"{'x'.join(map(str, net.input_shape))} has {size} entries")
    if spec.n_outputs != net.n_classes:
        raise InputError(f"{spec.path}: declares {spec.n_outputs} outputs Y_j, but the network has {net.n_classes}")
    threat = spec.threat(net.input_shape)
    target, label = spec_network(net, spec.output)
    stats = {"members": len(spec.lo), "output_disjuncts": len(spec.output.disjuncts),
             "reduction": "label" if target is net else f"{len(target.layers) - len(net.layers)} appended layer(s)"}
    return VnnlibProperty(spec, net, threat, threat.reference, target, label, stats)


# --- writing ---------------------------------------------------------------------------------


def _num(v: float) -> str:
    """The shortest plain decimal that reads back as the float64 v (no exponent: SMT-LIB has none)."""
    if not math.isfinite(v):
        raise ValueError(f"VNN-LIB holds finite numbers only, got {v}")
    return np.format_float_positional(float(v), unique=True, trim="0")


def _atom_text(a: Atom) -> str:
    op = ">" if a.strict else ">="
    nz = np.flatnonzero(a.coef)
    if len(nz) == 1 and a.coef[nz[0]] in (1.0, -1.0):  # +-Y_j + d >= 0
        j, s = int(nz[0]), a.coef[nz[0]]
        return f"({op} Y_{j} {_num(-a.const)})" if s > 0 else f"({op.replace('>', '<')} Y_{j} {_num(a.const)})"
    if len(nz) == 2 and a.const == 0 and sorted(a.coef[nz]) == [-1.0, 1.0]:  # Y_i - Y_j >= 0
        i, j = int(nz[a.coef[nz] > 0][0]), int(nz[a.coef[nz] < 0][0])
        return f"({op} Y_{i} Y_{j})"
    terms = " ".join(f"(* {_num(a.coef[j])} Y_{j})" for j in nz) or "0.0"
    return f"({op} (+ {terms}) {_num(-a.const)})"


def format_vnnlib(lo: np.ndarray, hi: np.ndarray, output: OutputSpec, comment: str = "") -> str:
    """VNN-LIB text for the union of the boxes [lo_k, hi_k] (K x n arrays) and the unsafe set ``output``:
    bounds equal in every box at top level, one (and ...) per box for the others."""
    lo, hi = np.atleast_2d(lo), np.atleast_2d(hi)
    n = lo.shape[1]
    lines = [f"; {line}" for line in comment.splitlines()]
    lines += [f"(declare-const X_{i} Real)" for i in range(n)] + [f"(declare-const Y_{j} Real)" for j in range(output.n_outputs)]
    common = np.all((lo == lo[0]) & (hi == hi[0]), axis=0)
    for i in np.flatnonzero(common):
        lines += [f"(assert (<= X_{i} {_num(hi[0, i])}))", f"(assert (>= X_{i} {_num(lo[0, i])}))"]
    differ = np.flatnonzero(~common)
    if len(differ):
        lines.append("(assert (or")
        for k in range(len(lo)):
            lines.append("  (and " + " ".join(f"(<= X_{i} {_num(hi[k, i])}) (>= X_{i} {_num(lo[k, i])})" for i in differ) + ")")
        lines.append("))")
    if len(output.disjuncts) == 1:
        lines += [f"(assert {_atom_text(a)})" for a in output.disjuncts[0]]
    else:
        lines.append("(assert (or")
        lines += ["  (and " + " ".join(_atom_text(a) for a in d) + ")" for d in output.disjuncts]
        lines.append("))")
    return "\n".join(lines) + "\n"


def _output(label_or_spec, n_outputs: int | None) -> OutputSpec:
    if isinstance(label_or_spec, OutputSpec):
        return label_or_spec
    if n_outputs is None:
        raise ValueError("writing the robustness property of a label needs n_outputs (the network's class count)")
    return OutputSpec.robustness(int(label_or_spec), n_outputs)


def _member_arrays(threat: Threat, x0: np.ndarray, domain) -> tuple[np.ndarray, np.ndarray]:
    x0 = np.asarray(x0, dtype=np.float64)
    threat.validate(x0.shape)
    boxes = list(threat.member_boxes(x0, domain))
    return np.stack([b[0].ravel() for b in boxes]), np.stack([b[1].ravel() for b in boxes])


def write_vnnlib(path, threat: Threat, x0: np.ndarray, label_or_spec, n_outputs: int | None = None,
                 domain=DEFAULT_DOMAIN, comment: str = "", max_bounds: int = MAX_BOUNDS) -> Path:
    """Write S(x0) of ``threat`` (all its member boxes: one disjunctive file for a union) and the
    robustness property of a label (``n_outputs`` classes) or an ``OutputSpec`` to ``path``.

    A union writes two bounds per input that differs between members for every member: past
    ``max_bounds`` in all this is refused (``write_member_files`` writes one file per member)."""
    x0 = np.asarray(x0, dtype=np.float64)
    members = threat.n_members(x0.shape)
    free = int(np.broadcast_to(threat.perturbable(x0.shape)[None], x0.shape).sum())
    if members > 1 and 2 * members * free > max_bounds:
        raise InputError(f"{threat.spec()}: {members} member boxes x {free} perturbable inputs = {2 * members * free:,} bounds "
                         f"in one disjunctive VNN-LIB file, over the limit of {max_bounds:,}; write one file per member box "
                         f"instead (write_member_files, `stverify export --split-members`) or use a threat with fewer members")
    lo, hi = _member_arrays(threat, x0, domain)
    text = format_vnnlib(lo, hi, _output(label_or_spec, n_outputs), comment or f"stverify threat {threat.spec()}")
    path = Path(path)
    path.write_text(text)
    return path


def write_member_files(folder, stem: str, threat: Threat, x0: np.ndarray, label_or_spec, n_outputs: int | None = None,
                       domain=DEFAULT_DOMAIN, comment: str = "") -> list[Path]:
    """One VNN-LIB file per member box of S(x0), ``folder/{stem}_m{k}.vnnlib``; the property holds
    for the union iff it holds in every file (``unsat`` for all), and fails iff some file is ``sat``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    lo, hi = _member_arrays(threat, x0, domain)
    output = _output(label_or_spec, n_outputs)
    width = len(str(len(lo) - 1))
    out = []
    for k in range(len(lo)):
        p = folder / f"{stem}_m{k:0{width}d}.vnnlib"
        p.write_text(format_vnnlib(lo[k:k + 1], hi[k:k + 1], output,
                                   (comment or f"stverify threat {threat.spec()}") + f"\nmember box {k} of {len(lo)}"))
        out.append(p)
    return out
