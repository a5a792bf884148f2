"""Output files that appear whole or not at all.

Every file adcli writes (--out, dot -o, profile --trace) is written to a temporary file
in the same folder and moved over the target only once it is complete, so a command that
fails (a bad value, a full disk, a Graphviz error, Ctrl-C) leaves no partial file and
keeps an existing one intact. Targets that are not regular files (/dev/stdout, a pipe)
are written directly: they cannot be replaced, and must not be.
"""
from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager


@contextmanager
def replacing(path):
    """Yield a temporary path to write; on success it becomes `path`."""
    if os.path.exists(path) and not os.path.isfile(path):
        yield path
        return
    path = os.path.realpath(path)     # through a symbolic link: the link stays a link
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(path)}.", suffix=".part")
    os.close(fd)
    try:
        # mkstemp makes the file private; give it the permissions open() would have
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


@contextmanager
def writing(path, mode="w"):
    """open(path, mode) for writing, through `replacing`. Text is UTF-8; a byte that was
    not (a file name's, kept as a lone surrogate) is written as \udcff."""
    text = {} if "b" in mode else {"encoding": "utf-8", "errors": "backslashreplace"}
    with replacing(path) as tmp:
        with open(tmp, mode, **text) as f:
            yield f
