"""End-to-end: the real ComfyUI host, started as a server (``main.py --cpu``), loads the pack and runs
API-format graphs posted to /prompt.

Text encoders and CLIP vision are the TEST-ONLY stand-in nodes from tests/standin_nodes (loaded via
an ``--extra-model-paths-config`` yaml, never shipped in the pack); the diffusion model and VAE are
the tiny real-architecture checkpoints from scripts/make_tiny_models.py, by stock file name.
"""
import asyncio
import shutil
import time

import pytest

import make_tiny_models as tiny
from comfy_server import (PACK_DIR, PACK_NAME, STANDIN_DIR, STANDIN_PACKAGE, ComfyServer, ExecutionFailed,
                          PromptRejected, ServerError, make_input_image)

# Every node the pack ships; each must be listed by /object_info with the inputs its schema declares.
PACK_NODES = ["FocalSemanticLayerProbe", "FocalSemanticLayerReport", "FocalRegionAnchor", "FocalAttentionTransfer"]
STANDIN_NODES = ["FocalStandInTextEncode", "FocalStandInClipVision"]
IMAGE_NAME = "focal_test_start.png"
WIDTH, HEIGHT, LENGTH = 96, 64, 5  # 5 frames -> 2 latent frames -> 5 decoded frames
RUN_TIMEOUT = 300


@pytest.fixture(scope="session")
def comfy_server(tiny_models, tmp_path_factory, artifacts_dir):
    """A running host with the pack and the stand-ins; always stopped (by pid), pass or fail."""
    server = ComfyServer(tmp_path_factory.mktemp("comfy_server"), models_dir=tiny_models)
    make_input_image(server.input_dir / IMAGE_NAME, WIDTH, HEIGHT)
    yield from server.serve(artifacts_dir / "server.log")


def wan_i2v_graph(weak_blocks="2-3", source_blocks="1", alpha=0.5, end_percent=1.0, focal=True, prefix="focal_i2v"):
    """UNETLoader -> [FocalAttentionTransfer] -> KSampler, stand-in text/vision -> WanImageToVideo -> decode -> save."""
    graph = {
        "unet": {"class_type": "UNETLoader", "inputs": {"unet_name": tiny.WAN_I2V, "weight_dtype": "default"}},
        "focal": {"class_type": "FocalAttentionTransfer", "inputs": {
            "model": ["unet", 0], "weak_blocks": weak_blocks, "source_blocks": source_blocks,
            "alpha": alpha, "beta": 1.0, "gamma": 0.5, "start_percent": 0.0, "end_percent": end_percent,
            "branch": "positive", "cache_heads": "head mean",
            "cache_columns": "all text tokens"}},
        "vae": {"class_type": "VAELoader", "inputs": {"vae_name": tiny.WAN_VAE}},
        "image": {"class_type": "LoadImage", "inputs": {"image": IMAGE_NAME}},
        "vision": {"class_type": "FocalStandInClipVision", "inputs": {"image": ["image", 0]}},
        "pos": {"class_type": "FocalStandInTextEncode", "inputs": {
            "family": "wan", "text": "a red ball rolls past a blue box", "seed": 1}},
        "neg": {"class_type": "FocalStandInTextEncode", "inputs": {
            "family": "wan", "text": "blurry static frame", "seed": 2}},
        "i2v": {"class_type": "WanImageToVideo", "inputs": {
            "positive": ["pos", 0], "negative": ["neg", 0], "vae": ["vae", 0], "width": WIDTH, "height": HEIGHT,
            "length": LENGTH, "batch_size": 1, "clip_vision_output": ["vision", 0], "start_image": ["image", 0]}},
        "sampler": {"class_type": "KSampler", "inputs": {
            "model": ["focal" if focal else "unet", 0], "seed": 7, "steps": 2, "cfg": 5.0,
            "sampler_name": "euler", "scheduler": "simple", "positive": ["i2v", 0], "negative": ["i2v", 1],
            "latent_image": ["i2v", 2], "denoise": 1.0}},
        "decode": {"class_type": "VAEDecode", "inputs": {"samples": ["sampler", 0], "vae": ["vae", 0]}},
        "video": {"class_type": "SaveAnimatedWEBP", "inputs": {
            "images": ["decode", 0], "filename_prefix": f"{prefix}_video", "fps": 8.0, "lossless": True, "quality": 80,
            "method": "default"}},
        "frames": {"class_type": "SaveImage", "inputs": {
            "images": ["decode", 0], "filename_prefix": f"{prefix}_frame"}},
    }
    if not focal:
        del graph["focal"]
    return graph


