"""Outcome tests on the trained prompt-following model (benchmarks/prompt_following): what Focal
Guidance does to the attention and to the video, not only that something changed.

The model, the scenes and the sampler settings are the A/B harness's; weak and source blocks are
the ones its Semantic Layer Probe measured on the probe split (model/probe_blocks.json), except in
the outcome tests, where the transfer runs as shipped.
"""
import json
import pathlib
import sys
from contextlib import contextmanager
from dataclasses import replace

import pytest
import torch

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2] / "benchmarks" / "prompt_following"))
import harness  # noqa: E402
import task  # noqa: E402

from focal_guidance.focal_core.blocks import parse_block_list  # noqa: E402
from focal_guidance.nodes.transfer import FocalAttentionTransfer  # noqa: E402

WORKFLOWS = pathlib.Path(__file__).resolve().parents[2] / "example_workflows"
WORKFLOW_DEPTH = {"wan": 40, "hunyuan": 60}   # blocks of the model each example workflow was written for


@pytest.fixture(scope="module")
def model():
    torch.set_num_threads(1)
    return harness.load_model()


@pytest.fixture(scope="module")
def blocks():
    """The probe's blocks at kappa 1: at the default kappa 2 it finds no weak block on this model."""
    measured = json.loads(harness.PROBE_FILE.read_text())["1.0"]
    assert measured["weak"], "the probe found no weak block at kappa 1"
    return {"weak": measured["weak"], "responsive": measured["responsive"]}


def test_model_is_detected_as_a_wan_i2v_style_model(model):
    diffusion = model.model.diffusion_model
    assert type(model.model).__name__ == "WAN21"
    assert diffusion.patch_embedding.weight.shape[1] == 36 and diffusion.num_layers == 10


def test_training_inputs_match_what_the_host_sampler_builds(model):
    """train.py feeds [noisy | mask | reference] itself; the sampler builds it with WAN21.concat_cond
    from WanImageToVideo-style conditioning. A mismatch would train a model the host never runs."""
    import train
    scene = task.split_scenes("val", 1)[0]
    positive, _ = harness.conditioning(model, scene)
    noisy = torch.randn(1, task.CHANNELS, task.FRAMES, task.SIZE, task.SIZE, generator=torch.Generator().manual_seed(0))
    host = model.model.concat_cond(noise=noisy, device=torch.device("cpu"), **positive[0][1])
    assert torch.allclose(host, train.concat_inputs(task.reference(scene)[None]), atol=1e-5)


def test_path_weight_depends_on_the_scene_not_on_the_asked_action():
    """train.py --path-weight may only move the gradient's emphasis: a weight that knew the asked
    action would bias the trained model towards it. It covers every place the named object is
    or could be in frames 1+, and none of frame 0 (given by the reference)."""
    import train
    scene = task.split_scenes("val", 1)[0]
    masks = [train.paths_mask(replace(scene, action=a)) for a in task.actions_for(scene.named.colour)]
    assert all(torch.equal(m, masks[0]) for m in masks)
    assert masks[0][0].sum() == 0
    for direction in task.DIRECTIONS:
        clip_scene = replace(scene, action=f"moves {direction}")
        for frame in range(1, task.FRAMES):
            y, x = clip_scene.position(0, frame)
            assert masks[0][frame, y:y + task.OBJECT, x:x + task.OBJECT].all()


def test_keyword_mass_in_region_rises_with_beta(model, blocks):
    scene = task.split_scenes("val", 1)[0]
    weak = parse_block_list(blocks["weak"], 10)
    masses = []
    for beta in (0.0, 1.0, 4.0):
        setting = harness.Setting(f"beta {beta}", alpha=0.0, beta=beta, gamma=0.0, end=1.0, kappa=1.0)
        patched = harness.focal_model(model, scene, setting, {1.0: blocks})
        masses.append(harness.keyword_mass(patched, scene, seed=1, weak=weak))
    assert masses[0] < masses[1] < masses[2], masses


