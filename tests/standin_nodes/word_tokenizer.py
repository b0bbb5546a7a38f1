"""TEST-ONLY: a weightless host CLIP whose tokenizer splits words like FocalStandInTextEncode
(one token per word, then an end token), so Region Anchor can find keyword spans that line up with
the stand-in conditioning. No tiny umT5, LLaMA or Qwen2.5-VL can be loaded by the host's CLIP loaders."""
import torch
from comfy_api.latest import io

import comfy.sd

HEADER, USER, HEADER_END, BLANK_LINE, EOT = 128006, 882, 128007, 271, 128009
# Qwen2.5 ids of HunyuanVideo 1.5's chat template (system turn, user turn, assistant header).
IM_START, IM_END, NEWLINE, SYSTEM, QWEN_USER, ASSISTANT = 151644, 151645, 198, 8948, 872, 77091


def _byte_encoder():
    """GPT-2's byte -> printable character table (LLaMA-3 pieces use it)."""
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("\u00a1"), ord("\u00ac") + 1), *range(ord("\u00ae"), 256)]
    table, extra = {b: chr(b) for b in keep}, 0
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + extra)
            extra += 1
    return table


class _Vocab:
    def __init__(self, key, specials):
        self.embedding_key, self.inv_vocab, self._ids = key, dict(specials), {}

    def id(self, piece):
        if piece not in self._ids:
            self._ids[piece] = 1000 + len(self._ids)
            self.inv_vocab[self._ids[piece]] = piece
        return self._ids[piece]


class WordTokenizer:
    def __init__(self, family):
        self.family = family
        if family == "wan":
            self.umt5xxl = _Vocab("umt5xxl", {0: "<pad>", 1: "</s>"})
        elif family == "hunyuan_video_15":
            self.qwen25_7b = _Vocab("qwen25_7b", {IM_START: "<|im_start|>", IM_END: "<|im_end|>", NEWLINE: "\u010a",
                                                  SYSTEM: "system", QWEN_USER: "user", ASSISTANT: "assistant"})
            self._bytes = _byte_encoder()
        else:
            self.llama = _Vocab("llama", {HEADER: "<|start_header_id|>", USER: "user", HEADER_END: "<|end_header_id|>",
                                          BLANK_LINE: "\u010a\u010a", EOT: "<|eot_id|>"})
            self._bytes = _byte_encoder()

    def tokenize_with_weights(self, text, return_word_ids=False, **kwargs):
        words = text.split()
        if self.family == "wan":
            return {"umt5xxl": [[(self.umt5xxl.id("\u2581" + w), 1.0) for w in words] + [(1, 1.0)]]}
        pieces = ["\u0120" + "".join(self._bytes[b] for b in w.encode("utf-8")) for w in words]
        if self.family == "hunyuan_video_15":
            ids = ([IM_START, SYSTEM, NEWLINE, IM_END, NEWLINE, IM_START, QWEN_USER, NEWLINE]
                   + [self.qwen25_7b.id(p) for p in pieces] + [IM_END, NEWLINE, IM_START, ASSISTANT, NEWLINE])
            return {"qwen25_7b": [[(i, 1.0) for i in ids]]}
        ids = [HEADER, USER, HEADER_END, BLANK_LINE] + [self.llama.id(p) for p in pieces] + [EOT]
        return {"llama": [[(i, 1.0) for i in ids]]}


class _NoTextEncoder(torch.nn.Module):
    """The text encoder of a weightless CLIP: the host wraps it in its own patcher; it never encodes."""

    def __init__(self, device=None, dtype=None, model_options=None):
        super().__init__()
        self.dtypes = set()

    def encode_token_weights(self, token_weight_pairs):
        raise RuntimeError("TEST-ONLY weightless CLIP: it tokenizes only; encode with FocalStandInTextEncode")


def weightless_clip(tokenizer) -> comfy.sd.CLIP:
    """A ``comfy.sd.CLIP`` built by the host's own constructor (patcher, ``is_dynamic`` and all, as the
    prompt worker expects of every cached output) around ``tokenizer`` and no weights."""
    class Target:
        params, clip = {}, _NoTextEncoder

        @staticmethod
        def tokenizer(embedding_directory=None, tokenizer_data=None):
            return tokenizer
    return comfy.sd.CLIP(target=Target)


class FocalStandInWordTokenizerCLIP(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(node_id="FocalStandInWordTokenizerCLIP",
                         display_name="Focal Stand-in Word-Tokenizer CLIP (TEST ONLY)",
                         category="testing/focal_standins",
                         inputs=[io.Combo.Input("family", options=["wan", "hunyuan_video", "hunyuan_video_15"])],
                         outputs=[io.Clip.Output()])

    @classmethod
    def execute(cls, family) -> io.NodeOutput:
        return io.NodeOutput(weightless_clip(WordTokenizer(family)))
