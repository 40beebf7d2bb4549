"""Exact encodings of a network and a threat set: MILP (solver-neutral) and SMT (z3)."""