def test_anchoring_the_action_word_changes_the_guided_clip(model, blocks):
    """The sweep's 'action word anchored too' setting must act: its anchor carries the new colour
    word, and the clip differs from the one guided by the named colour and shape alone."""
    scene = next(s for s in task.split_scenes("val", 8) if s.kind == "turns")
    assert harness.anchor_for(scene, "mask only", action_word=True).keywords[-1] == scene.new_colour
    with_word = harness.focal_model(model, scene, harness.ACTION_WORD, {1.0: blocks})
    without = harness.focal_model(model, scene, replace(harness.ACTION_WORD, action_word=False), {1.0: blocks})
    assert not torch.equal(harness.generate(with_word, scene, 1), harness.generate(without, scene, 1))


def _asked_and_acted(counts: dict) -> tuple[int, int]:
    """(samples that did what the word asked, samples that did anything)."""
    acted = sum(c for row in counts.values() for did, c in row.items() if did != "none")
    return sum(row.get(asked, 0) for asked, row in counts.items()), acted


def test_base_model_turns_the_named_object_into_the_colour_the_word_names(model):
    """The instrument can measure prompt-following only for words the model knows: asked each of the
    three other colours for the same scene and seed, the named object must take the asked one far
    more often than chance (a third of the clips where it changed colour)."""
    asked, acted = _asked_and_acted(harness.word_confusion(model, *harness.split_with_seeds("val", 8), "turns"))
    assert acted >= 12, f"the named object changed colour in only {acted} of 24 samples"
    assert asked >= 2 * acted / 3, (asked, acted)


@pytest.mark.xfail(strict=True, raises=AssertionError,
                   reason="measured on this model: it ignores the direction word. Asked each of the four "
                          "directions for the same scene and seed, the named object goes the asked way at chance "
                          "level (docs/method.md §10). If this passes, the instrument changed.")
def test_base_model_sends_the_named_object_where_the_direction_word_says(model):
    """The instrument's known limit, checked rather than assumed: a model that follows 'moves left'
    must send the object left more often than the other ways. Chance is a quarter of the moves."""
    asked, moved = _asked_and_acted(harness.word_confusion(model, *harness.split_with_seeds("val", 8), "moves"))
    if moved < 16:
        pytest.fail(f"the named object moved in only {moved} of 32 samples, too few to tell")
    assert asked >= moved / 2, (asked, moved)


# The first 16 clips of the harness's held-out test split: fixed by task.split_seed, never used to
# tune a setting, and the same clips the main job (scripts/run_main_job.py) shows first.
OUTCOME_CLIPS = 16


# One clip's worth: one clip of a kind going from nothing to 80% of its action, in that kind's mean progress.
# A bare "smaller" would fail on float noise (FG perturbs every clip a little).
OUTCOME_CLIP_SHARE = 0.8


def test_shipped_defaults_do_not_set_the_healthy_model_back_on_either_kind(model):
    """Focal Attention Transfer and Region Anchor exactly as shipped (``harness.shipped``: node defaults, a hand
    mask of the named object on its words and the word of the asked change) on the committed model, which has no
    weakness to repair (docs/method.md §10), against the plain model with the same seeds on held-out test clips:
    neither kind of action (never one average) may lose a clip's worth of its mean progress. The control test
    below asks whether they repair a weakness; this one covers the moves, which the control does not. Measured
    on these 16 clips: 10 colour changes 0.811 -> 0.881, 6 moves -0.21 -> -0.13 (+0.9 and +0.6 clips' worth; on
    the 47-49 clips of the control's splits the healthy model's change is within ±0.02, §10)."""
    scenes, seeds = harness.split_with_seeds("test", OUTCOME_CLIPS)
    base_clips, focal_clips = {}, {}
    base = harness.evaluate(model, scenes, seeds, None, {}, keep=base_clips)
    focal = harness.evaluate(model, scenes, seeds, harness.shipped(), {}, keep=focal_clips)
    guided = sum(not torch.equal(base_clips[i], focal_clips[i]) for i in base_clips)
    assert guided >= OUTCOME_CLIPS // 2, f"the shipped defaults changed only {guided} of {OUTCOME_CLIPS} clips"
    gains = {}
    for kind in harness.KINDS:
        before, after = base.of_kind(kind), focal.of_kind(kind)
        margin = OUTCOME_CLIP_SHARE / len(before)
        gains[kind] = (sum(s.progress for s in after) - sum(s.progress for s in before)) / len(before) / margin
    assert min(gains.values()) > -1, f"gain in clips' worth per kind: {gains}"