def pack_schemas():
    """The pack's own node schemas, from its comfy_entrypoint (imported in-process by conftest)."""
    import focal_guidance

    async def nodes():
        return await (await focal_guidance.comfy_entrypoint()).get_node_list()
    return {cls.GET_SCHEMA().node_id: cls.GET_SCHEMA() for cls in asyncio.run(nodes())}


def test_host_loads_pack_and_standins(comfy_server):
    log = comfy_server.log_text()
    failed = [line for line in log.splitlines() if "IMPORT FAILED" in line or "Cannot import" in line]
    ours = [line for line in failed if PACK_NAME in line or STANDIN_PACKAGE in line]
    assert not ours, "import failures:\n" + "\n".join(ours) + comfy_server.log_excerpt()
    for name in (PACK_NAME, STANDIN_PACKAGE):
        assert any(name in line and "seconds" in line for line in log.splitlines()), \
            f"{name} missing from the import-times list" + comfy_server.log_excerpt()


def test_frontend_and_pack_web_files_are_served(comfy_server):
    page = comfy_server.get("/")
    assert b"<title>ComfyUI</title>" in page  # the comfyui-frontend-package from the venv
    served = set(comfy_server.get("/extensions"))
    for js in sorted((PACK_DIR / "web" / "js").glob("**/*.js")):
        rel = js.relative_to(PACK_DIR / "web" / "js").as_posix()
        assert f"/extensions/{PACK_NAME}/{rel}" in served, f"{rel} not served: {sorted(served)}"


def test_object_info_lists_pack_nodes_with_their_inputs(comfy_server):
    info = comfy_server.object_info()
    schemas = pack_schemas()
    assert set(PACK_NODES) <= set(schemas), f"PACK_NODES not in the pack's node list: {set(PACK_NODES) - set(schemas)}"
    assert not set(schemas) & set(STANDIN_NODES), "the stand-ins must never ship in the pack's node list"
    for node_id in PACK_NODES:
        assert node_id in info, f"/object_info lacks {node_id}" + comfy_server.log_excerpt()
        node = info[node_id]
        assert node["python_module"] == f"custom_nodes.{PACK_NAME}"
        served = {**node["input"].get("required", {}), **node["input"].get("optional", {})}
        declared = {inp.id for inp in schemas[node_id].inputs or []}
        assert declared, f"{node_id} declares no inputs"
        assert set(served) == declared, f"{node_id}: served inputs {sorted(served)} != declared {sorted(declared)}"
    transfer = info["FocalAttentionTransfer"]["input"]
    assert set(transfer["required"]) >= {"model", "weak_blocks", "source_blocks", "alpha", "beta", "gamma",
                                         "start_percent", "end_percent", "branch", "cache_heads", "cache_columns"}
    # widgets added after the first release are optional, so API prompts saved before them still run
    assert set(transfer["optional"]) == {"anchor", "window_of", "auto_observe_steps", "auto_kappa", "auto_top_r",
                                         "auto_exclude_ends"}


def test_object_info_lists_standins_and_stock_models(comfy_server):
    info = comfy_server.object_info()
    for node_id in STANDIN_NODES:
        assert info[node_id]["python_module"] == f"custom_nodes.{STANDIN_PACKAGE}"
    assert info["FocalStandInTextEncode"]["output"] == ["CONDITIONING"]
    assert info["FocalStandInClipVision"]["output"] == ["CLIP_VISION_OUTPUT"]
    # The models folder from the yaml is searched: the tiny checkpoints appear under their stock names.
    assert tiny.WAN_I2V in info["UNETLoader"]["input"]["required"]["unet_name"][0]
    assert tiny.WAN_VAE in info["VAELoader"]["input"]["required"]["vae_name"][0]


def _saved(server, entry, node_id):
    images = entry["outputs"].get(node_id, {}).get("images", [])
    paths = server.output_paths(entry).get(node_id, [])
    assert images and len(paths) == len(images), f"no saved files for {node_id}: {entry['outputs']}"
    for path in paths:
        assert path.is_file() and path.stat().st_size > 0, f"{path} missing or empty"
    return paths


def _pixels(paths):
    import numpy as np
    from PIL import Image
    return np.stack([np.asarray(Image.open(p).convert("RGB")) for p in paths])


