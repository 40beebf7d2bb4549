"""Reading VNN-LIB (see the package docstring): an s-expression lexer and a parser of the subset
VNN-COMP classifier benchmarks use, into a ``VnnlibSpec``."""
from __future__ import annotations

import itertools
import math
import re
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np

from ...errors import InputError
from ...properties import Atom, OutputSpec
from .spec import VnnlibSpec

MAX_BOX_ENTRIES = 20_000_000  # members x inputs of a parsed input set (the boxes are held as K x n arrays)
MAX_OUTPUT_DISJUNCTS = 10_000  # disjuncts of the output property after distributing its asserts
MAX_DNF_TERMS = 100_000  # conjunctions one (and ...) of disjunctions may expand to
MAX_NESTING = 200  # formulas and terms nested deeper are refused (the parser recurses once per level)
IGNORED_COMMANDS = {"set-logic", "set-info", "set-option", "check-sat", "get-model", "exit"}
_COMMENT = re.compile(r";[^\n]*")
_TOKEN = re.compile(r"\(|\)|[^\s()]+")
_VAR = re.compile(r"([XY])_(\d+)$")
_NUMBER = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$")
_COMPARISONS = {"<=", ">=", "<", ">", "="}


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

    def nested(self, depth: int) -> int:
        """depth + 1, refused beyond MAX_NESTING (a file nested deeper is no property a benchmark states)."""
        if depth >= MAX_NESTING:
            raise self.lex.error(f"formulas or terms nested more than {MAX_NESTING} deep")
        return depth + 1

    # --- formulas: each returns its disjunctive normal form, a list of _Conj ---
    def formula(self, depth: int = 0) -> list[_Conj]:
        lex = self.lex
        if (b := self.simple_bound()) is not None:
            return [_Conj({b[0]: b[1]})]
        if lex.next() != "(":
            raise lex.error("expected a formula '(and ...)', '(or ...)' or a comparison such as '(<= X_0 0.5)'")
        depth = self.nested(depth)
        op = lex.next()
        if op in ("and", "or"):
            parts, bounds = [], _Conj()
            while lex.peek() == "(":
                if op == "and" and (b := self.simple_bound()) is not None:  # the common case, merged in place
                    bounds.merge_bound(*b)
                else:
                    parts.append(self.formula(depth))
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
                terms.append(self.term(depth))
            lex.next()
            if len(terms) < 2:
                raise lex.error(f"({op} ...) needs two terms, found {len(terms)}")
            conj = _Conj()
            for a, b in zip(terms, terms[1:]):
                for c in self.atoms(op, a, b, at):
                    conj.merge(c)
            return [conj]
        raise lex.error(f"expected and, or, or a comparison (<=, >=, <, >, =), found {_shown(op)}")

    def term(self, depth: int = 0):
        """A linear term: (coefficients {('X'|'Y', index): Fraction}, constant Fraction), or a bare
        token (a variable name or a number), which ``linear`` reads."""
        lex = self.lex
        tok = lex.next()
        if tok is None or tok == ")":
            raise lex.error(f"expected a number, a variable or '(', found {_shown(tok)}")
        if tok != "(":
            return tok
        depth = self.nested(depth)
        op = lex.next()
        args = []
        while lex.peek() != ")":
            if lex.peek() is None:
                raise lex.error(f"unexpected end of file inside ({op} ...)")
            args.append(self.linear(self.term(depth)))
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
