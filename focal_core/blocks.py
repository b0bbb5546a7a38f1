"""Parse user block lists such as ``"12-20, 25"`` into sorted block indices."""
import re


_ITEM = re.compile(r"(\d+)(?:-(\d+))?", re.ASCII)


def parse_block_list(text: str, num_blocks: int) -> list[int]:
    """Return the sorted, de-duplicated block indices named by ``text``.

    Items are separated by commas (spaces also separate items within one comma field); an item
    is an ASCII integer or an inclusive range ``a-b``. An empty text means no blocks; an empty
    item such as the middle of ``1,,2`` is refused, since it usually hides a typo. Raises
    ``ValueError`` naming the offending item when it is malformed or outside ``0 .. num_blocks-1``.

    >>> parse_block_list("3, 1-2, 2", 8)
    [1, 2, 3]
    """
    if not text.strip():
        return []
    blocks: set[int] = set()
    for field in text.split(","):
        items = re.sub(r"\s*-\s*", "-", field.strip()).split()
        if not items:
            raise ValueError(f"'{text.strip()}' has an empty item between commas; remove the extra comma")
        for item in items:
            match = _ITEM.fullmatch(item)
            if match is None:
                raise ValueError(f"'{item}' is not a block index or range like '12-20'")
            lo = int(match[1])
            hi = int(match[2]) if match[2] is not None else lo
            if lo > hi:
                raise ValueError(f"range '{item}' runs backwards; write it as '{hi}-{lo}'")
            if hi >= num_blocks:
                raise ValueError(f"block '{item}' is out of range: this model has blocks 0-{num_blocks - 1}")
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
