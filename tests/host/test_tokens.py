"""Keyword → token spans with the real tokenizers shipped in the host.

Wan's umT5 tokenizer takes its sentencepiece model from the text-encoder checkpoint, which is
not available offline, so the host's own ``WanT5Tokenizer`` is fed the host's Pile-T5
sentencepiece model (same '▁' and byte-fallback conventions, other ids). ``t5_tokenizer`` (T5
v1.1 through Hugging Face) is a second sentencepiece vocabulary; ``llama_tokenizer`` is
HunyuanVideo's LLaMA-3 byte-level BPE.
"""
import types

import pytest
import torch
from _host import host_clip, hunyuan_tokenizer, wan_tokenizer

from focal_guidance.focal_core import tokens
from focal_guidance.nodes import anchor as anchor_node

@pytest.fixture(scope="module", params=["wan", "hunyuan"])
def encoder(request):
    return host_clip(wan_tokenizer() if request.param == "wan" else hunyuan_tokenizer())


def decoded(pieces, span, byte_level):
    return b"".join(tokens.piece_bytes(pieces[i], byte_level) for i in span).decode("utf-8", "replace")


def runs(span):
    """Runs of consecutive indices: one per occurrence."""
    out = []
    for i in span:
        if out and i == out[-1][-1] + 1:
            out[-1].append(i)
        else:
            out.append([i])
    return out


def groups(span):
    return len(runs(span))


PROMPT = "A Cat, a red skateboard and the cat's hat. Cats (cat) chase a skateboard!"


@pytest.mark.parametrize("keyword,occurrences,text", [
    ("cat", 4, {"cat", "cats"}),                  # case, punctuation, possessive, plural, parens
    ("skateboard", 2, {"skateboard"}),             # one word, several tokens
    ("red skateboard", 1, {"red skateboard"}),     # several words
    ("hat", 1, {"hat"}),                           # no match inside "chase"
])
def test_spans_cover_every_occurrence_and_only_the_word(encoder, keyword, occurrences, text):
    _, pieces, byte_level = anchor_node._prompt_pieces(encoder, PROMPT)
    span = tokens.keyword_span(pieces, keyword, byte_level)
    assert groups(span) == occurrences
    for run in runs(span):
        assert decoded(pieces, run, byte_level).strip().lower() in text


def test_absent_and_partial_words_are_not_found(encoder):
    _, pieces, byte_level = anchor_node._prompt_pieces(encoder, PROMPT)
    assert tokens.keyword_span(pieces, "dog", byte_level) == ()
    assert tokens.keyword_span(pieces, "ase", byte_level) == ()       # inside "chase"
    assert tokens.keyword_span(pieces, "skate", byte_level) == ()     # prefix of a word


def test_wan_indices_are_positions_in_the_umt5_sequence():
    encoder = host_clip(wan_tokenizer())
    ids = [p[0] for p in encoder.tokenize(PROMPT)["umt5xxl"][0]]
    _, pieces, _ = anchor_node._prompt_pieces(encoder, PROMPT)
    assert len(pieces) == len(ids) == 512                   # padded like the DiT's context
    inv = encoder.tokenizer.clip_umt5xxl.inv_vocab
    assert pieces == [inv[i] for i in ids]
    assert [inv[ids[i]] for i in tokens.keyword_span(pieces, "hat", False)] == ["▁hat"]


def test_t5_v11_tokenizer_pieces():
    from comfy.text_encoders.sd3_clip import T5XXLTokenizer
    tok = T5XXLTokenizer()
    ids = [p[0] for p in tok.tokenize_with_weights("Two Dogs, one dog; a doghouse.")[0]]
    pieces = [tok.inv_vocab[i] for i in ids]
    assert not tokens.is_byte_level(tok.inv_vocab.values())
    span = tokens.keyword_span(pieces, "dog", False)
    assert groups(span) == 2 and "doghouse" not in decoded(pieces, span, False)


def test_sentencepiece_byte_fallback_for_cjk():
    encoder = host_clip(wan_tokenizer())
    _, pieces, byte_level = anchor_node._prompt_pieces(encoder, "一只猫在草地上")
    span = tokens.keyword_span(pieces, "猫", byte_level)
    assert span and decoded(pieces, span, byte_level) == "猫"
    assert any(pieces[i].startswith("<0x") for i in span)


