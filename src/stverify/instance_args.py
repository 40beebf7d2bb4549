"""The command-line options that pick instances (a model, a dataset, how to read it, a split, input
indices, a label), and the reading of the data they pick."""
from __future__ import annotations

import re

from . import validation
from .data import DATASETS, LAYOUTS, Split, read_split
from .errors import InputError
from .properties import EXAMPLES as PROPERTY_EXAMPLES, parse_property

DATA_HELP = (f"an .npz file (N x C x T x H x W or N x T x H x W x C, one channel N x T x H x W; uint8 or float; "
             f"class labels or regression targets) or a dataset name ({', '.join(DATASETS)}); default: the zoo "
             "model's dataset")


def add_instance_arguments(parser, *, model_required: bool = True, many: bool = False, data_help: str = DATA_HELP) -> None:
    """``--model --arch --data --layout --domain --split --index --label``; ``many``: ``--index`` takes several."""
    parser.add_argument("--model", required=model_required,
                        help="zoo model name, .onnx file, or .pt state file (with --arch)")
    parser.add_argument("--arch", help="zoo architecture for a .pt state file (loaded with weights_only=True)")
    parser.add_argument("--data", help=data_help)
    parser.add_argument("--layout", choices=LAYOUTS, help="axis order of the inputs in --data: nCthw (N x C x T x H x W) "
                        "or nthwC (channel-last); default: the one the file states, else the one that gives the "
                        "model's input shape")
    parser.add_argument("--domain", metavar="LO,HI", help="the model's input domain (default 0,1): the data must lie in "
                        "it, and threats clip to it")
    parser.add_argument("--split", default="test", choices=("train", "val", "test"))
    if many:
        parser.add_argument("--index", type=int, nargs="+", default=[0], help="input indices (default 0)")
    else:
        parser.add_argument("--index", type=int, default=0, help="input index (default 0)")
    parser.add_argument("--label", type=int, help="class to verify, 0..n_classes-1 (default: the dataset label)")
    parser.add_argument("--property", metavar="SPEC", help="an output property instead of the label's robustness: "
                        + "; ".join(PROPERTY_EXAMPLES.values()) + " (see the README's property grammar)")


def instance_property(args, net, x, stored, sample: str):
    """(the property to verify: a class label or an ``OutputSpec``, the label when the property is
    stated about one, else None) from ``--property`` and ``--label`` (``stored``: the sample's own
    label or regression target; ``sample`` names it)."""
    if args.property is None:
        y = validation.chosen_label(args.label, stored, net.n_classes, sample)
        return y, y
    prop = parse_property(args.property)
    label = validation.chosen_label(args.label, stored, net.n_classes, sample) if prop.needs_label else args.label
    try:
        return validation.output_property(net, x, prop.bind(net, x, label)), label
    except InputError as e:
        raise type(e)(f"--property: {e}") from None


def glue_negative_domain(argv: list[str]) -> list[str]:
    """``--domain -1,1`` as ``--domain=-1,1``: argparse would take a value starting with ``-`` for an option."""
    out = []
    for arg in argv:
        if out and out[-1] == "--domain" and re.match(r"-[\d.]", arg):
            out[-1] = f"--domain={arg}"
        else:
            out.append(arg)
    return out


def domain_option(text: str | None) -> tuple[float, float] | None:
    """``--domain LO,HI`` as (lo, hi), checked; None when not given (the default domain)."""
    if text is None:
        return None
    parts = text.split(",")
    try:
        if len(parts) != 2:
            raise ValueError
        pair = tuple(float(p) for p in parts)
    except ValueError:
        raise InputError(f"--domain must be LO,HI such as 0,1 or -1,1, got {text!r}") from None
    try:
        return validation.domain(pair)
    except InputError as e:
        raise InputError(f"--domain: {e}") from None


def read_data(args, data, net) -> Split:
    """The ``--split`` of ``data`` (a file or dataset name), read for the model's input shape with
    ``--layout`` and checked against ``--domain``."""
    return read_split(data, args.split, layout=args.layout, input_shape=net.input_shape,
                      domain=domain_option(args.domain))
