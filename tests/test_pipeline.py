"""Pipeline config validation, planning (hashes, statuses, argv) and execution (skip, re-run, failure)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from synthembed.pipeline import execute
from synthembed.pipeline.config import PipelineConfigError, load_pipeline_config
from synthembed.pipeline.estimate import estimate_stage, print_plan
from synthembed.pipeline.plan import build_plan

CONFIG = """
name: t
output_dir: {out}
seed: 7
data_dir: /data
stages:
  - name: syn
    command: synthesize syncse
    args: {{mode: partial, input: {input}, limit: 3, backend: fake}}
  - name: fit
    command: train
    args: {{data: "{{stage:syn}}", model: embedded, epochs: 1, no_eval: true, skip_me: false}}
  - name: score
    command: evaluate
    positional: ["{{stage:fit}}"]
    args: {{tasks: [stsb, sickr]}}
"""


def write_config(tmp_path: Path, text: str = CONFIG) -> Path:
    (tmp_path / "seeds.txt").write_text("a\nb\n\nc\nd\n", encoding="utf-8")
    path = tmp_path / "p.yaml"
    path.write_text(text.format(out=tmp_path / "run", input=tmp_path / "seeds.txt"), encoding="utf-8")
    return path


def test_plan_resolves_references_and_flags(tmp_path: Path) -> None:
    plan = build_plan(load_pipeline_config(write_config(tmp_path)))
    syn, fit, score = plan
    assert syn.argv[:2] == ["synthesize", "syncse"]
    assert "--seed" in syn.argv and syn.argv[syn.argv.index("--seed") + 1] == "7"
    assert fit.argv[fit.argv.index("--data") + 1] == str(tmp_path / "run" / "syn")
    assert "--no-eval" in fit.argv and "--skip-me" not in fit.argv
    assert fit.argv[fit.argv.index("--data-dir") + 1] == "/data"
    assert score.argv[1] == str(tmp_path / "run" / "fit")
    assert score.argv[score.argv.index("--tasks") + 1 : score.argv.index("--tasks") + 3] == ["stsb", "sickr"]
    assert score.argv[-1] == str(tmp_path / "run" / "score" / "results.json")
    assert {s.status for s in plan} == {"pending"}


def _fake_stage(argv: list[str]) -> int:
    """Stand-in for a stage's command: writes the smallest output the next stage could use."""
    out = Path(argv[argv.index("--output") + 1])
    if argv[0] == "synthesize":
        out.mkdir(parents=True, exist_ok=True)
        (out / "manifest.json").write_text(json.dumps({"complete": True, "counts": {"written": 1}}))
    elif argv[0] in ("train", "refine"):
        out.mkdir(parents=True, exist_ok=True)
        (out / "modules.json").write_text("[]")
    else:
        out.write_text("{}")
    return 0


