"""The aiohttp application: handlers, middlewares, rendering of errors per surface.

The only importer of ``aiohttp.web``. ``create_app(settings)`` builds the app.
"""
