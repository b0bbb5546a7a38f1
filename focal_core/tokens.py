"""Keyword → token-span mapping in the video model's own tokenization.

FSG biases the DiT's attention to the text tokens of each keyword, so a keyword must be found
among the tokens the DiT actually sees, not re-tokenized on its own: a sentencepiece or BPE
tokenizer splits "Cat" at the start of a prompt differently from "cat" after a space, and
"cats" is often ``▁C`` ``ats``. So each token piece is turned back into the bytes it stands
for, the keyword is matched on that text (case-insensitive, whole word, plural allowed), and
every token overlapping a match is returned. This handles multi-token keywords, repeated
words (all occurrences), punctuation glued to words and byte-fallback pieces alike.

Two piece conventions are understood:
    sentencepiece (umT5 for Wan, T5):   ``▁`` marks a space, ``<0xE7>`` is a raw byte.
    byte-level BPE (LLaMA 3 for HunyuanVideo 1.0, Qwen2.5-VL for 1.5): GPT-2's byte→unicode table,
        ``Ġ`` = space.
"""
import re
from collections.abc import Iterable, Sequence

# Words that never name a region. English only: for other languages pass keywords explicitly.
STOP_WORDS = frozenset("""
a an the and or but nor so yet of in on at to from with without within by for as into onto over
under above below behind beside between through across along around toward towards up down out off
is are was were be been being am has have had do does did will would can could should may might
it its it's this that these those there here his her hers their theirs our your my mine he she
they we you i me him them who whom whose which what while when where then than very too also just
slowly quickly gently softly suddenly still again some any each every all both few more most other
video scene camera shot view frame image picture photo clip style footage moment background
""".split())

_SPECIAL = re.compile(r"^<[^<>]+>$")
_BYTE = re.compile(r"^<0x([0-9A-Fa-f]{2})>$")
_SEPARATOR = b"\x00"   # stands for special tokens and embeddings: never part of a keyword


def _byte_decoder() -> dict[str, int]:
    """Inverse of GPT-2's ``bytes_to_unicode`` table used by byte-level BPE vocabularies."""
    printable = list(range(33, 127)) + list(range(161, 173)) + list(range(174, 256))
    chars, extra = {}, 0
    for b in range(256):
        if b in printable:
            chars[chr(b)] = b
        else:
            chars[chr(256 + extra)] = b
            extra += 1
    return chars


_BYTE_DECODER = _byte_decoder()


def is_byte_level(vocab_pieces: Iterable[str]) -> bool:
    """True for a byte-level BPE vocabulary (``Ġ`` space marker), False for sentencepiece (``▁``)."""
    spaced = bpe = 0
    for piece in vocab_pieces:
        spaced += piece.startswith("▁")
        bpe += piece.startswith("Ġ")
    return bpe > spaced


def piece_bytes(piece: str | None, byte_level: bool) -> bytes:
    """The text bytes a token piece stands for; special tokens and embeddings (None) → separator."""
    if piece is None:
        return _SEPARATOR
    byte = _BYTE.match(piece)
    if byte:
        return bytes([int(byte.group(1), 16)])
    if _SPECIAL.match(piece):
        return _SEPARATOR
    if byte_level and all(c in _BYTE_DECODER for c in piece):
        return bytes(_BYTE_DECODER[c] for c in piece)
    return piece.replace("▁", " ").encode("utf-8")


def _pattern(keyword: str) -> re.Pattern:
    """Whole-word, case-insensitive, optional plural; word edges only where the keyword has
    ASCII letters (so CJK keywords still match inside unsegmented text)."""
    words = keyword.strip().split()
    body = rb"\s+".join(re.escape(w.encode("utf-8")) for w in words)
    head = rb"(?<![A-Za-z0-9])" if words[0][0].isascii() and words[0][0].isalnum() else b""
    tail = rb"(?:e?s)?(?![A-Za-z0-9])" if words[-1][-1].isascii() and words[-1][-1].isalnum() else b""
    return re.compile(head + body + tail, re.IGNORECASE)


def keyword_span(pieces: Sequence[str | None], keyword: str, byte_level: bool) -> tuple[int, ...]:
    """Indices of every token overlapping an occurrence of ``keyword``; () when it is absent.

    pieces: the token pieces in the order the DiT sees them (index 0 = first prompt token).

    >>> keyword_span(["▁A", "▁red", "-", "car", "▁and", "▁a", "▁car", "."], "car", False)
    (3, 6)
    """
    if not keyword.strip():
        return ()
    text, owner = bytearray(), []
    for i, piece in enumerate(pieces):
        chunk = piece_bytes(piece, byte_level)
        text += chunk
        owner += [i] * len(chunk)
    found = set()
    for match in _pattern(keyword).finditer(bytes(text)):
        found.update(owner[match.start():match.end()])
    return tuple(sorted(found))


def parse_keywords(text: str) -> tuple[str, ...]:
    """Comma-separated keywords, stripped, case-insensitively de-duplicated, order kept."""
    seen, out = set(), []
    for word in (w.strip() for w in text.split(",")):
        if word and word.lower() not in seen:
            seen.add(word.lower())
            out.append(word)
    return tuple(out)


def content_words(prompt: str, limit: int = 4) -> tuple[str, ...]:
    """The first ``limit`` distinct content words of an English prompt (no parser: stop words
    and words shorter than 3 letters are dropped, weights like ``(cat:1.2)`` are ignored)."""
    seen, out = set(), []
    for word in re.findall(r"[^\W\d_]+(?:'[^\W\d_]+)?", prompt):
        lower = word.lower()
        if len(lower) < 3 or lower in STOP_WORDS or lower in seen:
            continue
        seen.add(lower)
        out.append(lower)
        if len(out) == limit:
            break
    return tuple(out)
