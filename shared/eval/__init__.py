"""Evaluation only, never imported by the services: the systems under test (:mod:`.systems`),
the classical separation baseline (:mod:`.separation`) and input perturbations (:mod:`.perturbation`)."""
