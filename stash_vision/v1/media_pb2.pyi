from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class ImageSource(_message.Message):
    __slots__ = ("data", "path", "stash_image_id")
    DATA_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    STASH_IMAGE_ID_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    path: str
    stash_image_id: str
    def __init__(self, data: _Optional[bytes] = ..., path: _Optional[str] = ..., stash_image_id: _Optional[str] = ...) -> None: ...
