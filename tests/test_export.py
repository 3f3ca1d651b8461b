"""prune-bench export: a finished DPM run's slimmed model as ONNX (checked here with onnxruntime),
torch.export and TorchScript files (loaded here by a Python that cannot import this project),
with a free batch dimension; export.json; and each failure as one line, exit 2, nothing left."""

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from conftest import run_cli
from prune_bench import cli
from prune_bench import export as export_module
from prune_bench.data import load_data
from prune_bench.engine.checkpoint import load_pruned_model
from prune_bench.errors import PruneBenchError
from prune_bench.export import FILES, INSTALL_HINT, TOLERANCE, export_run
from prune_bench.models import build_model

pytestmark = pytest.mark.usefixtures("one_thread")
BATCH_SIZES = (1, 3, 7)  # 3: neither size the export checked itself


@pytest.fixture(scope="module")
def exported(slimmed_run, tmp_path_factory):
    """`prune-bench export RUN --out OUT --format onnx,pt2,torchscript` as a user runs it."""
    out = tmp_path_factory.mktemp("export") / "out"
    result = run_cli(["export", str(slimmed_run), "--out", str(out), "--format", "onnx,pt2,torchscript"],
                     cwd=out.parent)
    return slimmed_run, out, result


def images(n: int) -> np.ndarray:
    return np.random.default_rng(n).standard_normal((n, 3, 32, 32)).astype(np.float32)


