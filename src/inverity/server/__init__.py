"""The HTTP service: upload → routed, verified compression; fetch with ``Accept`` negotiation.

``inverity serve --store DIR --token T`` runs it (FastAPI + uvicorn, the optional extra ``inverity[server]``).

Endpoints
---------
``POST /v1/assets?policy=delivery``
    The image as the raw body (``image/*`` or ``application/dicom``) or multipart field ``file``. Answers
    ``{"id": ..., "decision": {...}}`` — 201 when created, 200 when the same bytes and policy were already
    stored (the id is content-addressed). 413 body or pixel limit, 415 not an image, 422 undecodable or no stage
    passed verification, 504 timeout.
``GET /v1/assets/{id}``
    The smallest verified rendition among the formats ``Accept`` allows (AVIF, JPEG XL, WebP, JPEG, PNG; the
    learned ``.inv`` only when ``application/x-inverity`` is named explicitly); strong ``ETag``, ``Vary: Accept``,
    immutable caching, ``If-None-Match`` → 304; 406 lists what is available.
``GET /v1/assets/{id}/decision``
    The decision records of the upload and of every rendition made so far.
``GET /healthz``
    ``{"status": "ok", "version": ...}``, without authentication.

Everything but ``/healthz`` needs ``Authorization: Bearer <token>``; every error is ``{"error": "<one line>"}``.
The FastAPI modules are imported only when an app is built, so importing this package needs no extra.
"""
from ._app import BUILTIN_POLICY_NAMES, CACHE_CONTROL, ApiError, ServerConfig, create_app, serve
from ._negotiate import MediaRange, acceptable, parse_accept, quality_of
from ._store import LEARNED_MEDIA_TYPE, MEDIA_TYPES, Store, asset_id, is_asset_id

__all__ = [
    "ServerConfig", "create_app", "serve", "ApiError", "BUILTIN_POLICY_NAMES", "CACHE_CONTROL",
    "MediaRange", "parse_accept", "quality_of", "acceptable",
    "Store", "asset_id", "is_asset_id", "MEDIA_TYPES", "LEARNED_MEDIA_TYPE",
]
