"""Label Studio round trip: push selections as tasks, pull annotations as labels.

User story::

    curate select --budget 500
    curate push label-studio --project birds          # tasks carry data.curate_id
    # ... annotators label in Label Studio ...
    curate pull label-studio --project birds          # Label rows, source "label-studio"
    curate select --budget 500                        # seeds k-center from those labels

Library API (the CLI is a thin layer over it)::

    creds = credentials(workspace)                    # env first, then curate.toml
    client = connect(creds)                           # label_studio_sdk.LabelStudio
    push_selection(index, client, "latest", "birds", classes=["a", "b"]) -> PushReport
    pull_annotations(index, client, "birds", prefer="existing") -> PullReport

Modules: ``labelstudio_client`` (credentials, one-line errors, projects),
``labelstudio_config`` (labeling config XML), ``labelstudio_push``, ``labelstudio_pull``,
``labelstudio_upload`` (upload mode: the image files go into Label Studio itself).
Tested against label-studio 1.23.2 (Community) with label-studio-sdk 2.x.
"""

from curate.integrations.labelstudio_client import (Credentials, base_url, connect, credentials,
                                                    find_project, service)
from curate.integrations.labelstudio_config import (ConfigInfo, annotation_label,
                                                    classification_config, missing_classes,
                                                    parse_config)
from curate.integrations.labelstudio_pull import PullReport, export_tasks, pull_annotations
from curate.integrations.labelstudio_push import (LOCAL_FILES_PREFIX, PUSH_MODES, URL_MODES,
                                                  PushReport, image_url_builder, push_selection)

__all__ = [
    "Credentials", "credentials", "connect", "base_url", "find_project", "service",
    "ConfigInfo", "classification_config", "parse_config", "missing_classes", "annotation_label",
    "PushReport", "push_selection", "image_url_builder", "URL_MODES", "PUSH_MODES",
    "LOCAL_FILES_PREFIX",
    "PullReport", "pull_annotations", "export_tasks",
]
