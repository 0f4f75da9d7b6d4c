"""Pure domain logic: policies, claims, roles, redirects, token shapes.

Imports only the standard library and ``broker.errors``/``broker.clock``: no I/O, no aiohttp, no
database, no cryptography. Functions take values and return values (decisions with reasons).
"""
