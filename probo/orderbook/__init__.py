"""The in-memory engine: accounts and books, and the mirror of outside credits."""

from probo.orderbook.accounts import Accounts
from probo.orderbook.credits import CreateUser, EngineCredit, EngineUnavailable
from probo.orderbook.engine import Engine
from probo.orderbook.mirror import CreditSink, EngineMirror, record_credit

__all__ = [
    "Accounts",
    "CreateUser",
    "CreditSink",
    "Engine",
    "EngineCredit",
    "EngineMirror",
    "EngineUnavailable",
    "record_credit",
]
