"""``mt serve``: a translation server (LibreTranslate's API) with a page that shows the attention.

Above decoding and analysis, below the CLI: ``protocol`` (the request's fields and limits),
``batcher`` (search processes; continuous or window batching per model), ``app`` (the ASGI app),
``server`` (loading models, uvicorn, a clean stop). Needs the ``serve`` extra
(``pip install 'mt[serve]'``: FastAPI, uvicorn, prometheus-client, python-multipart).
"""
