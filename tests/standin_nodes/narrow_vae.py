"""TEST-ONLY: load a narrow Wan2.2 or HunyuanVideo 1.5 VAE (scripts/make_tiny_models.py) through the
host's own VAE detection.

comfy.sd.VAE reads the Wan2.1 VAE's width from the file, but builds the Wan2.2 VAE (48 latent channels)
and the HunyuanVideo 1.5 VAE (32) at fixed full widths, 0.7 and 1.3 billion parameters: no small file
loads through the stock VAELoader. This loader runs the same ``comfy.sd.VAE(sd=...)`` (detection,
latent channels, compression ratios, process_input/output, memory estimates all the host's) while the
one class it builds takes its widths from the file, then restores the class.
"""
import contextlib

import folder_paths
from comfy_api.latest import io

import comfy.ldm.hunyuan_video.vae_refiner as hunyuan15_vae
import comfy.ldm.wan.vae2_2 as wan22_vae
import comfy.sd
import comfy.utils


@contextlib.contextmanager
def _built_with(module, name, widths):
    """While open, ``module.name(**config)`` builds the host class with ``widths(config)`` over the
    host's config."""
    host_class = getattr(module, name)
    setattr(module, name, lambda *args, **config: host_class(*args, **{**config, **widths(config)}))
    try:
        yield
    finally:
        setattr(module, name, host_class)


def _narrowed(sd):
    """The context that narrows the class the host will detect for this state dict."""
    if "decoder.upsamples.0.upsamples.0.residual.2.weight" in sd:     # the host's Wan2.2 VAE key
        widths = {"dim": sd["encoder.conv1.weight"].shape[0], "dec_dim": sd["decoder.head.0.gamma"].shape[0]}
        return _built_with(wan22_vae, "WanVAE", lambda config: widths)
    if "decoder.conv_in.conv.weight" in sd and sd["decoder.conv_in.conv.weight"].shape[1] == 32:   # HunyuanVideo 1.5
        first = sd["encoder.conv_in.conv.weight"].shape[0]

        def scaled(config):
            full = config["block_out_channels"]
            return {"block_out_channels": [c * first // full[0] for c in full]}
        stack = contextlib.ExitStack()
        for part in ("Encoder", "Decoder"):
            stack.enter_context(_built_with(hunyuan15_vae, part, scaled))
        return stack
    raise ValueError("FocalStandInVAELoader: this file is neither a Wan2.2 nor a HunyuanVideo 1.5 VAE; "
                     "load other VAEs with the stock VAELoader.")


class FocalStandInVAELoader(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="FocalStandInVAELoader",
            display_name="Focal Stand-in Narrow VAE Loader (TEST ONLY)",
            category="testing/focal_standins",
            description="TEST ONLY: a narrow Wan2.2 / HunyuanVideo 1.5 VAE through the host's own detection.",
            inputs=[io.Combo.Input("vae_name", options=folder_paths.get_filename_list("vae"))],
            outputs=[io.Vae.Output()],
        )

    @classmethod
    def execute(cls, vae_name) -> io.NodeOutput:
        sd = comfy.utils.load_torch_file(folder_paths.get_full_path_or_raise("vae", vae_name))
        with _narrowed(sd):
            vae = comfy.sd.VAE(sd=sd)
        vae.throw_exception_if_invalid()
        return io.NodeOutput(vae)
