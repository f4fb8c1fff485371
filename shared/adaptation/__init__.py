"""One-shot / few-shot out-of-distribution adaptation: the options (:mod:`.options`) and the
adapter's fitting loop (:mod:`.learning`), imported from their modules."""