# The first 12 colour changes of the positive control (benchmarks/prompt_following/control.py): fixed
# by the validation split's seeds before this test was written.
CONTROL_CLIPS = 12


@pytest.mark.parametrize("cfg", [5.0, 2.0])
def test_shipped_defaults_recover_most_of_a_planted_drop_and_do_not_harm_the_healthy_model(model, cfg):
    """The positive control in the project, at the sampler's CFG and at a low one: two plants of another
    strength and place (blocks 3-6 with their text logits × 0.7; blocks 6-8 × 0.3: control.PLANTS[1:]) lose
    colour-change following; the shipped defaults (``harness.shipped``) must win back at least half of each
    drop, and must not cost the healthy model more than 0.05 mean progress. Measured on these clips
    (method §10): at CFG 5 healthy 0.59 -> 0.67 with them, blocks 3-6 × 0.7 0.42 -> 0.65 (recovery 1.32),
    blocks 6-8 × 0.3 0.46 -> 0.66 (1.52); at CFG 2 healthy 0.39 -> 0.43, 0.17 -> 0.38 (0.98), 0.21 -> 0.38
    (0.95). The strongest plant (blocks 3-6 × 0.3) is recovered in part only: 0.65 at CFG 5, 0.44 at CFG 2."""
    import control
    scenes, seeds = control.control_clips("val")
    scenes, seeds = scenes[:CONTROL_CLIPS], seeds[:CONTROL_CLIPS]
    shipped = harness.shipped()
    assert shipped.weak == "middle" and shipped.alpha == 0 and shipped.beta == 4 and shipped.end == 1
    harness.CFG, before = cfg, harness.CFG
    try:
        def progress(m, setting):
            return sum(s.progress for s in harness.evaluate(m, scenes, seeds, setting, {}).scores) / len(scenes)

        healthy = progress(model, None)
        cost = healthy - progress(model, shipped)
        recovered = {}
        for p in control.PLANTS[1:]:
            planted = control.plant(p)
            weak = progress(planted, None)
            assert healthy - weak >= p.expected_drop, f"{p.name} did not cause its drop: {healthy:.2f} -> {weak:.2f}"
            recovered[p.name] = (progress(planted, shipped) - weak) / (healthy - weak)
    finally:
        harness.CFG = before
    assert min(recovered.values()) >= 0.5 and cost <= 0.05, (recovered, cost)


def test_standin_latent_to_video_builds_the_harness_conditioning(model):
    """The main job's server graph conditions the model through FocalStandInLatentToVideo; it must
    build what the harness (and so training) builds from the same start frame."""
    from standin_nodes.latent_to_video import latent_to_video
    scene = task.split_scenes("test", 1)[0]
    positive, negative = harness.conditioning(model, scene)
    frame = model.model.process_latent_out(task.reference(scene)[None, :, :1])
    built_pos, built_neg, latent = latent_to_video([[positive[0][0], {}]], [[negative[0][0], {}]], frame,
                                                   length=4 * (task.FRAMES - 1) + 1)
    for built, expected in ((built_pos, positive), (built_neg, negative)):
        for key in ("concat_latent_image", "concat_mask"):
            assert torch.equal(built[0][1][key], expected[0][1][key]), key
    assert torch.equal(latent["samples"], torch.zeros(1, task.CHANNELS, task.FRAMES, task.SIZE, task.SIZE))


def _widget_names(node):
    """A node's widget inputs in schema order: the order of a saved workflow's widgets_values."""
    return [i.id for i in node.define_schema().inputs
            if i.get_io_type() in ("STRING", "FLOAT", "INT", "COMBO", "BOOLEAN")]


