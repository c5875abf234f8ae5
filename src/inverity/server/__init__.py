"""The HTTP service: upload → routed, verified compression; fetch with ``Accept`` negotiation.

``inverity serve --store DIR --token T`` runs it (FastAPI + uvicorn, the optional extra ``inverity[server]``).

Endpoints
---------
``POST /v1/assets?policy=delivery`` (a built-in policy, or one the server was started with: ``--policy FILE``)
    The image as the raw body (``image/*`` or ``application/dicom``) or multipart field ``file``. Answers
    ``{"id": ..., "decision": {...}, "url": <signed read URL>, "review": {...}}`` — 201 when created, 200 when
    the same bytes and policy were already stored (the id is content-addressed). 413 body or pixel limit, 415 not
    an image, 422 undecodable or no stage passed verification, 504 timeout.
``GET|HEAD /v1/assets/{id}``
    The best verified rendition ``Accept`` allows: wildcards get only JPEG/PNG; AVIF, JPEG XL, WebP and the
    learned ``.inv`` (``application/x-inverity``) only when named with q > 0; the highest q first, then the
    fewest bytes. Strong ``ETag``, ``Vary: Accept``, immutable caching, ``If-None-Match`` → 304; 406 lists what
    is available. Token, signed URL (``?exp=&sig=``, 403 if expired or tampered), or ``--public-reads``.
``GET /v1/assets/{id}/url?ttl=3600``
    A signed, expiring read URL (token holders only).
``GET /v1/assets/{id}/decision``
    The decision records of the upload and of every rendition made so far, and the asset's ``review``.
``GET /v1/review``, ``GET|POST /v1/assets/{id}/review``, ``GET /review``
    Human review (policy ``review = required | learned | sample:P``): the queue, an asset's review state, a
    verdict (approve / reject; a rejection re-routes without the rejected stage), and the reviewers' page.
    Reviewers are named tokens (``serve --token NAME=SECRET``), valid as bearer tokens everywhere. An output
    waiting for review or rejected is never served, by any read path (``GET``/``HEAD``, token, signed URL,
    public reads): 409 with the ``review`` state, unless another verified rendition the rule lets through fits.
``GET /healthz``
    ``{"status": "ok", "version": ...}``, without authentication.
``GET /docs``, ``GET /openapi.json``
    The API, self-contained (nothing loaded from elsewhere), behind the token.

``HEAD`` works wherever ``GET`` does; every error is ``{"error": "<one line>"}``. The FastAPI modules are
imported only when an app is built, so importing this package needs no extra.
"""
from ._app import create_app
from ._config import BUILTIN_POLICY_NAMES, CACHE_CONTROL, ApiError, ServerConfig
from ._negotiate import UNIVERSAL, MediaRange, acceptable, parse_accept, preference_groups, quality_of
from ._probe import UploadOutcome, contract_violations, probe_uploads
from ._review import parse_tokens, register_policy_files
from ._serve import serve
from ._signing import UrlSigner
from ._store import LEARNED_MEDIA_TYPE, MEDIA_TYPES, Store, asset_id, is_asset_id

__all__ = [
    "ServerConfig", "create_app", "serve", "ApiError", "BUILTIN_POLICY_NAMES", "CACHE_CONTROL",
    "MediaRange", "parse_accept", "quality_of", "acceptable", "preference_groups", "UNIVERSAL", "UrlSigner",
    "probe_uploads", "contract_violations", "UploadOutcome",
    "Store", "asset_id", "is_asset_id", "MEDIA_TYPES", "LEARNED_MEDIA_TYPE",
    "parse_tokens", "register_policy_files",
]
