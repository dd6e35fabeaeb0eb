"""protobuf <-> domain conversions shared by the servicers."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
from tritonclient.grpc import model_config_pb2
from tritonclient.utils import np_to_triton_dtype

from stash_vision.server.arrays import AnyArray
from stash_vision.server.errors import InvalidInput
from stash_vision.server.image_source import ImageBytes, ImagePath, ImageRef
from stash_vision.server.model_registry import ModelInfo
from stash_vision.server.preprocessing import Geometry
from stash_vision.server.tagging.image_flow import ImageOutcome
from stash_vision.server.tagging.taggers.base import Tagger
from stash_vision.server.tagging.video_flow import VideoOutcome, VideoProgress
from stash_vision.v1 import inference_pb2, media_pb2, models_pb2, tagging_pb2, video_tagging_pb2


def image_ref(source: media_pb2.ImageSource) -> ImageRef:
    which = source.WhichOneof("source")
    if which == "data":
        if not source.data:
            raise InvalidInput("image.data is empty")
        return ImageBytes(source.data)
    if which == "path":
        return ImagePath(source.path)
    if which == "stash_image_id":
        raise InvalidInput(
            "image.stash_image_id is accepted by the face services only; send image.data or image.path"
        )
    raise InvalidInput("image is required: set image.data (encoded bytes) or image.path (a server-side path)")


def tensor(name: str, array: AnyArray) -> inference_pb2.Tensor:
    array = np.ascontiguousarray(array)
    if array.dtype.byteorder == ">":
        array = array.astype(array.dtype.newbyteorder("<"))
    return inference_pb2.Tensor(
        name=name, datatype=np_to_triton_dtype(array.dtype), shape=list(array.shape), data=array.tobytes()
    )


def geometry(g: Geometry) -> inference_pb2.Preprocessing:
    return inference_pb2.Preprocessing(
        source_width=g.source_width,
        source_height=g.source_height,
        scale_x=g.scale_x,
        scale_y=g.scale_y,
        offset_x=g.offset_x,
        offset_y=g.offset_y,
        input_width=g.input_width,
        input_height=g.input_height,
    )


def _datatype(value: int) -> str:
    return str(model_config_pb2.DataType.Name(value)).removeprefix("TYPE_").replace("STRING", "BYTES")


def model(info: ModelInfo) -> models_pb2.Model:
    entry, config = info.entry, info.entry.triton_config
    contract = entry.input
    return models_pb2.Model(
        name=entry.name,
        version=str(entry.version),
        task=entry.task,
        state=models_pb2.MODEL_STATE_READY if info.status.ready else models_pb2.MODEL_STATE_UNAVAILABLE,
        labels=entry.labels,
        batching=models_pb2.Batching(
            max_batch_size=config.max_batch_size,
            dynamic_batching=config.HasField("dynamic_batching"),
            max_queue_delay_microseconds=config.dynamic_batching.max_queue_delay_microseconds,
            instance_count=sum(group.count or 1 for group in config.instance_group) or 1,
        ),
        inputs=[
            models_pb2.TensorSpec(name=t.name, datatype=_datatype(t.data_type), dims=t.dims)
            for t in config.input
        ],
        outputs=[
            models_pb2.TensorSpec(name=t.name, datatype=_datatype(t.data_type), dims=t.dims)
            for t in config.output
        ],
        input_contract=models_pb2.InputContract(
            layout=contract.layout,
            color_order=contract.color_order,
            width=contract.width,
            height=contract.height,
            resize=contract.resize.value,
            mean=contract.mean,
            std=contract.std,
            scale=contract.scale,
        ),
        licence=entry.licence,
        device=info.status.device,
        precision=info.precision.variant if info.precision else "",
        precision_reason=info.precision.reason if info.precision else "",
    )


def tagger(t: Tagger, ready: bool) -> tagging_pb2.Tagger:
    return tagging_pb2.Tagger(
        name=t.spec.display_name,
        identifier=t.spec.identifier,
        version=t.spec.version,
        categories=t.categories,
        type="ImClass",
        model=t.model,
        ready=ready,
    )


def image_tags(outcome: ImageOutcome) -> tagging_pb2.ImageTags:
    if outcome.error is not None:
        return tagging_pb2.ImageTags(error=outcome.error)
    return tagging_pb2.ImageTags(
        categories=[
            tagging_pb2.CategoryTags(
                category=category,
                tags=[tagging_pb2.TagHit(name=h.name, confidence=h.confidence) for h in hits],
            )
            for category, hits in outcome.categories.items()
        ]
    )


def json_or_none(text: str, field: str) -> Any:
    if not text:
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise InvalidInput(f"{field} is not valid JSON: {error}") from None


def video_progress(p: VideoProgress) -> video_tagging_pb2.VideoProgress:
    return video_tagging_pb2.VideoProgress(
        frames_done=p.frames_done,
        frames_total=p.frames_total,
        elapsed_seconds=p.elapsed_seconds,
        frames_per_second=p.frames_per_second,
    )


def video_result(o: VideoOutcome) -> video_tagging_pb2.VideoResult:
    result = video_tagging_pb2.VideoResult(
        video_tag_info_json=json.dumps(o.video_tag_info) if o.video_tag_info else "",
        v3_result_json=json.dumps(o.v3_result) if o.v3_result is not None else "",
        duration=o.duration,
        partial=o.partial,
        partial_reason=o.partial_reason,
        metrics=video_tagging_pb2.VideoMetrics(
            preprocess_seconds=o.preprocess_seconds,
            frames_preprocessed=o.frames,
            inference_seconds=o.inference_seconds,
            model_count=o.model_count,
            total_seconds=o.total_seconds,
            decode_strategy=o.decode_strategy,
        ),
    )
    if o.json_result is not None:
        result.json_result = o.json_result
    return result
