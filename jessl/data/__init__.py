"""The data path: dataset file (format, writer, reader), then the multi-view loader."""

from jessl.data.encode import EncodeOptions, ImageError
from jessl.data.format import FormatError
from jessl.data.reader import Reader, RecordError, open_dataset
from jessl.data.sources import SourceError
from jessl.data.writer import ConversionError, WriteResult, convert

__all__ = ["convert", "open_dataset", "Reader", "WriteResult", "EncodeOptions",
           "FormatError", "RecordError", "ImageError", "SourceError", "ConversionError"]


def __getattr__(name):
    """`jessl.data.Loader` without importing torch for those who only convert or inspect."""
    if name in ("Loader", "Batch", "LoaderError"):
        from jessl.data import loader
        return getattr(loader, name)
    raise AttributeError(f"module 'jessl.data' has no attribute {name!r}")
