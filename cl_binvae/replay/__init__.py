"""Generative replay for Avalanche, with a binarized VAE as the generator.

``config`` (no torch) holds ``ReplayConfig``; ``plugin`` the replay step
(``BinVAEReplayPlugin``), which works inside any Avalanche template; ``strategy`` the
tensor-fed template and ``BinVAEGenerativeReplay``; ``tensor_batches`` the minibatches. It
imports only ``cl_binvae.model``.
"""
