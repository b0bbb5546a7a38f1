"""Parse user block lists such as ``"12-20, 25"`` into sorted block indices."""
import re


_ITEM = re.compile(r"(\d+)(?:-(\d+))?", re.ASCII)
MAX_ECHO = 60   # characters of the user's text quoted back in an error


def _echo(text: str) -> str:
    """The user's text as an error quotes it: cut, so a pasted page is not echoed whole."""
    return text if len(text) <= MAX_ECHO else f"{text[:MAX_ECHO]}… ({len(text)} characters)"


def _magnitude(digits: str) -> tuple[int, str]:
    """Orders ASCII integers of any length without converting them."""
    significant = digits.lstrip("0")
    return len(significant), significant


def _index(digits: str, num_blocks: int) -> int:
    """An ASCII integer, or ``num_blocks`` when it has more digits than any block index (so it is out of
    range without converting thousands of digits, which Python refuses past 4300)."""
    significant = _magnitude(digits)[1]
    return int(significant or "0") if len(significant) <= len(str(num_blocks)) else num_blocks


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
            raise ValueError(f"'{_echo(text.strip())}' has an empty item between commas; remove the extra comma")
        for item in items:
            match = _ITEM.fullmatch(item)
            if match is None:
                raise ValueError(f"'{_echo(item)}' is not a block index or range like '12-20'")
            lo = _index(match[1], num_blocks)
            hi = _index(match[2], num_blocks) if match[2] is not None else lo
            if match[2] is not None and _magnitude(match[1]) > _magnitude(match[2]):
                raise ValueError(f"range '{_echo(item)}' runs backwards; write it as "
                                 f"'{_echo(match[2])}-{_echo(match[1])}'")
            if hi >= num_blocks:
                raise ValueError(f"block '{_echo(item)}' is out of range: this model has blocks 0-{num_blocks - 1}")
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
