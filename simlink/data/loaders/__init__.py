"""Loaders for datasets on disk, one module per dataset, plus the shared helpers
(:mod:`.locate` where to look, :mod:`.transforms` subset / resize / crop, :mod:`.packed` the
packed ``.npz`` format). Each loader has the signature
``load_x(split, n_images, image_size, root, seed, download) -> ImageSet``.
"""
