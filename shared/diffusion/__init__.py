"""The generative receiver's diffusion parts (paper 001 eq. 14-17, 21-22; paper 003 sec. IV):
the channel as a diffusion step (:mod:`.channel_state`) and the time schedules and samplers
(:mod:`.sampling`). The networks live in :mod:`shared.models`, the decoder modes' loops in
:mod:`shared.decoding`."""
