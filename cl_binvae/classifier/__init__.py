"""The generative classifier: one VAE per class, classes chosen by likelihood.

van de Ven, Li & Tolias 2021 ("Class-Incremental Learning with Generative Classifiers"):
each class gets its own VAE, trained on that class's data only and then frozen, and an image
goes to the class under whose VAE it is most likely, log p(x|c) estimated by importance
sampling. Nothing is replayed and nothing forgotten; accuracy rests on the likelihoods.

``config`` (no torch) holds ``ClassifierConfig``; ``model`` the ``GenerativeClassifier``
module (per-class VAEs, scores as outputs); ``strategy`` the Avalanche strategy that trains
it. It imports ``cl_binvae.model`` and ``cl_binvae.training``.
"""
