"""Postgres refusing chosen writes: a real data error from a real server, for the tests
of what the ledger writer does with a batch it cannot commit (SPEC §7)."""

from __future__ import annotations

POISON_PREFIX = "poison"  # orders whose client_order_id starts so are refused

REFUSE_POISONED_ORDERS = f"""
CREATE FUNCTION refuse_poison() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.client_order_id LIKE '{POISON_PREFIX}%' THEN
        RAISE EXCEPTION 'poisoned order %', NEW.id USING ERRCODE = '22021';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER refuse_poison BEFORE INSERT ON orders
    FOR EACH ROW EXECUTE FUNCTION refuse_poison();
"""
ACCEPT_POISONED_ORDERS = "DROP TRIGGER refuse_poison ON orders; DROP FUNCTION refuse_poison();"