def test_wan_i2v_focal_graph_runs_and_saves(comfy_server, artifacts_dir):
    entry = comfy_server.run(wan_i2v_graph(), timeout=RUN_TIMEOUT)
    assert entry["status"]["status_str"] == "success"
    frames = _saved(comfy_server, entry, "frames")
    assert len(frames) == LENGTH
    video = _saved(comfy_server, entry, "video")
    assert len(video) == 1 and video[0].suffix == ".webp"
    assert entry["outputs"]["video"].get("animated") == [True]
    from PIL import Image
    with Image.open(video[0]) as webp:
        assert webp.n_frames == LENGTH and webp.size == (WIDTH, HEIGHT)
    assert _pixels(frames).shape == (LENGTH, HEIGHT, WIDTH, 3)
    for path in video + frames[:1]:
        shutil.copy(path, artifacts_dir / path.name)

    # The same graph without the node: the patch really changed what the server sampled.
    plain = comfy_server.run(wan_i2v_graph(focal=False, prefix="plain_i2v"), timeout=RUN_TIMEOUT)
    diff = abs(_pixels(frames).astype(int) - _pixels(_saved(comfy_server, plain, "frames")).astype(int))
    assert diff.max() > 0, "Focal Attention Transfer left the sampled video unchanged"


def test_hunyuan_video_graph_runs_with_standin_conditioning(comfy_server):
    """HunyuanVideo I2V (2 double + 4 single blocks) with stand-in LLaMA context + CLIP-L pooled."""
    graph = {
        "unet": {"class_type": "UNETLoader", "inputs": {"unet_name": tiny.HUNYUAN_I2V, "weight_dtype": "default"}},
        "focal": {"class_type": "FocalAttentionTransfer", "inputs": {
            "model": ["unet", 0], "weak_blocks": "3-4", "source_blocks": "1", "alpha": 0.5, "beta": 1.0,
            "gamma": 0.5, "start_percent": 0.0, "end_percent": 1.0, "window_of": "whole schedule", "branch": "both",
            "cache_heads": "per head", "cache_columns": "all text tokens"}},
        "pos": {"class_type": "FocalStandInTextEncode", "inputs": {
            "family": "hunyuan_video", "text": "a red ball rolls past a blue box", "seed": 1}},
        "neg": {"class_type": "FocalStandInTextEncode", "inputs": {
            "family": "hunyuan_video", "text": "blurry", "seed": 2}},
        "latent": {"class_type": "EmptyHunyuanLatentVideo", "inputs": {
            "width": WIDTH, "height": HEIGHT, "length": LENGTH, "batch_size": 1}},
        "sampler": {"class_type": "KSampler", "inputs": {
            "model": ["focal", 0], "seed": 3, "steps": 2, "cfg": 5.0, "sampler_name": "euler",
            "scheduler": "simple", "positive": ["pos", 0], "negative": ["neg", 0],
            "latent_image": ["latent", 0], "denoise": 1.0}},
        "save": {"class_type": "SaveLatent", "inputs": {"samples": ["sampler", 0],
                                                        "filename_prefix": "latents/focal_hunyuan"}},
    }
    entry = comfy_server.run(graph, timeout=RUN_TIMEOUT)
    assert entry["status"]["status_str"] == "success"
    (path,) = comfy_server.output_paths(entry)["save"]
    assert path.suffix == ".latent" and path.stat().st_size > 0


def test_wait_reads_a_finished_prompt_from_history(comfy_server):
    """wait() after the prompt's end (its websocket messages were read by the first wait) returns the
    same /history entry."""
    graph = {"empty": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0}},
             "save": {"class_type": "SaveImage", "inputs": {"images": ["empty", 0], "filename_prefix": "wait_check"}}}
    prompt_id = comfy_server.post_prompt(graph)
    entry = comfy_server.wait(prompt_id, timeout=RUN_TIMEOUT)
    assert entry["status"]["status_str"] == "success"
    assert comfy_server.wait(prompt_id, timeout=RUN_TIMEOUT) == entry


