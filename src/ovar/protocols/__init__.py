"""The papers' evaluation protocols (``ovar eval --protocol``): which lists each protocol
evaluates (:mod:`.defs`, :mod:`.lists`), what it evaluates (:mod:`.sources`), the recipe
runs some protocols train (:mod:`.training`), the runs themselves (:mod:`.run`) and their
reports (:mod:`.report`).  Scoring and metrics come from :mod:`ovar.eval`.

The names below are all this module holds, so that the command line can list the
protocols without importing anything heavy."""

PROTOCOLS = ("closed", "cross-dataset", "half-classes", "base2novel", "few-shot")
TRAINING_PROTOCOLS = ("base2novel", "few-shot")  # those that train a recipe per split (--recipe/--config)
