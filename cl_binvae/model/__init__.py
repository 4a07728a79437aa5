"""The binarized VAE family: KL_r, the latent priors, the VAEs and their diagnostics.

``config`` (no torch) -> ``regularizer`` -> ``priors`` -> ``vae`` -> ``diagnostics``. Nothing
here knows of continual learning; ``cl_binvae.replay`` builds on it.
"""
