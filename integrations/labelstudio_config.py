"""Label Studio labeling configs (XML): build one for image classification, validate one.

Our tasks carry the image URL in ``data.image`` and our id in ``data.curate_id``, so a
usable config has an ``<Image value="$image">`` tag and at least one control that
labels it (``<Choices>`` or a ``*Labels`` tag) whose ``toName`` names that image.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from xml.sax.saxutils import quoteattr

from curate.errors import CurateError

IMAGE_VAR = "$image"


@dataclass
class ConfigInfo:
    """What we need to know about a labeling config."""

    image_name: str
    controls: dict[str, str] = field(default_factory=dict)  # control name -> tag (Choices, ...)
    classes: list[str] = field(default_factory=list)         # values of Choice/Label children

    @property
    def choices_control(self) -> str | None:
        return next((n for n, t in self.controls.items() if t == "Choices"), None)


def classification_config(classes: list[str]) -> str:
    """An image classification config with one single-choice ``Choices`` control.

    ``classes``: non-empty, unique, in display order. Returns the XML text.
    """
    classes = [c.strip() for c in classes if c and c.strip()]
    if not classes:
        raise CurateError("no classes for the labeling config: pass --classes a,b,c or --label-config FILE")
    if len(set(classes)) != len(classes):
        raise CurateError("duplicate class names in --classes")
    choices = "\n".join(f"    <Choice value={quoteattr(c)}/>" for c in classes)
    return ("<View>\n"
            '  <Image name="image" value="$image" zoom="true"/>\n'
            '  <Choices name="label" toName="image" choice="single-radio" showInLine="true">\n'
            f"{choices}\n"
            "  </Choices>\n"
            "</View>\n")


def parse_config(xml: str, source: str = "labeling config") -> ConfigInfo:
    """Check ``xml`` is usable for our tasks; raise :class:`CurateError` saying why not.

    Requires: well-formed XML, an ``Image`` tag with ``value="$image"``, and a
    ``Choices`` or ``*Labels`` control with ``toName`` pointing at that image.
    """
    try:
        root = ET.fromstring(xml)
    except ET.ParseError as e:
        raise CurateError(f"{source} is not well-formed XML: {e}") from None
    images = [el for el in root.iter() if el.tag == "Image" and el.get("value") == IMAGE_VAR]
    if not images:
        raise CurateError(f'{source} has no <Image value="$image"> tag; curate tasks carry the '
                          "image URL in data.image")
    image_name = images[0].get("name")
    if not image_name:
        raise CurateError(f'{source}: the <Image value="$image"> tag needs a name attribute')
    info = ConfigInfo(image_name=image_name)
    for el in root.iter():
        if el.tag == "Choices" or el.tag.endswith("Labels"):
            to = {t.strip() for t in (el.get("toName") or "").split(",")}
            if image_name in to and el.get("name"):
                info.controls[el.get("name")] = el.tag
                for child in el.iter():
                    if child.tag in ("Choice", "Label") and child.get("value") is not None:
                        if child.get("value") not in info.classes:
                            info.classes.append(child.get("value"))
    if not info.controls:
        raise CurateError(f"{source} has no <Choices> or <...Labels> control with "
                          f'toName="{image_name}"; nothing would label the image')
    return info


def missing_classes(info: ConfigInfo, classes: list[str]) -> list[str]:
    """Our ``classes`` that the config offers no choice for (annotators cannot pick them)."""
    have = set(info.classes)
    return [c for c in classes if c not in have]


def annotation_label(result: list[dict], info: ConfigInfo | None = None) -> str | None:
    """The class an annotation ``result`` gives: its Choices (or labels) values.

    Several values (multi-choice) are joined with ``","`` in order of appearance; None
    when the result holds no choice/label (empty submission).
    """
    values: list[str] = []
    for region in result or []:
        if info is not None and region.get("from_name") not in info.controls:
            continue
        value = region.get("value") or {}
        for key, vals in value.items():
            if key == "choices" or key.endswith("labels"):
                for v in vals if isinstance(vals, list) else [vals]:
                    if isinstance(v, str) and v not in values:
                        values.append(v)
    return ",".join(values) if values else None
