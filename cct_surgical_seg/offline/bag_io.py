"""Reading and writing ROS 2 bags with rosbags (no ROS installation needed).

Why a bag is written to a temporary sibling and renamed: a bag is a folder (data file +
metadata.yaml), and a crash, Ctrl-C or a truncated input half-way must not leave something at
the output path that looks like a finished bag. On error the writer is still closed properly
(so the partial bag is valid), then removed - or kept next to the output with ``keep_partial``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from rosbags.highlevel import AnyReader, AnyReaderError
from rosbags.rosbag2 import ReaderError, StoragePlugin, Writer

from cct_surgical_seg.messages import bag_types
from cct_surgical_seg.messages.types import COMPRESSED_IMAGE, IMAGE

IMAGE_TYPES = (IMAGE, COMPRESSED_IMAGE)


class BagError(RuntimeError):
    """A bag that cannot be used, with the reason in words (the CLI prints it, exit code 2)."""


@contextlib.contextmanager
def atomic_bag_writer(
    out: str | os.PathLike[str], storage: str = "mcap", *, overwrite: bool = False, keep_partial: bool = False
) -> Iterator[Writer]:
    """A rosbags Writer whose bag appears at ``out`` only once it is complete and closed."""
    out = Path(out)
    if storage not in ("mcap", "sqlite3"):
        raise ValueError(f"storage must be mcap or sqlite3, not {storage!r}")
    if out.exists() and not overwrite:
        raise FileExistsError(f"output {out} exists (pass --overwrite to replace it)")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp_root = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:  # whatever happens (an error, a signal at any point), the temporary folder goes
        tmp_bag = tmp_root / out.name
        plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
        writer = Writer(tmp_bag, version=9, storage_plugin=plugin)
        writer.open()
        try:
            yield writer
        except BaseException:
            with contextlib.suppress(Exception):
                writer.close()
            if keep_partial and tmp_bag.exists():
                partial = out.with_name(out.name + ".partial")
                shutil.rmtree(partial, ignore_errors=True)
                os.replace(tmp_bag, partial)
            raise
        writer.close()
        if out.exists():
            shutil.rmtree(out) if out.is_dir() else out.unlink()
        os.replace(tmp_bag, out)
    finally:
        shutil.rmtree(tmp_root, ignore_errors=True)


class BagOutput:
    """Topics of one output bag: connections made on first use, messages counted per topic."""

    def __init__(self, writer: Writer, reader: AnyReader) -> None:
        self._writer = writer
        self._reader = reader
        self._connections: dict[str, Any] = {}
        self.written: dict[str, int] = {}

    def _connection(self, topic: str, msgtype: str, src: Any | None) -> Any:
        if topic not in self._connections:
            kwargs: dict[str, Any] = {"typestore": bag_types.typestore()}
            if src is not None and src.digest:  # copy the original definition
                kwargs = {"msgdef": src.msgdef.data, "rihs01": src.digest}
            elif src is not None:  # a lone .mcap has no type hashes: the reader's types
                kwargs = {"typestore": self._reader.typestore}
            self._connections[topic] = self._writer.add_connection(topic, msgtype, **kwargs)
        return self._connections[topic]

    def write_raw(self, topic: str, msgtype: str, logtime: int, data: bytes, src: Any | None = None) -> None:
        """Serialized ``data``; ``src`` (an input connection) keeps the input's type definition."""
        self._writer.write(self._connection(topic, msgtype, src), logtime, data)
        self.written[topic] = self.written.get(topic, 0) + 1

    def write(self, topic: str, logtime: int, msg: Any) -> None:
        """A message of the bag typestore (:mod:`cct_surgical_seg.messages.bag_types`)."""
        self.write_raw(topic, msg.__msgtype__, logtime, bag_types.serialize(msg))


def open_reader(path: str | os.PathLike[str]) -> AnyReader:
    """An opened AnyReader, or BagError saying why the bag cannot be read.

    A bag is a folder with ``metadata.yaml`` (mcap or sqlite3) or a single ``.mcap`` file.
    """
    path = Path(path)
    if not path.exists():
        raise BagError(f"input bag {path} does not exist")
    if path.is_dir() and not (path / "metadata.yaml").is_file():
        raise BagError(_not_a_bag_folder(path))
    try:
        reader = AnyReader([path])
        reader.open()
    except (AnyReaderError, ReaderError, OSError, ValueError, KeyError) as exc:
        raise BagError(f"cannot read bag {path}: {exc} (truncated, corrupt or not a ROS 2 bag?)") from exc
    return reader


def _not_a_bag_folder(path: Path) -> str:
    """Why a folder without metadata.yaml is not a bag, with the way out when there is one."""
    reason = f"{path} is not a ROS 2 bag: the folder has no metadata.yaml"
    mcaps = sorted(path.glob("*.mcap"))
    if len(mcaps) == 1:
        return f"{reason}; to read its only mcap file pass it directly: cct-bag {mcaps[0]} OUTPUT"
    return reason + (" and is empty" if not any(path.iterdir()) else "")


def pick_image_topic(reader: AnyReader, topic: str | None) -> Any:
    """The image connection: the named topic (which must be an image type), or the bag's only
    camera topic (image topics other than ground truth); with several, BagError lists them."""
    by_topic = {c.topic: c for c in reader.connections}
    if topic is not None:
        conn = by_topic.get(topic)
        if conn is None:
            raise BagError(
                f"topic {topic} is not in the bag (topics: {', '.join(sorted(by_topic)) or 'none'})"
            )
        if conn.msgtype not in IMAGE_TYPES:
            raise BagError(f"topic {topic} has type {conn.msgtype}; expected one of {', '.join(IMAGE_TYPES)}")
        return conn
    images = [
        c
        for c in reader.connections
        if c.msgtype in IMAGE_TYPES and "/gt/" not in c.topic and "mask" not in c.topic
    ]
    if not images:
        listing = ", ".join(f"{c.topic} [{c.msgtype}]" for c in reader.connections) or "none"
        raise BagError(
            f"no sensor_msgs/Image or CompressedImage topic found (topics: {listing}); pass --topic"
        )
    topics = sorted({c.topic for c in images})
    if len(topics) > 1:
        raise BagError(
            f"the bag has {len(topics)} camera topics ({', '.join(topics)}); pick one with --topic"
        )
    return images[0]
