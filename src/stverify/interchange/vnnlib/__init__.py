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
    with constant c, on both sides; joined by ``and`` / ``or``, nested at most ``MAX_NESTING`` (200) deep.
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
question every stverify method answers, min over the set of  margin = z_label - max_{j != label} z_j,
by ``properties.reduce_to_label`` (the robustness form of a label is that label on the network itself;
anything else appends exact layers whose label margin is the property's margin min_k max_i (-r_ki)).
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
from ...properties import Atom, OutputSpec
from .property import VnnlibProperty, WitnessCheck, load_vnnlib
from .read import parse_vnnlib, parse_vnnlib_text
from .spec import VnnlibSpec
from .write import format_vnnlib, write_member_files, write_vnnlib

__all__ = ["Atom", "OutputSpec", "VnnlibProperty", "VnnlibSpec", "WitnessCheck", "format_vnnlib", "load_vnnlib",
           "parse_vnnlib", "parse_vnnlib_text", "write_member_files", "write_vnnlib"]
