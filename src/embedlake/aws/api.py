"""The HTTP API on Lambda: the FastAPI app behind Mangum (API Gateway v2 HTTP, Function URL)."""

from __future__ import annotations

import asyncio
import os
from contextlib import AbstractAsyncContextManager
from typing import Any

from embedlake.aws.environment import ENV_API_ROLE
from embedlake.errors import ConfigError
from embedlake.workspace import Workspace


class Api:
    """The FastAPI app behind Mangum, started once per container: its lifespan (the serving state:
    encoder, index, alias following) runs at the first request and stays up, not per request as
    Mangum's own lifespan handling would do."""

    def __init__(self, ws: Workspace) -> None:
        from mangum import Mangum

        from embedlake.api.app import ROLES, create_app

        role = os.environ.get(ENV_API_ROLE, "all")
        if role not in ROLES:
            raise ConfigError(f"{ENV_API_ROLE}={role!r}: use one of {', '.join(ROLES)}")
        app = create_app(ws, role)  # narrowed to a Role by the check above
        self.app = app
        self.loop = asyncio.new_event_loop()  # Mangum runs requests on the thread's loop
        asyncio.set_event_loop(self.loop)
        self._lifespan: AbstractAsyncContextManager[Any] = app.router.lifespan_context(app)
        self.loop.run_until_complete(self._lifespan.__aenter__())
        self.handler = Mangum(app, lifespan="off")

    def close(self) -> None:
        self.loop.run_until_complete(self._lifespan.__aexit__(None, None, None))
        self.loop.close()
        asyncio.set_event_loop(None)
