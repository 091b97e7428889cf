"""The client order ids the engine remembers stay bounded: open orders' and the most
recent others (probo/orderbook/client_ids.py)."""

from __future__ import annotations

from probo.orderbook.client_ids import ClientOrderIds

MARKET = 1


def test_closed_orders_ids_beyond_the_bound_are_forgotten_oldest_first() -> None:
    ids = ClientOrderIds(recent_max=3)
    for order_id in range(1, 7):
        ids.remember(9, f"c{order_id}", order_id, MARKET, lambda market, order: False)
    assert len(ids) == 3
    assert [ids.order_id(9, f"c{n}") for n in range(1, 7)] == [None, None, None, 4, 5, 6]


def test_an_open_orders_id_is_kept_however_old() -> None:
    open_orders = {1, 2}
    ids = ClientOrderIds(recent_max=2)
    for order_id in range(1, 9):
        ids.remember(9, f"c{order_id}", order_id, MARKET, lambda m, o: o in open_orders)
    assert ids.order_id(9, "c1") == 1 and ids.order_id(9, "c2") == 2
    assert len(ids) <= 2 + len(open_orders) + 1  # the open ones, the recent, one in passing
    open_orders.clear()  # both closed: forgotten as new ids come
    for order_id in range(9, 13):
        ids.remember(9, f"c{order_id}", order_id, MARKET, lambda m, o: o in open_orders)
    assert ids.order_id(9, "c1") is None and ids.order_id(9, "c2") is None
    assert len(ids) == 2


def test_ids_are_per_user() -> None:
    ids = ClientOrderIds(recent_max=10)
    ids.remember(1, "same", 10, MARKET, lambda m, o: False)
    ids.remember(2, "same", 11, MARKET, lambda m, o: False)
    assert (ids.order_id(1, "same"), ids.order_id(2, "same"), ids.order_id(3, "same")) == (
        10,
        11,
        None,
    )
