"""WebSocket rooms and fan-out (SPEC §8); arrives with the order pipeline."""

__all__: list[str] = []