def pytorch_logits(run_dir: Path, batch: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return load_pruned_model(run_dir)(torch.from_numpy(batch)).numpy()


def tolerance(expected: np.ndarray) -> float:
    return TOLERANCE * max(1.0, float(np.abs(expected).max()))


def everything_under(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) if folder.exists() else []


def error_line(result: subprocess.CompletedProcess) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stdout + result.stderr
    assert len(lines) == 1 and lines[0].startswith("prune-bench: error: "), result.stderr
    return lines[0].removeprefix("prune-bench: error: ")


@pytest.mark.slow
def test_the_cli_writes_every_format_and_the_manifest_and_says_how_each_was_checked(exported):
    run_dir, out, result = exported
    assert result.returncode == 0, result.stderr
    assert everything_under(out) == sorted([*FILES.values(), "export.json"])  # no temporary folder left
    lines = result.stdout.splitlines()
    params = json.loads((run_dir / "record.json").read_text())["params"]  # how many the training left
    assert lines[0] == f"exported resnet20 (slimmed, {params / 1e6:.2f}M params) from {run_dir}"
    for name, file in FILES.items():
        line = next(line for line in lines if line.strip().startswith(name + " "))
        assert str(out / file) in line and "at batch 1 and 7: max |logit diff|" in line and "tolerance" in line
    assert lines[-1].startswith("input: float32 [batch, 3, 32, 32] (NCHW, RGB), (pixels - mean) / std")
    assert result.stderr.strip() == ""  # the exporters' own chatter is kept out


def test_onnx_matches_pytorch_with_a_free_batch_dimension(exported):
    import onnx  # imported here: onnxruntime writes its cache when imported (under the tests' HOME, conftest.py)
    import onnxruntime

    run_dir, out, _ = exported
    graph = onnx.load(str(out / "model.onnx"))
    onnx.checker.check_model(graph)
    assert graph.graph.input[0].type.tensor_type.shape.dim[0].dim_param  # symbolic, not a fixed size
    session = onnxruntime.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    for n in BATCH_SIZES:
        batch = images(n)
        expected = pytorch_logits(run_dir, batch)
        got = session.run(None, {"images": batch})[0]
        assert got.shape == (n, 10)
        assert np.abs(got - expected).max() <= tolerance(expected)


LOAD_WITHOUT_PROJECT = textwrap.dedent("""
    import importlib.abc, sys

    class NoProject(importlib.abc.MetaPathFinder):  # the project is installed here: refuse it
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] == "prune_bench":
                raise ImportError("prune_bench may not be imported here")

    sys.meta_path.insert(0, NoProject())
    try:
        import prune_bench
        sys.exit("prune_bench was importable")
    except ImportError:
        pass
    import numpy as np, torch
    kind, path, out = sys.argv[1:]
    model = torch.export.load(path).module() if kind == "pt2" else torch.jit.load(path)
    logits = {}
    for n in (1, 3, 7):
        with torch.no_grad():
            logits[str(n)] = model(torch.from_numpy(np.random.default_rng(n).standard_normal((n, 3, 32, 32))
                                                     .astype(np.float32))).numpy()
    np.savez(out, **logits)
    print(sorted(m for m in sys.modules if m.startswith("prune_bench")))
""")


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["pt2", "torchscript"])
def test_the_pytorch_files_load_with_torch_alone_and_match_at_any_batch(exported, kind, tmp_path):
    run_dir, out, _ = exported
    script = tmp_path / "load.py"
    script.write_text(LOAD_WITHOUT_PROJECT)
    env = {key: value for key, value in os.environ.items() if not key.startswith("PYTHON")}
    result = subprocess.run([sys.executable, "-I", str(script), kind, str(out / FILES[kind]), str(tmp_path / "l.npz")],
                            cwd=tmp_path, capture_output=True, text=True, timeout=240, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip().splitlines()[-1] == "[]"
    logits = np.load(tmp_path / "l.npz")
    for n in BATCH_SIZES:
        expected = pytorch_logits(run_dir, images(n))
        assert logits[str(n)].shape == (n, 10)
        assert np.abs(logits[str(n)] - expected).max() <= tolerance(expected)


def test_the_manifest_holds_input_normalisation_classes_formats_and_run(exported):
    run_dir, out, _ = exported
    manifest = json.loads((out / "export.json").read_text())
    record = json.loads((run_dir / "record.json").read_text())
    data = load_data(OmegaConf.load(run_dir / "config.yaml").data, torch.device("cpu"))
    assert manifest["input"]["shape"] == ["batch", 3, 32, 32] and manifest["input"]["dtype"] == "float32"
    normalisation = manifest["input"]["normalisation"]
    assert normalisation["units"] == "0..255"
    assert normalisation["mean"] == pytest.approx(data.mean.flatten().tolist())
    assert normalisation["std"] == pytest.approx(data.std.flatten().tolist())
    assert manifest["classes"] == data.classes and manifest["output"]["shape"] == ["batch", 10]
    model = load_pruned_model(run_dir)
    assert manifest["model"]["slimmed"] is True and manifest["model"]["name"] == "resnet20"
    assert manifest["model"]["params"] == record["params"] == sum(p.numel() for p in model.parameters())
    assert set(manifest["formats"]) == set(FILES)
    for name, entry in manifest["formats"].items():
        assert entry["file"] == FILES[name] and entry["bytes"] == (out / FILES[name]).stat().st_size
        check = entry["verified"]
        assert check["batch_sizes"] == [1, 7] and 0 <= check["max_abs_diff"] <= check["tolerance"]
    assert manifest["formats"]["onnx"]["batch_dim"] == "batch"
    source = manifest["source_run"]
    assert source["run_id"] == record["run_id"] and Path(source["run_dir"]) == run_dir.resolve()
    assert source["pruner"] == "dpm" and source["test_acc"] == record["metrics"]["test_acc"]
    assert set(manifest["versions"]) >= {"torch", "onnx", "onnxruntime", "onnxscript"}


def test_the_exported_weights_have_the_slimmed_shapes(exported):
    run_dir, out, _ = exported
    exported_shapes = {name: tuple(t.shape) for name, t in torch.export.load(str(out / "model.pt2")).state_dict.items()}
    slimmed = {name: tuple(p.shape) for name, p in load_pruned_model(run_dir).named_parameters()}
    unpruned = {name: tuple(p.shape) for name, p in build_model("resnet20", 10, shortcut="B").named_parameters()}
    assert {name: exported_shapes[name] for name in slimmed} == slimmed
    assert slimmed != unpruned and set(slimmed) == set(unpruned)


# ----------------------------------------------------------------------------- failures


def copy_run(run_dir: Path, where: Path, drop: str | None = None) -> Path:
    copy = where / run_dir.name
    shutil.copytree(run_dir, copy, ignore=shutil.ignore_patterns("export"))
    if drop:
        (copy / drop).unlink()
    return copy


def cli_error(args: list[str], capsys) -> str:
    """`prune-bench ARGS` in this process: the one error line, after exit status 2."""
    with pytest.raises(SystemExit) as stopped:
        cli.main(args)
    assert stopped.value.code == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("prune-bench: error: "), lines
    return lines[0].removeprefix("prune-bench: error: ")


def test_an_unknown_format_is_one_line_naming_the_allowed_ones(slimmed_run, tmp_path):
    out = tmp_path / "out"
    line = error_line(run_cli(["export", str(slimmed_run), "--out", str(out), "--format", "onnx,tflite"], tmp_path))
    assert line == "--format: unknown format 'tflite'; allowed: onnx, pt2, torchscript"
    assert not out.exists()


def test_what_is_not_a_finished_run_with_a_model_is_refused(slimmed_run, tmp_path, capsys):
    out = tmp_path / "out"
    missing = tmp_path / "nowhere"
    assert cli_error(["export", str(missing), "--out", str(out)], capsys) == f"export: {missing} does not exist"
    (tmp_path / "plain").mkdir()
    assert "is not a run directory (no config.yaml)" in cli_error(["export", str(tmp_path / "plain"), "--out", str(out)], capsys)
    running = copy_run(slimmed_run, tmp_path / "running", drop="record.json")
    assert "has not finished (no record.json)" in cli_error(["export", str(running), "--out", str(out)], capsys)
    unsaved = copy_run(slimmed_run, tmp_path / "unsaved", drop="model.pt")
    assert "has no model.pt (the run had trainer.save_model=false)" in cli_error(
        ["export", str(unsaved), "--out", str(out)], capsys)
    diverged = copy_run(slimmed_run, tmp_path / "diverged")
    record = json.loads((diverged / "record.json").read_text())
    (diverged / "record.json").write_text(json.dumps({**record, "status": "diverged"}))
    assert "did not finish (diverged)" in cli_error(["export", str(diverged), "--out", str(out)], capsys)
    broken = copy_run(slimmed_run, tmp_path / "broken")
    (broken / "model.pt").write_bytes(b"not a model")
    assert "model.pt cannot be loaded" in cli_error(["export", str(broken), "--out", str(out)], capsys)
    assert not out.exists()
    assert not (running / "export").exists() and not (diverged / "export").exists()


def test_without_the_onnx_extra_the_error_names_the_extra(slimmed_run, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxscript", None)  # an import of it now fails
    out = tmp_path / "out"
    line = cli_error(["export", str(slimmed_run), "--out", str(out), "--format", "onnx"], capsys)
    assert line == f"--format onnx: needs onnxscript (not installed); {INSTALL_HINT}"
    assert INSTALL_HINT == "pip install 'prune-bench[export]'"
    assert not out.exists()


@pytest.mark.slow
def test_a_failing_format_leaves_nothing_behind_and_keeps_an_earlier_export(slimmed_run, tmp_path, monkeypatch):
    def broken_trace(*args, **kwargs):
        raise RuntimeError("cannot trace\nsecond line")

    monkeypatch.setattr(export_module.torch.jit, "trace", broken_trace)
    out = tmp_path / "deep" / "out"
    with pytest.raises(PruneBenchError, match=r"^export: torchscript: the exporter failed \(RuntimeError: cannot trace\)"):
        export_run(slimmed_run, out, ["pt2", "torchscript"])  # pt2 was written and checked first
    assert not (tmp_path / "deep").exists()  # the folders it made are gone too
    earlier = tmp_path / "earlier"
    earlier.mkdir()
    (earlier / "model.pt2").write_text("an earlier export")
    with pytest.raises(PruneBenchError):
        export_run(slimmed_run, earlier, ["pt2", "torchscript"])
    assert everything_under(earlier) == ["model.pt2"] and (earlier / "model.pt2").read_text() == "an earlier export"


def test_a_file_that_does_not_reproduce_the_logits_is_not_kept(slimmed_run, tmp_path, monkeypatch):
    monkeypatch.setattr(export_module, "TOLERANCE", -1.0)
    out = tmp_path / "out"
    with pytest.raises(PruneBenchError, match=r"^export: pt2: logits differ from PyTorch's by .* nothing was written$"):
        export_run(slimmed_run, out, ["pt2"])
    assert not out.exists()


def test_out_that_is_a_file_is_refused(slimmed_run, tmp_path, capsys):
    target = tmp_path / "file"
    target.write_text("x")
    assert cli_error(["export", str(slimmed_run), "--out", str(target), "--format", "pt2"], capsys) == \
        f"--out: {target} is a file, not a folder"