def test_a_dead_prompt_worker_fails_the_wait_fast_and_is_named(tiny_models, tmp_path):
    """A worker thread that dies leaves a server that accepts prompts and never runs them (ComfyUI 0.33
    did this on a CLIP without a patcher): the wait must end at once with the reason, not at its timeout.
    Its own server: this one is broken afterwards."""
    server = ComfyServer(tmp_path / "dead_worker", models_dir=tiny_models)
    make_input_image(server.input_dir / IMAGE_NAME, WIDTH, HEIGHT)
    for _ in server.serve():
        began = time.monotonic()
        with pytest.raises(ServerError, match=r"prompt worker thread died \(.*WorkerKilled"):
            server.run({"end": {"class_type": "FocalStandInEndPromptWorker", "inputs": {"seed": 1}}}, timeout=600)
        with pytest.raises(ServerError, match="prompt worker thread died"):
            server.run(wan_i2v_graph(prefix="never_runs"), timeout=600)
        assert time.monotonic() - began < 120, "the wait ran towards its timeout instead of failing fast"


def test_out_of_range_alpha_is_rejected_by_validation(comfy_server):
    with pytest.raises(PromptRejected) as rejected:
        comfy_server.post_prompt(wan_i2v_graph(alpha=5.0, prefix="rejected"))
    errors = rejected.value.body["node_errors"]
    assert list(errors) == ["focal"], errors
    assert any(e["details"].startswith("alpha") for e in errors["focal"]["errors"]), errors


def test_out_of_range_weak_block_is_reported_in_history(comfy_server):
    with pytest.raises(ExecutionFailed) as failure:
        comfy_server.run(wan_i2v_graph(weak_blocks="99", prefix="bad"), timeout=RUN_TIMEOUT)
    error = failure.value.error
    assert error["node_type"] == "FocalAttentionTransfer"
    message = error["exception_message"]
    assert "Focal Attention Transfer" in message and "out of range" in message, message
    assert failure.value.entry["status"]["status_str"] == "error"
    assert "frames" not in failure.value.entry["outputs"]


# ---- the stand-ins themselves (in-process, no server) ----------------------------------------
def _standins():
    """tests/standin_nodes, imported by path (as the host would) so any pytest import mode works."""
    import importlib.util
    import sys
    if "focal_standins" not in sys.modules:
        spec = importlib.util.spec_from_file_location("focal_standins", STANDIN_DIR / "__init__.py",
                                                      submodule_search_locations=[str(STANDIN_DIR)])
        module = importlib.util.module_from_spec(spec)
        sys.modules["focal_standins"] = module
        spec.loader.exec_module(module)
    return sys.modules["focal_standins"]


def test_standin_text_encode_shapes_and_determinism():
    s = _standins()
    (context, extra), = s.encode_text("wan", "a red ball rolls", 3)
    assert context.shape == (1, 512, 4096) and extra == {}
    nonzero = context.abs().sum(-1)[0] > 0
    assert nonzero[:5].all() and not nonzero[5:].any()  # 4 words + end token, then zero padding
    again, _ = s.encode_text("wan", "a red ball rolls", 3)[0]
    assert (again == context).all()
    other_seed, _ = s.encode_text("wan", "a red ball rolls", 4)[0]
    assert not (other_seed[0, :5] == context[0, :5]).any()
    (hy, hy_extra), = s.encode_text("hunyuan_video", "a red ball rolls", 3)
    assert hy.shape == (1, 5, 4096) and hy_extra["pooled_output"].shape == (1, 768)
    assert not (s.encode_text("hunyuan_video", "a blue ball rolls", 3)[0][1]["pooled_output"]
                == hy_extra["pooled_output"]).all()


def test_standin_clip_vision_depends_on_the_image():
    import torch
    s = _standins()
    gen = torch.Generator().manual_seed(0)
    a = torch.rand(1, 64, 96, 3, generator=gen)
    b = a.flip(2)
    out_a, out_b = s.encode_image(a), s.encode_image(b)
    assert out_a.penultimate_hidden_states.shape == (1, 257, 1280)
    assert out_a.last_hidden_state.shape == (1, 257, 1280)
    assert out_a.image_embeds.shape == (1, 1024)
    assert torch.isfinite(out_a.penultimate_hidden_states).all()
    assert torch.equal(s.encode_image(a).penultimate_hidden_states, out_a.penultimate_hidden_states)
    assert not torch.allclose(out_a.penultimate_hidden_states, out_b.penultimate_hidden_states)
    # patch tokens differ across the image (spatial structure), not just by position embedding
    flat = s.encode_image(torch.full((1, 64, 96, 3), 0.5))
    assert not torch.allclose(out_a.penultimate_hidden_states[:, 1:] - flat.penultimate_hidden_states[:, 1:],
                              torch.zeros(1), atol=1e-3)
