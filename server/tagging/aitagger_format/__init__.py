"""AITagger tagging logic: per-frame tagger outputs to `.AI.json`, scene tags and markers.

Pure domain code (no HTTP, no models) restating the behaviour of the skier233 server's legacy
`/process_video/` route (docs/aitagger-contract.md §1.3, §1.6, §3.2, §3.6-§3.9):

* `categories` - the category CSVs (OriginalTag -> RenamedTag and per-tag durations/thresholds).
* `ai_json` - `.AI.json` schema v1 (and v0 input), its exact serialisation and v0 -> v1 conversion.
* `timespans` - raw runs from frames, scene tags, clustered marker spans and the
  `video_tag_info` answer.
* `marker_optimizer` - the `/optimize_timeframe_settings/` sweep over clustering parameters.
* `reprocess` - which categories must be rerun given an existing `.AI.json`, and the merge.
"""
