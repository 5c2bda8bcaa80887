"""Drawing of what a file declares about its origin (``detector.provenance``), for the Detect page.

Two parts: :func:`summary` sets the file's declarations beside the detector's verdict (the
one place where both are said together), :func:`details` lists the Content Credentials and
generator metadata found. Nothing is computed here beyond wording: the reading, validation
and comparison are ``detector.provenance``'s, shared with the command line.
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from detector.provenance import Provenance, provenance_summary

STATE_LABEL = {
    "trusted": ":green[:material/verified: valid, trusted signer]",
    "valid": ":blue[:material/check_circle: valid signature, untrusted certificate]",
    "invalid": ":red[:material/error: INVALID]",
    "unreadable": ":red[:material/error: unreadable]",
}


def summary(prov: Provenance | None, verdict: str | None) -> None:
    """The file's declarations and the detector's verdict side by side, disagreement first."""
    if prov is None:
        return
    result = provenance_summary(prov, verdict)
    st.markdown("**What the file declares vs. what the detector sees**")
    if result["agreement"] == "disagree":
        st.warning(result["sentence"], icon=":material/report:")
    elif result["agreement"] == "agree":
        st.success(result["sentence"], icon=":material/handshake:")
    else:
        st.info(result["sentence"], icon=":material/info:")
    st.caption(
        result["statement"] + " A declaration is a claim by whoever wrote the file, not the "
        "detector's verdict; only a valid signature ties it to a certificate."
    )


def details(prov: Provenance | None) -> None:
    """Content Credentials (validation, signer, actions, ingredients) and generator metadata."""
    if prov is None:
        return
    cc = prov.content_credentials
    if cc is not None:
        st.markdown("**Content Credentials (C2PA)**")
        st.markdown(STATE_LABEL.get(cc.state, cc.state))
        rows = [
            ("Validation", cc.state_text),
            ("Claim generator", cc.claim_generator or "—"),
            ("Signer", cc.signer or "—"),
            ("Issuer", cc.issuer or "—"),
            ("Signed at", cc.signed_at or "not time-stamped"),
            ("Digital source type", cc.digital_source_type or "—"),
        ]
        for action in cc.actions:
            what = action.get("action") or "action"
            extra = ", ".join(
                x for x in (action.get("digital_source_type"), action.get("software_agent")) if x
            )
            rows.append(("Action", f"{what} ({extra})" if extra else what))
        for ing in cc.ingredients:
            rows.append(
                (
                    "Ingredient",
                    f"{ing.get('title') or 'untitled'} ({ing.get('relationship') or '?'}, "
                    f"{ing.get('format') or '?'})",
                )
            )
        _table(rows, "Content Credentials")
    gen = prov.generation
    if gen:
        st.markdown(f"**Generation settings in the file ({gen.get('tool') or 'unknown tool'})**")
        rows = [
            (label, str(gen[key]))
            for key, label in (
                ("model", "Model"),
                ("seed", "Seed"),
                ("prompt", "Prompt"),
                ("negative_prompt", "Negative prompt"),
                ("sampler", "Sampler"),
                ("steps", "Steps"),
            )
            if gen.get(key) not in (None, "")
        ]
        _table(rows, "Generation")
    if prov.xmp_source_type:
        st.markdown(f"**XMP digital source type:** `{prov.xmp_source_type}` (unsigned)")
    for error in prov.errors:
        st.caption(f"Not read: {error}")


def _table(rows: list[tuple[str, str]], title: str) -> None:
    table = pd.DataFrame(rows, columns=[title, "Value"])
    table["Value"] = table["Value"].astype(str)
    st.dataframe(table, hide_index=True, width="stretch")
