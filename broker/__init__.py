"""broker: a federated identity token broker.

Layers, each importing only the ones below it (see ``../shared/DESIGN.md``)::

    web/ (aiohttp server)        cli.py
            \\                   /
             service/ (use cases)
            /      |       \\        \\
    domain/   keyring.py (jose.py, kek.py)   idp/   storage/
            \\______ config.py, errors.py, clock.py ______/
"""

__version__ = "0.1.0"
