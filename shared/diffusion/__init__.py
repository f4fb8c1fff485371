"""The generative receiver's diffusion parts (paper 001 eq. 14-17, 21-22; paper 003 sec. IV):
the channel as a diffusion step (:mod:`.channel_state`), the time schedule and samplers
(:mod:`.sampling`), and the decoder modes that put them in front of the JSCC decoder
(:mod:`.modes`). The networks live in :mod:`shared.models.latent_denoiser`."""
