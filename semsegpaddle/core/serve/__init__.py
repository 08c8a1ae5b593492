"""``semseg serve``: an HTTP service over the same segmenter and backends as ``semseg predict``.

A thin ASGI layer (Starlette on uvicorn) between the engine (which restores a model or an export)
and the API: ``options.py`` (the server's settings, checked), ``model.py`` (the loaded model and
how an image becomes a mask), ``limits.py`` (body size, pixel count, content type, band count,
checked before anything is decoded), ``batching.py`` (micro-batching and the bounded queue),
``metrics.py`` (Prometheus text), ``auth.py`` (bearer token), ``page.py`` (the web page),
``app.py`` (routes) and ``runner.py`` (uvicorn, workers, timeouts, graceful shutdown).

Importing this package imports neither Starlette nor paddle; its modules do.
"""
