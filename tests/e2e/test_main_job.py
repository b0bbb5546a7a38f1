"""The main job (scripts/run_main_job.py, README command 1), run as a user runs it: the shipped probe
workflow on the trained prompt-following model through a real server, at the workflow's own settings.

The job is run once for the module. The checks: its graphs are the probe workflow with the nodes at
its settings and the Report wired into the transfer; its baseline pass is bit for bit the
clip the A/B harness samples in-process (so the server graph conditions the model as training did);
its scores, its "patched" flags and its verdict agree with the latents it saved.
"""
import dataclasses
import json
import pathlib
import shutil

import pytest
import torch

import run_main_job as job

CLIPS = 8   # the first 8 held-out test clips, as README command 1 runs them
REMOVED = {"CLIPLoader", "CLIPVisionLoader", "CLIPTextEncode", "CLIPVisionEncode", "VAELoader", "VAEDecode",
           "WanImageToVideo", "LoadImage", "SaveVideo"}


@pytest.fixture(scope="module")
def ran(tmp_path_factory, artifacts_dir):
    out = tmp_path_factory.mktemp("main_job")
    code = job.main(["--clips", str(CLIPS), "--out", str(out / "job"), "--models", str(out / "models")])
    artifacts_dir.mkdir(parents=True, exist_ok=True)
    for name in ("server.log", "strips.png", "result.json"):
        if (out / "job" / name).exists():
            shutil.copy(out / "job" / name, artifacts_dir / f"main_job_{name}")
    assert code == 0, (out / "job" / "server.log").read_text(errors="replace")[-4000:]
    return out / "job", json.loads((out / "job" / "result.json").read_text())


@pytest.fixture(scope="module")
def model():
    return job.harness.load_model()


def _workflow_values(node_class):
    """The probe workflow's widget values of its one ``node_class`` node, by name (widgets_values follow the
    schema's widget inputs in order; the canvas may append its own state after them)."""
    names = [i.id for i in node_class.define_schema().inputs
             if i.get_io_type() in ("STRING", "FLOAT", "INT", "COMBO", "BOOLEAN")]
    node_id = node_class.define_schema().node_id
    (node,) = [n for n in job.load_workflow()["nodes"] if n["type"] == node_id]
    return dict(zip(names, node["widgets_values"]))


def test_graph_is_the_probe_workflow_at_its_settings(ran):
    from focal_guidance.nodes.probe import SemanticLayerProbe
    from focal_guidance.nodes.report import SemanticLayerReport
    from focal_guidance.nodes.transfer import FocalAttentionTransfer
    out, _ = ran
    graph = json.loads((out / "graphs" / "test00.json").read_text())
    kinds = {node["class_type"]: nid for nid, node in graph.items()}
    assert not REMOVED & set(kinds), REMOVED & set(kinds)
    assert graph[kinds["UNETLoader"]]["inputs"]["unet_name"] == job.harness.MODEL_FILE.name
    for node_class in (SemanticLayerProbe, SemanticLayerReport, FocalAttentionTransfer):
        inputs = graph[kinds[node_class.define_schema().node_id]]["inputs"]
        widgets = {k: v for k, v in inputs.items() if not isinstance(v, list)}
        expected = _workflow_values(node_class)
        assert widgets == {k: expected[k] for k in widgets}, node_class.__name__
    transfer = graph[kinds["FocalAttentionTransfer"]]["inputs"]
    report = kinds["FocalSemanticLayerReport"]
    assert transfer["weak_blocks"] == [report, 2] and transfer["source_blocks"] == [report, 3]
    conditioner = graph[kinds["FocalStandInLatentToVideo"]]["inputs"]
    assert graph[conditioner["start_latent"][0]]["class_type"] == "LoadLatent"
    assert graph[conditioner["positive"][0]]["inputs"]["text"] == job.task.split_scenes("test", 1)[0].prompt
    assert graph[conditioner["negative"][0]]["inputs"]["text"] == ""


def test_baseline_pass_is_the_harness_clip(ran, model):
    _, result = ran
    scenes, seeds = job.harness.split_with_seeds("test", CLIPS)
    for clip, scene, seed in zip(result["clips"], scenes, seeds, strict=True):
        assert (clip["prompt"], clip["seed"]) == (scene.prompt, seed)
        served = job.read_latent(pathlib.Path(clip["files"]["baseline"][0]))
        assert torch.equal(served, job.harness.generate(model, scene, seed)), clip["index"]


def test_scores_flags_and_verdict_agree_with_the_saved_latents(ran):
    out, result = ran
    scenes = job.task.split_scenes("test", CLIPS)
    for clip, scene in zip(result["clips"], scenes, strict=True):
        latents = {role: job.read_latent(pathlib.Path(clip["files"][role][0])) for role in ("baseline", "focal")}
        for role, latent in latents.items():
            assert clip[role] == dataclasses.asdict(job.task.score(scene, latent)), (clip["index"], role)
        same = torch.equal(latents["baseline"], latents["focal"])
        assert clip["focal_equals_baseline"] == same
        assert clip["patched"] == bool(clip["report"]["weak_blocks"]) == (not same), clip
    patched = result["summary"]["patched"]
    assert patched == sum(c["patched"] for c in result["clips"])
    assert ("patched NOTHING" in result["verdict"]) == (patched == 0)
    assert (out / "strips.png").stat().st_size > 0
