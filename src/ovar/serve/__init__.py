"""``ovar serve``: a zero-shot video classification service (FastAPI) with a web page.

Needs the ``serve`` extra (``pip install 'ovar[serve]'``). :func:`~ovar.serve.app.create_app`
builds the application around a :class:`~ovar.serve.service.ClassifyService`.
"""
