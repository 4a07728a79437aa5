"""Training from tensors, under every strategy of the suite: ``TensorBatches`` and
``ClassBatches`` (minibatches sliced from tensors), ``TensorStrategy`` (a tensor-fed Avalanche
``SupervisedTemplate``) and ``Normalization`` (between a stream's inputs and [0, 1] images).
It imports nothing of the other wings; ``replay`` and ``classifier`` build on it."""
