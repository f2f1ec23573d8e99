"""MAM-E's prompt vocabulary, training captions and prompt builder.

MAM-E captioned each vendor's images with one concept: Hologic (OMI-DB) images
``a hologic mammogram in {view} view with {area} area`` and Siemens (VinDr-Mammo) images
``a siemens mammogram in {view} view with {density} density``
(``dataset_analysis/prompt_generation/prompt_saving.py:38``,
``prompt_generation/vindr-mammo/prompt_saving.py:34-35``, vendor word added by
``dataset_analysis/fusion/create_fusion.py:43-46``). :func:`training_caption` writes them so.

Prompts for generation may combine concepts (``... with high density and small area``, as
on the MAM-E poster): :func:`extrapolation` says when no training caption held such a mix.
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


# Which concept each vendor's training captions carried (see the module docstring).
CAPTION_CONCEPT = {"hologic": "area", "siemens": "density"}


def training_caption(vendor: str | None, view: str | None, density: str | None, area: str | None) -> str:
    """The caption MAM-E trained on: Hologic with its area, Siemens with its density.

    Another or unknown vendor gets density when it is known (VinDr-like metadata), else area.
    """
    concept = CAPTION_CONCEPT.get((vendor or "").lower()) or ("density" if density_word(density) else "area")
    if concept == "density":
        return build_prompt(vendor, view, density=density)
    return build_prompt(vendor, view, area=area)


def extrapolation(prompt: str) -> str | None:
    """Why ``prompt`` combines concepts no MAM-E training caption held, or None if one could have.

    Training captions hold one concept each: area with Hologic, density with Siemens.
    """
    text = f" {prompt.lower()} "
    vendor = next((v for v in VENDORS if f" {v} " in text), None)
    area, density = " area " in text or text.rstrip().endswith(" area"), " density" in text
    if area and density:
        return "area and density together (training captions held one of them)"
    if vendor == "siemens" and area:
        return "siemens with an area (siemens images were captioned with density only)"
    if vendor == "hologic" and density:
        return "hologic with a density (hologic images were captioned with area only)"
    return None


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
