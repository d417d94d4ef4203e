"""The route a request will reach, found from its method and path before its body is read.

The edge middlewares (service.auth, service.limits) decide on it: the API key a route needs comes from the
route's own dependencies (``require_read`` / ``require_admin``, which also document the security in
OpenAPI), and its body limit from its path template. A request matches like Starlette's router does: the
first route matching path and method, else the first matching the path only (answered 405), else none.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from fastapi.routing import APIRoute
from starlette.routing import BaseRoute, Match
from starlette.types import Scope

ROUTE_KEY = "arcsearch.route"  # scope key: the matched route (or None), once looked up


def flat_routes(routes: Iterable[BaseRoute]) -> Iterator[BaseRoute]:
    """Every route of an app, included routers expanded (they must be included without a prefix, as in
    service.app: FastAPI keeps an included router whole, as one route holding ``original_router``)."""
    for route in routes:
        included = getattr(route, "original_router", None)
        if included is not None:
            yield from flat_routes(included.routes)
        else:
            yield route


def route_of(scope: Scope) -> BaseRoute | None:
    """The route that will answer this HTTP request (looked up once, then kept in the scope)."""
    if ROUTE_KEY not in scope:
        partial = None
        for route in flat_routes(scope["app"].router.routes):
            match, _ = route.matches(scope)
            if match is Match.FULL:
                scope[ROUTE_KEY] = route
                return route
            if match is Match.PARTIAL and partial is None:
                partial = route
        scope[ROUTE_KEY] = partial
    return scope[ROUTE_KEY]


def allowed_methods(scope: Scope) -> list[str]:
    """Every method the routes of this request's path answer, sorted (Starlette's own 405 names only the
    methods of the first route matching the path)."""
    methods: set[str] = set()
    for route in flat_routes(scope["app"].router.routes):
        match, _ = route.matches(scope)
        if match is not Match.NONE:
            methods |= set(getattr(route, "methods", None) or ())
    return sorted(methods)


def route_template(route: BaseRoute | None) -> str | None:
    """The path template of ``route`` as it is declared, e.g. ``/v1/collections/{name}/items/{item_id:path}``."""
    return getattr(route, "path", None)


def dependency_calls(route: BaseRoute | None) -> Iterator[object]:
    """Every dependency callable of an API route (router-level ones included), depth first."""
    if not isinstance(route, APIRoute):
        return
    stack = list(route.dependant.dependencies)
    while stack:
        dependant = stack.pop()
        yield dependant.call
        stack.extend(dependant.dependencies)