def test_hunyuan_spans_index_the_dit_text_stream_after_the_template_crop():
    """Run the host's own crop (HunyuanVideoClipModel.encode_token_weights) on a fake LLaMA whose
    output is each token's position, with the I2V template and 576 image tokens (interleave 2):
    span index + number of image tokens must land on the keyword's tokens."""
    from comfy.text_encoders.hunyuan_video import HunyuanVideoClipModel
    from comfy_extras.nodes_hunyuan import PROMPT_TEMPLATE_ENCODE_VIDEO_I2V

    def positions(pairs):
        sizes = [p[0]["data"].shape[0] if isinstance(p[0], dict) else 1 for p in pairs[0]]
        length = sum(sizes)
        return torch.arange(length, dtype=torch.float32).view(1, -1, 1), None, {"attention_mask": torch.ones(1, length)}

    fake = types.SimpleNamespace(llama=types.SimpleNamespace(encode_token_weights=positions),
                                 clip_l=types.SimpleNamespace(encode_token_weights=lambda pairs: (None, None)))
    encoder = host_clip(hunyuan_tokenizer())
    prompt = "A dog chases a red ball; the dog jumps."
    token_sets = encoder.tokenize(prompt, llama_template=PROMPT_TEMPLATE_ENCODE_VIDEO_I2V,
                                  image_embeds=torch.zeros(1, 576, 8), image_interleave=2)
    stream = HunyuanVideoClipModel.encode_token_weights(fake, token_sets)[0][0, :, 0].long()
    image_tokens = 288
    expanded = []
    for pair in token_sets["llama"][0]:
        expanded += [None] * pair[0]["data"].shape[0] if isinstance(pair[0], dict) else [pair[0]]

    _, pieces, byte_level = anchor_node._prompt_pieces(encoder, prompt)     # default (T2V) template
    assert len(stream) == image_tokens + len(pieces)
    inv = encoder.tokenizer.llama.inv_vocab
    for keyword, occurrences in (("dog", 2), ("red ball", 1)):
        span = tokens.keyword_span(pieces, keyword, byte_level)
        assert groups(span) == occurrences
        seen = [inv[expanded[stream[image_tokens + i]]] for i in span]
        assert seen == [pieces[i] for i in span]
        assert decoded(seen, range(len(seen)), True).replace(" ", "").lower() == keyword.replace(" ", "") * occurrences


def test_hunyuan15_pieces_are_the_tokens_after_the_hosts_qwen_crop():
    """The host's own crop (HunyuanImageTEModel, HunyuanVideo 1.5's text encoder) on a fake Qwen2.5-VL
    whose output is each token's position: the anchor's pieces are exactly the context the DiT reads."""
    from comfy.text_encoders.hunyuan_image import HunyuanImageTEModel
    from comfy.text_encoders.hunyuan_video import HunyuanVideo15Tokenizer

    def positions(pairs):
        length = len(pairs[0])
        return torch.arange(length, dtype=torch.float32).view(1, -1, 1), None, {"attention_mask": torch.ones(1, length)}

    fake = HunyuanImageTEModel.__new__(HunyuanImageTEModel)   # the host's class, its Qwen model stood in for
    torch.nn.Module.__init__(fake)
    fake.clip_name, fake.clip, fake.byt5_small = "qwen25_7b", "qwen25_7b", None
    fake.qwen25_7b = types.SimpleNamespace(encode_token_weights=positions)
    encoder = host_clip(HunyuanVideo15Tokenizer())
    prompt = 'A dog chases a red ball past a sign that says "OPEN"; the dog jumps.'
    token_sets = encoder.tokenize(prompt)
    assert "byt5" in token_sets   # quoted text also goes to byT5, whose tokens lead the DiT's text stream
    stream = HunyuanImageTEModel.encode_token_weights(fake, token_sets)[0][0, :, 0].long().tolist()
    family, pieces, byte_level = anchor_node._prompt_pieces(encoder, prompt)
    assert (family.name, family.tokenizer) == ("HunyuanVideo 1.5", "qwen25_7b")
    ids = [pair[0] for pair in token_sets["qwen25_7b"][0]]
    inv = encoder.tokenizer.qwen25_7b.inv_vocab
    assert [inv[ids[i]] for i in stream] == pieces
    for keyword, occurrences in (("dog", 2), ("red ball", 1)):
        span = tokens.keyword_span(pieces, keyword, byte_level)
        assert groups(span) == occurrences
        assert decoded(pieces, span, byte_level).replace(" ", "").lower() == keyword.replace(" ", "") * occurrences


def test_content_words_and_keyword_parsing():
    assert tokens.content_words("A woman in a (red:1.2) dress walks her dog along the beach, slowly.") == \
        ("woman", "red", "dress", "walks")
    assert tokens.content_words("the a of") == ()
    assert tokens.parse_keywords(" cat, Red car ,, CAT,") == ("cat", "Red car")


def test_byte_level_detection_from_real_vocabularies():
    assert tokens.is_byte_level(hunyuan_tokenizer().llama.inv_vocab.values())
    assert not tokens.is_byte_level(wan_tokenizer().clip_umt5xxl.inv_vocab.values())
