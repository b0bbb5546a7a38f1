"""TEST-ONLY: WanImageToVideo for a start picture that is already a latent.

The prompt-following test model (benchmarks/prompt_following) lives in latent space: its start
picture is a Wan latent frame, with no VAE that could decode or encode it. This node takes that
frame (a stock LoadLatent of a ``.latent`` file) where WanImageToVideo takes an image and a VAE, and
sets the same ``concat_latent_image`` and ``concat_mask`` on both conditionings. One difference, the
layout the test model was trained on (task.reference): the frame is repeated over every latent
frame instead of being followed by encoded grey frames. The mask still marks only frame 0 as given.
"""
import node_helpers
import torch
from comfy_api.latest import io

NODE = "Focal Stand-in Latent To Video (TEST ONLY)"


def latent_to_video(positive, negative, start_latent: torch.Tensor, length: int):
    """(positive, negative, empty latent) as WanImageToVideo returns them, from a one-frame latent."""
    if start_latent.ndim != 5 or start_latent.shape[2] != 1:
        raise ValueError(f"{NODE}: start_latent must be one Wan latent frame [batch, channels, 1, height, "
                         f"width], got shape {list(start_latent.shape)}; save a single frame to the .latent file.")
    frames = (length - 1) // 4 + 1
    reference = start_latent.expand(-1, -1, frames, -1, -1).clone()
    mask = torch.ones(1, 1, frames, *start_latent.shape[-2:], dtype=start_latent.dtype)
    mask[:, :, 0] = 0.0
    values = {"concat_latent_image": reference, "concat_mask": mask}
    return (node_helpers.conditioning_set_values(positive, values),
            node_helpers.conditioning_set_values(negative, values),
            {"samples": torch.zeros_like(reference)})


class FocalStandInLatentToVideo(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="FocalStandInLatentToVideo",
            display_name=NODE,
            category="testing/focal_standins",
            description="TEST ONLY: WanImageToVideo's conditioning from a start latent frame (no VAE), "
                        "repeated over all frames as the prompt-following test model was trained.",
            inputs=[
                io.Conditioning.Input("positive"),
                io.Conditioning.Input("negative"),
                io.Latent.Input("start_latent", tooltip="One latent frame, e.g. from LoadLatent."),
                io.Int.Input("length", default=9, min=1, max=4096, step=4, tooltip="Video frames."),
            ],
            outputs=[
                io.Conditioning.Output(display_name="positive"),
                io.Conditioning.Output(display_name="negative"),
                io.Latent.Output(display_name="latent"),
            ],
        )

    @classmethod
    def execute(cls, positive, negative, start_latent, length) -> io.NodeOutput:
        return io.NodeOutput(*latent_to_video(positive, negative, start_latent["samples"], length))
