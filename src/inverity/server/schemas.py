"""The JSON bodies the service answers with (pydantic models; they also document the OpenAPI)."""
from typing import Any, Optional

from pydantic import BaseModel, Field

__all__ = ["ErrorBody", "Created", "Health", "Decisions", "SignedUrl", "ERROR"]


class ErrorBody(BaseModel):
    error: str = Field(description="one line saying what went wrong")


class Created(BaseModel):
    id: str = Field(description="content address: sha256(body, policy), 32 hex digits")
    decision: dict[str, Any] = Field(description="the pipeline's decision record (DESIGN.md)")
    url: Optional[str] = Field(None, description="a signed read URL of the image (valid for an hour), when the "
                                                 "server signs URLs")


class Health(BaseModel):
    status: str
    version: str


class Decisions(BaseModel):
    id: str
    decision: dict[str, Any] = Field(description="the upload's decision record")
    renditions: dict[str, dict[str, Any]] = Field(
        description="per media type: the rendition's record, or why it is unavailable")


class SignedUrl(BaseModel):
    url: str = Field(description="path and query to GET (or HEAD) the image without a token until `expires`")
    expires: int = Field(description="unix seconds")


#: the ``responses=`` entry of an error status
ERROR = {"model": ErrorBody}
