"""Writing a file so that readers see the old content or the new, never half of it."""
from __future__ import annotations

import os
from pathlib import Path


def write_atomic(path: Path, data: str | bytes, mode: int = 0o600) -> None:
    """Write `data` under a temporary name with `mode`, fsync, then rename over `path`."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    # a new file, owner-only while the bytes go in: a stale temporary file (a crash's, or one made with a wider
    # mode) or a link planted under its name is removed first, never written through or kept with its mode
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data.encode() if isinstance(data, str) else data)
        f.flush()
        os.fsync(f.fileno())
        os.fchmod(f.fileno(), mode)  # what the caller asked for (the umask may have narrowed the 0600)
    os.replace(tmp, path)


__all__ = ["write_atomic"]
