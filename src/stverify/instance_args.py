"""The command-line options that pick instances: a model, a dataset, a split, input indices, a label."""
from __future__ import annotations


def add_instance_arguments(parser, *, model_required: bool = True, many: bool = False,
                           data_help: str = "MedMNIST-format .npz or zoo dataset name (default: the zoo model's "
                                            "dataset)") -> None:
    """``--model --arch --data --split --index --label``; ``many``: ``--index`` takes several indices."""
    parser.add_argument("--model", required=model_required,
                        help="zoo model name, .onnx file, or .pt state file (with --arch)")
    parser.add_argument("--arch", help="zoo architecture for a .pt state file (loaded with weights_only=True)")
    parser.add_argument("--data", help=data_help)
    parser.add_argument("--split", default="test", choices=("train", "val", "test"))
    if many:
        parser.add_argument("--index", type=int, nargs="+", default=[0], help="input indices (default 0)")
    else:
        parser.add_argument("--index", type=int, default=0, help="input index (default 0)")
    parser.add_argument("--label", type=int, help="class to verify, 0..n_classes-1 (default: the dataset label)")
