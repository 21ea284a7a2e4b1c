"""The papers' evaluation protocols (``ovar eval --protocol``): which lists each protocol
evaluates (:mod:`.defs`, :mod:`.lists`), what it evaluates (:mod:`.sources`), the recipe
runs some protocols train (:mod:`.training`), the runs themselves (:mod:`.run`) and their
reports (:mod:`.report`).  Scoring and metrics come from :mod:`ovar.eval`."""
