"""The JSON bodies the service answers with (pydantic models; they also document the OpenAPI)."""
from typing import Any, Optional

from pydantic import BaseModel, Field

__all__ = ["ErrorBody", "Created", "Health", "Decisions", "SignedUrl", "ReviewQueue", "ReviewOf", "Verdict",
           "Verdicted", "ERROR"]

_REVIEW = "review state: {state (pending, approved, rejected, not_required), by, at, note, rule, stage, ...}"


class ErrorBody(BaseModel):
    error: str = Field(description="one line saying what went wrong")


class Created(BaseModel):
    id: str = Field(description="content address: sha256(body, policy), 32 hex digits")
    decision: dict[str, Any] = Field(description="the pipeline's decision record (DESIGN.md)")
    url: Optional[str] = Field(None, description="a signed read URL of the image (valid for an hour), when the "
                                                 "server signs URLs")
    review: Optional[dict[str, Any]] = Field(None, description=_REVIEW)


class Health(BaseModel):
    status: str
    version: str


class Decisions(BaseModel):
    id: str
    decision: dict[str, Any] = Field(description="the upload's decision record")
    renditions: dict[str, dict[str, Any]] = Field(
        description="per media type: the rendition's record, or why it is unavailable")
    review: Optional[dict[str, Any]] = Field(None, description=_REVIEW)
    size_floors: dict[str, float] = Field(
        default_factory=dict, description="per media type: the quality search's predicted lower bound on the "
                                          "bytes of a passing rendition; a format not made yet whose bound is "
                                          "at least the size of a verified rendition in hand is not made for a "
                                          "request that accepts both equally")


class SignedUrl(BaseModel):
    url: str = Field(description="path and query to GET (or HEAD) the image without a token until `expires`")
    expires: int = Field(description="unix seconds")


class ReviewQueue(BaseModel):
    items: list[dict[str, Any]] = Field(description="pending outputs, oldest first, with the verifier's evidence")
    count: int
    counts: dict[str, int] = Field(description="pending, approved, rejected, rerouted")


class ReviewOf(BaseModel):
    id: str
    review: dict[str, Any] = Field(description=_REVIEW)


class Verdict(BaseModel):
    verdict: str = Field(description="approve or reject")
    note: str = Field("", description="why (required to reject); recorded in the review log", max_length=4000)
    output_sha256: Optional[str] = Field(
        None, description="sha256 of the output the reviewer looked at: a verdict on an output that has since "
                          "been replaced (re-routed) is refused with 409, never applied to the new one",
        max_length=64)


class Verdicted(BaseModel):
    id: str
    review: dict[str, Any] = Field(description=_REVIEW + " after the verdict (a rejection re-routes at once)")
    decision: dict[str, Any] = Field(description="the asset's decision record (the re-routed one after a rejection)")


#: the ``responses=`` entry of an error status
ERROR = {"model": ErrorBody}
