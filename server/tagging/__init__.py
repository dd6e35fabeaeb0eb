"""Tagging: images and videos to AITagger tags, scene tags and markers.

* `taggers/` - the tagger plugins: one model turned into per-tag probabilities for its categories
  (NudeNet, open_nsfw, any multi-label classifier), one module per kind, a registry.
* `image_flow` - `/process_images/`: paths in, every active tagger's tags per image out.
* `video_flow` - `/process_video/`: sampled frames through every tagger, into an `.AI.json` result,
  re-running only what the stored result lacks.
* `aitagger_format/` - the AITagger result format, pure domain code: category CSVs, `.AI.json`,
  timespans and markers, reprocessing rules and the marker-settings optimizer.

The gRPC servicers (`server/api/servicers.py`) call `ImageTagging`, `VideoTagging` and
`optimize_marker_settings`; nothing here knows about gRPC or HTTP.
"""
