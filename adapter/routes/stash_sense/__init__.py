"""The Stash Sense plugin's sidecar API, mounted under `/stash-sense/` (the user sets the plugin's
"Stash Sense API URL" to `http://<host>:8000/stash-sense`). Contract:
../shared/docs/stash-plugins-contract.md part A. Errors follow its rules R1–R3: a non-2xx status
with a non-empty JSON `detail`; no truthy `error` and no `output` key in a success."""

from __future__ import annotations

from fastapi import APIRouter

from . import identify, performers, plugin_page, queue

router = APIRouter(prefix="/stash-sense", tags=["Stash Sense plugin"])
for _module in (identify, performers, plugin_page, queue):
    router.include_router(_module.router)
