"""The result store: what a tagging or identification computed, kept by file and producer, so the
same question asked again is answered without decoding or inference."""

from .keys import FileKey, result_key
from .store import ResultStore

__all__ = ["FileKey", "ResultStore", "result_key"]
