"""Training methods, one module each (simclr, moco, dino, autoencoder, metric, ncl,
classifier): each registers its :class:`~curate.trainers.base.TrainModule` subclasses in
``curate.trainers.TRAINERS``; :func:`curate.trainers.run.load_methods` imports them all.
The training infrastructure (config, fit, data, checkpoints, export) is in the parent
package, :mod:`curate.trainers`."""
