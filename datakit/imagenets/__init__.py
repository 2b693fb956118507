"""ImageNet-S (50 / 300 / 919): the official lists, input scanning, folder export, info and submission.

``lists`` parses the packaged manifests; ``params`` validates a recipe's parameters; ``inputs``
finds ImageNet images and annotation masks; ``folder`` writes the official directory layout;
``info`` and ``submit`` back the ``datakit info/submit imagenets`` commands.
"""
