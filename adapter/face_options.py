"""Face-request options the HTTP routes share (routes/faces.py, routes/stash_sense/): detection
gates and matching thresholds, each left to the server's face profile when absent."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from stash_vision.v1 import faces_pb2

Distance = Annotated[float, Field(ge=0.0, le=2.0)]
Confidence = Annotated[float, Field(ge=0.0, le=1.0)]
FaceSize = Annotated[int, Field(ge=0, le=100_000)]


class FaceGates(BaseModel):
    """Detection gates; null or absent uses the server's face profile values. Unknown keys (Stash
    Sense's use_multi_signal, use_body, ...) are ignored."""

    model_config = ConfigDict(extra="ignore")

    min_face_confidence: Confidence | None = None
    min_face_size: FaceSize | None = None

    def face_filter(self) -> faces_pb2.FaceFilter:
        gates = faces_pb2.FaceFilter()
        if self.min_face_confidence is not None:
            gates.min_confidence = self.min_face_confidence
        if self.min_face_size is not None:
            gates.min_face_size = self.min_face_size
        return gates


class FaceMatching(FaceGates):
    max_distance: Distance | None = None

    def options(self, top_k: int) -> faces_pb2.IdentifyOptions:
        options = faces_pb2.IdentifyOptions(top_k=top_k, filter=self.face_filter())
        if self.max_distance is not None:
            options.max_distance = self.max_distance
        return options
