"""Kedro datasets of the catalog (``conf/base/catalog.yml``) that write whole files or nothing.

kedro-datasets write a local file in place: a full disk or a killed run leaves a truncated
manifest or report that the next run would load as complete. These subclasses write it under a
temporary name and rename it when complete (``dinoflow.atomic``); a failed write names the file
and the free space. Object stores (``s3://`` and the like) are left to fsspec: an object appears
whole or not at all there.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import Any

from kedro.io.core import DatasetError, get_filepath_str
from kedro.utils import load_obj
from kedro_datasets.json import JSONDataset
from kedro_datasets.pandas import CSVDataset, ParquetDataset
from kedro_datasets.pillow import ImageDataset
from kedro_datasets.yaml import YAMLDataset

from dinoflow.atomic import atomic_path


class _WriteThenRename:
    """Mixin for a file dataset whose ``save`` writes to ``self._get_save_path()``."""

    _writing_to: PurePosixPath | None = None

    def save(self, data: Any) -> None:
        if self._protocol != "file":
            super().save(data)
            return
        final = Path(get_filepath_str(super()._get_save_path(), self._protocol))
        with atomic_path(final, f"catalog dataset ({type(self).__name__})") as temporary:
            self._writing_to = PurePosixPath(temporary)
            try:
                super().save(data)
            except DatasetError as error:
                if isinstance(error.__cause__, OSError):  # a full disk: let atomic_path say where and clean up
                    raise error.__cause__ from None
                raise
            finally:
                self._writing_to = None

    def _get_save_path(self) -> PurePosixPath:
        return self._writing_to or super()._get_save_path()


class AtomicJSONDataset(_WriteThenRename, JSONDataset):
    """``json.JSONDataset``, written then renamed."""


class ContractJSONDataset(AtomicJSONDataset):
    """A stage's typed output (``dinoflow.contracts``) as a JSON file: ``contract`` names the
    pydantic model (e.g. ``dinoflow.contracts.DatasetIndex``); loading validates the file into
    it, saving validates a dict (or takes the model) and writes its JSON form."""

    def __init__(self, *, contract: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._contract = load_obj(contract)

    def load(self) -> Any:
        return self._contract.model_validate(super().load())

    def save(self, data: Any) -> None:
        super().save(self._contract.model_validate(data).model_dump(mode="json", exclude_none=True))


class DatasetFolderIndex(ContractJSONDataset):
    """The dataset folder's own ``index.json`` (``dinoflow.contracts.DatasetIndex``). The shard writer
    writes it beside the shards, last, as the sign that the folder is complete; the catalog declares
    it and does not write it again. ``save`` checks that the index handed on is the file on disk (a
    catalog path that is not ``dataset.output_dir``/index.json fails here, in words); ``load`` reads
    it with ``dir`` set to its folder, so the folder can move."""

    def load(self) -> Any:
        index = super().load()
        return index.model_copy(update={"dir": str(Path(self._filepath).parent)})

    def save(self, data: Any) -> None:
        index = self._contract.model_validate(data)
        on_disk = self._contract.model_validate(JSONDataset.load(self)) if self._exists() else None
        if on_disk is None or on_disk.model_dump(exclude={"dir"}) != index.model_dump(exclude={"dir"}):
            found = "no index there" if on_disk is None else "another index there"
            raise DatasetError(
                f"dataset_index: the dataset node wrote its folder at {index.dir} (parameter dataset.output_dir) "
                f"but the catalog's dataset_index reads {self._filepath} ({found}); the catalog path must be "
                "<dataset.output_dir>/index.json: change one of them so they agree"
            )


class OptionalYAMLDataset(_WriteThenRename, YAMLDataset):
    """``yaml.YAMLDataset``, written then renamed, that loads as None while its file does not
    exist: an input a pipeline may run without (the tuned values, before any study has run)."""

    def load(self) -> Any:
        return super().load() if self._exists() else None


class AtomicImageDataset(_WriteThenRename, ImageDataset):
    """``pillow.ImageDataset``, written then renamed; the format comes from the final name (the
    temporary one ends in ``.tmp``). The pictures' folders are partitions of these."""

    def _get_format(self, file_path: PurePosixPath) -> str | None:
        return ImageDataset._get_format(PurePosixPath(str(file_path).removesuffix(".tmp")))


class AtomicCSVDataset(_WriteThenRename, CSVDataset):
    """``pandas.CSVDataset``, written then renamed."""


class AtomicParquetDataset(_WriteThenRename, ParquetDataset):
    """``pandas.ParquetDataset``, written then renamed."""
