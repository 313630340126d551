import json
import subprocess
import sys

import torch

import torchcorr
from torchcorr.cli import main


def test_info_text(capsys):
    assert main(["info"]) == 0
    text = capsys.readouterr().out
    assert f"torchcorr   {torchcorr.__version__}" in text
    assert torch.__version__ in text
    for b in torchcorr.backend_report():
        line = next(x for x in text.splitlines() if x.strip().startswith(b.name + " "))
        assert ("not available: " in line) != b.available, line
    for name in ("numba", "triton", "onnx", "onnxruntime", "onnxscript"):
        assert any(x.strip().startswith(name + " ") for x in text.splitlines()), name


def test_info_json_reasons(capsys, monkeypatch):
    monkeypatch.setenv("TORCHCORR_BACKEND", "torch")
    assert main(["info", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["torch"] == torch.__version__ and report["threads"] == torch.get_num_threads()
    assert report["backend_env"] == "torch"
    names = [b["name"] for b in report["backends"]]
    assert "torch" in names
    for b in report["backends"]:
        assert b["available"] or b["reason"], b  # every unavailable backend says why
    assert set(report["optional"]) == {"numba", "triton", "onnx", "onnxruntime", "onnxscript"}


def test_python_dash_m():
    out = subprocess.run([sys.executable, "-m", "torchcorr", "info"], capture_output=True, text=True, check=True)
    assert "backends (in dispatch order)" in out.stdout
