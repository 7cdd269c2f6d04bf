"""What the image preparers share: the data dir, `Prepared`, the "already prepared" check."""

from __future__ import annotations

import dataclasses
import os

import tensorflow_datasets as tfds

from framework.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class Prepared:
    """Where a prepared data set lives and what it holds."""

    name: str
    version: str
    path: str  # DATA_DIR/<name>/<version>
    num_examples: dict[str, int]  # split -> examples
    created: bool  # False when it was already there

    def summary(self) -> str:
        splits = ", ".join(f"{split} {n}" for split, n in self.num_examples.items())
        if self.created:
            return f"{self.name}:{self.version} prepared at {self.path} ({splits})"
        return (
            f"{self.name}:{self.version} already prepared at {self.path} ({splits}); nothing to do"
        )


def resolve_data_dir(data_dir: str | None) -> str:
    """`data_dir`, or tfds' default (`$TFDS_DATA_DIR`, else `~/tensorflow_datasets`)."""
    return os.path.expanduser(data_dir or tfds.core.constants.get_default_data_dir())


def has_info(data_dir: str, name: str, version) -> bool:
    """Whether `DATA_DIR/<name>/<version>` holds a prepared data set."""
    return os.path.isfile(os.path.join(data_dir, name, str(version), "dataset_info.json"))


def already_prepared(builder, name: str) -> Prepared:
    """The `Prepared` of a data set found on disk; refused unless in ArrayRecord format."""
    file_format = builder.info.file_format
    if file_format != tfds.core.FileFormat.ARRAY_RECORD:
        raise ConfigError(
            f"{builder.data_dir} holds {name} in {getattr(file_format, 'value', file_format)} "
            "format, but tfds.data_source reads array_record only: delete that folder and "
            "prepare it again"
        )
    return prepared(builder, created=False)


def prepared(builder, created: bool) -> Prepared:
    """The `Prepared` of a builder's data set."""
    return Prepared(
        name=builder.name,
        version=str(builder.version),
        path=os.fspath(builder.data_dir),
        num_examples={s: int(i.num_examples) for s, i in builder.info.splits.items()},
        created=created,
    )


def find_prepared(data_dir: str, name: str, version: str) -> Prepared | None:
    """The `Prepared` of `name:version` if it is in `data_dir` (read without its builder)."""
    if not has_info(data_dir, name, version):
        return None
    return already_prepared(
        tfds.builder_from_directory(os.path.join(data_dir, name, version)), name
    )


def download_config(**kwargs) -> tfds.download.DownloadConfig:
    """tfds' download config without the GCS mirror (nothing is fetched)."""
    return tfds.download.DownloadConfig(try_download_gcs=False, **kwargs)
