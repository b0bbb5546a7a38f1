"""Parse user block lists such as ``"12-20, 25"`` into sorted block indices."""


def parse_block_list(text: str, num_blocks: int) -> list[int]:
    """Return the sorted, de-duplicated block indices named by ``text``.

    Accepts comma- or space-separated integers and inclusive ranges ``a-b``.
    Raises ``ValueError`` naming the offending token when it is malformed or
    outside ``0 .. num_blocks-1``.

    >>> parse_block_list("3, 1-2, 2", 8)
    [1, 2, 3]
    """
    blocks: set[int] = set()
    for token in text.replace(",", " ").split():
        lo_text, sep, hi_text = token.partition("-")
        try:
            lo = int(lo_text)
            hi = int(hi_text) if sep else lo
        except ValueError:
            raise ValueError(f"'{token}' is not a block index or range like '12-20'") from None
        if lo > hi:
            raise ValueError(f"range '{token}' runs backwards; write it as '{hi}-{lo}'")
        if lo < 0 or hi >= num_blocks:
            raise ValueError(
                f"block '{token}' is out of range: this model has blocks 0-{num_blocks - 1}")
        blocks.update(range(lo, hi + 1))
    return sorted(blocks)


def format_block_list(blocks) -> str:
    """Inverse of :func:`parse_block_list`, compressing runs: ``[1,2,3,7] -> "1-3, 7"``."""
    parts, run = [], []
    for b in sorted(set(blocks)):
        if run and b == run[-1] + 1:
            run.append(b)
            continue
        if run:
            parts.append(f"{run[0]}-{run[-1]}" if len(run) > 1 else str(run[0]))
        run = [b]
    if run:
        parts.append(f"{run[0]}-{run[-1]}" if len(run) > 1 else str(run[0]))
    return ", ".join(parts)
