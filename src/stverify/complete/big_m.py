"""The big-M sources of the MILP (``--bounds``): name -> (relaxation, concretisation) of the
``certify`` call whose per-layer bounds become the big-M constants (``lp`` tightens them further
by per-neuron LPs, ``complete.lp_tighten``)."""
BOUND_SOURCES = {"naive": ("ibp", "box"), "stbp": ("crown", "threat"), "stbp-alpha": ("alpha-crown", "threat"),
                 "lp": ("crown", "threat")}
