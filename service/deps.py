"""FastAPI dependencies: the objects ``create_app`` put on ``app.state``, as ``Annotated`` types.

They are ``async``: FastAPI runs a plain ``def`` dependency in its thread pool, a thread hop per request
for what is an attribute read.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from arcsearch.service.core.jobs import JobManager
from arcsearch.service.core.registry import Registry
from arcsearch.service.settings import Settings


async def get_settings(request: Request) -> Settings:
    return request.app.state.settings


async def get_registry(request: Request) -> Registry:
    return request.app.state.registry


async def get_jobs(request: Request) -> JobManager:
    return request.app.state.jobs


SettingsDep = Annotated[Settings, Depends(get_settings)]
RegistryDep = Annotated[Registry, Depends(get_registry)]
JobsDep = Annotated[JobManager, Depends(get_jobs)]
