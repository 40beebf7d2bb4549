"""A new user's residual model, as the issue tried it: a PyTorch module with ``x + conv(x)``, exported
to ONNX, verified from the command line and from the API, with the same verdict both ways (and
the same as the torch module imported directly)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import stverify as sv
from stverify.cli import main
from stverify.data import ensure_dataset


class SkipNet(nn.Module):
    """conv stem, a residual block y = relu(h + conv(relu(conv(h)))), max-pool, linear: on `video` (1x4x10x10)."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv3d(1, 3, 3, padding=1)
        self.c1, self.c2 = nn.Conv3d(3, 3, 3, padding=1), nn.Conv3d(3, 3, 3, padding=1)
        self.fc = nn.Linear(3 * 4 * 5 * 5, 4)

    def forward(self, x):
        h = F.relu(self.stem(x))
        h = F.relu(h + self.c2(F.relu(self.c1(h))))
        return self.fc(torch.flatten(F.max_pool3d(h, (1, 2, 2)), 1))


def trained(model: nn.Module, epochs: int = 4) -> nn.Module:
    """A few epochs of plain training on the generated `video` dataset, as a user would."""
    X, y = sv.load_npz(ensure_dataset("video"), "train")
    X, y = torch.as_tensor(X, dtype=torch.float32), torch.as_tensor(y, dtype=torch.int64)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(epochs):
        for a in range(0, len(X), 50):
            opt.zero_grad()
            F.cross_entropy(model(X[a:a + 50]), y[a:a + 50]).backward()
            opt.step()
    return model.eval()


@pytest.fixture(scope="module")
def user_model(tmp_path_factory):
    torch.manual_seed(0)
    model = trained(SkipNet())
    path = tmp_path_factory.mktemp("user") / "skipnet.onnx"
    torch.onnx.export(model, (torch.zeros(1, 1, 4, 10, 10),), str(path), dynamo=False, opset_version=13)
    return model, path


@pytest.mark.parametrize("threat", ["anyframes:k=1,eps=8/255", "linf:eps=32/255", "anypatch:eps=16/255,len=2,h=3,w=3"])
@pytest.mark.parametrize("method", ["milp", "bab"])
def test_cli_and_api_give_the_same_verdict(user_model, threat, method, capsys, torch_one_thread):
    model, path = user_model
    net = sv.load_network(str(path))
    assert not net.is_chain and any(type(n).__name__ == "Add" for n in net.layers)
    x, _ = sv.load_sample(ensure_dataset("video"), split="test", index=0)
    y = int(net.predict(x))  # the untrained model's own class: the question is its robustness
    api = sv.verify(net, x, y, threat, method=method, timeout=60)
    direct = sv.verify(sv.load_network(model, input_shape=(1, 4, 10, 10)), x, y, threat, method=method, timeout=60)
    assert main(["verify", "--model", str(path), "--data", "video", "--index", "0", "--label", str(y), "--threat", threat,
                 "--method", method, "--timeout", "60", "--json", "--counterexample"]) == 0
    cli = json.loads(capsys.readouterr().out)
    assert api.status == direct.status == cli["status"]
    assert api.status in ("verified", "falsified")
    if api.status == "falsified":
        assert sv.parse_threat(threat).contains(x, np.asarray(cli["counterexample"]).reshape(x.shape))


def test_the_verdicts_above_are_not_all_alike(user_model):
    model, path = user_model
    net = sv.load_network(str(path))
    x, _ = sv.load_sample(ensure_dataset("video"), split="test", index=0)
    y = int(net.predict(x))
    statuses = {sv.verify(net, x, y, t, method="milp", timeout=60).status
                for t in ("anyframes:k=1,eps=8/255", "linf:eps=32/255", "anypatch:eps=16/255,len=2,h=3,w=3")}
    assert statuses == {"verified", "falsified"}
