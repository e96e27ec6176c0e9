"""Logging in to the dashboard with a token, where reads are not open (a non-loopback API):
the token goes into an HttpOnly, SameSite=Strict cookie, which authenticates reads only
(``api.security``). The cookie holds the token itself, so revoking the token logs out
everywhere."""

from __future__ import annotations

import html
from typing import Annotated

from aiohttp import web
from pydantic import BaseModel, Field

from repo_updater.entrypoints.api.endpoint import Access, endpoint
from repo_updater.entrypoints.api.security import COOKIE, GUARD_KEY, Unauthorized, check_origin

routes = web.RouteTableDef()

MAX_AGE = 30 * 24 * 3600


class LoginForm(BaseModel):
    token: Annotated[str, Field(max_length=200)]


def _form(status: int, message: str = "") -> web.Response:
    note = f'<p role="alert">{html.escape(message)}</p>' if message else ""
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>repo-updater: log in</title>
</head><body><h1>repo-updater</h1>{note}<form method="post" action="/login">
<label>API token <input type="password" name="token" autocomplete="off" required></label>
<button type="submit">Log in</button></form>
<p>Create a token with <code>repo-updater tokens create NAME --scope read</code>.</p>
</body></html>"""
    return web.Response(text=page, status=status, content_type="text/html")


@routes.get("/login")
@endpoint(Access.PUBLIC, "The login form (HTML)", content_type="text/html")
async def login_form(request: web.Request) -> web.Response:
    return _form(200)


@routes.post("/login")
@endpoint(
    Access.PUBLIC,
    "Log in with a token (HTML form post)",
    form=LoginForm,
    status=303,
    content_type="text/html",
    errors=(401, 403),
    html_errors=(400, 401),
    max_body=4096,
)
async def login(request: web.Request) -> web.StreamResponse:
    check_origin(request)  # no logging a victim in from another site
    if request.content_length is None or request.content_length > 4096:
        return _form(400, "the form is too large or incomplete")
    form = await request.post()
    token = form.get("token")
    if not isinstance(token, str) or not token or len(token) > 200:
        return _form(401, "give a token")
    try:
        await request.app[GUARD_KEY].scope_of_token(token)
    except Unauthorized:
        return _form(401, "that token is not valid")
    response = _see_other("/")
    response.set_cookie(
        COOKIE, token, max_age=MAX_AGE, path="/", httponly=True, samesite="Strict",
        secure=request.secure,
    )  # fmt: skip
    return response


@routes.post("/logout")
@endpoint(Access.PUBLIC, "Log out (forget the cookie)", status=303, content_type="text/html")
async def logout(request: web.Request) -> web.StreamResponse:
    check_origin(request)
    response = _see_other("/login")
    response.del_cookie(COOKIE, path="/")
    return response


def _see_other(location: str) -> web.Response:
    return web.Response(status=303, headers={"Location": location}, content_type="text/html")
