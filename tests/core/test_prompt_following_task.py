"""The prompt-following task's exact score (benchmarks/prompt_following/task.py): the target clip
follows, and each way of not doing what the prompt asks is caught."""
import pathlib
import sys
from dataclasses import replace

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
