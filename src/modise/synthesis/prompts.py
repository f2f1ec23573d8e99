"""MAM-E's prompt vocabulary and builder.

MAM-E's text-to-image model was fine-tuned on captions of the form
``a {vendor} mammogram in {view} view with {area} area and {density} density``
(or density before area); any part can be left out, and is dropped with its words.
"""

from __future__ import annotations

from modise.errors import ModiseError

VENDORS = ("siemens", "hologic")
VIEWS = ("CC", "MLO")
AREAS = ("small", "medium", "big")
DENSITIES = ("very low", "low", "high", "very high")
# BI-RADS breast density A-D -> MAM-E's words.
BIRADS_DENSITY = {"A": "very low", "B": "low", "C": "high", "D": "very high"}
INPAINT_PROMPT = "a mammogram with a lesion"
# Fraction of non-zero pixels of the 512x512 image -> area word (MAM-E's thresholds).
AREA_THRESHOLDS = ((0.4, "small"), (0.6, "medium"))


def _pick(value: str | None, allowed: tuple[str, ...], what: str) -> str | None:
    if value is None or value == "":
        return None
    for a in allowed:
        if value.strip().lower() == a.lower():
            return a
    raise ModiseError(f"Unknown {what} '{value}'; choose one of: {', '.join(allowed)}.")


def density_word(density: str | None) -> str | None:
    """Accept MAM-E's words or a BI-RADS letter (A-D, also 'DENSITY C'); None if unknown/empty."""
    if density is None or str(density).strip() == "":
        return None
    d = str(density).strip().upper().removeprefix("DENSITY").strip()
    if d in BIRADS_DENSITY:
        return BIRADS_DENSITY[d]
    return _pick(str(density), DENSITIES, "density")


def area_word(fraction: float) -> str:
    """Breast area word from the fraction of non-zero pixels of the 512x512 image."""
    for limit, word in AREA_THRESHOLDS:
        if fraction < limit:
            return word
    return "big"


def build_prompt(
    vendor: str | None = None,
    view: str | None = None,
    density: str | None = None,
    area: str | None = None,
    density_first: bool = False,
) -> str:
    """MAM-E prompt, e.g. ``a siemens mammogram in MLO view with high density and small area``.

    Parts left as None are dropped with their words; density may be a BI-RADS letter.
    """
    vendor = _pick(vendor, VENDORS, "vendor")
    view = _pick(view, VIEWS, "view")
    density = density_word(density)
    area = _pick(area, AREAS, "area")
    text = f"a {vendor} mammogram" if vendor else "a mammogram"
    if view:
        text += f" in {view} view"
    parts = [f"{area} area" if area else None, f"{density} density" if density else None]
    if density_first:
        parts.reverse()
    parts = [p for p in parts if p]
    if parts:
        text += " with " + " and ".join(parts)
    return text
