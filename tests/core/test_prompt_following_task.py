"""The prompt-following task's exact score (benchmarks/prompt_following/task.py): the target clip
follows, and each way of not doing what the prompt asks is caught."""
import pathlib
import sys
from dataclasses import replace

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2] / "benchmarks" / "prompt_following"))
import task  # noqa: E402

SCENES = task.split_scenes("val", 48)
MOVES = [s for s in SCENES if s.kind == "moves"]
TURNS = [s for s in SCENES if s.kind == "turns"]


def test_both_action_kinds_are_drawn_and_every_prompt_names_one_object_and_one_action():
    assert len(MOVES) >= 12 and len(TURNS) >= 12
    for scene in SCENES:
        assert scene.action in task.actions_for(scene.named.colour)
        assert scene.prompt.split() == ["the", scene.named.colour, scene.named.shape, *scene.action.split()]


def test_the_target_clip_follows_exactly():
    for scene in SCENES:
        result = task.score(scene, task.render(scene))
        assert result.followed and result.exact, (scene.prompt, result)
        assert abs(result.progress - 1) < 1e-5


def test_a_clip_that_keeps_the_picture_follows_no_prompt():
    for scene in SCENES:
        result = task.score(scene, task.reference(scene))
        assert not result.followed and abs(result.progress) < 1e-5, (scene.prompt, result)


def test_the_wrong_action_word_does_not_count():
    for scene in MOVES[:8]:
        wrong = next(d for d in task.DIRECTIONS if d != scene.direction)
        assert not task.score(scene, task.render(replace(scene, action=f"moves {wrong}"))).followed
    for scene in TURNS[:8]:
        wrong = next(c for c in task.COLOURS if c not in (scene.new_colour, scene.named.colour))
        assert not task.score(scene, task.render(replace(scene, action=f"turns {wrong}"))).followed


def test_a_distractor_that_moves_or_changes_colour_fails_the_clip():
    for scene in [s for s in SCENES if len(s.objects) > 1][:8]:
        other = scene.objects[1]
        clip = task.render(scene)
        patch = clip[:, :, other.y:other.y + task.OBJECT, other.x:other.x + task.OBJECT]
        patch -= task.PATTERNS[other.colour][:, None, None, None] * task.SHAPE_MASKS[other.shape]
        result = task.score(scene, clip)
        assert not result.distractors_kept and not result.followed, scene.prompt


def test_a_quarter_of_a_colour_change_is_a_quarter_of_the_progress():
    scene = TURNS[0]
    clip = task.render(scene)
    clip[:, -1] = (clip[:, -1] + 3 * task.reference(scene)[:, -1]) / 4
    result = task.score(scene, clip)
    assert abs(result.progress - 0.25) < 1e-5 and not result.followed


def _erase(clip, scene, index, frames=slice(None)):
    """Remove an object, drawn where the target clip has it, from some frames."""
    obj = scene.objects[index]
    for f in range(task.FRAMES)[frames]:
        y, x = scene.position(index, f)
        clip[:, f, y:y + task.OBJECT, x:x + task.OBJECT] -= (scene.pattern(index, f)[:, None, None]
                                                             * task.SHAPE_MASKS[obj.shape])
    return clip


def test_a_vanished_object_makes_no_progress_whichever_way_the_noise_lies():
    for scene in MOVES[:8]:
        clip = _erase(task.render(scene), scene, 0, slice(1, None))
        result = task.score(scene, clip)
        assert result.progress == 0 and not result.followed and not result.exact, (scene.prompt, result)


def test_a_faint_object_at_the_target_makes_no_progress():
    for scene in MOVES[:8]:
        clip = task.render(scene)
        y, x = scene.position(0, task.FRAMES - 1)
        clip[:, -1, y:y + task.OBJECT, x:x + task.OBJECT] *= 0.3
        result = task.score(scene, clip)
        assert result.progress == 0 and not result.followed, (scene.prompt, result)


def test_a_wrong_way_move_is_negative_progress_of_at_most_one_travel():
    for scene in MOVES[:8]:
        opposite = {"left": "right", "right": "left", "up": "down", "down": "up"}[scene.direction]
        result = task.score(scene, task.render(replace(scene, action=f"moves {opposite}")))
        assert result.progress == -1 and not result.followed, (scene.prompt, result)


