"""The in-memory engine: books, matching, accounts, and the mirror of outside credits."""

from probo.orderbook.book import Book, RestingOrder
from probo.orderbook.credits import CreateUser, EngineCredit, EngineUnavailable
from probo.orderbook.engine import (
    Backpressure,
    Engine,
    EventSink,
    MarketResolved,
    WithdrawalDuplicate,
)
from probo.orderbook.entry import Entry, parties
from probo.orderbook.exchange import Exchange, InvalidMarketTransition
from probo.orderbook.mirror import CreditSink, EngineMirror, record_credit
from probo.orderbook.recovery import Recovered
from probo.orderbook.settlement import compute_settlement
from probo.orderbook.types import (
    CancelAll,
    CancelOrder,
    CloseMarket,
    Event,
    MarketCommand,
    MarketStatusChanged,
    OrderAccepted,
    OrderCanceled,
    OrderDuplicate,
    OrderRejected,
    PauseMarket,
    Payout,
    PlaceOrder,
    ResolveMarket,
    ResumeMarket,
    Settlement,
    TradeExecuted,
    WithdrawalAccepted,
)

__all__ = [
    "Backpressure",
    "Entry",
    "EventSink",
    "Recovered",
    "WithdrawalAccepted",
    "WithdrawalDuplicate",
    "Book",
    "CancelAll",
    "CancelOrder",
    "CloseMarket",
    "MarketCommand",
    "MarketResolved",
    "PauseMarket",
    "ResolveMarket",
    "ResumeMarket",
    "CreateUser",
    "CreditSink",
    "Engine",
    "EngineCredit",
    "EngineMirror",
    "EngineUnavailable",
    "Event",
    "Exchange",
    "InvalidMarketTransition",
    "MarketStatusChanged",
    "OrderAccepted",
    "OrderCanceled",
    "OrderDuplicate",
    "OrderRejected",
    "Payout",
    "PlaceOrder",
    "RestingOrder",
    "Settlement",
    "TradeExecuted",
    "compute_settlement",
    "parties",
    "record_credit",
]
