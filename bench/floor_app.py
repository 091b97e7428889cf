"""The framework floor of `bench.load`: a bare litestar app on probo's server settings.

One route, `POST /api/v1/orders`, decodes the same body into the same msgspec struct
as probo's order entry (`probo.trading.types.OrderRequest`) and answers a small JSON
object with 201. No auth, no middleware, no engine, no database: what is left is
uvicorn, httptools, litestar's routing and msgspec, i.e. the most any litestar
endpoint could do per second on this machine.

    python -m bench.floor_app --port 8001
"""

from __future__ import annotations

import argparse
import itertools

import msgspec
import uvicorn
from litestar import Litestar, post

from probo.trading.types import OrderRequest
from probo.web import ProboHttpProtocol

# As `probo serve` runs uvicorn (probo/cli/__init__.py `serve`), less what needs the app's settings.
UVICORN_SETTINGS: dict[str, object] = {
    "loop": "uvloop",
    "http": ProboHttpProtocol,
    "lifespan": "on",
    "access_log": False,
    "log_level": "warning",
    "timeout_graceful_shutdown": 10,
}

_order_ids = itertools.count(1)


class Ack(msgspec.Struct):
    id: int
    market_id: int
    status: str


@post("/api/v1/orders", status_code=201)
async def place_order(data: OrderRequest) -> Ack:
    return Ack(id=next(_order_ids), market_id=data.market_id, status="open")


def create_app() -> Litestar:
    return Litestar(route_handlers=[place_order], debug=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    uvicorn.run(create_app(), host=args.host, port=args.port, **UVICORN_SETTINGS)  # type: ignore[arg-type]


if __name__ == "__main__":
    main()