def test_a_move_past_one_travel_the_wrong_way_is_still_minus_one():
    checked = 0
    for scene in MOVES:
        dy, dx = task.DIRECTIONS[scene.direction]
        y, x = scene.named.y - dy * 3 * task.STEP, scene.named.x - dx * 3 * task.STEP
        if not (0 <= y <= task.SIZE - task.OBJECT and 0 <= x <= task.SIZE - task.OBJECT):
            continue
        clip = _erase(task.render(scene), scene, 0, slice(-1, None))
        clip[:, -1, y:y + task.OBJECT, x:x + task.OBJECT] += (task.PATTERNS[scene.named.colour][:, None, None]
                                                              * task.SHAPE_MASKS[scene.named.shape])
        result = task.score(scene, clip)
        assert result.along == -3 * task.STEP and result.progress == -1, (scene.prompt, result)
        checked += 1
    assert checked >= 3


def test_an_overdrawn_object_makes_no_progress():
    move = MOVES[0]
    clip = task.render(move)
    y, x = move.position(0, task.FRAMES - 1)
    clip[:, -1, y:y + task.OBJECT, x:x + task.OBJECT] *= 4
    assert task.score(move, clip).progress == 0
    turn = TURNS[0]
    clip = task.render(turn)
    clip[:, -1] *= 4
    result = task.score(turn, clip)
    assert result.progress == 0 and not result.followed and not result.exact, result


def test_destroyed_distractors_earn_no_colour_or_move_progress():
    turns = [s for s in TURNS if len(s.objects) > 1][:6]
    moves = [s for s in MOVES if len(s.objects) > 1][:6]
    for scene in turns + moves:
        clip = _erase(task.render(scene), scene, 1)
        result = task.score(scene, clip)
        assert not result.distractors_kept and result.progress == 0 and not result.followed, (scene.prompt, result)
    scene = moves[0]
    opposite = {"left": "right", "right": "left", "up": "down", "down": "up"}[scene.direction]
    wrong = replace(scene, action=f"moves {opposite}")
    assert task.score(scene, _erase(task.render(wrong), wrong, 1)).progress == -1   # still counts against


def test_paired_interval_matches_the_t_distribution():
    assert abs(task.student_t_quantile(0.975, 10) - 2.228139) < 1e-5
    mean, low, high = task.paired_interval([1.0, 2.0, 3.0, 4.0], [0.0, 0.0, 0.0, 0.0])
    assert mean == 2.5 and abs(high - mean - 3.182446 * (5 / 3) ** 0.5 / 2) < 1e-5
    assert abs(mean - low - (high - mean)) < 1e-12


@pytest.mark.parametrize("recorded_file",
                         ["control_probe_curves_cfg5.json", "control_probe_curves_cfg5_first_step.json"])
def test_the_weak_rule_at_the_default_kappa_finds_the_planted_blocks_on_the_recorded_probe_curves(recorded_file):
    """control.py --probe recorded the Report's curves on the 8 probe clips of the committed model and of
    each plant (results/control_probe_curves_cfg5.json; the first sampled step alone, what auto mode
    observes, in ..._first_step.json). By the harness's vote at the Report's default
    kappa 2, the rule with the contrast test flags every planted × 0.3 block it may flag (not the ends) where
    the dip rule alone does not, picks none as a source, and on the healthy model flags no more than the
    dip rule alone does."""
    import json
    import control
    recorded = json.loads((control.HERE / "results" / recorded_file).read_text())
    healthy_old = control.probe_votes(recorded["healthy"], 2.0, with_contrast=False)
    healthy_new = control.probe_votes(recorded["healthy"], 2.0, with_contrast=True)
    assert len(healthy_new["weak"]) <= len(healthy_old["weak"]), (healthy_old, healthy_new)
    for entry in recorded["plants"]:
        planted = set(entry["plant"]["blocks"]) & set(range(2, 8))
        votes = control.probe_votes(entry["curves"], 2.0, with_contrast=True)
        if entry["plant"]["scale"] <= 0.3:   # the mild × 0.7 plant stays mostly invisible (method §10)
            assert planted <= set(votes["weak"]), (entry["plant"]["name"], votes)
            assert not planted & set(votes["sources"]), (entry["plant"]["name"], votes)
            assert not planted <= set(control.probe_votes(entry["curves"], 2.0, with_contrast=False)["weak"])
