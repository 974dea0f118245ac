"""Request bodies of the filesystem endpoints.

Like the real server's models, they accept camelCase and snake_case names and
ignore unknown fields, and the path field accepts `path`, `sourcePath` and
`source_path`.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

Compression = Literal["none", "bzip2", "gzip", "xz"]

# The letter `tar` takes for each compression.
COMPRESSION_FLAGS = {"none": "", "gzip": "z", "bzip2": "j", "xz": "J"}

RequestPath = Annotated[str, Field(validation_alias=AliasChoices("path", "sourcePath", "source_path"))]


class CamelModel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")


class MakeDirRequest(CamelModel):
    path: RequestPath
    parent: bool = False


class ChmodRequest(CamelModel):
    path: RequestPath
    mode: str


class ChownRequest(CamelModel):
    path: RequestPath
    owner: str = ""
    group: str = ""


class SymlinkRequest(CamelModel):
    path: RequestPath
    link_path: str


class CompressRequest(CamelModel):
    path: RequestPath
    target_path: str
    match_pattern: str | None = None
    dereference: bool = False
    compression: Compression = "gzip"


class ExtractRequest(CamelModel):
    path: RequestPath
    target_path: str
    compression: Compression = "gzip"


class MoveRequest(CamelModel):
    path: RequestPath
    target_path: str
    account: str | None = None


class CopyRequest(MoveRequest):
    dereference: bool = False


class TransferCompressRequest(CompressRequest):
    account: str | None = None


class TransferExtractRequest(ExtractRequest):
    account: str | None = None