def _workflow_configs():
    """(workflow, transfer widget values, Region Anchor mode or None) for every Focal Attention Transfer."""
    configs = []
    for path in sorted(WORKFLOWS.glob("*.json")):
        graph = json.loads(path.read_text())
        nodes = {n["id"]: n for n in graph["nodes"]}
        links = {link[0]: link for link in graph.get("links", [])}
        for node in graph["nodes"]:
            if node["type"] != "FocalAttentionTransfer":
                continue
            values = dict(zip(_widget_names(FocalAttentionTransfer), node["widgets_values"], strict=True))
            anchor_mode = None
            for slot in node.get("inputs", []):
                if slot["name"] == "anchor" and slot.get("link") is not None:
                    anchor_mode = nodes[links[slot["link"]][1]]["widgets_values"][2]
                if slot["name"] in ("weak_blocks", "source_blocks") and slot.get("link") is not None:
                    values[slot["name"]] = WIRED
            configs.append(pytest.param(path.stem, values, anchor_mode, id=f"{path.stem}#{node['id']}"))
    return configs


WIRED = object()   # a block list wired from a Semantic Layer Report


def _blocks_for_this_model(text, depth, measured):
    """A workflow's block list on this 10-block model: 'auto', 'middle' and empty stay, one wired from a
    Report takes the probe's measurement, explicit lists move to the same relative depth."""
    if text is WIRED:
        return measured
    if text.strip() in ("", "auto", "middle"):
        return text.strip()
    return ", ".join(sorted({str(min(9, b * 10 // depth)) for b in parse_block_list(text, depth)}))


@contextmanager
def block_outputs(model, wanted):
    """Record the outputs of the diffusion model's blocks ``wanted`` on every call."""
    seen = {b: [] for b in wanted}
    handles = [model.model.diffusion_model.blocks[b].register_forward_hook(
        lambda module, args, out, b=b: seen[b].append(out.detach().clone())) for b in wanted]
    try:
        yield seen
    finally:
        for h in handles:
            h.remove()


def _block_outputs_of_run(model, scene, wanted):
    with block_outputs(model, wanted) as seen:
        harness.generate(model, scene, seed=3)
    return seen


@pytest.mark.parametrize("workflow, values, anchor_mode", _workflow_configs())
def test_every_example_workflow_configuration_changes_the_weak_blocks(model, blocks, workflow, values,
                                                                      anchor_mode):
    """Its transfer changes what the blocks compute, and so does its anchor on its own: a
    configuration that silently patches nothing, or whose bias never applies, fails here.
    All blocks are compared, since an 'auto' transfer picks its weak blocks while sampling."""
    depth = WORKFLOW_DEPTH["hunyuan" if workflow.startswith("hunyuan") else "wan"]
    settings = {**values, "weak_blocks": _blocks_for_this_model(values["weak_blocks"], depth, blocks["weak"]),
                "source_blocks": _blocks_for_this_model(values["source_blocks"], depth, blocks["responsive"])}
    every_block = list(range(10))
    scene = task.split_scenes("val", 1)[0]
    anchor = harness.anchor_for(scene, anchor_mode) if anchor_mode else None

    base = _block_outputs_of_run(model, scene, every_block)
    patched = harness.node_call(FocalAttentionTransfer, model=model, anchor=anchor, **settings)[0]
    focal = _block_outputs_of_run(patched, scene, every_block)
    changed = _differs(base, focal)
    assert changed, f"{workflow}: Focal Attention Transfer {settings} changed no block"
    if anchor is not None:
        unanchored = harness.node_call(FocalAttentionTransfer, model=model, **settings)[0]
        without = _block_outputs_of_run(unanchored, scene, every_block)
        anchored = _differs(without, focal)
        assert anchored, f"{workflow}: the Region Anchor ('{anchor_mode}') never changed a block"


def _differs(a, b):
    return any(not torch.equal(x, y) for block in a for x, y in zip(a[block], b[block], strict=True))