def test_upstream_change_makes_downstream_stale(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[list[str]] = []
    monkeypatch.setattr("synthembed.cli.main", lambda argv: calls.append(list(argv)) or _fake_stage(argv))
    path = write_config(tmp_path)
    execute.run_pipeline(load_pipeline_config(path))
    assert len(calls) == 3
    assert {s.status for s in build_plan(load_pipeline_config(path))} == {"done"}

    calls.clear()
    summary = execute.run_pipeline(load_pipeline_config(path))
    assert calls == [] and [s["status"] for s in summary["stages"]] == ["cached"] * 3

    path.write_text(path.read_text().replace("limit: 3", "limit: 4"))
    plan = build_plan(load_pipeline_config(path))
    assert [s.status for s in plan] == ["stale", "stale", "stale"]
    (tmp_path / "run" / "syn" / "keep.txt").write_text("old output")
    execute.run_pipeline(load_pipeline_config(path))
    assert len(calls) == 3
    set_aside = list((tmp_path / "run").glob("syn.stale-*"))
    assert len(set_aside) == 1 and (set_aside[0] / "keep.txt").read_text() == "old output"
    run_json = json.loads((tmp_path / "run" / "run.json").read_text())
    assert [s["status"] for s in run_json["stages"]] == ["ran"] * 3


def test_failed_stage_stops_and_is_not_marked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("synthembed.cli.main", lambda argv: 2 if argv[0] == "train" else _fake_stage(argv))
    path = write_config(tmp_path)
    with pytest.raises(execute.StageFailed, match="'fit' failed"):
        execute.run_pipeline(load_pipeline_config(path))
    assert [s.status for s in build_plan(load_pipeline_config(path))] == ["done", "pending", "pending"]


def test_dry_run_prints_llm_estimate(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = load_pipeline_config(write_config(tmp_path))
    plan = build_plan(config)
    estimate = estimate_stage(plan[0])
    assert estimate is not None and estimate["rows"] == 3 and estimate["requests"] == 6
    print_plan(config, plan)
    out = capsys.readouterr().out
    assert "3 rows, ~6 requests" in out and "synthembed synthesize syncse" in out

    levels = CONFIG.replace("synthesize syncse", "synthesize graded").replace("mode: partial", "mode: levels")
    plan = build_plan(load_pipeline_config(write_config(tmp_path, levels)))
    assert estimate_stage(plan[0])["requests"] == 15  # levels mode: positive + 4 levels, one request each


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda t: t.replace("seed: 7", "seed: 7\ncolour: red"), "unknown key"),
        (lambda t: t.replace("command: train", "command: trian"), "unknown command"),
        (lambda t: t.replace("{{stage:syn}}", "{{stage:nope}}"), "not an earlier stage"),
        (lambda t: t.replace("name: fit", "name: syn"), "used twice"),
        (lambda t: t.replace("epochs: 1", "output: x"), "set by the pipeline"),
    ],
)
def test_bad_configs_are_clear_errors(tmp_path: Path, edit, message: str) -> None:
    path = write_config(tmp_path, edit(CONFIG))
    with pytest.raises(PipelineConfigError, match=message):
        load_pipeline_config(path)


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(PipelineConfigError, match="not found"):
        load_pipeline_config(tmp_path / "absent.yaml")


def test_misspelt_flag_fails_before_anything_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from synthembed.cli import main

    calls: list[list[str]] = []
    path = write_config(tmp_path, CONFIG.replace("epochs: 1", "epochz: 1").replace(", no_eval: true, skip_me: false", ""))
    monkeypatch.setattr("synthembed.pipeline.execute.run_stage", lambda stage: calls.append(stage.argv) or 0.0)
    assert main(["run", str(path), "--dry-run"]) == 2
    assert main(["run", str(path)]) == 2
    assert calls == []


def test_shipped_configs_parse() -> None:
    from synthembed.pipeline.plan import validate_plan

    configs = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml"))
    assert configs, "configs/ is empty"
    for path in configs:
        validate_plan(build_plan(load_pipeline_config(path)))


def test_stage_with_nothing_usable_fails_there_and_is_not_marked(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """Exit 0 with 0 records (the reported case) must not mark the stage done."""
    def empty_synthesis(argv: list[str]) -> int:
        if argv[0] != "synthesize":
            return _fake_stage(argv)
        out = Path(argv[argv.index("--output") + 1])
        out.mkdir(parents=True, exist_ok=True)
        manifest = {"complete": True, "counts": {"written": 0, "dropped": {"backend_error": 3}}}
        (out / "manifest.json").write_text(json.dumps(manifest))
        return 0

    monkeypatch.setattr("synthembed.cli.main", empty_synthesis)
    path = write_config(tmp_path)
    with pytest.raises(execute.StageFailed, match=r"stage 'syn' produced nothing usable: 0 records .*3 backend_error"):
        execute.run_pipeline(load_pipeline_config(path))
    assert [s.status for s in build_plan(load_pipeline_config(path))] == ["pending"] * 3
